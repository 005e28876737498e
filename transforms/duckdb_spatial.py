"""An in-memory DuckDB with the spatial extension, loaded offline from its Python wheel.

Building-level ARCEP files hold ~28 million buildings and ~440 million eligibility rows: too
many for pandas, fine for DuckDB, which streams the gzip CSVs and spills to disk beyond its
memory limit. The spatial extension is installed from the `duckdb-extension-spatial` wheel
(never downloaded: runs may be offline), into a folder of the run, so that nothing is written
to the user's home.
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import geopandas as gpd
import numpy as np
import pyarrow as pa
import shapely
from pyproj import CRS

EXTENSION = "spatial"
WHEEL = "duckdb-extension-spatial"


class SpatialExtensionError(RuntimeError):
    """The spatial extension of DuckDB cannot be found or loaded."""


def extension_file() -> Path:
    """The `spatial.duckdb_extension` shipped by the wheel for the installed DuckDB version."""
    fix = f"installez `{WHEEL}=={duckdb.__version__}` (même version que duckdb) dans l'environnement du projet"
    try:
        import duckdb_extension_spatial
    except ImportError:
        raise SpatialExtensionError(f"le paquet Python {WHEEL} n'est pas installé\n  correction : {fix}") from None
    folder = Path(duckdb_extension_spatial.__file__).resolve().parent / "extensions"
    path = folder / f"v{duckdb.__version__}" / f"{EXTENSION}.duckdb_extension"
    if not path.is_file():
        found = sorted(p.name for p in folder.glob("v*")) if folder.is_dir() else []
        raise SpatialExtensionError(
            f"{path} : extension spatiale de DuckDB absente (versions présentes : {found or 'aucune'}, "
            f"duckdb installé : {duckdb.__version__})\n  correction : {fix}"
        )
    return path


def connect(work_dir: Path, memory_limit: str = "4GB", threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """In-memory DuckDB, spatial loaded from the wheel, temporary files and extensions under `work_dir`.

    `temp_directory` lets a national file spill to disk instead of failing at `memory_limit`;
    automatic extension download is switched off so that a missing extension fails here, in
    French, rather than as a network timeout in the middle of a query.
    """
    work_dir = Path(work_dir)
    ext_dir, tmp_dir = work_dir / "duckdb_extensions", work_dir / "duckdb_tmp"
    ext_dir.mkdir(parents=True, exist_ok=True)
    tmp_dir.mkdir(parents=True, exist_ok=True)
    source = extension_file()
    config = {
        "memory_limit": memory_limit,
        "threads": threads or os.cpu_count() or 1,
        "temp_directory": str(tmp_dir),
        "extension_directory": str(ext_dir),
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        "preserve_insertion_order": False,
    }
    con = duckdb.connect(":memory:", config=config)
    con.execute("SET enable_progress_bar = false")  # a library call, not an interactive session
    try:
        con.install_extension(str(source))
        con.load_extension(EXTENSION)
    except duckdb.Error as exc:
        con.close()
        raise SpatialExtensionError(
            f"{source} : l'extension spatiale n'a pas pu être chargée ({exc})\n  correction : réinstallez "
            f"`{WHEEL}=={duckdb.__version__}`, de la même version que duckdb"
        ) from exc
    return con


def epsg_code(crs: object) -> str:
    """`EPSG:<code>` of a CRS given as an int, a string or a pyproj CRS; refuse a CRS without code."""
    if crs is None:
        raise ValueError("aucune projection (CRS) : donnez un code EPSG explicite (2154, 5490, 2972, 2975, 4471)")
    code = CRS.from_user_input(crs).to_epsg()
    if code is None:
        raise ValueError(f"projection {crs!s} sans code EPSG : donnez un code EPSG explicite")
    return f"EPSG:{code}"


def column_crs(con: duckdb.DuckDBPyConnection, table: str, column: str = "geom") -> str | None:
    """The CRS a table's GEOMETRY column is typed with (`GEOMETRY('EPSG:2154')`), None if untyped."""
    rows = con.execute(f"DESCRIBE {table}").fetchall()
    types = {r[0]: str(r[1]) for r in rows}
    if column not in types:
        raise KeyError(f"{table} n'a pas de colonne {column!r} (colonnes : {sorted(types)})")
    kind = types[column]
    return kind.split("'")[1] if "'" in kind else None


def load_geometries(
    con: duckdb.DuckDBPyConnection, table: str, frame: gpd.GeoDataFrame, columns: list[str], crs: str
) -> None:
    """Copy a GeoDataFrame's columns and geometry into a DuckDB table, through WKB and Arrow.

    The geometry column is typed with its CRS, so that a join with a table in another CRS fails
    rather than compares metres of two projections.
    """
    data = {c: frame[c].astype(str).to_numpy() for c in columns}
    data["wkb"] = shapely.to_wkb(np.asarray(frame.geometry.to_numpy()), flavor="iso")
    arrow = pa.table(data)
    con.register("_geometries_in", arrow)
    try:
        selected = ", ".join(f'"{c}"' for c in columns)
        con.execute(
            f"CREATE OR REPLACE TABLE {table} AS SELECT {selected}, "
            f"ST_GeomFromWKB(wkb)::GEOMETRY('{crs}') AS geom FROM _geometries_in"
        )
    finally:
        con.unregister("_geometries_in")

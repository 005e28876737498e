"""Map layers: the column contract and the three file formats.

GeoParquet 1.1 (EPSG:2154, bbox covering) for analysis, GeoPackage for QGIS builds without
Parquet, GeoJSON RFC 7946 (EPSG:4326, 6 decimals) for the web; plus a JSON sidecar with the
run's method, reference, vintages and date.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
import pyarrow.parquet as pq
import pyogrio

from indice.mednum import SCORE_COLUMNS
from outputs.files import write_all

IDENTITY_COLUMNS: dict[str, tuple[str, ...]] = {
    "iris": ("CODE_IRIS", "NOM_IRIS", "TYP_IRIS", "INSEE_COM", "NOM_COM", "EPCI", "DEP"),
    "communes": ("INSEE_COM", "NOM_COM", "EPCI", "DEP"),
    "epci": ("EPCI", "NOM_EPCI", "DEP"),
    "departements": ("DEP", "NOM_DEP"),
}
INDICATOR_PARTS = ("num", "den", "taux", "score")
METHOD_PREFIXES = ("ifn2023_", "opale_", "est_")
EXTRA_COLUMNS = ("P_POP", "n_iris", "non_residentiel")


def build_layer(
    maille: str,
    table: pd.DataFrame,
    scores: pd.DataFrame,
    indicator_ids: list[str],
    *,
    methode: str,
    reference: str,
    millesime_rp: int,
) -> gpd.GeoDataFrame:
    """Assemble a layer in contract order.

    `table` (a GeoDataFrame: identity, `<id>_num/_den/_taux`, flags) and `scores` (every score
    column) are row-aligned. Order: identity; per indicator num, den, taux, score; MedNum axis
    and global scores; `methode, reference, millesime_rp`; the other methods' columns
    (`ifn2023_*`, `opale_*`, `est_*`); flags (`<id>_source`, population, …); geometry.
    """
    table = table.reset_index(drop=True)
    scores = scores.reset_index(drop=True)
    n = len(table)
    cols: dict[str, pd.Series] = {c: table[c].astype(str) for c in IDENTITY_COLUMNS[maille]}
    for ind_id in indicator_ids:
        for part in INDICATOR_PARTS:
            source = scores if part == "score" else table
            name = f"{ind_id}_{part}"
            if name in source:
                cols[name] = source[name]
    for name in SCORE_COLUMNS:
        if name in scores:
            cols[name] = scores[name]
    cols["methode"] = pd.Series(methode, index=range(n))
    cols["reference"] = pd.Series(reference, index=range(n))
    cols["millesime_rp"] = pd.Series(int(millesime_rp), index=range(n), dtype="int32")
    for name in scores.columns:
        if name.startswith(METHOD_PREFIXES):
            cols[name] = scores[name]
    for name in table.columns:
        if name.endswith("_source") or name in EXTRA_COLUMNS:
            cols[name] = table[name]
    return gpd.GeoDataFrame(pd.DataFrame(cols), geometry=table.geometry, crs=table.crs)


def write_geojson(gdf: gpd.GeoDataFrame, path: Path) -> None:
    """GeoJSON RFC 7946: WGS84 longitude/latitude, 6 decimals, no `crs` member."""
    pyogrio.write_dataframe(gdf.to_crs(4326), path, driver="GeoJSON",
                            layer_options={"RFC7946": "YES", "COORDINATE_PRECISION": "6", "WRITE_NAME": "NO"})


def write_layer(layer: gpd.GeoDataFrame, out_dir: Path, name: str, run_info: dict[str, Any]) -> dict[Path, int]:
    """Write `<name>.parquet`, `.gpkg`, `.geojson` and `.metadata.json` atomically together."""
    info = json.dumps(run_info, ensure_ascii=False, default=str)

    def parquet(tmp: Path) -> None:
        layer.to_parquet(tmp, schema_version="1.1.0", write_covering_bbox=True, index=False)
        table = pq.read_table(tmp)
        meta = {**(table.schema.metadata or {}), b"fragilite": info.encode("utf-8")}
        pq.write_table(table.replace_schema_metadata(meta), tmp, compression="zstd")

    def gpkg(tmp: Path) -> None:
        pyogrio.write_dataframe(layer, tmp, layer=name, driver="GPKG", metadata={"fragilite": info})

    def sidecar(tmp: Path) -> None:
        tmp.write_text(json.dumps(run_info, ensure_ascii=False, indent=2, default=str), encoding="utf-8")

    return write_all({
        out_dir / f"{name}.parquet": parquet,
        out_dir / f"{name}.gpkg": gpkg,
        out_dir / f"{name}.geojson": lambda tmp: write_geojson(layer, tmp),
        out_dir / f"{name}.metadata.json": sidecar,
    })

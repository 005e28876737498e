"""ARCEP « Mon réseau mobile »: theoretical 4G data coverage polygons, per operator.

One GeoPackage per operator × technology, published 7z-compressed (`.gpkg.7z`, 100–650 MB per
operator), MultiPolygons in EPSG:2154 for metropolitan France (5490, 2972, 2975, 4471 overseas)
with fields `operateur`, `date`, `techno`, `usage` (`voix` | `data`), `niveau` (`TBC` très bonne,
`BC` bonne, `CL` limitée couverture) and `dept`.

Only rows with techno 4G, usage data, a configured level and a configured operator are kept.
Polygons are read file by file, layer by layer, a few rows at a time (bounded memory), cut into
pieces of at most `max_vertices` vertices and loaded into DuckDB in the target CRS: DuckDB's
spatial join indexes bounding boxes, then tests a point against the whole candidate polygon,
which for an unsplit département-wide polygon of a million vertices takes minutes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyogrio
import shapely
from pyproj import CRS, Transformer

from sources.archives import extract_7z
from sources.common import InputError
from transforms.duckdb_spatial import epsg_code

FIELDS = ("operateur", "techno", "usage", "niveau")
TECHNO = "4G"
USAGE = "data"
ROWS_PER_READ = 50
WHAT = "une carte de couverture « Mon réseau mobile » de l'ARCEP (GeoPackage, champs operateur, techno, usage, niveau)"
FIX = "téléchargez le fichier .gpkg.7z de l'opérateur sur data.gouv.fr (jeu « Mon réseau mobile »)"


def coverage_files(paths: Sequence[Path], work_dir: Path) -> list[Path]:
    """The GeoPackages to read: `.gpkg` as given, `.gpkg.7z` extracted under `work_dir`."""
    out: list[Path] = []
    for path in map(Path, paths):
        if not path.exists():
            raise InputError(path, "fichier introuvable", fix="vérifiez le chemin dans la configuration")
        out.extend(_extract_7z(path, Path(work_dir)) if path.suffix.lower() == ".7z" else [path])
    return out


def _extract_7z(path: Path, work_dir: Path) -> list[Path]:
    import py7zr

    dest = work_dir / "couverture_mobile" / path.name.removesuffix(".7z")
    try:
        with py7zr.SevenZipFile(path, mode="r") as archive:
            members = [n for n in archive.getnames() if n.lower().endswith(".gpkg")]
            if not members:
                raise InputError(
                    path, f"aucun GeoPackage (.gpkg) dans l'archive ; contenu : {archive.getnames()[:10]}", fix=FIX
                )
            targets = [dest / m for m in members]
            if not all(t.is_file() and t.stat().st_size > 0 for t in targets):
                dest.mkdir(parents=True, exist_ok=True)
                extract_7z(path, members, dest)
    except (py7zr.exceptions.Bad7zFile, py7zr.exceptions.ArchiveError, OSError, EOFError) as exc:
        raise InputError(path, f"archive 7z illisible ({exc})", fix=FIX) from exc
    return targets


def _layer_fields(path: Path, layer: str) -> tuple[list[str], CRS | None, int]:
    try:
        info = pyogrio.read_info(path, layer=layer)
    except pyogrio.errors.DataSourceError as exc:
        raise InputError(path, f"GeoPackage illisible ({exc})", fix=FIX) from exc
    crs = CRS.from_user_input(info["crs"]) if info.get("crs") else None
    return list(info["fields"]), crs, int(info.get("features") or 0)


def _selected_rows(
    path: Path, layer: str, names: dict[str, str], levels: Sequence[str], operators: Sequence[str]
) -> tuple[np.ndarray, dict]:
    """FIDs of the 4G data rows at a kept level of a kept operator, and counts of what was seen."""
    columns = [names[f] for f in FIELDS]
    attrs = pyogrio.read_dataframe(path, layer=layer, columns=columns, read_geometry=False, fid_as_index=True)
    norm = {f: attrs[names[f]].astype("string").str.strip() for f in FIELDS}
    wanted_ops = {o.casefold() for o in operators}
    keep = (
        (norm["techno"].str.upper() == TECHNO)
        & (norm["usage"].str.lower() == USAGE)
        & norm["niveau"].str.upper().isin(list(levels))
        & norm["operateur"].str.casefold().isin(wanted_ops)
    ).fillna(False)
    seen = {
        "lignes": len(attrs),
        "gardees": int(keep.sum()),
        "operateurs": sorted(norm["operateur"].dropna().unique().tolist()),
        "technos": sorted(norm["techno"].dropna().unique().tolist()),
        "usages": sorted(norm["usage"].dropna().unique().tolist()),
        "niveaux": sorted(norm["niveau"].dropna().unique().tolist()),
    }
    return attrs.index[keep.to_numpy()].to_numpy(), seen


def subdivide(geoms: np.ndarray, max_vertices: int) -> np.ndarray:
    """Polygons cut in halves (along their longer side) until each has ≤ `max_vertices` vertices.

    The union of the pieces is the input: a point is in the input exactly when it intersects a
    piece (points on a cut line intersect both halves, which is harmless for an « any » test).
    """
    pending = _polygons(shapely.get_parts(np.asarray(geoms, dtype=object)))
    done = []
    for _ in range(64):
        if not len(pending):
            break
        small = shapely.get_num_coordinates(pending) <= max_vertices
        done.append(pending[small])
        halves = []
        for geom in pending[~small]:
            xmin, ymin, xmax, ymax = geom.bounds
            if xmax - xmin >= ymax - ymin:
                mid = (xmin + xmax) / 2
                rects = ((xmin, ymin, mid, ymax), (mid, ymin, xmax, ymax))
            else:
                mid = (ymin + ymax) / 2
                rects = ((xmin, ymin, xmax, mid), (xmin, mid, xmax, ymax))
            halves.extend(shapely.clip_by_rect(geom, *r) for r in rects)
        pending = _polygons(shapely.get_parts(np.array(halves, dtype=object))) if halves else pending[:0]
    done.append(pending)
    return np.concatenate(done) if done else np.array([], dtype=object)


def _polygons(parts: np.ndarray) -> np.ndarray:
    parts = parts[~shapely.is_empty(parts)] if len(parts) else parts
    return parts[shapely.get_type_id(parts) == 3] if len(parts) else parts


def _to_crs(geoms: np.ndarray, source: CRS, target: str) -> np.ndarray:
    if CRS.from_user_input(target) == source:
        return geoms
    transformer = Transformer.from_crs(source, target, always_xy=True)
    return shapely.transform(geoms, lambda xy: np.column_stack(transformer.transform(xy[:, 0], xy[:, 1])))


def register_coverage(
    con: duckdb.DuckDBPyConnection,
    paths: Sequence[Path],
    *,
    work_dir: Path,
    target_crs: object = 2154,
    levels: Sequence[str] = ("TBC", "BC"),
    operators: Sequence[str] = ("Orange", "SFR", "Bouygues Telecom", "Free Mobile"),
    max_vertices: int = 256,
    name: str = "couverture_4g",
) -> dict:
    """Create table `name` (`operateur`, `niveau`, `geom` in `target_crs`): the kept 4G data
    coverage polygons, in pieces. Returns what each file and layer held and what was kept."""
    crs = epsg_code(target_crs)
    con.execute(f"CREATE OR REPLACE TABLE {name} (operateur VARCHAR, niveau VARCHAR, geom GEOMETRY('{crs}'))")
    report: dict = {"crs": crs, "niveaux": list(levels), "operateurs_demandes": list(operators), "fichiers": {}}
    for path in coverage_files(paths, work_dir):
        try:
            layers = [str(row[0]) for row in pyogrio.list_layers(path)]
        except pyogrio.errors.DataSourceError as exc:
            raise InputError(path, f"GeoPackage illisible ({exc})", fix=FIX) from exc
        for layer in layers:
            report["fichiers"][f"{path}:{layer}"] = _load_layer(
                con, name, path, layer, crs, levels, operators, max_vertices
            )
    totals = con.execute(f"SELECT operateur, count(*) FROM {name} GROUP BY 1 ORDER BY 1").fetchall()
    report["morceaux_par_operateur"] = {op: int(n) for op, n in totals}
    found = {op.casefold() for layer in report["fichiers"].values() for op in layer["operateurs"]}
    report["operateurs_absents"] = [op for op in operators if op.casefold() not in found]
    return report


def _load_layer(
    con: duckdb.DuckDBPyConnection,
    name: str,
    path: Path,
    layer: str,
    crs: str,
    levels: Sequence[str],
    operators: Sequence[str],
    max_vertices: int,
) -> dict:
    """Read one layer a few rows at a time; check its fields and CRS first."""
    fields, source_crs, _ = _layer_fields(path, layer)
    lowered = {f.lower(): f for f in fields}
    missing = [f for f in FIELDS if f not in lowered]
    if missing:
        raise InputError(
            path,
            f"couche {layer!r} : champ(s) absent(s) {missing} ; champs lus : {fields[:20]}",
            column=missing[0],
            fix=f"donnez {WHAT} ; {FIX}",
        )
    if source_crs is None:
        raise InputError(
            path, f"couche {layer!r} sans projection (CRS) déclarée", fix=f"{FIX} (EPSG:2154 en métropole)"
        )
    names = {f: lowered[f] for f in FIELDS}
    fids, seen = _selected_rows(path, layer, names, levels, operators)
    pieces = 0
    for start in range(0, len(fids), ROWS_PER_READ):
        chunk = pyogrio.read_dataframe(
            path, layer=layer, columns=[names["operateur"], names["niveau"]], fids=fids[start : start + ROWS_PER_READ]
        )
        geoms = chunk.geometry.to_numpy()
        invalid = ~shapely.is_valid(geoms)
        if invalid.any():
            geoms[invalid] = shapely.make_valid(geoms[invalid])
        per_row = [subdivide(np.array([g], dtype=object), max_vertices) for g in _to_crs(geoms, source_crs, crs)]
        counts = [len(p) for p in per_row]
        if not sum(counts):
            continue
        table = pa.table(
            {
                "operateur": np.repeat(chunk[names["operateur"]].astype(str).str.strip().to_numpy(), counts),
                "niveau": np.repeat(chunk[names["niveau"]].astype(str).str.strip().str.upper().to_numpy(), counts),
                "wkb": shapely.to_wkb(np.concatenate(per_row), flavor="iso"),
            }
        )
        con.register("_coverage_in", table)
        con.execute(
            f"INSERT INTO {name} SELECT operateur, niveau, ST_GeomFromWKB(wkb)::GEOMETRY('{crs}') FROM _coverage_in"
        )
        con.unregister("_coverage_in")
        pieces += sum(counts)
    seen.update(crs_fichier=epsg_code(source_crs) if source_crs.to_epsg() else source_crs.name, morceaux=pieces)
    return seen

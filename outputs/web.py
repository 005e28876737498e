"""Simplified web layers: a topology-preserving coverage simplification (methodology §6).

Simplifying each polygon alone opens gaps and overlaps between neighbours; simplifying the
coverage keeps one shared border. Only the IRIS coverage is simplified: communes, EPCI and
départements are the unions of the simplified IRIS, so every maille of one level shares the
very same borders (a commune's outline lies exactly on its IRIS' outlines on the web map).
Each level simplifies the previous one (10 m, then 50 m from the 10 m result), which is both
faster and nested. Validity is checked in Lambert-93.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import shapely

from outputs.layers import TEXT_POOL, geojson_geometries
from transforms.mailles import MAILLES, dissolve_coverage


@dataclass(frozen=True)
class SimplifyStats:
    tolerance_m: float
    vertices_before: int
    vertices_after: int
    valid_before: bool
    valid_after: bool


@dataclass
class WebOutlines:
    """Simplified outlines of every maille at every tolerance (Lambert-93, row-aligned with the
    published layers), shared by the web layers and the Geoclip pack."""

    outlines: dict[tuple[str, float], gpd.GeoSeries]
    stats: dict[str, SimplifyStats]  # "<maille>_<tolerance>m" → figures
    # Per coarser maille, for each row: the row of the IRIS layer of the maille's only IRIS (its
    # outline is that IRIS' outline: most communes have one IRIS), -1 otherwise.
    iris_rows: dict[str, np.ndarray] = field(default_factory=dict)
    _geojson: dict[tuple[str, float], pa.Array] = field(default_factory=dict, repr=False)
    _locks: dict[tuple[str, float], threading.Lock] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def geojson(self, maille: str, tolerance: float) -> pa.Array:
        """The GeoJSON text of these outlines, made once for the web layer and the pack (two
        levels may be made at once on two threads)."""
        key = (maille, tolerance)
        with self._lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._geojson:
                self._geojson[key] = self._make_geojson(maille, tolerance)
            return self._geojson[key]

    def _make_geojson(self, maille: str, tolerance: float) -> pa.Array:
        """A unit whose outline is exactly its only IRIS' outline takes that IRIS' text (the same
        geometry makes the same text); GEOS writes the others."""
        outlines = self.outlines[(maille, tolerance)]
        rows = self.iris_rows.get(maille)
        iris = self.outlines.get(("iris", tolerance))
        if maille == "iris" or rows is None or iris is None or iris.crs != outlines.crs or not (rows >= 0).any():
            return geojson_geometries(outlines)
        candidates = np.flatnonzero(rows >= 0)
        same = shapely.equals_identical(outlines.to_numpy()[candidates], iris.to_numpy()[rows[candidates]])
        reused = candidates[same]
        own = np.setdiff1d(np.arange(len(outlines)), reused, assume_unique=True)
        index = np.empty(len(outlines), dtype=np.int64)
        index[reused] = rows[reused]
        iris_text = self.geojson("iris", tolerance)
        index[own] = len(iris_text) + np.arange(len(own))
        texts = pa.concat_arrays([iris_text, geojson_geometries(outlines.iloc[own])], memory_pool=TEXT_POOL)
        return pc.take(texts, pa.array(index), memory_pool=TEXT_POOL)

    def levels(self, maille: str) -> dict[float, gpd.GeoSeries]:
        """The maille's outlines by tolerance."""
        return {tolerance: outlines for (m, tolerance), outlines in self.outlines.items() if m == maille}

    @property
    def finest(self) -> float:
        return min(tolerance for _, tolerance in self.outlines)


def level_name(maille: str, tolerance: float) -> str:
    return f"{maille}_{tolerance:g}m"


class CoverageError(ValueError):
    """The outlines do not form a valid coverage (gaps or overlaps between neighbours)."""


def _vertices(geometries) -> int:
    return int(shapely.get_num_coordinates(geometries).sum())


@dataclass
class IrisLevels:
    """The IRIS coverage simplified at each tolerance, and its unions per coarser maille."""

    valid_before: bool
    codes: pd.Index  # CODE_IRIS of the rows of `iris`
    iris: dict[float, np.ndarray] = field(default_factory=dict)
    unions: dict[tuple[str, float], pd.Series] = field(default_factory=dict)  # outlines by key
    valid_after: bool | None = None  # the coarsest level's coverage


def simplify_iris(
    iris: gpd.GeoDataFrame, tolerances: Sequence[float], coverage_valid: bool | None = None
) -> IrisLevels:
    """Simplify the IRIS coverage once per tolerance, each level from the previous one, and
    dissolve each level by the coarser mailles' keys present in `iris` (INSEE_COM, EPCI, DEP).

    Only the outlines and keys are needed, so a run can start this as soon as the IRIS are
    known. `coverage_valid` passes on a validity already established; when None it is checked
    here. An invalid coverage is not published (`valid_before` False, no level).

    GEOS releases the GIL, so the work runs on two threads around the chain of simplifications
    (the longest path): the source is checked while the first level is simplified (a
    simplification of an invalid coverage is then thrown away), and each level is dissolved
    while the next one is simplified.
    """
    if iris.crs is None or not iris.crs.is_projected:
        raise CoverageError(
            "la simplification demande une projection en mètres (Lambert-93 en métropole, UTM outre-mer)"
        )
    source = iris.geometry.to_numpy()
    keys = {maille: iris[key] for maille, (key, _) in MAILLES.items() if key in iris.columns}
    levels = IrisLevels(valid_before=coverage_valid is not False, codes=pd.Index(iris["CODE_IRIS"]))
    if not levels.valid_before:
        return levels
    chain = sorted(tolerances)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="fragilite-couverture") as helper:
        checked = helper.submit(shapely.coverage_is_valid, source) if coverage_valid is None else None
        try:
            level = shapely.coverage_simplify(source, chain[0]) if chain else source
        except shapely.errors.GEOSException:
            if checked is None or checked.result():
                raise
            level = source  # an invalid coverage: nothing of it is published
        levels.valid_before = True if checked is None else bool(checked.result())
        if not levels.valid_before:
            return levels
        dissolved = []
        for tolerance, following in zip(chain, [*chain[1:], None]):
            levels.iris[tolerance] = level
            dissolved.append(helper.submit(_dissolve_level, level, tolerance, keys))
            if following is not None:
                level = shapely.coverage_simplify(level, following)
        # GEOS keeps a valid coverage valid when simplifying it; checked on the last (coarsest)
        # level, which went through every simplification.
        levels.valid_after = bool(shapely.coverage_is_valid(level))
        for unions in dissolved:
            levels.unions.update(unions.result())
    return levels


LEVEL_COLUMNS = ("maille", "tolerance_m", "code")


def levels_frame(levels: IrisLevels, crs) -> gpd.GeoDataFrame:
    """The levels as one table (a row per unit, tolerance and maille: `maille`, `tolerance_m`,
    `code`, geometry; the validity in `attrs`), to be stored between steps and opened in QGIS."""
    parts = [
        pd.DataFrame({"maille": "iris", "tolerance_m": tolerance, "code": levels.codes, "geometry": outlines})
        for tolerance, outlines in levels.iris.items()
    ]
    parts += [
        pd.DataFrame({"maille": maille, "tolerance_m": tolerance, "code": unions.index, "geometry": unions.to_numpy()})
        for (maille, tolerance), unions in levels.unions.items()
    ]
    empty = pd.DataFrame({c: pd.Series(dtype="object") for c in (*LEVEL_COLUMNS, "geometry")})
    table = pd.concat(parts, ignore_index=True) if parts else empty.astype({"tolerance_m": "float64"})
    frame = gpd.GeoDataFrame(table, geometry="geometry", crs=crs)
    frame.attrs.update(couverture_valide_avant=levels.valid_before, couverture_valide_apres=levels.valid_after)
    return frame


def levels_from_frame(frame: gpd.GeoDataFrame) -> IrisLevels:
    """What `levels_frame` wrote."""
    iris = frame[frame["maille"].to_numpy() == "iris"]
    first = iris[iris["tolerance_m"].to_numpy() == iris["tolerance_m"].min()] if len(iris) else iris
    levels = IrisLevels(
        valid_before=bool(frame.attrs.get("couverture_valide_avant", True)),
        codes=pd.Index(first["code"].to_numpy(), name="CODE_IRIS"),
        valid_after=frame.attrs.get("couverture_valide_apres"),
    )
    geometries = frame.geometry.to_numpy()
    for (maille, tolerance), rows in frame.groupby(["maille", "tolerance_m"], sort=False).indices.items():
        if maille == "iris":
            levels.iris[float(tolerance)] = geometries[rows]
        else:
            levels.unions[(maille, float(tolerance))] = pd.Series(
                geometries[rows], index=frame["code"].to_numpy()[rows]
            )
    return levels


def _dissolve_level(level: np.ndarray, tolerance: float, keys: dict[str, pd.Series]) -> dict:
    """The outlines of each coarser maille at one level: unions of its simplified IRIS, by key."""
    unions = {}
    for maille, key in keys.items():
        codes, outlines = dissolve_coverage(level, key)
        unions[(maille, tolerance)] = pd.Series(outlines, index=codes)
    return unions


def overlapping_pairs(layer: gpd.GeoDataFrame, key: str = "CODE_IRIS") -> list[tuple[str, str]]:
    """Pairs of units whose interiors overlap (what makes a coverage invalid, with gaps), by key."""
    geometries = layer.geometry.to_numpy()
    left, right = shapely.STRtree(geometries).query(geometries, predicate="overlaps")
    codes = layer[key].astype(str).to_numpy()
    return sorted({tuple(sorted((codes[i], codes[j]))) for i, j in zip(left, right) if i < j})


def web_outlines(levels: IrisLevels, layers: dict[str, gpd.GeoDataFrame]) -> WebOutlines:
    """The simplified outlines row-aligned with each published layer, with their figures.
    Refuses an invalid coverage. The coarser mailles are unions of groups of the simplified
    IRIS coverage, hence valid whenever it is."""
    if not levels.valid_before:
        pairs = overlapping_pairs(layers["iris"]) if "iris" in layers else []
        listed = ", ".join(f"{a} × {b}" for a, b in pairs[:5]) + (" …" if len(pairs) > 5 else "")
        raise CoverageError(
            "les contours des IRIS ne forment pas une couverture valide (chevauchements ou interstices entre "
            f"voisins){' : IRIS qui se chevauchent ' + listed if pairs else ''} ; rien n'est publié. Correction : "
            "reprenez les contours CONTOURS-IRIS de l'IGN tels que publiés (un fichier retouché, ou de deux éditions "
            "mêlées, en est la cause habituelle)"
        )
    outlines, stats = {}, {}
    before = {maille: _vertices(layer.geometry.to_numpy()) for maille, layer in layers.items()}
    for tolerance, level in levels.iris.items():
        for maille, layer in layers.items():
            if maille == "iris":
                aligned = pd.Series(level, index=levels.codes).reindex(layer["CODE_IRIS"].to_numpy())
            else:
                aligned = levels.unions[(maille, tolerance)].reindex(layer[MAILLES[maille][0]].to_numpy())
            geometries = aligned.to_numpy()
            outlines[(maille, tolerance)] = gpd.GeoSeries(geometries, index=layer.index, crs=layer.crs)
            stats[level_name(maille, tolerance)] = SimplifyStats(
                tolerance_m=tolerance,
                vertices_before=before[maille],
                vertices_after=_vertices(geometries),
                valid_before=True,
                valid_after=bool(levels.valid_after),
            )
    iris_rows = (
        {m: _only_iris_rows(layers["iris"], layer, MAILLES[m][0]) for m, layer in layers.items() if m != "iris"}
        if "iris" in layers
        else {}
    )
    return WebOutlines(outlines=outlines, stats=stats, iris_rows=iris_rows)


def _only_iris_rows(iris: pd.DataFrame, layer: pd.DataFrame, key: str) -> np.ndarray:
    """For each row of `layer`, the row of `iris` of its only IRIS (by `key`), -1 when it has
    several or none."""
    if key not in iris.columns or key not in layer.columns:
        return np.full(len(layer), -1, dtype=np.int64)
    row_of = pd.Series(np.arange(len(iris), dtype=np.int64), index=iris[key].to_numpy())
    row_of = row_of[~row_of.index.duplicated(keep=False)]
    return row_of.reindex(layer[key].to_numpy()).fillna(-1).to_numpy(dtype=np.int64)


def simplify_layers(
    layers: dict[str, gpd.GeoDataFrame], tolerances: Sequence[float], coverage_valid: bool | None = None
) -> WebOutlines:
    """Every maille of `layers` (published layers, projected, `iris` among them) at every
    tolerance: `simplify_iris` then `web_outlines`."""
    return web_outlines(simplify_iris(layers["iris"], tolerances, coverage_valid), layers)

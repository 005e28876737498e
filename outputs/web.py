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
from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from outputs.layers import geojson_geometries
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
    _geojson: dict[tuple[str, float], np.ndarray] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def geojson(self, maille: str, tolerance: float) -> np.ndarray:
        """The GeoJSON text of these outlines, made once for the web layer and the pack."""
        with self._lock:
            if (maille, tolerance) not in self._geojson:
                self._geojson[(maille, tolerance)] = geojson_geometries(self.outlines[(maille, tolerance)])
            return self._geojson[(maille, tolerance)]

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
    here. An invalid coverage is not simplified (`valid_before` False).
    """
    if iris.crs is None or not iris.crs.is_projected:
        raise CoverageError(
            "la simplification demande une projection en mètres (Lambert-93 en métropole, UTM outre-mer)"
        )
    source = iris.geometry.to_numpy()
    valid = bool(shapely.coverage_is_valid(source)) if coverage_valid is None else bool(coverage_valid)
    levels = IrisLevels(valid_before=valid, codes=pd.Index(iris["CODE_IRIS"]))
    if not valid:
        return levels
    level = source
    for tolerance in sorted(tolerances):
        level = shapely.coverage_simplify(level, tolerance)
        levels.iris[tolerance] = level
        for maille, (key, _) in MAILLES.items():
            if key in iris.columns:
                keys, outlines = dissolve_coverage(level, iris[key])
                levels.unions[(maille, tolerance)] = pd.Series(outlines, index=keys)
    # GEOS keeps a valid coverage valid when simplifying it; checked on the last (coarsest)
    # level, which went through every simplification.
    levels.valid_after = bool(shapely.coverage_is_valid(level))
    return levels


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
    return WebOutlines(outlines=outlines, stats=stats)


def simplify_layers(
    layers: dict[str, gpd.GeoDataFrame], tolerances: Sequence[float], coverage_valid: bool | None = None
) -> WebOutlines:
    """Every maille of `layers` (published layers, projected, `iris` among them) at every
    tolerance: `simplify_iris` then `web_outlines`."""
    return web_outlines(simplify_iris(layers["iris"], tolerances, coverage_valid), layers)

"""Simplified web layers: a topology-preserving coverage simplification (methodology §6).

Simplifying each polygon alone opens gaps and overlaps between neighbours; simplifying the
coverage keeps one shared border. Only the IRIS coverage is simplified: communes, EPCI and
départements are the unions of the simplified IRIS, so every maille of one level shares the
very same borders (a commune's outline lies exactly on its IRIS' outlines on the web map).
Each level simplifies the previous one (10 m, then 50 m from the 10 m result), which is both
faster and nested. Validity is checked in Lambert-93.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import geopandas as gpd
import pandas as pd
import shapely

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

    @property
    def finest(self) -> float:
        return min(tolerance for _, tolerance in self.outlines)


def level_name(maille: str, tolerance: float) -> str:
    return f"{maille}_{tolerance:g}m"


class CoverageError(ValueError):
    """The outlines do not form a valid coverage (gaps or overlaps between neighbours)."""


def _vertices(geometries) -> int:
    return int(shapely.get_num_coordinates(geometries).sum())


def simplify_layers(
    layers: dict[str, gpd.GeoDataFrame],
    tolerances: Sequence[float],
    *,
    iris_coverage_valid: bool | None = None,
) -> dict[tuple[str, float], tuple[gpd.GeoSeries, SimplifyStats]]:
    """The outlines of every maille at every tolerance, from one simplification of the IRIS
    coverage per level; each GeoSeries is row-aligned with its layer.

    `layers` holds the published layers, projected, `iris` first among them (only their key
    columns and geometry are used). `iris_coverage_valid` passes on a validity already
    established upstream (the run checks the IRIS coverage once); when None it is checked here.
    An invalid coverage is refused. Validity after simplification is checked on the IRIS; the
    coarser mailles are unions of groups of that valid coverage, hence valid by construction.
    """
    iris = layers["iris"]
    if iris.crs is None or not iris.crs.is_projected:
        raise CoverageError("simplification needs a projected CRS in metres (Lambert-93)")
    source = iris.geometry.to_numpy()
    valid_before = bool(shapely.coverage_is_valid(source)) if iris_coverage_valid is None else iris_coverage_valid
    if not valid_before:
        raise CoverageError("the outlines are not a valid coverage (gaps or overlaps); repair them first")
    before = {maille: _vertices(layer.geometry.to_numpy()) for maille, layer in layers.items()}
    out: dict[tuple[str, float], tuple[gpd.GeoSeries, SimplifyStats]] = {}
    level = source
    for tolerance in sorted(tolerances):
        level = shapely.coverage_simplify(level, tolerance)
        valid_after = bool(shapely.coverage_is_valid(level))
        for maille, layer in layers.items():
            if maille == "iris":
                geometries = level
            else:
                key = MAILLES[maille][0]
                keys, outlines = dissolve_coverage(level, iris[key])
                geometries = pd.Series(outlines, index=keys).reindex(layer[key].to_numpy()).to_numpy()
            stats = SimplifyStats(tolerance_m=tolerance, vertices_before=before[maille],
                                  vertices_after=_vertices(geometries), valid_before=valid_before,
                                  valid_after=valid_after)
            out[(maille, tolerance)] = (gpd.GeoSeries(geometries, index=layer.index, crs=layer.crs), stats)
    return out

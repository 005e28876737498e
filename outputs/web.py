"""Simplified web layers: a topology-preserving coverage simplification (methodology §6).

Simplifying each polygon alone opens gaps and overlaps between neighbours; simplifying the
coverage keeps one shared border. Validity is checked before and after, in Lambert-93.
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import shapely


@dataclass(frozen=True)
class SimplifyStats:
    tolerance_m: float
    vertices_before: int
    vertices_after: int
    valid_before: bool
    valid_after: bool


class CoverageError(ValueError):
    """The outlines do not form a valid coverage (gaps or overlaps between neighbours)."""


def simplify_layer(layer: gpd.GeoDataFrame, tolerance_m: float) -> tuple[gpd.GeoDataFrame, SimplifyStats]:
    """Coverage-simplified copy of a projected layer; refuses an invalid coverage."""
    if layer.crs is None or not layer.crs.is_projected:
        raise CoverageError("simplification needs a projected CRS in metres (Lambert-93)")
    geoms = layer.geometry.to_numpy()
    valid_before = bool(shapely.coverage_is_valid(geoms))
    if not valid_before:
        raise CoverageError("the outlines are not a valid coverage (gaps or overlaps); repair them first")
    simplified = layer.geometry.simplify_coverage(tolerance_m)
    out = layer.copy()
    out.geometry = simplified
    stats = SimplifyStats(
        tolerance_m=tolerance_m,
        vertices_before=int(shapely.get_num_coordinates(geoms).sum()),
        vertices_after=int(shapely.get_num_coordinates(simplified.to_numpy()).sum()),
        valid_before=valid_before,
        valid_after=bool(shapely.coverage_is_valid(simplified.to_numpy())),
    )
    return out, stats

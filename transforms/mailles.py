"""Coarser mailles (methodology §5): communes, EPCI and départements from summed IRIS counts.

Numerators, denominators and census counts are summed, so every rate of a maille is
Σnum / Σden over its IRIS; scores are then computed on those sums by the same methods, never
averaged from IRIS scores. Outlines are the union of the IRIS outlines (a coverage union, so
shared borders vanish cleanly).
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

MAILLES: dict[str, tuple[str, str]] = {
    "communes": ("INSEE_COM", "NOM_COM"),
    "epci": ("EPCI", "NOM_EPCI"),
    "departements": ("DEP", "NOM_DEP"),
}
# Coarser keys each maille keeps (for its reference level).
PARENT_KEYS: dict[str, tuple[str, ...]] = {
    "communes": ("EPCI", "DEP", "REG"),
    "epci": ("DEP", "REG"),
    "departements": ("REG",),
}


def additive_columns(frame: pd.DataFrame) -> list[str]:
    """Columns that add up across IRIS: indicator pairs and census counts."""
    return [c for c in frame.columns if c.endswith(("_num", "_den")) or c.startswith(("P_", "C_"))]


def dissolve_coverage(geometries: np.ndarray, keys: pd.Series) -> tuple[pd.Index, np.ndarray]:
    """Union of the outlines of each key (keys sorted; missing keys left out).

    The outlines form a coverage, so GEOS's coverage union (which only drops the shared edges)
    is exact. A key with one outline keeps it as it is: most communes have a single IRIS, and
    calling GEOS per group was most of the cost of a national run.
    """
    codes, uniques = pd.factorize(keys, sort=True)
    present = np.flatnonzero(codes >= 0)
    codes = codes[present]
    order = present[np.argsort(codes, kind="stable")]
    counts = np.bincount(codes, minlength=len(uniques))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    out = np.empty(len(uniques), dtype=object)
    single = counts == 1
    out[single] = geometries[order[starts[single]]]
    multi = np.flatnonzero(~single)
    if len(multi):
        # One GEOS call for all the groups (a row per group, padded with None) rather than one
        # per group: a Python loop would also hand the GIL back and forth thousands of times.
        group = np.repeat(np.arange(len(uniques)), counts)  # group of each position in `order`
        rank = np.arange(len(order)) - starts[group]
        row = np.full(len(uniques), -1)
        row[multi] = np.arange(len(multi))
        kept = row[group] >= 0
        grid = np.full((len(multi), int(counts[multi].max())), None, dtype=object)
        grid[row[group[kept]], rank[kept]] = geometries[order[kept]]
        out[multi] = shapely.coverage_union_all(grid, axis=1)
    return pd.Index(uniques), out


def aggregate_maille(iris: gpd.GeoDataFrame, maille: str, departement_names: dict[str, str]) -> gpd.GeoDataFrame:
    """One row per commune / EPCI / département with summed counts and dissolved outlines.

    A parent key (an EPCI's département, say) is the one holding most of the population when
    the maille straddles several.
    """
    key, label = MAILLES[maille]
    frame = iris.assign(NOM_DEP=iris["DEP"].map(departement_names).fillna("")) if maille == "departements" else iris
    sums = frame.groupby(key, sort=True)[additive_columns(frame)].sum(min_count=1)
    # A numerator that is missing for every IRIS stays missing; its denominator then is 0.
    out = sums.reset_index()
    for column in (label, "millesime_rp"):
        if column in frame:
            out[column] = frame.groupby(key, sort=True)[column].first().to_numpy()
    weight = frame["P_POP"].fillna(0) if "P_POP" in frame else pd.Series(1.0, index=frame.index)
    for parent in PARENT_KEYS[maille]:
        if parent not in frame:
            continue
        by_pop = (
            pd.DataFrame({key: frame[key], parent: frame[parent], "w": weight})
            .groupby([key, parent], dropna=False)["w"]
            .sum()
            .reset_index()
            .sort_values([key, "w"], ascending=[True, False])
            .drop_duplicates(key)
        )
        out[parent] = out[key].map(by_pop.set_index(key)[parent])
    keys, outlines = dissolve_coverage(frame.geometry.to_numpy(), frame[key])
    if not keys.equals(pd.Index(out[key])):
        raise AssertionError(f"{maille}: outlines and sums are not keyed alike")
    out["n_iris"] = frame.groupby(key, sort=True).size().to_numpy()
    for num in [c for c in out.columns if c.endswith("_num")]:
        ind_id = num[: -len("_num")]
        den = out[f"{ind_id}_den"]
        out[f"{ind_id}_taux"] = (out[num] / den).where(den > 0)
    gdf = gpd.GeoDataFrame(out, geometry=outlines, crs=iris.crs)
    return gdf

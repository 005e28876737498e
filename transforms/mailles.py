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

# The registry of mailles: every module that needs a maille's key or label reads it here.
# Coarser mailles, built from the IRIS: key and label columns.
MAILLES: dict[str, tuple[str, str]] = {
    "communes": ("INSEE_COM", "NOM_COM"),
    "epci": ("EPCI", "NOM_EPCI"),
    "departements": ("DEP", "NOM_DEP"),
}
# Every published maille, finest first, and its key column.
MAILLE_KEYS: dict[str, str] = {"iris": "CODE_IRIS", **{name: key for name, (key, _) in MAILLES.items()}}
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
        carried = carried_flags(frame, key, ind_id, weight)
        for column, values in carried.items():
            out[column] = out[key].map(values).to_numpy()
    gdf = gpd.GeoDataFrame(out, geometry=outlines, crs=iris.crs)
    return gdf


def carried_flags(iris: pd.DataFrame, key: str, ind_id: str, weight: pd.Series) -> dict[str, pd.Series]:
    """What a maille's rate rests on, from its IRIS (each a Series indexed by the maille key):

    - `<id>_couverture`: share of the maille's population living in IRIS that carry the indicator
      (a poverty rate computed on a quarter of the population says so);
    - `<id>_source`: `iris` or `commune` when all those IRIS agree, `mixte` when they mix;
    - `<id>_annee`: the year of the values, or the years joined (`2015, 2017`) when they mix.
    """
    num, den = iris[f"{ind_id}_num"], iris[f"{ind_id}_den"]
    carries = num.notna() & (den > 0)
    groups = iris[key]
    population = weight.groupby(groups).sum()
    covered = weight.where(carries, 0.0).groupby(groups).sum()
    out = {f"{ind_id}_couverture": (covered / population).where(population > 0)}
    for suffix, mixed in (("source", "mixte"), ("annee", None)):
        column = f"{ind_id}_{suffix}"
        if column not in iris:
            continue
        values = iris[column].astype("string").where(carries).replace("", pd.NA)
        by_unit = values.groupby(groups)
        count, first = by_unit.nunique(), by_unit.first().fillna("")
        flag = first.where(count <= 1, mixed or "")
        several = count.index[count > 1]
        if mixed is None and len(several):  # years: list them (a handful of mailles)
            rows = values[groups.isin(several)].dropna()
            flag[several] = rows.groupby(groups[rows.index]).agg(lambda v: ", ".join(sorted(set(v))))
        out[column] = flag.astype(object)
    return out

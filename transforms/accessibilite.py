"""Access of each IRIS to the places of digital mediation: distance, counts, 2SFCA.

Demand stands at premises-weighted points: where ARCEP's building files locate premises in an
IRIS, its points are those premises gathered per 100 m square (`transforms.connectivite.
premises_points`), each carrying its share `poids` of the IRIS's premises (shares summing to 1);
otherwise one point on its surface (`shapely.point_on_surface`, always inside the outline)
carries the whole IRIS. An IRIS's measure is the share-weighted mean of its points' measures
(docs/offre.md). Distances are straight lines in the projected CRS of the part of France
(Lambert-93 in metropolitan France), in km.

Two-step floating catchment area (2SFCA), Luo W., Wang F. (2003), « Measures of spatial
accessibility to health care in a GIS environment: synthesis and a case study in the Chicago
region », Environment and Planning B 30(6), 865–884; with distance decay as in the
« accessibilité potentielle localisée » (APL) of the DREES (Barlet M. et al., 2012, « L'accessibilité
potentielle localisée (APL) : une nouvelle mesure de l'accessibilité aux soins de premier recours »,
Études et Résultats n° 795; documents de travail DREES série études n° 124):

  step 1, for each place j:  R_j = S_j / Σ_{k : d_kj ≤ d0} W(d_kj) · P_k
  step 2, for each point k:  A_k = Σ_{j : d_kj ≤ d0} W(d_kj) · R_j

with S_j = 1 (the schema gives no capacity), P_k the people at risk at point k, d0 the
catchment (`bassin_km`) and W the decay: `aucune` (W = 1, the original 2SFCA), `gaussienne`
(W(d) = (e^{-½(d/d0)²} − e^{-½}) / (1 − e^{-½}), Dai D. 2010, Health & Place 16(5)) or
`paliers` (a weight per distance band, as the APL's 0–10 / 10–15 / 15–20 minute bands weighted
1, 2/3, 1/3). P_k is the IRIS's people at risk times the point's share; A_i of an IRIS is the
share-weighted mean of its points' A_k, published per 10,000 people at risk. Only the territory's IRIS make the demand: a place near the territory's
edge also serves people outside it, so its R_j is overstated there (run on a wider territory
to avoid this edge effect). Pure functions: frames in, frames out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS, Transformer
from scipy.spatial import cKDTree

from config.offre import OffreConfig
from sources.lieux_mediation import PARTS, has_any
from transforms.geo_codes import ARRONDISSEMENT_TO_CITY, departement_code, isin_codes

PER_PEOPLE = 10_000
GAUSS_FLOOR = float(np.exp(-0.5))
BLOCK = 100_000  # demand points per block: with ≈ 100 places within 10 km of each, 10 M pairs (≈ 1 GB)


@dataclass(frozen=True)
class AccessParams:
    """What the measures need from `offre.yaml`."""

    radii_km: tuple[float, ...] = (1, 2, 5, 10)
    catchment_km: float = 10.0
    decay: str = "aucune"
    steps: tuple[tuple[float, float], ...] = ()  # (up to km, weight), increasing
    service_filters: dict[str, list[str]] = field(default_factory=dict)
    public_filters: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: OffreConfig) -> AccessParams:
        return cls(
            radii_km=tuple(config.rayons_km),
            catchment_km=config.bassin_km,
            decay=config.decroissance,
            steps=tuple((s.jusqu_a_km, s.poids) for s in config.paliers),
            service_filters=dict(config.filtres_services),
            public_filters=dict(config.filtres_publics),
        )


def radius_label(km: float) -> str:
    """`offre_n_<r>km` suffix: 5 → `5`, 7.5 → `7_5`."""
    return f"{km:g}".replace(".", "_")


def measure_columns(params: AccessParams) -> list[str]:
    """The per-IRIS columns `accessibility` returns, in order (for the layers' dictionary)."""
    columns = ["offre_demande", "offre_dist_km", *(f"offre_n_{radius_label(r)}km" for r in params.radii_km)]
    columns.append("offre_2sfca")
    for name in [*params.service_filters, *params.public_filters]:
        columns += [f"offre_dist_km_{name}", f"offre_2sfca_{name}"]
    return columns


# --- demand points ---------------------------------------------------------------------------


def iris_points(iris: gpd.GeoDataFrame) -> pd.DataFrame:
    """One demand point per IRIS: a point on its surface, carrying the whole IRIS (`poids` 1)."""
    points = shapely.point_on_surface(np.asarray(iris.geometry.to_numpy()))
    return pd.DataFrame(
        {
            "CODE_IRIS": iris["CODE_IRIS"].astype(str).to_numpy(),
            "x": shapely.get_x(points),
            "y": shapely.get_y(points),
            "poids": 1.0,
        }
    )


def building_points(
    buildings: pd.DataFrame, iris: gpd.GeoDataFrame, surface: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Demand points from located buildings (`CODE_IRIS, x, y, locaux`, in the IRIS's CRS; for
    instance `transforms.connectivite.premises_points`): each point carries its share of its IRIS's
    premises (`poids`); an IRIS of `iris` without premises keeps its point on surface, buildings
    of IRIS not in `iris` are left out. Column `point` says which: `immeubles` or `surface`.
    `surface`: `iris_points(iris)` when the caller already has it (it costs seconds for France)."""
    located = buildings[
        (buildings["locaux"] > 0) & isin_codes(buildings["CODE_IRIS"].astype(str), iris["CODE_IRIS"].astype(str))
    ]
    located = located.assign(CODE_IRIS=located["CODE_IRIS"].astype(str))
    totals = located.groupby("CODE_IRIS")["locaux"].transform("sum")
    located = located.assign(poids=located["locaux"] / totals, point="immeubles")
    fallback = iris_points(iris) if surface is None else surface
    fallback = fallback[~isin_codes(fallback["CODE_IRIS"], located["CODE_IRIS"])].assign(point="surface")
    columns = ["CODE_IRIS", "x", "y", "poids", "point"]
    return pd.concat([located[columns], fallback[columns]], ignore_index=True)


def demand_points(
    iris: gpd.GeoDataFrame, buildings: pd.DataFrame | None, surface: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, dict]:
    """The demand points of the IRIS (ARCEP's buildings where located, else the point on surface)
    and how many IRIS use each: `{"iris_immeubles": N, "iris_point_interieur": M}`. `surface`:
    `iris_points(iris)`, if already computed."""
    surface = iris_points(iris) if surface is None else surface
    points = surface.assign(point="surface") if buildings is None else building_points(buildings, iris, surface)
    per_iris = points.drop_duplicates("CODE_IRIS")["point"].value_counts()
    counts = {
        "iris_immeubles": int(per_iris.get("immeubles", 0)),
        "iris_point_interieur": int(per_iris.get("surface", 0)),
        "points": len(points),
    }
    return points, counts


def demand_sentence(counts: dict) -> str:
    """« points de demande : N IRIS aux immeubles ARCEP, M au point intérieur »."""
    return (
        f"points de demande : {counts['iris_immeubles']} IRIS aux immeubles ARCEP, "
        f"{counts['iris_point_interieur']} au point intérieur"
    )


def commune_points(points: pd.DataFrame, iris: pd.DataFrame, population: pd.Series | None = None) -> pd.DataFrame:
    """A point per commune code (`code, x, y`): the mean of its IRIS's points weighted by their
    population (equal weights without it), where a place known only by its commune is put. Lyon,
    Paris and Marseille are also listed under the city's code, over all their arrondissements."""
    per_iris = points.groupby("CODE_IRIS")[["x", "y"]].mean()
    frame = iris[["CODE_IRIS", "INSEE_COM"]].astype(str).set_index("CODE_IRIS").join(per_iris, how="inner")
    weight = pd.Series(1.0, index=frame.index)
    if population is not None:
        pop = pd.Series(population.to_numpy(dtype="float64"), index=iris["CODE_IRIS"].astype(str)).reindex(frame.index)
        weight = pop.where(pop > 0, 0.0).fillna(0.0)
    frame = frame.assign(w=weight, wx=weight * frame["x"], wy=weight * frame["y"])
    city = frame["INSEE_COM"].map(ARRONDISSEMENT_TO_CITY)
    both = pd.concat([frame.assign(code=frame["INSEE_COM"]), frame[city.notna()].assign(code=city[city.notna()])])
    # Σw·x / Σw per commune, or the plain mean where its IRIS have no population (one pass: a
    # per-commune Python function costs seconds over France's 35,000 communes).
    grouped = both.groupby("code")
    sums = grouped[["w", "wx", "wy", "x", "y"]].sum()
    size = grouped.size().to_numpy(dtype="float64")
    weighted = (sums["w"] > 0).to_numpy()
    total = sums["w"].where(weighted, 1.0).to_numpy()
    return pd.DataFrame(
        {
            "code": sums.index.to_numpy(),
            "x": np.where(weighted, sums["wx"].to_numpy() / total, sums["x"].to_numpy() / size),
            "y": np.where(weighted, sums["wy"].to_numpy() / total, sums["y"].to_numpy() / size),
        }
    )


# --- places ----------------------------------------------------------------------------------


def territory_parts(iris: pd.DataFrame) -> set[str]:
    """The parts of France the IRIS belong to (`metropole`, `971`…)."""
    deps = set(departement_code(iris["INSEE_COM"].astype(str)))
    return {d if d.startswith("97") else "metropole" for d in deps}


def locate_places(
    places: pd.DataFrame, iris: gpd.GeoDataFrame, points: pd.DataFrame, population: pd.Series | None = None
) -> tuple[pd.DataFrame, dict]:
    """The places usable for this territory, with `x, y` in the IRIS's CRS.

    Places of the territory's part(s) of France are kept, inside the territory or not (a place
    across the border is the nearest for some IRIS). A place without usable coordinates is put at
    its commune's point (`localisation = commune`); one whose commune is not in the territory
    cannot be placed and is listed."""
    parts = territory_parts(iris)
    kept = places[places["partie"].isin(parts) | (places["partie"] == "")].copy()
    crs = CRS.from_user_input(iris.crs)
    transformer = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    x, y = transformer.transform(kept["longitude"].to_numpy(), kept["latitude"].to_numpy())
    kept["x"], kept["y"] = np.asarray(x, dtype="float64"), np.asarray(y, dtype="float64")
    communes = commune_points(points, iris, population).set_index("code")
    at_commune = kept["localisation"] == "commune"
    found = at_commune & isin_codes(kept["code_insee"], communes.index)
    kept.loc[found, "x"] = communes["x"].reindex(kept.loc[found, "code_insee"]).to_numpy()
    kept.loc[found, "y"] = communes["y"].reindex(kept.loc[found, "code_insee"]).to_numpy()
    unplaced = kept[at_commune & ~found]
    located = kept[kept["x"].notna() & kept["y"].notna()].reset_index(drop=True)
    minx, miny, maxx, maxy = iris.total_bounds
    inside = located["x"].between(minx, maxx) & located["y"].between(miny, maxy)
    report = {
        "lieux_partie": int(len(kept)),
        "autres_parties": int(len(places) - len(kept)),
        "lieux_places_commune": int(found.sum()),
        "lieux_non_places": [
            {"id": r["id"], "code_insee": r["code_insee"], "raison": "commune hors du territoire, sans coordonnées"}
            for _, r in unplaced.head(200).iterrows()
        ],
        "n_lieux_non_places": int(len(unplaced)),
        "lieux_emprise_territoire": int(inside.sum()),
    }
    return located, report


def place_masks(places: pd.DataFrame, params: AccessParams) -> dict[str, np.ndarray]:
    """For each filter, which places it keeps (any of its services, or of its publics)."""
    masks = {name: has_any(places["services"], values).to_numpy() for name, values in params.service_filters.items()}
    masks |= {
        name: has_any(places["publics_specifiquement_adresses"], values).to_numpy()
        for name, values in params.public_filters.items()
    }
    return masks


# --- measures --------------------------------------------------------------------------------


def decay_weights(d_km: np.ndarray, params: AccessParams) -> np.ndarray:
    """W(d) for distances in km; 0 beyond the catchment."""
    d = np.asarray(d_km, dtype="float64")
    d0 = params.catchment_km
    inside = d <= d0
    if params.decay == "aucune":
        w = np.ones_like(d)
    elif params.decay == "gaussienne":
        w = (np.exp(-0.5 * (d / d0) ** 2) - GAUSS_FLOOR) / (1 - GAUSS_FLOOR)
    elif params.decay == "paliers":
        w = np.zeros_like(d)
        bounds = [b for b, _ in params.steps]
        weights = [p for _, p in params.steps]
        band = np.searchsorted(np.asarray(bounds), d, side="left")  # first bound ≥ d
        in_band = band < len(bounds)
        w[in_band] = np.asarray(weights)[band[in_band]]
    else:
        raise ValueError(f"décroissance inconnue {params.decay!r} (aucune, gaussienne, paliers)")
    return np.where(inside, np.clip(w, 0.0, 1.0), 0.0)


def nearest_km(px: np.ndarray, py: np.ndarray, lx: np.ndarray, ly: np.ndarray) -> np.ndarray:
    """Straight-line distance (km) from each point to its nearest place; NaN without places.
    A k-d tree on the coordinates: no geometry is built (shapely's points cost more than the
    search for France's points)."""
    out = np.full(len(px), np.nan)
    known = np.isfinite(lx) & np.isfinite(ly)
    valid = np.isfinite(px) & np.isfinite(py)
    if not known.any() or not valid.any():
        return out
    tree = cKDTree(np.column_stack([lx[known], ly[known]]))
    dist, _ = tree.query(np.column_stack([px[valid], py[valid]]), k=1)
    out[valid] = dist / 1000.0
    return out


def place_tree(lx: np.ndarray, ly: np.ndarray) -> cKDTree:
    """k-d tree of the places that have coordinates (`pairs_within` maps its indices back)."""
    known = np.isfinite(lx) & np.isfinite(ly)
    return cKDTree(np.column_stack([lx[known], ly[known]]))


def pairs_within(
    px: np.ndarray, py: np.ndarray, places: cKDTree, lx: np.ndarray, ly: np.ndarray, max_km: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(point index, place index, distance km) of every pair at most `max_km` apart, in no
    particular order (`places`: `place_tree(lx, ly)`). Two k-d trees walked together: about four
    times faster than an R-tree of shapely points, with no geometry built."""
    known = np.flatnonzero(np.isfinite(lx) & np.isfinite(ly))
    valid = np.flatnonzero(np.isfinite(px) & np.isfinite(py))
    if len(known) == 0 or len(valid) == 0:
        empty = np.array([], dtype="int64")
        return empty, empty, np.array([], dtype="float64")
    block = cKDTree(np.column_stack([px[valid], py[valid]]))
    found = block.sparse_distance_matrix(places, max_km * 1000.0, output_type="ndarray")
    src = found["i"] if len(valid) == len(px) else valid[found["i"]]
    dst = found["j"] if len(known) == len(lx) else known[found["j"]]
    return src, dst, found["v"] / 1000.0


def blocks(n: int, size: int | None = None) -> list[slice]:
    """Consecutive blocks of `size` points (default `BLOCK`): one block's pairs at a time are in memory."""
    size = size or BLOCK
    return [slice(k, min(k + size, n)) for k in range(0, n, size)] or [slice(0, 0)]


def demand_column(frame: pd.DataFrame, candidates: list[str]) -> str:
    """The first candidate column present with at least one value (the people at risk P_i)."""
    for name in candidates:
        if name in frame.columns and frame[name].notna().any():
            return name
    raise ValueError(
        f"aucune des colonnes de demande {candidates} n'est disponible (colonnes présentes : "
        f"{sorted(c for c in frame.columns if c.startswith('est_'))}) ; ajoutez-en une à `demande` dans config/offre.yaml"
    )


def accessibility(points: pd.DataFrame, demand: pd.Series, places: pd.DataFrame, params: AccessParams) -> pd.DataFrame:
    """Per IRIS: `offre_demande` (P_i), `offre_dist_km`, `offre_n_<r>km`, `offre_2sfca` (places per
    10,000 people at risk) and, per filter, `offre_dist_km_<f>` and `offre_2sfca_<f>`.

    `points`: CODE_IRIS, x, y, poids (shares of the IRIS, summing to 1); `demand`: people at risk
    by CODE_IRIS; `places`: x, y, services, publics_specifiquement_adresses, same CRS as points.
    The points are taken by blocks (`BLOCK`), twice: first the weighted demand in each place's
    catchment (step 1), then each point's measures (step 2); memory stays that of one block's pairs
    whatever the number of points (millions of building points for France).
    """
    codes = pd.Index(pd.unique(points["CODE_IRIS"].astype(str)), name="CODE_IRIS")
    px, py = points["x"].to_numpy("float64"), points["y"].to_numpy("float64")
    share = points["poids"].to_numpy("float64")
    people = demand.groupby(level=0).sum().reindex(points["CODE_IRIS"].astype(str)).fillna(0.0).to_numpy() * share
    lx, ly = places["x"].to_numpy("float64"), places["y"].to_numpy("float64")
    tree = place_tree(lx, ly)
    filters = {"": np.ones(len(places), dtype=bool), **place_masks(places, params)}
    reach = max([params.catchment_km, *params.radii_km])
    parts = blocks(len(px))
    kept: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def pairs(k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Block k's pairs within reach. A single block (a territory) keeps its pairs for step 2;
        with more (France), each step finds them again."""
        if kept:
            return kept.pop()
        found = pairs_within(px[parts[k]], py[parts[k]], tree, lx, ly, reach)
        if len(parts) == 1:
            kept.append(found)
        return found

    # step 1, R_j = S_j / Σ_k W(d_kj)·P_k, S_j = 1 for the places of the filter: a place's
    # catchment does not depend on the filter, which only says whether the place counts (S_j).
    catchment = np.zeros(len(places))
    for k, block in enumerate(parts):
        src, dst, dist = pairs(k)
        inside = dist <= params.catchment_km
        src, dst = src[inside], dst[inside]
        weighted = decay_weights(dist[inside], params) * people[block][src]
        catchment += np.bincount(dst, weights=weighted, minlength=len(places))
    ratio = {
        name: np.divide(1.0, catchment, out=np.zeros(len(places)), where=mask & (catchment > 0))
        for name, mask in filters.items()
    }
    # step 2, per point: nearest place, places within each radius, A_k = Σ_j W(d_kj)·R_j
    columns: dict[str, np.ndarray] = {"offre_dist_km": nearest_km(px, py, lx, ly)}
    for name, mask in filters.items():
        if name:
            columns[f"offre_dist_km_{name}"] = nearest_km(px, py, lx[mask], ly[mask])
    for radius in params.radii_km:
        columns[f"offre_n_{radius_label(radius)}km"] = np.zeros(len(px))
    for name in filters:
        columns["offre_2sfca" + (f"_{name}" if name else "")] = np.zeros(len(px))
    for k, block in enumerate(parts):
        src, dst, dist = pairs(k)
        n = block.stop - block.start
        for radius in params.radii_km:
            close = dist <= radius
            columns[f"offre_n_{radius_label(radius)}km"][block] = np.bincount(src[close], minlength=n)
        inside = dist <= params.catchment_km
        src, dst, weight = src[inside], dst[inside], decay_weights(dist[inside], params)
        for name in filters:
            access = np.bincount(src, weights=weight * ratio[name][dst], minlength=n)
            columns["offre_2sfca" + (f"_{name}" if name else "")][block] = access
    # Σ_k A_k·P_k = Σ_j S_j over the places with demand in their catchment (a check).
    conservation = {"somme_A_P": float(columns["offre_2sfca"] @ people), "lieux_servis": float((ratio[""] > 0).sum())}
    for name in filters:
        columns["offre_2sfca" + (f"_{name}" if name else "")] *= PER_PEOPLE
    per_point = pd.DataFrame(columns).assign(CODE_IRIS=points["CODE_IRIS"].astype(str).to_numpy(), _w=share)
    table = _weighted_mean(per_point, list(columns), codes)
    table.insert(0, "offre_demande", demand.groupby(level=0).sum().reindex(codes).to_numpy(dtype="float64"))
    ordered = [c for c in measure_columns(params) if c in table.columns]
    out = table[ordered].reset_index()
    out.attrs["conservation"] = conservation
    return out


def _weighted_mean(frame: pd.DataFrame, columns: list[str], codes: pd.Index) -> pd.DataFrame:
    """Per IRIS, each column's mean over its points weighted by their share (NaN stays NaN)."""
    out = {}
    for column in columns:
        values = frame[column]
        w = frame["_w"].where(values.notna(), 0.0)
        num = (values.fillna(0.0) * w).groupby(frame["CODE_IRIS"]).sum()
        den = w.groupby(frame["CODE_IRIS"]).sum()
        out[column] = (num / den.where(den > 0)).reindex(codes)
    return pd.DataFrame(out, index=codes)


def part_bounds_check(places: pd.DataFrame) -> pd.Series:
    """Places whose WGS84 coordinates are inside the bounds of their part of France (True), for
    the asset check; places at their commune (no coordinates) count as inside."""
    inside = []
    for part, lat, lon, where in zip(places["partie"], places["latitude"], places["longitude"], places["localisation"]):
        if where == "commune":
            inside.append(True)
            continue
        x0, y0, x1, y1 = PARTS.get(part, (np.nan,) * 4)
        inside.append(bool(x0 <= lon <= x1 and y0 <= lat <= y1))
    return pd.Series(inside, index=places.index, dtype=bool)

"""Access of each IRIS to the places of digital mediation: distance, counts, 2SFCA.

Demand stands at population-weighted points: by default one point per IRIS, a point on its
surface (`shapely.point_on_surface`, always inside the outline) carrying the whole IRIS; a
finer set of points (for instance ARCEP's buildings with their premises) can be given instead,
each with its share `poids` of its IRIS (shares summing to 1 per IRIS). Distances are straight
lines in the projected CRS of the part of France (Lambert-93 in metropolitan France), in km.

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
1, 2/3, 1/3). A_i of an IRIS is the share-weighted mean of its points' A_k, published per
10,000 people at risk. Only the territory's IRIS make the demand: a place near the territory's
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

from config.offre import OffreConfig
from sources.lieux_mediation import PARTS, has_any
from transforms.geo_codes import ARRONDISSEMENT_TO_CITY, departement_code

PER_PEOPLE = 10_000
GAUSS_FLOOR = float(np.exp(-0.5))


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


def building_points(buildings: pd.DataFrame, iris: gpd.GeoDataFrame) -> pd.DataFrame:
    """Demand points from located buildings (`CODE_IRIS, x, y, locaux`, in the IRIS's CRS): each
    building carries its share of its IRIS's premises; an IRIS without premises keeps its point
    on surface."""
    located = buildings[buildings["locaux"] > 0].copy()
    totals = located.groupby("CODE_IRIS")["locaux"].transform("sum")
    located["poids"] = located["locaux"] / totals
    fallback = iris_points(iris)
    fallback = fallback[~fallback["CODE_IRIS"].isin(set(located["CODE_IRIS"]))]
    return pd.concat([located[["CODE_IRIS", "x", "y", "poids"]], fallback], ignore_index=True)


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
    frame = frame.assign(w=weight)
    city = frame["INSEE_COM"].map(ARRONDISSEMENT_TO_CITY)
    both = pd.concat([frame.assign(code=frame["INSEE_COM"]), frame[city.notna()].assign(code=city[city.notna()])])

    def centre(group: pd.DataFrame) -> pd.Series:
        w = group["w"] if group["w"].sum() > 0 else pd.Series(1.0, index=group.index)
        return pd.Series({"x": np.average(group["x"], weights=w), "y": np.average(group["y"], weights=w)})

    return both.groupby("code")[["x", "y", "w"]].apply(centre).reset_index()


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
    found = at_commune & kept["code_insee"].isin(communes.index)
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
    """Straight-line distance (km) from each point to its nearest place; NaN without places."""
    if len(lx) == 0:
        return np.full(len(px), np.nan)
    tree = shapely.STRtree(shapely.points(lx, ly))
    (src, _), dist = tree.query_nearest(shapely.points(px, py), return_distance=True, all_matches=False)
    out = np.full(len(px), np.nan)
    out[src] = dist / 1000.0
    return out


def pairs_within(
    px: np.ndarray, py: np.ndarray, lx: np.ndarray, ly: np.ndarray, max_km: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(point index, place index, distance km) of every pair at most `max_km` apart (R-tree)."""
    if len(lx) == 0 or len(px) == 0:
        empty = np.array([], dtype="int64")
        return empty, empty, np.array([], dtype="float64")
    tree = shapely.STRtree(shapely.points(lx, ly))
    src, dst = tree.query(shapely.points(px, py), predicate="dwithin", distance=max_km * 1000.0)
    dist = np.hypot(px[src] - lx[dst], py[src] - ly[dst]) / 1000.0
    return src, dst, dist


def two_step_fca(
    point: np.ndarray, place: np.ndarray, weight: np.ndarray, demand: np.ndarray, supply: np.ndarray, n_points: int
) -> tuple[np.ndarray, np.ndarray]:
    """(A_k per point, R_j per place) from the pairs within the catchment and their weights.

    A place with no weighted demand in its catchment has R_j = 0: it serves no one of the
    territory (it cannot be reached from any point with people)."""
    weighted = weight * demand[point]
    catchment = np.bincount(place, weights=weighted, minlength=len(supply))
    ratio = np.divide(supply, catchment, out=np.zeros(len(supply)), where=catchment > 0)
    access = np.bincount(point, weights=weight * ratio[place], minlength=n_points)
    return access, ratio


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
    """
    codes = pd.Index(pd.unique(points["CODE_IRIS"].astype(str)), name="CODE_IRIS")
    px, py = points["x"].to_numpy("float64"), points["y"].to_numpy("float64")
    share = points["poids"].to_numpy("float64")
    people = demand.groupby(level=0).sum().reindex(points["CODE_IRIS"].astype(str)).fillna(0.0).to_numpy() * share
    lx, ly = places["x"].to_numpy("float64"), places["y"].to_numpy("float64")
    reach = max([params.catchment_km, *params.radii_km])
    src, dst, dist = pairs_within(px, py, lx, ly, reach)
    columns: dict[str, np.ndarray] = {"offre_dist_km": nearest_km(px, py, lx, ly)}
    for radius in params.radii_km:
        close = dist <= radius
        columns[f"offre_n_{radius_label(radius)}km"] = np.bincount(src[close], minlength=len(px)).astype("float64")
    filters = {"": np.ones(len(places), dtype=bool), **place_masks(places, params)}
    for name, mask in filters.items():
        suffix = f"_{name}" if name else ""
        if name:
            columns[f"offre_dist_km{suffix}"] = nearest_km(px, py, lx[mask], ly[mask])
        keep = mask[dst] & (dist <= params.catchment_km)
        weight = decay_weights(dist[keep], params)
        access, ratio = two_step_fca(src[keep], dst[keep], weight, people, mask.astype("float64"), len(px))
        columns[f"offre_2sfca{suffix}"] = access * PER_PEOPLE
        if not name:
            # Σ_k A_k·P_k = Σ_j S_j over the places with demand in their catchment (a check).
            conservation = {"somme_A_P": float(access @ people), "lieux_servis": float((ratio > 0).sum())}
    per_point = pd.DataFrame(columns).assign(CODE_IRIS=points["CODE_IRIS"].astype(str).to_numpy(), _w=share)
    table = _weighted_mean(per_point, [c for c in columns], codes)
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

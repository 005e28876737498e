"""Group `offre`: each IRIS's access to the places of digital mediation, and the priority zones
where fragile IRIS are far from help (docs/offre.md). The places themselves are a source asset
(group `sources`, defined here with their checks): the national merge reads them too.

`access_table` and `priority_tables` are the chain of the offer, called by the territory's
assets and by the national merge (`pipelines.defs.national.score_merged`).

Without a places file (`inputs.lieux_mediation` and `fichier_local` of config/offre.yaml both
empty) every asset returns None and says « offre de médiation absente »: the rest of the run is
unchanged.
"""

from pathlib import Path

import dagster as dg
import geopandas as gpd
import numpy as np
import pandas as pd

from config.offre import OffreConfig, load_offre
from indice.methods import Scored
from indice.priorite import people_by_priority, priority
from pipelines.reporting import file_metadata, report, table_metadata
from pipelines.resources import FragiliteConfig
from sources.ign_iris import with_crs
from sources.lieux_mediation import read_places
from transforms.accessibilite import (
    AccessParams,
    accessibility,
    demand_column,
    demand_points,
    demand_sentence,
    iris_points,
    locate_places,
    part_bounds_check,
    radius_label,
)
from transforms.indicators import IndicatorResult

GROUP = "offre"
OWNERS = ["team:fragilite-numerique"]
ABSENT = "offre de médiation absente"


def _offre(fragilite: FragiliteConfig) -> OffreConfig:
    """The offer's configuration (config/offre.yaml; read per use so a test can point elsewhere)."""
    del fragilite  # one file for every run, as config/connectivite.yaml
    return load_offre()


@dg.asset(
    group_name="sources",
    kinds={"csv", "pandas"},
    owners=OWNERS,
    tags={"publisher": "ANCT-LaMedNum"},
)
def lieux_mediation(context: dg.AssetExecutionContext, fragilite: FragiliteConfig) -> dg.Output:
    """Lieux de médiation numérique : le fichier national consolidé (ANCT / La MedNum, schéma
    LaMednum/standard-mediation-num) et, si elle est configurée, une liste locale au même schéma qui
    le complète ou le remplace. Une ligne par lieu, doublons retirés (même `id`, puis même `pivot`
    à la même adresse) ; les lignes refusées et les lieux sans coordonnées utilisables (placés à
    leur commune) sont listés dans les métadonnées."""
    offre = _offre(fragilite)
    national, provenance = fragilite.input_file("lieux_mediation")
    places = read_places(national, offre.fichier_local, offre.mode_local)
    if places is None:
        report(context, f"lieux_mediation: {ABSENT} (inputs.lieux_mediation et offre.fichier_local non renseignés)")
        return dg.Output(None, metadata={"fourni": False})
    attrs = places.attrs
    files = [Path(p) for p in attrs["fichiers"]]
    meta = {
        "fourni": True,
        **file_metadata(files[0]),
        **table_metadata(places[["id", "nom", "commune", "code_insee", "services", "localisation"]]),
        "fichiers": dg.MetadataValue.json([{**_plain(file_metadata(f)), "fichier": str(f)} for f in files]),
        "lignes_lues": int(attrs["lignes_lues"]),
        "lieux": len(places),
        "lignes_refusees": int(attrs["n_lignes_refusees"]),
        "lieux_places_a_la_commune": int(attrs["n_sans_coordonnees"]),
        "doublons_retires": int(attrs["n_doublons"]),
        "detail_refus": dg.MetadataValue.json(attrs["lignes_refusees"][:200]),
        "detail_sans_coordonnees": dg.MetadataValue.json(attrs["sans_coordonnees"][:200]),
        "detail_doublons": dg.MetadataValue.json(attrs["doublons"][:200]),
    }
    if "url" in provenance:
        meta["url_source"] = dg.MetadataValue.url(provenance["url"])
    if attrs["n_lignes_refusees"]:
        context.log.warning(f"lieux_mediation: {attrs['n_lignes_refusees']} ligne(s) refusée(s), détail en métadonnées")
    report(
        context,
        f"lieux_mediation: {len(places)} lieux ({attrs['n_sans_coordonnees']} placés à leur commune, "
        f"{attrs['n_lignes_refusees']} ligne(s) refusée(s), {attrs['n_doublons']} doublon(s) retiré(s))",
    )
    return dg.Output(places, metadata=meta)


def _plain(meta: dict) -> dict:
    return {k: (str(v.path) if isinstance(v, dg.PathMetadataValue) else v) for k, v in meta.items()}


@dg.asset_check(
    asset="lieux_mediation",
    description="Les lieux suivent le schéma national : aucune ligne refusée (id ou nom vide, ligne mal formée, "
    "lieu impossible à situer) et aucun écart de format (code postal, code INSEE, date). Avertissement seulement.",
)
def lieux_schema(lieux_mediation: pd.DataFrame | None) -> dg.AssetCheckResult:
    if lieux_mediation is None:
        return dg.AssetCheckResult(passed=True, metadata={"offre": ABSENT})
    attrs = lieux_mediation.attrs
    return dg.AssetCheckResult(
        passed=attrs["n_lignes_refusees"] == 0 and attrs["n_ecarts_schema"] == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "lignes_refusees": int(attrs["n_lignes_refusees"]),
            "ecarts_schema": int(attrs["n_ecarts_schema"]),
            "colonnes_absentes": dg.MetadataValue.json(attrs["colonnes_absentes"]),
            "premiers_refus": dg.MetadataValue.json(attrs["lignes_refusees"][:20]),
            "premiers_ecarts": dg.MetadataValue.json(attrs["ecarts_schema"][:20]),
        },
    )


@dg.asset_check(
    asset="lieux_mediation",
    description="Chaque lieu a des coordonnées WGS84 dans les limites de sa partie de la France, ou est signalé "
    "« localisation = commune » avec un code INSEE valide.",
)
def lieux_coordonnees(lieux_mediation: pd.DataFrame | None) -> dg.AssetCheckResult:
    if lieux_mediation is None:
        return dg.AssetCheckResult(passed=True, metadata={"offre": ABSENT})
    inside = part_bounds_check(lieux_mediation)
    at_commune = lieux_mediation["localisation"] == "commune"
    no_code = at_commune & (lieux_mediation["code_insee"] == "")
    return dg.AssetCheckResult(
        passed=bool(inside.all()) and not no_code.any(),
        metadata={
            "hors_limites": lieux_mediation.loc[~inside, "id"].head(20).tolist(),
            "a_la_commune_sans_code": lieux_mediation.loc[no_code, "id"].head(20).tolist(),
            "places_a_la_commune": int(at_commune.sum()),
            "coordonnees_inversees_corrigees": len(lieux_mediation.attrs.get("coordonnees_inversees", [])),
        },
    )


@dg.asset_check(
    asset="lieux_mediation",
    description="Aucun lieu en double après dédoublonnage (identifiant `id` unique).",
)
def lieux_doublons(lieux_mediation: pd.DataFrame | None) -> dg.AssetCheckResult:
    if lieux_mediation is None:
        return dg.AssetCheckResult(passed=True, metadata={"offre": ABSENT})
    dupes = lieux_mediation["id"].duplicated(keep=False)
    return dg.AssetCheckResult(
        passed=not dupes.any(),
        metadata={
            "id_en_double": lieux_mediation.loc[dupes, "id"].head(20).tolist(),
            "doublons_retires": int(lieux_mediation.attrs.get("n_doublons", 0)),
        },
    )


def _territory_iris(iris_indicateurs: IndicatorResult) -> gpd.GeoDataFrame:
    frame = iris_indicateurs.frame
    return frame if frame.crs is not None else with_crs(frame)


def access_table(
    offre: OffreConfig,
    iris: gpd.GeoDataFrame,
    scores: pd.DataFrame,
    places: pd.DataFrame,
    buildings: pd.DataFrame | None,
) -> pd.DataFrame:
    """The accessibility of every IRIS of `iris` (outlines with census counts, one CRS) whose
    scores (`scores`, same index) give the people at risk; demand at the located premises of
    ARCEP's buildings (`buildings`: CODE_IRIS, x, y, locaux) where present, else at a point on
    surface. `attrs`: the demand column, the demand points, the parameters, where the places
    were put, the 2SFCA conservation."""
    params = AccessParams.from_config(offre)
    frame = pd.concat([pd.DataFrame(iris.drop(columns="geometry")), scores], axis=1)
    column = demand_column(frame, offre.demande)
    demand = pd.Series(frame[column].to_numpy(dtype="float64"), index=frame["CODE_IRIS"].astype(str))
    surface = iris_points(iris)  # computed once: seconds for France
    points, counts = demand_points(iris, buildings, surface)
    population = frame["P_POP"] if "P_POP" in frame else None
    # Places without coordinates go to their commune's centre of the IRIS's points on surface,
    # as on the published places layer (`outputs.places_published`).
    located, placed = locate_places(places, iris, surface, population)
    table = accessibility(points, demand, located, params)
    table.attrs.update(
        {
            "demande_colonne": column,
            "points_demande": demand_sentence(counts),
            "points_demande_iris": counts,
            "parametres": _parameters(offre),
            "placement": placed,
            "lieux_utilises": len(located),
            **table.attrs,
        }
    )
    return table


def priority_tables(
    offre: OffreConfig, iris: pd.DataFrame, scores: pd.DataFrame, access: pd.DataFrame
) -> dict[str, pd.DataFrame] | None:
    """Priority classes per IRIS and the people at risk by class per commune and EPCI
    (`{"iris", "communes", "epci"}`); None when the fragility column was not computed."""
    config = offre.priorite
    frame = pd.concat([pd.DataFrame(iris)[["CODE_IRIS", "INSEE_COM", "EPCI"]], scores], axis=1)
    frame = frame.merge(access, on="CODE_IRIS", how="left", validate="one_to_one")
    if config.fragilite.colonne not in frame:
        return None
    classes = priority(frame, config)
    iris_table = pd.concat([frame[["CODE_IRIS", "INSEE_COM", "EPCI", "offre_demande"]], classes], axis=1)
    iris_table.attrs["seuils"] = classes.attrs["seuils"]
    return {
        "iris": iris_table,
        "communes": people_by_priority(iris_table, "INSEE_COM"),
        "epci": people_by_priority(iris_table.dropna(subset=["EPCI"]), "EPCI"),
    }


@dg.asset(
    group_name=GROUP,
    kinds={"pandas"},
    owners=OWNERS,
    tags={"maille": "iris"},
)
def iris_accessibilite(
    context: dg.AssetExecutionContext,
    fragilite: FragiliteConfig,
    iris_indicateurs: IndicatorResult,
    iris_scores: Scored,
    lieux_mediation: pd.DataFrame | None,
    points_batiments: pd.DataFrame | None,
) -> dg.Output:
    """Accès de chaque IRIS aux lieux de médiation numérique, à vol d'oiseau depuis les immeubles
    de l'IRIS (fichiers de l'ARCEP, pondérés par leurs locaux) ou, sans immeubles, depuis un point
    intérieur : distance au lieu le plus proche (tous lieux et par filtre de services ou de
    publics), nombre de lieux dans chaque rayon, et accessibilité potentielle à deux étapes (2SFCA,
    Luo et Wang 2003, décroissance comme l'APL de la DREES) en lieux pour 10 000 personnes à risque."""
    if lieux_mediation is None:
        report(context, f"iris_accessibilite: {ABSENT} ; accessibilité non calculée")
        return dg.Output(None, metadata={"fourni": False})
    offre = _offre(fragilite)
    params = AccessParams.from_config(offre)
    table = access_table(offre, _territory_iris(iris_indicateurs), iris_scores.table, lieux_mediation, points_batiments)
    attrs = table.attrs
    column, placed, counts = attrs["demande_colonne"], attrs["placement"], attrs["points_demande_iris"]
    if column != offre.demande[0]:
        context.log.warning(f"iris_accessibilite: demande = {column} ({offre.demande[0]} absente)")
    if placed["n_lieux_non_places"]:
        context.log.warning(
            f"iris_accessibilite: {placed['n_lieux_non_places']} lieu(x) sans coordonnées hors du territoire"
        )
    reached = int((table["offre_n_" + radius_label(max(params.radii_km)) + "km"] > 0).sum())
    report(
        context,
        f"iris_accessibilite: {len(table)} IRIS, {placed['lieux_emprise_territoire']} lieux sur l'emprise du territoire, "
        f"distance médiane {table['offre_dist_km'].median():.1f} km, demande = {column} ; "
        + table.attrs["points_demande"],
    )
    return dg.Output(
        table,
        metadata={
            **table_metadata(table),
            "demande": column,
            "points_demande": table.attrs["points_demande"],
            "iris_points_immeubles": counts["iris_immeubles"],
            "iris_point_interieur": counts["iris_point_interieur"],
            "points_de_demande": counts["points"],
            "lieux_utilises": table.attrs["lieux_utilises"],
            "lieux_places_a_la_commune": placed["lieux_places_commune"],
            "lieux_non_places": placed["n_lieux_non_places"],
            f"iris_avec_un_lieu_a_{radius_label(max(params.radii_km))}_km": reached,
            "distance_mediane_km": float(table["offre_dist_km"].median()),
            "parametres": dg.MetadataValue.json(_parameters(offre)),
            "conservation_2sfca": dg.MetadataValue.json(table.attrs.get("conservation", {})),
        },
    )


def _parameters(offre: OffreConfig) -> dict:
    return {
        "bassin_km": offre.bassin_km,
        "decroissance": offre.decroissance,
        "paliers": [s.model_dump() for s in offre.paliers] if offre.decroissance == "paliers" else [],
        "rayons_km": offre.rayons_km,
        "filtres_services": offre.filtres_services,
        "filtres_publics": offre.filtres_publics,
    }


@dg.asset_check(
    asset="iris_accessibilite",
    description="Mesures plausibles : distances et accessibilités positives, nombre de lieux croissant avec le "
    "rayon, et conservation du 2SFCA (Σ A_i·P_i = nombre de lieux ayant une demande dans leur bassin).",
)
def accessibilite_coherente(iris_accessibilite: pd.DataFrame | None) -> dg.AssetCheckResult:
    if iris_accessibilite is None:
        return dg.AssetCheckResult(passed=True, metadata={"offre": ABSENT})
    table = iris_accessibilite
    measures = table.filter(regex=r"^offre_(dist_km|2sfca|n_)").to_numpy(dtype="float64")
    negative = int(np.nansum(measures < 0))
    counts = table.filter(regex=r"^offre_n_").to_numpy(dtype="float64")
    monotone = bool((np.diff(counts, axis=1) >= 0).all()) if counts.shape[1] > 1 else True
    conservation = table.attrs.get("conservation", {})
    gap = abs(conservation.get("somme_A_P", 0.0) - conservation.get("lieux_servis", 0.0))
    return dg.AssetCheckResult(
        passed=negative == 0 and monotone and gap <= 1e-6 * max(1.0, conservation.get("lieux_servis", 0.0)),
        metadata={
            "valeurs_negatives": negative,
            "comptes_croissants": monotone,
            "conservation": dg.MetadataValue.json(conservation),
        },
    )


@dg.asset(
    group_name=GROUP,
    kinds={"pandas"},
    owners=OWNERS,
    tags={"maille": "iris-commune-epci"},
)
def iris_priorite(
    context: dg.AssetExecutionContext,
    fragilite: FragiliteConfig,
    iris_indicateurs: IndicatorResult,
    iris_scores: Scored,
    iris_accessibilite: pd.DataFrame | None,
) -> dg.Output:
    """Zones prioritaires : croisement de la classe de fragilité (score global) et de la classe
    d'accessibilité (2SFCA) de chaque IRIS — `forte` = fragile et loin de l'offre — et personnes à
    risque de chaque classe par commune et par EPCI."""
    if iris_accessibilite is None:
        report(context, f"iris_priorite: {ABSENT} ; zones prioritaires non calculées")
        return dg.Output(None, metadata={"fourni": False})
    offre = _offre(fragilite)
    config = offre.priorite
    iris = pd.DataFrame(iris_indicateurs.frame.drop(columns="geometry"))
    out = priority_tables(offre, iris, iris_scores.table, iris_accessibilite)
    if out is None:
        report(
            context, f"iris_priorite: colonne {config.fragilite.colonne} absente (méthode non retenue) ; non calculé"
        )
        return dg.Output(None, metadata={"fourni": False, "raison": f"{config.fragilite.colonne} absente"})
    iris_table = out["iris"]
    counts = iris_table["priorite"].value_counts().to_dict()
    forte = iris_table.loc[iris_table["priorite"] == "forte", "offre_demande"].sum()
    report(
        context,
        "iris_priorite: "
        + ", ".join(f"{counts.get(k, 0)} IRIS {k}" for k in ("forte", "moyenne", "faible"))
        + f" ; {forte:.0f} personnes à risque en priorité forte",
    )
    return dg.Output(
        out,
        metadata={
            **table_metadata(iris_table),
            "iris_par_priorite": dg.MetadataValue.json({str(k): int(v) for k, v in counts.items()}),
            "personnes_priorite_forte": float(forte),
            "seuils": dg.MetadataValue.json(iris_table.attrs["seuils"]),
            "matrice": dg.MetadataValue.json(config.matrice),
            "lignes_communes": len(out["communes"]),
            "lignes_epci": len(out["epci"]),
        },
    )

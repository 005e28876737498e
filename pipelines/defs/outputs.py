"""Group `outputs`: every published file, made by the multi-asset `sorties`, and the simplified
outlines they are drawn on (`contours_simplifies`, made while the indicators are scored).

The assets stay distinct in the UI (a layer per maille, the dictionary, the web outlines and
layers, the Geoclip pack, QGIS styles, maps, report), each with its description, metadata and
checks, and each can be materialized alone; one step produces them because their work overlaps
on two cores. Writing layers, simplifying outlines (GEOS) and formatting tables (DuckDB, Arrow,
GDAL, zlib) release the GIL and run on worker threads; maps and report draw on the step's own
thread (matplotlib is not thread-safe). Everything is written under one output lock, each file
atomically.
"""

import shutil
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from config.offre import load_offre
from config.settings import load_publication
from indice.mednum import GROUP_COLUMN, Reference
from indice.methods import Scored, score_all
from indice.priorite import CLASS_COLUMNS
from outputs.dictionary import RunContext, column_texts, data_dictionary, write_dictionary
from outputs.disclosure import apply_secret, blank_codes
from outputs.files import output_transaction, write_all
from outputs.geoclip import pack_tables
from outputs.layers import build_layer, places_layer, with_columns, write_layer
from outputs.web import WebOutlines, levels_frame, simplify_iris
from pipelines.definitions import run_tags
from pipelines.defs import publication as pub
from pipelines.defs.indice import (
    SECRET_KEYS,
    caf_indicator_ids,
    method_label,
    method_params,
    rescored_where,
    scored_indicators,
)
from pipelines.reporting import report, table_metadata
from pipelines.resources import FragiliteConfig
from transforms.accessibilite import iris_points, locate_places
from transforms.chain import study_rows
from transforms.geo_codes import ARRONDISSEMENT_TO_CITY, city_code
from transforms.indicators import IndicatorResult
from transforms.mailles import MAILLE_KEYS, aggregate_maille

GROUP = "outputs"
OWNERS = ["team:fragilite-numerique"]
MAILLES = tuple(MAILLE_KEYS)  # iris, communes, epci, departements (transforms.mailles)
LABELS = {
    "iris": "IRIS",
    "communes": "communes (arrondissements pour Paris, Lyon, Marseille)",
    "epci": "EPCI",
    "departements": "départements",
}
LAYER_ASSETS = [f"couche_{m}" for m in MAILLES]
PLACES_LAYER = pub.PLACES_LAYER
PLACES_ASSET = f"couche_{PLACES_LAYER}"
OFFER_ASSETS = ("lieux_mediation", "iris_accessibilite", "iris_priorite")
# The cities whose IRIS data come by municipal arrondissement (transforms.geo_codes).
CITY_NAMES = {"75056": "Paris", "13055": "Marseille", "69123": "Lyon"}


def published_layer(
    fragilite: FragiliteConfig,
    maille: str,
    table: gpd.GeoDataFrame,
    scored: Scored,
    vintages: dict[str, str] | None,
    run_id: str,
    secret: set[str] = frozenset(),
) -> tuple[gpd.GeoDataFrame, dict]:
    """A maille's layer in contract order, CAF secret applied (primary, and the units of `secret`
    blanked across mailles by `protect_caf`), and its run information."""
    settings = fragilite.settings
    indicator_ids = [c[: -len("_num")] for c in table.columns if c.endswith("_num")]
    millesime = int(table["millesime_rp"].iloc[0])
    reference = scored.metadata.get("reference", settings.run.reference)
    layer = build_layer(
        maille,
        table,
        scored.table,
        indicator_ids,
        methode=method_label(settings),
        reference=reference,
        millesime_rp=millesime,
    )
    # Published layers keep the secret statistique too (no CAF count under 5, nothing recoverable).
    caf = caf_indicator_ids(fragilite)
    layer = apply_secret(layer, caf, load_publication().secret_threshold)
    layer = blank_codes(layer, caf, SECRET_KEYS[maille], set(secret))
    info = {
        "maille": maille,
        "territoire": settings.run.territory_label,
        "selection": settings.run.territory or "toutes les IRIS des fichiers d'entrée",
        "methodes": settings.run.methods,
        "methode": method_label(settings),
        "reference": reference,
        "millesime_rp": millesime,
        "millesimes": vintages or {},
        "indicateurs": indicator_ids,
        "date_calcul": datetime.now(UTC).isoformat(timespec="seconds"),
        "sources": {k: Path(v).name for k, v in settings.input_paths().items()},
        "details_methodes": scored.metadata,
        "run_id": run_id,
    }
    return layer, info


def couche(out: Path, maille: str, layer: gpd.GeoDataFrame, info: dict, dictionary: Callable[[], pd.DataFrame]) -> dict:
    """`layers/<maille>.parquet`, `.gpkg`, `.metadata.json`; the asset's metadata, its columns
    described by `dictionary()` (the data dictionary, still in the making while the files are
    written)."""
    sizes = write_layer(layer, out / "layers", maille, info)
    minx, miny, maxx, maxy = layer.total_bounds
    return {
        **table_metadata(layer, descriptions=column_texts(dictionary())),
        "crs": str(layer.crs),
        "bbox": [round(float(v), 1) for v in (minx, miny, maxx, maxy)],
        "fichiers": pub.sizes_metadata(sizes),
        "dossier": dg.MetadataValue.path(str(out / "layers")),
        "methodes": info["methodes"],
        "reference": info["reference"],
        "millesime_rp": info["millesime_rp"],
    }


def couche_lieux(out: Path, layer: gpd.GeoDataFrame, info: dict, dictionary: pd.DataFrame) -> dict:
    """`layers/lieux_mediation.parquet`, `.gpkg`, `.metadata.json`; the asset's metadata."""
    sizes = write_layer(layer, out / "layers", PLACES_LAYER, info)
    return {
        **table_metadata(layer, descriptions=column_texts(dictionary)),
        "crs": str(layer.crs),
        "lieux": info["lieux"],
        "lieux_places_a_la_commune": info["lieux_places_a_la_commune"],
        "lieux_non_places": info["n_lieux_non_places"],
        "fichiers": pub.sizes_metadata(sizes),
        "dossier": dg.MetadataValue.path(str(out / "layers")),
    }


def city_layer(
    fragilite: FragiliteConfig,
    iris: gpd.GeoDataFrame,
    communes: gpd.GeoDataFrame,
    vintages: dict[str, str] | None,
    run_id: str,
    secret: set[str] = frozenset(),
) -> gpd.GeoDataFrame | None:
    """Paris, Lyon and Marseille as whole communes, in the communes layer's shape: counts summed
    over their arrondissements' IRIS (`aggregate_maille`), rates from those sums, and scores from
    the same methods and reference as every commune (scored among the communes with each city in
    place of its arrondissements: the reference sums are the same). A city under the CAF secret
    (`secret`, from `protect_caf`) is blanked and scored without the CAF indicator. None without
    such a city."""
    in_city = iris["INSEE_COM"].isin(list(ARRONDISSEMENT_TO_CITY))
    if not in_city.any():
        return None
    whole = iris[in_city].assign(INSEE_COM=city_code(iris.loc[in_city, "INSEE_COM"]))
    whole["NOM_COM"] = whole["INSEE_COM"].map(CITY_NAMES)
    cities = aggregate_maille(whole, "communes", fragilite.departement_names)
    others = communes[~communes["INSEE_COM"].isin(list(ARRONDISSEMENT_TO_CITY))]
    frame = pd.DataFrame(pd.concat([others, cities], ignore_index=True).drop(columns="geometry"))
    params = method_params(fragilite, frame)
    column = GROUP_COLUMN.get(params.reference.level)
    if column and column not in frame:  # as `mailles_scores` does
        params = replace(params, reference=Reference("territoire"))
    indicators = scored_indicators(fragilite, frame)
    scored = score_all(frame, indicators, params)
    hidden = frame["INSEE_COM"].astype(str).isin(set(secret))
    caf = caf_indicator_ids(fragilite)
    scored = rescored_where(
        scored, hidden, lambda: score_all(frame, [i for i in indicators if i.id not in caf], params)
    )
    rows = frame.index[len(others) :]
    part = Scored(scored.table.loc[rows], scored.references.loc[rows], {"reference": params.reference.level})
    return published_layer(fragilite, "communes", cities, part, vintages, run_id, secret)[0]


def dictionnaire(
    fragilite: FragiliteConfig,
    tables: dict[str, list[pd.DataFrame]],
    millesime_rp: int,
    vintages: dict[str, str],
    access: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per published column of every table (layers and pack, by maille; the places of
    mediation), in words; the `tables` column says which tables hold it."""
    settings = fragilite.settings
    run = RunContext(
        millesime_rp=millesime_rp,
        vintages=vintages,
        methode=method_label(settings),
        reference=settings.run.reference,
        offre_demande=access.attrs.get("demande_colonne", "") if access is not None else "",
        offre_filtres=offer_filters() if access is not None else {},
    )
    where: dict[str, list[str]] = {}
    for maille, frames in tables.items():
        for frame in frames:
            for column in frame.columns:
                if column not in ("geometry", "bbox") and maille not in where.setdefault(str(column), []):
                    where[str(column)].append(maille)
    dictionary = data_dictionary(list(where), fragilite.catalogue, fragilite.tic, run)
    dictionary["tables"] = dictionary["code"].map(lambda c: ", ".join(where[c]))
    return dictionary


def offer_filters() -> dict[str, str]:
    """Each filter of the offer (config/offre.yaml) in words, for the dictionary."""
    offre = load_offre()
    return {
        **{name: "services : " + ", ".join(values) for name, values in offre.filtres_services.items()},
        **{name: "publics : " + ", ".join(values) for name, values in offre.filtres_publics.items()},
    }


def with_offer(
    built: dict[str, tuple[gpd.GeoDataFrame, dict]], access: pd.DataFrame | None, priority: dict | None
) -> dict[str, tuple[gpd.GeoDataFrame, dict]]:
    """The layers with the offer of mediation: the IRIS get the `offre_*` measures and the
    priority classes, the communes and EPCI the people at risk by priority class (before the
    geometry; every other column in contract order). Unchanged without the offer."""
    out = dict(built)
    iris, info = out["iris"]
    if access is not None:
        iris = with_columns(iris, access, "CODE_IRIS")
    if priority is not None:
        iris = with_columns(iris, priority["iris"][["CODE_IRIS", *CLASS_COLUMNS]], "CODE_IRIS")
        for maille, key in (("communes", "INSEE_COM"), ("epci", "EPCI")):
            if maille not in out:  # the national merge publishes the IRIS layer only
                continue
            layer, layer_info = out[maille]
            out[maille] = (with_columns(layer, priority[maille], key), layer_info)
    out["iris"] = (iris, info)
    return out


def city_priority(cities: gpd.GeoDataFrame | None, by_commune: pd.DataFrame | None) -> gpd.GeoDataFrame | None:
    """Paris, Lyon and Marseille rows with the people at risk by priority class summed over their
    arrondissements, the share in `forte` recomputed on those sums."""
    if cities is None or by_commune is None:
        return cities
    counts = by_commune.drop(columns=["part_personnes_priorite_forte"])
    counts = counts.assign(INSEE_COM=city_code(counts["INSEE_COM"].astype(str)))
    sums = counts[counts["INSEE_COM"].isin(set(cities["INSEE_COM"]))].groupby("INSEE_COM", as_index=False).sum()
    people = sums.filter(regex=r"^personnes_").sum(axis=1)
    sums["part_personnes_priorite_forte"] = sums["personnes_priorite_forte"] / people.where(people > 0)
    return with_columns(cities, sums, "INSEE_COM")


def places_published(
    places: pd.DataFrame | None, iris: gpd.GeoDataFrame, run_id: str, territory: str
) -> tuple[gpd.GeoDataFrame, dict] | None:
    """The places layer (points in the layers' CRS) and its run information: the places of the
    territory's part(s) of France, put where the accessibility measures put them
    (`transforms.accessibilite.locate_places`)."""
    if places is None:
        return None
    population = iris["P_POP"] if "P_POP" in iris else None
    located, placed = locate_places(places, iris, iris_points(iris), population)
    layer = places_layer(located, iris.crs)
    info = {
        "couche": PLACES_LAYER,
        "territoire": territory,
        "lieux_lus": len(places),
        "lieux": len(layer),
        "lieux_places_a_la_commune": int((layer["localisation"] == "commune").sum()),
        "lieux_autres_parties": placed["autres_parties"],
        "lieux_non_places": placed["lieux_non_places"],
        "n_lieux_non_places": placed["n_lieux_non_places"],
        "fichiers": [Path(f).name for f in places.attrs.get("fichiers", [])],
        "date_calcul": datetime.now(UTC).isoformat(timespec="seconds"),
        "run_id": run_id,
    }
    return layer, info


def places_check(layer: gpd.GeoDataFrame | None, info: dict | None) -> dg.AssetCheckResult:
    """Every place read is on the layer, or listed as out of the territory's part of France or
    impossible to place; one point per `id`, each a finite point."""
    accounted = info["lieux"] + info["lieux_autres_parties"] + info["n_lieux_non_places"]
    finite = bool(layer.geometry.notna().all() and (~layer.geometry.is_empty).all())
    finite = finite and bool(np.isfinite(layer.geometry.x).all() and np.isfinite(layer.geometry.y).all())
    unique = bool(layer["id"].is_unique)
    return dg.AssetCheckResult(
        asset_key=PLACES_ASSET,
        check_name="lieux_publies",
        passed=accounted == info["lieux_lus"] and finite and unique,
        metadata={
            "lieux_lus": info["lieux_lus"],
            "points_publies": info["lieux"],
            "autres_parties": info["lieux_autres_parties"],
            "non_places": info["n_lieux_non_places"],
            "points_valides": finite,
            "id_uniques": unique,
        },
    )


def places_absent() -> dg.AssetCheckResult:
    """Without a places file there is no places layer: nothing to check (a check every run
    reports, so the step's outputs are the same with and without the offer)."""
    return dg.AssetCheckResult(
        asset_key=PLACES_ASSET, check_name="lieux_publies", passed=True, metadata={"offre": pub.OFFER_ABSENT}
    )


# The dictionary's own columns, in the dictionary's words.
DICTIONARY_WORDS = pd.DataFrame(
    [
        ("code", "Nom de la colonne", "Nom exact de la colonne dans les tables", "texte"),
        ("libelle", "Libellé", "Ce que contient la colonne, en clair", "texte"),
        ("definition", "Définition", "Mode de calcul ou contenu", "texte"),
        ("unite", "Unité", "Unité des valeurs", "texte"),
        ("source", "Source", "Producteur et fichier d'origine", "texte"),
        ("millesime", "Millésime", "Année des données (COG : année de la géographie des codes)", "texte"),
        ("maille_source", "Maille de la source", "Maille à laquelle la source donne la valeur", "texte"),
        ("methode", "Méthode", "Méthode de calcul des scores", "texte"),
        ("reference", "Référence", "Territoire de référence des scores", "texte"),
        ("note", "Note", "Mises en garde", "texte"),
        ("tables", "Tables", "Mailles dont les tables ont cette colonne", "texte"),
    ],
    columns=["code", "libelle", "definition", "unite"],
)


def _spec(
    key: str,
    kinds: set[str],
    deps: list[str],
    description: str,
    maille: str = "iris-commune-epci-departement",
    skippable: bool = False,
) -> dg.AssetSpec:
    return dg.AssetSpec(
        key,
        group_name=GROUP,
        kinds=kinds,
        owners=OWNERS,
        deps=deps,
        description=description,
        tags={"maille": maille},
        skippable=skippable,
    )


LAYER_DEPS = {
    "iris": ["iris_indicateurs", "scores_publies", "iris_accessibilite", "iris_priorite"],
    "communes": ["mailles", "scores_publies", "iris_priorite"],
    "epci": ["mailles", "scores_publies", "iris_priorite"],
    "departements": ["mailles", "scores_publies"],
}


def _specs() -> list[dg.AssetSpec]:
    """The assets of `sorties` (built in a function: a module-level spec would be loaded as an
    asset of its own)."""
    layers = [
        _spec(
            f"couche_{m}",
            {"geoparquet", "geopackage"},
            LAYER_DEPS[m],
            f"Couche des {LABELS[m]} : `layers/{m}.parquet` (GeoParquet 1.1, Lambert-93, colonne bbox), "
            f"`{m}.gpkg` (QGIS) et `{m}.metadata.json` (méthodes, référence, millésimes, date), contours "
            "complets. "
            + (
                "Indicateurs de chaque IRIS et scores de toutes les méthodes retenues. "
                if m == "iris"
                else "Indicateurs recalculés sur les sommes de leurs IRIS, scores de toutes les méthodes "
                "retenues avec la même référence que les IRIS. "
            )
            + (
                "Avec un fichier de lieux de médiation : mesures d'accès à l'offre (`offre_*`) et classes de "
                "priorité (`classe_fragilite`, `classe_accessibilite`, `priorite`). "
                if m == "iris"
                else "Avec un fichier de lieux de médiation : personnes à risque et IRIS de chaque classe de "
                "priorité (`personnes_priorite_forte`…). "
                if m in ("communes", "epci")
                else ""
            )
            + "Écrits sous un nom temporaire puis renommés : un échec ne laisse jamais de fichier partiel ni "
            "n'écrase la couche précédente.",
            maille=m,
        )
        for m in MAILLES
    ]
    return [
        *layers,
        _spec(
            PLACES_ASSET,
            {"geoparquet", "geopackage"},
            ["lieux_mediation", "iris_indicateurs"],
            "Couche des lieux de médiation numérique : `layers/lieux_mediation.parquet` (GeoParquet 1.1), "
            "`.gpkg` (QGIS) et `.metadata.json` : un point par lieu dans la projection des couches, depuis ses "
            "coordonnées WGS84, ou au centre de population de sa commune (`localisation = commune`) quand le "
            "fichier n'en donne pas d'utilisables ; identifiant, nom, commune, typologie, services, publics, "
            "dispositifs nationaux, source. Non matérialisée sans fichier de lieux (offre de médiation absente).",
            maille="lieu",
            skippable=True,
        ),
        _spec(
            "dictionnaire",
            {"csv"},
            ["couche_iris"],
            "Dictionnaire des colonnes publiées (`layers/dictionnaire.csv`) : libellé, définition, unité, "
            "source, millésime, maille de la source, méthode, référence, et les mises en garde (valeurs "
            "communales données aux IRIS, groupes d'estimations qui se recouvrent).",
            maille="iris",
        ),
        _spec(
            "contours_web",
            {"shapely"},
            ["contours_simplifies", *LAYER_ASSETS],
            "Contours allégés de chaque maille à chaque tolérance (`config/publication.yaml`, 10 m et 50 m par "
            "défaut) : simplification *de couverture* des IRIS (les IRIS voisins gardent une frontière commune), "
            "chaque niveau simplifiant le précédent ; communes, EPCI et départements sont les unions des IRIS "
            "simplifiés, donc leurs frontières tombent exactement sur celles des IRIS. Couverture vérifiée avant "
            "(une fois, sur la base IRIS) et après ; nombres de sommets en métadonnées.",
        ),
        _spec(
            "couches_web",
            {"geojson"},
            ["contours_web", *LAYER_ASSETS],
            "Couches GeoJSON (RFC 7946 : WGS84, 6 décimales) pour le web, une par maille et par tolérance "
            "(`web/<maille>_<tolérance>m.geojson`) : les colonnes d'affichage de la couche publiée (codes, "
            "libellés, taux, scores, notes, estimations, drapeaux ; `web_columns` et `web_decimals` de "
            "`config/publication.yaml`), sur les contours allégés de `contours_web`.",
        ),
        _spec(
            "pack_geoclip",
            {"csv", "excel", "shapefile", "geojson"},
            [*LAYER_ASSETS, "dictionnaire", "contours_web"],
            "Paquet de type Geoclip (`geoclip/`) : une table par maille en CSV (UTF-8, `;`) et XLSX, clé = code "
            "officiel en texte (CODE_IRIS, CODGEO, EPCI, DEP), puis libellé et indicateurs ; dictionnaire des "
            "indicateurs (CSV, XLSX) ; contours en shapefile Lambert-93 (tracé complet) et GeoJSON WGS84 (tracé "
            "web, la simplification de couverture la plus fine) ; LISEZMOI. Secret statistique : aucun effectif "
            "issu de la CAF inférieur à 5 n'est publié.",
        ),
        _spec(
            "styles_qgis",
            {"qgis"},
            [*LAYER_ASSETS, "lieux_mediation"],
            "Styles QGIS : un `.qml` par couche à côté de son GeoPackage (QGIS le charge seul), classes par règles "
            "sur le score global (bornes incluses à droite, classe grise « non noté »), légende en français, et le "
            "projet `fragilite.qgs` (QGIS ≥ 3.22, SCR du territoire, seule la couche IRIS affichée à l'ouverture ; "
            "avec un fichier de lieux, les « Lieux de médiation » par-dessus, affichés, et « IRIS — priorité », "
            "masquée).",
        ),
        _spec(
            "cartes",
            {"png"},
            [*LAYER_ASSETS, "lieux_mediation"],
            "Cartes PNG du score global par maille (`cartes/<maille>.png`) : classes mapclassify, légende, titre, "
            "sources et millésimes, nord en haut, barre d'échelle. La carte des IRIS s'affiche ici. Avec un "
            "fichier de lieux : `cartes/priorite.png`, les IRIS par classe de priorité et les lieux de médiation.",
        ),
        _spec(
            "rapport",
            {"html"},
            ["couche_iris", "cartes"],
            "Rapport territorial autonome (`rapport.html`, images intégrées, sans réseau) : chiffres clés, carte, "
            "distribution des scores, les IRIS les plus fragiles et leurs indicateurs moteurs, personnes à risque "
            "estimées, et les IRIS fragiles éloignés de l'offre de médiation (ou une phrase qui dit l'offre absente).",
            maille="iris",
        ),
    ]


def _input_checksums(context: dg.AssetExecutionContext) -> dict[str, str]:
    """SHA-256 of each input file this run read (from the source assets' metadata), for the
    output set's manifest."""
    from config.settings import INPUT_KEYS

    checksums = {}
    for key in INPUT_KEYS:
        event = context.instance.get_latest_materialization_event(dg.AssetKey(key))
        materialization = event.asset_materialization if event else None
        if materialization is not None and event.run_id == context.run.run_id and "sha256" in materialization.metadata:
            checksums[key] = str(materialization.metadata["sha256"].value)
    return checksums


def _published_paths(metadata: dict, staged: Path, final: Path) -> dict:
    """The metadata of files written in the staging folder, with the paths they have once
    published."""

    def fix(value):
        if isinstance(value, str):
            return value.replace(str(staged), str(final))
        if isinstance(value, dict):
            return {fix(k): fix(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fix(v) for v in value]
        if isinstance(value, dg.PathMetadataValue):
            return dg.MetadataValue.path(fix(value.path))
        if isinstance(value, dg.JsonMetadataValue):
            return dg.MetadataValue.json(fix(value.data))
        return value

    return {key: fix(value) for key, value in metadata.items()}


WEB_CHECK = dg.AssetCheckSpec(
    "couverture_web_valide",
    asset="contours_web",
    description="Les contours des IRIS forment une couverture valide (ni chevauchement ni trou entre voisins) et, "
    "allégés, chaque maille à chaque tolérance aussi, avec moins de sommets que la couche source.",
)


PLACES_CHECK = dg.AssetCheckSpec(
    "lieux_publies",
    asset=PLACES_ASSET,
    description="Chaque lieu lu est sur la couche, ou compté parmi les lieux d'une autre partie de la France ou "
    "impossibles à situer ; un point fini par identifiant.",
)


@dg.asset(
    group_name=GROUP,
    kinds={"geopandas", "geoparquet"},
    owners=OWNERS,
    tags={"maille": "iris-commune-epci-departement"},
    # The longest step that needs only the outlines: started first when a thread is free, it
    # runs while the indicators and scores are computed (pipelines/executor.py).
    op_tags={"dagster/priority": "1"},
)
def contours_simplifies(iris_base: gpd.GeoDataFrame) -> dg.Output:
    """Contours des IRIS du territoire d'étude simplifiés en couverture (sans trou ni
    chevauchement entre voisins) à chaque tolérance web de `config/publication.yaml`, chaque
    niveau à partir du précédent, et leurs unions par commune, EPCI et département : une ligne par
    unité, tolérance et maille (`maille`, `tolerance_m`, `code`), Lambert-93. La validité de la
    couverture est vérifiée ici ; une couverture invalide n'est pas simplifiée et la publication
    (`contours_web`) s'arrête en nommant les IRIS qui se chevauchent."""
    study = study_rows(iris_base)
    levels = simplify_iris(study, load_publication().web_tolerances_m)
    frame = levels_frame(levels, study.crs)
    counts = frame.groupby(["maille", "tolerance_m"], sort=False).size()
    return dg.Output(
        frame,
        metadata={
            "couverture_valide": levels.valid_before,
            "unites": dg.MetadataValue.json({f"{m}_{t:g}m": int(n) for (m, t), n in counts.items()}),
            "sommets": int(shapely.get_num_coordinates(frame.geometry.to_numpy()).sum()),
        },
    )


@dg.multi_asset(
    name="sorties",
    specs=_specs(),
    check_specs=[WEB_CHECK, PLACES_CHECK],
    ins={
        name: dg.AssetIn(name)
        for name in (
            "iris_indicateurs",
            "scores_publies",
            "mailles",
            "contours_simplifies",
            *OFFER_ASSETS,
        )
    },
    # Any of its assets may be materialized alone (UI: select, "Materialize selected"): only the
    # files of the selected assets are written, the others are carried over from the previous set.
    can_subset=True,
)
def sorties(
    context: dg.AssetExecutionContext,
    fragilite: FragiliteConfig,
    iris_indicateurs: IndicatorResult,
    scores_publies: dict,
    mailles: dict,
    contours_simplifies: gpd.GeoDataFrame,
    lieux_mediation: pd.DataFrame | None,
    iris_accessibilite: pd.DataFrame | None,
    iris_priorite: dict | None,
):
    """Layers and publication: web outlines then web layers on one worker thread, layers then
    pack on the other (its GeoJSON outlines wait for the web outlines), maps, styles and report
    on this one. Only the selected assets' files are written (`_needed`)."""
    selected = {key.to_user_string() for key in context.selected_asset_keys}
    checks = {key.name for key in context.selected_asset_check_keys}
    final_out = fragilite.output_folder
    publication = load_publication()
    needed = _needed(selected, checks)
    spec = publication.classification
    run_id = context.run.run_id
    # The run's tags say what it really publishes (a UI launch starts with the job's default tags,
    # whatever folder or territory its configuration chose).
    context.instance.add_run_tags(run_id, run_tags(fragilite.settings))
    # The CAF secret across mailles, and scores of blanked units without the CAF indicator.
    iris_scores, mailles_scores = scores_publies["iris"], scores_publies["mailles"]
    secret = {name: set(codes) for name, codes in scores_publies["secret"].items()}
    built = {
        "iris": published_layer(
            fragilite,
            "iris",
            iris_indicateurs.frame,
            iris_scores,
            iris_indicateurs.vintages,
            run_id,
            secret.get("iris", set()),
        )
    }
    built.update(
        {
            m: published_layer(
                fragilite, m, mailles[m], mailles_scores[m], iris_indicateurs.vintages, run_id, secret.get(m, set())
            )
            for m in MAILLES[1:]
        }
    )
    built = with_offer(built, iris_accessibilite, iris_priorite)
    layers = {m: layer for m, (layer, _) in built.items()}
    metadata: dict[str, dict] = {}

    def timed(key: str, make, *args, describe=lambda result: result):
        """Run one asset's part, keeping its metadata (`describe(result)`) and how long it took
        (`duree_s`: parts overlap, so these add up to more than the step)."""
        started = time.perf_counter()
        result = make(*args)
        metadata[key] = {
            **describe(result),
            # Each output folder is its own product: the UI's history tells them apart.
            "dossier_sortie": dg.MetadataValue.path(str(final_out)),
            "duree_s": round(time.perf_counter() - started, 2),
        }
        return result

    def dictionary_file() -> dict:
        path = out / "layers" / "dictionnaire.csv"
        sizes = write_all({path: lambda tmp: write_dictionary(dictionary, tmp)})
        return {
            **table_metadata(dictionary, preview_rows=20, descriptions=column_texts(DICTIONARY_WORDS)),
            "fichier": dg.MetadataValue.path(str(path)),
            "taille_octets": sizes[path],
        }

    outlines_ready: Future = Future()  # the pack's GeoJSON outlines wait for it
    # The places, cities, pack tables and dictionary, made on the step's thread; the dictionary.
    prepared: Future = Future()

    def layers_then_pack() -> None:
        for maille, (layer, layer_info) in built.items():
            if f"couche_{maille}" in needed:
                timed(f"couche_{maille}", couche, out, maille, layer, layer_info, prepared.result)
        prepared.result()  # what follows needs them
        if places is not None and PLACES_ASSET in needed:
            timed(PLACES_ASSET, couche_lieux, out, *places, dictionary)
        if "dictionnaire" in needed:
            timed("dictionnaire", dictionary_file)
        if "pack_geoclip" in needed:
            timed(
                "pack_geoclip",
                pub.pack_geoclip,
                out,
                layers,
                tables,
                dictionary,
                caf,
                info,
                publication,
                outlines_ready,
            )

    def web_layers() -> WebOutlines | None:
        if "contours_web" not in needed:
            return None
        try:
            outlines = timed("contours_web", pub.contours_web, layers, contours_simplifies, describe=pub.web_metadata)
        except BaseException as exc:
            outlines_ready.set_exception(exc)  # never leave the pack waiting
            raise
        outlines_ready.set_result(outlines)
        if "couches_web" in needed:
            timed("couches_web", pub.couches_web, out, layers, outlines, publication)
        return outlines

    # One output set per run: everything is written into `stage`, beside the output folder, and
    # replaces the previous set only once all of it is written (outputs.files).
    with output_transaction(final_out, run_id, _input_checksums(context)) as out:
        # This step's own pool: web outlines then web layers on one thread, layers then pack on
        # another, maps, styles and report here (matplotlib is not thread-safe). A failure or
        # Ctrl-C waits for both threads, then the staging folder is dropped: nothing published.
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="fragilite-sorties") as pool:
            # The web layers and the layers' files need only the layers: started first, their
            # GEOS, GDAL and Arrow work overlaps the places, cities, pack tables and dictionary.
            web = pool.submit(web_layers)
            written = pool.submit(layers_then_pack)
            try:
                info = {**built["iris"][1], **pub.display_labels(fragilite, layers["iris"], built["iris"][1])}
                places = places_published(lieux_mediation, layers["iris"], run_id, info["territoire"])
                caf = caf_indicator_ids(fragilite)
                cities = city_layer(
                    fragilite,
                    iris_indicateurs.frame,
                    mailles["communes"],
                    iris_indicateurs.vintages,
                    run_id,
                    secret.get("villes", set()),
                )
                cities = city_priority(cities, iris_priorite["communes"] if iris_priorite is not None else None)
                tables = pack_tables(layers, caf, publication.secret_threshold, cities)
                dictionary = dictionnaire(
                    fragilite,
                    {m: [layers[m], tables[m]] for m in MAILLES} | ({PLACES_LAYER: [places[0]]} if places else {}),
                    info["millesime_rp"],
                    iris_indicateurs.vintages,
                    access=iris_accessibilite,
                )
            except BaseException as exc:
                prepared.set_exception(exc)  # never leave the layers' thread waiting
                raise
            prepared.set_result(dictionary)
            if "cartes" in needed:
                timed("cartes", pub.cartes, out, layers, spec, info, places[0] if places else None, outlines_ready)
            if "styles_qgis" in needed:
                timed("styles_qgis", pub.styles_qgis, out, layers, spec, info, places is not None)
            if "rapport" in needed:
                timed("rapport", pub.rapport, out, layers["iris"], info, fragilite, publication)
            outlines = web.result()
            written.result()
        if "cartes" not in selected:
            shutil.rmtree(out / "cartes", ignore_errors=True)  # drawn for the report only: kept as they were
        staged = out
    metadata = {key: _published_paths(meta, staged, final_out) for key, meta in metadata.items()}
    out = final_out
    offer = (
        f"{len(places[0])} lieux de médiation, {_forte(layers['iris'])} IRIS en priorité forte"
        if places is not None
        else pub.OFFER_ABSENT
    )
    everything = {key.to_user_string() for key in context.assets_def.keys} - {PLACES_ASSET} <= selected
    report(
        context,
        f"sorties: {', '.join(f'{m} ({len(layer)})' for m, layer in layers.items())}, "
        + ("pack, web, cartes, styles et rapport" if everything else "seulement " + ", ".join(sorted(selected)))
        + f" dans {out} ; {offer}",
    )
    for key in ("couche_iris", "cartes", "rapport"):
        if key in metadata:
            metadata[key]["offre"] = offer
    for asset in _specs():  # in the specs' (topological) order, as Dagster requires
        name = asset.key.to_user_string()
        if name in metadata and name in selected:  # the places layer only with a places file
            yield dg.MaterializeResult(asset_key=asset.key, metadata=metadata[name])
    if WEB_CHECK.name in checks:
        yield pub.web_check(outlines)
    if PLACES_CHECK.name in checks:
        yield places_check(*places) if places is not None else places_absent()


def _needed(selected: set[str], checks: set[str]) -> set[str]:
    """The parts of `sorties` a selection needs: the selected assets, and what they are made
    from (the web layers, the pack's GeoJSON and the maps from the web outlines; the report
    embeds the maps). A part needed but not selected is computed, not published: the web
    outlines stay in memory, and maps drawn for the report only are dropped from the staging
    folder, so the previous set's maps are kept."""
    needed = set(selected)
    if "rapport" in needed:
        needed.add("cartes")
    if needed & {"couches_web", "pack_geoclip", "cartes"} or WEB_CHECK.name in checks:
        needed.add("contours_web")
    return needed


def _forte(iris: pd.DataFrame) -> int:
    return int((iris["priorite"].astype("object") == "forte").sum()) if "priorite" in iris else 0

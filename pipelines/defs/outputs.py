"""Group `outputs`: every published file, materialized together by the multi-asset `sorties`.

The assets stay distinct in the UI (a layer per maille, the dictionary, the web outlines and
layers, the Geoclip pack, QGIS styles, maps, report), each with its description, metadata and
checks; one step produces them all because their work overlaps on two cores. Writing layers,
simplifying outlines (GEOS) and formatting tables (DuckDB, Arrow, GDAL, zlib) release the GIL
and run on worker threads; maps and report draw on the step's own thread (matplotlib is not
thread-safe). Everything is written under one output lock, each file atomically.
"""

import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import geopandas as gpd
import pandas as pd

from config.settings import load_publication
from indice.methods import Scored
from outputs.dictionary import RunContext, data_dictionary, write_dictionary
from outputs.disclosure import apply_secret
from outputs.files import output_transaction, write_all
from outputs.layers import build_layer, write_layer
from outputs.web import WebOutlines
from pipelines.defs import publication as pub
from pipelines.defs.indice import method_label
from pipelines.reporting import report, table_metadata
from pipelines.resources import FragiliteConfig
from transforms.indicators import IndicatorResult

GROUP = "outputs"
OWNERS = ["team:fragilite-numerique"]
MAILLES = ("iris", "communes", "epci", "departements")
LABELS = {
    "iris": "IRIS",
    "communes": "communes (arrondissements pour Paris, Lyon, Marseille)",
    "epci": "EPCI",
    "departements": "départements",
}
LAYER_ASSETS = [f"couche_{m}" for m in MAILLES]


def published_layer(
    fragilite: FragiliteConfig,
    maille: str,
    table: gpd.GeoDataFrame,
    scored: Scored,
    vintages: dict[str, str] | None,
    run_id: str,
) -> tuple[gpd.GeoDataFrame, dict]:
    """A maille's layer in contract order, CAF secret applied, and its run information."""
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
    # Published layers keep the secret statistique too (no CAF count under 5).
    layer = apply_secret(
        layer,
        [i.id for i in fragilite.catalogue.indicators if i.source == "caf_non_connectes"],
        load_publication().secret_threshold,
    )
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


def couche(out: Path, maille: str, layer: gpd.GeoDataFrame, info: dict) -> dict:
    """`layers/<maille>.parquet`, `.gpkg`, `.metadata.json`; the asset's metadata."""
    sizes = write_layer(layer, out / "layers", maille, info)
    minx, miny, maxx, maxy = layer.total_bounds
    return {
        **table_metadata(layer),
        "crs": str(layer.crs),
        "bbox": [round(float(v), 1) for v in (minx, miny, maxx, maxy)],
        "fichiers": pub.sizes_metadata(sizes),
        "dossier": dg.MetadataValue.path(str(out / "layers")),
        "methodes": info["methodes"],
        "reference": info["reference"],
        "millesime_rp": info["millesime_rp"],
    }


def dictionnaire(fragilite: FragiliteConfig, iris: gpd.GeoDataFrame, vintages: dict[str, str]) -> pd.DataFrame:
    """One row per published column of the IRIS layer, in words."""
    settings = fragilite.settings
    run = RunContext(
        millesime_rp=int(iris["millesime_rp"].iloc[0]),
        vintages=vintages,
        methode=method_label(settings),
        reference=settings.run.reference,
    )
    columns = [c for c in iris.columns if c != "geometry"]
    return data_dictionary(columns, fragilite.catalogue, fragilite.tic, run)


def _spec(
    key: str, kinds: set[str], deps: list[str], description: str, maille: str = "iris-commune-epci-departement"
) -> dg.AssetSpec:
    return dg.AssetSpec(
        key, group_name=GROUP, kinds=kinds, owners=OWNERS, deps=deps, description=description, tags={"maille": maille}
    )


def _specs() -> list[dg.AssetSpec]:
    """The assets of `sorties` (built in a function: a module-level spec would be loaded as an
    asset of its own)."""
    layers = [
        _spec(
            f"couche_{m}",
            {"geoparquet", "geopackage"},
            ["iris_indicateurs", "iris_scores"] if m == "iris" else ["mailles", "mailles_scores"],
            f"Couche des {LABELS[m]} : `layers/{m}.parquet` (GeoParquet 1.1, Lambert-93, colonne bbox), "
            f"`{m}.gpkg` (QGIS) et `{m}.metadata.json` (méthodes, référence, millésimes, date), contours "
            "complets. "
            + (
                "Indicateurs de chaque IRIS et scores de toutes les méthodes retenues. "
                if m == "iris"
                else "Indicateurs recalculés sur les sommes de leurs IRIS, scores de toutes les méthodes "
                "retenues avec la même référence que les IRIS. "
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
            LAYER_ASSETS,
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
            LAYER_ASSETS,
            "Styles QGIS : un `.qml` par couche à côté de son GeoPackage (QGIS le charge seul), classes graduées "
            "sur le score global avec légende en français, et le projet `fragilite.qgs` qui ouvre les quatre "
            "couches d'un clic.",
        ),
        _spec(
            "cartes",
            {"png"},
            LAYER_ASSETS,
            "Cartes PNG du score global par maille (`cartes/<maille>.png`) : classes mapclassify, légende, titre, "
            "sources et millésimes, nord en haut, barre d'échelle. La carte des IRIS s'affiche ici.",
        ),
        _spec(
            "rapport",
            {"html"},
            ["couche_iris", "cartes"],
            "Rapport territorial autonome (`rapport.html`, images intégrées, sans réseau) : chiffres clés, carte, "
            "distribution des scores, les IRIS les plus fragiles et leurs indicateurs moteurs, personnes à risque "
            "estimées.",
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


@dg.multi_asset(
    name="sorties",
    specs=_specs(),
    check_specs=[WEB_CHECK],
    ins={name: dg.AssetIn(name) for name in ("iris_indicateurs", "iris_scores", "mailles", "mailles_scores")},
)
def sorties(
    context: dg.AssetExecutionContext,
    fragilite: FragiliteConfig,
    iris_indicateurs: IndicatorResult,
    iris_scores: Scored,
    mailles: dict,
    mailles_scores: dict,
):
    """Layers and publication: web outlines then web layers on one worker thread, layers then
    pack on the other (its GeoJSON outlines wait for the web outlines), maps, styles and report
    on this one."""
    final_out = fragilite.output_folder
    publication = load_publication()
    spec = publication.classification
    run_id = context.run.run_id
    built = {
        "iris": published_layer(
            fragilite, "iris", iris_indicateurs.frame, iris_scores, iris_indicateurs.vintages, run_id
        )
    }
    built.update(
        {
            m: published_layer(fragilite, m, mailles[m], mailles_scores[m], iris_indicateurs.vintages, run_id)
            for m in MAILLES[1:]
        }
    )
    layers = {m: layer for m, (layer, _) in built.items()}
    info = built["iris"][1]
    caf = [i.id for i in fragilite.catalogue.indicators if i.source == "caf_non_connectes"]
    dictionary = dictionnaire(fragilite, layers["iris"], iris_indicateurs.vintages)
    metadata: dict[str, dict] = {}

    def timed(key: str, make, *args, describe=lambda result: result):
        """Run one asset's part, keeping its metadata (`describe(result)`) and how long it took
        (`duree_s`: parts overlap, so these add up to more than the step)."""
        started = time.perf_counter()
        result = make(*args)
        metadata[key] = {**describe(result), "duree_s": round(time.perf_counter() - started, 2)}
        return result

    def dictionary_file() -> dict:
        path = out / "layers" / "dictionnaire.csv"
        sizes = write_all({path: lambda tmp: write_dictionary(dictionary, tmp)})
        return {
            **table_metadata(dictionary, preview_rows=20),
            "fichier": dg.MetadataValue.path(str(path)),
            "taille_octets": sizes[path],
        }

    outlines_ready: Future = Future()  # the pack's GeoJSON outlines wait for it

    def layers_then_pack() -> None:
        for maille, (layer, layer_info) in built.items():
            timed(f"couche_{maille}", couche, out, maille, layer, layer_info)
        timed("dictionnaire", dictionary_file)
        timed("pack_geoclip", pub.pack_geoclip, out, layers, dictionary, caf, info, publication, outlines_ready)

    def web_layers() -> WebOutlines:
        try:
            outlines = timed("contours_web", pub.contours_web, layers, publication, describe=pub.web_metadata)
        except BaseException as exc:
            outlines_ready.set_exception(exc)  # never leave the pack waiting
            raise
        outlines_ready.set_result(outlines)
        timed("couches_web", pub.couches_web, out, layers, outlines, publication)
        return outlines

    # One output set per run: everything is written into `stage`, beside the output folder, and
    # replaces the previous set only once all of it is written (outputs.files).
    with output_transaction(final_out, run_id, _input_checksums(context)) as out:
        # This step's own pool: web outlines then web layers on one thread, layers then pack on
        # another, maps, styles and report here (matplotlib is not thread-safe). A failure or
        # Ctrl-C waits for both threads, then the staging folder is dropped: nothing published.
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="fragilite-sorties") as pool:
            web = pool.submit(web_layers)
            written = pool.submit(layers_then_pack)
            timed("cartes", pub.cartes, out, layers, spec, info)
            timed("styles_qgis", pub.styles_qgis, out, layers, spec, info)
            timed("rapport", pub.rapport, out, layers["iris"], info, fragilite.catalogue, fragilite.tic, publication)
            outlines = web.result()
            written.result()
        staged = out
    metadata = {key: _published_paths(meta, staged, final_out) for key, meta in metadata.items()}
    out = final_out
    report(
        context,
        f"sorties: {', '.join(f'{m} ({len(layer)})' for m, layer in layers.items())}, "
        f"pack, web, cartes, styles et rapport dans {out}",
    )
    for asset in _specs():  # in the specs' (topological) order, as Dagster requires
        yield dg.MaterializeResult(asset_key=asset.key, metadata=metadata[asset.key.to_user_string()])
    yield pub.web_check(outlines)

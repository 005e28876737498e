"""Group `outputs`: one layer per maille (IRIS, communes, EPCI, départements), three formats each."""

from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import geopandas as gpd
import pandas as pd
import pyarrow.parquet as pq

from indice.methods import Scored
from outputs.disclosure import apply_secret
from outputs.dictionary import RunContext, data_dictionary, write_dictionary
from outputs.files import output_lock, write_all
from outputs.layers import build_layer, write_layer
from pipelines.defs.indice import method_label
from pipelines.reporting import report, table_metadata
from pipelines.resources import FragiliteConfig
from transforms.indicators import IndicatorResult

GROUP = "outputs"
OWNERS = ["team:fragilite-numerique"]
KINDS = {"geoparquet", "geopackage", "geojson"}


def _publish(
    context: dg.AssetExecutionContext,
    fragilite: FragiliteConfig,
    maille: str,
    table: gpd.GeoDataFrame,
    scores: pd.DataFrame,
    method_metadata: dict,
    vintages: dict[str, str] | None = None,
) -> dg.MaterializeResult:
    """Assemble the layer of one maille and write its files atomically, under the output lock."""
    settings = fragilite.settings
    indicator_ids = [c[: -len("_num")] for c in table.columns if c.endswith("_num")]
    millesime = int(table["millesime_rp"].iloc[0])
    reference = method_metadata.get("reference", settings.run.reference)
    layer = build_layer(maille, table, scores, indicator_ids, methode=method_label(settings),
                        reference=reference, millesime_rp=millesime)
    # Published layers keep the secret statistique too (no CAF count under 5).
    layer = apply_secret(layer, [i.id for i in fragilite.catalogue.indicators if i.source == "caf_non_connectes"])
    run_info = {
        "maille": maille,
        "territoire": settings.run.territory_label,
        "selection": settings.run.territory or "toutes les IRIS des fichiers d'entrée",
        "methodes": settings.run.methods,
        "methode": method_label(settings),
        "reference": reference,
        "millesime_rp": millesime,
        "millesimes": vintages or {},
        "indicateurs": indicator_ids,
        "date_calcul": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "sources": {k: Path(v).name for k, v in settings.input_paths().items()},
        "details_methodes": method_metadata,
        "run_id": context.run.run_id,
    }
    out_root = fragilite.output_folder
    with output_lock(out_root):
        sizes = write_layer(layer, out_root / "layers", maille, run_info)
    report(context, f"couche {maille}: {len(layer)} entités écrites dans {out_root / 'layers'}")
    minx, miny, maxx, maxy = layer.total_bounds
    return dg.MaterializeResult(metadata={
        **table_metadata(layer),
        "crs": str(layer.crs),
        "bbox": [round(float(v), 1) for v in (minx, miny, maxx, maxy)],
        "fichiers": dg.MetadataValue.json({str(p): size for p, size in sizes.items()}),
        "dossier": dg.MetadataValue.path(str(out_root / "layers")),
        "methodes": settings.run.methods,
        "reference": reference,
        "millesime_rp": millesime,
    })


@dg.asset(group_name=GROUP, kinds=KINDS, owners=OWNERS, tags={"maille": "iris"})
def couche_iris(
    context: dg.AssetExecutionContext,
    fragilite: FragiliteConfig,
    iris_indicateurs: IndicatorResult,
    iris_scores: Scored,
) -> dg.MaterializeResult:
    """Couche IRIS publiée : `layers/iris.parquet` (GeoParquet 1.1, Lambert-93), `iris.gpkg` (QGIS)
    et `iris.geojson` (web, WGS84), plus `iris.metadata.json` (méthodes, référence, millésimes,
    date). Les fichiers sont écrits sous un nom temporaire puis renommés : un échec ne laisse
    jamais de fichier partiel ni n'écrase la couche précédente."""
    return _publish(context, fragilite, "iris", iris_indicateurs.frame, iris_scores.table, iris_scores.metadata,
                    iris_indicateurs.vintages)


def _maille_layer(maille: str, label: str) -> dg.AssetsDefinition:
    @dg.asset(name=f"couche_{maille}", group_name=GROUP, kinds=KINDS, owners=OWNERS, tags={"maille": maille},
              description=f"Couche des {label} : indicateurs recalculés sur les sommes de leurs IRIS, "
              f"scores de toutes les méthodes retenues, avec la même référence que les IRIS. Fichiers "
              f"`layers/{maille}.parquet`, `.gpkg`, `.geojson` et `.metadata.json`, écrits atomiquement.")
    def _asset(context: dg.AssetExecutionContext, fragilite: FragiliteConfig, mailles: dict,
               mailles_scores: dict) -> dg.MaterializeResult:
        scored = mailles_scores[maille]
        return _publish(context, fragilite, maille, mailles[maille], scored.table, scored.metadata)

    return _asset


couche_communes = _maille_layer("communes", "communes (arrondissements pour Paris, Lyon, Marseille)")
couche_epci = _maille_layer("epci", "EPCI")
couche_departements = _maille_layer("departements", "départements")


@dg.asset(group_name=GROUP, kinds={"csv"}, owners=OWNERS, tags={"maille": "iris"}, deps=["couche_iris"])
def dictionnaire(
    context: dg.AssetExecutionContext,
    fragilite: FragiliteConfig,
    iris_indicateurs: IndicatorResult,
    iris_scores: Scored,
) -> dg.MaterializeResult:
    """Dictionnaire des colonnes publiées (`layers/dictionnaire.csv`) : libellé, définition, unité,
    source, millésime, maille de la source, méthode, référence, et les mises en garde (valeurs
    communales données aux IRIS, groupes d'estimations qui se recouvrent)."""
    settings = fragilite.settings
    columns = list(iris_indicateurs.frame.columns) + list(iris_scores.table.columns)
    layer_columns = pq.read_schema(fragilite.output_folder / "layers" / "iris.parquet").names
    run = RunContext(
        millesime_rp=int(iris_indicateurs.frame["millesime_rp"].iloc[0]),
        vintages=iris_indicateurs.vintages,
        methode=method_label(settings),
        reference=settings.run.reference,
    )
    table = data_dictionary([c for c in layer_columns if c in set(columns) | set(layer_columns)],
                            fragilite.catalogue, fragilite.tic, run)
    path = fragilite.output_folder / "layers" / "dictionnaire.csv"
    with output_lock(fragilite.output_folder):
        sizes = write_all({path: lambda tmp: write_dictionary(table, tmp)})
    report(context, f"dictionnaire: {len(table)} colonnes décrites")
    return dg.MaterializeResult(metadata={**table_metadata(table, preview_rows=20),
                                          "fichier": dg.MetadataValue.path(str(path)),
                                          "taille_octets": sizes[path]})

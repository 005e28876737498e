"""Group `outputs`: the IRIS layer in GeoParquet, GeoPackage and GeoJSON."""


from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import geopandas as gpd
import pandas as pd

from outputs.files import output_lock
from outputs.layers import iris_layer, write_layer
from pipelines.defs.indice import method_label
from pipelines.reporting import report, table_metadata
from pipelines.resources import FragiliteConfig

GROUP = "outputs"
OWNERS = ["team:fragilite-numerique"]


@dg.asset(
    group_name=GROUP,
    kinds={"geoparquet", "geopackage", "geojson"},
    owners=OWNERS,
    tags={"maille": "iris"},
)
def couche_iris(
    context: dg.AssetExecutionContext,
    fragilite: FragiliteConfig,
    iris_base: gpd.GeoDataFrame,
    iris_indicateurs: pd.DataFrame,
    iris_scores: pd.DataFrame,
) -> dg.MaterializeResult:
    """Couche IRIS publiée : `layers/iris.parquet` (GeoParquet 1.1, Lambert-93), `iris.gpkg` (QGIS)
    et `iris.geojson` (web, WGS84), plus `iris.metadata.json` (méthode, référence, millésimes,
    date). Les fichiers sont écrits sous un nom temporaire puis renommés : un échec ne laisse
    jamais de fichier partiel ni n'écrase la couche précédente."""
    settings = fragilite.settings
    indicator_ids = [c[: -len("_num")] for c in iris_indicateurs.columns if c.endswith("_num")]
    millesime = int(iris_base["millesime_rp"].iloc[0])
    layer = iris_layer(
        iris_base, iris_indicateurs, iris_scores, indicator_ids,
        methode=method_label(settings), reference=settings.run.reference, millesime_rp=millesime,
    )
    run_info = {
        "territoire": settings.run.territory_label,
        "methode": method_label(settings),
        "reference": settings.run.reference,
        "millesime_rp": millesime,
        "indicateurs": indicator_ids,
        "date_calcul": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "sources": {k: Path(v).name for k, v in settings.input_paths().items()},
        "run_id": context.run.run_id,
    }
    out_dir = Path(settings.run.out_dir) / "layers"
    with output_lock(Path(settings.run.out_dir)):
        sizes = write_layer(layer, out_dir, "iris", run_info)
    report(context, f"couche_iris: {len(layer)} IRIS écrits dans {out_dir}")
    return dg.MaterializeResult(metadata={
        **table_metadata(layer),
        "crs": str(layer.crs),
        "fichiers": dg.MetadataValue.json({str(p): size for p, size in sizes.items()}),
        "dossier": dg.MetadataValue.path(str(out_dir)),
        "methode": run_info["methode"],
        "reference": run_info["reference"],
        "millesime_rp": millesime,
    })

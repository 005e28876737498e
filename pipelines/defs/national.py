"""Group `national`: the IRIS layer by département partition, and their national merge.

Départements are the unit of work a deployment spreads over workers (deploy/): each partition
runs the whole chain on its IRIS; `france_iris` gathers every partition materialized so far.
"""

from pathlib import Path

import dagster as dg
import geopandas as gpd
import pandas as pd

from config.settings import load_departement_names
from outputs.files import output_lock, write_all
from pipelines.compose import iris_layer_for
from pipelines.reporting import report, table_metadata
from pipelines.resources import FragiliteConfig
from transforms.territory import Territory

GROUP = "national"
OWNERS = ["team:fragilite-numerique"]
DEPARTEMENTS = dg.StaticPartitionsDefinition(sorted(load_departement_names()))


def partition_file(out_dir: Path, departement: str) -> Path:
    return out_dir / "partitions" / f"departement={departement}" / "iris.parquet"


@dg.asset(group_name=GROUP, partitions_def=DEPARTEMENTS, kinds={"geoparquet"}, owners=OWNERS, tags={"maille": "iris"})
def iris_departement(context: dg.AssetExecutionContext, fragilite: FragiliteConfig) -> dg.MaterializeResult:
    """Couche IRIS d'un département (partition) : toute la chaîne, des fichiers sources aux scores,
    sur les IRIS du département seulement (`partitions/departement=<code>/iris.parquet`)."""
    departement = context.partition_key
    layer = iris_layer_for(fragilite, Territory(f"département {departement}", [departement]))
    out_dir = fragilite.output_folder
    path = partition_file(out_dir, departement)
    with output_lock(out_dir):
        sizes = write_all(
            {path: lambda tmp: layer.to_parquet(tmp, schema_version="1.1.0", write_covering_bbox=True, index=False)}
        )
    report(context, f"iris_departement[{departement}]: {len(layer)} IRIS")
    return dg.MaterializeResult(
        metadata={**table_metadata(layer), "fichier": dg.MetadataValue.path(str(path)), "octets": sizes[path]}
    )


@dg.asset(group_name=GROUP, deps=[iris_departement], kinds={"geoparquet"}, owners=OWNERS, tags={"maille": "iris"})
def france_iris(context: dg.AssetExecutionContext, fragilite: FragiliteConfig) -> dg.MaterializeResult:
    """Fusion nationale des partitions départementales déjà calculées (`layers/france_iris.parquet`) ;
    les départements manquants sont listés dans les métadonnées."""
    out_dir = fragilite.output_folder
    parts = {d: partition_file(out_dir, d) for d in DEPARTEMENTS.get_partition_keys()}
    present = {d: p for d, p in parts.items() if p.exists()}
    if not present:
        raise FileNotFoundError(
            f"no département partition under {out_dir / 'partitions'}; materialize iris_departement first"
        )
    layer = pd.concat(
        [gpd.read_parquet(p).drop(columns="bbox", errors="ignore") for p in present.values()], ignore_index=True
    )
    layer = gpd.GeoDataFrame(layer, geometry="geometry", crs=2154)
    path = out_dir / "layers" / "france_iris.parquet"
    with output_lock(out_dir):
        write_all(
            {path: lambda tmp: layer.to_parquet(tmp, schema_version="1.1.0", write_covering_bbox=True, index=False)}
        )
    missing = sorted(set(parts) - set(present))
    report(context, f"france_iris: {len(layer)} IRIS de {len(present)} département(s)")
    return dg.MaterializeResult(
        metadata={
            **table_metadata(layer),
            "departements": sorted(present),
            "departements_manquants": dg.MetadataValue.json(missing),
            "fichier": dg.MetadataValue.path(str(path)),
        }
    )


@dg.asset_check(asset=france_iris, description="Fusion nationale : codes IRIS uniques au bon format.")
def france_iris_codes(fragilite: FragiliteConfig) -> dg.AssetCheckResult:
    import pyarrow.parquet as pq

    from sources.common import IRIS_PATTERN

    codes = (
        pq.read_table(fragilite.output_folder / "layers" / "france_iris.parquet", columns=["CODE_IRIS"])
        .column("CODE_IRIS")
        .to_pylist()
    )
    bad = [c for c in codes if not IRIS_PATTERN.fullmatch(c)]
    return dg.AssetCheckResult(
        passed=not bad and len(set(codes)) == len(codes), metadata={"lignes": len(codes), "codes_invalides": bad[:20]}
    )

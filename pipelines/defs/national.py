"""Group `national`: the IRIS indicators by département partition, and their national merge.

Départements are the unit of work a deployment spreads over workers (deploy/). Each partition
runs the IRIS chain of `transforms.chain` (the same functions as the territory assets) on its
IRIS, from the source assets parsed once for all partitions, and stores numerators,
denominators and rates. Scoring happens once, in `france_iris`, on the merged table: IFN deciles,
Opale's territory reference and EPCI references that straddle départements are never computed
per partition.
"""

from pathlib import Path

import dagster as dg
import geopandas as gpd
import pandas as pd

from config.settings import load_departement_names
from indice.methods import score_all
from outputs.files import output_transaction, write_all
from pipelines.defs.indice import method_params, scored_indicators
from pipelines.defs.outputs import published_layer
from pipelines.defs.transforms import building_connectivity
from pipelines.reporting import report, table_metadata
from pipelines.resources import FragiliteConfig
from transforms.chain import CENSUS_INPUTS, INDICATOR_INPUTS, iris_indicators, territory_base
from transforms.territory import METROPOLE_EPSG, Territory, reference_universe

GROUP = "national"
OWNERS = ["team:fragilite-numerique"]
DEPARTEMENTS = dg.StaticPartitionsDefinition(sorted(load_departement_names()))
SOURCES = ("contours_iris", "communes_epci", *CENSUS_INPUTS, *INDICATOR_INPUTS)


def partition_file(out_dir: Path, departement: str) -> Path:
    return out_dir / "partitions" / f"departement={departement}" / "iris.parquet"


def merged_file(out_dir: Path, epsg: int) -> Path:
    """`layers/france_iris.parquet` for metropolitan France; each overseas CRS its own file."""
    suffix = "" if epsg == METROPOLE_EPSG else f"_epsg{epsg}"
    return out_dir / "layers" / f"france_iris{suffix}.parquet"


def _write_parquet(frame: gpd.GeoDataFrame):
    return lambda tmp: frame.to_parquet(tmp, schema_version="1.1.0", write_covering_bbox=True, index=False)


@dg.asset(
    group_name=GROUP,
    partitions_def=DEPARTEMENTS,
    kinds={"geoparquet"},
    owners=OWNERS,
    tags={"maille": "iris"},
    ins={key: dg.AssetIn(key) for key in SOURCES},
)
def iris_departement(context: dg.AssetExecutionContext, fragilite: FragiliteConfig, **sources) -> dg.MaterializeResult:
    """Indicateurs des IRIS d'un département (partition) : la chaîne IRIS des calculs par territoire,
    à partir des fichiers sources lus une fois pour toutes les partitions
    (`partitions/departement=<code>/iris.parquet`). Les notes sont calculées à la fusion."""
    departement = context.partition_key
    settings = fragilite.settings
    base = territory_base(
        sources["contours_iris"],
        sources["communes_epci"],
        {key: sources[key] for key in CENSUS_INPUTS},
        Territory(f"département {departement}", [departement]),
        settings.run.vintage,
    )
    measured = building_connectivity(context, fragilite, base.frame)  # as the territory's `iris_connectivite`
    connectivite = measured[0] if measured else None
    result = iris_indicators(
        base.frame,
        {**{key: sources[key] for key in INDICATOR_INPUTS}, "connectivite": connectivite},
        fragilite.catalogue.indicators,
        wanted=settings.run.indicators,
        legacy_2020=settings.run.legacy_2020,
        commune_fallback=settings.run.filosofi_commune_fallback,
    )
    frame = result.frame.drop(columns="territoire_etude", errors="ignore")  # a partition is published whole
    out_dir = fragilite.output_folder
    with output_transaction(out_dir, context.run.run_id) as stage:
        staged = partition_file(stage, departement)
        sizes = write_all({staged: _write_parquet(frame)})
    path = partition_file(out_dir, departement)
    report(context, f"iris_departement[{departement}]: {len(frame)} IRIS, {len(result.computed)} indicateurs")
    return dg.MaterializeResult(
        metadata={
            **table_metadata(frame),
            "fichier": dg.MetadataValue.path(str(path)),
            "octets": sizes[staged],
            "jointures": dg.MetadataValue.json([r.as_dict() for r in base.reports + result.reports]),
        }
    )


def score_merged(
    fragilite: FragiliteConfig, merged: gpd.GeoDataFrame, run_id: str, communes_epci: pd.DataFrame | None = None
) -> gpd.GeoDataFrame:
    """The published IRIS layer of merged partitions: every selected method scored once on the
    whole merged table, laid out and blanked as the territory's `couche_iris`.

    The merge is its own reference universe (whole départements); with the commune → EPCI table,
    its reference units are checked whole as in the territory chain (`reference_universe`: an EPCI
    straddling a département not computed is refused, or replaced by `run.reference_fallback`)."""
    frame = pd.DataFrame(merged.drop(columns=["geometry", "territoire_etude"], errors="ignore"))
    if communes_epci is not None:
        run = fragilite.settings.run
        whole = pd.Series(True, index=frame.index)
        universe = reference_universe(frame, whole, run.reference, communes_epci, run.reference_fallback)
        frame.attrs["reference"] = universe.as_dict()
    scored = score_all(frame, scored_indicators(fragilite, frame), method_params(fragilite, frame))
    scored.metadata["reference"] = (frame.attrs.get("reference") or {}).get("niveau", fragilite.settings.run.reference)
    return published_layer(fragilite, "iris", merged, scored, None, run_id)[0]


@dg.asset(
    group_name=GROUP,
    deps=[iris_departement],
    ins={"communes_epci": dg.AssetIn("communes_epci")},
    kinds={"geoparquet"},
    owners=OWNERS,
    tags={"maille": "iris"},
)
def france_iris(
    context: dg.AssetExecutionContext, fragilite: FragiliteConfig, communes_epci: pd.DataFrame
) -> dg.MaterializeResult:
    """Fusion nationale des partitions départementales déjà calculées, puis notes de toutes les
    méthodes sur la table fusionnée (`layers/france_iris.parquet` ; un fichier par projection
    d'outre-mer) ; les départements manquants sont listés dans les métadonnées."""
    out_dir = fragilite.output_folder
    parts = {d: partition_file(out_dir, d) for d in DEPARTEMENTS.get_partition_keys()}
    present = {d: p for d, p in parts.items() if p.exists()}
    if not present:
        raise FileNotFoundError(
            f"aucune partition départementale sous {out_dir / 'partitions'} : matérialisez d'abord iris_departement"
        )
    by_crs: dict[int, list[gpd.GeoDataFrame]] = {}
    for path in present.values():
        part = gpd.read_parquet(path).drop(columns="bbox", errors="ignore")
        by_crs.setdefault(part.crs.to_epsg(), []).append(part)
    layers = {
        epsg: score_merged(
            fragilite,
            gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=frames[0].crs),
            context.run.run_id,
            communes_epci,
        )
        for epsg, frames in by_crs.items()
    }
    with output_transaction(out_dir, context.run.run_id) as stage:
        write_all(
            {stage / merged_file(out_dir, e).relative_to(out_dir): _write_parquet(layer) for e, layer in layers.items()}
        )
    missing = sorted(set(parts) - set(present))
    main = layers.get(METROPOLE_EPSG, next(iter(layers.values())))
    report(context, f"france_iris: {sum(len(x) for x in layers.values())} IRIS de {len(present)} département(s)")
    return dg.MaterializeResult(
        metadata={
            **table_metadata(main),
            "departements": sorted(present),
            "departements_manquants": dg.MetadataValue.json(missing),
            "fichiers": dg.MetadataValue.json({str(merged_file(out_dir, e)): len(x) for e, x in layers.items()}),
        }
    )


@dg.asset_check(asset=france_iris, description="Fusion nationale : codes IRIS uniques au bon format.")
def france_iris_codes(fragilite: FragiliteConfig) -> dg.AssetCheckResult:
    import pyarrow.parquet as pq

    from sources.common import IRIS_PATTERN

    codes = []
    for path in sorted((fragilite.output_folder / "layers").glob("france_iris*.parquet")):
        codes += pq.read_table(path, columns=["CODE_IRIS"]).column("CODE_IRIS").to_pylist()
    bad = [c for c in codes if not IRIS_PATTERN.fullmatch(c)]
    return dg.AssetCheckResult(
        passed=bool(codes) and not bad and len(set(codes)) == len(codes),
        metadata={"lignes": len(codes), "codes_invalides": bad[:20]},
    )

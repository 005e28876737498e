"""Group `national`: the IRIS indicators by département partition, and their national merge.

Départements are the unit of work a deployment spreads over workers (deploy/). Each partition
runs the IRIS chain of `transforms.chain` (the same functions as the territory assets) on its
IRIS, from the source assets parsed once for all partitions, and stores numerators,
denominators and rates, with the located premises of ARCEP's buildings beside them. Scoring
happens once, in `france_iris`, on the merged table: IFN deciles, Opale's territory reference
and EPCI references that straddle départements are never computed per partition; so does the
offer of mediation (`pipelines.defs.offre`: a place serves IRIS across a département's border).
"""

from pathlib import Path

import dagster as dg
import geopandas as gpd
import pandas as pd

from config.offre import load_offre
from config.settings import load_departement_names
from indice.methods import score_all
from outputs.files import output_transaction, write_all
from pipelines.defs.indice import method_params, scored_indicators
from pipelines.defs.offre import access_table, priority_tables
from pipelines.defs.outputs import published_layer, with_offer
from pipelines.defs.transforms import building_connectivity
from pipelines.reporting import report, table_metadata
from pipelines.resources import FragiliteConfig
from transforms.chain import CENSUS_INPUTS, CHAIN_INPUTS, INDICATOR_INPUTS, iris_indicators, territory_base
from transforms.territory import METROPOLE_EPSG, Territory, reference_universe

GROUP = "national"
OWNERS = ["team:fragilite-numerique"]
DEPARTEMENTS = dg.StaticPartitionsDefinition(sorted(load_departement_names()))


def partition_file(out_dir: Path, departement: str) -> Path:
    return out_dir / "partitions" / f"departement={departement}" / "iris.parquet"


def points_file(out_dir: Path, departement: str) -> Path:
    """The partition's located premises (`transforms.connectivite.premises_points`), empty without
    ARCEP's building files: always written, so that no earlier run's points outlive a partition."""
    return partition_file(out_dir, departement).with_name("points_batiments.parquet")


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
    ins={key: dg.AssetIn(key) for key in CHAIN_INPUTS},  # the source assets, parsed once for all partitions
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
    connectivite = measured.table if measured else None
    points = measured.points if measured else pd.DataFrame({"CODE_IRIS": [], "x": [], "y": [], "locaux": []})
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
        sizes = write_all(
            {
                staged: _write_parquet(frame),
                points_file(stage, departement): lambda tmp: points.astype({"CODE_IRIS": str}).to_parquet(
                    tmp, index=False
                ),
            }
        )
    path = partition_file(out_dir, departement)
    report(context, f"iris_departement[{departement}]: {len(frame)} IRIS, {len(result.computed)} indicateurs")
    return dg.MaterializeResult(
        metadata={
            **table_metadata(frame),
            "fichier": dg.MetadataValue.path(str(path)),
            "octets": sizes[staged],
            "points_batiments": len(points),
            "jointures": dg.MetadataValue.json([r.as_dict() for r in base.reports + result.reports]),
        }
    )


def score_merged(
    fragilite: FragiliteConfig,
    merged: gpd.GeoDataFrame,
    run_id: str,
    communes_epci: pd.DataFrame | None = None,
    places: pd.DataFrame | None = None,
    buildings: pd.DataFrame | None = None,
) -> tuple[gpd.GeoDataFrame, dict]:
    """The published IRIS layer of merged partitions: every selected method scored once on the
    whole merged table, laid out and blanked as the territory's `couche_iris`; with the places of
    mediation, the offer's measures and priority classes of the territory's `iris_accessibilite`
    and `iris_priorite` (same functions, demand at the partitions' located premises `buildings`),
    and what the offer used (`{}` without places).

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
    layer = published_layer(fragilite, "iris", merged, scored, None, run_id)[0]
    if places is None:
        return layer, {}
    offre = load_offre()
    access = access_table(offre, merged, scored.table, places, buildings)
    classes = priority_tables(offre, frame, scored.table, access)
    layer = with_offer({"iris": (layer, {})}, access, classes)["iris"][0]  # as the territory's layer
    return layer, {k: access.attrs[k] for k in ("points_demande", "points_demande_iris", "demande_colonne")}


@dg.asset(
    group_name=GROUP,
    deps=[iris_departement],
    ins={"communes_epci": dg.AssetIn("communes_epci"), "lieux_mediation": dg.AssetIn("lieux_mediation")},
    kinds={"geoparquet"},
    owners=OWNERS,
    tags={"maille": "iris"},
)
def france_iris(
    context: dg.AssetExecutionContext,
    fragilite: FragiliteConfig,
    communes_epci: pd.DataFrame,
    lieux_mediation: pd.DataFrame | None,
) -> dg.MaterializeResult:
    """Fusion nationale des partitions départementales déjà calculées, puis notes de toutes les
    méthodes sur la table fusionnée (`layers/france_iris.parquet` ; un fichier par projection
    d'outre-mer) et, avec un fichier de lieux de médiation, l'offre comme pour un territoire
    (accessibilité depuis les immeubles de l'ARCEP des partitions, priorité) ; les départements
    manquants sont listés dans les métadonnées."""
    out_dir = fragilite.output_folder
    parts = {d: partition_file(out_dir, d) for d in DEPARTEMENTS.get_partition_keys()}
    present = {d: p for d, p in parts.items() if p.exists()}
    if not present:
        raise FileNotFoundError(
            f"aucune partition départementale sous {out_dir / 'partitions'} : matérialisez d'abord iris_departement"
        )
    by_crs: dict[int, list[gpd.GeoDataFrame]] = {}
    points: dict[int, list[pd.DataFrame]] = {}
    for departement, path in present.items():
        part = gpd.read_parquet(path).drop(columns="bbox", errors="ignore")
        by_crs.setdefault(part.crs.to_epsg(), []).append(part)
        if lieux_mediation is not None and points_file(out_dir, departement).exists():
            points.setdefault(part.crs.to_epsg(), []).append(pd.read_parquet(points_file(out_dir, departement)))
    scored = {
        epsg: score_merged(
            fragilite,
            gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=frames[0].crs),
            context.run.run_id,
            communes_epci,
            lieux_mediation,
            pd.concat(points[epsg], ignore_index=True) if points.get(epsg) else None,
        )
        for epsg, frames in by_crs.items()
    }
    layers = {epsg: layer for epsg, (layer, _) in scored.items()}
    offer = {str(merged_file(out_dir, e)): used for e, (_, used) in scored.items() if used}
    with output_transaction(out_dir, context.run.run_id) as stage:
        write_all(
            {stage / merged_file(out_dir, e).relative_to(out_dir): _write_parquet(layer) for e, layer in layers.items()}
        )
    missing = sorted(set(parts) - set(present))
    main = layers.get(METROPOLE_EPSG, next(iter(layers.values())))
    report(
        context,
        f"france_iris: {sum(len(x) for x in layers.values())} IRIS de {len(present)} département(s) ; "
        + ("; ".join(o["points_demande"] for o in offer.values()) if offer else "offre de médiation absente"),
    )
    return dg.MaterializeResult(
        metadata={
            **table_metadata(main),
            "offre": dg.MetadataValue.json(offer) if offer else "offre de médiation absente",
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

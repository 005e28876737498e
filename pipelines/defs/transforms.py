"""Group `transforms`: the IRIS spine, then indicator numerators, denominators and rates."""

from concurrent.futures import ThreadPoolExecutor

import dagster as dg
import geopandas as gpd
import pandas as pd

from config.settings import ConfigError, load_publication
from outputs.web import simplify_iris
from pipelines import background
from pipelines.defs.sources import SPINE_FIRST
from pipelines.reporting import report, table_metadata
from pipelines.resources import FragiliteConfig
from transforms.indicators import IndicatorInputs, IndicatorResult, compute_indicators
from transforms.iris_base import VintageError, build_iris_base, census_vintage, join_census
from transforms.mailles import MAILLES, aggregate_maille
from transforms.territory import one_part_of_france, require_census, resolve_territory, select_territory

GROUP = "transforms"
WEB_TASK = "contours_web"  # background work started by `iris_base`
OWNERS = ["team:fragilite-numerique"]


@dg.asset(
    group_name=GROUP,
    kinds={"geopandas"},
    owners=OWNERS,
    tags={"maille": "iris"},
    op_tags=SPINE_FIRST,
)
def iris_base(
    context: dg.AssetExecutionContext,
    fragilite: FragiliteConfig,
    contours_iris: gpd.GeoDataFrame,
    communes_epci: pd.DataFrame,
    rp_evol_struct_pop: pd.DataFrame | None,
    rp_diplomes_formation: pd.DataFrame | None,
    rp_couples_familles_menages: pd.DataFrame | None,
    rp_activite_residents: pd.DataFrame | None,
) -> dg.Output:
    """Une ligne par IRIS du territoire d'étude : contour, effectifs du recensement (tous thèmes),
    EPCI, département.

    Chaque code qui ne se joint pas (IRIS sans recensement, recensement sans contour, commune
    sans EPCI) est listé dans les métadonnées, jamais écarté en silence.
    """
    themes = {
        name: df
        for name, df in {
            "rp_evol_struct_pop": rp_evol_struct_pop,
            "rp_diplomes_formation": rp_diplomes_formation,
            "rp_couples_familles_menages": rp_couples_familles_menages,
            "rp_activite_residents": rp_activite_residents,
        }.items()
        if df is not None
    }
    vintage = census_vintage(themes)
    expected = fragilite.settings.run.vintage
    if expected is not None and vintage != expected:
        raise VintageError(
            f"the census files are RP {vintage} (variables P{vintage % 100:02d}_…) but the run asks "
            f"for RP {expected}; give files of RP {expected} or run with --vintage {vintage}"
        )
    territory = resolve_territory(fragilite.settings.run.territory, fragilite.territory_presets)
    census, reports = join_census(themes)
    base, more = build_iris_base(contours_iris, census, communes_epci)
    reports += more
    inside = select_territory(base, territory)
    outside = int((~inside).sum())
    base, notes = one_part_of_france(base[inside].reset_index(drop=True), territory)
    for note in notes:
        context.log.warning(note)
        report(context, f"iris_base: {note}")
    require_census(base, territory)
    base["millesime_rp"] = vintage
    # Geometry work for `sorties`, started now on the idle core: the coverage validity and the
    # web simplification of the IRIS outlines.
    outlines = base[["CODE_IRIS", "INSEE_COM", "EPCI", "DEP", "geometry"]]
    background.start(context.run.run_id, WEB_TASK, simplify_iris, outlines, load_publication().web_tolerances_m)
    unmatched = sum(len(r.unmatched_left) + len(r.unmatched_right) for r in reports)
    report(context, f"iris_base: {len(base)} IRIS ({territory.label}), RP {vintage}, {unmatched} code(s) non joint(s)")
    minx, miny, maxx, maxy = base.total_bounds
    return dg.Output(
        base,
        metadata={
            **table_metadata(base),
            "millesime_rp": vintage,
            "crs": str(base.crs),
            "bbox": [round(float(v), 1) for v in (minx, miny, maxx, maxy)],
            "jointures": dg.MetadataValue.json([r.as_dict() for r in reports]),
            "codes_non_joints": unmatched,
            "territoire": territory.label,
            "iris_hors_territoire": outside,
            "parties_ecartees": dg.MetadataValue.json(notes),
        },
    )


@dg.asset(
    group_name=GROUP,
    kinds={"pandas"},
    owners=OWNERS,
    tags={"maille": "iris"},
)
def iris_indicateurs(
    context: dg.AssetExecutionContext,
    fragilite: FragiliteConfig,
    iris_base: gpd.GeoDataFrame,
    filosofi_iris: pd.DataFrame | None,
    filosofi_communes: pd.DataFrame | None,
    arcep_debit: pd.DataFrame | None,
    caf_non_connectes: pd.DataFrame | None,
    cog_passage: pd.DataFrame | None,
) -> dg.Output:
    """Numérateur, dénominateur et taux de chaque indicateur dont les sources sont fournies.

    Les valeurs communales données aux IRIS (ARCEP, Filosofi hors seuil) sont signalées dans la
    colonne `<id>_source`.
    """
    settings, catalogue = fragilite.settings, fragilite.catalogue
    wanted = settings.run.indicators
    unknown = sorted(set(wanted) - set(catalogue.by_id()))
    if unknown:
        raise ConfigError(f"run.indicators: unknown indicator id(s) {unknown}; known: {sorted(catalogue.by_id())}")
    indicators = [i for i in catalogue.indicators if not wanted or i.id in wanted]
    result = compute_indicators(
        iris_base,
        indicators,
        IndicatorInputs(
            filosofi_iris=filosofi_iris,
            filosofi_communes=filosofi_communes,
            arcep_debit=arcep_debit,
            caf_non_connectes=caf_non_connectes,
            cog_passage=cog_passage,
            geography_year=int(iris_base["millesime_rp"].iloc[0]) + 2,
        ),
        legacy_2020=settings.run.legacy_2020,
        commune_fallback=settings.run.filosofi_commune_fallback,
    )
    requested_missing = {k: v for k, v in result.skipped.items() if k in wanted}
    if requested_missing:
        raise ConfigError(
            "run.indicators asks for indicators whose inputs are absent: "
            + "; ".join(f"{k}: {v}" for k, v in requested_missing.items())
        )
    result.join_to(iris_base)
    for warning in result.warnings:
        context.log.warning(warning)
    report(
        context,
        f"iris_indicateurs: {len(result.computed)} indicateurs calculés, "
        f"{len(result.skipped)} sans données ({', '.join(result.skipped)})",
    )
    return dg.Output(
        result,
        metadata={
            **table_metadata(result.table),
            "indicateurs_calcules": result.computed,
            "millesimes": dg.MetadataValue.json(result.vintages),
            "indicateurs_absents": dg.MetadataValue.json(result.skipped),
            "avertissements": dg.MetadataValue.json(result.warnings),
            "jointures": dg.MetadataValue.json([r.as_dict() for r in result.reports]),
        },
    )


@dg.asset(
    group_name=GROUP,
    kinds={"geopandas"},
    owners=OWNERS,
    tags={"maille": "commune-epci-departement"},
)
def mailles(
    context: dg.AssetExecutionContext,
    fragilite: FragiliteConfig,
    iris_indicateurs: IndicatorResult,
) -> dg.Output:
    """Communes, EPCI et départements : sommes des numérateurs, dénominateurs et effectifs de
    leurs IRIS, contours réunis. Les scores de ces mailles sont recalculés sur ces sommes,
    jamais moyennés à partir des scores des IRIS."""
    iris = iris_indicateurs.frame
    # One maille per thread: dissolving outlines is GEOS work that runs on both cores.
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(aggregate_maille, iris, name, fragilite.departement_names) for name in MAILLES}
        out = {name: future.result() for name, future in futures.items()}
    report(context, "mailles: " + ", ".join(f"{len(t)} {name}" for name, t in out.items()))
    return dg.Output(
        out,
        metadata={
            **{f"lignes_{name}": len(t) for name, t in out.items()},
            "population_par_maille": dg.MetadataValue.json(
                {name: float(t["P_POP"].sum()) for name, t in out.items() if "P_POP" in t}
            ),
        },
    )

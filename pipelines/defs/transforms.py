"""Group `transforms`: the IRIS spine, then indicator numerators, denominators and rates."""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import dagster as dg
import geopandas as gpd
import pandas as pd

from pipelines.reporting import report, table_metadata
from pipelines.resources import FragiliteConfig
from transforms.chain import CENSUS_INPUTS, INDICATOR_INPUTS, connectivity_table, iris_indicators, territory_base
from transforms.connectivite import DEMAND_CELL_M
from transforms.indicators import IndicatorResult
from transforms.mailles import MAILLES, aggregate_maille
from transforms.territory import resolve_territory

GROUP = "transforms"
OWNERS = ["team:fragilite-numerique"]


@dg.asset(
    group_name=GROUP,
    kinds={"geopandas"},
    owners=OWNERS,
    tags={"maille": "iris"},
    ins={key: dg.AssetIn(key) for key in CENSUS_INPUTS},  # the census themes of config/inputs.yaml
)
def iris_base(
    context: dg.AssetExecutionContext,
    fragilite: FragiliteConfig,
    contours_iris: gpd.GeoDataFrame,
    communes_epci: pd.DataFrame,
    **census: pd.DataFrame | None,
) -> dg.Output:
    """Une ligne par IRIS des unités de référence entières qui contiennent le territoire d'étude
    (tout le département pour une référence départementale, toutes les communes membres pour une
    référence EPCI ; le territoire seul sinon) : contour, effectifs du recensement (tous thèmes),
    EPCI, département, et `territoire_etude` (vrai pour les IRIS publiées). Les valeurs de
    référence sont calculées sur toutes ces IRIS : le territoire d'étude ne les change pas.

    Chaque code qui ne se joint pas (IRIS sans recensement, recensement sans contour, commune
    sans EPCI) est listé dans les métadonnées, jamais écarté en silence ; une unité de référence
    incomplète dans les entrées arrête le calcul (ou est remplacée par `run.reference_fallback`).
    """
    run = fragilite.settings.run
    territory = resolve_territory(run.territory, fragilite.territory_presets)
    built = territory_base(
        contours_iris,
        communes_epci,
        census,
        territory,
        run.vintage,
        reference_level=run.reference,
        reference_fallback=run.reference_fallback,
    )
    base, reports, notes, vintage = built.frame, built.reports, built.notes, built.vintage
    reference = built.reference.as_dict() if built.reference else {}
    for note in [*notes, *reference.get("notes", [])]:
        context.log.warning(note)
        report(context, f"iris_base: {note}")
    unmatched = sum(len(r.unmatched_left) + len(r.unmatched_right) for r in reports)
    published = int(base["territoire_etude"].sum())
    report(
        context,
        f"iris_base: {published} IRIS ({territory.label}), référence {reference.get('niveau', run.reference)} sur "
        f"{len(base)} IRIS, RP {vintage}, {unmatched} code(s) non joint(s)",
    )
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
            "iris_territoire": published,
            "iris_hors_territoire": built.outside,
            "parties_ecartees": dg.MetadataValue.json(notes),
            "univers_de_reference": dg.MetadataValue.json(reference),
        },
    )


class BuildingMeasures(NamedTuple):
    """What one reading of ARCEP's building files gives: per-IRIS counts, the reports of each
    step, and the located premises as demand points (`transforms.connectivite.premises_points`)."""

    table: pd.DataFrame
    reports: dict
    points: pd.DataFrame


def building_connectivity(
    context: dg.AssetExecutionContext, fragilite: FragiliteConfig, base: gpd.GeoDataFrame
) -> BuildingMeasures | None:
    """Per-IRIS counts and demand points from ARCEP's building files of the run's inputs (None
    when not given), for the territory's `iris_connectivite` and for each département partition."""
    buildings, provenance = fragilite.input_file("arcep_batiments")
    if buildings is None:
        return None
    coverage, coverage_provenance = fragilite.input_file("arcep_4g")
    table, reports = connectivity_table(
        base,
        Path(buildings),
        Path(coverage) if coverage else None,
        Path(context.instance.storage_directory()) / "duckdb",  # spills under build/, not the user's home
    )
    points = table.attrs.pop("points_batiments")  # a frame: the table's attrs stay JSON
    # The ARCEP quarters read, for the indicators' vintages and the dictionary.
    table.attrs["millesime_batiments"] = arcep_quarter(provenance)
    table.attrs["millesime_4g"] = arcep_quarter(coverage_provenance) if coverage else None
    return BuildingMeasures(table, reports, points)


def arcep_quarter(provenance: dict) -> str | None:
    """The quarter of catalogue files (`2025_T2`; `last` with its download date), None for
    files given by path (their quarter is not written in them)."""
    vintage = provenance.get("vintage")
    if not vintage or vintage != "last":
        return vintage or None
    files = [Path(f["fichier"]) for f in provenance.get("fichiers", []) if Path(f["fichier"]).exists()]
    if not files:
        return vintage
    from datetime import date

    return f"last (téléchargé le {date.fromtimestamp(min(f.stat().st_mtime for f in files)).isoformat()})"


def _building_out(description: str) -> dg.AssetOut:
    """An output of the ARCEP building step (both are read from the same files at once)."""
    return dg.AssetOut(
        group_name=GROUP,
        kinds={"duckdb", "pandas"},
        owners=OWNERS,
        tags={"maille": "iris"},
        description=description,
        is_required=False,  # a subset may select one of the two
    )


@dg.multi_asset(
    outs={
        "iris_connectivite": _building_out(
            "Locaux sans accès à 30 Mbit/s et sans bonne couverture 4G, comptés à l'IRIS à partir des "
            "fichiers par immeuble de l'ARCEP (points placés dans les contours IRIS avec DuckDB spatial) : quand ces "
            "fichiers sont fournis, `non_thd` et `non_4g` sont mesurés à l'IRIS ; sinon `non_thd` reprend le taux "
            "communal, signalé.",
        ),
        "points_batiments": _building_out(
            "Les immeubles de l'ARCEP placés dans une IRIS, points de demande de l'offre de médiation : "
            f"par IRIS et carré de {DEMAND_CELL_M} m, les locaux additionnés à leur position moyenne pondérée par les locaux "
            "(CODE_IRIS, x, y dans la projection des IRIS, locaux). Lus en même temps que `iris_connectivite`.",
        ),
    },
    can_subset=True,  # a selection may take either output (the files are read the same way)
)
def iris_connectivite(context: dg.AssetExecutionContext, fragilite: FragiliteConfig, iris_base: gpd.GeoDataFrame):
    """Les immeubles de l'ARCEP lus une fois : locaux comptés à l'IRIS (`iris_connectivite`) et
    points de demande de l'offre de médiation (`points_batiments`)."""
    measured_files = building_connectivity(context, fragilite, iris_base)
    _, provenance = fragilite.input_file("arcep_batiments")  # resolved once per run (cached)
    # The study territory's IRIS (iris_base may also hold the rest of the reference units).
    inside = iris_base["territoire_etude"] if "territoire_etude" in iris_base else pd.Series(True, iris_base.index)
    sources = {
        "iris_total": int(inside.sum()),
        "departements_sans_fichiers": dg.MetadataValue.json(provenance.get("departements_manquants", [])),
        "fichiers_manquants": dg.MetadataValue.json(provenance.get("manquants", [])),
    }
    if measured_files is None:
        report(context, "iris_connectivite: fichiers ARCEP par immeuble non fournis ; non_thd communal, non_4g absent")
        yield from _selected(
            context, dg.Output(None, output_name="iris_connectivite", metadata={"fourni": False, **sources})
        )
        yield from _selected(context, dg.Output(None, output_name="points_batiments", metadata={"fourni": False}))
        return
    table, reports, points = measured_files
    measured = int(table["donnees_batiments"].sum())
    report(context, f"iris_connectivite: {measured}/{len(table)} IRIS mesurées à partir des immeubles")
    # As the indicators count them: building data for the département and located premises.
    located = table.set_index("CODE_IRIS").reindex(iris_base.loc[inside.to_numpy(), "CODE_IRIS"])
    sources["iris_non_thd_immeuble"] = int((located["donnees_batiments"].eq(True) & located["locaux"].gt(0)).sum())
    quarters = {k: table.attrs[k] for k in ("millesime_batiments", "millesime_4g") if table.attrs.get(k)}
    yield from _selected(
        context,
        dg.Output(
            table,
            output_name="iris_connectivite",
            metadata={
                **table_metadata(table),
                "iris_mesurees": measured,
                **sources,
                **({"millesime": quarters["millesime_batiments"]} if "millesime_batiments" in quarters else {}),
                **({"millesime_4g": quarters["millesime_4g"]} if "millesime_4g" in quarters else {}),
                **{name: dg.MetadataValue.json(value) for name, value in reports.items()},
            },
        ),
    )
    yield from _selected(
        context,
        dg.Output(
            points,
            output_name="points_batiments",
            metadata={"fourni": True, "points": len(points), "iris": int(points["CODE_IRIS"].nunique())},
        ),
    )


def _selected(context: dg.AssetExecutionContext, output: dg.Output):
    """The output if the run selected it (a subset may take one of the two)."""
    if output.output_name in context.op_execution_context.selected_output_names:
        yield output


@dg.asset(
    group_name=GROUP,
    kinds={"pandas"},
    owners=OWNERS,
    tags={"maille": "iris"},
    ins={key: dg.AssetIn(key) for key in INDICATOR_INPUTS},  # the indicator inputs of config/inputs.yaml
)
def iris_indicateurs(
    context: dg.AssetExecutionContext,
    fragilite: FragiliteConfig,
    iris_base: gpd.GeoDataFrame,
    iris_connectivite: pd.DataFrame | None,
    **sources: pd.DataFrame | None,
) -> dg.Output:
    """Numérateur, dénominateur et taux de chaque indicateur dont les sources sont fournies.

    Les valeurs communales données aux IRIS (ARCEP, Filosofi hors seuil) sont signalées dans la
    colonne `<id>_source`.
    """
    settings = fragilite.settings
    inputs = {**sources, "connectivite": iris_connectivite}
    result = iris_indicators(
        iris_base,
        inputs,
        fragilite.catalogue.indicators,
        wanted=settings.run.indicators,
        legacy_2020=settings.run.legacy_2020,
        commune_fallback=settings.run.filosofi_commune_fallback,
    )
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
            "millesimes_melanges": dg.MetadataValue.json(result.mixed_years),
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

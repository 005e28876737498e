"""The IRIS chain, once: parsed inputs → the IRIS spine of a territory → its indicators.

The territory assets (`iris_base`, `iris_indicateurs`) and the département partitions
(`iris_departement`) call these same functions; scoring (indice/) comes after, on the whole
territory or, for partitions, on the national merge, so that methods whose universe is the
territory or France (IFN deciles, Opale's territory reference, EPCI references straddling
départements) are never computed per partition.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import pandas as pd

from config.settings import ConfigError, Indicator, inputs_of
from transforms.indicators import IndicatorInputs, IndicatorResult, compute_indicators
from transforms.iris_base import JoinReport, VintageError, build_iris_base, census_vintage, join_census
from transforms.territory import (
    ReferenceUniverse,
    Territory,
    one_part_of_france,
    reference_universe,
    require_census,
    select_territory,
)

# The chain's inputs, by role in the registry (config/inputs.yaml): the census themes (base-ic
# files), the inputs indicators draw on besides the census, and every input the chain parses
# (those two and the spine: IRIS outlines, commune → EPCI table).
CENSUS_INPUTS = inputs_of("census")
INDICATOR_INPUTS = inputs_of("indicator")
CHAIN_INPUTS = inputs_of("spine", "census", "indicator")


@dataclass
class TerritoryBase:
    """The IRIS spine of a study territory and what building it reported."""

    frame: gpd.GeoDataFrame
    vintage: int
    reports: list[JoinReport] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # parts of France left aside
    outside: int = 0  # IRIS of the inputs outside the territory
    reference: ReferenceUniverse | None = None  # the whole reference units read with it


def territory_base(
    contours: gpd.GeoDataFrame,
    communes_epci: pd.DataFrame,
    census: dict[str, pd.DataFrame | None],
    territory: Territory,
    expected_vintage: int | None = None,
    *,
    reference_level: str | None = None,
    reference_fallback: str = "refuse",
) -> TerritoryBase:
    """One row per IRIS of the territory: outline, census counts of every theme, EPCI,
    département, in the CRS of its part of France; every code that does not join is reported.

    With a `reference_level` (departement, epci), the rows are those of the whole reference units
    that hold the territory (a département reference reads the whole département, an EPCI one all
    its member communes), flagged `territoire_etude` when they belong to the study territory:
    reference values are computed on all of them, only the study territory is published. The
    département partitions pass no level: each is a whole département already.
    """
    themes = {name: df for name, df in census.items() if df is not None}
    vintage = census_vintage(themes)
    if expected_vintage is not None and vintage != expected_vintage:
        raise VintageError(
            f"les fichiers du recensement sont du RP {vintage} (variables P{vintage % 100:02d}_…) mais le calcul "
            f"demande le RP {expected_vintage} ; donnez les fichiers du RP {expected_vintage} ou lancez avec "
            f"--vintage {vintage}"
        )
    joined, reports = join_census(themes)
    base, more = build_iris_base(contours, joined, communes_epci)
    inside = select_territory(base, territory)
    universe = None
    kept = inside
    if reference_level is not None:
        universe = reference_universe(base, inside, reference_level, communes_epci, reference_fallback)
        kept = universe.mask
    selected = base[kept.to_numpy()].assign(territoire_etude=inside[kept].to_numpy())
    frame, notes = one_part_of_france(selected.reset_index(drop=True), territory)
    require_census(frame[frame["territoire_etude"].to_numpy()], territory)
    frame["millesime_rp"] = vintage
    if universe is not None:
        frame.attrs["reference"] = universe.as_dict()
    return TerritoryBase(frame, vintage, reports + more, notes, int((~inside).sum()), universe)


def study_rows(base: pd.DataFrame) -> pd.DataFrame:
    """The rows of the study territory (published), without the reference units' other IRIS."""
    if "territoire_etude" not in base:
        return base
    return base[base["territoire_etude"].astype(bool).to_numpy()]


def selected_indicators(indicators: list[Indicator], wanted: list[str]) -> list[Indicator]:
    """The indicators a run asks for (`run.indicators`; empty = all), unknown ids refused."""
    known = {i.id for i in indicators}
    unknown = sorted(set(wanted) - known)
    if unknown:
        raise ConfigError(f"run.indicators : identifiant(s) inconnu(s) {unknown} ; connus : {sorted(known)}")
    return [i for i in indicators if not wanted or i.id in wanted]


def iris_indicators(
    base: gpd.GeoDataFrame,
    inputs: dict[str, pd.DataFrame | None],
    indicators: list[Indicator],
    *,
    wanted: list[str] = (),
    legacy_2020: bool = False,
    commune_fallback: bool = True,
) -> IndicatorResult:
    """Numerator, denominator and rate of each indicator whose inputs are present, joined to
    the spine; an indicator the run asked for by name whose inputs are absent is refused."""
    result = compute_indicators(
        base,
        selected_indicators(indicators, list(wanted)),
        IndicatorInputs(
            **{key: inputs.get(key) for key in (*INDICATOR_INPUTS, "connectivite")},
            geography_year=int(base["millesime_rp"].iloc[0]) + 2,
        ),
        legacy_2020=legacy_2020,
        commune_fallback=commune_fallback,
    )
    missing = {k: v for k, v in result.skipped.items() if k in wanted}
    if missing:
        raise ConfigError(
            "run.indicators demande des indicateurs dont les fichiers manquent : "
            + " ; ".join(f"{k} : {v}" for k, v in missing.items())
        )
    return result.join_to(base)


def connectivity_table(
    base: gpd.GeoDataFrame, buildings: Path, coverage: Path | None, work_dir: Path
) -> tuple[pd.DataFrame, dict]:
    """Premises without ≥ 30 Mbit/s and without 4G per IRIS, from ARCEP's building files (a file
    or a folder of `base_imb_<DEP>.csv.gz` and `actuel_<DEP>.csv.gz`) and, when given, « Mon
    réseau mobile » coverage (`.gpkg` or `.gpkg.7z`, a file or a folder), with the reports of
    each step. DuckDB works in `work_dir` (spills there), closed at the end."""
    from config.connectivity import load_connectivity
    from sources.arcep_batiments import register_buildings
    from sources.arcep_mobile import register_coverage
    from transforms.connectivite import iris_connectivity
    from transforms.duckdb_spatial import connect

    config = load_connectivity()

    def files(path: Path, pattern: str) -> list[Path]:
        return sorted(path.glob(pattern)) if path.is_dir() else [path]

    target = base.crs.to_epsg() if base.crs is not None else 2154
    con = connect(work_dir, config.memory_limit, config.threads)
    try:
        reports = {
            "batiments": register_buildings(
                con,
                files(buildings, "base_imb*.csv*"),
                files(buildings, "actuel*.csv*"),
                technologies=config.technologies,
                thd_classes=config.thd_classes,
                target_crs=target,
            )
        }
        if coverage is not None:
            reports["couverture_4g"] = register_coverage(
                con,
                files(coverage, "*.gpkg*"),
                work_dir=work_dir,
                target_crs=target,
                levels=config.coverage_levels,
                operators=config.operators,
                max_vertices=config.max_vertices,
            )
        columns = [c for c in ("CODE_IRIS", "INSEE_COM", "EPSG", "geometry") if c in base.columns]
        table, joined = iris_connectivity(
            con, base[columns], "batiments", "couverture_4g" if coverage is not None else None
        )
        reports["iris"] = joined
    finally:
        con.close()
    return table, reports

"""Indicator numerators, denominators and rates per IRIS (methodology §3).

Every indicator is kept as a pair of counts so that any aggregate is Σnum / Σden. Values that
come from a coarser maille (a commune figure given to its IRIS) are flagged in `<id>_source`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd

from config.settings import Indicator
from transforms.geo_codes import isin_codes, lookup_commune_values
from transforms.iris_base import JoinReport

# Weight used to apportion commune counts to IRIS, by preference.
HOUSEHOLD_WEIGHTS = ("C_MEN", "P_POP")


@dataclass
class IndicatorInputs:
    """Parsed sources an indicator may draw on (None = not supplied for this run)."""

    filosofi_iris: pd.DataFrame | None = None
    filosofi_communes: pd.DataFrame | None = None
    arcep_debit: pd.DataFrame | None = None
    caf_non_connectes: pd.DataFrame | None = None
    cog_passage: pd.DataFrame | None = None
    geography_year: int | None = None  # census vintage + 2: the year commune codes are aligned to


@dataclass
class IndicatorResult:
    table: pd.DataFrame  # CODE_IRIS + <id>_num/_den/_taux[/_source] + non_residentiel
    computed: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # indicator id → reason
    reports: list[JoinReport] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    vintages: dict[str, str] = field(default_factory=dict)  # source → year or date of its data
    frame: pd.DataFrame | None = None  # the IRIS spine joined with `table`, set by `join_to`

    def join_to(self, base: gpd.GeoDataFrame) -> "IndicatorResult":
        """One frame per IRIS: outline, keys, census counts and indicators (row-aligned)."""
        joined = pd.concat([base, self.table.drop(columns="CODE_IRIS")], axis=1)
        self.frame = gpd.GeoDataFrame(joined, geometry="geometry", crs=base.crs)
        self.frame.attrs.update(base.attrs)  # e.g. the coverage validity established on the base
        return self


def compute_indicators(
    base: pd.DataFrame,
    indicators: list[Indicator],
    inputs: IndicatorInputs,
    *,
    legacy_2020: bool = False,
    commune_fallback: bool = True,
) -> IndicatorResult:
    """Numerator, denominator and rate of each indicator whose inputs exist, per IRIS."""
    out = pd.DataFrame({"CODE_IRIS": base["CODE_IRIS"].to_numpy()}, index=base.index)
    result = IndicatorResult(table=out)
    for name, table, attr in (("filosofi_iris", inputs.filosofi_iris, "annee"),
                              ("filosofi_communes", inputs.filosofi_communes, "annee"),
                              ("arcep_debit", inputs.arcep_debit, "date"),
                              ("caf_non_connectes", inputs.caf_non_connectes, "millesime")):
        if table is not None and table.attrs.get(attr):
            result.vintages[name] = str(table.attrs[attr])
    for ind in indicators:
        reason = _compute_one(base, ind, inputs, result, legacy_2020, commune_fallback)
        if reason:
            result.skipped[ind.id] = reason
        else:
            result.computed.append(ind.id)
    pop = base.get("P_POP")
    out["non_residentiel"] = (pop.fillna(0) <= 0) if pop is not None else False
    return result


def _compute_one(
    base: pd.DataFrame,
    ind: Indicator,
    inputs: IndicatorInputs,
    result: IndicatorResult,
    legacy_2020: bool,
    commune_fallback: bool,
) -> str | None:
    out = result.table
    if ind.computation == "census_ratio":
        missing = [v for v in (ind.numerator, ind.denominator) if v not in base.columns]
        if missing:
            return f"census variable(s) {missing} not in the inputs ({ind.source})"
        num, den = base[ind.numerator], base[ind.denominator]
        over = num > den * (1 + 1e-9)
        if over.any():
            codes = base.loc[over, "CODE_IRIS"].tolist()
            result.warnings.append(
                f"{ind.id}: numerator {ind.numerator} above denominator {ind.denominator} for "
                f"{len(codes)} IRIS ({', '.join(codes[:10])}); rates above 1 kept as published"
            )
        _store(out, ind.id, num, den)
        return None
    if ind.computation in ("filosofi_share", "filosofi_level"):
        return _filosofi(base, ind, inputs, result, legacy_2020, commune_fallback)
    if ind.computation == "arcep_non_thd":
        if inputs.arcep_debit is None:
            return "ARCEP 'Ma connexion internet' file not supplied (inputs.arcep_debit)"
        arcep = inputs.arcep_debit
        counts = pd.DataFrame({"INSEE_COM": arcep["INSEE_COM"], "num": arcep["locaux"] - arcep["locaux_thd"],
                               "den": arcep["locaux"]})
        _apportioned(base, ind, _aligned(base, counts, inputs, result, "ARCEP"), result, "ARCEP")
        return None
    if ind.computation == "caf_ratio":
        caf = inputs.caf_non_connectes
        if caf is None:
            return "CAF 'allocataires non connectés' file not supplied (inputs.caf_non_connectes)"
        communes = caf[caf["niveau"] == "commune"]
        counts = pd.DataFrame({"INSEE_COM": communes["code_geo"], "num": communes["non_connectes"],
                               "den": communes["allocataires"]})
        _apportioned(base, ind, _aligned(base, counts, inputs, result, "CAF"), result, "CAF")
        iris = caf[caf["niveau"] == "iris"].set_index("code_geo")
        direct = isin_codes(base["CODE_IRIS"], iris.index)
        if direct.any():
            rows = iris.reindex(base.loc[direct, "CODE_IRIS"])
            table = result.table
            table.loc[direct, f"{ind.id}_num"] = rows["non_connectes"].to_numpy()
            table.loc[direct, f"{ind.id}_den"] = rows["allocataires"].to_numpy()
            with np.errstate(divide="ignore", invalid="ignore"):
                num, den = table[f"{ind.id}_num"], table[f"{ind.id}_den"]
                table[f"{ind.id}_taux"] = (num / den).where(den > 0)
            table.loc[direct, f"{ind.id}_source"] = "iris"
        return None
    return f"source {ind.source} has no parser in this version"


def _aligned(base: pd.DataFrame, counts: pd.DataFrame, inputs: IndicatorInputs, result: IndicatorResult,
             label: str) -> pd.DataFrame:
    """Commune counts re-keyed onto the census communes when a table de passage is given."""
    if inputs.cog_passage is None or inputs.geography_year is None:
        return counts
    from transforms.geo_codes import city_code
    from transforms.vintages import align_commune_counts, code_mapping

    known = set(base["INSEE_COM"]) | set(city_code(base["INSEE_COM"]))
    aligned, report = align_commune_counts(counts, known, code_mapping(inputs.cog_passage, inputs.geography_year),
                                           ["num", "den"], label)
    result.reports.append(report)
    return aligned


def _store(out: pd.DataFrame, ind_id: str, num: pd.Series, den: pd.Series) -> None:
    num = num.astype("float64").to_numpy()
    den = den.astype("float64").to_numpy()
    out[f"{ind_id}_num"] = num
    out[f"{ind_id}_den"] = den
    with np.errstate(divide="ignore", invalid="ignore"):
        out[f"{ind_id}_taux"] = np.where(den > 0, num / den, np.nan)


def _filosofi(
    base: pd.DataFrame,
    ind: Indicator,
    inputs: IndicatorInputs,
    result: IndicatorResult,
    legacy_2020: bool,
    commune_fallback: bool,
) -> str | None:
    """Filosofi value per IRIS, else its commune's (flagged), weighted by population.

    Under `legacy_2020` income is the commune median for every IRIS (MedNum 2020), stored as
    num = median, den = 1 so that the rate is the median itself.
    """
    variable = ind.variable
    scale = 0.01 if ind.computation == "filosofi_share" else 1.0
    communes = inputs.filosofi_communes
    commune_value = pd.Series(np.nan, index=base.index)
    if communes is not None and variable in communes.columns:
        rows, _ = lookup_commune_values(base["INSEE_COM"], communes)
        commune_value = rows[variable]

    if legacy_2020 and ind.computation == "filosofi_level":
        if communes is None or variable not in communes.columns:
            return f"legacy_2020 needs the Filosofi commune file with {variable}yy (inputs.filosofi_communes)"
        _store(result.table, ind.id, commune_value, pd.Series(np.where(commune_value.notna(), 1.0, 0.0)))
        result.table[f"{ind.id}_source"] = np.where(commune_value.notna(), "commune", "")
        _report_missing(base, ind, commune_value, result, "commune")
        return None

    iris = inputs.filosofi_iris
    if iris is None and communes is None:
        return "no Filosofi file supplied (inputs.filosofi_iris, inputs.filosofi_communes)"
    if "P_POP" not in base.columns:
        return "census population P_POP (evol-struct-pop) needed to weight Filosofi values"
    iris_value = pd.Series(np.nan, index=base.index)
    if iris is not None and variable in iris.columns:
        iris_value = base[["CODE_IRIS"]].merge(iris[["CODE_IRIS", variable]], on="CODE_IRIS", how="left")[variable]
        iris_value.index = base.index
        if not any(r.join == "IRIS ↔ Filosofi IRIS" for r in result.reports):
            codes, published = set(base["CODE_IRIS"]), set(iris["CODE_IRIS"])
            result.reports.append(JoinReport(
                join="IRIS ↔ Filosofi IRIS",
                matched=len(codes & published),
                unmatched_left=sorted(codes - published),
                note="left: IRIS Filosofi does not publish (communes not split into IRIS, IRIS under "
                "the threshold); they take the commune value where there is one. Codes of the "
                "Filosofi file outside the territory are not listed.",
            ))
    if ind.computation == "filosofi_level":
        # A median income of 0 is a suppressed value written as 0 (seen in MedNum's MED15).
        zero = (iris_value <= 0) | (commune_value <= 0)
        if zero.any():
            result.warnings.append(
                f"{ind.id}: {variable} <= 0 treated as missing for {int(zero.sum())} IRIS "
                f"({', '.join(base.loc[zero, 'CODE_IRIS'].head(10))})"
            )
        iris_value, commune_value = iris_value.where(iris_value > 0), commune_value.where(commune_value > 0)
    use_commune = iris_value.isna() & commune_value.notna() & commune_fallback
    value = iris_value.where(~use_commune, commune_value) * scale
    source = np.select([iris_value.notna(), use_commune], ["iris", "commune"], default="")
    pop = base["P_POP"].fillna(0)
    _store(result.table, ind.id, (value * pop).where(value.notna()), pop.where(value.notna(), 0.0))
    result.table[f"{ind.id}_source"] = source
    _report_missing(base, ind, value, result, "IRIS or commune")
    return None


def _report_missing(base: pd.DataFrame, ind: Indicator, value: pd.Series, result: IndicatorResult, level: str) -> None:
    missing = base.loc[value.isna(), "CODE_IRIS"].tolist()
    if missing:
        result.warnings.append(
            f"{ind.id}: no {level} value for {len(missing)} IRIS (not scored): {', '.join(missing[:10])}"
            + (" …" if len(missing) > 10 else "")
        )


def _apportioned(base: pd.DataFrame, ind: Indicator, counts: pd.DataFrame, result: IndicatorResult, label: str) -> None:
    """Commune counts (`INSEE_COM`, `num`, `den`) apportioned to IRIS by their share of households.

    The apportioned counts add up to the commune's, and every IRIS carries the commune rate,
    flagged `commune`. Arrondissements take their city's row (69381 → 69123). A blank count
    (secret statistique) stays blank.
    """
    rows, used = lookup_commune_values(base["INSEE_COM"], counts)
    weight_col = next((c for c in HOUSEHOLD_WEIGHTS if c in base.columns), None)
    weight = base[weight_col].fillna(0) if weight_col else pd.Series(1.0, index=base.index)
    total = weight.groupby(used).transform("sum")
    share = (weight / total).where(total > 0)
    # A commune whose IRIS all have zero weight: split evenly rather than lose its counts.
    share = share.fillna(1.0 / used.groupby(used).transform("count"))
    _store(result.table, ind.id, rows["num"] * share, (rows["den"] * share).fillna(0.0))
    result.table[f"{ind.id}_source"] = np.where(used.notna(), "commune", "")
    communes = set(base["INSEE_COM"])
    unmatched = sorted(set(base.loc[used.isna(), "INSEE_COM"]))
    result.reports.append(JoinReport(
        join=f"communes ↔ {label}",
        matched=len(communes) - len(unmatched),
        unmatched_left=unmatched,
        note="arrondissements of Paris, Lyon and Marseille matched to their city's row",
    ))
    if unmatched:
        result.warnings.append(f"{ind.id}: {len(unmatched)} commune(s) absent from the {label} file: {unmatched[:10]}")

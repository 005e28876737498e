"""MedNum 2019 scoring (methodology §4.1). Pure functions: DataFrame in, DataFrame out.

x_k(R)   = Σ num_k / Σ den_k over the IRIS of the reference territory R
score_k  = 100 · x_k(i) / x_k(R)      (inverted, 100 · x_k(R) / x_k(i), if higher is better)
axis     = mean of the available indicator scores of the axis
acces    = pooled mean of information + interfaces indicator scores (not a mean of axes)
global   = mean of all available indicator scores
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from config.settings import Indicator
from indice.weighting import composite_score

AXES = ("information", "interfaces", "administratif", "numerique")
GLOBALS = {"acces": ("information", "interfaces"), "competences": ("administratif", "numerique")}
AXIS_SCORE_COLUMNS = tuple(f"score_{a}" for a in AXES) + ("score_acces", "score_competences", "score_global")
# What each score rests on (methodology §8), and the reliability flag of the row.
COMPLETENESS_COLUMNS = ("nb_indicateurs_notes", "indicateurs_manquants", *(f"n_{a}" for a in AXES))
RELIABILITY_COLUMN = "fiabilite"
# The columns a layer takes from the score table after the indicator scores, in this order.
SCORE_COLUMNS = (*AXIS_SCORE_COLUMNS, *COMPLETENESS_COLUMNS, RELIABILITY_COLUMN)
GROUP_COLUMN = {"departement": "DEP", "epci": "EPCI", "region": "REG"}


@dataclass(frozen=True)
class Reference:
    """Where x_k(R) comes from.

    Without `fixed`, departement/epci/territoire values are computed from the rows scored. With
    `fixed` (unit code → {indicator id: value}), each row takes the values of its unit: the
    configured région/France values, or the values computed once on the whole reference units
    (`unit_references`) so that the study territory never changes them. An indicator without a
    value for a unit is not scored there.
    """

    level: str = "departement"
    fixed: Mapping[str, Mapping[str, float]] = field(default_factory=dict)


def rates(frame: pd.DataFrame, ind_id: str, legacy_2020: bool = False) -> pd.Series:
    """x_k(i): the published rate `<id>_taux` when the frame has it (a commune value given to
    several IRIS is then exactly equal on each), else num / den; under legacy_2020 a zero
    denominator gives a rate of 0 (MedNum 2020)."""
    num, den = frame[f"{ind_id}_num"], frame[f"{ind_id}_den"]
    published = frame.get(f"{ind_id}_taux")
    rate = (published if published is not None else num / den).astype("float64").where(den > 0)
    if legacy_2020:
        rate = rate.mask(num.notna() & (den <= 0), 0.0)
    return rate


def reference_values(
    frame: pd.DataFrame,
    indicators: list[Indicator],
    reference: Reference,
    *,
    commune_mean: frozenset[str] = frozenset(),
) -> pd.DataFrame:
    """x_k(R) for each IRIS (rows aligned on `frame`), one column per indicator id.

    Indicators in `commune_mean` use the unweighted mean of the commune values over the distinct
    communes of R (MedNum 2020 income) instead of the ratio of sums.
    """
    keys = _group_keys(frame, reference.level)
    codes, units = pd.factorize(keys)  # one hashing of the keys for every indicator; -1: no key

    def per_row(per_unit: np.ndarray) -> np.ndarray:
        return np.where(codes >= 0, per_unit[codes.clip(0)] if len(per_unit) else np.nan, np.nan)

    columns: dict[str, np.ndarray] = {}
    if reference.fixed or reference.level in ("region", "france"):
        for ind in indicators:
            fixed = [reference.fixed.get(str(u), {}).get(ind.id, np.nan) for u in units]
            columns[ind.id] = per_row(np.asarray(fixed, dtype="float64"))
        return pd.DataFrame(columns, index=frame.index, columns=[i.id for i in indicators])
    for ind in indicators:
        num, den = frame[f"{ind.id}_num"], frame[f"{ind.id}_den"]
        usable = num.notna() & (den > 0)
        if ind.id in commune_mean:
            # Coarser mailles have no commune column: each row is its own unit there.
            communes = frame["INSEE_COM"] if "INSEE_COM" in frame else pd.Series(frame.index, index=frame.index)
            per_commune = pd.DataFrame({"key": keys, "com": communes, "v": num / den})[usable]
            per_commune = per_commune.drop_duplicates(["key", "com"])
            columns[ind.id] = keys.map(per_commune.groupby("key")["v"].mean()).to_numpy(dtype="float64")
            continue
        # Each pair summed by itself, as always: pandas' compensated sums over a wider block
        # differ in the last bits.
        pair = pd.DataFrame({"num": num.where(usable), "den": den.where(usable)}).groupby(codes).sum(min_count=1)
        pair = pair[pair.index >= 0]
        sums = np.full((len(units), 2), np.nan)
        sums[pair.index] = pair.to_numpy(dtype="float64", na_value=np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            columns[ind.id] = per_row(np.where(sums[:, 1] > 0, sums[:, 0] / sums[:, 1], np.nan))
    return pd.DataFrame(columns, index=frame.index, columns=[i.id for i in indicators])


def unit_references(
    frame: pd.DataFrame,
    indicators: list[Indicator],
    level: str,
    *,
    commune_mean: frozenset[str] = frozenset(),
) -> dict[str, dict[str, float]]:
    """x_k(R) of every reference unit of `frame` (unit code → {indicator id: value}), computed
    on all its rows: pass the whole reference units, then score any subset with
    `Reference(level, fixed=...)`."""
    computed = reference_values(frame, indicators, Reference(level), commune_mean=commune_mean)
    keys = _group_keys(frame, level)
    table = computed.assign(_key=keys.to_numpy()).dropna(subset=["_key"]).drop_duplicates("_key")
    return {
        str(row["_key"]): {i.id: float(row[i.id]) for i in indicators if pd.notna(row[i.id])}
        for _, row in table.iterrows()
    }


def _group_keys(frame: pd.DataFrame, level: str) -> pd.Series:
    if level == "territoire":
        return pd.Series("territoire", index=frame.index)
    if level == "france":
        return pd.Series("FR", index=frame.index)
    column = GROUP_COLUMN[level]
    if column not in frame.columns:
        raise KeyError(f"reference level {level!r} needs column {column}")
    return frame[column].astype("string")


def indicator_scores(
    frame: pd.DataFrame,
    indicators: list[Indicator],
    references: pd.DataFrame,
    *,
    legacy_2020: bool = False,
) -> pd.DataFrame:
    """`<id>_score` per IRIS: 100 = as fragile as the reference, above = more fragile."""
    out = pd.DataFrame(index=frame.index)
    for ind in indicators:
        x = rates(frame, ind.id, legacy_2020)
        ref = references[ind.id].where(references[ind.id] > 0)
        if ind.higher_is_better and not legacy_2020:
            score = 100.0 * ref / x.where(x > 0)
        else:
            score = 100.0 * x / ref
        out[f"{ind.id}_score"] = score.astype("float64")
    return out


@dataclass(frozen=True)
class Completeness:
    """When a composite is computed (config/methods.yaml `completeness`). The defaults are the
    MedNum 2019 rule: the mean of whatever indicator scores are available."""

    min_indicators_per_axis: int = 1
    global_requires_all_axes: bool = False


def indicator_counts(scores: pd.DataFrame, axis_of: Mapping[str, str]) -> pd.DataFrame:
    """Per row: `nb_indicateurs_notes`, `indicateurs_manquants` (ids, comma-separated, in
    catalogue order) and `n_<axe>`, over the indicators of `axis_of` (those the run scores)."""
    present = pd.DataFrame(
        {i: scores[f"{i}_score"].notna() if f"{i}_score" in scores else False for i in axis_of}, index=scores.index
    )
    out = pd.DataFrame(index=scores.index)
    out["nb_indicateurs_notes"] = present.sum(axis=1).astype("int32")
    ids = np.array(list(axis_of), dtype=object)
    missing = ~present.to_numpy(dtype=bool)
    out["indicateurs_manquants"] = _missing_lists(ids, missing) if len(ids) else ""
    for axis in AXES:
        members = [i for i, a in axis_of.items() if a == axis]
        out[f"n_{axis}"] = present[members].sum(axis=1).astype("int32") if members else np.int32(0)
    return out


def _missing_lists(ids: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """Per row of `missing` (rows × indicators), the ids of its missing indicators joined by
    commas: joined once per distinct pattern (a handful), each row's pattern a number."""
    bits = np.zeros(len(missing), dtype=object) if len(ids) > 62 else np.zeros(len(missing), dtype=np.int64)
    for k in range(len(ids)):
        bits = bits + missing[:, k].astype(np.int64) * (1 << k)
    patterns, inverse = np.unique(bits, return_inverse=True)
    texts = np.array([",".join(i for k, i in enumerate(ids) if int(p) >> k & 1) for p in patterns], dtype=object)
    return texts[inverse.reshape(-1)]


def aggregate_scores(
    scores: pd.DataFrame,
    axis_of: Mapping[str, str],
    weights: Mapping[str, float] | None = None,
    rule: Completeness = Completeness(),
) -> pd.DataFrame:
    """Axis, `acces`, `competences` and global scores as pooled means of indicator scores.

    `scores` has one `<id>_score` column per indicator; `axis_of` maps indicator id → axis;
    `weights` (indicator id → weight, default 1) come from the `mednum_2019` preset. Missing
    scores are skipped, never counted as 0. `rule` blanks an axis resting on fewer indicators
    than required and, if asked, a composite unless each of its axes has a score.
    """
    counts = indicator_counts(scores, axis_of)

    def pooled(axes: tuple[str, ...]) -> pd.Series:
        subset = {i: a for i, a in axis_of.items() if a in axes}
        value = composite_score(scores, subset, scheme="pooled", indicator_weights=weights)
        enough = pd.Series(True, index=scores.index)
        for axis in axes:
            axis_ok = counts[f"n_{axis}"] >= rule.min_indicators_per_axis
            if len(axes) == 1 or rule.global_requires_all_axes:
                enough &= axis_ok
        return value.where(enough)

    out = pd.DataFrame(index=scores.index)
    for axis in AXES:
        out[f"score_{axis}"] = pooled((axis,))
    for name, axes in GLOBALS.items():
        out[f"score_{name}"] = pooled(axes)
    out["score_global"] = pooled(AXES)
    return pd.concat([out, counts], axis=1)


@dataclass
class MednumResult:
    scores: pd.DataFrame  # <id>_score then SCORE_COLUMNS, aligned on the input rows
    references: pd.DataFrame  # x_k(R) per IRIS, one column per indicator
    unscored: dict[str, str]  # indicator id → why it has no score at this reference


def score_mednum(
    frame: pd.DataFrame,
    indicators: list[Indicator],
    reference: Reference,
    *,
    legacy_2020: bool = False,
    weights: Mapping[str, float] | None = None,
    rule: Completeness = Completeness(),
) -> MednumResult:
    """The whole MedNum 2019 method (or its 2020 publication with `legacy_2020`)."""
    refs = reference_values(frame, indicators, reference, commune_mean=commune_mean_ids(indicators, legacy_2020))
    unscored = {
        i.id: f"aucune valeur de référence au niveau {reference.level}"
        + (" dans la configuration (reference_values)" if reference.level in ("region", "france") else "")
        for i in indicators
        if refs[i.id].isna().all()
    }
    # Unscored indicators keep an all-missing score column; means skip missing scores.
    per_indicator = indicator_scores(frame, indicators, refs, legacy_2020=legacy_2020)
    aggregated = aggregate_scores(per_indicator, {i.id: i.axis for i in indicators}, weights, rule)
    return MednumResult(pd.concat([per_indicator, aggregated], axis=1), refs, unscored)


def commune_mean_ids(indicators: list[Indicator], legacy_2020: bool) -> frozenset[str]:
    """Indicators whose reference is a mean of commune values (MedNum 2020 income)."""
    return frozenset(i.id for i in indicators if legacy_2020 and i.higher_is_better)

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
SCORE_COLUMNS = tuple(f"score_{a}" for a in AXES) + ("score_acces", "score_competences", "score_global")
GROUP_COLUMN = {"departement": "DEP", "epci": "EPCI", "region": "REG"}


@dataclass(frozen=True)
class Reference:
    """Where x_k(R) comes from.

    `level` departement/epci/territoire: computed from the loaded IRIS. region/france: taken
    from `fixed` (region code or "FR" → {indicator id: value}); indicators without a fixed
    value are not scored.
    """

    level: str = "departement"
    fixed: Mapping[str, Mapping[str, float]] = field(default_factory=dict)


def rates(frame: pd.DataFrame, ind_id: str, legacy_2020: bool = False) -> pd.Series:
    """x_k(i); under legacy_2020 a zero denominator gives a rate of 0 (MedNum 2020)."""
    num, den = frame[f"{ind_id}_num"], frame[f"{ind_id}_den"]
    rate = (num / den).where(den > 0)
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
    out = pd.DataFrame(index=frame.index)
    for ind in indicators:
        if reference.level in ("region", "france"):
            values = {code: vals.get(ind.id, np.nan) for code, vals in reference.fixed.items()}
            out[ind.id] = keys.map(values).astype("float64")
            continue
        num, den = frame[f"{ind.id}_num"], frame[f"{ind.id}_den"]
        usable = num.notna() & (den > 0)
        if ind.id in commune_mean:
            # Coarser mailles have no commune column: each row is its own unit there.
            units = frame["INSEE_COM"] if "INSEE_COM" in frame else pd.Series(frame.index, index=frame.index)
            per_commune = pd.DataFrame({"key": keys, "com": units, "v": num / den})[usable]
            per_commune = per_commune.drop_duplicates(["key", "com"])
            ref = per_commune.groupby("key")["v"].mean()
        else:
            sums = pd.DataFrame({"key": keys, "num": num.where(usable), "den": den.where(usable)})
            grouped = sums.groupby("key")[["num", "den"]].sum(min_count=1)
            ref = (grouped["num"] / grouped["den"]).where(grouped["den"] > 0)
        out[ind.id] = keys.map(ref).astype("float64")
    return out


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


def aggregate_scores(
    scores: pd.DataFrame, axis_of: Mapping[str, str], weights: Mapping[str, float] | None = None
) -> pd.DataFrame:
    """Axis, `acces`, `competences` and global scores as pooled means of indicator scores.

    `scores` has one `<id>_score` column per indicator; `axis_of` maps indicator id → axis;
    `weights` (indicator id → weight, default 1) come from the `mednum_2019` preset. Missing
    scores are skipped, never counted as 0.
    """

    def pooled(axes: tuple[str, ...]) -> pd.Series:
        subset = {i: a for i, a in axis_of.items() if a in axes}
        return composite_score(scores, subset, scheme="pooled", indicator_weights=weights)

    out = pd.DataFrame(index=scores.index)
    for axis in AXES:
        out[f"score_{axis}"] = pooled((axis,))
    for name, axes in GLOBALS.items():
        out[f"score_{name}"] = pooled(axes)
    out["score_global"] = pooled(AXES)
    return out


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
) -> MednumResult:
    """The whole MedNum 2019 method (or its 2020 publication with `legacy_2020`)."""
    commune_mean = frozenset(i.id for i in indicators if legacy_2020 and i.higher_is_better)
    refs = reference_values(frame, indicators, reference, commune_mean=commune_mean)
    unscored = {i.id: f"no reference value at level {reference.level}" for i in indicators if refs[i.id].isna().all()}
    # Unscored indicators keep an all-missing score column; means skip missing scores.
    per_indicator = indicator_scores(frame, indicators, refs, legacy_2020=legacy_2020)
    aggregated = aggregate_scores(per_indicator, {i.id: i.axis for i in indicators}, weights)
    return MednumResult(pd.concat([per_indicator, aggregated], axis=1), refs, unscored)

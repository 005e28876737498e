"""National IFN 2023 (methodology §4.2): indicators mapped to 1–10, then unweighted means.

The public pages do not say how the 1–10 mapping is done. Default: decile rank among the IRIS
of the universe (ties share the lower note, missing values get no note); option: min–max.

Ranks and min–max are computed on rates rounded to RANK_DIGITS significant digits: far finer
than any published figure (INSEE rates to 0.1 point, weighted census counts to about 1e-6), far
coarser than floating-point noise (1e-16), so that one commune value given to several IRIS — or
any two equal published values — always share a note.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

PREFIX = "ifn2023"
RANK_DIGITS = 9


def round_significant(values: pd.Series, digits: int = RANK_DIGITS) -> pd.Series:
    """Each value rounded to `digits` significant digits, exactly as its decimal text
    (`%.{digits-1}e`) read back would be, so that values equal at that precision become the
    same float. Computed in floating point (a national run ranks a million values); the few
    values too close to a rounding tie or to a power of ten for that to be exact go through
    their text (`_round_significant_text`)."""
    x = values.to_numpy(dtype="float64")
    rounded = x.copy()  # zeros, NaN and infinities are their own text's value
    size = np.abs(x)
    todo = np.flatnonzero(np.isfinite(x) & (x != 0))
    with np.errstate(divide="ignore"):
        exponent = np.floor(np.log10(size[todo])).astype(np.int64) - (digits - 1)
    # 10**k is exact for |k| <= 22: the mantissa's scaling and the result are then one
    # correctly rounded operation each.
    exact_powers = np.abs(exponent) <= 22
    power = 10.0 ** np.abs(np.where(exact_powers, exponent, 0))
    with np.errstate(invalid="ignore", over="ignore"):
        scaled = np.where(exponent < 0, size[todo] * power, size[todo] / power)
    mantissa = np.rint(scaled)
    # The scaling's error is under 2e-7 for mantissas below 1e9 (a few units of the last
    # place): a value that close to a tie, or whose mantissa falls outside [10^(d-1), 10^d)
    # (log10 off by one near a power of ten), is rounded by its text instead.
    low, high = 10.0 ** (digits - 1), 10.0**digits
    safe = exact_powers & (np.abs(scaled - np.floor(scaled) - 0.5) > 1e-6) & (scaled >= low) & (scaled < high - 1)
    result = np.where(exponent < 0, mantissa / power, mantissa * power)
    rounded[todo] = np.copysign(result, x[todo])
    unsafe = todo[~safe]
    if unsafe.size:
        rounded[unsafe] = _round_significant_text(x[unsafe], digits)
    return pd.Series(rounded, index=values.index)


def _round_significant_text(x: np.ndarray, digits: int) -> np.ndarray:
    """The reference rounding: through each value's decimal text (C's correctly rounded `%e`)."""
    return np.char.mod(f"%.{digits - 1}e", x).astype("float64")


def to_notes(values: pd.Series, mapping: str = "decile") -> pd.Series:
    """1..10, 10 = highest value (highest risk), on values rounded to RANK_DIGITS significant
    digits. Missing values stay missing."""
    present = round_significant(values.dropna())
    notes = pd.Series(np.nan, index=values.index, dtype="float64")
    if present.empty:
        return notes
    if mapping == "decile":
        rank = present.rank(method="min")  # ties share the lowest rank of their group
        notes[present.index] = np.floor((rank - 1) * 10 / len(present)) + 1
    elif mapping == "minmax":
        low, high = present.min(), present.max()
        notes[present.index] = 1 + 9 * (present - low) / (high - low) if high > low else 1.0
    else:
        raise ValueError(f"unknown mapping {mapping!r} (decile or minmax)")
    return notes


def score_ifn(
    rates: pd.DataFrame,
    sets: Mapping[str, list[str]],
    *,
    higher_is_better: frozenset[str] = frozenset(),
    mapping: str = "decile",
) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """Notes per indicator and one score per indicator set.

    `rates` has one column per indicator id (the rate x_k). Columns out:
    `ifn2023_<id>_note`, `ifn2023_score` (set `general`), `ifn2023_<set>_score` (declinations).
    Returns the table and, per set, the indicators it lacked (skipped in its mean).
    """
    out = pd.DataFrame(index=rates.index)
    wanted = sorted({i for ids in sets.values() for i in ids if i in rates.columns})
    for ind_id in wanted:
        values = -rates[ind_id] if ind_id in higher_is_better else rates[ind_id]
        out[f"{PREFIX}_{ind_id}_note"] = to_notes(values, mapping)
    missing: dict[str, list[str]] = {}
    for name, ids in sets.items():
        cols = [f"{PREFIX}_{i}_note" for i in ids if i in rates.columns]
        missing[name] = [i for i in ids if i not in rates.columns]
        column = f"{PREFIX}_score" if name == "general" else f"{PREFIX}_{name}_score"
        out[column] = out[cols].mean(axis=1, skipna=True) if cols else np.nan
    return out, missing

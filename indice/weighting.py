"""Weighted composite scores (methodology §4.3): weights are data, read from methods.yaml.

`pooled`: Σ w_k·s_k / Σ w_k over the indicator scores available for the IRIS.
`axis_means`: the same within each axis, then Σ W_a·m_a / Σ W_a over the available axes.
Missing weights are 1; weights are normalised over what is available, so they need not sum to 1.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd


def weighted_mean(scores: pd.DataFrame, weights: Mapping[str, float]) -> pd.Series:
    """Row-wise Σ w·s / Σ w over the non-missing columns (NaN where none is available)."""
    if scores.empty or not len(scores.columns):
        return pd.Series(np.nan, index=scores.index, dtype="float64")
    w = np.array([weights.get(c, 1.0) for c in scores.columns], dtype="float64")
    values = scores.to_numpy(dtype="float64")
    present = ~np.isnan(values)
    # Row by row (never a matrix product: BLAS blocks rows differently with the row count, so the
    # same IRIS would get a score differing in the last bits between two territories).
    values = np.ascontiguousarray(np.where(present, values, 0.0) * w)
    total = np.ascontiguousarray(present * w).sum(axis=1)
    weighted = values.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return pd.Series(np.where(total > 0, weighted / total, np.nan), index=scores.index)


def composite_score(
    scores: pd.DataFrame,
    axis_of: Mapping[str, str],
    *,
    scheme: str,
    indicator_weights: Mapping[str, float] | None = None,
    axis_weights: Mapping[str, float] | None = None,
) -> pd.Series:
    """Composite of the `<id>_score` columns of `scores` for the indicators in `axis_of`."""
    ind_w = {f"{k}_score": v for k, v in (indicator_weights or {}).items()}
    columns = [f"{i}_score" for i in axis_of if f"{i}_score" in scores.columns]
    if scheme == "pooled":
        return weighted_mean(scores[columns], ind_w)
    if scheme == "axis_means":
        axes = sorted(set(axis_of.values()))
        means = pd.DataFrame(
            {
                axis: weighted_mean(scores[[c for c in columns if axis_of[c[: -len("_score")]] == axis]], ind_w)
                for axis in axes
            },
            index=scores.index,
        )
        return weighted_mean(means, dict(axis_weights or {}))
    raise ValueError(f"unknown weighting scheme {scheme!r} (pooled or axis_means)")

"""People at risk (methodology §4.4): national TIC 2019 rates applied to local head-counts.

est_<outcome>_<group>(i) = rate_<group, outcome> × count_<group>(i). Groups overlap: the
columns are never added together. The age-based total uses disjoint age bands instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from config.settings import TicConfig


@dataclass
class TicResult:
    estimates: pd.DataFrame
    groups: dict[str, str] = field(default_factory=dict)  # group → count variable used
    skipped: dict[str, str] = field(default_factory=dict)  # group → why not estimated


def estimate_people(counts: pd.DataFrame, tic: TicConfig) -> TicResult:
    """Estimated people per IRIS (or per any maille: the estimates are additive)."""
    result = TicResult(pd.DataFrame(index=counts.index))
    for name, group in tic.groups.items():
        candidates = [c for c in [group.count, *group.alternative_counts] if c]
        variable = next((c for c in candidates if c in counts.columns), None)
        if variable is None:
            result.skipped[name] = (
                f"no count {' or '.join(candidates)} in the inputs"
                if candidates
                else "no head-count of this group at IRIS level"
            )
            continue
        result.groups[name] = variable
        for outcome, rate in group.rates.items():
            result.estimates[f"est_{outcome}_{name}"] = rate * counts[variable]
    bands = tic.age_bands
    if bands is not None:
        needed = [c for band in bands.bands for c in band.counts]
        absent = [c for c in needed if c not in counts.columns]
        if absent:
            result.skipped["age"] = f"age bands need {absent}"
        else:
            total = sum(band.rate * counts[band.counts].sum(axis=1, min_count=1) for band in bands.bands)
            result.estimates[f"est_{bands.outcome}_age"] = total
            result.groups["age"] = "+".join(needed)
    return result

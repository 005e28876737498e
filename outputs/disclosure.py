"""Disclosure control (methodology §6): the CAF's secret statistique.

No count derived from CAF data under the threshold (`secret_threshold` in
config/publication.yaml, 5 by default) is published: the count, and the rate and score that would
reveal it, are blanked and flagged `<id>_secret`. A blank stays blank, and a flag once set stays
set when a table is blanked again (the pack is built from blanked layers).
"""

from __future__ import annotations

import pandas as pd


def apply_secret(table: pd.DataFrame, caf_indicators: list[str], threshold: float) -> pd.DataFrame:
    """A copy of `table` with small CAF-derived counts blanked and flagged."""
    out = table.copy()
    for ind_id in caf_indicators:
        counts = [c for c in (f"{ind_id}_num", f"{ind_id}_den") if c in out]
        if not counts:
            continue
        small = pd.concat([(out[c] < threshold) & out[c].notna() for c in counts], axis=1).any(axis=1)
        if f"{ind_id}_secret" in out:
            small |= out[f"{ind_id}_secret"].fillna(False).astype(bool)
        for column in (*counts, f"{ind_id}_taux", f"{ind_id}_score"):
            if column in out:
                out[column] = out[column].astype("float64").mask(small)
        out[f"{ind_id}_secret"] = small
    return out

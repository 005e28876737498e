"""Vintage alignment: commune codes of any earlier year mapped onto the census geography.

Communes merge (and sometimes split) every 1 January. A commune-level source of another
vintage (ARCEP, CAF, Filosofi communes) is mapped with INSEE's table de passage: every code
that existed in any year up to the target is mapped to its commune of the target year. Counts
of merged communes add up; a code that maps nowhere is reported, never dropped silently.
"""

from __future__ import annotations

import pandas as pd

from transforms.geo_codes import isin_codes
from transforms.iris_base import JoinReport


def code_mapping(passage: pd.DataFrame, target_year: int) -> dict[str, str]:
    """old code (any year ≤ target) → code of `target_year`."""
    target = f"CODGEO_{target_year}"
    if target not in passage.columns:
        years = [int(c[-4:]) for c in passage.columns]
        raise ValueError(f"the table de passage covers {min(years)}–{max(years)}, not {target_year}")
    mapping: dict[str, str] = {}
    for column in [c for c in passage.columns if int(c[-4:]) <= target_year]:
        mapping.update(dict(zip(passage[column], passage[target])))
    return mapping


def align_commune_counts(
    table: pd.DataFrame, known: set[str], mapping: dict[str, str], sum_columns: list[str], source: str
) -> tuple[pd.DataFrame, JoinReport]:
    """Re-key a commune table onto the census communes, summing counts of merged communes.

    Codes already known (present in the census geography, arrondissements and city codes
    included) are kept as they are; others go through the mapping.
    """
    codes = table["INSEE_COM"]
    mapped = codes.where(isin_codes(codes, known), codes.map(mapping))
    changed = sorted(set(codes[(mapped != codes) & mapped.notna()]))
    lost = sorted(set(codes[mapped.isna()]))
    aligned = table.assign(INSEE_COM=mapped).dropna(subset=["INSEE_COM"])
    first = {c: "first" for c in aligned.columns if c not in sum_columns and c != "INSEE_COM"}
    aligned = aligned.groupby("INSEE_COM", as_index=False).agg({**first, **{c: "sum" for c in sum_columns}})
    report = JoinReport(
        join=f"{source}: communes → géographie du recensement",
        matched=int(len(set(codes)) - len(lost)),
        unmatched_left=lost,
        note=f"{len(changed)} code(s) renumbered by the table de passage (merged communes summed): {changed[:20]}",
    )
    return aligned, report

"""Vintage alignment: commune codes of another year mapped onto the census geography.

Communes merge (and sometimes split) every 1 January, so sources published in different
geographies do not share all their codes (methodology §1: RP N and CONTOURS-IRIS in the
geography of N+2, Filosofi IRIS in N+1, Filosofi communes and ARCEP in later ones). INSEE's table
de passage gives, for every commune, its code in each year; two directions follow:
- a source OLDER than the census: its codes are mapped forward to the census year and the
  counts of merged communes add up (`align_commune_counts`);
- a source NEWER than the census: each census commune is mapped forward to the source's year
  (`forward_keys`), and the source's row of the merged commune serves all the census communes
  it absorbed (its counts are apportioned over their IRIS, its rates and medians shared).
A code that maps nowhere is reported, never dropped silently.
"""

from __future__ import annotations

import pandas as pd

from transforms.geo_codes import isin_codes
from transforms.iris_base import JoinReport


def _years(passage: pd.DataFrame) -> list[int]:
    return sorted(int(c[-4:]) for c in passage.columns if c.startswith("CODGEO_"))


def _column(passage: pd.DataFrame, year: int) -> tuple[str, int]:
    """The table's column for `year`; past its last year, the last one (the caller says so)."""
    years = _years(passage)
    if year < years[0]:
        raise ValueError(
            f"la table de passage couvre {years[0]}–{years[-1]}, pas {year} : donnez une table de passage "
            f"annuelle de l'INSEE dont les colonnes remontent à CODGEO_{year}"
        )
    used = min(year, years[-1])
    return f"CODGEO_{used}", used


def code_mapping(passage: pd.DataFrame, target_year: int) -> dict[str, str]:
    """old code (any year ≤ target) → code of `target_year`."""
    target, used = _column(passage, target_year)
    mapping: dict[str, str] = {}
    for column in [c for c in passage.columns if c.startswith("CODGEO_") and int(c[-4:]) <= used]:
        mapping.update(dict(zip(passage[column], passage[target])))
    return mapping


def forward_keys(
    communes: pd.Series, passage: pd.DataFrame, census_year: int, source_year: int, source: str
) -> tuple[pd.Series, JoinReport]:
    """Each census commune's code in the (newer) geography of a source.

    Codes the table does not list (municipal arrondissements, which ARCEP and the CAF give under
    their city) are kept as they are; the lookup tries the city next.
    """
    census_col, census_used = _column(passage, census_year)
    source_col, source_used = _column(passage, source_year)
    mapping = dict(zip(passage[census_col], passage[source_col]))
    keys = communes.map(mapping).fillna(communes).astype(str)
    changed = sorted(set(communes[keys != communes]))
    note = (
        f"{len(changed)} commune(s) du recensement (géographie {census_year}) rattachée(s) à leur code "
        f"{source_used} : {changed[:20]}"
    )
    if source_used < source_year:
        note += f" ; la table de passage s'arrête en {source_used}, la source est en géographie {source_year}"
    return keys, JoinReport(
        join=f"{source} : communes du recensement → géographie {source_used}", matched=len(set(communes)), note=note
    )


def align_commune_counts(
    table: pd.DataFrame, known: set[str], mapping: dict[str, str], sum_columns: list[str], source: str
) -> tuple[pd.DataFrame, JoinReport]:
    """Re-key an older commune table onto the census communes, summing counts of merged communes.

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
        join=f"{source} : communes → géographie du recensement",
        matched=int(len(set(codes)) - len(lost)),
        unmatched_left=lost,
        note=f"{len(changed)} code(s) renuméroté(s) par la table de passage (communes fusionnées additionnées) : "
        f"{changed[:20]}",
    )
    return aligned, report

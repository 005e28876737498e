"""Disclosure control (methodology §6): the CAF's secret statistique.

No count derived from CAF data under the threshold (`secret_threshold` in
config/publication.yaml, 5 by default) is published, nor can one be recovered from what is:

- **primary suppression**: a unit (IRIS, commune, EPCI, département) whose CAF count is between 1
  and threshold − 1 (allocataires or non connectés) is blanked: counts, rate and score;
- **secondary suppression**: inside a published parent (the commune of an IRIS, the EPCI of a
  commune…), the parent total minus the published children gives back the blanked ones. So in
  every parent whose blanked children are fewer than two, or sum to less than the threshold, the
  smallest published sibling is blanked too, until the differencing only reveals a sum of at least
  the threshold over at least two units (or nothing is left to blank: then the parent itself is
  under the threshold, hence blanked);
- **composites**: the axis and global scores of a blanked unit are computed without the CAF
  indicator (done where scores are computed, `pipelines/defs/indice.py`), so that they do not give
  the blanked score back.

A blank stays blank, and a flag once set stays set when a table is blanked again (the pack is
built from blanked layers). An absent count (no CAF row for the unit) is not a secret: `<id>_secret`
is false there and the columns stay empty.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Nesting:
    """Units of table `child` lie in units of table `parent`: the child's column `child_col`
    holds the parent's key, found in the parent's column `parent_col`."""

    child: str
    parent: str
    child_col: str
    parent_col: str


def count_columns(table: pd.DataFrame, ind_id: str) -> list[str]:
    return [c for c in (f"{ind_id}_num", f"{ind_id}_den") if c in table]


def primary_mask(table: pd.DataFrame, ind_id: str, threshold: float) -> pd.Series:
    """Units with a CAF count between 1 and threshold − 1, or already flagged."""
    small = pd.Series(False, index=table.index)
    for column in count_columns(table, ind_id):
        values = pd.to_numeric(table[column], errors="coerce")
        small |= (values > 0) & (values < threshold)
    if f"{ind_id}_secret" in table:
        small |= table[f"{ind_id}_secret"].fillna(False).astype(bool)
    return small


def suppression_masks(
    tables: Mapping[str, pd.DataFrame], nestings: Sequence[Nesting], ind_id: str, threshold: float
) -> dict[str, pd.Series]:
    """Per table, the units to blank for indicator `ind_id`: primary, then secondary until no
    parent total reveals a blanked child (see the module docstring), checked at the end by solving
    the published totals as an attacker would (`determined_cells`): none of the primary cells may
    be determined by them."""
    nestings = [n for n in nestings if n.child in tables and n.parent in tables]
    masks = {name: primary_mask(table, ind_id, threshold) for name, table in tables.items()}
    primary = {name: mask.copy() for name, mask in masks.items()}
    while True:
        changed = True
        while changed:
            changed = False
            for nest in nestings:
                changed |= _protect_children(tables, masks, nest, ind_id, threshold)
                changed |= _hide_a_child_of_hidden_parents(tables, masks, nest, ind_id)
        exposed = [c for c in determined_cells(tables, nestings, masks, ind_id) if primary[c[0]].at[c[1]]]
        if not exposed or not _hide_next_to(tables, masks, nestings, ind_id, exposed[0]):
            return masks


def _hide_a_child_of_hidden_parents(
    tables: Mapping[str, pd.DataFrame], masks: dict[str, pd.Series], nest: Nesting, ind_id: str
) -> bool:
    """A blanked parent whose children are all published is their sum: blank its smallest child."""
    child = tables[nest.child]
    columns = count_columns(child, ind_id)
    if not columns:
        return False
    hidden_parents = set(tables[nest.parent].loc[masks[nest.parent], nest.parent_col].astype(str))
    keys = child[nest.child_col].astype(str)
    counts = child[columns].apply(pd.to_numeric, errors="coerce")
    changed = False
    for key, index in keys.groupby(keys).groups.items():
        mask = masks[nest.child]
        if key not in hidden_parents or any(mask.at[i] for i in index):
            continue
        candidates = [i for i in index if counts.loc[i].notna().any() and np.nansum(counts.loc[i]) > 0]
        if candidates:
            mask.at[_smallest(counts, candidates)] = True
            changed = True
    return changed


def _smallest(counts: pd.DataFrame, candidates: list) -> object:
    return min(candidates, key=lambda i: (np.nanmin(counts.loc[i].to_numpy(dtype=float)), str(i)))


def _equations(
    tables: Mapping[str, pd.DataFrame], nestings: Sequence[Nesting], column: str
) -> list[list[tuple[str, object, float]]]:
    """Every published additive relation `parent − Σ children = 0`, as (table, index, coefficient)."""
    equations = []
    for nest in nestings:
        child, parent = tables[nest.child], tables[nest.parent]
        if column not in child or column not in parent:
            continue
        parent_index = {str(k): i for i, k in parent[nest.parent_col].items()}
        keys = child[nest.child_col].astype(str)
        for key, index in keys.groupby(keys).groups.items():
            if key in parent_index:
                equations.append([(nest.parent, parent_index[key], 1.0)] + [(nest.child, i, -1.0) for i in index])
    return equations


def determined_cells(
    tables: Mapping[str, pd.DataFrame], nestings: Sequence[Nesting], masks: Mapping[str, pd.Series], ind_id: str
) -> list[tuple[str, object]]:
    """Blanked cells whose value the published cells determine exactly through the additive
    relations between mailles (a cell is determined when it has the same value in every solution
    of the relations restricted to blanked cells)."""
    found: set[tuple[str, object]] = set()
    for column in (f"{ind_id}_num", f"{ind_id}_den"):
        rows, variables = [], {}
        for equation in _equations(tables, nestings, column):
            hidden = [(t, i, c) for t, i, c in equation if masks[t].at[i]]
            if not hidden:
                continue
            row = {}
            for t, i, c in hidden:
                row[variables.setdefault((t, i), len(variables))] = c
            rows.append(row)
        if not rows:
            continue
        matrix = np.zeros((len(rows), len(variables)))
        for r, row in enumerate(rows):
            for j, c in row.items():
                matrix[r, j] = c
        # A cell is determined when every solution of the relations gives it the same value: its
        # component is zero in every vector of the null space (one SVD for all cells).
        _, singular, vh = np.linalg.svd(matrix)
        rank = int((singular > 1e-9 * max(1.0, singular.max(initial=0.0))).sum())
        null = vh[rank:]
        for cell, j in variables.items():
            if np.abs(null[:, j]).max(initial=0.0) < 1e-9:
                found.add(cell)
    return sorted(found, key=str)


def _hide_next_to(
    tables: Mapping[str, pd.DataFrame],
    masks: dict[str, pd.Series],
    nestings: Sequence[Nesting],
    ind_id: str,
    cell: tuple[str, object],
) -> bool:
    """Blank the smallest published cell of a relation that holds `cell`; False if there is none."""
    best = None
    for column in (f"{ind_id}_num", f"{ind_id}_den"):
        for equation in _equations(tables, nestings, column):
            if not any((t, i) == cell for t, i, _ in equation):
                continue
            for t, i, _ in equation:
                value = pd.to_numeric(pd.Series([tables[t].at[i, column]]), errors="coerce").iloc[0]
                if not masks[t].at[i] and pd.notna(value) and value > 0 and (best is None or value < best[0]):
                    best = (value, t, i)
    if best is None:
        return False
    masks[best[1]].at[best[2]] = True
    return True


def _protect_children(
    tables: Mapping[str, pd.DataFrame], masks: dict[str, pd.Series], nest: Nesting, ind_id: str, threshold: float
) -> bool:
    """One pass of secondary suppression over the parents of one nesting; True if it blanked more."""
    child, parent = tables[nest.child], tables[nest.parent]
    columns = [c for c in count_columns(child, ind_id) if c in parent]
    if not columns:
        return False
    published_parents = set(parent.loc[~masks[nest.parent], nest.parent_col].astype(str))
    counts = child[columns].apply(pd.to_numeric, errors="coerce")
    keys = child[nest.child_col].astype(str)
    changed = False
    for key, index in keys.groupby(keys).groups.items():
        if key not in published_parents:
            continue
        mask = masks[nest.child]
        hidden = [i for i in index if mask.at[i]]
        if not hidden:
            continue
        while not _safe(counts.loc[hidden], threshold):
            candidates = [i for i in index if not mask.at[i] and counts.loc[i].notna().any()]
            if not candidates:
                break
            smallest = _smallest(counts, candidates)
            mask.at[smallest] = True
            hidden.append(smallest)
            changed = True
    return changed


def _safe(hidden: pd.DataFrame, threshold: float) -> bool:
    """Differencing reveals only the sum of the hidden units: safe when they are two or more and
    every count's sum reaches the threshold (or is zero: nothing to reveal)."""
    if len(hidden) < 2:
        return False
    sums = hidden.sum(min_count=1)
    return bool(((sums >= threshold) | (sums.fillna(0) == 0)).all())


def blank(table: pd.DataFrame, ind_id: str, mask: pd.Series) -> pd.DataFrame:
    """A copy of `table` with the indicator's counts, rate and score blanked where `mask`, and the
    `<id>_secret` flag set there (false elsewhere, including units without CAF data)."""
    out = table.copy()
    for column in (*count_columns(out, ind_id), f"{ind_id}_taux", f"{ind_id}_score"):
        if column in out:
            out[column] = out[column].astype("float64").mask(mask)
    out[f"{ind_id}_secret"] = mask.reindex(out.index, fill_value=False).astype(bool)
    return out


def apply_secret(table: pd.DataFrame, caf_indicators: list[str], threshold: float) -> pd.DataFrame:
    """A copy of `table` with small CAF-derived counts blanked and flagged (primary suppression
    and the flags already set upstream, e.g. by the secondary suppression of the scoring step)."""
    out = table
    for ind_id in caf_indicators:
        if count_columns(out, ind_id) or f"{ind_id}_secret" in out:
            out = blank(out, ind_id, primary_mask(out, ind_id, threshold))
    return out if out is not table else table.copy()


def blank_codes(table: pd.DataFrame, caf_indicators: list[str], key: str, codes: set[str]) -> pd.DataFrame:
    """`table` with the units whose `key` is in `codes` blanked and flagged for every CAF
    indicator (the decision made across mailles upstream), on top of the primary suppression."""
    if key not in table:
        return table
    mask = table[key].astype(str).isin(codes)
    for ind_id in caf_indicators:
        if count_columns(table, ind_id) or f"{ind_id}_secret" in table:
            flagged = table[f"{ind_id}_secret"].fillna(False).astype(bool) if f"{ind_id}_secret" in table else False
            table = blank(table, ind_id, mask | flagged)
    return table

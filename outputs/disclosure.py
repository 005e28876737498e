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
  under the threshold, hence blanked). Then the published totals are solved as an attacker
  would: a small count still determined through several relations at once (a commune given by
  the totals of an EPCI that straddles two départements and of both départements) gets a
  published cell of one of its relations blanked too, the smallest that frees it;
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
from scipy import sparse
from scipy.sparse import csgraph


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
    be determined by them. Each unit of every table is one numbered cell; the relations are
    solved per connected group of blanked cells, so that all of France costs seconds."""
    cells = _Cells(tables, [n for n in nestings if n.child in tables and n.parent in tables], ind_id)
    hidden = np.concatenate([primary_mask(t, ind_id, threshold).to_numpy(dtype=bool) for t in tables.values()])
    primary = hidden.copy()
    while True:
        changed = True
        while changed:
            changed = False
            for k in range(len(cells.nestings)):
                changed |= _protect_children(cells, hidden, k, threshold)
                changed |= _hide_a_child_of_hidden_parents(cells, hidden, k)
        exposed = sorted({cell for cell in _determined(cells, hidden) if primary[cell]}, key=cells.sort_key)
        if not _hide_next_to_each(cells, hidden, exposed):
            return cells.masks(hidden)


def determined_cells(
    tables: Mapping[str, pd.DataFrame], nestings: Sequence[Nesting], masks: Mapping[str, pd.Series], ind_id: str
) -> list[tuple[str, object]]:
    """Blanked cells whose value the published cells determine exactly through the additive
    relations between mailles (a cell is determined when it has the same value in every solution
    of the relations restricted to blanked cells)."""
    cells = _Cells(tables, [n for n in nestings if n.child in tables and n.parent in tables], ind_id)
    hidden = np.concatenate([masks[name].to_numpy(dtype=bool) for name in tables])
    found = {cells.name_of(cell) for cell in _determined(cells, hidden)}
    return sorted(found, key=str)


class _Cells:
    """Every unit of every table as one numbered cell, the CAF counts of each, and the published
    additive relations `parent − Σ children = 0` of each nesting, grouped by parent."""

    def __init__(self, tables: Mapping[str, pd.DataFrame], nestings: Sequence[Nesting], ind_id: str) -> None:
        self.tables = tables
        self.nestings = list(nestings)
        self.offsets, start = {}, 0
        for name, table in tables.items():
            self.offsets[name] = start
            start += len(table)
        self.size = start
        self.labels = [label for table in tables.values() for label in table.index]
        self.columns = (f"{ind_id}_num", f"{ind_id}_den")
        self.values = {c: np.full(self.size, np.nan) for c in self.columns}
        self.holders = {c: {name for name, t in tables.items() if c in t} for c in self.columns}
        for column in self.columns:
            for name in self.holders[column]:
                values = pd.to_numeric(tables[name][column], errors="coerce").to_numpy(dtype="float64")
                self.values[column][self.offsets[name] : self.offsets[name] + len(values)] = values
        self.groups = [self._groups(n) for n in self.nestings]
        self.group_of_parent = [{int(p): g for g, (p, _) in enumerate(groups) if p >= 0} for groups in self.groups]
        # Per nesting, every group's children end to end and where each group starts (counting
        # blanked children per parent in one numpy call, once per pass).
        self.flat_children = [
            (
                np.concatenate([kids for _, kids in groups]) if groups else np.zeros(0, dtype=int),
                np.cumsum([0] + [len(kids) for _, kids in groups[:-1]]) if groups else np.zeros(0, dtype=int),
            )
            for groups in self.groups
        ]
        self._relations: dict[str, tuple] = {}
        self._by_cell: dict[str, sparse.csc_matrix] = {}
        self.solved: dict[tuple, list[int]] = {}  # SVD results per unchanged group of blanked cells

    def _groups(self, nest: Nesting) -> list[tuple[int, np.ndarray]]:
        """(parent cell, or −1 when the parent table has no such unit; children cells) per parent
        key."""
        parent, child = self.tables[nest.parent], self.tables[nest.child]
        parent_cell = {str(k): self.offsets[nest.parent] + i for i, k in enumerate(parent[nest.parent_col])}
        keys = child[nest.child_col].astype(str).to_numpy()
        offset = self.offsets[nest.child]
        return [
            (parent_cell.get(key, -1), offset + np.asarray(rows))
            for key, rows in pd.Series(keys).groupby(keys, sort=True).indices.items()
        ]

    def count_matrix(self, cells: np.ndarray, columns: Sequence[str]) -> np.ndarray:
        return np.column_stack([self.values[c][cells] for c in columns])

    def sort_key(self, cell: int) -> str:
        return str(self.name_of(cell))

    def name_of(self, cell: int) -> tuple[str, object]:
        name = next(n for n in reversed(list(self.offsets)) if self.offsets[n] <= cell)
        return name, self.labels[cell]

    def smallest(self, candidates: np.ndarray, columns: Sequence[str]) -> int:
        """The candidate with the smallest count (ties: by index label, as text)."""
        lows = np.nanmin(self.count_matrix(candidates, columns), axis=1)
        return int(min(zip(lows, candidates), key=lambda c: (c[0], str(self.labels[c[1]])))[1])

    def relations(self, column: str) -> tuple[sparse.csr_matrix, list[np.ndarray]]:
        """The relations of one count column: a sparse matrix (relations × cells, +1 parent,
        −1 children) and, per relation, its cells in order (parent first)."""
        if column not in self._relations:
            indices, sizes = [], []
            for k, nest in enumerate(self.nestings):
                if nest.child in self.holders[column] and nest.parent in self.holders[column]:
                    # Each group's parent then its children, from the children end to end
                    # (`flat_children`): one numpy pass, not one array per relation.
                    flat, starts = self.flat_children[k]
                    parents = np.array([p for p, _ in self.groups[k]], dtype=np.int64)
                    counts = np.diff(np.append(starts, len(flat))) if len(starts) else starts
                    row = np.insert(flat.astype(np.int64), starts, parents)
                    keep = np.repeat(parents >= 0, counts + 1)
                    indices.append(row[keep])
                    sizes.append(counts[parents >= 0] + 1)
            index = np.concatenate(indices) if indices else np.zeros(0, dtype=np.int64)
            size = np.concatenate(sizes) if sizes else np.zeros(0, dtype=np.int64)
            indptr = np.concatenate([[0], np.cumsum(size)])
            data = np.full(len(index), -1.0)
            data[indptr[:-1]] = 1.0  # the parent, first of its relation
            matrix = sparse.csr_matrix((data, index, indptr), shape=(len(size), self.size))
            rows = np.split(index, indptr[1:-1]) if len(size) else []
            self._relations[column] = (matrix, rows)
        return self._relations[column]

    def by_cell(self, column: str) -> sparse.csc_matrix:
        """The relations of one column, indexed by cell (column-major) for lookups per cell."""
        if column not in self._by_cell:
            self._by_cell[column] = self.relations(column)[0].tocsc()
        return self._by_cell[column]

    def masks(self, hidden: np.ndarray) -> dict[str, pd.Series]:
        return {
            name: pd.Series(hidden[self.offsets[name] : self.offsets[name] + len(t)], index=t.index)
            for name, t in self.tables.items()
        }


def _determined(cells: _Cells, hidden: np.ndarray) -> set[int]:
    """Blanked cells the relations determine. Per group of blanked cells linked by relations, one
    SVD (remembered while the group is unchanged); a cell is determined when its component is
    zero in every vector of the null space. A group of one cell is determined, a group of one
    relation over several is not."""
    found: set[int] = set()
    variables = np.flatnonzero(hidden)
    for column in cells.columns:
        matrix, _ = cells.relations(column)
        sub = matrix[:, variables].tocsr()
        kept = np.flatnonzero(np.diff(sub.indptr) > 0)
        if kept.size:
            linked = sub[kept]
            coo = linked.tocoo()
            n_rows = len(kept)
            incidence = sparse.csr_matrix((np.ones_like(coo.data), (coo.row, coo.col)), shape=linked.shape)
            graph = sparse.bmat([[None, incidence], [incidence.T, None]]).tocsr()
            _, labels = csgraph.connected_components(graph, directed=False)
            component = labels[n_rows + coo.col]
            order = np.argsort(component, kind="stable")
            for chunk in np.split(order, np.flatnonzero(np.diff(component[order])) + 1):
                cols, local_col = np.unique(coo.col[chunk], return_inverse=True)
                if len(cols) == 1:
                    found.add(int(variables[cols[0]]))
                    continue
                local_rows, local_row = np.unique(coo.row[chunk], return_inverse=True)
                if len(local_rows) == 1:
                    continue
                key = (column, tuple(variables[cols]))
                if key not in cells.solved:
                    block = np.zeros((len(local_rows), len(cols)))
                    block[local_row, local_col] = coo.data[chunk]
                    cells.solved[key] = _fixed_columns(block)
                found.update(int(variables[cols[j]]) for j in cells.solved[key])
    return found


def _fixed_columns(block: np.ndarray) -> list[int]:
    """Columns of `block` whose unknown has one value in every solution of `block · x = b`."""
    _, singular, vh = np.linalg.svd(block)
    rank = int((singular > 1e-9 * max(1.0, singular.max(initial=0.0))).sum())
    null = vh[rank:]
    return [j for j in range(block.shape[1]) if np.abs(null[:, j]).max(initial=0.0) < 1e-9]


def _hide_next_to_each(cells: _Cells, hidden: np.ndarray, exposed: list[int]) -> bool:
    """Blank a published cell next to each exposed cell still determined, in order (a cell
    blanked for one may already protect the next). False if nothing could be blanked."""
    progressed = False
    for cell in exposed:
        if _is_determined(cells, hidden, cell):
            progressed |= _hide_next_to(cells, hidden, cell)
    return progressed


def _hide_next_to(cells: _Cells, hidden: np.ndarray, cell: int) -> bool:
    """Blank a published cell of a relation that holds `cell`: the smallest whose blanking leaves
    `cell` undetermined (a commune given by its EPCI and département totals is not protected by
    blanking one of its own IRIS), else the smallest; False if there is none."""
    candidates: dict[int, float] = {}
    for column in cells.columns:
        matrix, rows = cells.relations(column)
        for r in matrix[:, cell].nonzero()[0]:
            for other in rows[r]:
                value = cells.values[column][other]
                if not hidden[other] and value > 0:
                    candidates[int(other)] = min(value, candidates.get(int(other), np.inf))
    if not candidates:
        return False
    ordered = sorted(candidates, key=lambda c: (candidates[c], cells.sort_key(c)))
    promising = _protecting(cells, hidden, cell, ordered)
    for candidate in promising[:CANDIDATES_TRIED]:
        blanked = _blank_down(cells, hidden, candidate)
        if not _is_determined(cells, hidden, cell):
            return True
        hidden[blanked] = False
    _blank_down(cells, hidden, ordered[0])
    return True


def _blank_down(cells: _Cells, hidden: np.ndarray, cell: int) -> list[int]:
    """Blank `cell` and, as the secondary suppression would, the smallest child of each of its
    relations as a parent whose children are all published (else the children give it back),
    down to the IRIS. Returns the cells blanked."""
    blanked, todo = [], [cell]
    while todo:
        current = todo.pop()
        hidden[current] = True
        blanked.append(current)
        for k, nest in enumerate(cells.nestings):
            g = cells.group_of_parent[k].get(current)
            if g is None:
                continue
            kids = cells.groups[k][g][1]
            columns = [c for c in cells.columns if nest.child in cells.holders[c]]
            if not columns or hidden[kids].any():
                continue
            counts = cells.count_matrix(kids, columns)
            keep = ~np.isnan(counts).all(axis=1) & (np.nansum(counts, axis=1) > 0)
            if keep.any():
                todo.append(cells.smallest(kids[keep], columns))
    return blanked


# How many candidates that pass the algebraic test are solved exactly, smallest first, before
# falling back to the smallest neighbour.
CANDIDATES_TRIED = 8


def _protecting(cells: _Cells, hidden: np.ndarray, cell: int, candidates: list[int]) -> list[int]:
    """The candidates whose blanking can make determined `cell` undetermined, judged on the
    cell's group of relations A (cells blanked), in the order given: with `e_cell = wᵀA`, a new
    unknown of column `a` frees the cell only if `a` lies in the range of A and `wᵀa ≠ 0`, in
    every count column that determines it.
    Necessary, not sufficient (a candidate's other relations may pin it down): an exact check
    follows."""
    keep = np.ones(len(candidates), dtype=bool)
    for column in cells.columns:
        group = _group(cells, hidden, column, cell)
        if group is None:
            continue
        block, rows, variables = group
        u, singular, vh = np.linalg.svd(block, full_matrices=False)
        rank = int((singular > 1e-9 * max(1.0, singular.max(initial=0.0))).sum())
        u, singular, vh = u[:, :rank], singular[:rank], vh[:rank]
        j = variables.index(cell)
        if abs(float(vh[:, j] @ vh[:, j]) - 1.0) > 1e-9:
            continue  # not determined through this column's relations
        w = u @ (vh[:, j] / singular)
        a = cells.relations(column)[0][rows][:, candidates].toarray()
        residual = np.linalg.norm(a - u @ (u.T @ a), axis=0)
        keep &= (residual < 1e-9 * np.maximum(1.0, np.linalg.norm(a, axis=0))) & (np.abs(w @ a) > 1e-9)
    return [c for c, k in zip(candidates, keep) if k]


def _group(cells: _Cells, hidden: np.ndarray, column: str, cell: int) -> tuple[np.ndarray, list, list] | None:
    """The relations of `column` linked to `cell` through blanked cells: (dense block, its
    relations, its blanked cells in block order), None if no relation holds the cell."""
    matrix, _ = cells.relations(column)
    by_cell = cells.by_cell(column)
    rows, variables = set(), {cell}
    frontier = [cell]
    while frontier:
        new_rows = {int(r) for c in frontier for r in by_cell[:, c].nonzero()[0]} - rows
        rows |= new_rows
        reached = {int(c) for r in new_rows for c in matrix[r].indices if hidden[c]}
        frontier = list(reached - variables)
        variables |= reached
    if not rows:
        return None
    rows_sorted, ordered = sorted(rows), sorted(variables)
    return matrix[rows_sorted][:, ordered].toarray(), rows_sorted, ordered


def _is_determined(cells: _Cells, hidden: np.ndarray, cell: int) -> bool:
    """Whether the relations determine blanked `cell`: solved on its group of relations only."""
    for column in cells.columns:
        group = _group(cells, hidden, column, cell)
        if group is not None and group[2].index(cell) in _fixed_columns(group[0]):
            return True
    return False


def _hidden_per_group(cells: _Cells, hidden: np.ndarray, k: int) -> np.ndarray:
    """How many children of each parent of nesting `k` are blanked."""
    flat, starts = cells.flat_children[k]
    if not len(starts):
        return np.zeros(0, dtype=int)
    return np.add.reduceat(hidden[flat].astype(np.int64), starts)


def _protect_children(cells: _Cells, hidden: np.ndarray, k: int, threshold: float) -> bool:
    """One pass of secondary suppression over the parents of one nesting; True if it blanked more."""
    nest = cells.nestings[k]
    columns = [c for c in cells.columns if nest.child in cells.holders[c] and nest.parent in cells.holders[c]]
    if not columns:
        return False
    changed = False
    for g in np.flatnonzero(_hidden_per_group(cells, hidden, k)):
        parent, kids = cells.groups[k][g]
        if parent < 0 or hidden[parent]:
            continue
        while not _safe(cells.count_matrix(kids[hidden[kids]], columns), threshold):
            counts = cells.count_matrix(kids, columns)
            candidates = kids[~hidden[kids] & ~np.isnan(counts).all(axis=1)]
            if not candidates.size:
                break
            hidden[cells.smallest(candidates, columns)] = True
            changed = True
    return changed


def _hide_a_child_of_hidden_parents(cells: _Cells, hidden: np.ndarray, k: int) -> bool:
    """A blanked parent whose children are all published is their sum: blank its smallest child."""
    nest = cells.nestings[k]
    columns = [c for c in cells.columns if nest.child in cells.holders[c]]
    if not columns:
        return False
    changed = False
    per_group = _hidden_per_group(cells, hidden, k)
    for g, (parent, kids) in enumerate(cells.groups[k]):
        if parent < 0 or not hidden[parent] or per_group[g]:
            continue
        counts = cells.count_matrix(kids, columns)
        keep = ~np.isnan(counts).all(axis=1) & (np.nansum(counts, axis=1) > 0)
        if keep.any():
            hidden[cells.smallest(kids[keep], columns)] = True
            changed = True
    return changed


def _safe(hidden: np.ndarray, threshold: float) -> bool:
    """Differencing reveals only the sum of the hidden units (rows; one column per count): safe
    when they are two or more and every count's sum reaches the threshold (or is zero or absent:
    nothing to reveal)."""
    if len(hidden) < 2:
        return False
    sums = np.where(np.isnan(hidden).all(axis=0), 0.0, np.nansum(hidden, axis=0))
    return bool(((sums >= threshold) | (sums == 0)).all())


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

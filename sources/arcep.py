"""ARCEP "Ma connexion internet": premises by best available download speed, by commune.

Two layout eras are read, told apart by their header:

- beta (2019): a free-text disclaimer on line 1, `elig_hd8`, and EXCLUSIVE speed classes (they
  add up to `nbr`): premises with at least 30 Mbit/s are `elig_thd30 + elig_thd100 + elig_thd1g`;
- quarterly files since April 2021 (`commune_debit_filaire.csv`, `commune_debit.csv`,
  `commune_debit_terrestre.csv`): `elig_bhd8`, and CUMULATIVE classes (`elig_thd30` already
  counts the premises with 100 Mbit/s or 1 Gbit/s), so ≥ 30 Mbit/s is `elig_thd30` alone; a
  `type` column whose `all` rows are the totals.

Summing cumulative classes would count fibre premises three times, and reading exclusive ones
as cumulative would drop them: the layout is therefore checked, not assumed. Lyon, Paris and
Marseille are one row each (69123, 75056, 13055).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from sources.common import InputError, file_lines, normalise_codes, parse_numbers, read_text_table

BETA = "beta_exclusive"
CUMULATIVE = "cumulatif"

BETA_CLASSES = ("inel_hd", "elig_hd05", "elig_hd3", "elig_hd8", "elig_thd30", "elig_thd100", "elig_thd1g")
THD_CLASSES = ("elig_thd30", "elig_thd100", "elig_thd1g")
# Decreasing chain of the cumulative layout: nbr ≥ elig_hd05 ≥ … ≥ elig_thd1g.
CUMULATIVE_CHAIN = ("nbr", "elig_hd05", "elig_hd3", "elig_bhd8", "elig_thd30", "elig_thd100", "elig_thd1g")
REQUIRED = {BETA: ("code_insee", "nbr", *BETA_CLASSES), CUMULATIVE: ("code_insee", *CUMULATIVE_CHAIN)}
TOTAL_TYPE = "all"

ACCEPTED = (
    "fichiers acceptés : « Ma connexion internet » par commune, trimestriel depuis avril 2021 "
    "(commune_debit_filaire.csv, recommandé ; commune_debit.csv compte le satellite, avec lequel "
    "presque tous les locaux ont 30 Mbit/s ; commune_debit_terrestre.csv), ou la version bêta de 2019 "
    "(colonne elig_hd8)"
)


def read_arcep_debit(path: Path) -> pd.DataFrame:
    """→ `INSEE_COM`, `nom_com`, `locaux` (all premises), `locaux_thd` (≥ 30 Mbit/s), `date`;
    one row per commune. `attrs`: `path`, `date` (latest), `layout` (`beta_exclusive` or `cumulatif`).
    """
    path = Path(path)
    table = read_text_table(path, key_column="code_insee")
    layout = detect_layout(path, list(table.frame.columns))
    frame, lines = table.frame, file_lines(table)
    counts = _counts(path, frame, REQUIRED[layout][1:], lines)
    if layout == BETA:
        _check_exclusive(path, counts, lines)
        thd = sum(counts[c] for c in THD_CLASSES)
    else:
        _check_cumulative(path, counts, lines)
        thd = counts["elig_thd30"]
    keep = _total_rows(path, frame, lines) if layout == CUMULATIVE else pd.Series(True, index=frame.index)
    kept_lines = [line for line, k in zip(lines, keep) if k]
    frame = frame[keep]
    out = pd.DataFrame(
        {
            "INSEE_COM": normalise_codes(
                frame["code_insee"], path=path, column="code_insee", kind="commune", lines=kept_lines
            ),
            "nom_com": frame.get("nom_com", pd.Series("", index=frame.index)),
            "locaux": counts["nbr"][keep],
            "locaux_thd": thd[keep],
            "date": frame.get("date", pd.Series("", index=frame.index)),
        }
    ).reset_index(drop=True)
    dates = sorted(set(out["date"]) - {""})
    out.attrs.update(path=str(path), date=dates[-1] if dates else None, layout=layout)
    return out


def detect_layout(path: Path, columns: list[str]) -> str:
    """`cumulatif` when the header has `elig_bhd8`, `beta_exclusive` when it has `elig_hd8`;
    refuse a header that holds neither layout's columns in full."""
    present = set(columns)
    layout = CUMULATIVE if "elig_bhd8" in present else BETA if "elig_hd8" in present else None
    if layout is not None and set(REQUIRED[layout]) <= present:
        return layout
    missing = {name: [c for c in REQUIRED[name] if c not in present] for name in (CUMULATIVE, BETA)}
    column = missing[layout or CUMULATIVE][0]
    raise InputError(
        path,
        f"en-tête qui n'est ni celui des fichiers trimestriels ni celui de la version bêta : colonne(s) "
        f"manquante(s) {missing[CUMULATIVE]} pour les fichiers trimestriels (classes cumulatives), "
        f"{missing[BETA]} pour la version bêta (classes exclusives) ; colonnes lues : {sorted(present)[:20]}",
        column=column,
        fix=f"{ACCEPTED} ; téléchargez commune_debit_filaire.csv sur data.arcep.fr",
    )


def _counts(path: Path, frame: pd.DataFrame, columns: tuple[str, ...], lines: list[int]) -> dict[str, pd.Series]:
    return {c: parse_numbers(frame[c], path=path, column=c, lines=lines) for c in columns}


def _check_exclusive(path: Path, counts: dict[str, pd.Series], lines: list[int]) -> None:
    """Beta file: the exclusive classes must add up to `nbr` on every row."""
    total = sum(counts[c] for c in BETA_CLASSES)
    off = (total - counts["nbr"]).abs() > 0.5
    if off.any():
        pos = int(off.to_numpy().nonzero()[0][0])
        raise InputError(
            path,
            f"les classes de débit (version bêta, exclusives) totalisent {total.iloc[pos]:.0f} locaux "
            f"et non nbr = {counts['nbr'].iloc[pos]:.0f}",
            line=lines[pos],
            column="nbr",
            fix="la version bêta donne des classes exclusives qui s'additionnent à nbr : vérifiez qu'il "
            "s'agit du fichier « commune », non modifié",
        )


def _check_cumulative(path: Path, counts: dict[str, pd.Series], lines: list[int]) -> None:
    """Quarterly file: every class is a subset of the slower one (nbr ≥ elig_hd05 ≥ … ≥ elig_thd1g)."""
    for wider, narrower in zip(CUMULATIVE_CHAIN, CUMULATIVE_CHAIN[1:]):
        off = counts[narrower] > counts[wider] + 0.5
        if off.any():
            pos = int(off.to_numpy().nonzero()[0][0])
            raise InputError(
                path,
                f"classes de débit non cumulatives : {narrower} = {counts[narrower].iloc[pos]:.0f} dépasse "
                f"{wider} = {counts[wider].iloc[pos]:.0f}",
                line=lines[pos],
                column=narrower,
                fix="dans les fichiers trimestriels, chaque classe compte les locaux ayant au moins ce débit "
                "(nbr ≥ elig_hd05 ≥ elig_hd3 ≥ elig_bhd8 ≥ elig_thd30 ≥ elig_thd100 ≥ elig_thd1g) : "
                "retéléchargez le fichier sur data.arcep.fr",
            )


def _total_rows(path: Path, frame: pd.DataFrame, lines: list[int]) -> pd.Series:
    """Rows that are commune totals: `type == all` when the file has a `type` column."""
    if "type" not in frame.columns:
        return pd.Series(True, index=frame.index)
    types = frame["type"].str.strip().str.lower()
    keep = types == TOTAL_TYPE
    if not keep.any():
        raise InputError(
            path,
            f"aucune ligne de type « {TOTAL_TYPE} » (total des locaux) ; types présents : "
            f"{sorted(set(frame['type']))[:10]}",
            line=lines[0] if lines else None,
            column="type",
            fix="utilisez le fichier par commune publié par l'ARCEP, dont les lignes type = all sont les totaux",
        )
    return keep

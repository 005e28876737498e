"""Commune → EPCI membership (INSEE intercommunality table, or the MedNum export of it), and
INSEE's annual table de passage of commune codes.

INSEE's EPCI workbook (`Intercommunalite_Metropole_au_01-01-<Y>.xls[x]` up to 2023,
`EPCI_au_01-01-<Y>.xlsx` since 2024) has its sheet `Composition_communale` after a sheet `EPCI`,
with title rows, a row of French labels and the code row `CODGEO LIBGEO EPCI LIBEPCI DEP REG`.
The four communes that belong to no EPCI (Île-de-Bréhat, Île-de-Sein, Ouessant, L'Île-d'Yeu)
carry the code `ZZZZZZZZZ` ("Sans objet"): they are kept, without an EPCI, and listed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from sources.common import (
    InputError,
    check_sheet,
    file_lines,
    normalise_codes,
    read_sheet_table,
    read_text_table,
    require_columns,
)

SPREADSHEET_SUFFIXES = {".xlsx", ".xlsm", ".xls"}
EPCI_SHEET = "Composition_communale"
PASSAGE_SHEET = "COM"
NO_EPCI = "ZZZZZZZZZ"  # INSEE's code for a commune that belongs to no EPCI
_HEADER_ROWS = 12
# Every year a table de passage may name (the 2025 edition: CODGEO_2003 … CODGEO_2025).
PASSAGE_KEYS = tuple(f"CODGEO_{year}" for year in range(2003, 2051))


def read_communes_epci(path: Path) -> pd.DataFrame:
    """→ `INSEE_COM`, `NOM_COM`, `EPCI` (SIREN, 9 characters; missing for a commune without EPCI),
    `NOM_EPCI`; one row per commune. `attrs`: `path`, `communes_sans_epci` (sorted codes).

    Accepts the INSEE layout (`CODGEO`, `LIBGEO`, `EPCI`, `LIBEPCI`), as a workbook of any year
    or as CSV, and the MedNum one (`COM`, `LIBCOM`, …).
    """
    path = Path(path)
    keys = ("CODGEO", "COM")
    if path.suffix.lower() in SPREADSHEET_SUFFIXES:
        sheet = _find_sheet(path, keys, r"^EPCI$", preferred=EPCI_SHEET)
        table = read_sheet_table(path, key_column=keys, sheet=sheet, variables=r"^EPCI$", max_header_row=_HEADER_ROWS)
    else:
        table = read_text_table(path, key_column=keys)
    frame, key = table.frame, table.key
    label = "LIBGEO" if key == "CODGEO" else "LIBCOM"
    require_columns(
        path, frame.columns, (key, "EPCI", "LIBEPCI"), "communes → EPCI de l'INSEE (CODGEO, LIBGEO, EPCI, LIBEPCI)"
    )
    lines = file_lines(table)
    communes = normalise_codes(frame[key], path=path, column=key, kind="commune", lines=lines)
    member = frame["EPCI"].str.strip().str.upper() != NO_EPCI
    out = pd.DataFrame(
        {
            "INSEE_COM": communes,
            "NOM_COM": frame[label] if label in frame.columns else "",
            "EPCI": _epci_codes(path, frame["EPCI"], member, lines),
            "NOM_EPCI": frame["LIBEPCI"].where(member),
        }
    )
    out.attrs.update(path=str(path), communes_sans_epci=sorted(communes[~member]))
    return out


def _epci_codes(path: Path, raw: pd.Series, member: pd.Series, lines: list[int]) -> pd.Series:
    """SIREN codes of the member rows, validated with their file line; missing for `ZZZZZZZZZ`."""
    member_lines = [line for line, m in zip(lines, member) if m]
    codes = raw[member].astype("string").str.strip()
    bad = ~codes.fillna("").str.fullmatch(r"\d{8,9}")  # 8 digits: a leading zero lost, restored below
    if bad.any():
        pos = int(bad.to_numpy().nonzero()[0][0])
        raise InputError(
            path,
            f"{int(bad.sum())} code(s) EPCI invalide(s), le premier : {raw[member].iloc[pos]!r}",
            line=member_lines[pos],
            column="EPCI",
            fix=f"un code EPCI est un SIREN de 9 chiffres ; seul {NO_EPCI} (« Sans objet ») désigne une commune "
            "sans EPCI : corrigez la ligne ou utilisez le fichier publié par l'INSEE",
        )
    valid = normalise_codes(raw[member], path=path, column="EPCI", kind="epci", lines=member_lines, unique=False)
    return valid.reindex(raw.index)


def _find_sheet(path: Path, keys: Sequence[str], variables: str, preferred: str) -> str | None:
    """The sheet whose code row holds one of `keys` and a cell matching `variables`: `preferred`
    first, then the others in workbook order (INSEE puts a summary sheet before the table).

    None when the workbook cannot be opened, so that `read_sheet_table` reports it.
    """
    from python_calamine import CalamineWorkbook

    try:
        workbook = CalamineWorkbook.from_path(str(path))
        names = workbook.sheet_names
    except Exception:  # unreadable: read_sheet_table reports it with the file's name
        return None
    for name in sorted(names, key=lambda n: n != preferred):
        check_sheet(path, name)  # a sheet too large to load is refused before calamine touches it
        try:
            rows = workbook.get_sheet_by_name(name).to_python(skip_empty_area=False, nrows=_HEADER_ROWS)
        except Exception:  # a chart sheet or a damaged one: look at the others
            continue
        for row in rows:
            cells = {str(c).strip() for c in row if c is not None}
            if cells & set(keys) and any(re.match(variables, c) for c in cells):
                return name
    raise InputError(
        path,
        f"aucune feuille n'a de ligne de codes ({' ou '.join(keys[:3])}…) dans ses {_HEADER_ROWS} premières "
        f"lignes ; feuilles : {names}",
        fix=f"utilisez le classeur original de l'INSEE (feuille {preferred!r}, codes des variables au-dessus "
        "des données)",
    )


def read_cog_passage(path: Path) -> pd.DataFrame:
    """INSEE's annual table de passage: one column `CODGEO_yyyy` per year, one row per commune
    history line, codes as text. `attrs`: `path`, `years` (ascending)."""
    path = Path(path)
    if path.suffix.lower() in SPREADSHEET_SUFFIXES:
        variables = r"^CODGEO_\d{4}$"
        sheet = _find_sheet(path, PASSAGE_KEYS, variables, preferred=PASSAGE_SHEET)
        table = read_sheet_table(
            path, key_column=PASSAGE_KEYS, sheet=sheet, variables=variables, max_header_row=_HEADER_ROWS
        )
    else:
        table = read_text_table(path, key_column=PASSAGE_KEYS)
    columns = sorted(c for c in table.frame.columns if re.fullmatch(r"CODGEO_\d{4}", c))
    if not columns:
        raise InputError(
            path,
            "aucune colonne CODGEO_aaaa",
            fix="utilisez la table de passage annuelle de l'INSEE (table_passage_annuelle_<aaaa>.xlsx, feuille COM)",
        )
    lines = file_lines(table)
    out = pd.DataFrame(
        {
            c: normalise_codes(table.frame[c], path=path, column=c, kind="commune", lines=lines, unique=False)
            for c in columns
        }
    )
    out.attrs.update(path=str(path), years=[int(c[-4:]) for c in columns])
    return out

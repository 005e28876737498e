"""Commune → EPCI membership (INSEE intercommunality table, or the MedNum export of it)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

import re

from sources.common import InputError, file_lines, normalise_codes, read_sheet_table, read_text_table, require_columns


def read_communes_epci(path: Path) -> pd.DataFrame:
    """→ `INSEE_COM`, `NOM_COM`, `EPCI` (SIREN, 9 characters), `NOM_EPCI`; one row per commune.

    Accepts the INSEE layout (`CODGEO`, `LIBGEO`, `EPCI`, `LIBEPCI`) and the MedNum one
    (`COM`, `LIBCOM`, …).
    """
    path = Path(path)
    keys = ("CODGEO", "COM")
    if path.suffix.lower() in {".xlsx", ".xlsm", ".xls"}:
        # INSEE's "Intercommunalité – Métropole" workbook: sheet Composition_communale.
        table = read_sheet_table(path, key_column=keys, sheet=_sheet(path, "Composition_communale"),
                                 variables=r"^EPCI$")
    else:
        table = read_text_table(path, key_column=keys)
    frame, key = table.frame, table.key
    label = "LIBGEO" if key == "CODGEO" else "LIBCOM"
    require_columns(path, frame.columns, (key, "EPCI", "LIBEPCI"), "commune → EPCI table")
    lines = file_lines(table)
    out = pd.DataFrame({
        "INSEE_COM": normalise_codes(frame[key], path=path, column=key, kind="commune", lines=lines),
        "NOM_COM": frame[label] if label in frame.columns else "",
        "EPCI": normalise_codes(frame["EPCI"], path=path, column="EPCI", kind="epci", lines=lines, unique=False),
        "NOM_EPCI": frame["LIBEPCI"],
    })
    out.attrs.update(path=str(path))
    return out


def _sheet(path: Path, preferred: str) -> str | None:
    from python_calamine import CalamineWorkbook

    try:
        names = CalamineWorkbook.from_path(str(path)).sheet_names
    except Exception:  # unreadable: read_sheet_table reports it with the file's name
        return None
    return preferred if preferred in names else None


def read_cog_passage(path: Path) -> pd.DataFrame:
    """INSEE's annual table de passage: one column `CODGEO_yyyy` per year, one row per commune
    history line, codes as text."""
    path = Path(path)
    if path.suffix.lower() in {".xlsx", ".xlsm", ".xls"}:
        table = read_sheet_table(path, key_column=("CODGEO_2021", "CODGEO_2020", "CODGEO_2022", "CODGEO_2023",
                                                   "CODGEO_2024", "CODGEO_2025"),
                                 sheet=_sheet(path, "COM"), variables=r"^CODGEO_\d{4}$")
    else:
        table = read_text_table(path, key_column=("CODGEO_2021", "CODGEO_2022", "CODGEO_2023", "CODGEO_2024"))
    columns = sorted(c for c in table.frame.columns if re.fullmatch(r"CODGEO_\d{4}", c))
    if not columns:
        raise InputError(path, "no CODGEO_yyyy column", fix="use INSEE's table_passage_annuelle file")
    lines = file_lines(table)
    out = pd.DataFrame({c: normalise_codes(table.frame[c], path=path, column=c, kind="commune", lines=lines,
                                           unique=False) for c in columns})
    out.attrs.update(path=str(path), years=[int(c[-4:]) for c in columns])
    return out

"""Commune → EPCI membership (INSEE intercommunality table, or the MedNum export of it)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from sources.common import file_lines, normalise_codes, read_sheet_table, read_text_table, require_columns


def read_communes_epci(path: Path) -> pd.DataFrame:
    """→ `INSEE_COM`, `NOM_COM`, `EPCI` (SIREN, 9 characters), `NOM_EPCI`; one row per commune.

    Accepts the INSEE layout (`CODGEO`, `LIBGEO`, `EPCI`, `LIBEPCI`) and the MedNum one
    (`COM`, `LIBCOM`, …).
    """
    path = Path(path)
    keys = ("CODGEO", "COM")
    if path.suffix.lower() in {".xlsx", ".xlsm"}:
        table = read_sheet_table(path, key_column=keys)
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

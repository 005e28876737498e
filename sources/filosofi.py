"""INSEE Filosofi: disposable income and poverty, at IRIS and at commune level.

IRIS file (`BASE_TD_FILO_DISP_IRIS_yyyy`): xlsx with title rows (codes on row 6 of sheet
`IRIS_DISP`) or CSV; decimal point or comma depending on the year; IRIS under the publication
threshold are absent or marked `s`/`nd`; the 2019 CSV lost the leading zero of Ain's codes.
Variables are returned without their `DISP_` prefix and year suffix (`DISP_TP6017` → `TP60`);
the income year travels in `attrs["annee"]`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from sources.common import (
    InputError,
    completed_codes,
    TextTable,
    file_lines,
    normalise_codes,
    parse_numbers,
    read_sheet_table,
    read_text_table,
)

IRIS_SHEET = "IRIS_DISP"
_IRIS_VAR = re.compile(r"^DISP_([A-Z0-9]+?)(\d{2})$")
_COMMUNE_VAR = re.compile(r"^(MED|TP60|PPMINI|NBMENFISC|NBPERSMENFISC)(\d{2})$")


def _read(path: Path, key_column: str | tuple[str, ...], sheet: str | None, variables: str) -> TextTable:
    suffix = path.suffix.lower()
    if suffix in {".xlsx", ".xlsm", ".xls"}:
        return read_sheet_table(path, key_column=key_column, sheet=sheet, variables=variables)
    if suffix in {".csv", ".txt"}:
        return read_text_table(path, key_column=key_column)
    raise InputError(path, f"unsupported format {suffix!r} for a Filosofi file", fix="give the xlsx or CSV file INSEE publishes")


def _year(path: Path, found: set[str], example: str) -> int:
    if not found:
        raise InputError(path, f"no Filosofi variable with a year suffix (e.g. {example})",
                         fix="use an INSEE Filosofi file")
    if len(found) > 1:
        raise InputError(path, f"variables of several years mixed: {sorted(found)}",
                         fix="use one Filosofi file per income year")
    return 2000 + int(found.pop())


def read_filosofi_iris(path: Path) -> pd.DataFrame:
    """Filosofi IRIS file → `CODE_IRIS` + numeric variables (`TP60`, `MED`, `PPMINI`, …)."""
    path = Path(path)
    table = _read(path, "IRIS", IRIS_SHEET, _IRIS_VAR.pattern)
    frame = table.frame
    matches = {c: m for c in frame.columns if (m := _IRIS_VAR.match(c))}
    year = _year(path, {m.group(2) for m in matches.values()}, "DISP_MED17")
    lines = file_lines(table)
    out = pd.DataFrame({"CODE_IRIS": normalise_codes(frame["IRIS"], path=path, column="IRIS", kind="iris", lines=lines)})
    out.attrs["codes_completes"] = completed_codes(frame["IRIS"], out["CODE_IRIS"])
    for col, m in matches.items():
        # Shares in Filosofi can be negative (DISP_PIMPOT, taxes); levels cannot.
        out[m.group(1)] = parse_numbers(frame[col], path=path, column=col, lines=lines, allow_negative=True)
    for needed in ("MED", "TP60"):
        if needed not in out.columns:
            raise InputError(path, f"no DISP_{needed}yy column", column=f"DISP_{needed}{year % 100:02d}",
                             fix="use the 'revenus disponibles' (DISP) Filosofi IRIS file")
    out.attrs.update(annee=year, path=str(path))
    return out


def read_filosofi_communes(path: Path) -> pd.DataFrame:
    """Filosofi commune file (code column `CODGEO` or `COM`) → `INSEE_COM` + `MED`, `TP60`, …"""
    path = Path(path)
    table = _read(path, ("CODGEO", "COM"), None, _COMMUNE_VAR.pattern)
    frame, key = table.frame, table.key
    matches = {c: m for c in frame.columns if (m := _COMMUNE_VAR.match(c))}
    year = _year(path, {m.group(2) for m in matches.values()}, "MED17")
    lines = file_lines(table)
    out = pd.DataFrame({"INSEE_COM": normalise_codes(frame[key], path=path, column=key, kind="commune", lines=lines)})
    if "LIBGEO" in frame.columns:
        out["LIBGEO"] = frame["LIBGEO"]
    for col, m in matches.items():
        out[m.group(1)] = parse_numbers(frame[col], path=path, column=col, lines=lines)
    out.attrs.update(annee=year, path=str(path))
    return out

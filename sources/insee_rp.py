"""INSEE census "bases infracommunales" (base-ic) at IRIS level, any vintage.

Variables carry the vintage in their prefix (`P16_POP`, `C16_MEN`). The parser detects it, checks
that every variable of the file shares it, and renames the variables to `P_POP`, `C_MEN` so the
indicator catalogue is written once for all vintages. The vintage travels in `frame.attrs`.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from pathlib import Path

import pandas as pd

from sources.common import (
    InputError,
    TextTable,
    completed_codes,
    file_lines,
    normalise_codes,
    parse_numbers,
    read_sheet_table,
    read_text_table,
    require_columns,
)

ID_COLUMNS = ("IRIS", "COM", "TYP_IRIS")
LABEL_COLUMNS = ("REG", "DEP", "LIBCOM", "LIBIRIS")
_VARIABLE = re.compile(r"^([PC])(\d{2})_(\w+)$")
TYP_IRIS_VALUES = {"H", "A", "D", "Z"}


def detect_vintage(path: Path, columns: list[str]) -> int:
    """Census vintage from the `Pyy_`/`Cyy_` prefixes; refuse a file that mixes vintages."""
    years = {m.group(2) for c in columns if (m := _VARIABLE.match(c))}
    if not years:
        raise InputError(
            path,
            "aucune variable du recensement préfixée Pyy_/Cyy_ (par exemple P16_POP, C16_MEN)",
            fix="donnez un fichier base-ic (bases infracommunales) du recensement de l'INSEE",
        )
    if len(years) > 1:
        raise InputError(
            path,
            f"variables de plusieurs millésimes mêlées : préfixes {sorted('P' + y + '_' for y in years)}",
            fix="un fichier base-ic par millésime, tel que l'INSEE le publie",
        )
    return 2000 + int(years.pop())


def read_base_ic(
    path: Path, theme: str, variables: Collection[str] | None = None, required: Collection[str] = ()
) -> pd.DataFrame:
    """One base-ic file (CSV `;`, or an INSEE xlsx with title rows) → one row per IRIS.

    Columns: `CODE_IRIS`, `INSEE_COM`, `TYP_IRIS`, the labels present, then the census
    variables as floats named `P_<VAR>` / `C_<VAR>`: all of them, or only `variables` (named
    so), which are then the only ones a CSV is parsed for. `required` (named so too) are the
    variables this file must hold: the counts of the indicators drawn from it. A variable the
    INSEE renamed would otherwise drop its indicator without a word. `attrs`: `millesime`,
    `theme`, `path`.
    """
    path = Path(path)
    wanted = None if variables is None else set(variables) | set(required)
    table = _read(path, None if wanted is None else _keeps(wanted))
    frame = table.frame
    require_columns(path, frame.columns, ID_COLUMNS, f"base-ic {theme!r} du recensement de l'INSEE")
    header = table.header or list(frame.columns)
    vintage = detect_vintage(path, header)
    _require_variables(path, theme, header, vintage, required)
    if frame.empty:
        raise InputError(
            path,
            f"aucune ligne de données sous l'en-tête (fichier base-ic {theme!r} sans IRIS)",
            line=table.header_line,
            fix="le fichier est tronqué ou vide : téléchargez à nouveau le fichier de l'INSEE",
        )
    lines = file_lines(table)
    out = pd.DataFrame(index=frame.index)
    out["CODE_IRIS"] = normalise_codes(frame["IRIS"], path=path, column="IRIS", kind="iris", lines=lines)
    out["INSEE_COM"] = normalise_codes(frame["COM"], path=path, column="COM", kind="commune", lines=lines, unique=False)
    mismatch = out["CODE_IRIS"].str[:5] != out["INSEE_COM"]
    if mismatch.any():
        pos = int(mismatch.to_numpy().nonzero()[0][0])
        raise InputError(
            path,
            f"l'IRIS {out['CODE_IRIS'].iloc[pos]} ne commence pas par le code de sa commune {out['INSEE_COM'].iloc[pos]}",
            line=lines[pos],
            column="COM",
            fix="les cinq premiers caractères d'un code IRIS sont le code de sa commune",
        )
    typ = frame["TYP_IRIS"].str.upper()
    bad_typ = ~typ.isin(TYP_IRIS_VALUES)
    if bad_typ.any():
        pos = int(bad_typ.to_numpy().nonzero()[0][0])
        raise InputError(
            path,
            f"TYP_IRIS inconnu {frame['TYP_IRIS'].iloc[pos]!r}",
            line=lines[pos],
            column="TYP_IRIS",
            fix="TYP_IRIS vaut H, A, D ou Z",
        )
    out["TYP_IRIS"] = typ
    for col in LABEL_COLUMNS:
        if col in frame.columns:
            out[col] = frame[col]
    for col in frame.columns:
        m = _VARIABLE.match(col)
        if m and (wanted is None or f"{m.group(1)}_{m.group(3)}" in wanted):
            out[f"{m.group(1)}_{m.group(3)}"] = parse_numbers(frame[col], path=path, column=col, lines=lines)
    out.attrs.update(
        millesime=vintage, theme=theme, path=str(path), codes_completes=completed_codes(frame["IRIS"], out["CODE_IRIS"])
    )
    return out.reset_index(drop=True)


def _require_variables(path: Path, theme: str, header: list[str], vintage: int, required: Collection[str]) -> None:
    """Refuse a file without one of the `required` variables (`P_POP65P` → `P21_POP65P`)."""
    present = set(header)
    for name in sorted(required):
        kind, _, rest = name.partition("_")
        if kind not in ("P", "C") or not rest:
            raise ValueError(f"variable du recensement mal nommée {name!r} : attendu P_<VAR> ou C_<VAR>")
        expected = f"{kind}{vintage % 100:02d}_{rest}"
        if expected not in present:
            raise InputError(
                path,
                f"variable {expected} absente du fichier base-ic {theme!r} du recensement {vintage} ; "
                "un indicateur en dépend",
                column=expected,
                fix="l'INSEE a peut-être renommé la variable : cherchez-la dans le dictionnaire des variables du "
                "millésime et mettez à jour config/indicators.yaml, ou donnez le fichier du bon thème",
            )


def _keeps(variables: set[str]):
    """Column filter: identifiers, labels, and the census variables named in `variables`."""

    def keep(column: str) -> bool:
        m = _VARIABLE.match(column)
        return f"{m.group(1)}_{m.group(3)}" in variables if m else column in ID_COLUMNS + LABEL_COLUMNS

    return keep


def _read(path: Path, columns=None) -> TextTable:
    suffix = path.suffix.lower()
    if suffix in {".xlsx", ".xlsm", ".xls"}:
        return read_sheet_table(path, key_column="IRIS", variables=_VARIABLE.pattern)
    if suffix in {".csv", ".txt"}:
        return read_text_table(path, key_column="IRIS", columns=columns)
    raise InputError(
        path,
        f"format {suffix!r} non pris en charge pour un fichier base-ic",
        fix="donnez le fichier CSV (ou xlsx) que l'INSEE publie dans son archive zip",
    )

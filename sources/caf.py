"""CAF "allocataires non connectés": a documented CSV the user drops in a folder.

No public standard exists; each département's CAF shares these counts on request. Layout
(`;` or `,`, UTF-8): `code_geo;niveau;millesime;allocataires;non_connectes`, with `niveau` =
`IRIS` or `commune`. A blank count is the secret statistique (unknown), never 0.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from sources.common import InputError, file_lines, normalise_codes, parse_numbers, read_text_table, require_columns

COLUMNS = ("code_geo", "niveau", "millesime", "allocataires", "non_connectes")
LEVELS = {"iris": "iris", "commune": "commune"}


def read_caf_non_connectes(path: Path) -> pd.DataFrame:
    """→ `code_geo`, `niveau` (iris|commune), `millesime`, `allocataires`, `non_connectes`."""
    path = Path(path)
    head = path.read_bytes()[:2048].decode("utf-8", errors="replace") if path.exists() else ""
    sep = ";" if head.count(";") >= head.count(",") else ","
    table = read_text_table(path, key_column="code_geo", sep=sep)
    frame = table.frame
    require_columns(
        path, frame.columns, COLUMNS, "CSV de la CAF « allocataires non connectés » (format décrit dans le README)"
    )
    lines = file_lines(table)
    levels = frame["niveau"].str.lower().map(LEVELS)
    if levels.isna().any():
        pos = int(levels.isna().to_numpy().nonzero()[0][0])
        raise InputError(
            path,
            f"niveau {frame['niveau'].iloc[pos]!r} inconnu : ni IRIS ni commune",
            line=lines[pos],
            column="niveau",
            fix="écrivez IRIS (code_geo à 9 caractères) ou commune (code_geo à 5 caractères) dans la colonne niveau",
        )
    codes = pd.Series("", index=frame.index, dtype=str)
    for level in ("iris", "commune"):
        rows = levels == level
        if rows.any():
            codes[rows] = normalise_codes(
                frame.loc[rows, "code_geo"],
                path=path,
                column="code_geo",
                kind=level,
                lines=[lines[i] for i in rows.to_numpy().nonzero()[0]],
            )
    out = pd.DataFrame(
        {
            "code_geo": codes,
            "niveau": levels,
            "millesime": frame["millesime"],
            "allocataires": parse_numbers(frame["allocataires"], path=path, column="allocataires", lines=lines),
            "non_connectes": parse_numbers(frame["non_connectes"], path=path, column="non_connectes", lines=lines),
        }
    )
    over = out["non_connectes"] > out["allocataires"]
    if over.any():
        pos = int(over.to_numpy().nonzero()[0][0])
        raise InputError(
            path,
            f"{out['non_connectes'].iloc[pos]:.0f} non connectés pour {out['allocataires'].iloc[pos]:.0f} allocataires",
            line=lines[pos],
            column="non_connectes",
            fix="non_connectes compte des allocataires et ne peut pas dépasser allocataires : corrigez la ligne "
            "ou redemandez le fichier à la CAF",
        )
    years = sorted(set(out["millesime"]))
    out.attrs.update(path=str(path), millesime=",".join(years))
    return out

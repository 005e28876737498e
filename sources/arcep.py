"""ARCEP "Ma connexion internet": premises by best available download speed, by commune.

The CSV starts with a free-text disclaimer line; the header is found by its `code_insee`
column. Speed columns are exclusive classes (they add up to `nbr`), so premises with at least
30 Mbit/s are `elig_thd30 + elig_thd100 + elig_thd1g`. Lyon, Paris and Marseille are one row
each (69123, 75056, 13055).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from sources.common import InputError, file_lines, normalise_codes, parse_numbers, read_text_table, require_columns

SPEED_CLASSES = ("inel_hd", "elig_hd05", "elig_hd3", "elig_hd8", "elig_thd30", "elig_thd100", "elig_thd1g")
THD_CLASSES = ("elig_thd30", "elig_thd100", "elig_thd1g")


def read_arcep_debit(path: Path) -> pd.DataFrame:
    """→ `INSEE_COM`, `nom_com`, `locaux` (all premises), `locaux_thd` (≥ 30 Mbit/s), `date`."""
    path = Path(path)
    table = read_text_table(path, key_column="code_insee")
    frame = table.frame
    require_columns(path, frame.columns, ("code_insee", "nbr", *SPEED_CLASSES), "ARCEP Ma connexion internet (commune)")
    lines = file_lines(table)
    counts = {c: parse_numbers(frame[c], path=path, column=c, lines=lines) for c in ("nbr", *SPEED_CLASSES)}
    total = sum(counts[c] for c in SPEED_CLASSES)
    off = (total - counts["nbr"]).abs() > 0.5
    if off.any():
        pos = int(off.to_numpy().nonzero()[0][0])
        raise InputError(
            path,
            f"speed classes add up to {total.iloc[pos]:.0f}, not nbr = {counts['nbr'].iloc[pos]:.0f}",
            line=lines[pos],
            column="nbr",
            fix="the file should give exclusive speed classes per commune; check it is the 'commune' file",
        )
    out = pd.DataFrame({
        "INSEE_COM": normalise_codes(frame["code_insee"], path=path, column="code_insee", kind="commune", lines=lines),
        "nom_com": frame.get("nom_com", pd.Series("", index=frame.index)),
        "locaux": counts["nbr"],
        "locaux_thd": sum(counts[c] for c in THD_CLASSES),
        "date": frame.get("date", pd.Series("", index=frame.index)),
    })
    dates = sorted(set(out["date"]) - {""})
    out.attrs.update(path=str(path), date=dates[-1] if dates else None)
    return out

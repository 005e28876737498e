"""What every parser shares: the input error, reading delimited text, codes and numbers.

Public files change without notice. Each helper here fails with an `InputError` that names the
file, the line or column, what was expected and how to fix it, rather than letting a bad value
travel silently into a score.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

COMMUNE_RE = r"(?:\d{5}|2[AB]\d{3})"
COMMUNE_PATTERN = re.compile(rf"^{COMMUNE_RE}$")
IRIS_PATTERN = re.compile(rf"^{COMMUNE_RE}\d{{4}}$")
EPCI_PATTERN = re.compile(r"^\d{9}$")
DEPARTEMENT_PATTERN = re.compile(r"^(?:\d{2}|2[AB]|97\d)$")

KIND_LABELS = {"commune": "commune", "iris": "IRIS", "epci": "EPCI"}

# Markers INSEE and the CAF use for suppressed or unavailable values (secret statistique).
MISSING_MARKERS = frozenset({"", "s", "nd", "nc", "ns", "so", "na", "n/a", "-", "secret"})


@dataclass
class InputError(Exception):
    """An input file does not match the layout the parser expects."""

    path: Path | str
    problem: str
    line: int | None = None
    column: str | None = None
    fix: str | None = None

    def __str__(self) -> str:
        where = str(self.path)
        if self.line is not None:
            where += f", ligne {self.line}"
        if self.column is not None:
            where += f", colonne {self.column!r}"
        text = f"{where} : {self.problem}"
        if self.fix:
            text += f"\n  correction : {self.fix}"
        return text


@dataclass(frozen=True)
class TextTable:
    """A delimited file read as text: cells are strings, codes keep their zeros."""

    path: Path
    frame: pd.DataFrame
    header_line: int  # 1-based line number of the header in the file
    encoding: str
    key: str  # the key column found in the header
    header: list[str] = field(default_factory=list)  # every column of the header, read or not

    def file_line(self, row_position: int) -> int:
        """File line (1-based) of the data row at this position."""
        return self.header_line + 1 + row_position


def _decode(path: Path, raw: bytes, encodings: Sequence[str]) -> tuple[str, str]:
    for enc in encodings:
        try:
            return raw.decode(enc), enc
        except UnicodeDecodeError as exc:
            last = exc
    line = raw[: last.start].count(b"\n") + 1
    raise InputError(
        path,
        f"illisible en {' ou '.join(encodings)} (octet 0x{raw[last.start]:02x})",
        line=line,
        fix="enregistrez le fichier en UTF-8, ou reprenez le fichier original de l'éditeur",
    )


def read_text_table(
    path: Path,
    *,
    key_column: str | Sequence[str],
    sep: str = ";",
    encodings: Sequence[str] = ("utf-8-sig", "cp1252"),
    max_header_line: int = 10,
    columns: Callable[[str], bool] | None = None,
) -> TextTable:
    """Read a `sep`-delimited file whose header is the first line holding `key_column`
    (or one of several accepted key names).

    Publishers put free-text lines above the header (ARCEP's disclaimer, INSEE's titles); the
    header is found by its key column rather than by a fixed line number. `columns`, when given,
    picks the columns to read by name (INSEE's base-ic files have ~100 variables; a run uses a
    few), so the others are never parsed.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(
            path, "fichier introuvable", fix="vérifiez le chemin dans la configuration (`fragilite config`)"
        ) from None
    if not raw.strip():
        raise InputError(path, "fichier vide", fix="téléchargez le fichier à nouveau")
    text, encoding = _decode(path, raw, encodings)
    keys = (key_column,) if isinstance(key_column, str) else tuple(key_column)
    lines = text.splitlines()
    header_idx, key, header = None, "", []
    for i, line in enumerate(lines[:max_header_line]):
        cells = [c.strip().strip('"').lstrip("\ufeff") for c in line.split(sep)]
        key = next((k for k in keys if k in cells), "")
        if key:
            header_idx, header = i, cells
            break
    if header_idx is None:
        raise InputError(
            path,
            f"aucune ligne d'en-tête avec une colonne {' ou '.join(map(repr, keys))} dans les {max_header_line} "
            f"premières lignes (séparateur {sep!r})",
            fix=f"vérifiez qu'il s'agit du bon fichier et qu'il est séparé par {sep!r}",
        )
    body = "\n".join(lines[header_idx:])
    try:
        frame = pd.read_csv(
            io.StringIO(body),
            sep=sep,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            usecols=None if columns is None else (lambda c: columns(str(c).strip().lstrip("\ufeff"))),
        )
    except pd.errors.ParserError as exc:
        match = re.search(r"line (\d+)", str(exc))
        line = header_idx + int(match.group(1)) if match else None
        raise InputError(
            path, f"ligne mal formée : {exc}", line=line, fix="réparez ou téléchargez à nouveau le fichier"
        ) from exc
    frame.columns = [str(c).strip().lstrip("\ufeff") for c in frame.columns]
    for col in frame.columns:
        frame[col] = frame[col].str.strip()
    return TextTable(path=path, frame=frame, header_line=header_idx + 1, encoding=encoding, key=key, header=header)


def require_columns(path: Path, columns: Iterable[str], required: Iterable[str], what: str) -> None:
    present = set(columns)
    missing = [c for c in required if c not in present]
    if missing:
        raise InputError(
            path,
            f"colonne(s) absente(s) {missing}, attendue(s) dans {what} ; trouvées : {sorted(present)[:20]}",
            column=missing[0],
            fix=f"donnez le fichier {what}, ou vérifiez si l'éditeur a renommé la colonne",
        )


def parse_numbers(
    values: pd.Series,
    *,
    path: Path,
    column: str,
    lines: Sequence[int] | None = None,
    allow_negative: bool = False,
) -> pd.Series:
    """Numbers written with `.` or `,` as decimal mark; suppression markers become missing.

    Any other text is refused with the line it stands on: a silently coerced NaN would turn
    into a missing score no one asked for.
    """
    text = values.astype("string").str.strip().str.replace("\u00a0", "", regex=False)
    text = text.str.replace(" ", "", regex=False)
    missing = text.isna() | text.str.lower().isin(MISSING_MARKERS)
    normalised = text.where(~missing).str.replace(",", ".", regex=False)
    numbers = pd.to_numeric(normalised, errors="coerce")
    bad = numbers.isna() & ~missing
    if bad.any():
        pos = int(bad.to_numpy().nonzero()[0][0])
        raise InputError(
            path,
            f"{int(bad.sum())} valeur(s) non numérique(s), la première {values.iloc[pos]!r}",
            line=lines[pos] if lines is not None else None,
            column=column,
            fix="les nombres s'écrivent avec '.' ou ',' comme décimale ; vide, 's' ou 'nd' marquent un secret",
        )
    if not allow_negative and (numbers < 0).any():
        pos = int((numbers < 0).to_numpy().nonzero()[0][0])
        raise InputError(
            path,
            f"effectif négatif {values.iloc[pos]!r}",
            line=lines[pos] if lines is not None else None,
            column=column,
            fix="un effectif ne peut pas être négatif : comparez le fichier à celui de l'éditeur",
        )
    return numbers.astype("float64")


def normalise_codes(
    values: pd.Series,
    *,
    path: Path,
    column: str,
    kind: str,
    lines: Sequence[int] | None = None,
    unique: bool = True,
) -> pd.Series:
    """Validate commune/IRIS/EPCI codes as text, restoring a leading zero a spreadsheet lost."""
    pattern, width = {
        "commune": (COMMUNE_PATTERN, 5),
        "iris": (IRIS_PATTERN, 9),
        "epci": (EPCI_PATTERN, 9),
    }[kind]
    codes = values.astype("string").str.strip().str.upper()
    short = codes.str.fullmatch(r"\d+") & (codes.str.len() == width - 1)
    codes = codes.where(~short, "0" + codes)
    bad = ~codes.fillna("").str.fullmatch(pattern.pattern)
    if bad.any():
        pos = int(bad.to_numpy().nonzero()[0][0])
        raise InputError(
            path,
            f"{int(bad.sum())} code(s) {KIND_LABELS[kind]} invalide(s), le premier {values.iloc[pos]!r}",
            line=lines[pos] if lines is not None else None,
            column=column,
            fix=f"un code {KIND_LABELS[kind]} a {width} caractères (chiffres, ou 2A/2B pour la Corse), lus comme du texte",
        )
    if unique:
        dup = codes.duplicated(keep="first")
        if dup.any():
            pos = int(dup.to_numpy().nonzero()[0][0])
            raise InputError(
                path,
                f"code {KIND_LABELS[kind]} en double {codes.iloc[pos]!r} ({int(dup.sum())} ligne(s) répétée(s))",
                line=lines[pos] if lines is not None else None,
                column=column,
                fix="chaque code ne doit figurer qu'une fois : supprimez les lignes répétées",
            )
    return codes.astype(str)


def completed_codes(raw: pd.Series, codes: pd.Series) -> int:
    """How many codes `normalise_codes` had to complete (a lost leading zero)."""
    return int((raw.astype("string").str.strip().str.upper() != codes).sum())


def file_lines(table: TextTable) -> list[int]:
    return [table.file_line(i) for i in range(len(table.frame))]


def read_sheet_table(
    path: Path,
    *,
    key_column: str | Sequence[str],
    sheet: str | None = None,
    variables: str | None = None,
    max_header_row: int = 12,
) -> TextTable:
    """Read an INSEE spreadsheet (xlsx or old xls) whose code row follows title rows.

    INSEE spreadsheets carry 4–5 title rows and a row of French labels above the row of variable
    codes; the code row is found by its key column. `variables` is a regex that another cell of
    the code row must match: the label row above it often repeats the key (`IRIS`). Cells come
    back as text so codes keep their zeros; numbers are parsed later by `parse_numbers`.
    """
    from python_calamine import CalamineError, CalamineWorkbook

    path = Path(path)
    if not path.exists():
        raise InputError(
            path, "fichier introuvable", fix="vérifiez le chemin dans la configuration (`fragilite config`)"
        )
    try:
        workbook = CalamineWorkbook.from_path(str(path))
        if sheet is not None and sheet not in workbook.sheet_names:
            raise InputError(
                path,
                f"pas de feuille {sheet!r} ; feuilles : {workbook.sheet_names}",
                fix="donnez le classeur original de l'éditeur",
            )
        name = sheet if sheet is not None else workbook.sheet_names[0]
        rows = workbook.get_sheet_by_name(name).to_python(skip_empty_area=False)
    except (CalamineError, ValueError, OSError) as exc:
        raise InputError(path, f"classeur illisible ({exc})", fix="téléchargez le fichier à nouveau") from exc
    keys = (key_column,) if isinstance(key_column, str) else tuple(key_column)
    header, header_row, key = None, 0, ""
    for header_row, row in enumerate(rows[:max_header_row], start=1):  # noqa: B007 - used after the loop
        cells = [_cell_text(c) for c in row]
        key = next((k for k in keys if k in cells), "")
        if key and (variables is None or any(re.match(variables, c) for c in cells)):
            header = cells
            break
    if header is None:
        raise InputError(
            path,
            f"aucune ligne avec une cellule {' ou '.join(map(repr, keys))} dans les {max_header_row} premières "
            f"lignes de la feuille {name!r}",
            fix="donnez le classeur original de l'éditeur (codes des variables sur la ligne au-dessus des données)",
        )
    width = max(i for i, c in enumerate(header) if c) + 1
    records = [[_cell_text(c) for c in row[:width]] for row in rows[header_row:]]
    frame = pd.DataFrame([r + [""] * (width - len(r)) for r in records if any(r)], columns=header[:width], dtype=str)
    return TextTable(path=path, frame=frame, header_line=header_row, encoding="spreadsheet", key=key)


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()

"""What every parser shares: the input error, reading delimited text, codes and numbers.

Public files change without notice. Each helper here fails with an `InputError` that names the
file, the line or column, what was expected and how to fix it, rather than letting a bad value
travel silently into a score.
"""

from __future__ import annotations

import codecs
import csv
import posixpath
import re
import threading
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
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


CHUNK_BYTES = 1 << 22  # streamed files are read by 4 MB blocks
HEAD_BYTES = 1 << 20  # the header must be in the first megabyte
MAX_ROW_BYTES = 1 << 26  # a row longer than 64 MB is a broken quote, not data
_QUOTE, _LF, _CR = ord('"'), ord("\n"), ord("\r")


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
    few), so the others are never parsed. Every row must have the header's field count, whether
    columns are picked or not: one stray separator would otherwise shift a row's values. The file
    is streamed from disk (national files weigh hundreds of megabytes), never held whole as text.
    """
    path = Path(path)
    _require_text_file(path)
    encoding = _detect_encoding(path, encodings)
    keys = (key_column,) if isinstance(key_column, str) else tuple(key_column)
    found = _find_header(path, keys, sep, encoding, max_header_line)
    if found is None:
        raise InputError(
            path,
            f"aucune ligne d'en-tête avec une colonne {' ou '.join(map(repr, keys))} dans les {max_header_line} "
            f"premières lignes (séparateur {sep!r})",
            fix=f"vérifiez qu'il s'agit du bon fichier et qu'il est séparé par {sep!r}",
        )
    header_idx, offset, body, raw_names = found
    _check_field_counts(path, body, header_idx + 2, len(raw_names), sep)
    header = [_clean_name(n) for n in raw_names]
    key = next(k for k in keys if k in header)
    usecols = None if columns is None else [raw for raw, name in zip(raw_names, header) if raw and columns(name)]
    frame = _read_frame(path, offset, header_idx, sep, encoding, usecols)
    frame.columns = [_clean_name(str(c)) for c in frame.columns]
    return TextTable(path=path, frame=frame, header_line=header_idx + 1, encoding=encoding, key=key, header=header)


def _clean_name(name: str) -> str:
    return name.strip().strip('"').lstrip("\ufeff").strip()


def _require_text_file(path: Path) -> None:
    """Refuse a missing file, or one holding nothing but blanks."""
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(CHUNK_BYTES), b""):
                if block.strip():
                    return
    except FileNotFoundError:
        raise InputError(
            path, "fichier introuvable", fix="vérifiez le chemin dans la configuration (`fragilite config`)"
        ) from None
    raise InputError(path, "fichier vide", fix="téléchargez le fichier à nouveau")


def _detect_encoding(path: Path, encodings: Sequence[str]) -> str:
    """The first encoding the whole file decodes in, checked block by block (never the whole text)."""
    error = (1, 0)
    for encoding in encodings:
        error = _first_decode_error(path, encoding)
        if error is None:
            return encoding
    line, byte = error
    raise InputError(
        path,
        f"illisible en {' ou '.join(encodings)} (octet 0x{byte:02x})",
        line=line,
        fix="enregistrez le fichier en UTF-8, ou reprenez le fichier original de l'éditeur",
    )


def _first_decode_error(path: Path, encoding: str) -> tuple[int, int] | None:
    """(line, byte) of the first byte `encoding` cannot decode, or None."""
    decoder = codecs.getincrementaldecoder(encoding)()
    lines = 0
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK_BYTES), b""):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as exc:
                return lines + exc.object[: exc.start].count(b"\n") + 1, exc.object[exc.start]
            lines += block.count(b"\n")
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            return lines + 1, exc.object[exc.start]
    return None


def _find_header(
    path: Path, keys: Sequence[str], sep: str, encoding: str, max_lines: int
) -> tuple[int, int, int, list[str]] | None:
    """(0-based line index, byte offset, offset of the next line, raw cells) of the first line
    holding one of `keys`, looked for in the file's first megabyte only."""
    for index, offset, raw in _head_lines(path):
        if index >= max_lines:
            break
        cells = _split_line(raw, encoding, sep)
        if any(k in {_clean_name(c) for c in cells} for k in keys):
            return index, offset, offset + len(raw), cells
    return None


def _head_lines(path: Path) -> Iterator[tuple[int, int, bytes]]:
    """(0-based index, byte offset, bytes with the line break) of the complete lines of the
    file's first megabyte: the header is looked for there, never in the whole file."""
    with open(path, "rb") as fh:
        head = fh.read(HEAD_BYTES)
        at_end = not fh.read(1)
    offset = 0
    for index, match in enumerate(re.finditer(rb"[^\r\n]*(?:\r\n|\r|\n|$)", head)):
        raw = match.group()
        if not raw or not (at_end or raw.endswith((b"\n", b"\r"))):
            return
        yield index, offset, raw
        offset += len(raw)


def _split_line(raw: bytes, encoding: str, sep: str) -> list[str]:
    text = raw.decode(encoding, errors="replace").rstrip("\r\n")
    return next(csv.reader([text], delimiter=sep), [])


def check_field_counts(path: Path, header_line: int, sep: str = ";", encoding: str = "utf-8-sig") -> None:
    """For readers that parse a file themselves (by chunks, with a column filter, which stops
    pandas from checking): every row after the header (1-based `header_line`) has the header's
    field count, or the file is refused with the row's line."""
    path = Path(path)
    for index, offset, raw in _head_lines(path):
        if index == header_line - 1:
            _check_field_counts(path, offset + len(raw), header_line + 1, len(_split_line(raw, encoding, sep)), sep)
            return
    raise InputError(path, f"pas de ligne d'en-tête {header_line}", fix="vérifiez qu'il s'agit du bon fichier")


def _read_frame(
    path: Path, offset: int, header_idx: int, sep: str, encoding: str, usecols: list[str] | None
) -> pd.DataFrame:
    """pandas' C parser reads the file from its header on, straight from disk, by blocks of
    rows so that its temporary Python strings never pile up; cells are stripped only in the
    columns that need it (a stripped copy of every column would double the table)."""
    with open(path, "rb") as fh, _system_allocator():
        fh.seek(offset)
        try:
            with pd.read_csv(
                fh,
                sep=sep,
                dtype=str,
                keep_default_na=False,
                na_filter=False,
                usecols=usecols,
                encoding=encoding,
                engine="c",
                chunksize=_rows_per_block(path),
            ) as reader:
                parts = list(reader)
        except (pd.errors.ParserError, ValueError) as exc:
            match = re.search(r"(?:line|row) (\d+)", str(exc))
            raise InputError(
                path,
                f"ligne mal formée : {exc}",
                line=header_idx + int(match.group(1)) if match else None,
                fix="réparez ou téléchargez à nouveau le fichier",
            ) from exc
        frame = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
        del parts
        for col in frame.columns:
            if frame[col].str.contains(r"^[\s\p{Z}]|[\s\p{Z}]$", regex=True).any():
                frame[col] = frame[col].str.strip()
    return frame


def _rows_per_block(path: Path) -> int:
    """Rows per block of about 8 MB of text, from the length of the file's first lines."""
    with open(path, "rb") as fh:
        head = fh.read(HEAD_BYTES)
    mean = len(head) / max(head.count(b"\n"), 1)
    return int(min(max((8 << 20) / mean, 1_000), 200_000))


_pool_lock = threading.Lock()
_pool_users = 0
_pool_saved = None


@contextmanager
def _system_allocator():
    """Arrow's system allocator while a table is read: the default one (mimalloc) keeps the
    pages of the parser's short-lived blocks, which alone lifts the peak to ~2.6 × the file.
    Buffers remember their allocator, so switching back is safe."""
    import pyarrow as pa

    global _pool_users, _pool_saved
    with _pool_lock:
        if _pool_users == 0:
            _pool_saved = pa.default_memory_pool()
            pa.set_memory_pool(pa.system_memory_pool())
        _pool_users += 1
    try:
        yield
    finally:
        with _pool_lock:
            _pool_users -= 1
            if _pool_users == 0:
                pa.set_memory_pool(_pool_saved)


def _check_field_counts(path: Path, start: int, first_line: int, expected: int, sep: str) -> None:
    """Every row after the header has exactly the header's field count: one stray separator
    would shift a row's values into its neighbours' columns. Separators inside quotes do not
    count; blank lines are skipped, as pandas does. Read by blocks, never whole."""
    line, carry = first_line, b""
    with open(path, "rb") as fh:
        fh.seek(start)
        while True:
            block = fh.read(CHUNK_BYTES)
            buffer = carry + block if carry else block
            if not buffer:
                return
            consumed, lines = _check_rows(path, buffer, not block, line, expected, ord(sep))
            carry, line = buffer[consumed:], line + lines
            if not block:
                return
            if len(carry) > MAX_ROW_BYTES:
                raise InputError(
                    path,
                    f"ligne de plus de {MAX_ROW_BYTES >> 20} Mo : guillemet jamais refermé ou fichier qui n'est pas un tableau",
                    line=line,
                    fix="réparez ou téléchargez à nouveau le fichier",
                )


def _check_rows(path: Path, buffer: bytes, final: bool, line: int, expected: int, sep: int) -> tuple[int, int]:
    """Check the complete rows of `buffer` (all of it when `final`); return the bytes and
    physical lines consumed. `line` is the file line `buffer` starts on."""
    data = np.frombuffer(buffer, dtype=np.uint8)
    quoted = np.logical_xor.accumulate(data == _QUOTE) if _QUOTE in buffer else np.zeros(len(data), bool)
    lf, cr = data == _LF, data == _CR
    line_end = lf.copy()
    line_end[:-1] |= cr[:-1] & ~lf[1:]  # a lone CR ends a line too
    if final and len(data):
        line_end[-1] |= cr[-1]
    physical = np.flatnonzero(line_end)
    row_end = np.flatnonzero(line_end & ~quoted)
    if final and (not len(row_end) or row_end[-1] < len(data) - 1):
        if quoted[-1]:
            raise InputError(
                path,
                "guillemet ouvert jamais refermé",
                line=line + int(np.searchsorted(physical, row_end[-1] + 1 if len(row_end) else 0)),
                fix="réparez ou téléchargez à nouveau le fichier",
            )
        row_end = np.append(row_end, len(data))  # last row without a line break
    if not len(row_end):
        return 0, 0
    row_start = np.concatenate(([0], row_end[:-1] + 1))
    separators = np.flatnonzero((data == sep) & ~quoted)
    fields = np.searchsorted(separators, row_end) - np.searchsorted(separators, row_start) + 1
    length = row_end - row_start
    blank = (length == 0) | ((length == 1) & cr[np.minimum(row_start, len(data) - 1)])
    bad = np.flatnonzero((fields != expected) & ~blank)
    if len(bad):
        row = int(bad[0])
        raise InputError(
            path,
            f"{int(fields[row])} champs au lieu des {expected} de l'en-tête (séparateur {chr(sep)!r})",
            line=line + int(np.searchsorted(physical, row_start[row])),
            fix=f"chaque ligne doit avoir autant de {chr(sep)!r} que l'en-tête : un séparateur en trop ou en moins "
            "décale les valeurs ; réparez la ligne ou reprenez le fichier original de l'éditeur",
        )
    consumed = min(int(row_end[-1]) + 1, len(data))
    return consumed, int(np.searchsorted(physical, consumed))


def require_columns(path: Path, columns: Iterable[str], required: Iterable[str], what: str) -> None:
    """Refuse a file missing one of `required`; `what` completes « le fichier … » in the message."""
    present = set(columns)
    missing = [c for c in required if c not in present]
    if missing:
        raise InputError(
            path,
            f"colonne(s) absente(s) {missing}, attendue(s) dans le fichier {what} ; trouvées : {sorted(present)[:20]}",
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
    into a missing score no one asked for, and an infinite value (`inf`, or `1e400` beyond the
    float range) would poison every sum and rate computed from it.
    """
    text = values.astype("string").str.strip().str.replace("\u00a0", "", regex=False)
    text = text.str.replace(" ", "", regex=False)
    missing = text.isna() | text.str.lower().isin(MISSING_MARKERS)
    normalised = text.where(~missing).str.replace(",", ".", regex=False)
    numbers = pd.to_numeric(normalised, errors="coerce")
    bad = (numbers.isna() | np.isinf(numbers)) & ~missing  # `inf`, `1e400`: finite numbers only
    if bad.any():
        pos = int(bad.to_numpy().nonzero()[0][0])
        raise InputError(
            path,
            f"{int(bad.sum())} valeur(s) non numérique(s) ou infinie(s), la première {values.iloc[pos]!r}",
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
        check_sheet(path, name)
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


# Spreadsheets are checked before calamine loads them: it allocates the whole rectangle from A1 to
# the last cell, so one cell at XFD1048576 asks for 512 GB and kills the process.
MAX_SHEET_ROWS = 2_000_000
MAX_SHEET_CELLS = 20_000_000  # rows × columns; a national base-ic sheet (~50 000 IRIS × ~120) has ~6 million
MAX_SHEET_XML_BYTES = 2 << 30
_XML_BLOCK = 1 << 20
_XML_OVERLAP = 1 << 16  # a cell cut between two blocks is seen whole in the next one
_DIMENSION = re.compile(rb'<(?:\w+:)?dimension\b[^>]*?\sref="(?:[A-Z]+\d+:)?([A-Z]{1,4})(\d{1,10})"')
_ROW_REF = re.compile(rb'r="(\d{1,10})"')  # `<row r="7">`: digits only
_CELL_REF = re.compile(rb'r="([A-Z]{1,4})(\d{1,10})"')  # `<c r="D7">`
_FORMULA_WITHOUT_VALUE = re.compile(
    rb"<(?:\w+:)?c\b([^>]*)(?<!/)>\s*<(?:\w+:)?f\b[^>]*?(?:/>|>[^<]*</(?:\w+:)?f>)\s*"
    rb"(?:<(?:\w+:)?v\s*/>|<(?:\w+:)?v>\s*</(?:\w+:)?v>)?\s*</(?:\w+:)?c>"
)


def _beyond(value: str, low: str, high: str) -> str:
    """Regex of the strings of `low`–`high` characters greater than `value` (same width or
    wider): lets a block be searched for a cell beyond the extent seen, without listing them."""
    cls = f"[{low}-{high}]"
    if not value:
        return f"{cls}+"
    options = [f"{cls}{{{len(value) + 1},}}"]
    for i, char in enumerate(value):
        if char < high:
            options.append(f"{value[:i]}[{chr(ord(char) + 1)}-{high}]{cls * (len(value) - i - 1)}")
    return "|".join(options)


def _column_letters(number: int) -> str:
    letters = ""
    while number:
        number, rest = divmod(number - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def _column_number(letters: str) -> int:
    number = 0
    for letter in letters:
        number = number * 26 + ord(letter) - 64
    return number


def check_sheet(path: Path, sheet: str | None = None) -> None:
    """Refuse an xlsx sheet too large to load, or whose formulas carry no computed value.

    The size is read from the sheet's XML (its declared dimension, then every cell reference,
    since a dimension can lie) without loading it. A formula without a cached value is what a
    program that writes formulas but never computes them leaves: every reader sees an empty
    cell, indistinguishable from a suppressed value. Old `.xls` files are not checked: their
    format caps a sheet at 65 536 × 256 cells. Call it before any `get_sheet_by_name`.
    """
    path = Path(path)
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as archive:
            for member in _sheet_members(archive, sheet):
                with archive.open(member) as stream:
                    _scan_sheet_xml(path, stream)
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, KeyError) as exc:
        raise InputError(path, f"classeur illisible ({exc})", fix="téléchargez le fichier à nouveau") from exc


def _sheet_members(archive: zipfile.ZipFile, sheet: str | None) -> list[str]:
    """The XML part of `sheet` (the first sheet when None); every worksheet when the workbook's
    own index cannot be followed."""
    names = archive.namelist()
    every = [n for n in names if re.fullmatch(r"(?i)xl/worksheets/[^/]+\.xml", n)]
    try:
        index = [archive.getinfo(n) for n in ("xl/workbook.xml", "xl/_rels/workbook.xml.rels")]
        if any(info.file_size > _XML_BLOCK * 16 for info in index):  # an index is a few kilobytes
            return every
        book, rels = (ElementTree.fromstring(archive.read(info)) for info in index)
    except (KeyError, ElementTree.ParseError):
        return every
    sheets = [e for e in book.iter() if e.tag.rsplit("}", 1)[-1] == "sheet"]
    chosen = next((e for e in sheets if sheet is None or e.get("name") == sheet), None)
    rid = None if chosen is None else next((v for k, v in chosen.attrib.items() if k.rsplit("}", 1)[-1] == "id"), None)
    target = next((e.get("Target", "") for e in rels.iter() if e.get("Id") == rid and rid), "")
    member = target.lstrip("/") if target.startswith("/") else posixpath.normpath(posixpath.join("xl", target))
    return [member] if target and member in names else every


def _scan_sheet_xml(path: Path, stream) -> None:
    """Extent, cell count and formulas of a sheet's XML, read by blocks. Each block is searched
    for a reference beyond the extent seen so far and only then listed cell by cell, which keeps
    the scan several times faster than loading the sheet."""
    rows = columns = cells = total = 0
    tail = b""
    while block := stream.read(_XML_BLOCK):
        text = tail + block
        if not total:
            _check_dimension(path, text)
        total += len(block)
        cells += block.count(b"<c ") + block.count(b"<c>")
        rows = max([rows, *map(int, _ROW_REF.findall(text))])
        wider = _beyond(_column_letters(columns), "A", "Z")
        deeper = _beyond(str(rows), "0", "9")
        if re.search(f'r="(?:(?:{wider})\\d|[A-Z]{{1,4}}(?:{deeper})")'.encode(), text):
            for letters, digits in set(_CELL_REF.findall(text)):
                rows, columns = max(rows, int(digits)), max(columns, _column_number(letters.decode()))
        _check_extent(path, rows, columns, cells, total)
        if b"<f" in text or b":f" in text:
            _check_formulas(path, text)
        tail = text[-_XML_OVERLAP:]


def _check_dimension(path: Path, head: bytes) -> None:
    match = _DIMENSION.search(head)
    if match:
        rows, columns = int(match.group(2)), _column_number(match.group(1).decode())
        _check_extent(path, rows, columns, 0, 0, declared=f"{match.group(1).decode()}{rows}")


def _check_extent(path: Path, rows: int, columns: int, cells: int, size: int, declared: str = "") -> None:
    area = rows * columns
    if rows <= MAX_SHEET_ROWS and area <= MAX_SHEET_CELLS and cells <= MAX_SHEET_CELLS and size <= MAX_SHEET_XML_BYTES:
        return
    where = f"dimension déclarée jusqu'à {declared}" if declared else f"{rows} lignes × {columns} colonnes"
    raise InputError(
        path,
        f"feuille démesurée ({where}, {max(area, cells)} cellules ; au plus {MAX_SHEET_ROWS} lignes et "
        f"{MAX_SHEET_CELLS} cellules) : la charger épuiserait la mémoire",
        fix="une cellule isolée très loin (ex. XFD1048576) agrandit la feuille : supprimez les lignes et colonnes "
        "vides en fin de feuille, ou reprenez le classeur original de l'éditeur",
    )


def _check_formulas(path: Path, xml: bytes) -> None:
    match = _FORMULA_WITHOUT_VALUE.search(xml)
    if match is None:
        return
    ref = re.search(rb'\sr="([A-Z]+)(\d+)"', match.group(1))
    column, row = (ref.group(1).decode(), int(ref.group(2))) if ref else (None, None)
    cell = f"{column}{row}" if ref else "?"
    raise InputError(
        path,
        f"la cellule {cell} contient une formule sans valeur calculée : elle se lirait vide, comme un secret",
        line=row,
        column=column,
        fix="ouvrez le classeur dans un tableur, laissez-le recalculer puis enregistrez-le (ou exportez-le en CSV), "
        "ou reprenez le fichier original de l'éditeur",
    )

"""Fast table writers (CSV, XLSX, JSON rows), vectorised in DuckDB.

A national run writes tens of millions of cells; doing that cell by cell in Python (pandas'
CSV writer, xlsxwriter, GDAL's GeoJSON attributes) was most of its time. DuckDB formats whole
columns at once and writes numbers in their shortest exact form (0.1, not
0.10000000000000001). Missing values (NaN, None, NA) are written as empty cells / `null`.

The formatted rows never become Python strings: DuckDB streams them in batches of Arrow text
whose bytes, already ending with their line break, go to the files as they are. Each column is
looked at once first (`_profile`), so that rows only pay for the quoting, escaping and formula
neutralisation that column can need.
"""

from __future__ import annotations

import zipfile
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from isal import isal_zlib

# One DuckDB thread per table: these queries are string building that scales badly, and a
# second thread roughly doubled their CPU time for no shorter wall time on a busy 2-core
# machine (benchmarks: the publication step writes several tables and layers at once).
_THREADS = 1
# Rows per streamed batch: a few MB of text per output, whatever the table's size.
_BATCH_ROWS = 2048


def arrow_table(frame: pd.DataFrame) -> pa.Table:
    """Attributes as Arrow (geometry and index dropped; NaN becomes null, as published)."""
    geometry = getattr(frame, "_geometry_column_name", None)
    attributes = pd.DataFrame(frame.drop(columns=[geometry] if geometry in frame.columns else []))
    return pa.Table.from_pandas(attributes, preserve_index=False)


def _connect(table: pa.Table) -> duckdb.DuckDBPyConnection:
    # A small streaming buffer: by default DuckDB formats far ahead of the reader, and a
    # national table's sheet rows then sit in memory (≈ 200 MB more for the IRIS).
    con = duckdb.connect(config={"threads": _THREADS})
    con.execute("SET streaming_buffer_size = '16KB'")
    con.register("t", table)
    return con


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def json_rows(frame: pd.DataFrame, decimals: int | None = None) -> list[str]:
    """One JSON object per row, keys in column order (the GeoJSON `properties`); floating
    point numbers rounded to `decimals` when given."""
    return json_text(frame, decimals).to_pylist()


def json_text(frame: pd.DataFrame, decimals: int | None = None) -> pa.ChunkedArray:
    """`json_rows` as Arrow text, batch by batch as DuckDB makes it (no Python string per row)."""
    table = arrow_table(frame)
    if table.num_columns == 0:
        return pa.chunked_array([pa.array(["{}"] * len(frame), pa.string())], type=pa.string())
    columns = ", ".join(
        f"round({_quote(f.name)}, {int(decimals)}) AS {_quote(f.name)}"
        if decimals is not None and pa.types.is_floating(f.type)
        else _quote(f.name)
        for f in table.schema
    )
    with _connect(table) as con:
        reader = con.sql(f"SELECT to_json(r)::VARCHAR AS j FROM (SELECT {columns} FROM t) r").to_arrow_reader(
            _BATCH_ROWS
        )
        chunks = [batch.column(0) for batch in reader]
    kind = chunks[0].type if chunks else pa.string()
    return pa.chunked_array(chunks, type=kind)


# --- XLSX -----------------------------------------------------------------------------------
# The smallest workbook Excel, LibreOffice, openpyxl and calamine all open: one sheet, inline
# strings (so codes stay text with their leading zeros), numbers and booleans typed.

_CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/xl/workbook.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
    '<Override PartName="/xl/worksheets/sheet1.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
    '<Override PartName="/xl/styles.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>'
    "</Types>"
)
_ROOT_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
    'officeDocument" Target="xl/workbook.xml"/></Relationships>'
)
_WORKBOOK_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
    'worksheet" Target="worksheets/sheet1.xml"/>'
    '<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
    'styles" Target="styles.xml"/></Relationships>'
)
_STYLES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<styleSheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
    '<fonts count="2"><font><sz val="11"/><name val="Calibri"/></font>'
    '<font><b/><sz val="11"/><name val="Calibri"/></font></fonts>'
    '<fills count="2"><fill><patternFill patternType="none"/></fill>'
    '<fill><patternFill patternType="gray125"/></fill></fills>'
    '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
    '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
    '<cellXfs count="2"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
    '<xf numFmtId="0" fontId="1" fillId="0" borderId="0" xfId="0" applyFont="1"/></cellXfs>'
    '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
    "</styleSheet>"
)
_SHEET_HEAD = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
    '<dimension ref="{dimension}"/><sheetViews><sheetView workbookViewId="0"><pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" '
    'state="frozen"/></sheetView></sheetViews><sheetData>'
)
# Characters XML 1.0 forbids (they cannot appear in a cell, even escaped).
_XML_FORBIDDEN = "[\\x00-\\x08\\x0B\\x0C\\x0E-\\x1F]"
# What makes a CSV field quoted: the separator, a quote or a line break.
_CSV_SPECIAL = '[;"\n\r]'
_XML_SPECIAL = "[&<>]"
# Text a spreadsheet would run as a formula (OWASP "CSV injection"): `=`, `+`, `-`, `@`, tab or
# carriage return first. Plain numbers written as text ("-3.5") are not formulas: kept as they are.
_FORMULA_START = "^[=+@\\t\\r-]"
_PLAIN_NUMBER = "[+-]?[0-9]+([.,][0-9]+)?"


def column_letter(index: int) -> str:
    """0 → A, 25 → Z, 26 → AA (spreadsheet column names)."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def _escape(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _is_number(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)


def _is_string(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)


@dataclass(frozen=True)
class _Column:
    """A column and what its values may need when framed; False only when proven by a look at
    every value, so that a column left True merely pays for the general expression."""

    name: str  # the column in the registered table, quoted for SQL
    text: str  # its values as text (`value` below), NULL when missing
    kind: pa.DataType
    value: str = ""  # how `text` is computed; `CAST(name AS VARCHAR)` when empty
    nulls: bool = True
    non_finite: bool = True  # floating point: ±inf or NaN
    csv_quote: bool = True  # text: separator, quote or line break
    xml_escape: bool = True  # text: & < >
    xml_forbidden: bool = True  # text: characters XML 1.0 forbids
    formula: bool = True  # text: starts like a formula


# Bytes that make a text column need more than its plain value: 1 CSV quoting, 2 XML escaping,
# 4 XML-forbidden characters (UTF-8 puts no byte under 0x80 inside a multi-byte character, so
# looking at bytes is exact); 8 a formula's first character.
_NEEDS = np.zeros(256, dtype=np.uint8)
_NEEDS[list(b';"\n\r')] |= 1
_NEEDS[list(b"&<>")] |= 2
_NEEDS[[*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20)]] |= 4
_FORMULA_FIRST = np.zeros(256, dtype=bool)
_FORMULA_FIRST[list(b"=+@\t\r-")] = True


def _text_needs(strings: pa.Array) -> tuple[int, bool]:
    """The `_NEEDS` bits of the bytes of a string array, and whether a value starts like a
    formula: one look at its data buffer. Bytes under missing values count too (a column then
    takes the general expression, which is always right)."""
    if not (pa.types.is_string(strings.type) or pa.types.is_large_string(strings.type)):
        strings = strings.cast(pa.large_string())
    data = np.frombuffer(text_bytes(strings), dtype=np.uint8)
    offsets = _offsets(strings)
    starts = offsets[:-1][offsets[:-1] < offsets[1:]] - offsets[0]  # first byte of every non-empty value
    return int(np.bitwise_or.reduce(_NEEDS[data])) if data.size else 0, bool(_FORMULA_FIRST[data[starts]].any())


def _profile(name: str, text: str, values: pa.ChunkedArray) -> _Column:
    """What the values of a column may need (see `_Column`), from one look at its bytes."""
    kind = values.type
    column = _Column(_quote(name), text, kind, nulls=values.null_count > 0)
    if pa.types.is_floating(kind):
        column = replace(column, non_finite=pc.all(pc.is_finite(values)).as_py() is False)
        return replace(column, value=_double_text(column.name, values)) if pa.types.is_float64(kind) else column
    if pa.types.is_dictionary(kind) and _is_string(kind.value_type):
        # Every value is one of the dictionary's: looking at the dictionaries is enough.
        chunks = [c.dictionary for c in values.chunks]
    elif _is_string(kind):
        chunks = values.chunks
    else:
        return column  # other types: their text is DuckDB's, not looked at here
    needs, formula = 0, False
    for chunk in chunks:
        bits, starts_like_formula = _text_needs(chunk)
        needs, formula = needs | bits, formula or starts_like_formula
    return replace(
        column, csv_quote=bool(needs & 1), xml_escape=bool(needs & 2), xml_forbidden=bool(needs & 4), formula=formula
    )


# DOUBLE to text: DuckDB's CAST (the shortest exact form, as Python's repr) formats each
# value through a format string; its JSON writer prints the very same text about twice as fast
# in the range where both use fixed notation (zero, and 1e-4 <= |x| < 1e16; outside it they
# write exponents differently, and NaN, ±inf differently). tests/test_tables.py checks the two
# agree there.
_JSON_RANGE = "({x} = 0 OR abs({x}) >= 1e-4::DOUBLE AND abs({x}) < 1e16::DOUBLE)"


def _double_text(name: str, values: pa.ChunkedArray) -> str:
    size = pc.abs(values)
    in_range = pc.or_(pc.equal(values, 0.0), pc.and_(pc.greater_equal(size, 1e-4), pc.less(size, 1e16)))
    if pc.all(in_range).as_py() is not False:  # every value (or no value) in range
        return f"to_json({name})::VARCHAR"
    if not pc.any(in_range).as_py():
        return f"CAST({name} AS VARCHAR)"
    return f"CASE WHEN {_JSON_RANGE.format(x=name)} THEN to_json({name})::VARCHAR ELSE CAST({name} AS VARCHAR) END"


def _missing_as_empty(expr: str, column: _Column) -> str:
    return f"coalesce({expr}, '')" if column.nulls else expr


def _csv_framed(text: str, column: _Column) -> str:
    """A CSV field from text (`text`, NULL when missing): empty when missing, text quoted when
    it holds the separator, a quote or a line break."""
    if not column.csv_quote:
        return _missing_as_empty(text, column)
    return (
        f"CASE WHEN {text} IS NULL THEN '' WHEN regexp_matches({text}, '{_CSV_SPECIAL}') "
        f"THEN concat('\"', replace({text}, '\"', '\"\"'), '\"') ELSE {text} END"
    )


def _csv_field_sql(column: _Column) -> str:
    if pa.types.is_boolean(column.kind) or _is_number(column.kind):
        return _missing_as_empty(column.text, column)
    return _csv_framed(column.text, column)


def _excel_field_sql(column: _Column) -> str:
    """A field of the CSV for French Excel: decimal comma, VRAI/FAUX, and text that would start a
    formula prefixed with an apostrophe (shown as text, never evaluated). Numbers are typed, so
    never prefixed: -3.5 is written -3,5 and read back as a number."""
    text = column.text
    if pa.types.is_boolean(column.kind):
        return f"CASE WHEN {column.name} THEN 'VRAI' WHEN NOT {column.name} THEN 'FAUX' ELSE '' END"
    if pa.types.is_integer(column.kind):
        return _missing_as_empty(text, column)
    if _is_number(column.kind):
        return _missing_as_empty(f"replace({text}, '.', ',')", column)
    if column.formula:
        text = (
            f"CASE WHEN regexp_matches({text}, '{_FORMULA_START}') AND NOT regexp_full_match({text}, "
            f"'{_PLAIN_NUMBER}') THEN concat('''', {text}) ELSE {text} END"
        )
    # The apostrophe is no CSV special character: the text needs quoting as the value did.
    return _csv_framed(text, column)


class _Literal(str):
    """Constant text among the parts of a row (`_concat`), as opposed to an SQL expression."""


def _concat(parts: list[str]) -> str:
    """One variadic `concat` of expressions and `_Literal`s, neighbouring literals merged: every
    cell that needs no CASE is spliced into its row rather than built as a string of its own."""
    merged: list[str] = []
    for part in parts:
        if isinstance(part, _Literal) and merged and isinstance(merged[-1], _Literal):
            merged[-1] = _Literal(merged[-1] + part)
        else:
            merged.append(part)
    sql = (f"'{p.replace(chr(39), chr(39) * 2)}'" if isinstance(p, _Literal) else p for p in merged)
    return f"concat({', '.join(sql)})"


def _cell_parts(column: _Column, letter: str) -> list[str]:
    """A spreadsheet cell (`rn` = the row number), as parts of its row; missing values have no
    cell, nor have non-finite numbers (no spreadsheet form): those cells are a CASE, NULL then."""
    name, text, start = column.name, column.text, _Literal(f'<c r="{letter}')
    if pa.types.is_boolean(column.kind):
        true, false = (_concat([start, "rn", _Literal(f'" t="b"><v>{v}</v></c>')]) for v in (1, 0))
        return [f"CASE WHEN {name} THEN {true} WHEN NOT {name} THEN {false} END"]
    if _is_number(column.kind):
        parts = [start, "rn", _Literal('"><v>'), text, _Literal("</v></c>")]
        if pa.types.is_floating(column.kind) and column.non_finite:
            return [f"CASE WHEN isfinite({name}) THEN {_concat(parts)} END"]
    else:
        escaped = text
        if column.xml_forbidden:
            escaped = f"regexp_replace({escaped}, '{_XML_FORBIDDEN}', '', 'g')"
        if column.xml_escape:
            escaped = f"replace(replace(replace({escaped}, '&', '&amp;'), '<', '&lt;'), '>', '&gt;')"
        parts = [start, "rn", _Literal('" t="inlineStr"><is><t>'), escaped, _Literal("</t></is></c>")]
    return [f"CASE WHEN {text} IS NOT NULL THEN {_concat(parts)} END"] if column.nulls else parts


def write_table(
    frame: pd.DataFrame,
    *,
    csv: Path | None = None,
    xlsx: Path | None = None,
    sheet: str = "table",
    excel_csv: Path | None = None,
) -> None:
    """The CSV and/or the XLSX of one table, from a single formatting pass: DuckDB turns every
    value into text once (its shortest exact form for numbers), then frames it as a CSV field
    and as a spreadsheet cell. Rows are built with variadic `concat`/`concat_ws` rather than
    chained `||` (which would copy the growing row once per column), end with their line break,
    and stream to the files batch by batch.

    CSV: UTF-8, `;` separator, `.` decimals, header, `true`/`false`, missing values empty.
    XLSX: one sheet, a bold and frozen header row; text columns are text cells (leading zeros
    and 2A/2B survive, and text is never run as a formula), numbers numeric cells, booleans
    boolean cells, missing values no cell.
    Excel CSV (for a double click in French Excel): UTF-8 with BOM, `;`, `,` decimals, VRAI/FAUX,
    CRLF line ends, and text that would start a formula prefixed with `'` (`_excel_field_sql`).
    """
    table = arrow_table(frame)
    names = [str(n) for n in table.column_names]
    # Columns renamed c0, c1… in DuckDB: any name is safe, and __row cannot clash.
    registered = pa.Table.from_arrays(
        [*table.columns, pa.array(np.arange(2, table.num_rows + 2, dtype="int64"))],
        names=[*(f"c{i}" for i in range(len(names))), "__row"],
    )
    columns = [_profile(f"c{i}", f"v{i}", table.column(i)) for i in range(len(names))]
    outputs: list[str] = []
    if csv is not None:
        fields = ", ".join(_csv_field_sql(c) for c in columns)
        outputs.append(f"concat(concat_ws(';', {fields or repr('')}), chr(10))")
    if excel_csv is not None:
        fields = ", ".join(_excel_field_sql(c) for c in columns)
        outputs.append(f"concat(concat_ws(';', {fields or repr('')}), chr(13), chr(10))")
    if xlsx is not None:
        cells = [part for i, c in enumerate(columns) for part in _cell_parts(c, column_letter(i))]
        outputs.append(_concat([_Literal('<row r="'), "rn", _Literal('">'), *cells, _Literal("</row>")]))
    if not outputs:
        return
    texts = "".join(f", {c.value or f'CAST({c.name} AS VARCHAR)'} AS {c.text}" for c in columns)
    # No ORDER BY: DuckDB keeps the registered table's order (preserve_insertion_order), and
    # a sort would hold every formatted row in memory.
    query = f"SELECT {', '.join(outputs)} FROM (SELECT *, __row::VARCHAR AS rn{texts} FROM t)"
    with _connect(registered) as con, ExitStack() as files:
        batches = con.sql(query).to_arrow_reader(_BATCH_ROWS)  # a wrong query fails before any file opens
        sinks = _open_outputs(files, csv, excel_csv, xlsx, sheet, names, table.num_rows)
        for batch in batches:
            for sink, values in zip(sinks, batch.columns):
                if not pa.types.is_string(values.type):  # as DuckDB exports text by default
                    values = values.cast(pa.large_string())
                sink.write(text_bytes(values))
        if xlsx is not None:
            sinks[-1].write(b"</sheetData></worksheet>")


def _open_outputs(
    files: ExitStack,
    csv: Path | None,
    excel_csv: Path | None,
    xlsx: Path | None,
    sheet: str,
    names: list[str],
    rows: int,
) -> list[BinaryIO]:
    """The streams `write_table`'s rows go to, in its column order (CSV, Excel CSV, sheet),
    each after its header; closed by `files`."""
    header = ";".join(f'"{n.replace(chr(34), chr(34) * 2)}"' if any(ch in n for ch in ';"\n\r') else n for n in names)
    sinks: list[BinaryIO] = []
    for path, head in ((csv, f"{header}\n"), (excel_csv, f"\ufeff{header}\r\n")):  # the Excel one with a BOM
        if path is not None:
            sinks.append(files.enter_context(open(path, "wb")))
            sinks[-1].write(head.encode("utf-8"))
    if xlsx is not None:
        archive = files.enter_context(zipfile.ZipFile(xlsx, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1))
        sinks.append(files.enter_context(_open_sheet(archive, sheet, names, rows)))
    return sinks


def _offsets(values: pa.Array) -> np.ndarray:
    """Where each value of a string or large string array starts in its data buffer, and where
    the last one ends."""
    width = np.int64 if pa.types.is_large_string(values.type) else np.int32
    return np.frombuffer(
        values.buffers()[1], dtype=width, count=len(values) + 1, offset=values.offset * width(0).itemsize
    )


def text_bytes(values: pa.Array) -> memoryview:
    """The UTF-8 bytes of every value of a string or large string array, end to end: Arrow keeps
    them so in its data buffer, from the first value's offset to the last's end (with the bytes
    under missing values, if any: the rows written are never missing)."""
    data = values.buffers()[2]
    if data is None:
        return memoryview(b"")
    offsets = _offsets(values)
    return memoryview(data)[int(offsets[0]) : int(offsets[-1])]


def _open_sheet(archive: zipfile.ZipFile, sheet: str, names: list[str], rows: int) -> BinaryIO:
    """Every part of the workbook but the sheet's rows; the sheet's stream, open after its header
    row (the caller writes the rows, then closes the sheet data)."""
    header = "".join(
        f'<c r="{column_letter(i)}1" s="1" t="inlineStr"><is><t>{_escape(n)}</t></is></c>' for i, n in enumerate(names)
    )
    sheet_name = _escape(sheet[:31]).replace('"', "&quot;")
    workbook = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
        'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
        f'<sheets><sheet name="{sheet_name}" sheetId="1" r:id="rId1"/></sheets></workbook>'
    )
    archive.writestr("[Content_Types].xml", _CONTENT_TYPES)
    archive.writestr("_rels/.rels", _ROOT_RELS)
    archive.writestr("xl/workbook.xml", workbook)
    archive.writestr("xl/_rels/workbook.xml.rels", _WORKBOOK_RELS)
    archive.writestr("xl/styles.xml", _STYLES)
    stream = archive.open("xl/worksheets/sheet1.xml", "w", force_zip64=True)
    _fast_deflate(stream)
    # The dimension lets streaming readers pad rows whose last cells are blank.
    dimension = f"A1:{column_letter(max(len(names), 1) - 1)}{rows + 1}"
    stream.write(_SHEET_HEAD.format(dimension=dimension).encode("utf-8"))
    stream.write(f'<row r="1">{header}</row>'.encode())
    return stream


def _fast_deflate(stream: BinaryIO) -> None:
    """Deflate the sheet with ISA-L (level 1: three times zlib's speed at its level 1, and
    smaller files): a national IRIS sheet is 250 MB of XML, and zlib spent a second on it.
    zipfile's member writer takes any compressor with zlib's `compressobj` interface, kept in
    its `_compressor` (CPython 3.11 to 3.13); zlib stays if that ever changes."""
    if getattr(stream, "_compressor", None) is not None:
        stream._compressor = isal_zlib.compressobj(1, isal_zlib.DEFLATED, -15)


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """CSV UTF-8, `;` separator, `.` decimals, header; text quoted only where it must be."""
    write_table(frame, csv=path)


def write_xlsx(frame: pd.DataFrame, path: Path, sheet: str) -> None:
    """One-sheet workbook (see `write_table`)."""
    write_table(frame, xlsx=path, sheet=sheet)

"""Fast table writers (CSV, XLSX, JSON rows), vectorised in DuckDB.

A national run writes tens of millions of cells; doing that cell by cell in Python (pandas'
CSV writer, xlsxwriter, GDAL's GeoJSON attributes) was most of its time. DuckDB formats whole
columns at once on every core and writes numbers in their shortest exact form (0.1, not
0.10000000000000001). Missing values (NaN, None, NA) are written as empty cells / `null`.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa


def arrow_table(frame: pd.DataFrame) -> pa.Table:
    """Attributes as Arrow (geometry and index dropped; NaN becomes null, as published)."""
    geometry = getattr(frame, "_geometry_column_name", None)
    attributes = pd.DataFrame(frame.drop(columns=[geometry] if geometry in frame.columns else []))
    return pa.Table.from_pandas(attributes, preserve_index=False)


def _connect(table: pa.Table) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.register("t", table)
    return con


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def json_rows(frame: pd.DataFrame, decimals: int | None = None) -> list[str]:
    """One JSON object per row, keys in column order (the GeoJSON `properties`); floating
    point numbers rounded to `decimals` when given."""
    table = arrow_table(frame)
    if table.num_columns == 0:
        return ["{}"] * len(frame)
    columns = ", ".join(
        f"round({_quote(f.name)}, {int(decimals)}) AS {_quote(f.name)}"
        if decimals is not None and pa.types.is_floating(f.type)
        else _quote(f.name)
        for f in table.schema
    )
    with _connect(table) as con:
        rows = con.sql(f"SELECT to_json(r)::VARCHAR FROM (SELECT {columns} FROM t) r")
        return rows.to_arrow_table().column(0).to_pylist()


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


def _sql_escape(expr: str) -> str:
    return (
        f"replace(replace(replace(regexp_replace({expr}, '{_XML_FORBIDDEN}', '', 'g'), "
        "'&', '&amp;'), '<', '&lt;'), '>', '&gt;')"
    )


def _is_number(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)


def _csv_field_sql(text: str, kind: pa.DataType) -> str:
    """A CSV field from a value's text (`text`, NULL when missing): empty when missing, text
    quoted when it holds the separator, a quote or a line break."""
    if pa.types.is_boolean(kind) or _is_number(kind):
        return f"coalesce({text}, '')"
    return (
        f"CASE WHEN {text} IS NULL THEN '' WHEN regexp_matches({text}, '[;\"\n\r]') "
        f"THEN concat('\"', replace({text}, '\"', '\"\"'), '\"') ELSE {text} END"
    )


# Text a spreadsheet would run as a formula (OWASP "CSV injection"): `=`, `+`, `-`, `@`, tab or
# carriage return first. Plain numbers written as text ("-3.5") are not formulas: kept as they are.
_FORMULA_START = "^[=+@\\t\\r-]"
_PLAIN_NUMBER = "[+-]?[0-9]+([.,][0-9]+)?"


def _excel_field_sql(text: str, kind: pa.DataType) -> str:
    """A field of the CSV for French Excel: decimal comma, VRAI/FAUX, and text that would start a
    formula prefixed with an apostrophe (shown as text, never evaluated). Numbers are typed, so
    never prefixed: -3.5 is written -3,5 and read back as a number."""
    if pa.types.is_boolean(kind):
        return f"CASE {text} WHEN 'true' THEN 'VRAI' WHEN 'false' THEN 'FAUX' ELSE '' END"
    if _is_number(kind):
        return f"coalesce(replace({text}, '.', ','), '')"
    safe = (
        f"CASE WHEN regexp_matches({text}, '{_FORMULA_START}') AND NOT regexp_full_match({text}, "
        f"'{_PLAIN_NUMBER}') THEN concat('''', {text}) ELSE {text} END"
    )
    return _csv_field_sql(safe, pa.string())


def _cell_sql(text: str, letter: str, kind: pa.DataType) -> str:
    """A spreadsheet cell from a value's text (`text`; `rn` = the row number); NULL (no cell)
    when the value is missing. Non-finite numbers have no spreadsheet form: no cell either."""
    if pa.types.is_boolean(kind):
        return (
            f"CASE WHEN {text} IS NOT NULL THEN concat('<c r=\"{letter}', rn, '\" t=\"b\"><v>', "
            f"CASE WHEN {text} = 'true' THEN '1' ELSE '0' END, '</v></c>') END"
        )
    if _is_number(kind):
        return (
            f"CASE WHEN {text} IS NOT NULL AND {text} NOT IN ('inf', '-inf', 'nan') "
            f"THEN concat('<c r=\"{letter}', rn, '\"><v>', {text}, '</v></c>') END"
        )
    return (
        f"CASE WHEN {text} IS NOT NULL THEN concat('<c r=\"{letter}', rn, '\" t=\"inlineStr\"><is><t>', "
        f"{_sql_escape(text)}, '</t></is></c>') END"
    )


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
    and as a spreadsheet cell. Rows and fields are built with variadic `concat`/`concat_ws`
    rather than chained `||`, which would copy the growing row once per column.

    CSV: UTF-8, `;` separator, `.` decimals, header, `true`/`false`, missing values empty.
    XLSX: one sheet, a bold and frozen header row; text columns are text cells (leading zeros
    and 2A/2B survive, and text is never run as a formula), numbers numeric cells, booleans
    boolean cells, missing values no cell.
    Excel CSV (for a double click in French Excel): UTF-8 with BOM, `;`, `,` decimals, VRAI/FAUX,
    CRLF line ends, and text that would start a formula prefixed with `'` (`_excel_field_sql`).
    """
    table = arrow_table(frame)
    names, kinds = table.column_names, [f.type for f in table.schema]
    texts = [f"v{i}" for i in range(len(names))]
    columns = [f"CAST({_quote(n)} AS VARCHAR) AS {t}" for n, t in zip(names, texts)]
    outputs = []
    if csv is not None:
        fields = ", ".join(_csv_field_sql(t, k) for t, k in zip(texts, kinds))
        outputs.append(f"concat_ws(';', {fields or repr('')}) AS csv")
    if excel_csv is not None:
        fields = ", ".join(_excel_field_sql(t, k) for t, k in zip(texts, kinds))
        outputs.append(f"concat_ws(';', {fields or repr('')}) AS excel")
    if xlsx is not None:
        cells = ", ".join(_cell_sql(t, column_letter(i), k) for i, (t, k) in enumerate(zip(texts, kinds)))
        outputs.append(f"concat('<row r=\"', rn, '\">', {cells + ', ' if cells else ''}'</row>') AS xlsx")
    # Row 1 of the sheet is the header: record i goes to row i + 2.
    numbered = table.append_column("__row", pa.array(np.arange(2, table.num_rows + 2, dtype="int64")))
    query = (
        f"SELECT {', '.join(outputs)} FROM (SELECT __row, __row::VARCHAR AS rn"
        f"{''.join(', ' + c for c in columns)} FROM t) ORDER BY __row"
    )
    with _connect(numbered) as con:
        result = con.sql(query).to_arrow_table()
    header = ";".join(f'"{n}"' if any(ch in n for ch in ';"\n\r') else n for n in map(str, names))
    if csv is not None:
        _write_lines(csv, header, result.column("csv").to_pylist(), "utf-8", "\n")
    if excel_csv is not None:
        _write_lines(excel_csv, header, result.column("excel").to_pylist(), "utf-8-sig", "\r\n")
    if xlsx is not None:
        _write_workbook(xlsx, sheet, names, result.column("xlsx").to_pylist())


def _write_lines(path: Path, header: str, lines: list[str], encoding: str, end: str) -> None:
    """Header then rows, in blocks of 8192 rows; `utf-8-sig` starts the file with the BOM."""
    with open(path, "w", encoding=encoding, newline="") as fh:
        fh.write(header + end)
        for start in range(0, len(lines), 8192):
            fh.write(end.join(lines[start : start + 8192]) + end)


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """CSV UTF-8, `;` separator, `.` decimals, header; text quoted only where it must be."""
    write_table(frame, csv=path)


def write_xlsx(frame: pd.DataFrame, path: Path, sheet: str) -> None:
    """One-sheet workbook (see `write_table`)."""
    write_table(frame, xlsx=path, sheet=sheet)


def _write_workbook(path: Path, sheet: str, names: list[str], rows: list[str]) -> None:
    header = "".join(
        f'<c r="{column_letter(i)}1" s="1" t="inlineStr"><is><t>{_escape(str(n))}</t></is></c>'
        for i, n in enumerate(names)
    )
    sheet_name = _escape(sheet[:31]).replace('"', "&quot;")
    workbook = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
        'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
        f'<sheets><sheet name="{sheet_name}" sheetId="1" r:id="rId1"/></sheets></workbook>'
    )
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr("[Content_Types].xml", _CONTENT_TYPES)
        archive.writestr("_rels/.rels", _ROOT_RELS)
        archive.writestr("xl/workbook.xml", workbook)
        archive.writestr("xl/_rels/workbook.xml.rels", _WORKBOOK_RELS)
        archive.writestr("xl/styles.xml", _STYLES)
        with archive.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as fh:
            # The dimension lets streaming readers pad rows whose last cells are blank.
            dimension = f"A1:{column_letter(max(len(names), 1) - 1)}{len(rows) + 1}"
            fh.write(_SHEET_HEAD.format(dimension=dimension).encode("utf-8"))
            fh.write(f'<row r="1">{header}</row>'.encode())
            for start in range(0, len(rows), 4096):
                fh.write("".join(rows[start : start + 4096]).encode("utf-8"))
            fh.write(b"</sheetData></worksheet>")

"""The table writers byte for byte (outputs.tables): the CSV, the French-Excel CSV, the sheet XML
and the JSON rows of hand-made tables with awkward values are pinned exactly, so that a faster
implementation cannot drift from what is published (tests/test_writers.py reads them back with
independent readers)."""

from __future__ import annotations

import zipfile

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from outputs import tables
from outputs.tables import json_rows, write_csv, write_table, write_xlsx

SHEET_HEAD = (
    b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><dimension ref="%s"/>'
    b'<sheetViews><sheetView workbookViewId="0"><pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" '
    b'state="frozen"/></sheetView></sheetViews><sheetData>'
)
PARTS = [
    "[Content_Types].xml",
    "_rels/.rels",
    "xl/workbook.xml",
    "xl/_rels/workbook.xml.rels",
    "xl/styles.xml",
    "xl/worksheets/sheet1.xml",
]


@pytest.fixture
def awkward() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "CODGEO": ["01001", "2A004", "2B033", "97411"],
            "NOM": ['A & <B> "C"; D\nE', "=SOMME(A1)", None, "-3.5"],
            "texte": ["+33 1", "@x", "\tt", "a\rb\x01c"],
            "taux": [np.nan, -0.0, 1e-7, 123456789.125],
            "reel": [0.1, np.inf, -np.inf, 1e22],
            "effectif": np.array([3, 0, -12, 2**40], dtype="int64"),
            "petit": np.array([1, 0, 7, -1], dtype="int32"),
            "expose": [True, False, True, False],
            "secret": pd.array([True, None, False, None], dtype="boolean"),
            "manque": pd.array([1, None, 3, None], dtype="Int64"),
        }
    )


def written(frame: pd.DataFrame, tmp_path, sheet: str = "t") -> tuple[bytes, bytes, dict[str, bytes]]:
    """The machine CSV, the Excel CSV and the workbook's parts, from one `write_table`."""
    paths = tmp_path / "t.csv", tmp_path / "t_excel.csv", tmp_path / "t.xlsx"
    write_table(frame, csv=paths[0], excel_csv=paths[1], xlsx=paths[2], sheet=sheet)
    with zipfile.ZipFile(paths[2]) as archive:
        parts = {name: archive.read(name) for name in archive.namelist()}
    return paths[0].read_bytes(), paths[1].read_bytes(), parts


def header_row(names: list[str]) -> bytes:
    cells = "".join(
        f'<c r="{tables.column_letter(i)}1" s="1" t="inlineStr"><is><t>{n}</t></is></c>' for i, n in enumerate(names)
    )
    return f'<row r="1">{cells}</row>'.encode()


def test_awkward_values_exact_bytes(awkward, tmp_path):
    csv, excel, parts = written(awkward, tmp_path, sheet="awk")
    header = "CODGEO;NOM;texte;taux;reel;effectif;petit;expose;secret;manque"
    assert (
        csv
        == (
            f"{header}\n"
            '01001;"A & <B> ""C""; D\nE";+33 1;;0.1;3;1;true;true;1\n'
            "2A004;=SOMME(A1);@x;-0.0;inf;0;0;false;;\n"
            "2B033;;\tt;1e-07;-inf;-12;7;true;false;3\n"
            '97411;-3.5;"a\rb\x01c";123456789.125;1e+22;1099511627776;-1;false;;\n'
        ).encode()
    )
    # BOM, CRLF, decimal comma, VRAI/FAUX; text that would start a formula gets an apostrophe,
    # a plain number written as text ("-3.5") does not.
    assert (
        excel
        == (
            f"\ufeff{header}\r\n"
            '01001;"A & <B> ""C""; D\nE";\'+33 1;;0,1;3;1;VRAI;VRAI;1\r\n'
            "2A004;'=SOMME(A1);'@x;-0,0;inf;0;0;FAUX;;\r\n"
            "2B033;;'\tt;1e-07;-inf;-12;7;VRAI;FAUX;3\r\n"
            '97411;-3.5;"a\rb\x01c";123456789,125;1e+22;1099511627776;-1;FAUX;;\r\n'
        ).encode()
    )
    assert list(parts) == PARTS
    assert parts["xl/workbook.xml"].endswith(b'<sheets><sheet name="awk" sheetId="1" r:id="rId1"/></sheets></workbook>')
    # Missing values and ±inf: no cell; XML-forbidden characters dropped; & < > escaped.
    assert parts["xl/worksheets/sheet1.xml"] == (
        SHEET_HEAD % b"A1:J5"
        + header_row(header.split(";"))
        + b'<row r="2"><c r="A2" t="inlineStr"><is><t>01001</t></is></c>'
        b'<c r="B2" t="inlineStr"><is><t>A &amp; &lt;B&gt; "C"; D\nE</t></is></c>'
        b'<c r="C2" t="inlineStr"><is><t>+33 1</t></is></c><c r="E2"><v>0.1</v></c><c r="F2"><v>3</v></c>'
        b'<c r="G2"><v>1</v></c><c r="H2" t="b"><v>1</v></c><c r="I2" t="b"><v>1</v></c><c r="J2"><v>1</v></c></row>'
        b'<row r="3"><c r="A3" t="inlineStr"><is><t>2A004</t></is></c>'
        b'<c r="B3" t="inlineStr"><is><t>=SOMME(A1)</t></is></c><c r="C3" t="inlineStr"><is><t>@x</t></is></c>'
        b'<c r="D3"><v>-0.0</v></c><c r="F3"><v>0</v></c><c r="G3"><v>0</v></c><c r="H3" t="b"><v>0</v></c></row>'
        b'<row r="4"><c r="A4" t="inlineStr"><is><t>2B033</t></is></c><c r="C4" t="inlineStr"><is><t>\tt</t></is></c>'
        b'<c r="D4"><v>1e-07</v></c><c r="F4"><v>-12</v></c><c r="G4"><v>7</v></c><c r="H4" t="b"><v>1</v></c>'
        b'<c r="I4" t="b"><v>0</v></c><c r="J4"><v>3</v></c></row>'
        b'<row r="5"><c r="A5" t="inlineStr"><is><t>97411</t></is></c><c r="B5" t="inlineStr"><is><t>-3.5</t></is></c>'
        b'<c r="C5" t="inlineStr"><is><t>a\rbc</t></is></c><c r="D5"><v>123456789.125</v></c>'
        b'<c r="E5"><v>1e+22</v></c><c r="F5"><v>1099511627776</v></c><c r="G5"><v>-1</v></c>'
        b'<c r="H5" t="b"><v>0</v></c></row>'
        b"</sheetData></worksheet>"
    )


def test_awkward_values_json_rows(awkward):
    first = (
        '{"CODGEO":"01001","NOM":"A & <B> \\"C\\"; D\\nE","texte":"+33 1","taux":null,"reel":0.1,'
        '"effectif":3,"petit":1,"expose":true,"secret":true,"manque":1}'
    )
    last = (
        '{"CODGEO":"97411","NOM":"-3.5","texte":"a\\rb\\u0001c","taux":%s,"reel":1e22,'
        '"effectif":1099511627776,"petit":-1,"expose":false,"secret":null,"manque":null}'
    )
    rows = json_rows(awkward)
    assert rows[0] == first and rows[3] == last % "123456789.125"
    assert rows[1] == (
        '{"CODGEO":"2A004","NOM":"=SOMME(A1)","texte":"@x","taux":-0.0,"reel":Infinity,'
        '"effectif":0,"petit":0,"expose":false,"secret":null,"manque":null}'
    )
    assert rows[2] == (
        '{"CODGEO":"2B033","NOM":null,"texte":"\\tt","taux":1e-7,"reel":-Infinity,'
        '"effectif":-12,"petit":7,"expose":true,"secret":false,"manque":3}'
    )
    rounded = json_rows(awkward, decimals=2)
    assert rounded[3] == last % "123456789.13" and '"taux":0.0,' in rounded[2] and rounded[0] == first


def test_empty_table_writes_headers_only(awkward, tmp_path):
    csv, excel, parts = written(awkward.iloc[:0], tmp_path)
    header = "CODGEO;NOM;texte;taux;reel;effectif;petit;expose;secret;manque"
    assert csv == f"{header}\n".encode() and excel == f"\ufeff{header}\r\n".encode()
    assert parts["xl/worksheets/sheet1.xml"] == (
        SHEET_HEAD % b"A1:J1" + header_row(header.split(";")) + b"</sheetData></worksheet>"
    )
    assert json_rows(awkward.iloc[:0]) == []


def test_text_only_table(tmp_path):
    frame = pd.DataFrame(
        {"CODE_IRIS": ["010010000", "2A0040101"], "NOM_IRIS": ["Ajaccio; centre", 'Les "Îles"'], "DEP": ["01", "2A"]}
    )
    csv, excel, parts = written(frame, tmp_path)
    assert csv == 'CODE_IRIS;NOM_IRIS;DEP\n010010000;"Ajaccio; centre";01\n2A0040101;"Les ""Îles""";2A\n'.encode()
    assert (
        excel
        == '\ufeffCODE_IRIS;NOM_IRIS;DEP\r\n010010000;"Ajaccio; centre";01\r\n2A0040101;"Les ""Îles""";2A\r\n'.encode()
    )
    assert parts["xl/worksheets/sheet1.xml"] == (
        SHEET_HEAD % b"A1:C3"
        + header_row(["CODE_IRIS", "NOM_IRIS", "DEP"])
        + '<row r="2"><c r="A2" t="inlineStr"><is><t>010010000</t></is></c>'
        '<c r="B2" t="inlineStr"><is><t>Ajaccio; centre</t></is></c><c r="C2" t="inlineStr"><is><t>01</t></is></c></row>'
        '<row r="3"><c r="A3" t="inlineStr"><is><t>2A0040101</t></is></c>'
        '<c r="B3" t="inlineStr"><is><t>Les "Îles"</t></is></c><c r="C3" t="inlineStr"><is><t>2A</t></is></c></row>'
        "</sheetData></worksheet>".encode()
    )
    assert json_rows(frame)[1] == '{"CODE_IRIS":"2A0040101","NOM_IRIS":"Les \\"Îles\\"","DEP":"2A"}'


def test_table_without_columns(tmp_path):
    frame = pd.DataFrame(index=range(2))
    csv, excel, parts = written(frame, tmp_path)
    assert csv == b"\n" and excel == b"\xef\xbb\xbf\r\n"
    assert parts["xl/worksheets/sheet1.xml"] == SHEET_HEAD % b"A1:A1" + b'<row r="1"></row></sheetData></worksheet>'
    assert json_rows(frame) == ["{}", "{}"]


def test_header_quoted_and_escaped(tmp_path):
    frame = pd.DataFrame({'a"b': [1], "x;y": ["v"], "<&>": [True]})
    csv, excel, parts = written(frame, tmp_path)
    assert csv == b'"a""b";"x;y";<&>\n1;v;true\n'
    assert excel == b'\xef\xbb\xbf"a""b";"x;y";<&>\r\n1;v;VRAI\r\n'
    assert header_row(['a"b', "x;y", "&lt;&amp;&gt;"]) in parts["xl/worksheets/sheet1.xml"]


def test_doubles_in_their_shortest_exact_form(tmp_path):
    """Every double as DuckDB's CAST writes it, which is Python's repr: the fast path (DuckDB's
    JSON writer, in the range of fixed notation) and the general one, alone or mixed in a column."""
    rng = np.random.default_rng(17)
    low, high = np.float64(1e-4).view(np.int64), np.float64(1e16).view(np.int64)
    in_range = np.concatenate(
        [
            rng.integers(low, high, 3000).view(np.float64),  # uniform over the bit patterns
            np.round(rng.uniform(0, 1000, 1000), 4),  # published rates
            rng.integers(1, 10**6, 1000) / rng.integers(1, 10**4, 1000),
            [1e-4, np.nextafter(1e16, 0), 0.0, -0.0, 1.0, 100.0, 0.1 + 0.2],
        ]
    )
    in_range[::2] *= -1
    outside = np.array([np.nextafter(1e-4, 0), 1e16, 1e-7, 5e-324, 1.7976931348623157e308, -1e22, 2.5e-300])
    frame = pd.DataFrame(
        {"fixed": in_range, "mixed": np.resize(np.concatenate([outside, in_range[:50]]), len(in_range))}
    )
    frame["outside"] = np.resize(outside, len(frame))
    write_csv(frame, tmp_path / "t.csv")
    lines = (tmp_path / "t.csv").read_text(encoding="utf-8").splitlines()[1:]
    expected = [";".join(map(repr, row)) for row in frame.itertuples(index=False)]
    assert lines == expected


def test_rows_stream_in_order_across_batches(tmp_path, monkeypatch):
    monkeypatch.setattr(tables, "_BATCH_ROWS", 7)
    n = 100
    frame = pd.DataFrame({"code": [f"{i:05d}" for i in range(n)], "x": np.arange(n) / 4})
    frame.loc[3, "x"] = np.nan
    csv, excel, parts = written(frame, tmp_path)
    values = ["" if i == 3 else repr(i / 4) for i in range(n)]
    assert csv.decode().splitlines()[1:] == [f"{i:05d};{v}" for i, v in enumerate(values)]
    assert excel.decode("utf-8-sig").split("\r\n")[1:] == [
        f"{i:05d};{v.replace('.', ',')}" for i, v in enumerate(values)
    ] + [""]
    sheet = parts["xl/worksheets/sheet1.xml"]
    assert sheet.startswith(SHEET_HEAD % f"A1:B{n + 1}".encode())
    cells = "".join(
        f'<row r="{i + 2}"><c r="A{i + 2}" t="inlineStr"><is><t>{i:05d}</t></is></c>'
        + (f'<c r="B{i + 2}"><v>{v}</v></c>' if v else "")
        + "</row>"
        for i, v in enumerate(values)
    )
    assert sheet.endswith(f"{cells}</sheetData></worksheet>".encode())
    assert len(json_rows(frame)) == n


def test_categories_and_other_types_take_duckdb_text(tmp_path):
    frame = pd.DataFrame(
        {
            "cat": pd.Categorical(["=x", None, "b"], categories=["=x", "b", "un;used"]),
            "jour": pd.to_datetime(["2020-01-01", None, "2021-05-06"]).date,
            "f32": np.array([0.1, np.nan, 2.5], dtype="float32"),
        }
    )
    csv, excel, parts = written(frame, tmp_path)
    assert csv == b"cat;jour;f32\n=x;2020-01-01;0.1\n;;\nb;2021-05-06;2.5\n"
    assert excel == b"\xef\xbb\xbfcat;jour;f32\r\n'=x;2020-01-01;0,1\r\n;;\r\nb;2021-05-06;2,5\r\n"
    assert (
        b'<c r="B2" t="inlineStr"><is><t>2020-01-01</t></is></c><c r="C2"><v>0.1</v></c>'
        in parts["xl/worksheets/sheet1.xml"]
    )


@pytest.mark.parametrize(
    ("values", "needs", "formula"),
    [
        (["abc", "01001", "Île"], 0, False),
        (["a;b"], 1, False),
        (['"'], 1, False),
        (["a\nb", "c\t\r"], 1, False),  # line breaks and tabs: allowed in XML
        (["x & y"], 2, False),
        (["a\x01"], 4, False),
        (["ok", "-1"], 0, True),
        (["ok", "", "@x"], 0, True),
        ([None, "a"], 0, False),
    ],
)
def test_text_needs_from_bytes(values, needs, formula):
    bits, starts_like_formula = tables._text_needs(pa.array(values, pa.large_string()))
    assert bits == needs
    assert starts_like_formula == formula


def test_text_needs_of_a_slice_looks_at_the_slice_only():
    values = pa.array(["=x;", "abc", "def", "<y>"], pa.string())
    assert tables._text_needs(values.slice(1, 2)) == (0, False)
    assert tables._text_needs(values.slice(0, 2)) == (1, True)


def test_xlsx_written_alone_and_csv_alone(awkward, tmp_path):
    csv, _, parts = written(awkward, tmp_path)
    write_csv(awkward, tmp_path / "alone.csv")
    write_xlsx(awkward, tmp_path / "alone.xlsx", "t")
    assert (tmp_path / "alone.csv").read_bytes() == csv
    with zipfile.ZipFile(tmp_path / "alone.xlsx") as archive:
        assert {name: archive.read(name) for name in archive.namelist()} == parts
        # the sheet, deflated by ISA-L, inflates with zlib and matches its CRC
        assert archive.getinfo("xl/worksheets/sheet1.xml").compress_type == zipfile.ZIP_DEFLATED
        assert archive.testzip() is None


def test_large_sheet_deflated_by_isal_reads_back(tmp_path):
    """A sheet of many megabytes (several deflate calls), read back by openpyxl and calamine."""
    rows = 60_000
    frame = pd.DataFrame(
        {"code": [f"{i:09d}" for i in range(rows)], "taux": np.arange(rows) / 7, "n": np.arange(rows) % 13}
    )
    path = tmp_path / "grand.xlsx"
    write_xlsx(frame, path, "grand")
    with zipfile.ZipFile(path) as archive:
        sheet = archive.getinfo("xl/worksheets/sheet1.xml")
        assert sheet.file_size > 4 << 20 and sheet.compress_size < sheet.file_size / 4
        assert archive.testzip() is None
    from python_calamine import CalamineWorkbook

    values = CalamineWorkbook.from_path(str(path)).get_sheet_by_name("grand").to_python()
    assert len(values) == rows + 1 and values[1] == ["000000000", 0.0, 0.0] and values[-1][0] == f"{rows - 1:09d}"
    assert values[-1][1] == pytest.approx((rows - 1) / 7)
    import openpyxl

    sheet = openpyxl.load_workbook(path, read_only=True)["grand"]
    last = list(sheet.iter_rows(min_row=rows + 1, max_row=rows + 1, values_only=True))[0]
    assert last == (f"{rows - 1:09d}", pytest.approx((rows - 1) / 7), (rows - 1) % 13)

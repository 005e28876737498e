"""Hostile inputs from the red-team audit ("Nothing wrong is ever published"): files that shift,
hide or inflate values, spreadsheets that exhaust memory, and servers that stall, redirect,
truncate or disguise what they send. Each is refused with a message naming the file, or read
exactly. HTTP tests use a server on 127.0.0.1 started here, with bounded loops."""

from __future__ import annotations

import gzip
import http.server
import io
import os
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pandas as pd
import py7zr
import pytest
import requests

import sources.common as common
from config.settings import SourceFile
from sources import download
from sources.common import InputError, parse_numbers, read_sheet_table, read_text_table
from sources.download import DownloadError, Fetcher, fetcher_from_settings
from sources.filosofi import read_filosofi_iris
from sources.insee_rp import read_base_ic
from tests.conftest import ROOT, write

HEADER = "IRIS;COM;TYP_IRIS;P21_POP;P21_POP65P\n"
ROW_1 = "010010000;01001;Z;100;20\n"

# --- strict readers: delimited text ---------------------------------------------------------


@pytest.mark.parametrize(
    "row,found",
    [("010020000;01002;Z;;100;30\n", 6), ("010020000;01002;Z;100\n", 4), ("010020000;01002;Z;100;30;\n", 6)],
)
@pytest.mark.parametrize("variables", [{"P_POP"}, None])
def test_row_with_a_field_too_many_or_too_few_is_refused_on_every_path(tmp_path, row, found, variables):
    path = write(tmp_path / "base-ic-evol-struct-pop-2021.CSV", HEADER + ROW_1 + row + ROW_1.replace("1", "3", 1))
    with pytest.raises(InputError) as err:
        read_base_ic(path, "evol_struct_pop", variables=variables)
    message = str(err.value)
    assert str(path) in message and "ligne 3" in message
    assert f"{found} champs au lieu des 5" in message and "correction :" in message


def test_field_count_is_checked_with_column_selection_and_quotes_respected(tmp_path):
    text = (
        'titre libre\nIRIS;LIBCOM;P21_POP\n010010000;"Saint-Jean; la Haute";5\r\n\r\n010020000;B;6\n010030000;C;7;8\n'
    )
    path = write(tmp_path / "t.csv", text)
    with pytest.raises(InputError, match=r"ligne 6 : 4 champs au lieu des 3"):
        read_text_table(path, key_column="IRIS", columns=lambda c: c in {"IRIS", "P21_POP"})
    good = write(tmp_path / "g.csv", text.rsplit("010030000", 1)[0])
    table = read_text_table(good, key_column="IRIS", columns=lambda c: c in {"IRIS", "LIBCOM"})
    assert table.frame["LIBCOM"].tolist() == ["Saint-Jean; la Haute", "B"] and table.header_line == 2


def test_unclosed_quote_is_refused_with_its_line(tmp_path):
    path = write(tmp_path / "q.csv", HEADER + ROW_1 + '010020000;01002;Z;"100;30\n' + ROW_1)
    with pytest.raises(InputError, match=r"ligne 3 : guillemet ouvert jamais refermé"):
        read_text_table(path, key_column="IRIS", columns=lambda c: c == "IRIS")


def test_field_count_check_offered_to_readers_that_parse_by_themselves(tmp_path):
    """Filosofi's long layout reads by chunks with a column filter: the same check is public."""
    path = write(tmp_path / "DS.csv", "GEO;GEO_OBJECT;OBS_VALUE\nCOM-01001;COM;12\nCOM-01002;COM;1;2\n")
    with pytest.raises(InputError, match=r"DS\.csv, ligne 3 : 4 champs au lieu des 3"):
        common.check_field_counts(path, header_line=1)
    common.check_field_counts(write(tmp_path / "ok.csv", "titre\nA;B\n1;2\n"), header_line=2)


_MEASURE = """
import resource, sys
from pathlib import Path
from sources.common import read_text_table
path = Path(sys.argv[1])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
wanted = {"IRIS", "COM", "TYP_IRIS", "P21_POP", "P21_POP65P", "C21_MEN"}
used = read_text_table(path, key_column="IRIS", columns=lambda c: c in wanted)  # a run
full = read_text_table(path, key_column="IRIS")  # fragilite validate
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(len(used.frame), len(full.frame), len(full.frame.columns), (peak - before) * 1024)
"""


def _census_file(path: Path, size: int) -> int:
    """A base-ic-like file of about `size` bytes (70 columns, INSEE's many decimals); its rows."""
    names = ["IRIS", "REG", "DEP", "COM", "LIBCOM", "LIBIRIS", "TYP_IRIS", "P21_POP", "P21_POP65P", "C21_MEN"]
    names += [f"P21_V{i:02d}" for i in range(60)]
    lines = []
    for i in range(2000):
        com = f"{1001 + i % 900:05d}"
        values = [f"{(i + 1) * 1.37 + j:.7f}"[:11] for j in range(63)]
        lines.append(";".join([f"{com}{i:04d}", "84", "01", com, "Saint-Didier", "Le Bourg", "H", *values]) + "\n")
    block = "".join(lines).encode()
    with open(path, "wb") as fh:
        fh.write((";".join(names) + "\n").encode())
        for _ in range(size // len(block) + 1):
            fh.write(block)
    return 2000 * (size // len(block) + 1)


def test_a_200_mb_census_file_is_read_in_under_twice_its_size(tmp_path):
    path = tmp_path / "base-ic-activite-residents-2021.CSV"
    rows = _census_file(path, 200_000_000)
    size = path.stat().st_size
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(path)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    used, full, columns, peak = map(int, done.stdout.split())
    assert used == full == rows and columns == 70
    assert peak <= 2 * size, f"peak {peak / 1e6:.0f} MB for a {size / 1e6:.0f} MB file"
    assert time.monotonic() - started < 60


@pytest.mark.parametrize("value", ["inf", "-inf", "Infinity", "1e400", "-1e999", "nan", "NaN"])
def test_non_finite_numbers_are_refused(tmp_path, value):
    with pytest.raises(InputError) as err:
        parse_numbers(
            pd.Series(["12,5", value]), path=tmp_path / "f.csv", column="MED", lines=[7, 8], allow_negative=True
        )
    message = str(err.value)
    assert "ligne 8, colonne 'MED'" in message and repr(value) in message and "correction :" in message


def test_infinite_census_count_is_refused_with_file_line_and_column(tmp_path):
    path = write(tmp_path / "b.csv", HEADER + ROW_1 + "010020000;01002;Z;1e400;3\n")
    with pytest.raises(InputError, match=r"b\.csv, ligne 3, colonne 'P21_POP' : .*'1e400'"):
        read_base_ic(path, "evol_struct_pop", variables={"P_POP"})


def test_header_only_or_blank_census_file_is_refused(tmp_path):
    for name, text in [("h.csv", HEADER), ("hb.csv", HEADER + "\n\n")]:
        path = write(tmp_path / name, text)
        with pytest.raises(InputError) as err:
            read_base_ic(path, "evol_struct_pop", variables={"P_POP"})
        assert str(path) in str(err.value) and "aucune ligne de données" in str(err.value)


def test_required_census_variable_missing_is_refused_with_its_vintage_prefix(tmp_path):
    path = write(tmp_path / "base-ic-evol-struct-pop-2021.CSV", HEADER.replace("P21_POP65P", "P21_POP65_P") + ROW_1)
    with pytest.raises(InputError) as err:
        read_base_ic(path, "evol_struct_pop", variables={"P_POP"}, required={"P_POP", "P_POP65P"})
    message = str(err.value)
    assert str(path) in message and "P21_POP65P" in message and "2021" in message and "correction :" in message
    # present: read even when not among `variables`
    good = write(tmp_path / "ok.csv", HEADER + ROW_1)
    df = read_base_ic(good, "evol_struct_pop", variables={"P_POP"}, required={"P_POP65P"})
    assert df.loc[0, "P_POP65P"] == 20 and df.loc[0, "P_POP"] == 100


# --- strict readers: spreadsheets ------------------------------------------------------------


def _xlsx(path: Path, rows: str, dimension: str | None = None, sheet: str = "IRIS") -> Path:
    """A minimal xlsx (one sheet) whose sheet XML is written by hand, as a hostile program would."""
    ns = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    pkg = "http://schemas.openxmlformats.org/package/2006/relationships"
    dim = f'<dimension ref="{dimension}"/>' if dimension else ""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(
            "[Content_Types].xml",
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/xl/workbook.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
            '<Override PartName="/xl/worksheets/sheet1.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>',
        )
        zf.writestr(
            "_rels/.rels",
            f'<Relationships xmlns="{pkg}"><Relationship Id="rId1" Type="{rel}/officeDocument" '
            'Target="xl/workbook.xml"/></Relationships>',
        )
        zf.writestr(
            "xl/workbook.xml",
            f'<workbook xmlns="{ns}" xmlns:r="{rel}"><sheets><sheet name="{sheet}" sheetId="1" r:id="rId1"/>'
            "</sheets></workbook>",
        )
        zf.writestr(
            "xl/_rels/workbook.xml.rels",
            f'<Relationships xmlns="{pkg}"><Relationship Id="rId1" Type="{rel}/worksheet" '
            'Target="worksheets/sheet1.xml"/></Relationships>',
        )
        zf.writestr(
            "xl/worksheets/sheet1.xml", f'<worksheet xmlns="{ns}">{dim}<sheetData>{rows}</sheetData></worksheet>'
        )
    return path


def _text(ref: str, value: str) -> str:
    return f'<c r="{ref}" t="inlineStr"><is><t>{value}</t></is></c>'


FILO_TITLE = "".join(f'<row r="{r}">{_text(f"A{r}", "Revenus disponibles 2017")}</row>' for r in range(1, 6))
FILO_HEADER = f'<row r="6">{_text("A6", "IRIS")}{_text("B6", "LIBIRIS")}{_text("C6", "DISP_TP6017")}{_text("D6", "DISP_MED17")}</row>'


def _filo_row(r: int, med: str) -> str:
    return f'<row r="{r}">{_text(f"A{r}", f"0100401{r:02d}")}{_text(f"B{r}", "Iris")}<c r="C{r}"><v>12.5</v></c>{med}</row>'


def test_formula_cells_without_cached_value_are_refused_naming_the_cell(tmp_path):
    rows = "".join(_filo_row(r, f'<c r="D{r}"><f>C{r}*1000</f></c>') for r in range(7, 10))
    path = _xlsx(tmp_path / "BASE_TD_FILO_DISP_IRIS_2017.xlsx", FILO_TITLE + FILO_HEADER + rows, sheet="IRIS_DISP")
    with pytest.raises(InputError) as err:
        read_filosofi_iris(path)
    message = str(err.value)
    assert str(path) in message and "ligne 7, colonne 'D'" in message and "D7" in message and "formule" in message


def test_formula_cells_written_by_openpyxl_are_refused(tmp_path):
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.title = "IRIS_DISP"
    for _ in range(5):
        sheet.append(["Revenus disponibles 2017"])
    sheet.append(["IRIS", "LIBIRIS", "DISP_TP6017", "DISP_MED17"])
    for r in range(7, 10):
        sheet.append([f"0100401{r:02d}", "Iris", 12.5, f"=C{r}*1000"])
    path = tmp_path / "BASE_TD_FILO_DISP_IRIS_2017.xlsx"
    book.save(path)
    with pytest.raises(InputError, match=r"ligne 7, colonne 'D' : la cellule D7 contient une formule"):
        read_filosofi_iris(path)


def test_formula_cells_with_cached_values_are_read(tmp_path):
    rows = "".join(_filo_row(r, f'<c r="D{r}"><f>C{r}*1000</f><v>{20000 + r}</v></c>') for r in range(7, 10))
    path = _xlsx(tmp_path / "BASE_TD_FILO_DISP_IRIS_2017.xlsx", FILO_TITLE + FILO_HEADER + rows, sheet="IRIS_DISP")
    df = read_filosofi_iris(path)
    assert df["MED"].tolist() == [20007, 20008, 20009]


_READ_SHEET = """
import sys
from pathlib import Path
from sources.common import InputError, read_sheet_table
try:
    read_sheet_table(Path(sys.argv[1]), key_column="IRIS")
except InputError as exc:
    print(exc)
"""


@pytest.mark.parametrize("dimension", ["A1:XFD1048576", None, "A1:B2"])
def test_sheet_with_one_far_cell_is_refused_without_loading_it(tmp_path, dimension):
    """80 KB of xlsx, one cell at XFD1048576: calamine would allocate 512 GB and abort the
    process. Run in a child process so that, unguarded, it kills the child and not the tests."""
    far = f'<row r="1048576">{_text("XFD1048576", "x")}</row>'
    path = _xlsx(tmp_path / "bomb.xlsx", f'<row r="1">{_text("A1", "IRIS")}</row>{far}', dimension)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", _READ_SHEET, str(path)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-1500:]
    assert str(path) in done.stdout and "feuille démesurée" in done.stdout and "correction :" in done.stdout
    assert time.monotonic() - started < 30


def test_validate_refuses_a_spreadsheet_bomb_instead_of_dying(tmp_path):
    far = f'<row r="1048576">{_text("XFD1048576", "x")}</row>'
    bomb = _xlsx(tmp_path / "BASE_TD_FILO_DISP_IRIS_2017.xlsx", FILO_TITLE + FILO_HEADER + far, sheet="IRIS_DISP")
    config = write(tmp_path / "c.yaml", f"inputs:\n  filosofi_iris: {bomb.name}\n")
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "validate", "--config", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, (done.returncode, done.stderr[-1500:])
    assert "feuille démesurée" in done.stdout + done.stderr and "Traceback" not in done.stderr


def test_dense_sheet_over_the_cell_cap_is_refused(tmp_path, monkeypatch):
    rows = "".join(
        f'<row r="{r}">' + "".join(f'<c r="{c}{r}"><v>{r}</v></c>' for c in "ABCDEFGHIJ") + "</row>"
        for r in range(2, 400)
    )
    path = _xlsx(tmp_path / "dense.xlsx", f'<row r="1">{_text("A1", "IRIS")}</row>{rows}')
    assert len(read_sheet_table(path, key_column="IRIS").frame) == 398  # under the cap: read
    monkeypatch.setattr(common, "MAX_SHEET_CELLS", 2_000)
    with pytest.raises(InputError, match="feuille démesurée"):
        read_sheet_table(path, key_column="IRIS")


# --- downloads -------------------------------------------------------------------------------

CSV_BODY = b"code_insee;nom;locaux\n" + b"".join(b"%05d;Commune;%d\n" % (1001 + i, i) for i in range(2000))


def _zip_body() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("data.csv", os.urandom(50_000).hex())
    return buffer.getvalue()


def _7z_body(tmp: Path) -> bytes:
    (tmp / "data.csv").write_bytes(os.urandom(50_000))
    with py7zr.SevenZipFile(tmp / "a.7z", "w") as archive:
        archive.write(tmp / "data.csv", "data.csv")
    return (tmp / "a.7z").read_bytes()


class Hostile(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    hits: dict[str, int] = {}

    def log_message(self, *args):
        pass

    def _send(self, body: bytes, *, length: bool = True, status: int = 200, **headers: str) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802 - http.server's name
        kind, _, name = self.path.strip("/").partition("/")
        count = Hostile.hits[self.path] = Hostile.hits.get(self.path, 0) + 1
        body = Hostile.files.get(name, b"")
        port = self.server.server_address[1]
        if kind == "ok":
            self._send(body)
        elif kind == "trickle":  # Content-Length announced, one byte every 20 ms, at most 5 s
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                for byte in body[:250]:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.02)
            except OSError:
                pass
            self.close_connection = True
        elif kind == "retry-after":
            if count == 1:
                self._send(b"busy", status=503, Retry_After="100000")
            else:
                self._send(body)
        elif kind == "elsewhere":
            self._send(b"", status=302, Location=f"http://localhost:{port}/ok/{name}")
        elif kind == "hop":
            self._send(b"", status=301, Location=f"/ok/{name}")
        elif kind == "cut":  # no Content-Length: the end of the body is the end of the connection
            self._send(body[: len(body) * 2 // 3], length=False)
            self.close_connection = True
        elif kind == "whole":
            self._send(body, length=False)
            self.close_connection = True
        elif kind == "gzip":
            self._send(gzip.compress(body), Content_Encoding="gzip")
        elif kind == "gzip-cut":
            packed = gzip.compress(body)
            self._send(packed[: len(packed) // 2], length=False, Content_Encoding="gzip")
            self.close_connection = True
        elif kind == "portal":
            self._send(b"<!DOCTYPE html><html><body>Wi-Fi: please log in</body></html>", Content_Type="text/html")
        elif kind == "html-type":
            self._send(body, Content_Type="text/html; charset=utf-8")
        else:
            self.send_error(404)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    Hostile.files.update(
        {"data.csv": CSV_BODY, "data.zip": _zip_body(), "data.7z": _7z_body(tmp_path_factory.mktemp("7z"))}
    )
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _fetcher(cache: Path, **kw) -> Fetcher:
    return Fetcher(cache, progress=False, **({"retries": 0, "timeout_s": 5} | kw))


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


def _in_thread(call, timeout: float):
    """Run `call` in a thread for at most `timeout` seconds: (finished, result or exception)."""
    box: list = []

    def run():
        try:
            box.append(call())
        except BaseException as exc:  # reported to the test
            box.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    return (not thread.is_alive()), (box[0] if box else None)


def test_trickling_server_is_abandoned_at_the_deadline(server, tmp_path):
    fetcher = _fetcher(tmp_path, deadline_s=1.0, min_rate_bps=0)
    folder = tmp_path / "downloads" / "arcep" / "latest"
    seen: set[str] = set()
    started = time.monotonic()
    thread = threading.Thread(
        target=lambda: seen.add(
            repr(_catch(fetcher.fetch, "arcep", "latest", SourceFile(url=f"{server}/trickle/data.csv")))
        ),
        daemon=True,
    )
    thread.start()
    while thread.is_alive() and time.monotonic() - started < 10:
        if folder.is_dir():
            seen.update(p.name for p in folder.iterdir())
        time.sleep(0.05)
    assert not thread.is_alive() and time.monotonic() - started < 5
    assert any(n.startswith(".fragilite-data.csv.") and n.endswith(".part") for n in seen)  # prefixed temporary
    assert any("FinalDownloadError" in n and "délai de 1 s dépassé" in n for n in seen)
    assert not _files(tmp_path)


def _catch(call, *args):
    try:
        return call(*args)
    except Exception as exc:
        return exc


def test_slow_server_is_abandoned_after_the_grace_period(server, tmp_path):
    fetcher = _fetcher(tmp_path, min_rate_bps=1_000, rate_grace_s=0.5)
    finished, outcome = _in_thread(
        lambda: fetcher.fetch("arcep", "latest", SourceFile(url=f"{server}/trickle/data.csv")), 10
    )
    assert finished and isinstance(outcome, DownloadError), outcome
    assert "débit trop faible" in str(outcome) and "minimum 1000" in str(outcome)
    assert not _files(tmp_path)


def test_retry_after_is_capped(server, tmp_path):
    fetcher = _fetcher(tmp_path, retries=2, max_retry_after_s=0.2)
    assert Fetcher(tmp_path).max_retry_after_s == 60  # the default cap
    started = time.monotonic()
    finished, outcome = _in_thread(
        lambda: fetcher.fetch("arcep", "latest", SourceFile(url=f"{server}/retry-after/data.csv")), 15
    )
    assert finished and isinstance(outcome, Path), outcome
    assert outcome.read_bytes() == CSV_BODY and time.monotonic() - started < 10
    assert Hostile.hits["/retry-after/data.csv"] == 2


def test_redirect_to_an_undeclared_host_is_refused(server, tmp_path):
    url = f"{server}/elsewhere/data.csv"
    with pytest.raises(download.FinalDownloadError) as err:
        _fetcher(tmp_path, hosts=("127.0.0.1",)).fetch("arcep", "latest", SourceFile(url=url))
    message = str(err.value)
    assert url in message and "/ok/data.csv" in message and "localhost" in message and "redirection refusée" in message
    assert not _files(tmp_path)
    # a redirect within the declared hosts is followed
    hop = _fetcher(tmp_path, hosts=("127.0.0.1",)).fetch("arcep", "latest", SourceFile(url=f"{server}/hop/data.csv"))
    assert hop.read_bytes() == CSV_BODY


def test_redirect_from_https_to_http_is_refused(server, tmp_path, monkeypatch):
    """An https address (served here by a stand-in adapter) that redirects to plain http."""
    target = f"{server}/ok/data.csv"

    class TlsStandIn(requests.adapters.BaseAdapter):
        def send(self, request, **kwargs):
            response = requests.Response()
            response.status_code, response.url, response.request = 302, request.url, request
            response.headers["Location"] = target
            response.raw = io.BytesIO(b"")
            return response

        def close(self):
            pass

    def session(*args, **kwargs):
        session = real(*args, **kwargs)
        session.mount("https://", TlsStandIn())
        return session

    real = download._session
    monkeypatch.setattr(download, "_session", session)
    with pytest.raises(download.FinalDownloadError) as err:
        _fetcher(tmp_path).fetch("arcep", "latest", SourceFile(url="https://www.insee.fr/data.csv"))
    message = str(err.value)
    assert "https://www.insee.fr/data.csv" in message and target in message and "https à http" in message
    assert not _files(tmp_path)


@pytest.mark.parametrize("name,fmt", [("data.csv", "csv"), ("data.zip", "zip"), ("data.7z", "7z")])
def test_body_cut_without_content_length_is_refused(server, tmp_path, name, fmt):
    with pytest.raises(DownloadError, match="incomplet") as err:
        _fetcher(tmp_path).fetch("x", "latest", SourceFile(url=f"{server}/cut/{name}", format=fmt))
    assert f"/cut/{name}" in str(err.value)
    assert not _files(tmp_path)
    whole = _fetcher(tmp_path).fetch("x", "latest", SourceFile(url=f"{server}/whole/{name}", format=fmt))
    assert whole.read_bytes() == Hostile.files[name]


def test_gzip_content_encoding_is_decoded_and_length_checked_raw(server, tmp_path):
    path = _fetcher(tmp_path / "a").fetch("x", "latest", SourceFile(url=f"{server}/gzip/data.zip", format="zip"))
    assert path.read_bytes() == Hostile.files["data.zip"]
    path = _fetcher(tmp_path / "b").fetch("x", "latest", SourceFile(url=f"{server}/gzip/data.csv"))
    assert path.read_bytes() == CSV_BODY
    with pytest.raises(DownloadError, match="tronqué|incomplet"):
        _fetcher(tmp_path / "c").fetch("x", "latest", SourceFile(url=f"{server}/gzip-cut/data.csv"))
    assert not _files(tmp_path / "c")


def test_captive_portal_page_is_refused_from_the_network_and_the_mirror(server, tmp_path):
    entry = SourceFile(url=f"{server}/portal/data.zip", format="zip")
    with pytest.raises(DownloadError, match="HTML|format zip"):
        _fetcher(tmp_path / "net").fetch("x", "latest", entry)
    assert not _files(tmp_path / "net")
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "data.zip").write_bytes(b"<!DOCTYPE html><html><body>Wi-Fi: please log in</body></html>")
    with pytest.raises(DownloadError, match="pas au format zip"):
        _fetcher(tmp_path / "cache", mirror=mirror, offline=True).fetch("x", "latest", entry)
    assert not _files(tmp_path / "cache")


def test_text_html_content_type_is_refused_for_a_data_file(server, tmp_path):
    """The body alone looks like a CSV: only the Content-Type tells it is a page."""
    with pytest.raises(DownloadError, match=r"page HTML \(Content-Type text/html\)"):
        _fetcher(tmp_path).fetch("x", "latest", SourceFile(url=f"{server}/html-type/data.csv", format="csv"))
    assert not _files(tmp_path)


def test_stale_temporaries_of_the_target_are_removed_and_nothing_else(server, tmp_path):
    folder = tmp_path / "downloads" / "arcep" / "latest"
    folder.mkdir(parents=True)
    old = time.time() - 7200
    stale = folder / ".fragilite-data.csv.0a1b2c3d.part"
    fresh = folder / ".fragilite-data.csv.99999999.part"
    other_target = folder / ".fragilite-data.csv.gz.0a1b2c3d.part"
    foreign = folder / ".data.csv.0a1b2c3d.part"
    for path in (stale, fresh, other_target, foreign):
        path.write_bytes(b"half")
    for path in (stale, other_target, foreign):
        os.utime(path, (old, old))
    fetcher = _fetcher(tmp_path, deadline_s=3600)
    assert fetcher.fetch("arcep", "latest", SourceFile(url=f"{server}/ok/data.csv")).read_bytes() == CSV_BODY
    assert not stale.exists() and fresh.exists() and other_target.exists() and foreign.exists()


def test_fetcher_from_settings_passes_the_catalogue_hosts(sample_settings):
    fetcher = fetcher_from_settings(sample_settings, progress=False, hosts=["www.insee.fr", "data.geopf.fr"])
    assert fetcher.hosts == ("www.insee.fr", "data.geopf.fr") and fetcher.deadline_s == 3600
    assert fetcher_from_settings(sample_settings).hosts == ()


# --- configuration files ----------------------------------------------------------------------


def test_yaml_key_written_twice_is_refused_with_both_lines(tmp_path):
    """PyYAML keeps the last of two equal keys: a pasted second `run:` would silently win."""
    from config.settings import ConfigError, load_settings

    config = write(tmp_path / "c.yaml", "run:\n  reference: epci\nrun:\n  reference: departement\n")
    with pytest.raises(ConfigError, match=r"c\.yaml.*clé « run » en double \(déjà écrite ligne 1\)") as err:
        load_settings(config)
    assert "line 3" in str(err.value)


def test_binary_or_non_utf8_configuration_is_refused_before_parsing(tmp_path):
    from config.settings import ConfigError, load_settings

    binary = tmp_path / "c.yaml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(ConfigError, match=r"c\.yaml : fichier binaire"):
        load_settings(binary)
    latin = tmp_path / "l.yaml"
    latin.write_bytes("run:\n  territory_label: Métropole\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"l\.yaml : octet \d+ non UTF-8"):
        load_settings(latin)


def test_configuration_errors_are_in_french_with_the_key_and_the_value_read(tmp_path):
    from config.settings import ConfigError, load_settings

    config = write(tmp_path / "c.yaml", "run:\n  referenc: epci\n  reference: canton\n")
    with pytest.raises(ConfigError) as err:
        load_settings(config)
    text = str(err.value)
    assert "c.yaml : configuration invalide" in text
    assert (
        "run.reference : valeur non admise, attendu : 'departement', 'epci', 'territoire', 'region' ou 'france'" in text
    )
    assert "(lu : 'canton')" in text and "run.referenc : clé inconnue (faute de frappe ?" in text
    assert "Input should" not in text and "Extra inputs" not in text


def test_catalogue_names_cannot_place_a_file_outside_the_cache(tmp_path):
    """Audit: a catalogue `filename` (or dataset / vintage key, or URL ending) could leave the cache."""
    from config.settings import SourceFile

    for name in ("../../.bashrc", "/etc/passwd", "sous/dossier.csv", ".cache"):
        with pytest.raises(ValueError, match="simple nom de fichier"):
            SourceFile(url="https://www.insee.fr/f.csv", filename=name)
    fetcher = _fetcher(tmp_path)
    with pytest.raises(DownloadError, match="hors du cache"):
        fetcher.cache_path("../../evil", "latest", SourceFile(url="https://www.insee.fr/f.csv"))
    with pytest.raises(DownloadError, match="hors du cache"):
        fetcher.cache_path("insee", "latest", SourceFile(url="https://www.insee.fr/a/.."))
    inside = fetcher.cache_path("insee", "2021", SourceFile(url="https://www.insee.fr/f.csv"))
    assert inside.name == "f.csv" and tmp_path in inside.parents

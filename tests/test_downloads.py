"""Downloads from a local HTTP server (127.0.0.1 only): retries, verification, cache, archives,
offline mode, and a full run of a territory from download to layers."""

from __future__ import annotations

import hashlib
import http.server
import io
import threading
import time
import zipfile
from pathlib import Path

import geopandas as gpd
import py7zr
import pyarrow.parquet as pq
import pytest

from config.settings import SourceFile
from pipelines.cli import main
from sources.archives import ArchiveError, extract
from sources.download import ChecksumMismatch, DownloadError, Fetcher, MissingFilesError
from tests.conftest import LYON_EPCI, SAMPLE, write


class Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    hits: dict[str, int] = {}

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):  # noqa: N802 - http.server's name
        path = self.path
        count = Handler.hits[path] = Handler.hits.get(path, 0) + 1
        name = path.rsplit("/", 1)[-1]
        body = Handler.files.get(name)
        if body is None:
            self.send_error(404)
            return
        if path.startswith("/flaky/") and count <= 2:
            self.send_error(500)
            return
        if path.startswith("/slow/") and count == 1:
            time.sleep(1.5)
        if path.startswith("/truncated/"):
            self.send_response(200)
            self.send_header("Content-Length", str(len(body) + 1000))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def _contours_7z(tmp: Path) -> bytes:
    """The sample outlines as IGN ships them: a shapefile inside a 7z, under its delivery folders."""
    folder = tmp / "CONTOURS-IRIS" / "1_DONNEES_LIVRAISON" / "CONTOURS-IRIS_2-1_SHP_LAMB93_FXX-2018"
    folder.mkdir(parents=True)
    gpd.read_file(SAMPLE / "ign" / "CONTOURS-IRIS_2016_dep69.gpkg").to_file(folder / "CONTOURS-IRIS.shp")
    archive = tmp / "c.7z"
    with py7zr.SevenZipFile(archive, "w") as sz:
        sz.writeall(tmp / "CONTOURS-IRIS", "CONTOURS-IRIS")
    return archive.read_bytes()


@pytest.fixture(scope="module")
def published(server, tmp_path_factory):
    """The sample's files, served in the publishers' packaging, and a catalogue pointing at them."""
    tmp = tmp_path_factory.mktemp("published")
    insee = SAMPLE / "insee"
    Handler.files.update(
        {
            "evol_csv.zip": _zip(
                {"base-ic-evol-struct-pop-2016.CSV": (insee / "base-ic-evol-struct-pop-2016_dep69.csv").read_bytes()}
            ),
            "dipl_csv.zip": _zip(
                {
                    "base-ic-diplomes-formation-2016.CSV": (
                        insee / "base-ic-diplomes-formation-2016_dep69.csv"
                    ).read_bytes(),
                    "meta_base-ic-diplomes-formation-2016.CSV": b"COD_VAR;LIB_VAR\n",
                }
            ),
            "cfm_csv.zip": _zip(
                {
                    "base-ic-couples-familles-menages-2016.CSV": (
                        insee / "base-ic-couples-familles-menages-2016_dep69.csv"
                    ).read_bytes()
                }
            ),
            "BASE_TD_FILO_DISP_IRIS_2017.xlsx": (SAMPLE / "filosofi" / "BASE_TD_FILO_DISP_IRIS_2017.xlsx").read_bytes(),
            "filo_com.zip": _zip(
                {"base-cc-filosofi-2015.CSV": (insee / "filosofi-2015-communes-MED15_dep69.csv").read_bytes()}
            ),
            "CONTOURS-IRIS_2018.7z": _contours_7z(tmp),
            "epci.zip": _zip({"Intercommunalite_2018.csv": (insee / "communes-epci-2016_dep69.csv").read_bytes()}),
            "commune-debit-beta.csv": (SAMPLE / "arcep" / "commune-debit-beta_dep69.csv").read_bytes(),
        }
    )
    md5 = hashlib.md5(Handler.files["BASE_TD_FILO_DISP_IRIS_2017.xlsx"]).hexdigest()
    catalogue = write(
        tmp / "catalogue.yaml",
        f"""
hosts: [127.0.0.1]
datasets:
  rp_evol_struct_pop:
    {{label: evol, publisher: INSEE, input: rp_evol_struct_pop, vintage_rule: rp, format: zip,
     files: {{"2016": {{url: "{server}/flaky/evol_csv.zip", member: '(?i)^base-ic-evol-struct-pop-2016\\.csv$'}}}}}}
  rp_diplomes_formation:
    {{label: dipl, publisher: INSEE, input: rp_diplomes_formation, vintage_rule: rp, format: zip,
     files: {{"2016": {{url: "{server}/slow/dipl_csv.zip", member: '(?i)^base-ic-diplomes-formation-2016\\.csv$'}}}}}}
  rp_couples_familles_menages:
    {{label: cfm, publisher: INSEE, input: rp_couples_familles_menages, vintage_rule: rp, format: zip,
     files: {{"2016": {{url: "{server}/ok/cfm_csv.zip", member: '(?i)^base-ic-couples.*\\.csv$'}}}}}}
  filosofi_iris:
    {{label: filo, publisher: INSEE, input: filosofi_iris, vintage_rule: rp, format: xlsx,
     files: {{"2016": {{url: "{server}/ok/BASE_TD_FILO_DISP_IRIS_2017.xlsx", md5: {md5}}}}}}}
  filosofi_communes:
    {{label: filocom, publisher: INSEE, input: filosofi_communes, vintage_rule: rp, format: zip,
     files: {{"2016": {{url: "{server}/ok/filo_com.zip", member: '(?i)filosofi.*\\.csv$'}}}}}}
  contours_iris:
    {{label: iris, publisher: IGN, input: contours_iris, vintage_rule: geography, format: 7z,
     files: {{"2018": {{url: "{server}/ok/CONTOURS-IRIS_2018.7z", member: 'LAMB93_FXX-2018/CONTOURS-IRIS\\.(shp|shx|dbf|prj|cpg)$'}}}}}}
  communes_epci:
    {{label: epci, publisher: INSEE, input: communes_epci, vintage_rule: geography, format: zip,
     files: {{"2018": {{url: "{server}/ok/epci.zip", member: '(?i)^Intercommunalite.*\\.csv$'}}}}}}
  arcep_debit:
    {{label: arcep, publisher: ARCEP, input: arcep_debit, vintage_rule: latest, format: csv,
     files: {{latest: {{url: "{server}/ok/commune-debit-beta.csv"}}}}}}
""",
    )
    config = write(tmp / "config.yaml", f"sources:\n  catalogue: {catalogue.name}\n  retries: 3\n  timeout_s: 0.5\n")
    return tmp, config


def _entry(url: str, **kw) -> SourceFile:
    return SourceFile(url=url, **kw)


def test_full_run_of_an_epci_from_download_to_layers(published, tmp_path, dagster_home, capsys):
    tmp, config = published
    cache, out = tmp_path / "cache", tmp_path / "out"
    code = main(
        [
            "run",
            "--config",
            str(config),
            "--vintage",
            "2016",
            "--territory",
            LYON_EPCI,
            "--cache-dir",
            str(cache),
            "--out",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    layer = pq.read_table(out / "layers" / "iris.parquet", columns=["CODE_IRIS", "EPCI", "score_global"]).to_pandas()
    assert len(layer) == 512 and (layer["EPCI"] == LYON_EPCI).all()
    assert layer["score_global"].notna().sum() >= 500
    # retried after two 500s, and after a read timeout
    assert Handler.hits["/flaky/evol_csv.zip"] >= 3 and Handler.hits["/slow/dipl_csv.zip"] >= 2
    # cached and verified: a second fetch offline needs no network
    hits = dict(Handler.hits)
    assert main(["fetch", "--config", str(config), "--vintage", "2016", "--offline", "--cache-dir", str(cache)]) == 0
    assert Handler.hits == hits
    assert (cache / "downloads" / "filosofi_iris" / "2016" / "BASE_TD_FILO_DISP_IRIS_2017.xlsx.sha256").exists()


def test_truncated_body_is_refused_and_leaves_nothing(server, published, tmp_path):
    fetcher = Fetcher(tmp_path, retries=1, timeout_s=5, progress=False)
    with pytest.raises(DownloadError, match="truncated|Connection broken|IncompleteRead"):
        fetcher.fetch("x", "2016", _entry(f"{server}/truncated/commune-debit-beta.csv"))
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_checksum_mismatch_and_acceptance(server, published, tmp_path):
    entry = _entry(f"{server}/ok/commune-debit-beta.csv", md5="0" * 32)
    with pytest.raises(ChecksumMismatch, match="--accept-changed"):
        Fetcher(tmp_path / "a", retries=0, progress=False).fetch("arcep", "latest", entry)
    assert not list((tmp_path / "a").rglob("commune-debit-beta.csv"))
    path = Fetcher(tmp_path / "b", retries=0, accept_changed=True, progress=False).fetch("arcep", "latest", entry)
    assert path.read_bytes() == Handler.files["commune-debit-beta.csv"]


def test_corrupted_cache_is_detected(server, published, tmp_path):
    fetcher = Fetcher(tmp_path, retries=0, progress=False)
    path = fetcher.fetch("arcep", "latest", _entry(f"{server}/ok/commune-debit-beta.csv"))
    path.write_bytes(b"tampered")
    with pytest.raises(DownloadError, match="cached file changed"):
        fetcher.fetch("arcep", "latest", _entry(f"{server}/ok/commune-debit-beta.csv"))


def test_offline_with_empty_cache_fails_fast_listing_every_file(published, tmp_path, capsys):
    _, config = published
    started = time.monotonic()
    code = main(["fetch", "--config", str(config), "--vintage", "2016", "--offline", "--cache-dir", str(tmp_path)])
    assert code == 2 and time.monotonic() - started < 5
    err = capsys.readouterr().err
    assert "8 fichier(s) absent(s)" in err and "flaky/evol_csv.zip" in err and "à déposer en" in err
    assert "Traceback" not in err


def test_offline_with_a_mirror(published, tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "commune-debit-beta.csv").write_bytes(Handler.files["commune-debit-beta.csv"])
    fetcher = Fetcher(tmp_path / "cache", mirror=mirror, offline=True, progress=False)
    path = fetcher.fetch("arcep", "latest", _entry("http://127.0.0.1:9/x/commune-debit-beta.csv"))
    assert path.read_bytes() == (mirror / "commune-debit-beta.csv").read_bytes()
    with pytest.raises(MissingFilesError, match="other.csv"):
        fetcher.fetch("x", "latest", _entry("http://127.0.0.1:9/x/other.csv"))


def test_hostile_archives_are_refused(tmp_path):
    traversal = tmp_path / "evil.zip"
    traversal.write_bytes(_zip({"../../evil.csv": b"x"}))
    with pytest.raises(ArchiveError, match="sort du dossier d.extraction"):
        extract(traversal, r"evil\.csv$", tmp_path / "out", 10 << 20)
    assert not (tmp_path.parent / "evil.csv").exists() and not (tmp_path / "out").exists()

    link = tmp_path / "link.zip"
    with zipfile.ZipFile(link, "w") as zf:
        info = zipfile.ZipInfo("data.csv")
        info.external_attr = 0o120777 << 16  # a symbolic link
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(ArchiveError, match="est un lien"):
        extract(link, r"data\.csv$", tmp_path / "out", 10 << 20)

    big = tmp_path / "big.zip"
    big.write_bytes(_zip({"data.csv": b"0" * 5000}))
    with pytest.raises(ArchiveError, match="au-delà de la limite"):
        extract(big, r"data\.csv$", tmp_path / "out", 1000)

    truncated = tmp_path / "cut.zip"
    truncated.write_bytes(_zip({"data.csv": b"0" * 5000})[:100])
    with pytest.raises(ArchiveError, match="corrompue|ni une archive"):
        extract(truncated, r"data\.csv$", tmp_path / "out", 10 << 20)


def test_member_renamed_by_publisher(tmp_path):
    archive = tmp_path / "a.zip"
    archive.write_bytes(_zip({"renamed.csv": b"x"}))
    with pytest.raises(ArchiveError, match=r"(?s)aucun membre ne correspond .*mettez à jour `member`"):
        extract(archive, r"^expected\.csv$", tmp_path / "out", 1 << 20)


def test_catalogue_refuses_undeclared_hosts_and_non_http(tmp_path):
    from config.settings import ConfigError, load_sources

    bad = write(
        tmp_path / "c.yaml",
        """
hosts: [www.insee.fr]
datasets:
  x: {label: x, publisher: x, input: null, vintage_rule: latest, format: csv,
      files: {latest: {url: "https://evil.example.org/x.csv"}}}
""",
    )
    with pytest.raises(ConfigError, match="not in hosts"):
        load_sources(bad)
    ftp = write(tmp_path / "d.yaml", bad.read_text().replace("https://evil.example.org", "ftp://www.insee.fr"))
    with pytest.raises(ConfigError, match="only http"):
        load_sources(ftp)


def test_shipped_catalogue_covers_rp_2017_to_2021():
    from config.settings import load_sources
    from sources.catalogue import catalogued_inputs

    catalogue = load_sources()
    for vintage in range(2017, 2022):
        for name, dataset in catalogue.datasets.items():
            if dataset.input is not None:
                assert dataset.vintage_for(vintage) in dataset.files, (name, vintage)
    assert {
        "rp_evol_struct_pop",
        "rp_diplomes_formation",
        "rp_couples_familles_menages",
        "rp_activite_residents",
        "filosofi_iris",
        "filosofi_communes",
        "contours_iris",
        "communes_epci",
        "arcep_debit",
        "cog_passage",
    } <= set(catalogued_inputs(catalogue))
    assert {"arcep_4g", "caf_communes"} <= set(catalogue.datasets)
    hosts = {"www.insee.fr", "data.geopf.fr", "www.data.gouv.fr", "data.caf.fr", "data.arcep.fr"}
    assert {u.split("/")[2] for d in catalogue.datasets.values() for u in (f.url for f in d.files.values())} <= hosts

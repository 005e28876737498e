"""ARCEP's building files and « Mon réseau mobile » from the catalogue: per-département files of
the study territory only, the national pair for all of France, one archive per operator; sizes
and progress; a missing département left to the commune rate, and said so.

The files are in the publishers' layouts (gzip `;` CSVs with the exact headers of
`base_imb_<DEP>.csv.gz` and `actuel_<DEP>.csv.gz`, GeoPackages in 7z with the published field
names, built by tests/test_connectivite.py) and served from a local HTTP server (127.0.0.1) at
the catalogue's own paths: the shipped catalogue's ARCEP entries with data.arcep.fr replaced by
the server.
"""

from __future__ import annotations

import gzip
import http.server
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from pyproj import Transformer
from shapely.geometry import box
from tqdm import tqdm

from config.settings import Catalogue, load_sources
from pipelines.cli import main
from sources.arcep_batiments import BASE_IMB_COLUMNS, ELIGIBILITE_COLUMNS
from sources.catalogue import NoFileObtained, missing_files, plan_lines, planned_files, resolve_input
from sources.download import DownloadError, Fetcher, MissingFilesError
from tests import publishers as P
from tests.conftest import LYON_EPCI
from tests.test_connectivite import BUILDINGS, X0, Y0, _base_rows, _gpkg_7z, _offer_rows, _write_gz

ARCEP = "https://data.arcep.fr"
BASE_IMB = "/fixe/maconnexioninternet/base_imb/last/departement/base_imb_{}.csv.gz"
ACTUEL = "/fixe/maconnexioninternet/eligibilite/last/departement/actuel_{}.csv.gz"
MOBILE = "/mobile/couvertures_theoriques/2025_T3/Metropole/00_Metropole/2025_T3_couv_Metropole_{}_4G_data.gpkg.7z"
TO_3857 = Transformer.from_crs(2154, 3857, always_xy=True)


class Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    log: list[tuple[str, str]] = []

    def log_message(self, *args):  # keep test output clean
        pass

    def _answer(self, with_body: bool) -> None:
        Handler.log.append((self.command, self.path))
        body = Handler.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        if self.path.startswith("/encoded/"):  # a .gz announced as gzip-encoded, without length
            self.send_response(200)
            self.send_header("Content-Encoding", "gzip")
            self.end_headers()
            if with_body:
                self.wfile.write(body)
            self.close_connection = True
            return
        self.send_response(200)
        # ARCEP's object store answers with a binary type; an error page saved under the file's
        # name must be caught by its content, not by its type.
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def do_GET(self):  # noqa: N802 - http.server's name
        self._answer(True)

    def do_HEAD(self):  # noqa: N802 - http.server's name
        self._answer(False)


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def catalogue(server, tmp_path_factory) -> Catalogue:
    """The shipped catalogue's ARCEP datasets, their host replaced by the local server."""
    shipped = load_sources()
    names = [n for n, d in shipped.datasets.items() if d.input in ("arcep_batiments", "arcep_4g")]
    data = shipped.model_dump(mode="json", exclude_none=True)
    text = yaml.safe_dump({"hosts": ["127.0.0.1"], "datasets": {n: data["datasets"][n] for n in names}})
    path = tmp_path_factory.mktemp("catalogue") / "sources.yaml"
    path.write_text(text.replace(ARCEP, server), encoding="utf-8")
    return load_sources(path)


def _gz_bytes(tmp: Path, name: str, header: tuple[str, ...], rows: list[dict]) -> bytes:
    return _write_gz(tmp / name, header, rows).read_bytes()


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> dict[str, bytes]:
    """Building files of départements 01 and 69, 07 with base_imb only (its actuel is not
    published), three operators of four for 4G."""
    tmp = tmp_path_factory.mktemp("arcep")
    by_dep = {
        "01": [b for b in BUILDINGS if not b[1].startswith("69")],
        "69": [b for b in BUILDINGS if b[1] == "69123"],
    }
    files = {}
    for dep, buildings in by_dep.items():
        files[BASE_IMB.format(dep)] = _gz_bytes(tmp, f"base_imb_{dep}.csv.gz", BASE_IMB_COLUMNS, _base_rows(buildings))
        files[ACTUEL.format(dep)] = _gz_bytes(tmp, f"actuel_{dep}.csv.gz", ELIGIBILITE_COLUMNS, _offer_rows(buildings))
    files[BASE_IMB.format("07")] = files[BASE_IMB.format("01")]
    square = box(X0, Y0, X0 + 1000, Y0 + 1000)
    for code, operator in (("OF", "Orange"), ("SFR0", "SFR"), ("BOUY", "Bouygues Telecom")):
        folder = tmp / code
        folder.mkdir()
        files[MOBILE.format(code)] = _gpkg_7z(folder, operator, [("4G", "data", "BC", square)]).read_bytes()
    files["/html/base_imb_13.csv.gz"] = b"<!DOCTYPE html><html><body>Maintenance</body></html>"
    files["/encoded/base_imb_69.csv.gz"] = files[BASE_IMB.format("69")]
    files["/encoded/base_imb_14.csv.gz"] = files[BASE_IMB.format("69")][:-6]  # cut before its trailer
    Handler.files.update(files)
    return files


def _fetcher(tmp_path: Path, **options) -> Fetcher:
    options = {"retries": 0, "timeout_s": 5, "progress": False, "hosts": ("127.0.0.1",), **options}
    return Fetcher(tmp_path / "cache", **options)


def _requested(prefix: str = "") -> list[str]:
    return sorted(path.rsplit("/", 1)[-1] for method, path in Handler.log if method == "GET" and prefix in path)


def test_only_the_territory_departements_are_fetched(catalogue, published, tmp_path):
    Handler.log.clear()
    folder, provenance = resolve_input(
        catalogue, "arcep_batiments", 2021, _fetcher(tmp_path), 1 << 30, departements=["01", "69"]
    )
    assert _requested() == ["actuel_01.csv.gz", "actuel_69.csv.gz", "base_imb_01.csv.gz", "base_imb_69.csv.gz"]
    assert not any("/national/" in path for _, path in Handler.log)
    assert sorted(p.name for p in folder.iterdir()) == _requested()
    assert folder.is_relative_to(tmp_path / "cache")
    for path in folder.iterdir():  # the very bytes published
        assert (
            path.read_bytes() == published[(BASE_IMB if "base_imb" in path.name else ACTUEL).format(path.name[-9:-7])]
        )
    assert provenance["departements_manquants"] == [] and provenance["vintage"] == "last"

    # a smaller territory afterwards: its own folder, nothing downloaded again
    Handler.log.clear()
    other, _ = resolve_input(catalogue, "arcep_batiments", 2021, _fetcher(tmp_path), 1 << 30, departements=["69"])
    assert sorted(p.name for p in other.iterdir()) == ["actuel_69.csv.gz", "base_imb_69.csv.gz"]
    assert Handler.log == []


def test_a_missing_departement_is_left_out_whole_and_reported(catalogue, published, tmp_path):
    """07 has its base_imb but no actuel, 08 nothing: neither is read (buildings without their
    eligibility file would count as premises without any offer); the run goes on."""
    folder, provenance = resolve_input(
        catalogue, "arcep_batiments", 2021, _fetcher(tmp_path), 1 << 30, departements=["07", "08", "69"]
    )
    assert sorted(p.name for p in folder.iterdir()) == ["actuel_69.csv.gz", "base_imb_69.csv.gz"]
    assert provenance["departements_manquants"] == ["07", "08"]
    assert any("actuel_07.csv.gz" in m and "404" in m for m in provenance["manquants"])

    with pytest.raises(NoFileObtained) as err:
        resolve_input(catalogue, "arcep_batiments", 2021, _fetcher(tmp_path), 1 << 30, departements=["08"])
    assert err.value.provenance["departements_manquants"] == ["08"]


def test_all_of_france_takes_the_national_pair_only(catalogue):
    planned = planned_files(catalogue, "arcep_batiments", 2021, departements=None)
    assert [p.entry.url.split("/maconnexioninternet/")[1] for p in planned] == [
        "base_imb/last/national/base_imb.csv.gz",
        "eligibilite/last/national/actuel.csv.gz",
    ]
    dated = planned_files(catalogue, "arcep_batiments", 2021, quarter="2025_T2", departements=["2A", "974"])
    assert [p.entry.cache_name for p in dated] == [
        "base_imb_2A.csv.gz",
        "base_imb_974.csv.gz",
        "actuel_2A.csv.gz",
        "actuel_974.csv.gz",
    ]
    assert all("/2025_T2/departement/" in p.entry.url and not p.entry.url_verified for p in dated)


def test_departements_of_the_territory(dagster_home):
    from pipelines.resources import FragiliteConfig

    def of(*codes: str) -> list[str] | None:
        return FragiliteConfig(territory=list(codes)).departements()

    assert of(LYON_EPCI) == ["69"]  # an EPCI: the départements of its member communes
    assert of("69123", "2A004", "97411", "2B") == ["2A", "2B", "69", "974"]
    assert of() is None  # all of France: the national pair


def test_html_body_refused_before_caching(server, published, tmp_path):
    catalogue_entry = planned_files(load_sources(), "arcep_batiments", 2021, departements=["13"])[0].entry.model_copy(
        update={"url": f"{server}/html/base_imb_13.csv.gz"}
    )
    with pytest.raises(DownloadError, match="pas au format gz"):
        _fetcher(tmp_path).fetch("arcep_base_imb", "last", catalogue_entry)
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]


def test_progress_and_sizes_when_asked(catalogue, published, tmp_path, capsys):
    size = len(published[BASE_IMB.format("69")])
    lines = plan_lines(catalogue, 2021, _fetcher(tmp_path), departements=["69"])
    text = "\n".join(lines)
    assert "base_imb_69.csv.gz" in text and "2025_T3_couv_Metropole_OF_4G_data.gpkg.7z" in text
    total = (
        size
        + len(published[ACTUEL.format("69")])
        + sum(len(published[MOBILE.format(c)]) for c in ("OF", "SFR0", "BOUY"))
    )
    assert f"total à télécharger : {total / 1e3:.1f} ko".replace(".", ",") in text
    assert "plus 1 fichier(s) de taille inconnue" in text  # Free Mobile: not published here

    entry = planned_files(catalogue, "arcep_batiments", 2021, departements=["69"])[0].entry
    capsys.readouterr()
    _fetcher(tmp_path / "quiet", progress=True).fetch("arcep_base_imb", "last", entry)  # stderr is not a terminal
    assert capsys.readouterr().err == ""
    _fetcher(tmp_path / "asked", progress="always").fetch("arcep_base_imb", "last", entry)
    err = capsys.readouterr().err
    shown = tqdm.format_sizeof(size, divisor=1000)  # the size, from Content-Length
    assert "base_imb_69.csv.gz" in err and "100%" in err and f"{shown}/{shown}" in err

    # offline: the catalogue's approximate size of the national files is given with each file
    offline = missing_files(load_sources(), 2021, _fetcher(tmp_path / "empty", offline=True), departements=None)
    message = str(MissingFilesError([m for m in offline if m.dataset.startswith("arcep_")]))
    assert "arcep_base_imb last (facultatif) (≈ 1,35 Go)" in message
    assert "arcep_eligibilite last (facultatif) (≈ 1,87 Go)" in message


def test_mobile_coverage_one_archive_per_operator(catalogue, published, tmp_path):
    folder, provenance = resolve_input(catalogue, "arcep_4g", 2021, _fetcher(tmp_path), 1 << 30)
    assert sorted(p.name for p in folder.iterdir()) == [
        f"2025_T3_couv_Metropole_{code}_4G_data.gpkg.7z" for code in ("BOUY", "OF", "SFR0")
    ]
    assert provenance["vintage"] == "2025_T3" and provenance["groupes_manquants"] == ["FREE"]


# ---------------------------------------------------------------------------- end to end


def _buildings_of(model: P.Model, communes: set[str]) -> tuple[list, dict[str, float]]:
    """Two buildings in each IRIS of `communes` (at its representative point): 10 premises with
    fibre, k premises with copper only (k = 1…5); the hand count of non_thd is k / (10 + k)."""
    outlines = model.outlines["FXX"]
    chosen = outlines[outlines["INSEE_COM"].isin(communes)]
    buildings, expected = [], {}
    for i, (code, commune, point) in enumerate(
        zip(chosen["CODE_IRIS"], chosen["INSEE_COM"], chosen.geometry.representative_point())
    ):
        slow = 1 + i % 5
        x, y = TO_3857.transform(point.x, point.y)
        for n, (premises, offers) in enumerate(((10, [("FO", "THD1G")]), (slow, [("CU", "HD3")]))):
            buildings.append((f"IMB/{commune}/E/{i:04d}{n}", commune, (x, y + n), str(premises), offers))
        expected[code] = slow / (10 + slow)
    return buildings, expected


def test_a_catalogue_run_measures_non_thd_at_the_iris(tmp_path, dagster_home, capsys):
    """`fragilite run --vintage 2021 --territory pays-arbresle,metz-metropole` from a mirror of
    publisher-layout files holding the building files of the Rhône only: the IRIS of the Pays
    de L'Arbresle are measured at the building (`non_thd_source = iris`, hand count), those of
    Metz keep the commune rate, and the summary says so."""
    model = P.load_model()
    mirror = tmp_path / "mirror"
    P.write_mirror(mirror, 2021, model)
    communes = set(model.communes.index[model.communes.EPCI == P.PAYS_ARBRESLE])
    buildings, expected = _buildings_of(model, communes)
    rows = [
        {"imb_id": b, "imb_x": repr(x), "imb_y": repr(y), "imb_code": b, "imb_code_insee": c, "imb_nbr_logloc": n}
        for b, c, (x, y), n, _ in buildings
    ]
    _write_gz(mirror / "base_imb_69.csv.gz", BASE_IMB_COLUMNS, rows)
    _write_gz(mirror / "actuel_69.csv.gz", ELIGIBILITE_COLUMNS, _offer_rows(buildings))
    out = tmp_path / "out"
    options = ["--mirror", str(mirror), "--offline", "--cache-dir", str(tmp_path / "cache"), "--accept-changed"]
    code = main(
        ["run", "--vintage", "2021", "--territory", "pays-arbresle,metz-metropole", *options, "--out", str(out)]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err[-3000:]
    layer = pq.read_table(out / "layers" / "iris.parquet").drop_columns(["geometry", "bbox"]).to_pandas()
    layer = layer.set_index("CODE_IRIS")
    measured = layer[layer["non_thd_source"] == "iris"]
    assert set(measured.index) == set(expected) and len(measured) >= 10
    np.testing.assert_allclose(measured["non_thd_taux"], pd.Series(expected)[measured.index], rtol=1e-12)
    metz = layer[layer["DEP"] == "57"]
    assert len(metz) and (metz["non_thd_source"] == "commune").all()
    # the plan lists the Rhône's two files, the summary which IRIS got which source
    assert "fichiers par département pour : 57, 69" in captured.err
    line = f"non_thd : {len(expected)} IRIS mesurées à l'immeuble, {len(layer) - len(expected)} au taux communal"
    assert line + " (départements sans fichiers : 57)" in captured.out
    with gzip.open(mirror / "base_imb_69.csv.gz", "rt", encoding="utf-8") as fh:
        assert fh.readline().rstrip("\n") == ";".join(BASE_IMB_COLUMNS)


def test_gzip_encoded_body_kept_as_the_file_and_checked_whole(server, published, tmp_path):
    """A `.gz` served with `Content-Encoding: gzip` is the file itself (not unpacked into a
    plain CSV under a .gz name); without Content-Length, a gzip cut before its trailer is refused."""
    entry = planned_files(load_sources(), "arcep_batiments", 2021, departements=["69"])[0].entry
    fetcher = _fetcher(tmp_path)
    path = fetcher.fetch("x", "last", entry.model_copy(update={"url": f"{server}/encoded/base_imb_69.csv.gz"}))
    assert path.read_bytes() == published[BASE_IMB.format("69")]
    with pytest.raises(DownloadError, match="gzip tronqué"):
        fetcher.fetch("x", "last", entry.model_copy(update={"url": f"{server}/encoded/base_imb_14.csv.gz"}))
    assert not list((tmp_path / "cache" / "downloads" / "x" / "last").glob("base_imb_14*"))

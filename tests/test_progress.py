"""Progress bars of long steps (extraction, national runs): drawn on a terminal or when
FRAGILITE_PROGRESS=1 asks, each left on screen as its step's summary; nothing printed otherwise."""

from __future__ import annotations

import io
import json
import re

import pytest
from tqdm import tqdm

from config import load_settings
from config.settings import load_sources
from sources.archives import MANIFEST_FILE, extract
from tests.publishers import contours_iris_shp_7z, load_model, rp_base_ic_csv_zip

MAX = 256 << 20


@pytest.fixture(scope="module")
def model():
    return load_model()


def _member(dataset: str, vintage: str) -> str:
    """The catalogue's member pattern (config/sources.yaml), as a run extracts with it."""
    return load_sources(load_settings().sources.catalogue).datasets[dataset].files[vintage].member


def _last_state(err: str) -> str:
    """What the terminal shows last of a bar: tqdm rewrites its line after each carriage return."""
    return err.replace("\r\n", "\n").split("\r")[-1].strip()


def _extracted_bytes(dest) -> tuple[int, int]:
    files = json.loads((dest / MANIFEST_FILE).read_text(encoding="utf-8"))["files"]
    return sum(f["size"] for f in files), len(files)


def test_ign_outlines_extraction_draws_a_bar_of_bytes_then_its_summary(model, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FRAGILITE_PROGRESS", "1")
    published = contours_iris_shp_7z(model, 2021)
    archive = tmp_path / published.name
    archive.write_bytes(published.content)
    dest = extract(archive, _member("contours_iris", "2021"), tmp_path / "extrait", MAX)
    total, files = _extracted_bytes(dest)
    err = capsys.readouterr().err
    last = _last_state(err)
    assert last.startswith(f"extraction {archive.name}:"), last
    size = tqdm.format_sizeof(total, divisor=1000)
    # every byte written counted (100 %, "<size>/<size>"), bytes per second, the number of files
    assert re.search(
        rf": 100%.* {re.escape(size)}/{re.escape(size)} \[.*o/s, {files} fichier\(s\) extrait\(s\)\]$", last
    ), last
    assert files >= 5 and files % 5 == 0  # .shp .shx .dbf .prj .cpg of each part of France

    # an unchanged extraction is reused: nothing to show
    extract(archive, _member("contours_iris", "2021"), tmp_path / "extrait", MAX)
    assert capsys.readouterr().err == ""


def test_insee_zip_extraction_draws_its_bar(model, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FRAGILITE_PROGRESS", "toujours")
    published = rp_base_ic_csv_zip(model, "evol-struct-pop", 2021)
    archive = tmp_path / published.name
    archive.write_bytes(published.content)
    dest = extract(archive, r"(?i)^base-ic-evol-struct-pop-2021\.csv$", tmp_path / "extrait", MAX)
    assert dest.name == "base-ic-evol-struct-pop-2021.CSV"
    last = _last_state(capsys.readouterr().err)
    size = tqdm.format_sizeof(dest.stat().st_size, divisor=1000)
    assert last.startswith(f"extraction {archive.name}:"), last
    assert "100%" in last and f" {size}/{size} " in last and last.endswith("1 fichier(s) extrait(s)]"), last


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_no_bar_unless_a_terminal_or_asked(model, tmp_path, monkeypatch, capsys):
    published = contours_iris_shp_7z(model, 2021)
    archive = tmp_path / published.name
    archive.write_bytes(published.content)
    pattern = _member("contours_iris", "2021")
    # not a terminal (a log, a pipe, the UI's runs): nothing printed
    monkeypatch.delenv("FRAGILITE_PROGRESS", raising=False)
    extract(archive, pattern, tmp_path / "a", MAX)
    assert capsys.readouterr().err == ""
    # a terminal: the bar
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    extract(archive, pattern, tmp_path / "b", MAX)
    assert "fichier(s) extrait(s)" in terminal.getvalue()
    # a terminal, but FRAGILITE_PROGRESS=0: nothing
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    monkeypatch.setenv("FRAGILITE_PROGRESS", "0")
    extract(archive, pattern, tmp_path / "c", MAX)
    assert terminal.getvalue() == ""


def test_national_run_counts_departements_then_sums_up(tmp_path, dagster_home, monkeypatch, capsys):
    from pipelines.cli import main

    monkeypatch.setenv("FRAGILITE_PROGRESS", "1")
    out = tmp_path / "out"
    assert main(["run", "--territory", "rhone", "--by-departement", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    last = _last_state(captured.err.split("iris_departement[69]")[-1])
    assert re.search(r"départements: 100%.*1/1 .*département.*69", last), last
    summary = captured.out.strip().splitlines()[-1]
    assert re.fullmatch(
        rf"1 département\(s\) calculé\(s\) et fusionné\(s\) en [\d.]+ s : (\d+) IRIS dans {re.escape(str(out))}/layers/"
        r"france_iris\.parquet",
        summary,
    ), summary


def test_arcep_coverage_map_extraction_draws_its_bar(tmp_path, monkeypatch, capsys):
    """An ARCEP « Mon réseau mobile » map as published (one GeoPackage at the root of a 7z,
    named <trimestre>_couv_Metropole_<opérateur>_4G_data.gpkg.7z), extracted by `extract_7z`."""
    import geopandas as gpd
    import py7zr
    from shapely.geometry import box

    from sources.archives import extract_7z

    name = "2025_T3_couv_Metropole_OF_4G_data.gpkg"
    squares = [box(840_000 + 1000 * i, 6_520_000, 841_000 + 1000 * i, 6_521_000) for i in range(200)]
    coverage = gpd.GeoDataFrame(
        {
            "operateur": ["Orange"] * 200,
            "date": ["2025-09-30"] * 200,
            "techno": ["4G"] * 200,
            "usage": ["data"] * 200,
            "niveau": ["TBC", "BC"] * 100,
            "dept": ["69"] * 200,
        },
        geometry=squares,
        crs=2154,
    )
    coverage.to_file(tmp_path / name, layer="couverture", engine="pyogrio")
    archive = tmp_path / f"{name}.7z"
    with py7zr.SevenZipFile(archive, "w") as sz:
        sz.write(tmp_path / name, arcname=name)
    monkeypatch.setenv("FRAGILITE_PROGRESS", "1")
    extract_7z(archive, [name], tmp_path / "extrait")
    extracted = tmp_path / "extrait" / name
    assert extracted.read_bytes() == (tmp_path / name).read_bytes()
    last = _last_state(capsys.readouterr().err)
    size = tqdm.format_sizeof(extracted.stat().st_size, divisor=1000)
    assert last.startswith(f"extraction {archive.name}: 100%"), last
    assert f" {size}/{size} " in last and last.endswith("1 fichier(s) extrait(s)]"), last

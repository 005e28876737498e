"""Publication pack: every file read back with an independent reader."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely
from openpyxl import load_workbook
from PIL import Image
from shapely.geometry import box

from outputs.disclosure import apply_secret
from outputs.geoclip import write_pack

MAILLES = {"iris": "CODE_IRIS", "communes": "CODGEO", "epci": "EPCI", "departements": "DEP"}


@pytest.fixture(scope="module")
def out(materialized):
    result, layers = materialized
    assert result.success
    return layers.parent


def test_pack_tables_csv_and_xlsx(out):
    pack = out / "geoclip"
    dictionary = pd.read_csv(pack / "dictionnaire_indicateurs.csv", sep=";", dtype=str, keep_default_na=False)
    for maille, key in MAILLES.items():
        csv = pd.read_csv(pack / f"{maille}.csv", sep=";", dtype={key: str})
        assert csv.columns[0] == key and csv[key].is_unique
        assert "methode" not in csv.columns
        wb = load_workbook(pack / f"{maille}.xlsx", read_only=True)
        rows = list(wb.active.iter_rows(values_only=True))
        assert rows[0][0] == key and len(rows) - 1 == len(csv)
        assert all(isinstance(r[0], str) for r in rows[1:])  # codes stored as text
        indicator_columns = [
            c for c in csv.columns if c.endswith(("_num", "_den", "_taux", "_score", "_note")) or c.startswith("est_")
        ]
        assert set(indicator_columns) <= set(dictionary["code"]), maille
    iris = pd.read_csv(pack / "iris.csv", sep=";", dtype={"CODE_IRIS": str})
    assert iris["CODE_IRIS"].str.len().eq(9).all() and len(iris) == 751
    xl = load_workbook(pack / "dictionnaire_indicateurs.xlsx", read_only=True)
    assert next(xl.active.iter_rows(values_only=True))[:3] == ("code", "libelle", "definition")
    assert "Secret statistique" in (pack / "LISEZMOI.txt").read_text(encoding="utf-8")


def test_pack_outlines(out):
    for maille, key in MAILLES.items():
        shp = pyogrio.read_dataframe(out / "geoclip" / "contours" / f"{maille}_2154.shp")
        assert shp.crs.to_epsg() == 2154 and shp[key].map(type).eq(str).all()
        raw = json.loads((out / "geoclip" / "contours" / f"{maille}_4326.geojson").read_text(encoding="utf-8"))
        assert "crs" not in raw and len(raw["features"]) == len(shp)
        minx, miny, maxx, maxy = pyogrio.read_dataframe(
            out / "geoclip" / "contours" / f"{maille}_4326.geojson"
        ).total_bounds
        assert 4.2 < minx < maxx < 5.2 and 45.4 < miny < maxy < 46.4


def test_codes_keep_zeros_and_corsica(tmp_path):
    """A tiny layer with Ain and Corse-du-Sud codes survives every pack format."""
    layer = gpd.GeoDataFrame(
        {
            "CODE_IRIS": ["010010000", "2A0040101"],
            "NOM_IRIS": ["L'Abergement", "Ajaccio 1"],
            "caf_non_connectes_num": [3.0, 40.0],
            "caf_non_connectes_den": [10.0, 200.0],
            "caf_non_connectes_taux": [0.3, 0.2],
            "caf_non_connectes_score": [150.0, 100.0],
        },
        geometry=[box(850000, 6540000, 851000, 6541000), box(1180000, 6100000, 1181000, 6101000)],
        crs=2154,
    )
    dictionary = pd.DataFrame({"code": ["CODE_IRIS"], "libelle": ["Code IRIS"]})
    write_pack({"iris": layer}, dictionary, tmp_path, ["caf_non_connectes"], "lisez-moi")
    csv = pd.read_csv(tmp_path / "iris.csv", sep=";", dtype={"CODE_IRIS": str})
    assert csv["CODE_IRIS"].tolist() == ["010010000", "2A0040101"]
    # secret statistique: 3 allocataires non connectés cannot be published, nor what reveals it
    assert csv.loc[0, ["caf_non_connectes_num", "caf_non_connectes_den", "caf_non_connectes_taux"]].isna().all()
    assert bool(csv.loc[0, "caf_non_connectes_secret"]) and csv.loc[1, "caf_non_connectes_num"] == 40
    caf = csv[["caf_non_connectes_num", "caf_non_connectes_den"]].to_numpy()
    assert not ((caf < 5) & ~np.isnan(caf)).any()
    wb = load_workbook(tmp_path / "iris.xlsx", read_only=True)
    assert [r[0] for r in wb.active.iter_rows(min_row=2, values_only=True)] == ["010010000", "2A0040101"]
    shp = pyogrio.read_dataframe(tmp_path / "contours" / "iris_2154.shp")
    assert shp["CODE_IRIS"].tolist() == ["010010000", "2A0040101"]
    gj = json.loads((tmp_path / "contours" / "iris_4326.geojson").read_text(encoding="utf-8"))
    assert [f["properties"]["CODE_IRIS"] for f in gj["features"]] == ["010010000", "2A0040101"]


def test_apply_secret_keeps_blanks_blank():
    table = pd.DataFrame({"caf_x_num": [np.nan, 4.0, 5.0], "caf_x_den": [10.0, 10.0, 10.0]})
    out = apply_secret(table, ["caf_x"], 5)
    assert out["caf_x_secret"].tolist() == [False, True, False]
    assert np.isnan(out.loc[0, "caf_x_num"]) and np.isnan(out.loc[1, "caf_x_num"]) and out.loc[2, "caf_x_num"] == 5
    # blanking an already blanked table (the pack is built from the layers) keeps the flags
    assert apply_secret(out, ["caf_x"], 5)["caf_x_secret"].tolist() == [False, True, False]
    # the configured threshold is the one applied
    assert apply_secret(table, ["caf_x"], 6)["caf_x_secret"].tolist() == [False, True, True]


def test_web_layers_are_valid_coverages_with_fewer_vertices(out):
    source = gpd.read_parquet(out / "layers" / "iris.parquet")
    before = int(shapely.get_num_coordinates(source.geometry.to_numpy()).sum())
    counts = {}
    for tolerance in (10, 50):
        web = pyogrio.read_dataframe(out / "web" / f"iris_{tolerance}m.geojson")
        assert len(web) == 751 and web.crs.to_epsg() == 4326
        assert shapely.coverage_is_valid(web.to_crs(2154).geometry.to_numpy())
        counts[tolerance] = int(shapely.get_num_coordinates(web.geometry.to_numpy()).sum())
    assert counts[50] < counts[10] < before


def test_qgis_styles_and_project(out):
    for maille in MAILLES:
        root = ET.parse(out / "layers" / f"{maille}.qml").getroot()
        renderer = root.find("renderer-v2")
        assert renderer.get("type") == "RuleRenderer" and root.get("version").startswith("3.22.")
        rules = [(r.get("label"), r.get("filter")) for r in renderer.find("rules")]
        assert all('"score_global"' in f for _, f in rules)
        assert len(rules) == 1 or rules[0][0].startswith("jusqu'à ")
        assert (rules[-1] == ("non noté", '"score_global" IS NULL')) == (maille == "iris")  # 5 IRIS unscored
    project = ET.parse(out / "fragilite.qgs").getroot()
    sources = [m.findtext("datasource") for m in project.iter("maplayer")]
    assert len(sources) == 6  # the places of mediation and the IRIS by priority, then the four mailles
    for source in sources:
        path = source.split("|")[0]
        assert (out / path).exists(), path
        assert pyogrio.read_info(out / path, layer=source.split("layername=")[1])["features"] > 0


def test_maps_are_pngs(out):
    for maille in MAILLES:
        data = (out / "cartes" / f"{maille}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
        image = Image.open(io.BytesIO(data))
        image.load()  # decoded whole: chunks, checksums and compressed rows are valid
        assert image.mode == "RGB" and round(image.info["dpi"][0]) == 150
        assert 0.8 * 8 * 150 < image.width <= 8 * 150 + 30  # the sources line wrapped within the figure


def _chromium() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and os.environ.get("FRAGILITE_REQUIRE_CHROMIUM"):
        pytest.fail("chromium is required here (FRAGILITE_REQUIRE_CHROMIUM is set) but not installed")
    return found


def test_report_is_self_contained_and_shows_the_map(out, tmp_path):
    html = (out / "rapport.html").read_text(encoding="utf-8")
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html
    assert html.count("data:image/png;base64,") == 3  # score map, histogram, priority map
    assert "IRIS les plus fragiles" in html and "Personnes à risque" in html
    chromium = _chromium()
    if chromium is None:
        pytest.skip("chromium not installed (apt-get install chromium)")
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1200,1400",
            f"--screenshot={shot}",
            (out / "rapport.html").as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    from matplotlib.image import imread

    pixels = imread(shot)[..., :3]
    # the map's darkest class (#800026) and lightest (#ffffcc) are on screen
    dark = np.all(np.abs(pixels - np.array([0x80, 0x00, 0x26]) / 255) < 0.06, axis=-1).sum()
    light = np.all(np.abs(pixels - np.array([0xFF, 0xFF, 0xCC]) / 255) < 0.04, axis=-1).sum()
    assert dark > 2000 and light > 2000, (dark, light)

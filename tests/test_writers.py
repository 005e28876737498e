"""The vectorised writers (CSV, XLSX, GeoJSON), the coverage dissolve and the map paths, on
hand-made inputs, read back with independent readers (pandas, openpyxl, calamine, pyogrio, json)."""

from __future__ import annotations

import json
import zipfile

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely
from openpyxl import load_workbook
from python_calamine import CalamineWorkbook
from shapely.geometry import MultiPolygon, Polygon, box

from outputs.files import output_lock, output_transaction, write_all
from outputs.layers import write_geojson
from outputs.maps import MplPath, PathCollection, class_path, plt
from outputs.tables import column_letter, json_rows, write_csv, write_xlsx
from outputs.web import CoverageError, simplify_layers
from transforms.mailles import dissolve_coverage


@pytest.fixture
def table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "CODGEO": ["01001", "2A004", "69123"],
            "NOM": ["L'Abergement-Clémenciat", 'A & <B> "C"; D\nE', None],
            "taux": [0.1 + 0.2, np.nan, 1e-7],
            "effectif": np.array([3, 0, 12], dtype="int32"),
            "expose": [True, False, True],
            "secret": pd.array([True, None, False], dtype="boolean"),
            "infini": [np.inf, 1.5, -np.inf],
        }
    )


def test_csv_round_trip(table, tmp_path):
    write_csv(table, tmp_path / "t.csv")
    back = pd.read_csv(tmp_path / "t.csv", sep=";", dtype={"CODGEO": str})
    assert back["CODGEO"].tolist() == ["01001", "2A004", "69123"]
    assert back.loc[1, "NOM"] == 'A & <B> "C"; D\nE' and pd.isna(back.loc[2, "NOM"])
    assert back.loc[0, "taux"] == 0.1 + 0.2  # shortest exact form, not rounded
    assert pd.isna(back.loc[1, "taux"]) and back.loc[2, "taux"] == 1e-7
    assert back["effectif"].tolist() == [3, 0, 12]
    assert back["expose"].tolist() == [True, False, True]
    text = (tmp_path / "t.csv").read_text(encoding="utf-8")
    assert text.startswith("CODGEO;NOM;taux;") and "0.30000000000000004" in text


def test_xlsx_read_back_by_two_readers(table, tmp_path):
    path = tmp_path / "t.xlsx"
    write_xlsx(table, path, "iris")
    rows = list(load_workbook(path, read_only=True)["iris"].iter_rows(values_only=True))
    assert rows[0] == tuple(table.columns)
    assert [r[0] for r in rows[1:]] == ["01001", "2A004", "69123"]  # text cells, zeros kept
    assert rows[2][1] == 'A & <B> "C"; D\nE' and rows[3][1] is None
    assert rows[1][2] == 0.1 + 0.2 and rows[2][2] is None and rows[3][2] == 1e-7
    assert [r[3] for r in rows[1:]] == [3, 0, 12]
    assert [r[4] for r in rows[1:]] == [True, False, True]
    assert [r[5] for r in rows[1:]] == [True, None, False]
    assert [r[6] for r in rows[1:]] == [None, 1.5, None]  # no spreadsheet form for ±inf: blank
    sheet = CalamineWorkbook.from_path(str(path)).get_sheet_by_name("iris").to_python()
    assert sheet[1][0] == "01001" and sheet[2][1] == 'A & <B> "C"; D\nE' and sheet[3][3] == 12
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None
        assert "xl/worksheets/sheet1.xml" in archive.namelist()


def test_xlsx_drops_characters_xml_forbids(tmp_path):
    write_xlsx(pd.DataFrame({"nom": ["a\x01b"]}), tmp_path / "t.xlsx", "x")
    assert next(load_workbook(tmp_path / "t.xlsx").active.iter_rows(min_row=2, values_only=True)) == ("ab",)


def test_column_letters():
    assert [column_letter(i) for i in (0, 25, 26, 27, 51, 52, 701, 702)] == [
        "A",
        "Z",
        "AA",
        "AB",
        "AZ",
        "BA",
        "ZZ",
        "AAA",
    ]


def test_json_rows(table):
    rows = [json.loads(r) for r in json_rows(table)]
    assert list(rows[0]) == list(table.columns)
    assert rows[0]["taux"] == 0.1 + 0.2 and rows[1]["taux"] is None and rows[2]["NOM"] is None
    assert rows[1]["NOM"] == 'A & <B> "C"; D\nE' and rows[0]["NOM"] == "L'Abergement-Clémenciat"
    assert rows[1]["secret"] is None and rows[0]["expose"] is True and rows[2]["effectif"] == 12


def test_geojson_is_rfc7946(tmp_path):
    # A clockwise exterior with a counter-clockwise hole, in Lambert-93 (Lyon), and a multipolygon.
    shell = [(842000, 6519000), (842000, 6521000), (844000, 6521000), (844000, 6519000)]
    hole = [(842500, 6519500), (843500, 6519500), (843500, 6520500), (842500, 6520500)]
    layer = gpd.GeoDataFrame(
        {"CODE_IRIS": ["691230101", "691230102"], "score": [101.5, np.nan]},
        geometry=[
            Polygon(shell, [hole]),
            MultiPolygon([box(845000, 6519000, 846000, 6520000), box(847000, 6519000, 848000, 6520000)]),
        ],
        crs=2154,
    )
    path = tmp_path / "l.geojson"
    write_geojson(layer, path)
    raw = json.loads(path.read_text(encoding="utf-8"))
    assert raw["type"] == "FeatureCollection" and "crs" not in raw
    first, second = raw["features"]
    assert first["properties"] == {"CODE_IRIS": "691230101", "score": 101.5}
    assert second["properties"]["score"] is None and second["geometry"]["type"] == "MultiPolygon"
    exterior, interior = (np.array(r) for r in first["geometry"]["coordinates"])
    assert 4.7 < exterior[:, 0].min() < 4.9 and 45.7 < exterior[:, 1].min() < 45.8  # lon, lat
    assert shapely.LinearRing(exterior).is_ccw and not shapely.LinearRing(interior).is_ccw  # right-hand rule
    assert all(len(str(v).split(".")[-1]) <= 6 for v in exterior.ravel())
    back = pyogrio.read_dataframe(path)
    assert back.crs.to_epsg() == 4326 and back["CODE_IRIS"].tolist() == ["691230101", "691230102"]
    assert back.to_crs(2154).geometry.area.tolist() == pytest.approx([3e6, 2e6], rel=1e-4)  # 6 decimals ≈ 0.1 m


def test_geojson_needs_a_crs(tmp_path):
    with pytest.raises(ValueError, match="no CRS"):
        write_geojson(gpd.GeoDataFrame(geometry=[box(0, 0, 1, 1)]), tmp_path / "x.geojson")


def test_dissolve_coverage():
    cells = np.array([box(0, 0, 1, 1), box(1, 0, 2, 1), box(2, 0, 3, 1), box(3, 0, 4, 1)])
    keys, outlines = dissolve_coverage(cells, pd.Series(["b", "a", "b", None]))
    assert keys.tolist() == ["a", "b"]  # sorted, missing key left out
    assert outlines[0] is cells[1]  # a single outline is kept as it is
    assert shapely.equals(outlines[1], MultiPolygon([box(0, 0, 1, 1), box(2, 0, 3, 1)]))
    keys, outlines = dissolve_coverage(cells, pd.Series(["x"] * 4))
    assert shapely.equals(outlines[0], box(0, 0, 4, 1)) and outlines[0].geom_type == "Polygon"


def test_web_levels_share_borders_and_refuse_invalid_coverage():
    # Four IRIS in two communes, with borders densified so there is something to simplify.
    def cell(x0, x1):
        return shapely.segmentize(box(x0, 0, x1, 1000), 10)

    iris = gpd.GeoDataFrame(
        {"INSEE_COM": ["01001", "01001", "01002", "01002"]},
        geometry=[cell(0, 1000), cell(1000, 2000), cell(2000, 3000), cell(3000, 4000)],
        crs=2154,
    )
    communes = gpd.GeoDataFrame(
        {"INSEE_COM": ["01002", "01001"]},  # not in IRIS order
        geometry=[cell(2000, 4000), cell(0, 2000)],
        crs=2154,
    )
    iris["CODE_IRIS"] = ["010010101", "010010102", "010020101", "010020102"]
    web = simplify_layers({"iris": iris, "communes": communes}, [50, 10])
    assert sorted(web.outlines) == [("communes", 10), ("communes", 50), ("iris", 10), ("iris", 50)]
    assert web.finest == 10
    for (maille, tolerance), outlines in web.outlines.items():
        stats = web.stats[f"{maille}_{tolerance:g}m"]
        assert stats.valid_before and stats.valid_after and stats.vertices_after < stats.vertices_before
        assert outlines.crs.to_epsg() == 2154 and outlines.index.equals(
            iris.index if maille == "iris" else communes.index
        )
    # Row-aligned with the communes layer (01002 first); a commune is the union of its simplified IRIS.
    commune_2 = web.outlines[("communes", 50)].iloc[0]
    assert shapely.equals(commune_2, shapely.union(*web.outlines[("iris", 50)].iloc[2:4]))
    overlapping = gpd.GeoDataFrame(geometry=[box(0, 0, 10, 10), box(5, 5, 15, 15)], crs=2154)
    overlapping["CODE_IRIS"] = ["010010101", "010010102"]
    with pytest.raises(CoverageError, match="pas une couverture valide"):
        simplify_layers({"iris": overlapping}, [1])
    with pytest.raises(CoverageError, match="projection en mètres"):
        simplify_layers({"iris": overlapping.set_crs(4326, allow_override=True)}, [1])


def test_class_path_keeps_holes_and_parts():
    donut = Polygon([(0, 0), (10, 0), (10, 10), (0, 10)], [[(3, 3), (3, 7), (7, 7), (7, 3)]])
    pair = MultiPolygon([box(20, 0, 21, 1), box(30, 0, 31, 1)])
    path = class_path(np.array([donut, None, pair]), tolerance=0.01)
    assert (path.codes == MplPath.MOVETO).sum() == 4  # donut shell and hole, two squares
    assert len(class_path(np.array([None]), tolerance=1).vertices) == 0
    # Drawn, the hole stays empty and both squares are filled: 400 × 10 px over x 0–40, y 0–1… 10.
    fig, ax = plt.subplots(figsize=(4, 1), dpi=100)
    fig.subplots_adjust(0, 0, 1, 1)
    ax.add_collection(PathCollection([path], facecolors=["red"], edgecolors="none"))
    ax.set_xlim(0, 40)
    ax.set_ylim(0, 10)
    ax.set_axis_off()
    fig.canvas.draw()
    pixels = np.asarray(fig.canvas.buffer_rgba())[::-1, :, :3]  # row 0 = y 0
    plt.close(fig)
    red, white = (255, 0, 0), (255, 255, 255)
    assert tuple(pixels[50, 50]) == white and tuple(pixels[10, 10]) == red  # hole (5, 5), shell (1, 1)
    assert tuple(pixels[5, 205]) == red and tuple(pixels[5, 305]) == red and tuple(pixels[5, 255]) == white


def _files(folder):
    return {str(p.relative_to(folder)): p.read_text(encoding="utf-8") for p in sorted(folder.rglob("*")) if p.is_file()}


def test_an_output_set_is_published_whole_or_not_at_all(tmp_path):
    out = tmp_path / "out"
    with output_transaction(out, "run-1") as stage:
        write_all({stage / "layers" / "a.txt": lambda tmp: tmp.write_text("1", encoding="utf-8")})
    (out / ".brouillon.tmp.txt").write_text("mine", encoding="utf-8")  # a user's own file
    first = _files(out)
    assert first["layers/a.txt"] == "1" and json.loads(first["manifeste.json"])["run_id"] == "run-1"
    with pytest.raises(RuntimeError, match="disk full"):  # a run failing after some files are written
        with output_transaction(out, "run-2") as stage:
            write_all({stage / "layers" / "a.txt": lambda tmp: tmp.write_text("2", encoding="utf-8")})
            raise RuntimeError("disk full")
    assert _files(out) == first  # byte for byte, and no staging folder left beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.fragilite-verrou", "out"]
    with output_transaction(out, "run-3", {"rp": "abc"}) as stage:
        write_all({stage / "cartes" / "b.txt": lambda tmp: tmp.write_text("3", encoding="utf-8")})
    after = _files(out)
    # files the run did not rewrite are carried over (a partial run, the user's file)
    assert after["layers/a.txt"] == "1" and after["cartes/b.txt"] == "3" and after[".brouillon.tmp.txt"] == "mine"
    manifest = json.loads(after["manifeste.json"])
    assert manifest["entrees"] == {"rp": "abc"} and "cartes/b.txt" in manifest["fichiers"]


def test_a_commit_killed_mid_swap_is_put_right_by_the_next_lock(tmp_path):
    out = tmp_path / "out"
    with output_transaction(out, "run-1") as stage:
        write_all({stage / "a.txt": lambda tmp: tmp.write_text("1", encoding="utf-8")})
    before = _files(out)
    out.rename(tmp_path / ".out.fragilite-precedent")  # killed between the two renames of the swap
    (tmp_path / ".out.fragilite-run-2.staging").mkdir()
    with output_lock(out):
        pass
    assert _files(out) == before and sorted(p.name for p in tmp_path.iterdir()) == [".out.fragilite-verrou", "out"]


def test_a_failing_writer_leaves_no_file(tmp_path):
    def broken(tmp):
        tmp.write_text("half", encoding="utf-8")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_all({tmp_path / "ok.txt": lambda tmp: tmp.write_text("x", encoding="utf-8"), tmp_path / "ko.txt": broken})
    assert not list(tmp_path.iterdir())


def test_classes_are_right_closed_and_labelled_by_their_bounds():
    """A value equal to a bound belongs to the class whose label ends at that bound, in the PNG
    maps (`class_index`) as in QGIS (the same bounds in each rule's filter)."""
    from config.settings import Classification
    from outputs.styles import class_filters, class_index, classify

    spec = Classification(scheme="EqualInterval", k=3)
    values = pd.Series([10.0, 20.0, 30.0, 40.0, np.nan, 40.0])
    classes = classify(values, spec)
    assert classes.breaks == (20.0, 30.0, 40.0) and classes.decimals == 0 and classes.missing == 1
    assert classes.labels == ("jusqu'à 20", "plus de 20 à 30", "plus de 30")
    assert class_index(classes, values.to_numpy()).tolist() == [0, 0, 1, 2, -1, 2]
    assert class_filters(classes) == (
        '"score_global" <= 20',
        '"score_global" > 20 AND "score_global" <= 30',
        '"score_global" > 30',
    )
    # bounds too close for whole numbers keep the decimals that tell them apart, in French
    close = classify(pd.Series([1000.0, 1000.2, 1000.4, 1000.6]), Classification(scheme="EqualInterval", k=2))
    assert close.decimals == 1 and close.breaks == (1000.3, 1000.6)
    assert close.labels == ("jusqu'à 1\u202f000,3", "plus de 1\u202f000,3")


def test_a_single_value_is_one_class_named_by_it():
    """The département is its own reference: every score is 100, not "moins de 100" in the
    darkest colour."""
    from config.settings import Classification
    from outputs.styles import class_filters, classify

    classes = classify(pd.Series([100.0]), Classification())
    assert classes.labels == ("100",) and classes.breaks == (100.0,)
    assert classes.colors == ("#fd8c3c",)  # the middle of YlOrRd, neither end
    assert class_filters(classes) == ('"score_global" IS NOT NULL',)


def test_qgis_files_for_qgis_322_with_crs_order_and_unscored_class():
    import xml.etree.ElementTree as ET

    from config.settings import Classification
    from outputs.styles import MISSING_COLOR, classify, qgis_project, qml

    spec = Classification(scheme="EqualInterval", k=2)
    with_missing = classify(pd.Series([50.0, 100.0, np.nan]), spec)
    complete = classify(pd.Series([90.0, 110.0]), spec)
    style = ET.fromstring(qml(with_missing))
    assert style.get("version") == "3.22.0-Białowieża"
    rules = style.find("renderer-v2").find("rules")
    assert [(r.get("label"), r.get("filter")) for r in rules][-1] == ("non noté", '"score_global" IS NULL')
    assert len(rules) == 3 and len(ET.fromstring(qml(complete)).find("renderer-v2").find("rules")) == 2
    grey = style.find("renderer-v2").find("symbols")[-1].find("layer").find("Option")
    assert {o.get("name"): o.get("value") for o in grey}["color"] == "217,217,217,255" and MISSING_COLOR == "#d9d9d9"

    layers = [
        ("IRIS", "./layers/iris.gpkg", "iris", with_missing),
        ("Communes", "./layers/communes.gpkg", "communes", complete),
    ]
    project = ET.fromstring(qgis_project("Fragilité & co", layers, 2154, (1.0, 2.0, 3.0, 4.0)))
    assert project.get("version") == "3.22.0-Białowieża" and project.get("projectname") == "Fragilité & co"
    srs = project.find("projectCrs/spatialrefsys")
    assert srs.findtext("authid") == "EPSG:2154" and srs.findtext("srsid") == "145"
    assert srs.findtext("wkt").startswith("PROJCRS[") and "+proj=lcc" in srs.findtext("proj4")
    assert project.findtext("properties/SpatialRefSys/ProjectionsEnabled") == "1"
    tree = project.find("layer-tree-group")
    assert [(n.get("name"), n.get("checked")) for n in tree.iter("layer-tree-layer")] == [
        ("IRIS", "Qt::Checked"),
        ("Communes", "Qt::Unchecked"),
    ]
    assert [n.get("id") for n in project.find("layerorder")] == ["iris_fragilite", "communes_fragilite"]
    view = project.find("ProjectViewSettings/DefaultViewExtent")
    assert [float(view.get(k)) for k in ("xmin", "ymin", "xmax", "ymax")] == [1.0, 2.0, 3.0, 4.0]
    # overseas: the département's UTM projection, in full
    reunion = ET.fromstring(qgis_project("La Réunion", layers, 2975)).find("projectCrs/spatialrefsys")
    assert reunion.findtext("authid") == "EPSG:2975" and "+zone=40" in reunion.findtext("proj4")


def test_geopackage_version_read_quietly_by_gdal_36(tmp_path):
    """GeoPackage 1.2 (`PRAGMA user_version` 10200): GDAL before 3.8 warns on the 1.4 recent
    GDALs write by default."""
    import sqlite3

    from outputs.layers import write_layer

    layer = gpd.GeoDataFrame({"CODE_IRIS": ["690010000"]}, geometry=[box(0, 0, 1, 1)], crs=2154)
    write_layer(layer, tmp_path, "iris", {"methode": "mednum_2019"})
    with sqlite3.connect(tmp_path / "iris.gpkg") as db:
        assert db.execute("PRAGMA application_id").fetchone()[0] == 0x47504B47  # "GPKG"
        assert db.execute("PRAGMA user_version").fetchone()[0] == 10200
    assert pyogrio.read_dataframe(tmp_path / "iris.gpkg")["CODE_IRIS"].tolist() == ["690010000"]


def _caution_layer() -> gpd.GeoDataFrame:
    """Four squares: two reliable and complete, one unreliable, one scored on fewer indicators."""
    return gpd.GeoDataFrame(
        {
            "score_global": [80.0, 120.0, 100.0, 90.0],
            "fiabilite": ["bonne", "bonne", "faible", "bonne"],
            "nb_indicateurs_notes": [9, 9, 9, 7],
        },
        geometry=[
            box(0, 0, 1000, 1000),
            box(1000, 0, 2000, 1000),
            box(0, 1000, 1000, 2000),
            box(1000, 1000, 2000, 2000),
        ],
        crs=2154,
    )


def test_maps_hatch_unreliable_and_outline_incomplete_scores_with_legend_entries():
    """Issue « scores qui veulent dire la même chose »: a reader of the map sees which scores rest
    on few residents or on fewer indicators."""
    from config.settings import Classification
    from outputs import maps
    from outputs.styles import classify

    layer = _caution_layer()
    classes = classify(layer["score_global"], Classification(field="score_global", scheme="Quantiles", k=2))
    seen = {}
    real_legend = maps.plt.Axes.legend

    def legend(ax, *args, **kwargs):
        seen["labels"] = [h.get_label() for h in kwargs["handles"]]
        seen["hatches"] = [c.get_hatch() for c in ax.collections]
        return real_legend(ax, *args, **kwargs)

    maps.plt.Axes.legend = legend
    try:
        png, _ = maps.choropleth_png(layer, classes, title="t", sources="s")
    finally:
        maps.plt.Axes.legend = real_legend
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert maps.UNRELIABLE_LABEL in seen["labels"] and "score sur moins de 9 indicateurs" in seen["labels"]
    assert maps.CAUTION_HATCH in seen["hatches"]


def test_map_titles_with_dollar_signs_are_drawn_as_written():
    """A territory label such as `Pays $\\frac{1` used to be read as mathematics and crash."""
    from config.settings import Classification
    from outputs import maps
    from outputs.styles import classify

    layer = _caution_layer()
    classes = classify(layer["score_global"], Classification(field="score_global", scheme="Quantiles", k=2))
    png, _ = maps.choropleth_png(layer, classes, title="Pays $\\frac{1$ et $x^2$", sources="coût 5 $")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert maps.histogram_png([90.0, 110.0], title="$\\frac{")[:8] == b"\x89PNG\r\n\x1a\n"

"""The published QGIS project opened by real QGIS (PyQGIS, offscreen), as a GIS user opens it.

PyQGIS comes with QGIS (Debian: `apt-get install python3-qgis qgis-providers`, QGIS 3.22 LTR in
bookworm, the oldest QGIS the project supports) and runs under the system Python, not the
project's virtual environment: a small script runs in `/usr/bin/python3` on the outputs of the
sample run and reports what QGIS sees as JSON; the assertions are made here. Skipped when that
Python has no QGIS, unless FRAGILITE_REQUIRE_QGIS is set (CI), where it fails instead.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest

from config.settings import load_publication
from outputs.styles import (
    MISSING_COLOR,
    MISSING_LABEL,
    PLACE_COLOR,
    PLACE_STYLE,
    PRIORITY_MISSING_LABEL,
    PRIORITY_STYLE,
    QGIS_VERSION,
    class_index,
    classify,
    qgis_project,
)

SYSTEM_PYTHON = "/usr/bin/python3"
# The places of mediation on top (shown), the IRIS by priority (hidden), then the score layers.
DISPLAY_ORDER = ["Lieux de médiation", "IRIS — priorité", "IRIS", "Communes", "EPCI", "Départements"]
SCORED = ["IRIS", "Communes", "EPCI", "Départements"]
MAILLES = ["iris", "communes", "epci", "departements"]
RENDER_SIZE = 1000  # pixels, square

# Runs inside QGIS's Python: argv = output folder, JSON report, PNG, QGIS profile folder, image
# size in pixels, then other projects whose CRS to report.
QGIS_SCRIPT = r"""
import json, sys
from pathlib import Path
from qgis.core import (
    Qgis, QgsApplication, QgsFeatureRequest, QgsMapRendererParallelJob, QgsMapSettings, QgsProject,
    QgsProjectVersion, QgsVectorLayer, QgsWkbTypes,
)
from qgis.PyQt.QtCore import QSize
from qgis.PyQt.QtGui import QColor

out, report, png, profile, size = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
extra_projects = sys.argv[6:]
app = QgsApplication([], False, profile)
app.initQgis()
messages = []
QgsApplication.messageLog().messageReceived.connect(
    lambda text, tag, level: messages.append({"tag": tag, "level": int(level), "text": text})
)

def rule_facts(layer):
    # each rule: label, filter, colour and the key (first field) of each feature it draws
    key = next(f.name() for f in layer.fields() if f.name() != "fid")
    facts = []
    for rule in layer.renderer().rootRule().children():
        request = QgsFeatureRequest().setFilterExpression(rule.filterExpression())
        facts.append({
            "label": rule.label(),
            "filter": rule.filterExpression(),
            "color": rule.symbol().color().name(),
            "keys": sorted(str(feature[key]) for feature in layer.getFeatures(request)),
        })
    return facts

project = QgsProject.instance()
facts = {"qgis": Qgis.version(), "read": project.read(str(out / "fragilite.qgs"))}
facts["crs"] = project.crs().authid()
facts["crs_valid"] = project.crs().isValid()
facts["saved_with"] = project.lastSaveVersion().text()
facts["saved_with_newer"] = project.lastSaveVersion() > QgsProjectVersion(Qgis.version())
view = project.viewSettings().defaultViewExtent()
facts["view"] = None if view.isNull() else [view.xMinimum(), view.yMinimum(), view.xMaximum(), view.yMaximum()]
facts["view_crs"] = view.crs().authid()
facts["layers"] = []
for node in project.layerTreeRoot().findLayers():
    layer = node.layer()
    facts["layers"].append({
        "name": node.name(),
        "checked": node.itemVisibilityChecked(),
        "valid": layer.isValid(),
        "crs": layer.crs().authid(),
        "features": layer.featureCount(),
        "geometry": QgsWkbTypes.displayString(layer.wkbType()),
        "renderer": layer.renderer().type(),
        "rules": rule_facts(layer),
    })
facts["drawing_order"] = [layer.name() for layer in project.layerTreeRoot().layerOrder()]

# what is drawn on open: the checked layers, on the project's CRS and view
visible = project.layerTreeRoot().checkedLayers()
settings = QgsMapSettings()
settings.setLayers(visible)
settings.setDestinationCrs(project.crs())
settings.setOutputSize(QSize(size, size))
settings.setOutputDpi(96)
settings.setBackgroundColor(QColor(255, 255, 255))
settings.setExtent(view if not view.isNull() else visible[0].extent())
job = QgsMapRendererParallelJob(settings)
job.start()
job.waitForFinished()
job.renderedImage().save(png, "PNG")
shown = settings.visibleExtent()
facts["render"] = {
    "layers": [layer.name() for layer in visible],
    "extent": [shown.xMinimum(), shown.yMinimum(), shown.xMaximum(), shown.yMaximum()],
    "errors": [f"{e.layerID}: {e.message}" for e in job.errors()],
}

# the style beside the GeoPackage, which QGIS applies by itself to a layer opened alone
alone = QgsVectorLayer(str(out / "layers" / "iris.gpkg") + "|layername=iris", "iris", "ogr")
facts["alone"] = {"valid": alone.isValid(), "renderer": alone.renderer().type(), "rules": rule_facts(alone)}

facts["extra_projects"] = {}
for path in extra_projects:
    project.clear()
    ok = project.read(path)
    facts["extra_projects"][Path(path).stem] = {"read": ok, "crs": project.crs().authid()}
facts["messages"] = messages
Path(report).write_text(json.dumps(facts, ensure_ascii=False, indent=1), encoding="utf-8")
project.clear()
del alone, job, settings, visible  # before exitQgis, or QGIS crashes on the way out
app.exitQgis()
"""


def _qgis_python() -> str:
    """The system Python when it has PyQGIS; a skip (or, with FRAGILITE_REQUIRE_QGIS, a failure)
    otherwise."""
    env = {**_qgis_env(), "QT_QPA_PLATFORM": "offscreen"}
    found = (
        os.path.exists(SYSTEM_PYTHON)
        and subprocess.run(
            [SYSTEM_PYTHON, "-c", "import qgis.core"], env=env, capture_output=True, timeout=120
        ).returncode
        == 0
    )
    if found:
        return SYSTEM_PYTHON
    if os.environ.get("FRAGILITE_REQUIRE_QGIS"):
        pytest.fail(f"PyQGIS est requis ici (FRAGILITE_REQUIRE_QGIS) mais {SYSTEM_PYTHON} ne l'importe pas")
    pytest.skip("PyQGIS absent (apt-get install python3-qgis qgis-providers)")


def _qgis_env() -> dict[str, str]:
    """The environment without the virtual environment's Python settings."""
    drop = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"}
    return {k: v for k, v in os.environ.items() if k not in drop}


@pytest.fixture(scope="module")
def out(materialized) -> Path:
    result, layers = materialized
    assert result.success
    return layers.parent


@pytest.fixture(scope="module")
def seen(out, tmp_path_factory) -> dict:
    """What QGIS reports on the published project, plus two projects written for overseas CRSs
    (one QGIS knows by id, one it must read from the WKT)."""
    python = _qgis_python()
    work = tmp_path_factory.mktemp("qgis")
    extra = []
    for epsg in (2975, 32740):  # La Réunion's RGR92 / UTM 40S; WGS 84 / UTM 40S
        path = work / f"epsg_{epsg}.qgs"
        path.write_text(qgis_project("Outre-mer", [], epsg), encoding="utf-8")
        extra.append(str(path))
    script = work / "qgis_check.py"
    script.write_text(QGIS_SCRIPT, encoding="utf-8")
    report, png = work / "qgis.json", work / "carte_qgis.png"
    runtime = work / "runtime"
    runtime.mkdir(mode=0o700)
    env = {**_qgis_env(), "QT_QPA_PLATFORM": "offscreen", "XDG_RUNTIME_DIR": str(runtime)}
    done = subprocess.run(
        [python, str(script), str(out), str(report), str(png), str(work / "profil"), str(RENDER_SIZE), *extra],
        env=env,
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    facts = json.loads(report.read_text(encoding="utf-8"))
    facts["stderr"] = done.stderr
    facts["png"] = png
    return facts


def test_project_has_its_crs_and_opens_on_the_territory(seen, out):
    assert seen["read"] and seen["crs_valid"] and seen["crs"] == "EPSG:2154", seen["crs"]
    iris = gpd.read_parquet(out / "layers" / "iris.parquet")
    assert seen["view_crs"] == "EPSG:2154" and seen["view"] is not None
    np.testing.assert_allclose(seen["view"], iris.total_bounds, atol=1.0)
    # a CRS QGIS knows by its id, and one it reads from the WKT alone
    assert seen["extra_projects"] == {
        "epsg_2975": {"read": True, "crs": "EPSG:2975"},
        "epsg_32740": {"read": True, "crs": "EPSG:32740"},
    }


def _layer(seen: dict, name: str) -> dict:
    return next(layer for layer in seen["layers"] if layer["name"] == name)


def test_layers_valid_ordered_and_only_places_and_iris_shown(seen):
    layers = seen["layers"]
    assert [layer["name"] for layer in layers] == DISPLAY_ORDER
    assert seen["drawing_order"] == DISPLAY_ORDER  # places drawn on top, then the IRIS
    assert [layer["checked"] for layer in layers] == [True, False, True, False, False, False]
    assert all(layer["valid"] and layer["crs"] == "EPSG:2154" for layer in layers)
    assert [layer["features"] for layer in layers] == [46, 751, 751, 275, 16, 1]
    assert [layer["geometry"] for layer in layers][:3] == ["Point", "MultiPolygon", "MultiPolygon"]
    assert seen["render"]["layers"] == ["Lieux de médiation", "IRIS"] and seen["render"]["errors"] == []


def test_places_and_priority_layers_draw_every_feature_in_its_class(seen, out):
    """The places: filled circles where the file gives coordinates, hollow ones at a commune's
    centre; the IRIS by priority: the classes and colours of `cartes/priorite.png`."""
    places = gpd.read_parquet(out / "layers" / "lieux_mediation.parquet", columns=["id", "localisation", "geometry"])
    layer = _layer(seen, "Lieux de médiation")
    assert layer["renderer"] == "RuleRenderer"
    assert [(r["label"], r["color"], r["keys"]) for r in layer["rules"]] == [
        (PLACE_STYLE["coordonnees"], PLACE_COLOR, sorted(places.loc[places["localisation"] == "coordonnees", "id"])),
        (PLACE_STYLE["commune"], "#ffffff", sorted(places.loc[places["localisation"] == "commune", "id"])),
    ]
    iris = pd.read_parquet(out / "layers" / "iris.parquet", columns=["CODE_IRIS", "priorite"])
    classes = iris["priorite"].astype("object")
    expected = [
        (label, color, sorted(iris.loc[classes == value, "CODE_IRIS"]))
        for value, (color, label) in PRIORITY_STYLE.items()
    ]
    expected.append((PRIORITY_MISSING_LABEL, MISSING_COLOR, sorted(iris.loc[classes.isna(), "CODE_IRIS"])))
    priority = _layer(seen, "IRIS — priorité")
    assert [(r["label"], r["color"], r["keys"]) for r in priority["rules"]] == expected
    assert len(expected[0][2]) > 0 and sum(len(r["keys"]) for r in priority["rules"]) == 751


def test_every_feature_in_the_class_of_the_png_maps(seen, out):
    """QGIS draws each feature in the class `outputs.maps` paints it in: same labels, colours and
    members, so the project and the PNG maps agree, "non noté" included."""
    spec = load_publication().classification
    for maille, name in zip(MAILLES, SCORED):
        layer = _layer(seen, name)
        table = pd.read_parquet(out / "layers" / f"{maille}.parquet")
        classes = classify(table[spec.field], spec)
        index = class_index(classes, table[spec.field].to_numpy(dtype="float64"))
        key = table[table.columns[0]].astype(str).to_numpy()
        expected = [
            {"label": label, "color": color, "keys": sorted(key[index == i])}
            for i, (label, color) in enumerate(zip(classes.labels, classes.colors))
        ]
        if classes.missing:
            expected.append({"label": MISSING_LABEL, "color": MISSING_COLOR, "keys": sorted(key[index < 0])})
        assert layer["renderer"] == "RuleRenderer"
        assert [{k: r[k] for k in ("label", "color", "keys")} for r in layer["rules"]] == expected, maille
        assert sum(len(r["keys"]) for r in layer["rules"]) == layer["features"]
    iris = _layer(seen, "IRIS")["rules"]
    assert iris[0]["label"].startswith("jusqu'à ") and len(iris) == 6 and len(iris[-1]["keys"]) == 5
    # the département is the reference: its score is exactly 100, and its one class says so
    assert [(r["label"], len(r["keys"])) for r in _layer(seen, "Départements")["rules"]] == [("100", 1)]
    # the style QGIS applies by itself to iris.gpkg opened alone is the project's
    assert seen["alone"]["valid"] and seen["alone"]["rules"] == iris


def test_no_warning_from_qgis_or_gdal(seen):
    assert not seen["saved_with_newer"] and seen["saved_with"] == QGIS_VERSION
    stderr = seen["stderr"]
    for needle in ("newer version", "partially supported", "Warning 1", "ERROR"):
        assert needle not in stderr, stderr[-3000:]
    assert [m for m in seen["messages"] if m["level"] >= 1] == [], seen["messages"]


def _pixels_of(pixels: np.ndarray, hex_color: str, tolerance: float = 0.02) -> np.ndarray:
    rgb = np.array([int(hex_color[i : i + 2], 16) for i in (1, 3, 5)]) / 255
    return np.all(np.abs(pixels - rgb) < tolerance, axis=-1)


def test_rendered_map_colours(seen, out):
    """On the PNG QGIS renders, each class colour covers about its features' area (white outlines
    take the rest), and the largest unscored IRIS is grey."""
    from matplotlib.image import imread

    pixels = imread(seen["png"])[..., :3]
    assert pixels.shape[:2] == (RENDER_SIZE, RENDER_SIZE)
    iris = gpd.read_parquet(out / "layers" / "iris.parquet", columns=["CODE_IRIS", "NOM_IRIS", "geometry"])
    area = iris.set_index("CODE_IRIS").area
    xmin, ymin, xmax, ymax = seen["render"]["extent"]
    metres_per_pixel = (xmax - xmin) / RENDER_SIZE
    for rule in _layer(seen, "IRIS")["rules"]:
        expected = area[rule["keys"]].sum() / metres_per_pixel**2
        assert 0.7 * expected < _pixels_of(pixels, rule["color"]).sum() < 1.05 * expected, rule["label"]
    # Les Îles (Vaulx-en-Velin, 11 km², no inhabitants), painted dark red under it when unstyled
    unscored = iris[iris["CODE_IRIS"].isin(_layer(seen, "IRIS")["rules"][-1]["keys"])]
    largest = unscored.loc[unscored.area.idxmax()]
    point = largest.geometry.representative_point()
    column, row = int((point.x - xmin) / metres_per_pixel), int((ymax - point.y) / metres_per_pixel)
    assert _pixels_of(pixels[row - 1 : row + 2, column - 1 : column + 2], MISSING_COLOR).all(), largest["NOM_IRIS"]
    # the places are drawn on top, in their colour
    assert _pixels_of(pixels, PLACE_COLOR).sum() > 100

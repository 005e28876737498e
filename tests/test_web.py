"""Web outlines and their files on hand-checked inputs: the coverage simplification keeps one
border between neighbours, coarser mailles are unions of the simplified IRIS, the GeoJSON text
(RFC 7946) is what is expected character for character, and the GeoPackage written from the
GeoParquet's Arrow table holds what pyogrio writes from the GeoDataFrame."""

from __future__ import annotations

import json
import sqlite3

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyogrio
import pytest
import shapely
from geopandas.io.arrow import _geopandas_to_arrow
from shapely.geometry import MultiPolygon, Polygon, box

from outputs import layers as layer_files
from outputs.layers import geojson_geometries, write_features, write_geojson, write_layer
from outputs.tables import json_rows
from outputs.web import simplify_iris, simplify_layers

# Two IRIS sharing a border from (1000, 0) to (1000, 1000) by way of a 200 m bump (kept by
# any tolerance here) and two vertices a fraction of a metre off the straight line (the
# triangles they make are 75 m², under the 10 m tolerance's 100 m²: simplified away). The
# third IRIS, below, makes (1000, 0) a node of three outlines.
BUMP = (1200, 500)
LEFT = Polygon([(0, 0), (1000, 0), (1100.3, 250), BUMP, (1099.7, 750), (1000, 1000), (0, 1000)])
RIGHT = Polygon([(1000, 0), (2000, 0), (2000, 1000), (1000, 1000), (1099.7, 750), BUMP, (1100.3, 250)])
BELOW = Polygon([(0, -1000), (2000, -1000), (2000, 0), (1000, 0), (0, 0)])
SIMPLE_LEFT = Polygon([(0, 0), (1000, 0), BUMP, (1000, 1000), (0, 1000)])
SIMPLE_RIGHT = Polygon([(1000, 0), (2000, 0), (2000, 1000), (1000, 1000), BUMP])


def _same_vertices(a, b) -> bool:
    """Same vertices in the same cyclic order (GEOS may start a ring elsewhere)."""
    return bool(shapely.equals_identical(shapely.normalize(a), shapely.normalize(b)))


@pytest.fixture
def iris() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {
            "CODE_IRIS": ["010010101", "010010102", "010020000"],
            "INSEE_COM": ["01001", "01001", "01002"],
            "DEP": ["01", "01", "01"],
        },
        geometry=[LEFT, RIGHT, BELOW],
        crs=2154,
    )


def test_neighbours_keep_one_simplified_border(iris):
    levels = simplify_iris(iris, [50, 10])
    assert levels.valid_before and levels.valid_after and sorted(levels.iris) == [10, 50]
    for level in levels.iris.values():  # 50 m from the 10 m level: nothing more to take
        left, right, below = level
        assert _same_vertices(left, SIMPLE_LEFT) and _same_vertices(right, SIMPLE_RIGHT)
        assert _same_vertices(below, BELOW)
        # The border is the same line on both sides: the bump, none of the off-line vertices.
        border = shapely.intersection(left.boundary, right.boundary)
        assert shapely.equals(border, shapely.LineString([(1000, 0), BUMP, (1000, 1000)]))
        assert shapely.coverage_is_valid(level)


def test_coarser_mailles_are_unions_of_the_simplified_iris(iris):
    communes = gpd.GeoDataFrame(
        {"INSEE_COM": ["01002", "01001"]},  # not in IRIS order
        geometry=[BELOW, shapely.union(LEFT, RIGHT)],
        crs=2154,
    )
    departements = gpd.GeoDataFrame({"DEP": ["01"]}, geometry=[shapely.union_all([LEFT, RIGHT, BELOW])], crs=2154)
    web = simplify_layers({"iris": iris, "communes": communes, "departements": departements}, [10])
    simplified = web.outlines[("iris", 10)].to_numpy()
    commune = web.outlines[("communes", 10)].iloc[1]
    # The shared border is gone; its end points stay where the IRIS had them.
    expected = Polygon([(0, 0), (1000, 0), (2000, 0), (2000, 1000), (1000, 1000), (0, 1000)])
    assert _same_vertices(commune, expected)
    assert shapely.equals(commune, shapely.union_all(simplified[:2]))
    assert web.outlines[("communes", 10)].iloc[0] is simplified[2]  # a single IRIS is its commune
    departement = web.outlines[("departements", 10)].iloc[0]
    assert shapely.equals(departement, shapely.union_all(simplified))
    # Every vertex of a union is a vertex of the simplified IRIS: the outlines lie on each other.
    iris_vertices = {tuple(p) for p in shapely.get_coordinates(simplified)}
    assert {tuple(p) for p in shapely.get_coordinates([commune, departement])} <= iris_vertices


def test_outlines_of_single_iris_units_reuse_the_iris_text(iris):
    communes = gpd.GeoDataFrame(
        {"INSEE_COM": ["01002", "01001"]}, geometry=[BELOW, shapely.union(LEFT, RIGHT)], crs=2154
    )
    web = simplify_layers({"iris": iris, "communes": communes}, [10])
    assert web.iris_rows["communes"].tolist() == [2, -1]  # 01002 is IRIS 010020000, row 2
    text = web.geojson("communes", 10)
    assert text.to_pylist() == geojson_geometries(web.outlines[("communes", 10)]).to_pylist()
    assert text[0].as_py() == web.geojson("iris", 10)[2].as_py()
    assert json.loads(text[1].as_py())["type"] == "Polygon"


def test_invalid_coverage_is_not_simplified(iris):
    overlapping = iris.assign(geometry=[LEFT, shapely.affinity.translate(RIGHT, -10), BELOW])
    levels = simplify_iris(overlapping, [10, 50])
    assert not levels.valid_before and levels.iris == {} and levels.unions == {}
    assert simplify_iris(iris, [10], coverage_valid=False).iris == {}


# A clockwise exterior with a counter-clockwise hole, more than 6 decimals, and a
# multipolygon whose parts are clockwise: RFC 7946 wants exteriors counter-clockwise, holes
# clockwise (each ring reversed from its first vertex), 6 decimals.
RFC_LAYER = gpd.GeoDataFrame(
    {"CODE_IRIS": ["751010101", "751010102"], "score": [101.5, np.nan]},
    geometry=[
        Polygon(
            [(2.0, 48.0), (2.0, 48.5), (2.12345678, 48.5), (2.5, 48.0)],
            [[(2.1, 48.1), (2.2, 48.1), (2.2, 48.2000004), (2.1, 48.2)]],
        ),
        MultiPolygon([Polygon([(3, 45), (3, 46), (4, 46)]), Polygon([(5, 45), (6, 45), (6, 44.0000004)])]),
    ],
    crs=4326,
)
RFC_TEXT = (
    '{"type":"FeatureCollection","features":[\n'
    '{"type":"Feature","properties":{"CODE_IRIS":"751010101","score":101.5},"geometry":{"type":"Polygon",'
    '"coordinates":[[[2.0,48.0],[2.5,48.0],[2.123457,48.5],[2.0,48.5],[2.0,48.0]],'
    "[[2.1,48.1],[2.1,48.2],[2.2,48.2],[2.2,48.1],[2.1,48.1]]]}},\n"
    '{"type":"Feature","properties":{"CODE_IRIS":"751010102","score":null},"geometry":{"type":"MultiPolygon",'
    '"coordinates":[[[[3.0,45.0],[4.0,46.0],[3.0,46.0],[3.0,45.0]]],[[[5.0,45.0],[6.0,44.0],[6.0,45.0],[5.0,45.0]]]]}}\n'
    "]}\n"
)


def test_geojson_text_is_rfc7946_exactly(tmp_path):
    path = tmp_path / "rfc.geojson"
    write_geojson(RFC_LAYER, path)
    assert path.read_bytes() == RFC_TEXT.encode("utf-8")
    # Read back by GDAL as WGS84 with the expected rings' orientations.
    back = pyogrio.read_dataframe(path)
    assert back.crs.to_epsg() == 4326 and back["CODE_IRIS"].tolist() == ["751010101", "751010102"]
    exterior, hole = back.geometry[0].exterior, back.geometry[0].interiors[0]
    assert exterior.is_ccw and not hole.is_ccw


def test_features_are_joined_by_blocks_and_missing_parts_written_null(tmp_path, monkeypatch):
    properties = [json.dumps({"n": i, "nom": f"É{i}"}, ensure_ascii=False) for i in range(5)]
    geometries = [
        '{"type":"Point","coordinates":[1.0,2.0]}',
        None,
        "{}",
        None,
        '{"type":"Point","coordinates":[0.0,0.0]}',
    ]
    expected = (
        '{"type":"FeatureCollection","features":[\n'
        + ",\n".join(
            f'{{"type":"Feature","properties":{p},"geometry":{g or "null"}}}' for p, g in zip(properties, geometries)
        )
        + "\n]}\n"
    )
    monkeypatch.setattr(layer_files, "FEATURES_PER_BLOCK", 2)  # blocks of 2, 2 and 1 features
    for props, shapes in [
        (properties, geometries),
        (pa.array(properties), pa.array(geometries, pa.large_string())),
        (properties, pa.array(geometries).slice(0)),
    ]:
        write_features(tmp_path / "f.geojson", props, shapes)
        assert (tmp_path / "f.geojson").read_text(encoding="utf-8") == expected
    write_features(tmp_path / "empty.geojson", [], pa.array([], pa.large_string()))
    assert (tmp_path / "empty.geojson").read_text() == '{"type":"FeatureCollection","features":[\n\n]}\n'
    assert json.loads((tmp_path / "empty.geojson").read_text()) == {"type": "FeatureCollection", "features": []}
    with pytest.raises(ValueError, match="2 property rows for 1 geometries"):
        write_features(tmp_path / "x.geojson", properties[:2], geometries[:1])


def test_properties_and_outlines_can_be_shared(tmp_path):
    """The web layers hand the writer the properties and outlines' text made once."""
    once = tmp_path / "once.geojson"
    write_geojson(RFC_LAYER, once, properties=json_rows(RFC_LAYER), geometries=geojson_geometries(RFC_LAYER.geometry))
    assert once.read_bytes() == RFC_TEXT.encode("utf-8")


def _gpkg_content(path) -> dict:
    """Every table of a GeoPackage, but the timestamps of its writing."""
    with sqlite3.connect(path) as db:
        tables = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        content = {}
        for table in tables:
            columns = [c[1] for c in db.execute(f'PRAGMA table_info("{table}")')]
            kept = [c for c in columns if c not in ("last_change", "timestamp")]
            content[table] = db.execute(f'SELECT {", ".join(kept)} FROM "{table}"').fetchall()
        content["schema"] = db.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
    return content


@pytest.mark.parametrize(
    "geometries",
    [
        [box(0, 0, 1, 1), MultiPolygon([box(2, 0, 3, 1), box(4, 0, 5, 1)]), None],  # promoted to multi
        [box(0, 0, 1, 1), box(1, 0, 2, 1), box(2, 0, 3, 1)],
        [shapely.Point(0, 0, 1), shapely.Point(1, 1, 2), shapely.Point(2, 2, 3)],  # 3D: left to pyogrio
    ],
)
def test_geopackage_from_the_parquet_table_holds_what_pyogrio_writes(tmp_path, geometries):
    layer = gpd.GeoDataFrame(
        {
            "CODE_IRIS": ["690010000", "2A0040000", "691230101"],
            "NOM": ["L'Abergement-Clémenciat", None, "Lyon 1er"],
            "taux": [0.1 + 0.2, np.nan, 1e-7],
            "effectif": np.array([3, 0, 12], dtype="int32"),
            "secret": pd.array([True, None, False], dtype="boolean"),
            "vide": [None, None, None],
        },
        geometry=geometries,
        crs=2154,
    )
    info = {"methode": "mednum_2019", "date_calcul": "2026-01-01T00:00:00+00:00"}
    write_layer(layer, tmp_path, "iris", info)
    pyogrio.write_dataframe(
        layer,
        tmp_path / "pyogrio.gpkg",
        layer="iris",
        driver="GPKG",
        metadata={"fragilite": json.dumps(info, ensure_ascii=False, default=str)},
        dataset_options={"VERSION": "1.2"},
        use_arrow=True,
    )
    assert _gpkg_content(tmp_path / "iris.gpkg") == _gpkg_content(tmp_path / "pyogrio.gpkg")
    # Written from the GeoParquet's table, but for 3D geometries (pyogrio's own path).
    table = _geopandas_to_arrow(layer, index=False, schema_version="1.1.0", write_covering_bbox=True)
    made = layer_files._gpkg_table(layer, table)
    assert (made is None) == layer.has_z.any()
    if made is not None:
        assert made[1] == ("MultiPolygon" if "MultiPolygon" in set(layer.geom_type) else "Polygon")
    back = pyogrio.read_dataframe(tmp_path / "iris.gpkg")
    assert back["CODE_IRIS"].tolist() == layer["CODE_IRIS"].tolist()
    assert pd.read_parquet(tmp_path / "iris.parquet")["CODE_IRIS"].tolist() == layer["CODE_IRIS"].tolist()


def test_properties_made_by_blocks_read_as_made_at_once(tmp_path, monkeypatch):
    """DuckDB formats the properties a block of rows at a time; blocks of features that straddle
    two of those blocks are written whole."""
    layer = gpd.GeoDataFrame(
        {"CODE_IRIS": [f"69123010{i}" for i in range(7)], "taux": [0.1 + 0.2, np.nan, 1e-7, 2.0, -1.5, 1 / 3, 0.0]},
        geometry=[box(4.8 + i / 100, 45.7, 4.81 + i / 100, 45.71) for i in range(7)],
        crs=4326,
    )
    whole = json_rows(layer, decimals=4)
    monkeypatch.setattr(layer_files, "PROPERTIES_PER_CALL", 3)
    monkeypatch.setattr(layer_files, "FEATURES_PER_BLOCK", 2)
    blocks = layer_files.geojson_properties(layer, 4)
    assert blocks.num_chunks == 3 and blocks.to_pylist() == whole
    write_geojson(layer, tmp_path / "blocks.geojson", properties=blocks)
    write_geojson(layer, tmp_path / "whole.geojson", properties=whole)
    assert (tmp_path / "blocks.geojson").read_bytes() == (tmp_path / "whole.geojson").read_bytes()
    features = json.loads((tmp_path / "blocks.geojson").read_text())["features"]
    assert [f["properties"]["taux"] for f in features] == [0.3, None, 0.0, 2.0, -1.5, 0.3333, 0.0]

"""The map drawing of outputs.maps: outlines prepared once per layer (holes, parts, orientation),
the sources line wrapped like matplotlib's `wrap=True`, one draw for the map and its thumbnail,
the PNG encoder; checked on drawn pixels and against independent constructions."""

from __future__ import annotations

import io

import geopandas as gpd
import numpy as np
import pytest
import shapely
from PIL import Image
from shapely.geometry import MultiPolygon, Point, Polygon, box

from config.settings import Classification
from outputs import maps
from outputs.maps import MplPath, PathCollection, plt
from outputs.styles import classify

RED, WHITE = (255, 0, 0), (255, 255, 255)
SOURCES = (
    "Sources : INSEE RP 2021 (bases infracommunales) ; ARCEP Ma connexion internet 2021-09-30, "
    "caf_non_connectes 2021, Filosofi communes 2021, Filosofi IRIS 2021 ; IGN CONTOURS-IRIS. Méthode "
    "MedNum 2019, référence : département de chaque IRIS (coût 5 $). Calcul fragilite-numerique du 2026-11-23."
)


def _drawn(path: MplPath, width: int, height: int) -> np.ndarray:
    """`path` filled in red on a white canvas of width × height pixels, one pixel per unit, row 0
    at y = 0."""
    fig = plt.figure(figsize=(width / 100, height / 100), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.add_collection(PathCollection([path], facecolors=["red"], edgecolors="none"))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_axis_off()
    fig.canvas.draw()
    pixels = np.asarray(fig.canvas.buffer_rgba())[::-1, :, :3].copy()
    plt.close(fig)
    return pixels


def _reversed(ring: list[tuple[float, float]]) -> list[tuple[float, float]]:
    return ring[::-1]


# Rings given both ways round: a clockwise shell with a clockwise hole (the same winding, which
# the non-zero rule would fill), a counter-clockwise one with a counter-clockwise hole.
SQUARE = [(0, 0), (40, 0), (40, 40), (0, 40), (0, 0)]
HOLE = [(10, 10), (30, 10), (30, 30), (10, 30), (10, 10)]
SAME_WINDING_CW = Polygon(_reversed(SQUARE), [_reversed(HOLE)])
SAME_WINDING_CCW = Polygon([(x + 50, y) for x, y in SQUARE], [[(x + 50, y) for x, y in HOLE]])
# A multipolygon: a holed part and a clockwise part, then an island inside a hole of another unit.
HOLED_PART = Polygon([(x + 100, y) for x, y in SQUARE], [[(x + 100, y) for x, y in _reversed(HOLE)]])
CLOCKWISE_PART = Polygon(_reversed([(x + 150, y) for x, y in SQUARE]))
ISLAND = box(15, 15, 25, 25)


def test_outlines_leave_holes_empty_and_fill_every_part_whatever_the_winding():
    units = np.array(
        [SAME_WINDING_CW, None, SAME_WINDING_CCW, MultiPolygon([HOLED_PART, CLOCKWISE_PART]), Point(5, 5), ISLAND],
        dtype=object,
    )
    prepared = maps.outlines(units, tolerance=0.01)
    assert np.diff(prepared.offsets).tolist() == [10, 0, 10, 15, 0, 5]  # rings of 5 points; no point, no None
    pixels = _drawn(prepared.path(np.ones(len(units), dtype=bool)), 200, 50)
    for x in (0, 50, 100, 150):
        assert tuple(pixels[5, x + 5]) == RED and tuple(pixels[35, x + 35]) == RED  # shells and parts
    for x in (50, 100):
        assert tuple(pixels[20, x + 20]) == WHITE and tuple(pixels[12, x + 12]) == WHITE  # holes
    assert tuple(pixels[20, 20]) == RED and tuple(pixels[12, 12]) == WHITE  # the island in the first hole
    assert tuple(pixels[5, 195]) == WHITE and tuple(pixels[45, 5]) == WHITE  # outside
    # A selection draws only the chosen units: the multipolygon alone.
    alone = _drawn(prepared.path(np.array([False, False, False, True, False, False])), 200, 50)
    assert tuple(alone[5, 5]) == WHITE and tuple(alone[5, 105]) == RED and tuple(alone[5, 155]) == RED
    assert tuple(alone[20, 120]) == WHITE


def _per_polygon(geometries: np.ndarray, tolerance: float) -> MplPath:
    """The path built polygon by polygon with shapely's own functions: simplify, explode the
    parts, orient, take the rings."""
    simplified = shapely.simplify(geometries, tolerance, preserve_topology=False)
    rings = shapely.get_rings(shapely.orient_polygons(shapely.get_parts(simplified)))
    coords, ring = shapely.get_coordinates(rings, return_index=True)
    sizes = np.bincount(ring, minlength=len(rings))
    starts = (np.cumsum(sizes) - sizes)[sizes > 0]
    codes = np.full(len(coords), MplPath.LINETO, dtype=MplPath.code_type)
    codes[starts] = MplPath.MOVETO
    codes[starts + sizes[sizes > 0] - 1] = MplPath.CLOSEPOLY
    return MplPath(coords, codes)


def test_outlines_equal_the_polygon_by_polygon_construction():
    """Vertex for vertex, for every unit and for any selection of units: wavy outlines that the
    tolerance simplifies, holes, multipolygons with holes, an outline the tolerance collapses."""
    rng = np.random.default_rng(3)

    def wavy(cx: float, cy: float, r: float, n: int = 60) -> np.ndarray:
        angle = np.linspace(0, 2 * np.pi, n, endpoint=False)
        radius = r * (1 + 0.1 * rng.standard_normal(n))
        return np.column_stack([cx + radius * np.cos(angle), cy + radius * np.sin(angle)])

    units = []
    for i in range(30):
        cx, cy = 700_000 + 1000 * i, 6_600_000 + 500 * (i % 4)
        shell = wavy(cx, cy, 400)
        if i % 3 == 0:
            units.append(Polygon(shell[::-1] if i % 2 else shell, [wavy(cx, cy, 120)]))
        elif i % 3 == 1:
            units.append(MultiPolygon([Polygon(shell, [wavy(cx, cy, 100)[::-1]]), Polygon(wavy(cx, cy + 2000, 200))]))
        else:
            units.append(Polygon(shell))
    units += [box(0, 0, 1, 1), None, Polygon()]  # collapsed by a 20 m tolerance, missing, empty
    units.append(shapely.from_wkt("MULTIPOLYGON (((0 0, 90 0, 90 90, 0 0)), EMPTY, ((100 0, 190 0, 190 90, 100 0)))"))
    units.append(MultiPolygon([box(0, 0, 1, 1), box(200, 0, 300, 100)]))  # a part collapsed
    geometries = np.array(units, dtype=object)
    prepared = maps.outlines(geometries, tolerance=20)
    for chosen in (np.ones(len(units), dtype=bool), rng.random(len(units)) < 0.4):
        expected = _per_polygon(geometries[chosen], 20)
        got = prepared.path(chosen)
        assert np.array_equal(got.vertices, expected.vertices) and np.array_equal(got.codes, expected.codes)
    assert len(prepared.vertices) < sum(shapely.get_num_coordinates(geometries))  # simplified


def test_outlines_of_nothing_to_draw():
    prepared = maps.outlines(np.array([None, Polygon()], dtype=object), tolerance=1)
    assert prepared.offsets.tolist() == [0, 0, 0] and len(prepared.path(np.ones(2, dtype=bool)).vertices) == 0


def _measured(line: str, dpi: float) -> int:
    width, _, _ = maps.RendererAgg(1, 1, dpi).get_text_width_height_descent(
        line, maps.FontProperties(size=maps.SOURCES_FONTSIZE), ismath=False
    )
    return int(np.ceil(width))


def test_wrap_text_fills_each_line_and_keeps_every_word():
    width = 500.0
    wrapped = maps.wrap_text(SOURCES, fontsize=maps.SOURCES_FONTSIZE, dpi=150, width=width)
    lines = wrapped.split("\n")
    assert len(lines) > 2 and " ".join(lines) == SOURCES  # broken at spaces only, nothing lost
    assert all(_measured(line, 150) <= width for line in lines)
    assert all(_measured(f"{line} {after.split(' ')[0]}", 150) > width for line, after in zip(lines, lines[1:]))
    # A word wider than the line keeps a line of its own; paragraphs stay apart.
    long_word = "x" * 200
    text = f"avant {long_word} après\nfin"
    assert maps.wrap_text(text, fontsize=7, dpi=150, width=width).split("\n") == ["avant", long_word, "après", "fin"]


def test_sources_line_is_drawn_exactly_as_matplotlib_wraps_it():
    """The same pixels as `fig.text(..., wrap=True)`, which measured the line word by word at
    every draw; and within the figure."""
    drawn = []
    for own in (False, True):
        fig = plt.figure(figsize=maps.FIGSIZE, dpi=150)
        if own:
            maps._sources_text(fig, SOURCES)
        else:
            fig.text(
                0.01, 0.01, maps.plain_text(SOURCES), fontsize=7, color="#444444", ha="left", va="bottom", wrap=True
            )
        fig.canvas.draw()
        drawn.append(np.asarray(fig.canvas.buffer_rgba()).copy())
        if own:
            text = fig.texts[-1]
            assert "\n" in text.get_text() and not text.get_wrap()
            extent = text.get_window_extent(fig.canvas.get_renderer())
            assert extent.x1 <= fig.bbox.x1
        plt.close(fig)
    assert np.array_equal(drawn[0], drawn[1])


def _two_squares() -> tuple[gpd.GeoDataFrame, object]:
    layer = gpd.GeoDataFrame(
        {"score_global": [80.0, 120.0]}, geometry=[box(0, 0, 10_000, 10_000), box(10_000, 0, 20_000, 10_000)], crs=2154
    )
    return layer, classify(layer["score_global"], Classification(field="score_global", scheme="Quantiles", k=2))


def _decoded(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    image.load()
    return image


def test_thumbnail_is_the_map_at_the_thumbnail_resolution():
    layer, classes = _two_squares()
    png, small = maps.choropleth_png(layer, classes, title="t", sources=SOURCES, thumbnail_dpi=40)
    full, thumb = _decoded(png), _decoded(small)
    assert thumb.size == (round(full.width * 40 / 150), round(full.height * 40 / 150))
    assert round(thumb.info["dpi"][0]) == 40 and round(full.info["dpi"][0]) == 150
    # Each square shows its class colour at the same place in both images.
    full_pixels, thumb_pixels = np.asarray(full.convert("RGB")), np.asarray(thumb.convert("RGB"))
    for color in classes.colors:
        rgb = np.array([int(color[i : i + 2], 16) for i in (1, 3, 5)])
        where = np.argwhere(np.abs(full_pixels.astype(int) - rgb).max(axis=2) == 0)
        assert len(where) > 10_000
        row, col = np.median(where, axis=0) * 40 / 150
        assert np.abs(thumb_pixels[round(row), round(col)].astype(int) - rgb).max() <= 3
    assert maps.choropleth_png(layer, classes, title="t", sources="s")[1] is None


def test_prepared_outlines_draw_the_same_map_and_must_be_the_layers():
    layer, classes = _two_squares()
    prepared = maps.map_outlines(layer)
    assert maps.choropleth_png(layer, classes, title="t", sources="s", outlines=prepared) == maps.choropleth_png(
        layer, classes, title="t", sources="s"
    )
    with pytest.raises(ValueError, match="contours préparés pour 2 unités, la couche en a 1"):
        maps.choropleth_png(layer.iloc[:1], classes, title="t", sources="s", outlines=prepared)
    iris = layer.assign(priorite=["forte", None])
    with pytest.raises(ValueError, match="contours préparés pour 1 unités, la couche en a 2"):
        maps.priority_png(iris, None, title="t", sources="s", outlines=maps.map_outlines(layer.iloc[:1]))
    assert maps.priority_png(iris, None, title="t", sources="s", outlines=prepared) == maps.priority_png(
        iris, None, title="t", sources="s"
    )


def test_encode_png_round_trips_the_pixels():
    rng = np.random.default_rng(0)
    opaque = rng.integers(0, 256, size=(37, 53, 4), dtype=np.uint8)
    opaque[..., 3] = 255
    image = _decoded(maps.encode_png(opaque, 150))
    assert image.mode == "RGB" and np.array_equal(np.asarray(image), opaque[..., :3])
    assert round(image.info["dpi"][0]) == 150
    translucent = opaque.copy()
    translucent[0, 0, 3] = 10
    image = _decoded(maps.encode_png(translucent, 72))
    assert image.mode == "RGBA" and np.array_equal(np.asarray(image), translucent)


def test_render_gives_the_png_and_its_pixels_even_without_the_canvas_image(monkeypatch):
    results = []
    for keep in (True, False):
        if not keep:  # a matplotlib whose canvas no longer holds the saved image
            monkeypatch.setattr(maps, "_drawn_pixels", lambda fig, raw: None)
        fig = plt.figure(figsize=(2, 1), dpi=100)
        fig.text(0.1, 0.5, "carte", color="red")
        png, rgba = maps._render(fig, 100)
        plt.close(fig)
        assert np.array_equal(np.asarray(_decoded(png).convert("RGBA")), rgba)
        results.append(rgba)
    assert np.array_equal(results[0], results[1])

"""Static choropleth maps (PNG) for the report, the pack and the Dagster UI."""

from __future__ import annotations

import io
import math
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import geopandas as gpd
import matplotlib

matplotlib.use("Agg")  # no display: files only

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import shapely  # noqa: E402
from matplotlib.backends.backend_agg import RendererAgg  # noqa: E402
from matplotlib.collections import PathCollection  # noqa: E402
from matplotlib.font_manager import FontProperties  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.path import Path as MplPath  # noqa: E402
from PIL import Image  # noqa: E402

from outputs.styles import (  # noqa: E402
    MISSING_COLOR,
    MISSING_LABEL,
    PLACE_COLOR,
    PLACE_STYLE,
    PRIORITY_MISSING_LABEL,
    PRIORITY_STYLE,
    Classes,
    class_index,
)

FIGSIZE = (8, 9)  # inches
# Above this many features, white outlines would cover the fill: they are left out.
MAX_OUTLINED = 5000


def choropleth_png(
    layer: gpd.GeoDataFrame,
    classes: Classes,
    *,
    title: str,
    sources: str,
    dpi: int = 150,
    thumbnail_dpi: int | None = None,
    outlines: Outlines | None = None,
) -> tuple[bytes, bytes | None]:
    """A north-up map in the layer's projected CRS (Lambert-93 in metropolitan France, the
    overseas département's UTM projection elsewhere) with legend, title, sources line, north
    arrow and scale bar; and, if `thumbnail_dpi` is given, the same map at that resolution
    (downsampled from the drawn image: one draw). `outlines`: the layer's `map_outlines` at this
    dpi, when the caller draws the same layer twice (the IRIS and priority maps)."""
    _check_projected(layer, "choropleth_png")
    minx, miny, maxx, maxy = bounds = layer.total_bounds
    outlines = _outlines_for(layer, bounds, dpi, outlines)
    values = layer[classes.field].to_numpy(dtype="float64")
    index = class_index(classes, values)  # the classes the labels state, as QGIS draws them
    colors = np.where(index < 0, MISSING_COLOR, np.asarray(classes.colors, dtype=object)[index.clip(0)])
    fig, ax = plt.subplots(figsize=FIGSIZE, dpi=dpi)
    palette = list(dict.fromkeys(colors))  # one compound path per colour: a handful of paths to draw
    paths = [outlines.path(colors == color) for color in palette]
    outlined = len(layer) <= MAX_OUTLINED
    ax.add_collection(
        PathCollection(
            paths, facecolors=palette, edgecolors="white" if outlined else "none", linewidths=0.15 if outlined else 0.0
        )
    )
    ax.set_xlim(minx, maxx)
    ax.set_ylim(miny, maxy)
    ax.set_axis_off()
    ax.set_aspect("equal")
    handles = [Patch(facecolor=c, edgecolor="#999999", label=label) for c, label in zip(classes.colors, classes.labels)]
    if np.isnan(values).any():
        handles.append(Patch(facecolor=MISSING_COLOR, edgecolor="#999999", label=MISSING_LABEL))
    handles += _caution_marks(ax, layer, outlines, values)
    ax.legend(
        handles=handles,
        title=classes.field.replace("_", " "),
        loc="lower right",
        fontsize=8,
        title_fontsize=9,
        frameon=True,
    )
    ax.set_title(plain_text(title), fontsize=12, loc="left")
    _north_arrow(ax)
    _scale_bar(ax)
    _sources_text(fig, sources)
    try:
        png, rgba = _render(fig, dpi)
        return png, (None if thumbnail_dpi is None else _thumbnail(rgba, thumbnail_dpi / dpi, thumbnail_dpi))
    finally:
        plt.close(fig)


# Scores to read with care (methodology, issue « scores qui veulent dire la même chose ») : hatched
# when the IRIS is unreliable (few residents, activity or miscellaneous IRIS), outlined in dots
# when its score rests on fewer indicators than the map's best-covered units.
CAUTION_HATCH = "////"
CAUTION_COLOR = "#444444"
UNRELIABLE_LABEL = "fiabilité faible (peu d'habitants, IRIS d'activité ou divers)"
INCOMPLETE_LABEL = "score sur moins de {best} indicateurs"


def plain_text(text: str) -> str:
    """Text drawn as written: matplotlib reads `$…$` as mathematics (a territory label with two
    `$`, or a bad `\\frac`, would change or crash the map)."""
    return str(text).replace("$", r"\$")


def _caution_marks(ax, layer: gpd.GeoDataFrame, outlines: Outlines, values: np.ndarray) -> list:
    """Hatch the unreliable units and dot-outline the incomplete ones (scored units only);
    their legend entries."""
    scored = ~np.isnan(values)
    marks = []  # (units, drawing style, legend handle)
    if "fiabilite" in layer:
        weak = scored & (layer["fiabilite"].astype("string") == "faible").fillna(False).to_numpy()
        hatch = Patch(facecolor="white", edgecolor=CAUTION_COLOR, hatch=CAUTION_HATCH, label=UNRELIABLE_LABEL)
        marks.append((weak, {"linewidths": 0.0, "hatch": CAUTION_HATCH}, hatch))
    if "nb_indicateurs_notes" in layer and scored.any():
        counts = layer["nb_indicateurs_notes"].to_numpy(dtype="float64")
        best = np.nanmax(counts[scored])
        label = INCOMPLETE_LABEL.format(best=f"{best:.0f}")
        dotted = Line2D([], [], color=CAUTION_COLOR, linestyle=":", linewidth=1.0, label=label)
        marks.append((scored & (counts < best), {"linewidths": 0.5, "linestyles": ":"}, dotted))
    handles = []
    for units, style, handle in marks:
        if units.any():
            ax.add_collection(
                PathCollection([outlines.path(units)], facecolors="none", edgecolors=CAUTION_COLOR, **style)
            )
            handles.append(handle)
    return handles


def priority_png(
    iris: gpd.GeoDataFrame,
    places: gpd.GeoDataFrame | None,
    *,
    title: str,
    sources: str,
    dpi: int = 150,
    outlines: Outlines | None = None,
) -> bytes:
    """The IRIS coloured by priority class (`priorite`: forte, moyenne, faible, grey « non
    classé »), with the places of mediation on top (filled: coordinates of the file; hollow: at
    their commune's centre), in the layer's projected CRS, north up, with legend, title, sources
    line, north arrow and scale bar, like `choropleth_png` (`outlines` likewise)."""
    _check_projected(iris, "priority_png")
    minx, miny, maxx, maxy = bounds = iris.total_bounds
    outlines = _outlines_for(iris, bounds, dpi, outlines)
    classes = iris["priorite"].astype("string")
    fills = {name: color for name, (color, _) in PRIORITY_STYLE.items()}
    colors = classes.map(fills).fillna(MISSING_COLOR).to_numpy(dtype=object)
    fig, ax = plt.subplots(figsize=FIGSIZE, dpi=dpi)
    palette = list(dict.fromkeys(colors))
    outlined = len(iris) <= MAX_OUTLINED
    ax.add_collection(
        PathCollection(
            [outlines.path(colors == color) for color in palette],
            facecolors=palette,
            edgecolors="white" if outlined else "none",
            linewidths=0.15 if outlined else 0.0,
        )
    )
    handles = [
        Patch(facecolor=color, edgecolor="#999999", label=f"priorité {label}")
        for color, label in PRIORITY_STYLE.values()
    ]
    if (~classes.isin(list(PRIORITY_STYLE))).any():
        handles.append(Patch(facecolor=MISSING_COLOR, edgecolor="#999999", label=PRIORITY_MISSING_LABEL))
    if places is not None and len(places):
        inside = places.cx[minx:maxx, miny:maxy]  # neighbours beyond the map's frame are left out
        for where, label in PLACE_STYLE.items():
            chosen = inside[inside["localisation"] == where]
            hollow = where == "commune"
            ax.scatter(
                chosen.geometry.x,
                chosen.geometry.y,
                s=18,
                marker="o",
                facecolors="none" if hollow else PLACE_COLOR,
                edgecolors=PLACE_COLOR if hollow else "white",
                linewidths=1.0 if hollow else 0.4,
                zorder=3,
            )
            if len(chosen):
                handles.append(
                    Line2D(
                        [],
                        [],
                        linestyle="none",
                        marker="o",
                        markersize=6,
                        markerfacecolor="none" if hollow else PLACE_COLOR,
                        markeredgecolor=PLACE_COLOR if hollow else "white",
                        label=label,
                    )
                )
    ax.set_xlim(minx, maxx)
    ax.set_ylim(miny, maxy)
    ax.set_axis_off()
    ax.set_aspect("equal")
    ax.legend(handles=handles, title="Zones prioritaires", loc="lower right", fontsize=7, title_fontsize=9)
    ax.set_title(plain_text(title), fontsize=12, loc="left")
    _north_arrow(ax)
    _scale_bar(ax)
    _sources_text(fig, sources)
    try:
        return _render(fig, dpi)[0]
    finally:
        plt.close(fig)


def _png(fig, dpi: int) -> bytes:
    buffer = io.BytesIO()
    # zlib level 1: a national map is a noisy image, which the default level spends seconds on.
    fig.savefig(buffer, format="png", bbox_inches="tight", dpi=dpi, pil_kwargs={"compress_level": 1})
    return buffer.getvalue()


def _render(fig, dpi: int) -> tuple[bytes, np.ndarray]:
    """The figure drawn once, cropped to its content like `_png`, as PNG and as pixels (for a
    thumbnail); should the canvas no longer hold the image it drew (another matplotlib), the
    figure is saved as PNG and decoded."""
    raw = io.BytesIO()
    fig.savefig(raw, format="rgba", bbox_inches="tight", dpi=dpi)
    rgba = _drawn_pixels(fig, raw.getvalue())
    if rgba is None:
        png = _png(fig, dpi)
        return png, np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))
    return encode_png(rgba, dpi), rgba


def _drawn_pixels(fig, raw: bytes) -> np.ndarray | None:
    """The raw RGBA bytes just saved, as rows and columns: the canvas keeps the image it has just
    drawn, hence its shape; None if it does not."""
    height, width = np.asarray(fig.canvas.buffer_rgba()).shape[:2]
    if height * width * 4 != len(raw):
        return None
    return np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 4)


def _thumbnail(rgba: np.ndarray, scale: float, dpi: float) -> bytes:
    """The map at `scale` of its size, resampled from the drawn image (Lanczos: no aliasing of
    the outlines, text still legible), rather than a second draw of every outline."""
    height, width = rgba.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = Image.fromarray(np.ascontiguousarray(rgba)).resize(size, Image.Resampling.LANCZOS)
    return encode_png(np.asarray(small), dpi)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_UP = 2  # PNG row filter: each byte minus the one above it


def encode_png(rgba: np.ndarray, dpi: float) -> bytes:
    """PNG of these pixels (height × width × RGBA), RGB when opaque. Written here rather than by
    Pillow: every row filtered « Up » (a map's flat areas become zeros) and compressed in one
    zlib call, level 1 with the run-length strategy meant for PNG rows: files as small as
    Pillow's at level 1 with its row-by-row filter choice, in less than half the time, and one
    release of the GIL instead of one per 64 KiB (the maps are drawn beside two busy threads)."""
    pixels = rgba[..., :3] if (rgba[..., 3] == 255).all() else rgba
    height, width, channels = pixels.shape
    rows = np.ascontiguousarray(pixels).reshape(height, width * channels)
    filtered = np.empty((height, 1 + width * channels), dtype=np.uint8)
    filtered[:, 0] = PNG_UP
    filtered[:1, 1:] = rows[:1]  # the row above the first is zeros
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])  # bytes wrap modulo 256, as PNG wants
    compressor = zlib.compressobj(1, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    data = compressor.compress(filtered) + compressor.flush()
    color_type = 2 if channels == 3 else 6  # truecolour, truecolour with alpha
    per_metre = round(dpi / 0.0254)
    return b"".join(
        [
            PNG_SIGNATURE,
            _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)),
            _png_chunk(b"pHYs", struct.pack(">IIB", per_metre, per_metre, 1)),  # the map's dpi
            _png_chunk(b"IDAT", data),
            _png_chunk(b"IEND", b""),
        ]
    )


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return b"".join([struct.pack(">I", len(data)), kind, data, struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))])


SOURCES_FONTSIZE = 7
SOURCES_X = 0.01  # figure fraction: the sources line's left edge and baseline


def _sources_text(fig, sources: str) -> None:
    """The sources line bottom left, broken into lines that fit between its left edge and the
    figure's right edge (what `wrap=True` does, measured once instead of at every draw)."""
    width = fig.bbox.width * (1 - SOURCES_X)
    text = wrap_text(plain_text(sources), fontsize=SOURCES_FONTSIZE, dpi=fig.dpi, width=width)
    fig.text(SOURCES_X, 0.01, text, fontsize=SOURCES_FONTSIZE, color="#444444", ha="left", va="bottom")


@lru_cache(maxsize=64)
def wrap_text(text: str, *, fontsize: float, dpi: float, width: float) -> str:
    """`text` broken at spaces into lines at most `width` pixels wide at `dpi` (a single word
    too wide keeps its own line): the breaks of matplotlib's `wrap=True`, which measures the line
    word by word at every layout (seconds on a national map); here the longest fitting run of
    words is found by bisection, a few measurements per line, and kept for the next map."""
    renderer = RendererAgg(1, 1, dpi)
    font = FontProperties(size=fontsize)

    def fits(words: list[str]) -> bool:
        measured, _, _ = renderer.get_text_width_height_descent(" ".join(words), font, ismath=False)
        return math.ceil(measured) <= width

    lines = []
    for paragraph in text.split("\n"):
        words = paragraph.split(" ")
        while words:
            short, long = 1, len(words)  # words[:short] fits, or is a single word
            if fits(words):
                short = long
            while short < long:
                middle = (short + long + 1) // 2
                short, long = (middle, long) if fits(words[:middle]) else (short, middle - 1)
            lines.append(" ".join(words[:short]))
            words = words[short:]
    return "\n".join(lines)


@dataclass(frozen=True, eq=False)
class Outlines:
    """Every ring of a layer's units, simplified and oriented once, in one vertex array: the path
    of any set of units (a colour class, the hatched units) is a selection of it, with no
    geometry object made per class."""

    vertices: np.ndarray  # (n, 2)
    codes: np.ndarray  # matplotlib path codes: MOVETO at each ring's start, CLOSEPOLY at its end
    offsets: np.ndarray  # unit i's rings are vertices[offsets[i]:offsets[i + 1]]

    def path(self, units: np.ndarray) -> MplPath:
        """The compound path of the chosen units (a boolean mask over the layer's rows)."""
        keep = np.repeat(np.asarray(units, dtype=bool), np.diff(self.offsets))
        return MplPath(self.vertices[keep], self.codes[keep])


def map_outlines(
    layer: gpd.GeoDataFrame, dpi: int = 150, simplified: Mapping[float, gpd.GeoSeries | np.ndarray] | None = None
) -> Outlines:
    """The layer's outlines as `choropleth_png` and `priority_png` draw them at `dpi`: simplified
    to half a pixel. `simplified`: the same outlines already simplified, by tolerance in metres
    (row-aligned with `layer`, e.g. the web levels): the coarsest one still finer than half a
    pixel is simplified further, a fraction of the vertices for the same picture."""
    tolerance = _half_pixel(layer.total_bounds, dpi)
    finer = [t for t in (simplified or {}) if t <= tolerance]
    source = simplified[max(finer)] if finer else layer.geometry.to_numpy()
    return outlines(np.asarray(source, dtype=object), tolerance=tolerance)


def _half_pixel(bounds: np.ndarray, dpi: int) -> float:
    """Half the size of a pixel of the map, in metres (finer detail cannot show)."""
    minx, miny, maxx, maxy = bounds
    return max(maxx - minx, maxy - miny) / (min(FIGSIZE) * dpi) / 2


def _outlines_for(layer: gpd.GeoDataFrame, bounds: np.ndarray, dpi: int, given: Outlines | None) -> Outlines:
    """`given`, if prepared for this layer, else the layer's outlines simplified to half a pixel."""
    if given is None:
        return outlines(layer.geometry.to_numpy(), tolerance=_half_pixel(bounds, dpi))
    if len(given.offsets) != len(layer) + 1:
        raise ValueError(f"contours préparés pour {len(given.offsets) - 1} unités, la couche en a {len(layer)}")
    return given


def _check_projected(layer: gpd.GeoDataFrame, name: str) -> None:
    if layer.crs is None or not layer.crs.is_projected:
        raise ValueError(f"{name}: la couche doit être en projection métrique (Lambert-93, UTM outre-mer)")


def outlines(geometries: np.ndarray, tolerance: float) -> Outlines:
    """All parts and holes of these (multi)polygons, simplified to `tolerance` (half a pixel:
    finer detail cannot show), with shells counter-clockwise and holes clockwise so that holes
    stay empty under the non-zero fill rule. One simplification for the whole layer, then whole
    coordinate arrays: no geometry object per ring or class (a national layer's hundreds of
    thousands of them cost seconds of garbage collection in a pipeline's large heap)."""
    geometries = np.asarray(geometries, dtype=object)
    polygonal = np.isin(shapely.get_type_id(geometries), (POLYGON, MULTIPOLYGON))
    simplified = shapely.simplify(np.where(polygonal, geometries, None), tolerance, preserve_topology=False)
    polygons, unit = _polygons(simplified)
    coords = shapely.get_coordinates(polygons)
    ring_offsets, shell = _ring_offsets(polygons)
    sizes = np.diff(ring_offsets)
    ring = np.repeat(np.arange(len(sizes)), sizes)  # each vertex's ring
    starts = ring_offsets[:-1]
    area = _signed_areas(coords, ring, starts)
    reverse = np.where(shell, area < 0, area > 0)
    position = np.arange(len(coords))
    mirrored = starts[ring] + ring_offsets[1:][ring] - 1 - position
    vertices = coords[np.where(reverse[ring], mirrored, position)]
    codes = np.full(len(coords), MplPath.LINETO, dtype=MplPath.code_type)
    codes[starts[sizes > 0]] = MplPath.MOVETO
    codes[ring_offsets[1:][sizes > 0] - 1] = MplPath.CLOSEPOLY
    per_unit = np.bincount(unit, weights=shapely.get_num_coordinates(polygons), minlength=len(geometries))
    offsets = np.concatenate([[0], np.cumsum(per_unit.astype(np.int64))])
    return Outlines(vertices, codes, offsets)


POLYGON, MULTIPOLYGON = shapely.GeometryType.POLYGON, shapely.GeometryType.MULTIPOLYGON


def _polygons(simplified: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The non-empty polygons of these simplified units in order (a multipolygon's parts in turn:
    simplification drops empty parts), and the unit each comes from; only the multipolygons are
    split into new geometries."""
    multi = shapely.get_type_id(simplified) == MULTIPOLYGON
    single = np.flatnonzero(~multi & (shapely.get_num_coordinates(simplified) > 0))
    polygons, unit = simplified[single], single
    if multi.any():
        parts, owner = shapely.get_parts(simplified[multi], return_index=True)
        order = np.argsort(np.concatenate([single, np.flatnonzero(multi)[owner]]), kind="stable")
        polygons = np.concatenate([polygons, parts])[order]
        unit = np.concatenate([single, np.flatnonzero(multi)[owner]])[order]
    return polygons, unit


def _ring_offsets(polygons: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each ring starts in `get_coordinates(polygons)` (shell, then holes, polygon by
    polygon), and which rings are shells. Only polygons with holes are split into rings."""
    totals = shapely.get_num_coordinates(polygons)
    counts = 1 + shapely.get_num_interior_rings(polygons)
    first = np.cumsum(counts) - counts  # each polygon's shell, as a ring number
    sizes = np.zeros(counts.sum(), dtype=np.int64)
    sizes[first] = totals
    holed = counts > 1
    if holed.any():
        rings = shapely.get_rings(polygons[holed])
        n = counts[holed]
        ring_numbers = np.repeat(first[holed] - (np.cumsum(n) - n), n) + np.arange(n.sum())
        sizes[ring_numbers] = shapely.get_num_coordinates(rings)
    shell = np.zeros(len(sizes), dtype=bool)
    shell[first] = True
    return np.concatenate([[0], np.cumsum(sizes)]), shell


def _signed_areas(coords: np.ndarray, ring: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Twice the signed area of each ring (shoelace, positive counter-clockwise), from each
    ring's first vertex so that Lambert-93 magnitudes do not eat the precision."""
    local = coords - coords[starts][ring]
    cross = local[:-1, 0] * local[1:, 1] - local[1:, 0] * local[:-1, 1]
    same = ring[:-1] == ring[1:]
    return np.bincount(ring[:-1][same], weights=cross[same], minlength=len(starts))


def class_path(geometries: np.ndarray, tolerance: float) -> MplPath:
    """One matplotlib path holding every ring of these outlines (all parts and holes), see
    `outlines`."""
    prepared = outlines(geometries, tolerance)
    return prepared.path(np.ones(len(prepared.offsets) - 1, dtype=bool))


def _north_arrow(ax) -> None:
    ax.annotate(
        "N",
        xy=(0.05, 0.95),
        xytext=(0.05, 0.86),
        xycoords="axes fraction",
        ha="center",
        fontsize=11,
        fontweight="bold",
        arrowprops={"arrowstyle": "-|>", "color": "black", "lw": 1.5},
    )


def _scale_bar(ax) -> None:
    """A round length (1, 2, 5 × 10^n m) about a fifth of the map width, bottom left."""
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    target = (x1 - x0) / 5
    magnitude = 10 ** np.floor(np.log10(target))
    length = max(m * magnitude for m in (1, 2, 5) if m * magnitude <= target)
    x, y = x0 + (x1 - x0) * 0.05, y0 + (y1 - y0) * 0.04
    ax.plot([x, x + length], [y, y], color="black", lw=3, solid_capstyle="butt")
    label = f"{length / 1000:g} km" if length >= 1000 else f"{length:g} m"
    ax.text(x + length / 2, y + (y1 - y0) * 0.012, label, ha="center", va="bottom", fontsize=8)


def histogram_png(values, *, title: str, reference: float | None = 100.0, dpi: int = 120) -> bytes:
    """Distribution of a score, with the reference level marked."""
    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=dpi)
    data = np.asarray(values, dtype="float64")
    ax.hist(data[~np.isnan(data)], bins=40, color="#e34a33", edgecolor="white")
    if reference is not None:
        ax.axvline(reference, color="black", lw=1, ls="--")
        ax.text(reference, ax.get_ylim()[1] * 0.95, " référence = 100", fontsize=8, va="top")
    ax.set_title(plain_text(title), fontsize=10, loc="left")
    ax.set_xlabel("score")
    ax.set_ylabel("nombre d'IRIS")
    ax.spines[["top", "right"]].set_visible(False)
    try:
        return _render(fig, dpi)[0]
    finally:
        plt.close(fig)

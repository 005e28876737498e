"""Static choropleth maps (PNG) for the report, the pack and the Dagster UI."""

from __future__ import annotations

import io

import geopandas as gpd
import matplotlib

matplotlib.use("Agg")  # no display: files only

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import shapely  # noqa: E402
from matplotlib.collections import PathCollection  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.path import Path as MplPath  # noqa: E402

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
) -> tuple[bytes, bytes | None]:
    """A north-up map in the layer's projected CRS (Lambert-93 in metropolitan France, the
    overseas département's UTM projection elsewhere) with legend, title, sources line, north
    arrow and scale bar; and, if `thumbnail_dpi` is given, the same map at that resolution (drawn
    from the same figure, so the outlines are prepared once)."""
    if layer.crs is None or not layer.crs.is_projected:
        raise ValueError("choropleth_png: la couche doit être en projection métrique (Lambert-93, UTM outre-mer)")
    values = layer[classes.field].to_numpy(dtype="float64")
    index = class_index(classes, values)  # the classes the labels state, as QGIS draws them
    colors = np.where(index < 0, MISSING_COLOR, np.asarray(classes.colors, dtype=object)[index.clip(0)])
    fig, ax = plt.subplots(figsize=FIGSIZE, dpi=dpi)
    minx, miny, maxx, maxy = layer.total_bounds
    pixel = max(maxx - minx, maxy - miny) / (min(FIGSIZE) * dpi)  # metres per pixel, about
    geometries = layer.geometry.to_numpy()
    palette = list(dict.fromkeys(colors))  # one compound path per colour: a handful of paths to draw
    paths = [class_path(geometries[colors == color], tolerance=pixel / 2) for color in palette]
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
    handles += _caution_marks(ax, layer, geometries, values, pixel)
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
    fig.text(0.01, 0.01, plain_text(sources), fontsize=7, color="#444444", ha="left", va="bottom", wrap=True)
    try:
        return _png(fig, dpi), (None if thumbnail_dpi is None else _png(fig, thumbnail_dpi))
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


def _caution_marks(ax, layer: gpd.GeoDataFrame, geometries: np.ndarray, values: np.ndarray, pixel: float) -> list:
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
            path = class_path(geometries[units], tolerance=pixel / 2)
            ax.add_collection(PathCollection([path], facecolors="none", edgecolors=CAUTION_COLOR, **style))
            handles.append(handle)
    return handles


def priority_png(
    iris: gpd.GeoDataFrame,
    places: gpd.GeoDataFrame | None,
    *,
    title: str,
    sources: str,
    dpi: int = 150,
) -> bytes:
    """The IRIS coloured by priority class (`priorite`: forte, moyenne, faible, grey « non
    classé »), with the places of mediation on top (filled: coordinates of the file; hollow: at
    their commune's centre), in the layer's projected CRS, north up, with legend, title, sources
    line, north arrow and scale bar, like `choropleth_png`."""
    if iris.crs is None or not iris.crs.is_projected:
        raise ValueError("priority_png: la couche doit être en projection métrique (Lambert-93, UTM outre-mer)")
    classes = iris["priorite"].astype("string")
    colors = np.array([PRIORITY_STYLE[c][0] if c in PRIORITY_STYLE else MISSING_COLOR for c in classes.fillna("")])
    fig, ax = plt.subplots(figsize=FIGSIZE, dpi=dpi)
    minx, miny, maxx, maxy = iris.total_bounds
    pixel = max(maxx - minx, maxy - miny) / (min(FIGSIZE) * dpi)
    geometries = iris.geometry.to_numpy()
    palette = list(dict.fromkeys(colors))
    outlined = len(iris) <= MAX_OUTLINED
    ax.add_collection(
        PathCollection(
            [class_path(geometries[colors == color], tolerance=pixel / 2) for color in palette],
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
    fig.text(0.01, 0.01, plain_text(sources), fontsize=7, color="#444444", ha="left", va="bottom", wrap=True)
    try:
        return _png(fig, dpi)
    finally:
        plt.close(fig)


def _png(fig, dpi: int) -> bytes:
    buffer = io.BytesIO()
    # zlib level 1: a national map is a noisy image, which the default level spends seconds on.
    fig.savefig(buffer, format="png", bbox_inches="tight", dpi=dpi, pil_kwargs={"compress_level": 1})
    return buffer.getvalue()


def class_path(geometries: np.ndarray, tolerance: float) -> MplPath:
    """One matplotlib path holding every ring of these outlines (all parts and holes), built
    from whole coordinate arrays rather than polygon by polygon. Outlines are first simplified
    to `tolerance` (half a pixel: finer detail cannot show); rings are oriented so that holes
    wind the other way and stay empty under the non-zero fill rule."""
    simplified = shapely.simplify(geometries, tolerance, preserve_topology=False)
    polygons = shapely.orient_polygons(shapely.get_parts(simplified))
    rings = shapely.get_rings(polygons)
    coords, ring = shapely.get_coordinates(rings, return_index=True)
    if len(coords) == 0:
        return MplPath(np.empty((0, 2)))
    sizes = np.bincount(ring, minlength=len(rings))
    starts = (np.cumsum(sizes) - sizes)[sizes > 0]
    codes = np.full(len(coords), MplPath.LINETO, dtype=MplPath.code_type)
    codes[starts] = MplPath.MOVETO
    codes[starts + sizes[sizes > 0] - 1] = MplPath.CLOSEPOLY
    return MplPath(coords, codes)


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
        return _png(fig, dpi)
    finally:
        plt.close(fig)

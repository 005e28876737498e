"""Map classes shared by the PNG maps and the QGIS styles, and the QGIS files themselves.

One classification gives the breaks, colours and French legend labels, so the map a GIS user
opens in QGIS matches the PNG of the report, "non noté" class included. Quantiles, the default,
are computed here exactly as mapclassify computes them; other schemes come from mapclassify,
imported only then (with scipy and scikit-learn, it costs half a second at every start).

Classes are closed on the right, as QGIS's graduated renderer and `np.searchsorted(side="left")`
draw them: the first holds every value up to its upper bound, each next one the values above the
previous bound up to its own. The inner bounds are rounded to the decimals the labels show, so a
label always states its class exactly (a score of 100 is never "moins de 100").

The QGIS files follow the schema of QGIS 3.22 LTR (the oldest LTR still in Debian stable) and say
so in their `version`, so no QGIS from 3.22 on warns that they come from a newer version.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import to_hex, to_rgb
from pyproj import CRS

from config.settings import Classification

SCHEME_MODES = {"Quantiles": "quantile", "EqualInterval": "equal", "FisherJenks": "jenks", "NaturalBreaks": "jenks"}
MISSING_COLOR = "#d9d9d9"  # grey of the features with no score, in QGIS as in the PNG maps
MISSING_LABEL = "non noté"
QGIS_VERSION = "3.22.0-Białowieża"
MAX_DECIMALS = 6
# QGIS's own ids (`srs_id` of resources/srs.db, the same from 3.22 on) of the CRSs IGN publishes
# IRIS outlines in: with one, QGIS reads the CRS from its EPSG code; without, from the WKT.
QGIS_SRSID = {2154: 145, 5490: 28159, 2972: 940, 2975: 942, 4471: 27721}
# The priority classes of the offer (indice/priorite.py): colour and French legend label, shared
# by the PNG map and the QGIS project. IRIS without a class are grey, as unscored ones.
PRIORITY_STYLE = {
    "forte": ("#b2182b", "forte : fragile et éloigné de l'offre"),
    "moyenne": ("#ef8a62", "moyenne"),
    "faible": ("#fddbc7", "faible"),
}
PRIORITY_MISSING_LABEL = "non classé"
# The places of digital mediation: one colour, filled where the file gives coordinates, hollow
# where the place was put at its commune's population centre (`localisation = commune`).
PLACE_COLOR = "#08519c"
PLACE_STYLE = {
    "coordonnees": "lieu de médiation (coordonnées du fichier)",
    "commune": "lieu placé au centre de sa commune (sans coordonnées)",
}


@dataclass(frozen=True)
class Classes:
    field: str
    lower: float  # smallest value classified
    breaks: tuple[float, ...]  # upper bound of each class, included; the last is the largest value
    colors: tuple[str, ...]  # hex, one per class
    labels: tuple[str, ...]  # French legend labels
    scheme: str
    decimals: int = 0  # decimals of the inner bounds, as the labels show them
    missing: int = 0  # features with no value: drawn in the grey "non noté" class


def _fmt(v: float, decimals: int = 0) -> str:
    """French number: narrow no-break space between thousands, decimal comma."""
    return f"{v:,.{decimals}f}".replace(",", "\u202f").replace(".", ",")


def _rounded(inner: list[float], values: np.ndarray) -> tuple[tuple[float, ...], int]:
    """The inner bounds rounded to the fewest decimals that move none by more than a hundredth
    of the range of `values` (sorted) and leave every class distinct and non-empty, so the
    labels can state the bounds exactly (a cartographer's round breaks)."""
    span = float(values[-1] - values[0])
    for decimals in range(MAX_DECIMALS + 1):
        bounds = [float(f"{b:.{decimals}f}") for b in inner]
        counts = np.diff(np.searchsorted(values, [-np.inf, *bounds, np.inf], side="right"))
        close = all(abs(r - b) <= span / 100 for r, b in zip(bounds, inner))
        if close and (counts > 0).all():
            return tuple(bounds), decimals
    return tuple(inner), MAX_DECIMALS


def class_labels(lower: float, breaks: tuple[float, ...], decimals: int) -> tuple[str, ...]:
    """French labels that state each class's bounds as the renderer applies them (right-closed)."""
    if len(breaks) == 1:
        low, high = _fmt(lower, decimals), _fmt(breaks[0], decimals)
        return (high if low == high else f"{low} à {high}",)
    inner = [_fmt(b, decimals) for b in breaks[:-1]]
    middle = [f"plus de {lo} à {hi}" for lo, hi in zip(inner, inner[1:])]
    return (f"jusqu'à {inner[0]}", *middle, f"plus de {inner[-1]}")


def quantile_bins(values: np.ndarray, k: int) -> np.ndarray:
    """mapclassify's `Quantiles(values, k).bins`: the scores at each 100/k percentile, by
    scipy's `scoreatpercentile` interpolation (the same floating-point operations), repeated
    bounds merged."""
    ordered = np.sort(np.asarray(values, dtype="float64").ravel())
    step = 100.0 / k
    percents = np.arange(step, 100 + step, step)
    if percents[-1] > 100.0:
        percents[-1] = 100.0
    scores = []
    for percent in percents:
        position = percent / 100.0 * (len(ordered) - 1)
        i = int(position)
        if i == position:
            scores.append(ordered[i])
        else:
            weights = np.array([(i + 1 - position), (position - i)], float)
            scores.append(np.add.reduce(ordered[i : i + 2] * weights) / weights.sum())
    return np.unique(np.array(scores))


def scheme_bins(scheme: str, values: np.ndarray, k: int) -> np.ndarray:
    """Upper bounds of the classes of `scheme` (a mapclassify classifier name)."""
    if scheme == "Quantiles":
        return quantile_bins(values, k)
    import mapclassify

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "not enough unique values": k shrinks, as said
        return getattr(mapclassify, scheme)(values, k=k).bins


def classify(values: pd.Series, spec: Classification) -> Classes:
    """Breaks of `spec.scheme` with `spec.k` classes over the non-missing values."""
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64")
    present = numbers[~np.isnan(numbers)]
    if present.size == 0:
        raise ValueError(f"aucune valeur à classer dans {spec.field}")
    lower, upper = float(present.min()), float(present.max())
    k = min(spec.k, len(np.unique(present)))
    bins = [float(b) for b in scheme_bins(spec.scheme, present, k)] if k > 1 else [upper]
    inner, decimals = _rounded(sorted({b for b in bins[:-1] if b < upper}), np.sort(present))
    breaks = (*inner, upper)
    cmap = colormaps[spec.colormap]
    # one class: the middle of the ramp (a single class is neither the lightest nor the darkest)
    colors = (
        tuple(to_hex(c) for c in cmap.resampled(len(breaks))(range(len(breaks))))
        if len(breaks) > 1
        else (to_hex(cmap(0.5)),)
    )
    return Classes(
        spec.field,
        lower,
        breaks,
        colors,
        class_labels(lower, breaks, decimals),
        spec.scheme,
        decimals,
        int(np.isnan(numbers).sum()),
    )


def class_index(classes: Classes, values: np.ndarray) -> np.ndarray:
    """Class of each value (-1 when missing), by the right-closed rule the labels state."""
    values = np.asarray(values, dtype="float64")
    index = np.searchsorted(np.asarray(classes.breaks), values, side="left").clip(0, len(classes.breaks) - 1)
    return np.where(np.isnan(values), -1, index)


def class_filters(classes: Classes) -> tuple[str, ...]:
    """A QGIS expression per class selecting exactly the values its label states."""
    field = '"' + classes.field.replace('"', '""') + '"'
    if len(classes.breaks) == 1:
        return (f"{field} IS NOT NULL",)
    bounds = [f"{b:.{classes.decimals}f}" for b in classes.breaks[:-1]]
    middle = [f"{field} > {lo} AND {field} <= {hi}" for lo, hi in zip(bounds, bounds[1:])]
    return (f"{field} <= {bounds[0]}", *middle, f"{field} > {bounds[-1]}")


def _rgba(color: str) -> str:
    r, g, b = (int(round(c * 255)) for c in to_rgb(color))
    return f"{r},{g},{b},255"


_NO_DATA_DEFINED = """<data_defined_properties>
          <Option type="Map">
            <Option type="QString" name="name" value=""/>
            <Option name="properties"/>
            <Option type="QString" name="type" value="collection"/>
          </Option>
        </data_defined_properties>"""


def _symbol_xml(kind: str, layer_class: str, name: int, props: dict[str, str]) -> str:
    """One symbol of one symbol layer, as QGIS 3.22 writes it: the options map and the legacy
    `prop` list, both read by 3.22 and later."""
    options = "\n".join(f'            <Option type="QString" name="{k}" value="{v}"/>' for k, v in props.items())
    legacy = "\n".join(f'          <prop k="{k}" v="{v}"/>' for k, v in props.items())
    return f"""      <symbol type="{kind}" name="{name}" alpha="1" clip_to_extent="1" force_rhr="0">
        {_NO_DATA_DEFINED}
        <layer class="{layer_class}" enabled="1" pass="0" locked="0">
          <Option type="Map">
{options}
          </Option>
{legacy}
        </layer>
      </symbol>"""


def _fill_symbol(name: int, color: str) -> str:
    """A simple fill with a thin white outline, as QGIS 3.22 writes it (options map and props)."""
    props = {
        "color": _rgba(color),
        "outline_color": "255,255,255,255",
        "outline_style": "solid",
        "outline_width": "0.1",
        "outline_width_unit": "MM",
        "style": "solid",
        "joinstyle": "bevel",
    }
    return _symbol_xml("fill", "SimpleFill", name, props)


def renderer_xml(classes: Classes) -> str:
    """A QGIS rule-based renderer on `classes.field` (the body shared by .qml and .qgs): one rule
    per class, filtered by its bounds, and the grey "non noté" rule for missing values, which a
    graduated renderer cannot draw (it leaves them out, showing the layers underneath)."""
    rules = list(zip(class_filters(classes), classes.labels, classes.colors))
    if classes.missing:
        field = '"' + classes.field.replace('"', '""') + '"'
        rules.append((f"{field} IS NULL", MISSING_LABEL, MISSING_COLOR))
    return _rule_renderer(
        f"classes_{classes.field}",
        [(expression, label, _fill_symbol(i, color)) for i, (expression, label, color) in enumerate(rules)],
    )


def _rule_renderer(key: str, rules: list[tuple[str, str, str]]) -> str:
    """A QGIS rule-based renderer: (filter expression, label, symbol XML named by its rank)."""
    rule_xml = "\n".join(
        f'      <rule key="classe_{i}" symbol="{i}" filter={quoteattr(expression)} label={quoteattr(label)}/>'
        for i, (expression, label, _) in enumerate(rules)
    )
    symbols = "\n".join(symbol for _, _, symbol in rules)
    return f"""  <renderer-v2 type="RuleRenderer" symbollevels="0" enableorderby="0" forceraster="0" referencescale="-1">
    <rules key={quoteattr(key)}>
{rule_xml}
    </rules>
    <symbols>
{symbols}
    </symbols>
  </renderer-v2>"""


def priority_renderer(field: str = "priorite") -> str:
    """The IRIS by priority class (`forte`, `moyenne`, `faible`), grey « non classé » for the
    IRIS without a class: the colours and labels of the PNG map."""
    quoted = '"' + field.replace('"', '""') + '"'
    rules = [(f"{quoted} = '{value}'", label, color) for value, (color, label) in PRIORITY_STYLE.items()]
    rules.append((f"{quoted} IS NULL", PRIORITY_MISSING_LABEL, MISSING_COLOR))
    return _rule_renderer(
        f"classes_{field}",
        [(expression, label, _fill_symbol(i, color)) for i, (expression, label, color) in enumerate(rules)],
    )


def _marker_symbol(name: int, color: str, hollow: bool) -> str:
    """A circle marker as QGIS 3.22 writes it: filled with `color`, or hollow (transparent fill,
    outline of `color`)."""
    props = {
        "name": "circle",
        "color": "255,255,255,0" if hollow else _rgba(color),
        "outline_color": _rgba(color) if hollow else "255,255,255,255",
        "outline_style": "solid",
        "outline_width": "0.5" if hollow else "0.2",
        "outline_width_unit": "MM",
        "size": "2.4",
        "size_unit": "MM",
        "scale_method": "diameter",
        "angle": "0",
        "offset": "0,0",
        "offset_unit": "MM",
        "horizontal_anchor_point": "1",
        "vertical_anchor_point": "1",
        "joinstyle": "bevel",
    }
    return _symbol_xml("marker", "SimpleMarker", name, props)


def places_renderer(field: str = "localisation") -> str:
    """The places of mediation: a filled circle where the file gives coordinates, a hollow one
    where the place stands at its commune's population centre."""
    quoted = '"' + field.replace('"', '""') + '"'
    rules = [
        (f"{quoted} = '{value}'", label, _marker_symbol(i, PLACE_COLOR, hollow=value == "commune"))
        for i, (value, label) in enumerate(PLACE_STYLE.items())
    ]
    return _rule_renderer(f"classes_{field}", rules)


@dataclass(frozen=True)
class ProjectLayer:
    """A layer of the QGIS project with its own renderer (`renderer_xml`, `priority_renderer`,
    `places_renderer`) and visibility on open."""

    name: str  # as shown in the layers panel
    path: str  # relative path of the .gpkg
    layername: str  # layer in the file
    layer_id: str
    renderer: str
    geometry: str = "Polygon"  # Polygon or Point
    checked: bool = False


def qml(classes: Classes) -> str:
    """A layer style file: QGIS loads `iris.qml` by itself beside `iris.gpkg`."""
    return f"""<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="{QGIS_VERSION}" styleCategories="Symbology">
{renderer_xml(classes)}
</qgis>
"""


def spatialrefsys_xml(epsg: int) -> str:
    """The CRS as QGIS writes it in full (WKT, PROJ string, ids): QGIS 3.22 ignores a
    `<spatialrefsys>` holding only an `authid`, leaving the project with no CRS."""
    crs = CRS.from_epsg(epsg)
    with warnings.catch_warnings():  # the PROJ string is informative: QGIS reads the WKT or the code
        warnings.simplefilter("ignore")
        proj4 = crs.to_proj4()
    acronym = next((p.split("=", 1)[1] for p in proj4.split() if p.startswith("+proj=")), "")
    ellipsoid_id = (crs.ellipsoid.to_json_dict().get("id") or {}) if crs.ellipsoid else {}
    ellipsoid = f"{ellipsoid_id['authority']}:{ellipsoid_id['code']}" if ellipsoid_id else ""
    srsid = f"<srsid>{QGIS_SRSID[epsg]}</srsid>" if epsg in QGIS_SRSID else ""
    return (
        f"<spatialrefsys><wkt>{escape(crs.to_wkt('WKT2_2019'))}</wkt><proj4>{escape(proj4)}</proj4>{srsid}"
        f"<srid>{epsg}</srid><authid>EPSG:{epsg}</authid><description>{escape(crs.name)}</description>"
        f"<projectionacronym>{acronym}</projectionacronym><ellipsoidacronym>{ellipsoid}</ellipsoidacronym>"
        f"<geographicflag>{'true' if crs.is_geographic else 'false'}</geographicflag></spatialrefsys>"
    )


def _view(extent: tuple[float, float, float, float] | None, srs: str) -> tuple[str, str]:
    """The map canvas and the default view on `extent` (xmin, ymin, xmax, ymax, in the project
    CRS), so QGIS opens on the territory; nothing when no extent is given."""
    if extent is None:
        return "", ""
    xmin, ymin, xmax, ymax = (float(v) for v in extent)
    canvas = f"""  <mapcanvas name="theMapCanvas" annotationsVisible="1">
    <units>meters</units>
    <extent><xmin>{xmin!r}</xmin><ymin>{ymin!r}</ymin><xmax>{xmax!r}</xmax><ymax>{ymax!r}</ymax></extent>
    <rotation>0</rotation>
    <destinationsrs>{srs}</destinationsrs>
    <rendermaptile>0</rendermaptile>
  </mapcanvas>
"""
    view = f"""  <ProjectViewSettings UseProjectScales="0" rotation="0">
    <Scales/>
    <DefaultViewExtent xmin="{xmin!r}" ymin="{ymin!r}" xmax="{xmax!r}" ymax="{ymax!r}">{srs}</DefaultViewExtent>
  </ProjectViewSettings>
"""
    return canvas, view


def qgis_project(
    title: str,
    layers: list[tuple[str, str, str, Classes]],
    epsg: int = 2154,
    extent: tuple[float, float, float, float] | None = None,
    above: list[ProjectLayer] = (),
) -> str:
    """A QGIS project referencing GeoPackage layers by relative path, each with its style.

    `layers`: (display name, relative path of the .gpkg, layer name in the file, classes), drawn
    with the first on top; only the first is shown on open (the layers are opaque: the others
    would only hide one another). `above`: layers drawn over those (the places of mediation, the
    IRIS by priority), each with its own renderer and visibility. `epsg`: the layers' CRS, which
    becomes the project's, so layers in other CRSs (a WGS84 GeoJSON) are reprojected on the fly.
    `extent`: where the map opens, in that CRS.
    """
    srs = spatialrefsys_xml(epsg)
    scored = [
        ProjectLayer(name, path, layername, f"{layername}_fragilite", renderer_xml(classes), checked=rank == 0)
        for rank, (name, path, layername, classes) in enumerate(layers)
    ]
    tree, maps, order = [], [], []
    for layer in [*above, *scored]:
        source = f"{layer.path}|layername={layer.layername}"
        checked = "Qt::Checked" if layer.checked else "Qt::Unchecked"
        tree.append(
            f'    <layer-tree-layer id="{layer.layer_id}" name={quoteattr(layer.name)} source={quoteattr(source)} '
            f'providerKey="ogr" checked="{checked}" expanded="1"/>'
        )
        order.append(layer.layer_id)
        maps.append(f"""    <maplayer type="vector" geometry="{layer.geometry}" styleCategories="AllStyleCategories">
      <id>{layer.layer_id}</id>
      <datasource>{escape(source)}</datasource>
      <layername>{escape(layer.name)}</layername>
      <srs>{srs}</srs>
      <provider encoding="UTF-8">ogr</provider>
{layer.renderer}
      <blendMode>0</blendMode>
      <layerOpacity>1</layerOpacity>
    </maplayer>""")
    canvas, view = _view(extent, srs)
    items = "\n".join(f"      <item>{i}</item>" for i in order)
    layer_order = "\n".join(f'    <layer id="{i}"/>' for i in order)
    return f"""<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis projectname={quoteattr(title)} version="{QGIS_VERSION}">
  <homePath path=""/>
  <title>{escape(title)}</title>
  <projectCrs>{srs}</projectCrs>
  <layer-tree-group>
{chr(10).join(tree)}
    <custom-order enabled="0">
{items}
    </custom-order>
  </layer-tree-group>
{canvas}  <projectlayers>
{chr(10).join(maps)}
  </projectlayers>
  <layerorder>
{layer_order}
  </layerorder>
  <properties>
    <Paths><Absolute type="bool">false</Absolute></Paths>
    <SpatialRefSys>
      <ProjectionsEnabled type="int">1</ProjectionsEnabled>
      <ProjectCrs type="QString">EPSG:{epsg}</ProjectCrs>
    </SpatialRefSys>
  </properties>
{view}</qgis>
"""

"""Map classes shared by the PNG maps and the QGIS styles, and the QGIS files themselves.

One classification (mapclassify) gives the breaks, colours and French legend labels, so the map
a GIS user opens in QGIS matches the PNG of the report.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

import mapclassify
import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import to_hex, to_rgb

from config.settings import Classification

SCHEME_MODES = {"Quantiles": "quantile", "EqualInterval": "equal", "FisherJenks": "jenks", "NaturalBreaks": "jenks"}


@dataclass(frozen=True)
class Classes:
    field: str
    lower: float
    breaks: tuple[float, ...]  # upper bound of each class
    colors: tuple[str, ...]  # hex, one per class
    labels: tuple[str, ...]  # French legend labels
    scheme: str


def _fmt(v: float) -> str:
    return f"{v:,.0f}".replace(",", "\u202f")


def classify(values: pd.Series, spec: Classification) -> Classes:
    """Breaks of `spec.scheme` with `spec.k` classes over the non-missing values."""
    present = values.dropna().to_numpy(dtype="float64")
    if present.size == 0:
        raise ValueError(f"no value to classify in {spec.field}")
    k = min(spec.k, len(np.unique(present)))
    scheme = getattr(mapclassify, spec.scheme)(present, k=k)
    breaks = tuple(float(b) for b in scheme.bins)
    cmap = colormaps[spec.colormap].resampled(len(breaks))
    colors = tuple(to_hex(cmap(i)) for i in range(len(breaks)))
    lows = (float(present.min()), *breaks[:-1])
    labels = tuple(
        (
            f"moins de {_fmt(b)}"
            if i == 0
            else f"{_fmt(lo)} à {_fmt(b)}"
            if i < len(breaks) - 1
            else f"{_fmt(lo)} et plus"
        )
        for i, (lo, b) in enumerate(zip(lows, breaks))
    )
    return Classes(spec.field, float(present.min()), breaks, colors, labels, spec.scheme)


def _rgba(color: str) -> str:
    r, g, b = (int(round(c * 255)) for c in to_rgb(color))
    return f"{r},{g},{b},255"


def renderer_xml(classes: Classes) -> str:
    """A QGIS graduated renderer on `classes.field` (the body shared by .qml and .qgs)."""
    lows = (classes.lower, *classes.breaks[:-1])
    ranges = "\n".join(
        f'      <range lower="{lo:.6f}" upper="{hi:.6f}" symbol="{i}" label={quoteattr(label)} render="true"/>'
        for i, (lo, hi, label) in enumerate(zip(lows, classes.breaks, classes.labels))
    )
    symbols = "\n".join(
        f'''      <symbol type="fill" name="{i}" alpha="1" clip_to_extent="1" force_rhr="0">
        <layer class="SimpleFill" enabled="1" pass="0" locked="0">
          <Option type="Map">
            <Option type="QString" name="color" value="{_rgba(color)}"/>
            <Option type="QString" name="outline_color" value="255,255,255,255"/>
            <Option type="QString" name="outline_width" value="0.1"/>
            <Option type="QString" name="outline_width_unit" value="MM"/>
            <Option type="QString" name="style" value="solid"/>
          </Option>
        </layer>
      </symbol>'''
        for i, color in enumerate(classes.colors)
    )
    mode = SCHEME_MODES.get(classes.scheme, "custom")
    return f'''  <renderer-v2 type="graduatedSymbol" attr="{classes.field}" graduatedMethod="GraduatedColor" symbollevels="0" enableorderby="0" forceraster="0">
    <ranges>
{ranges}
    </ranges>
    <symbols>
{symbols}
    </symbols>
    <mode name="{mode}"/>
  </renderer-v2>'''


def qml(classes: Classes) -> str:
    """A layer style file: QGIS loads `iris.qml` by itself beside `iris.gpkg`."""
    return f"""<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.34.0" styleCategories="Symbology">
{renderer_xml(classes)}
</qgis>
"""


def qgis_project(title: str, layers: list[tuple[str, str, str, Classes]], epsg: int = 2154) -> str:
    """A QGIS project referencing GeoPackage layers by relative path, each with its style.

    `layers`: (display name, relative path of the .gpkg, layer name in the file, classes), drawn
    with the first on top.
    """
    srs = f"<spatialrefsys><authid>EPSG:{epsg}</authid></spatialrefsys>"
    tree, maps = [], []
    for name, path, layername, classes in layers:
        layer_id = f"{layername}_fragilite"
        source = f"{path}|layername={layername}"
        tree.append(
            f'    <layer-tree-layer id="{layer_id}" name={quoteattr(name)} source={quoteattr(source)} '
            f'providerKey="ogr" checked="Qt::Checked" expanded="1"/>'
        )
        maps.append(f"""    <maplayer type="vector" geometry="Polygon">
      <id>{layer_id}</id>
      <datasource>{source}</datasource>
      <layername>{name}</layername>
      <srs>{srs}</srs>
      <provider encoding="UTF-8">ogr</provider>
{renderer_xml(classes)}
    </maplayer>""")
    return f"""<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis projectname={quoteattr(title)} version="3.34.0">
  <title>{escape(title)}</title>
  <projectCrs>{srs}</projectCrs>
  <layer-tree-group>
{chr(10).join(tree)}
  </layer-tree-group>
  <projectlayers>
{chr(10).join(maps)}
  </projectlayers>
  <properties>
    <Paths><Absolute type="bool">false</Absolute></Paths>
  </properties>
</qgis>
"""

"""IGN CONTOURS-IRIS: the IRIS outlines (GeoPackage or shapefile), in a projected CRS."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pyogrio
import shapely
from pyogrio.errors import DataSourceError

from sources.common import InputError, normalise_codes, require_columns

COLUMNS = ("INSEE_COM", "NOM_COM", "IRIS", "CODE_IRIS", "NOM_IRIS", "TYP_IRIS")
# Projected CRS used by IGN for each part of France (methodology §1).
EXPECTED_CRS = {"metropole": 2154, "971": 5490, "972": 5490, "973": 2972, "974": 2975, "976": 4471}


def read_contours_iris(path: Path, layer: str | None = None) -> gpd.GeoDataFrame:
    """Read the outlines, keeping IGN's columns as text; refuse a file without a CRS."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found", fix="check the path in the configuration (`fragilite config`)")
    try:
        layers = pyogrio.list_layers(path)
    except DataSourceError as exc:
        raise InputError(path, f"not a readable GeoPackage or shapefile ({exc})", fix="download the file again")
    names = [str(n) for n in layers[:, 0]]
    if layer is None:
        candidates = [n for n in names if "IRIS" in n.upper()] or names
        layer = candidates[0]
    elif layer not in names:
        raise InputError(path, f"no layer {layer!r}; layers are {names}", fix="name one of the file's layers")
    gdf = gpd.read_file(path, layer=layer, engine="pyogrio")
    require_columns(path, gdf.columns, COLUMNS, "IGN CONTOURS-IRIS")
    if gdf.crs is None:
        raise InputError(path, "the layer has no CRS", fix="use IGN's original file (Lambert-93, EPSG:2154 in metropolitan France)")
    if not gdf.crs.is_projected:
        raise InputError(path, f"CRS {gdf.crs.to_string()} is not projected",
                         fix="use IGN's original file in Lambert-93 (EPSG:2154) or the overseas UTM projection")
    gdf["CODE_IRIS"] = normalise_codes(gdf["CODE_IRIS"], path=path, column="CODE_IRIS", kind="iris")
    gdf["INSEE_COM"] = normalise_codes(gdf["INSEE_COM"], path=path, column="INSEE_COM", kind="commune", unique=False)
    for col in ("NOM_COM", "IRIS", "NOM_IRIS", "TYP_IRIS"):
        gdf[col] = gdf[col].astype(str)
    empty = gdf.geometry.is_empty | gdf.geometry.isna()
    if empty.any():
        raise InputError(path, f"{int(empty.sum())} IRIS without geometry, first {gdf.loc[empty, 'CODE_IRIS'].iloc[0]}",
                         column="geometry", fix="use IGN's original file")
    gdf = gdf[list(COLUMNS) + ["geometry"]].copy()
    invalid = ~gdf.geometry.is_valid
    repaired = gdf.loc[invalid, "CODE_IRIS"].tolist()
    if repaired:
        # Self-intersections and the like: repaired by GEOS's "structure" method (polygons stay
        # polygons, collapsed parts dropped), and reported (asset metadata, warning check).
        gdf.loc[invalid, "geometry"] = shapely.make_valid(
            gdf.geometry[invalid].to_numpy(), method="structure", keep_collapsed=False)
    gdf.attrs.update(path=str(path), layer=layer, geometries_reparees=repaired)
    return gdf

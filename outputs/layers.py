"""Map layers: the column contract and the file formats.

GeoParquet 1.1 (EPSG:2154, bbox covering) for analysis and GeoPackage for QGIS builds without
Parquet, both with the full outlines, plus a JSON sidecar with the run's method, reference,
vintages and date. GeoJSON RFC 7946 (EPSG:4326, 6 decimals) is the web format: written here,
used on coverage-simplified outlines (methodology §6; `outputs.web`).
"""

from __future__ import annotations

import json
import struct
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pyogrio
import shapely
from geopandas.io.arrow import _geopandas_to_arrow  # pinned geopandas; what to_parquet uses
from pyproj import Transformer

from indice.mednum import SCORE_COLUMNS
from outputs.files import write_all
from outputs.tables import json_text, text_bytes

IDENTITY_COLUMNS: dict[str, tuple[str, ...]] = {
    "iris": ("CODE_IRIS", "NOM_IRIS", "TYP_IRIS", "INSEE_COM", "NOM_COM", "EPCI", "DEP"),
    "communes": ("INSEE_COM", "NOM_COM", "EPCI", "DEP"),
    "epci": ("EPCI", "NOM_EPCI", "DEP"),
    "departements": ("DEP", "NOM_DEP"),
}
INDICATOR_PARTS = ("num", "den", "taux", "score")
METHOD_PREFIXES = ("ifn2023_", "opale_", "est_")
EXTRA_COLUMNS = ("P_POP", "n_iris", "non_residentiel")
# GeoPackage 1.2, not the 1.4 of recent GDALs: GDAL before 3.8 (QGIS 3.22 to 3.34 on Debian,
# Ubuntu and OSGeo4W) warns that a 1.4 file "may only be partially supported"; 1.2 is read
# quietly from GDAL 2.2 on, and our layers use nothing 1.3 or 1.4 added.
GPKG_VERSION = "1.2"


def build_layer(
    maille: str,
    table: pd.DataFrame,
    scores: pd.DataFrame,
    indicator_ids: list[str],
    *,
    methode: str,
    reference: str,
    millesime_rp: int,
) -> gpd.GeoDataFrame:
    """Assemble a layer in contract order.

    `table` (a GeoDataFrame: identity, `<id>_num/_den/_taux`, flags) and `scores` (every score
    column) are row-aligned. Order: identity; per indicator num, den, taux, score; MedNum axis
    and global scores; `methode, reference, millesime_rp`; the other methods' columns
    (`ifn2023_*`, `opale_*`, `est_*`); flags (`<id>_source`, population, …); geometry.
    """
    table = table.reset_index(drop=True)
    scores = scores.reset_index(drop=True)
    n = len(table)
    cols: dict[str, pd.Series] = {c: table[c].astype(str) for c in IDENTITY_COLUMNS[maille]}
    for ind_id in indicator_ids:
        for part in INDICATOR_PARTS:
            source = scores if part == "score" else table
            name = f"{ind_id}_{part}"
            if name in source:
                cols[name] = source[name]
    for name in SCORE_COLUMNS:
        if name in scores:
            cols[name] = scores[name]
    cols["methode"] = pd.Series(methode, index=range(n))
    cols["reference"] = pd.Series(reference, index=range(n))
    cols["millesime_rp"] = pd.Series(int(millesime_rp), index=range(n), dtype="int32")
    for name in scores.columns:
        if name.startswith(METHOD_PREFIXES):
            cols[name] = scores[name]
    for name in table.columns:
        if name.endswith(("_source", "_couverture", "_annee")) or name in EXTRA_COLUMNS:
            cols[name] = table[name]
    return gpd.GeoDataFrame(pd.DataFrame(cols), geometry=table.geometry, crs=table.crs)


# The columns of the places layer (schema LaMednum/standard-mediation-num, and where the point
# comes from: `localisation`).
PLACE_COLUMNS = (
    "id",
    "nom",
    "commune",
    "code_insee",
    "typologie",
    "services",
    "publics_specifiquement_adresses",
    "dispositif_programmes_nationaux",
    "localisation",
    "source",
)


def with_columns(layer: gpd.GeoDataFrame, extra: pd.DataFrame, key: str) -> gpd.GeoDataFrame:
    """`layer` with the columns of `extra` (keyed by `key`) added before the geometry, rows and
    the contract order of the layer's own columns kept; rows `extra` lacks get missing values."""
    geometry = layer.geometry.name
    added = [c for c in extra.columns if c != key and c not in layer.columns]
    right = extra[[key, *added]].assign(**{key: extra[key].astype(str)})
    if right[key].duplicated().any():
        raise ValueError(f"with_columns: clé {key} en double dans les colonnes ajoutées")
    merged = pd.DataFrame(layer.drop(columns=geometry)).merge(right, on=key, how="left", validate="one_to_one")
    merged[geometry] = layer.geometry.to_numpy()
    return gpd.GeoDataFrame(merged, geometry=geometry, crs=layer.crs)


def places_layer(places: pd.DataFrame, crs) -> gpd.GeoDataFrame:
    """The places of mediation as points in the layers' CRS, from their `x, y` there (the WGS84
    longitude and latitude projected, or their commune's point for `localisation = commune`,
    `transforms.accessibilite.locate_places`), with the schema's useful columns."""
    columns = {c: places[c].astype(str).to_numpy() if c in places else np.full(len(places), "") for c in PLACE_COLUMNS}
    points = shapely.points(places["x"].to_numpy("float64"), places["y"].to_numpy("float64"))
    return gpd.GeoDataFrame(pd.DataFrame(columns), geometry=points, crs=crs)


# GeoJSON ------------------------------------------------------------------------------------
# Large transient texts go to the system allocator, which hands their pages back once freed
# (Arrow's default, mimalloc, keeps them counted in the process's memory for a while).
TEXT_POOL = pa.system_memory_pool()
FEATURES_PER_BLOCK = 4096  # features joined at once (~10 MB of IRIS text)
PROPERTIES_PER_CALL = 8 * FEATURES_PER_BLOCK  # rows formatted by DuckDB at once (whole blocks)
GEOMETRIES_PER_BLOCK = 8192  # geometries written by GEOS at once
_TEXT = pa.large_string()
_COLLECTION_HEAD = b'{"type":"FeatureCollection","features":[\n'
_COLLECTION_TAIL = b"\n]}\n"
_FEATURE_HEAD = pa.scalar('{"type":"Feature","properties":', _TEXT)
_FEATURE_GEOMETRY = pa.scalar(',"geometry":', _TEXT)
_FEATURE_TAIL = pa.scalar("},\n", _TEXT)  # with the separator, left out after the last feature
_NOTHING = pa.scalar("", _TEXT)
_NULL = pa.scalar("null", _TEXT)


def geojson_geometries(geometries: gpd.GeoSeries) -> pa.LargeStringArray:
    """GeoJSON text of each geometry (RFC 7946: WGS84 longitude/latitude, 6 decimals, exterior
    rings counter-clockwise), written by GEOS; null where a geometry is missing. An Arrow array,
    so files are assembled from it without a Python string per row; made by blocks of
    geometries, so GEOS's and Python's intermediate copies stay small."""
    if geometries.crs is None:
        raise ValueError("the layer has no CRS; cannot write GeoJSON in WGS84")
    to_wgs84 = Transformer.from_crs(geometries.crs, 4326, always_xy=True)

    def lon_lat(xy: np.ndarray) -> np.ndarray:  # reprojected and rounded in one pass over the vertices
        return np.round(np.column_stack(to_wgs84.transform(xy[:, 0], xy[:, 1])), 6)

    values = geometries.to_numpy()
    blocks = [
        pa.array(
            shapely.to_geojson(
                shapely.orient_polygons(shapely.transform(values[start : start + GEOMETRIES_PER_BLOCK], lon_lat))
            ),
            type=_TEXT,
            memory_pool=TEXT_POOL,
        )
        for start in range(0, len(values), GEOMETRIES_PER_BLOCK)
    ]
    return pa.concat_arrays(blocks, memory_pool=TEXT_POOL) if blocks else pa.array([], _TEXT)


Texts = Sequence[str | None] | pa.Array | pa.ChunkedArray


def geojson_properties(frame: pd.DataFrame, decimals: int | None = None) -> pa.ChunkedArray:
    """The GeoJSON `properties` of each row (`outputs.tables.json_rows`), as Arrow text made by
    blocks of rows: neither DuckDB's result for a whole layer nor a Python string per row is
    ever held (a national IRIS layer's properties are ~110 MB of text)."""
    chunks = [
        chunk.cast(_TEXT, memory_pool=TEXT_POOL)
        for start in range(0, len(frame), PROPERTIES_PER_CALL)
        for chunk in json_text(frame.iloc[start : start + PROPERTIES_PER_CALL], decimals).chunks
    ]
    return pa.chunked_array(chunks, type=_TEXT)


def _text_block(values: Texts, start: int, stop: int) -> pa.Array:
    """Rows `start:stop` of `values` (Python strings or Arrow text) as one Arrow array of large
    strings, null written `null`."""
    if isinstance(values, pa.ChunkedArray):
        block = values.slice(start, stop - start)
        block = block.chunk(0) if block.num_chunks == 1 else block.combine_chunks(memory_pool=TEXT_POOL)
        block = block.cast(_TEXT, memory_pool=TEXT_POOL)
    elif isinstance(values, pa.Array):
        block = values.slice(start, stop - start).cast(_TEXT, memory_pool=TEXT_POOL)
    else:
        block = pa.array(values[start:stop], _TEXT, memory_pool=TEXT_POOL)
    return pc.coalesce(block, _NULL, memory_pool=TEXT_POOL) if block.null_count else block


def write_features(path: Path, properties: Texts, geometries: Texts) -> None:
    """A GeoJSON FeatureCollection from each feature's `properties` (JSON objects, from
    `geojson_properties`) and `geometry` (GeoJSON text, from `geojson_geometries`),
    row-aligned. Arrow joins the texts by blocks of rows and their bytes go to the file as they
    are: no Python string per feature, no copy of the whole file in memory."""
    if len(properties) != len(geometries):
        raise ValueError(f"{path}: {len(properties)} property rows for {len(geometries)} geometries")
    with open(path, "wb") as fh:
        fh.write(_COLLECTION_HEAD)
        for start in range(0, len(geometries), FEATURES_PER_BLOCK):
            stop = min(start + FEATURES_PER_BLOCK, len(geometries))
            block = pc.binary_join_element_wise(
                _FEATURE_HEAD,
                _text_block(properties, start, stop),
                _FEATURE_GEOMETRY,
                _text_block(geometries, start, stop),
                _FEATURE_TAIL,
                _NOTHING,
                memory_pool=TEXT_POOL,
            )
            text = text_bytes(block)
            fh.write(text[: len(text) - len(b",\n")] if stop == len(geometries) else text)  # none after the last
        fh.write(_COLLECTION_TAIL)


def write_geojson(
    gdf: gpd.GeoDataFrame,
    path: Path,
    properties: Texts | None = None,
    geometries: Texts | None = None,
) -> None:
    """A GeoJSON RFC 7946 FeatureCollection, no `crs` member.

    `properties` (from `geojson_properties`) and `geometries` (from `geojson_geometries`)
    let several files share one serialisation of a layer's attributes or outlines. Vectorised
    (GEOS writes the geometries, DuckDB the attributes, Arrow joins them): GDAL's GeoJSON driver
    spent most of a national run on per-feature work. French territories never cross the
    antimeridian, so no geometry needs cutting there.
    """
    if gdf.crs is None:
        raise ValueError(f"{path}: the layer has no CRS; cannot write GeoJSON in WGS84")
    shapes = geojson_geometries(gdf.geometry) if geometries is None else geometries
    props = geojson_properties(gdf) if properties is None else properties
    write_features(path, props, shapes)


# GeoPackage forbids mixing single and multi geometries in a layer: as pyogrio does, a layer of
# polygons and multipolygons is written as multipolygons (a polygon, a one-part multipolygon).
_KINDS = {0: "Point", 1: "LineString", 3: "Polygon", 4: "MultiPoint", 5: "MultiLineString", 6: "MultiPolygon"}
_MULTI = {0: 4, 1: 5, 3: 6}  # WKB type of the multi kind of each single kind
_WKB_ORDER = 1 if sys.byteorder == "little" else 0  # shapely writes WKB in the machine's order


def _has_datetimes(layer: pd.DataFrame) -> bool:
    return any(
        pd.api.types.is_datetime64_any_dtype(dtype)
        or (pd.api.types.is_object_dtype(dtype) and "date" in pd.api.types.infer_dtype(layer[name]))
        for name, dtype in layer.dtypes.items()
        if dtype != "geometry"
    )


def _gpkg_table(layer: gpd.GeoDataFrame, table: pa.Table) -> tuple[pa.Table, str] | None:
    """What `pyogrio.write_dataframe(layer, driver="GPKG", use_arrow=True)` hands GDAL (the
    table and its geometry type), made from the GeoParquet `table`: the attributes and the WKB
    are converted once for both files. None for what this does not cover (3D, datetimes, mixed
    geometry kinds), left to pyogrio."""
    values = layer.geometry.to_numpy()
    kinds = shapely.get_type_id(values)
    present = set(np.unique(kinds[kinds >= 0]).tolist())
    if not present or not present <= set(_KINDS) or bool(shapely.has_z(values).any()) or _has_datetimes(layer):
        return None
    column = layer.geometry.name
    wkb = table[column].combine_chunks().cast(pa.binary())
    single = min(present)
    if len(present) == 2 and _MULTI.get(single) in present:
        header = pa.scalar(struct.pack("=BII", _WKB_ORDER, _MULTI[single], 1), pa.binary())
        promoted = pc.binary_join_element_wise(header, wkb, pa.scalar(b"", pa.binary()))
        wkb = pc.if_else(pa.array(kinds == single), promoted, wkb)
        present = {_MULTI[single]}
    if len(present) != 1:
        return None
    gpkg = table.drop_columns(["bbox"]) if "bbox" in table.column_names else table
    gpkg = gpkg.set_column(gpkg.schema.get_field_index(column), pa.field(column, pa.binary()), wkb)
    for i, f in enumerate(gpkg.schema):  # GDAL has no null type: pyogrio writes such columns as text
        if pa.types.is_null(f.type):
            gpkg = gpkg.set_column(i, f.with_type(pa.string()), gpkg[i].cast(pa.string()))
        elif pa.types.is_dictionary(f.type) and pa.types.is_null(f.type.value_type):
            kind = pa.dictionary(f.type.index_type, pa.string())
            gpkg = gpkg.set_column(i, f.with_type(kind), gpkg[i].cast(kind))
    meta = {k: v for k, v in (gpkg.schema.metadata or {}).items() if k != b"geo"}
    return gpkg.replace_schema_metadata(meta), _KINDS[present.pop()]


def write_layer(layer: gpd.GeoDataFrame, out_dir: Path, name: str, run_info: dict[str, Any]) -> dict[Path, int]:
    """Write `<name>.parquet`, `.gpkg` and `.metadata.json` atomically together.

    One Arrow table (attributes and WKB) feeds both the GeoParquet and the GeoPackage, written
    at once on two threads (Arrow and GDAL release the GIL)."""
    info = json.dumps(run_info, ensure_ascii=False, default=str)
    # What `GeoDataFrame.to_parquet` writes (the "geo" metadata of GeoParquet 1.1, bbox covering
    # column), plus the run's metadata.
    table = _geopandas_to_arrow(layer, index=False, schema_version="1.1.0", write_covering_bbox=True)
    gpkg_table = _gpkg_table(layer, table)

    def parquet(tmp: Path) -> None:
        meta = {**(table.schema.metadata or {}), b"fragilite": info.encode("utf-8")}
        pq.write_table(table.replace_schema_metadata(meta), tmp, compression="zstd")

    def gpkg(tmp: Path) -> None:
        options = {"driver": "GPKG", "metadata": {"fragilite": info}, "dataset_options": {"VERSION": GPKG_VERSION}}
        if gpkg_table is None:
            pyogrio.write_dataframe(layer, tmp, layer=name, use_arrow=True, **options)
            return
        epsg = layer.crs.to_epsg() if layer.crs is not None else None
        crs = f"EPSG:{epsg}" if epsg else (layer.crs.to_wkt("WKT1_GDAL") if layer.crs is not None else None)
        pyogrio.write_arrow(
            gpkg_table[0],
            tmp,
            layer=name,
            geometry_name=layer.geometry.name,
            geometry_type=gpkg_table[1],
            crs=crs,
            **options,
        )

    def sidecar(tmp: Path) -> None:
        tmp.write_text(json.dumps(run_info, ensure_ascii=False, indent=2, default=str), encoding="utf-8")

    return write_all(
        {
            out_dir / f"{name}.parquet": parquet,
            out_dir / f"{name}.gpkg": gpkg,
            out_dir / f"{name}.metadata.json": sidecar,
        }
    )

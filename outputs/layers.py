"""Map layers: the column contract and the file formats.

GeoParquet 1.1 (EPSG:2154, bbox covering) for analysis and GeoPackage for QGIS builds without
Parquet, both with the full outlines, plus a JSON sidecar with the run's method, reference,
vintages and date. GeoJSON RFC 7946 (EPSG:4326, 6 decimals) is the web format: written here,
used on coverage-simplified outlines (methodology §6; `outputs.web`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pyogrio
import shapely
from geopandas.io.arrow import _geopandas_to_arrow  # pinned geopandas; what to_parquet uses
from pyproj import Transformer

from indice.mednum import SCORE_COLUMNS
from outputs.files import write_all
from outputs.tables import json_rows

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


def geojson_geometries(geometries: gpd.GeoSeries) -> np.ndarray:
    """GeoJSON text of each geometry (RFC 7946: WGS84 longitude/latitude, 6 decimals, exterior
    rings counter-clockwise), written by GEOS for the whole array at once."""
    if geometries.crs is None:
        raise ValueError("the layer has no CRS; cannot write GeoJSON in WGS84")
    to_wgs84 = Transformer.from_crs(geometries.crs, 4326, always_xy=True)

    def lon_lat(xy: np.ndarray) -> np.ndarray:  # reprojected and rounded in one pass over the vertices
        return np.round(np.column_stack(to_wgs84.transform(xy[:, 0], xy[:, 1])), 6)

    return shapely.to_geojson(shapely.orient_polygons(shapely.transform(geometries.to_numpy(), lon_lat)))


def write_geojson(
    gdf: gpd.GeoDataFrame, path: Path, properties: list[str] | None = None, geometries: np.ndarray | None = None
) -> None:
    """A GeoJSON RFC 7946 FeatureCollection, no `crs` member.

    `properties` (from `outputs.tables.json_rows`) and `geometries` (from `geojson_geometries`)
    let several files share one serialisation of a layer's attributes or outlines. Vectorised
    (GEOS writes the geometries, DuckDB the attributes): GDAL's GeoJSON driver spent most of a
    national run on per-feature work. French territories never cross the antimeridian, so no
    geometry needs cutting there.
    """
    if gdf.crs is None:
        raise ValueError(f"{path}: the layer has no CRS; cannot write GeoJSON in WGS84")
    shapes = geojson_geometries(gdf.geometry) if geometries is None else geometries
    props = json_rows(gdf) if properties is None else properties
    if len(props) != len(shapes):
        raise ValueError(f"{path}: {len(props)} property rows for {len(shapes)} geometries")
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write('{"type":"FeatureCollection","features":[\n')
        fh.write(
            ",\n".join(f'{{"type":"Feature","properties":{p},"geometry":{g or "null"}}}' for p, g in zip(props, shapes))
        )
        fh.write("\n]}\n")


def write_layer(layer: gpd.GeoDataFrame, out_dir: Path, name: str, run_info: dict[str, Any]) -> dict[Path, int]:
    """Write `<name>.parquet`, `.gpkg` and `.metadata.json` atomically together."""
    info = json.dumps(run_info, ensure_ascii=False, default=str)

    def parquet(tmp: Path) -> None:
        # What `GeoDataFrame.to_parquet` writes (the "geo" metadata of GeoParquet 1.1, bbox
        # covering column), plus the run's metadata, in one pass.
        table = _geopandas_to_arrow(layer, index=False, schema_version="1.1.0", write_covering_bbox=True)
        meta = {**(table.schema.metadata or {}), b"fragilite": info.encode("utf-8")}
        pq.write_table(table.replace_schema_metadata(meta), tmp, compression="zstd")

    def gpkg(tmp: Path) -> None:
        pyogrio.write_dataframe(
            layer,
            tmp,
            layer=name,
            driver="GPKG",
            metadata={"fragilite": info},
            dataset_options={"VERSION": GPKG_VERSION},
            use_arrow=True,
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

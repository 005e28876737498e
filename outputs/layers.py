"""Map layers: the IRIS layer's column contract and its three file formats.

GeoParquet 1.1 (EPSG:2154, bbox covering) for analysis, GeoPackage for QGIS builds without
Parquet, GeoJSON RFC 7946 (EPSG:4326, 6 decimals) for the web.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
import pyarrow.parquet as pq
import pyogrio

from indice.mednum import SCORE_COLUMNS
from outputs.files import write_all

IDENTITY_COLUMNS = ("CODE_IRIS", "NOM_IRIS", "TYP_IRIS", "INSEE_COM", "NOM_COM", "EPCI", "DEP")
RUN_COLUMNS = ("methode", "reference", "millesime_rp")
INDICATOR_PARTS = ("num", "den", "taux", "score")
FORMATS = ("parquet", "gpkg", "geojson")


def iris_layer(
    base: gpd.GeoDataFrame,
    indicators: pd.DataFrame,
    scores: pd.DataFrame,
    indicator_ids: list[str],
    *,
    methode: str,
    reference: str,
    millesime_rp: int,
) -> gpd.GeoDataFrame:
    """Assemble the IRIS layer in contract order; extra columns (`<id>_source`, flags) last.

    `base`, `indicators` and `scores` are row-aligned (one row per IRIS, same order).
    """
    parts = [base[list(IDENTITY_COLUMNS)].reset_index(drop=True)]
    cols: dict[str, pd.Series] = {}
    for ind_id in indicator_ids:
        for part in INDICATOR_PARTS:
            src = scores if part == "score" else indicators
            cols[f"{ind_id}_{part}"] = src[f"{ind_id}_{part}"].reset_index(drop=True)
    for col in SCORE_COLUMNS:
        cols[col] = scores[col].reset_index(drop=True)
    cols["methode"] = pd.Series(methode, index=range(len(base)))
    cols["reference"] = pd.Series(reference, index=range(len(base)))
    cols["millesime_rp"] = pd.Series(int(millesime_rp), index=range(len(base)), dtype="int32")
    extras = [c for c in indicators.columns if c.endswith("_source") or c == "non_residentiel"]
    for col in extras:
        cols[col] = indicators[col].reset_index(drop=True)
    layer = pd.concat([parts[0], pd.DataFrame(cols)], axis=1)
    for col in IDENTITY_COLUMNS:
        layer[col] = layer[col].astype(str)
    return gpd.GeoDataFrame(layer, geometry=base.geometry.reset_index(drop=True), crs=base.crs)


def write_layer(layer: gpd.GeoDataFrame, out_dir: Path, name: str, run_info: dict[str, Any]) -> dict[Path, int]:
    """Write `<name>.parquet`, `.gpkg`, `.geojson` and `.metadata.json` atomically together."""
    info = json.dumps(run_info, ensure_ascii=False, default=str)

    def parquet(tmp: Path) -> None:
        layer.to_parquet(tmp, schema_version="1.1.0", write_covering_bbox=True, index=False)
        table = pq.read_table(tmp)
        meta = {**(table.schema.metadata or {}), b"fragilite": info.encode("utf-8")}
        pq.write_table(table.replace_schema_metadata(meta), tmp, compression="zstd")

    def gpkg(tmp: Path) -> None:
        pyogrio.write_dataframe(layer, tmp, layer=name, driver="GPKG",
                                metadata={"fragilite": info})

    def geojson(tmp: Path) -> None:
        pyogrio.write_dataframe(
            layer.to_crs(4326), tmp, driver="GeoJSON",
            layer_options={"RFC7946": "YES", "COORDINATE_PRECISION": "6", "WRITE_NAME": "NO"},
        )

    def sidecar(tmp: Path) -> None:
        tmp.write_text(json.dumps(run_info, ensure_ascii=False, indent=2, default=str), encoding="utf-8")

    return write_all({
        out_dir / f"{name}.parquet": parquet,
        out_dir / f"{name}.gpkg": gpkg,
        out_dir / f"{name}.geojson": geojson,
        out_dir / f"{name}.metadata.json": sidecar,
    })

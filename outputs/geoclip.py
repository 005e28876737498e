"""Geoclip-style publication pack (methodology §6): one table per maille, a dictionary, outlines.

Tables are keyed by the official code as text (`CODE_IRIS`, `CODGEO`, `EPCI`, `DEP`), then the
label, then one column per indicator part; CSV is UTF-8 with `;`, XLSX stores codes as text so
leading zeros and 2A/2B survive a spreadsheet (both written by `outputs.tables`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyogrio

from outputs.disclosure import apply_secret
from outputs.files import write_all
from outputs.layers import write_geojson
from outputs.tables import write_csv, write_table, write_xlsx

PACK_KEYS: dict[str, tuple[str, str, str]] = {
    # maille: (column in the layer, published key, published label)
    "iris": ("CODE_IRIS", "CODE_IRIS", "NOM_IRIS"),
    "communes": ("INSEE_COM", "CODGEO", "NOM_COM"),
    "epci": ("EPCI", "EPCI", "NOM_EPCI"),
    "departements": ("DEP", "DEP", "NOM_DEP"),
}
DROPPED = ("methode", "reference", "geometry", "bbox")


def pack_table(layer: pd.DataFrame, maille: str, caf_indicators: list[str], threshold: float) -> pd.DataFrame:
    """The published table of one maille: key, label, then the indicators, secret applied."""
    column, key, label = PACK_KEYS[maille]
    table = pd.DataFrame(layer.drop(columns=[c for c in DROPPED if c in layer.columns]))
    table = table.rename(columns={column: key})
    rest = [c for c in table.columns if c not in (key, label)]
    table = table[[key, label, *rest]]
    return apply_secret(table, caf_indicators, threshold)


def outlines(layer: gpd.GeoDataFrame, maille: str) -> gpd.GeoDataFrame:
    column, key, label = PACK_KEYS[maille]
    return layer[[column, label, "geometry"]].rename(columns={column: key})


def write_pack(
    layers: dict[str, gpd.GeoDataFrame],
    dictionary: pd.DataFrame,
    out_dir: Path,
    caf_indicators: list[str],
    readme: str,
    web_outlines: Callable[[str], tuple[gpd.GeoSeries, object]] | None = None,
    secret_threshold: float = 5,
) -> dict[Path, int]:
    """Every file of the pack, written atomically together.

    The shapefile has the full outlines; the GeoJSON, a web format, takes `web_outlines(maille)`
    when given: the coverage-simplified outlines, row-aligned with the layer, and their GeoJSON
    text (called when that file is written, so they may still be computing meanwhile).
    """
    targets: dict[Path, Callable[[Path], object]] = {}
    for maille, layer in layers.items():
        table = pack_table(layer, maille, caf_indicators, secret_threshold)
        shapes = outlines(layer, maille)
        targets[out_dir / f"{maille}.xlsx"] = lambda tmp, t=table, m=maille: _csv_and_xlsx(
            t, out_dir / f"{m}.csv", tmp, m
        )
        # Full outlines in the layers' projected CRS (EPSG:2154 in metropolitan France).
        targets[out_dir / "contours" / f"{maille}_{shapes.crs.to_epsg()}.shp"] = lambda tmp, g=shapes: _shapefile(
            g, tmp
        )
    targets[out_dir / "dictionnaire_indicateurs.csv"] = lambda tmp: write_csv(dictionary, tmp)
    targets[out_dir / "dictionnaire_indicateurs.xlsx"] = lambda tmp: write_xlsx(dictionary, tmp, "dictionnaire")
    targets[out_dir / "LISEZMOI.txt"] = lambda tmp: Path(tmp).write_text(readme, encoding="utf-8")
    for maille, layer in layers.items():  # last: they may wait for the web outlines
        targets[out_dir / "contours" / f"{maille}_4326.geojson"] = lambda tmp, g=outlines(layer, maille), m=maille: (
            _contours_geojson(g, m, web_outlines, tmp)
        )
    return write_all(targets)


def _contours_geojson(shapes: gpd.GeoDataFrame, maille: str, web_outlines, tmp: Path) -> None:
    if web_outlines is None:
        write_geojson(shapes, tmp)
    else:
        simplified, text = web_outlines(maille)
        write_geojson(shapes.set_geometry(simplified.to_numpy()), tmp, geometries=text)


def _csv_and_xlsx(table: pd.DataFrame, csv: Path, xlsx_tmp: Path, sheet: str) -> dict[Path, Path]:
    """Both tables of a maille from one formatting pass; the CSV is committed with the XLSX."""
    csv_tmp = csv.with_name(f".{csv.stem}.{uuid.uuid4().hex[:8]}.tmp{csv.suffix}")
    write_table(table, csv=csv_tmp, xlsx=xlsx_tmp, sheet=sheet)
    return {csv_tmp: csv}


SHAPEFILE_PARTS = (".shx", ".dbf", ".prj", ".cpg")


def _shapefile(gdf: gpd.GeoDataFrame, tmp: Path) -> dict[Path, Path]:
    """A shapefile is several files: its companions are committed with the .shp."""
    pyogrio.write_dataframe(gdf, tmp, driver="ESRI Shapefile", encoding="UTF-8")
    final_stem = tmp.name.split(".")[1]
    return {tmp.with_suffix(s): tmp.with_name(final_stem + s) for s in SHAPEFILE_PARTS if tmp.with_suffix(s).exists()}

"""Geoclip-style publication pack (methodology §6): one table per maille, a dictionary, outlines.

Tables are keyed by the official code as text (`CODE_IRIS`, `CODGEO`, `EPCI`, `DEP`), then the
label, then one column per indicator part; CSV is UTF-8 with `;`, XLSX stores codes as text so
leading zeros and 2A/2B survive a spreadsheet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import geopandas as gpd
import pandas as pd
import pyogrio

from outputs.disclosure import apply_secret
from outputs.files import write_all
from outputs.layers import write_geojson

PACK_KEYS: dict[str, tuple[str, str, str]] = {
    # maille: (column in the layer, published key, published label)
    "iris": ("CODE_IRIS", "CODE_IRIS", "NOM_IRIS"),
    "communes": ("INSEE_COM", "CODGEO", "NOM_COM"),
    "epci": ("EPCI", "EPCI", "NOM_EPCI"),
    "departements": ("DEP", "DEP", "NOM_DEP"),
}
DROPPED = ("methode", "reference", "geometry", "bbox")


def pack_table(layer: pd.DataFrame, maille: str, caf_indicators: list[str]) -> pd.DataFrame:
    """The published table of one maille: key, label, then the indicators, secret applied."""
    column, key, label = PACK_KEYS[maille]
    table = pd.DataFrame(layer.drop(columns=[c for c in DROPPED if c in layer.columns]))
    table = table.rename(columns={column: key})
    rest = [c for c in table.columns if c not in (key, label)]
    table = table[[key, label, *rest]]
    return apply_secret(table, caf_indicators)


def outlines(layer: gpd.GeoDataFrame, maille: str) -> gpd.GeoDataFrame:
    column, key, label = PACK_KEYS[maille]
    return layer[[column, label, "geometry"]].rename(columns={column: key})


def write_pack(
    layers: dict[str, gpd.GeoDataFrame],
    dictionary: pd.DataFrame,
    out_dir: Path,
    caf_indicators: list[str],
    readme: str,
) -> dict[Path, int]:
    """Every file of the pack, written atomically together."""
    targets: dict[Path, Callable[[Path], object]] = {}
    for maille, layer in layers.items():
        table = pack_table(layer, maille, caf_indicators)
        shapes = outlines(layer, maille)
        targets[out_dir / f"{maille}.csv"] = lambda tmp, t=table: t.to_csv(tmp, sep=";", index=False, encoding="utf-8")
        targets[out_dir / f"{maille}.xlsx"] = lambda tmp, t=table, m=maille: _xlsx(t, tmp, m)
        targets[out_dir / "contours" / f"{maille}_2154.shp"] = lambda tmp, g=shapes: _shapefile(g.to_crs(2154), tmp)
        targets[out_dir / "contours" / f"{maille}_4326.geojson"] = lambda tmp, g=shapes: write_geojson(g, tmp)
    targets[out_dir / "dictionnaire_indicateurs.csv"] = lambda tmp: dictionary.to_csv(tmp, sep=";", index=False, encoding="utf-8")
    targets[out_dir / "dictionnaire_indicateurs.xlsx"] = lambda tmp: _xlsx(dictionary, tmp, "dictionnaire")
    targets[out_dir / "LISEZMOI.txt"] = lambda tmp: Path(tmp).write_text(readme, encoding="utf-8")
    return write_all(targets)


def _xlsx(table: pd.DataFrame, path: Path, sheet: str) -> None:
    """Stream rows with xlsxwriter (constant memory, ~3× faster than openpyxl). Codes are
    strings, so they are stored as text cells (leading zeros kept); missing values stay blank."""
    import xlsxwriter

    workbook = xlsxwriter.Workbook(str(path), {"constant_memory": True})
    worksheet = workbook.add_worksheet(sheet[:31])
    worksheet.write_row(0, 0, [str(c) for c in table.columns])
    columns = [table[c].to_numpy(dtype=object) for c in table.columns]
    for row in range(len(table)):
        worksheet.write_row(row + 1, 0, [None if _missing(col[row]) else col[row] for col in columns])
    workbook.close()


def _missing(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and value != value)


SHAPEFILE_PARTS = (".shx", ".dbf", ".prj", ".cpg")


def _shapefile(gdf: gpd.GeoDataFrame, tmp: Path) -> dict[Path, Path]:
    """A shapefile is several files: its companions are committed with the .shp."""
    pyogrio.write_dataframe(gdf, tmp, driver="ESRI Shapefile", encoding="UTF-8")
    final_stem = tmp.name.split(".")[1]
    return {tmp.with_suffix(s): tmp.with_name(final_stem + s) for s in SHAPEFILE_PARTS if tmp.with_suffix(s).exists()}

"""Geoclip-style publication pack (methodology §6): one table per maille, a dictionary, outlines.

Tables are keyed by the official code as text (`CODE_IRIS`, `CODGEO`, `EPCI`, `DEP`), then the
label, then one column per indicator part. Each table comes three ways (`outputs.tables`): a
machine CSV (`<maille>.csv`: UTF-8, `;`, `.` decimals), a CSV for French Excel
(`<maille>_excel.csv`: BOM, `;`, `,` decimals, formula-like text neutralised) and XLSX (codes as
text, so leading zeros and 2A/2B survive a spreadsheet).

The communes table is keyed as commune-level tools key it (the COG): Paris, Lyon and Marseille
have their own row (`TYPECOM` COM, sums of their arrondissements, scored like any commune) and
their arrondissements are kept (`TYPECOM` ARM, `COMPARENT` = the city).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyogrio

from outputs.disclosure import apply_secret
from outputs.files import MARK, write_all
from outputs.layers import geojson_properties, write_features, write_geojson
from outputs.tables import write_table
from transforms.geo_codes import ARRONDISSEMENT_TO_CITY

PACK_KEYS: dict[str, tuple[str, str, str]] = {
    # maille: (column in the layer, published key, published label)
    "iris": ("CODE_IRIS", "CODE_IRIS", "NOM_IRIS"),
    "communes": ("INSEE_COM", "CODGEO", "NOM_COM"),
    "epci": ("EPCI", "EPCI", "NOM_EPCI"),
    "departements": ("DEP", "DEP", "NOM_DEP"),
}
DROPPED = ("methode", "reference", "geometry", "bbox")


def pack_table(
    layer: pd.DataFrame,
    maille: str,
    caf_indicators: list[str],
    threshold: float,
    cities: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The published table of one maille: key, label, then the indicators, secret applied.

    For communes, `cities` (rows of the communes layer's shape for the cities with
    arrondissements) are added, and every row says what it is: `TYPECOM` COM or ARM, and
    `COMPARENT` the city of an arrondissement, as in the COG.
    """
    column, key, label = PACK_KEYS[maille]
    table = _keyed(layer, column, key)
    first = [key, label]
    if maille == "communes":
        if cities is not None and len(cities):
            table = pd.concat([table, _keyed(cities, column, key)], ignore_index=True)
            table = table.sort_values(key, kind="stable", ignore_index=True)
        parent = table[key].map(ARRONDISSEMENT_TO_CITY)
        table["TYPECOM"] = parent.notna().map({True: "ARM", False: "COM"}).astype(str)
        table["COMPARENT"] = parent.astype("string")
        first += ["TYPECOM", "COMPARENT"]
    rest = [c for c in table.columns if c not in first]
    return apply_secret(table[[*first, *rest]], caf_indicators, threshold)


def _keyed(layer: pd.DataFrame, column: str, key: str) -> pd.DataFrame:
    table = pd.DataFrame(layer.drop(columns=[c for c in DROPPED if c in layer.columns]))
    return table.rename(columns={column: key})


def pack_tables(
    layers: dict[str, pd.DataFrame],
    caf_indicators: list[str],
    threshold: float,
    cities: pd.DataFrame | None = None,
) -> dict[str, pd.DataFrame]:
    """Every table of the pack, by maille (see `pack_table`)."""
    return {
        maille: pack_table(layer, maille, caf_indicators, threshold, cities if maille == "communes" else None)
        for maille, layer in layers.items()
    }


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
    tables: dict[str, pd.DataFrame] | None = None,
) -> dict[Path, int]:
    """Every file of the pack, written atomically together.

    `tables`: the pack's tables when already built (`pack_tables`), else built from `layers`.
    The shapefile has the full outlines; the GeoJSON, a web format, takes `web_outlines(maille)`
    when given: the coverage-simplified outlines, row-aligned with the layer, and their GeoJSON
    text (called when that file is written, so they may still be computing meanwhile).
    """
    if tables is None:
        tables = pack_tables(layers, caf_indicators, secret_threshold)
    targets: dict[Path, Callable[[Path], object]] = {}
    for maille, layer in layers.items():
        shapes = outlines(layer, maille)
        targets[out_dir / f"{maille}.xlsx"] = lambda tmp, t=tables[maille], m=maille: _csv_and_xlsx(t, out_dir, m, tmp)
        # Full outlines in the layers' projected CRS (EPSG:2154 in metropolitan France).
        targets[out_dir / "contours" / f"{maille}_{shapes.crs.to_epsg()}.shp"] = lambda tmp, g=shapes: _shapefile(
            g, tmp
        )
    targets[out_dir / "dictionnaire_indicateurs.xlsx"] = lambda tmp: _csv_and_xlsx(
        dictionary, out_dir, "dictionnaire_indicateurs", tmp, sheet="dictionnaire"
    )
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
        _, text = web_outlines(maille)  # the simplified outlines' text, row-aligned with `shapes`
        write_features(tmp, geojson_properties(shapes), text)


def csv_names(stem: str) -> tuple[str, str]:
    """The machine CSV and the French-Excel CSV of a table."""
    return f"{stem}.csv", f"{stem}_excel.csv"


def _csv_and_xlsx(table: pd.DataFrame, folder: Path, stem: str, xlsx_tmp: Path, sheet: str = "") -> dict[Path, Path]:
    """The XLSX and both CSVs of a table from one formatting pass; the CSVs are committed with
    the XLSX."""
    finals = [folder / name for name in csv_names(stem)]
    temps = [f.with_name(f".{f.stem}.{uuid.uuid4().hex[:8]}.{MARK}.tmp{f.suffix}") for f in finals]
    write_table(table, csv=temps[0], excel_csv=temps[1], xlsx=xlsx_tmp, sheet=sheet or stem)
    return dict(zip(temps, finals))


SHAPEFILE_PARTS = (".shx", ".dbf", ".prj", ".cpg")


def _shapefile(gdf: gpd.GeoDataFrame, tmp: Path) -> dict[Path, Path]:
    """A shapefile is several files: its companions are committed with the .shp. Written through
    Arrow: the same bytes as pyogrio's default path, which holds the GIL throughout (the pack is
    written beside the maps and the web layers)."""
    pyogrio.write_dataframe(gdf, tmp, driver="ESRI Shapefile", encoding="UTF-8", use_arrow=True)
    final_stem = tmp.name.split(".")[1]
    return {tmp.with_suffix(s): tmp.with_name(final_stem + s) for s in SHAPEFILE_PARTS if tmp.with_suffix(s).exists()}

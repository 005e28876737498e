"""Self-tests of the publisher fixture builders (tests/publishers.py).

Each test checks a builder against the publishers' facts with independent readers only
(zipfile, py7zr, csv, openpyxl, python_calamine, pyogrio) — never the project's readers.
"""

from __future__ import annotations

import csv
import io
import time
import zipfile
from pathlib import Path

import numpy as np
import openpyxl
import py7zr
import pyogrio
import pytest
from python_calamine import CalamineWorkbook

from tests import publishers as P

EXPECTED_MIRROR_NAMES = {
    2017: [
        "base-ic-evol-struct-pop-2017_csv.zip",
        "base-ic-diplomes-formation-2017_csv.zip",
        "base-ic-couples-familles-menages-2017_csv.zip",
        "base-ic-activite-residents-2017.zip",
        "BASE_TD_FILO_DISP_IRIS_2017.xlsx",
        "base-filosofi-2017_CSV.zip",
        "CONTOURS-IRIS_2-1__SHP__FRA_2019-01-01.7z",
        "Intercommunalite_Metropole_au_01-01-2019.zip",
    ],
    2018: [
        "base-ic-evol-struct-pop-2018_csv.zip",
        "base-ic-diplomes-formation-2018_csv.zip",
        "base-ic-couples-familles-menages-2018_csv.zip",
        "base-ic-activite-residents-2018_csv.zip",
        "BASE_TD_FILO_DISP_IRIS_2018.zip",
        "base-cc-filosofi-2018_CSV_geo2021.zip",
        "CONTOURS-IRIS_2-1__SHP__FRA_2020-01-01.7z",
        "Intercommunalite_Metropole_au_01-01-2020_v1.zip",
    ],
    2019: [
        "base-ic-evol-struct-pop-2019_csv.zip",
        "base-ic-diplomes-formation-2019_csv.zip",
        "base-ic-couples-familles-menages-2019_csv.zip",
        "base-ic-activite-residents-2019_csv.zip",
        "BASE_TD_FILO_DISP_IRIS_2019.zip",
        "base-cc-filosofi-2019_CSV.zip",
        "CONTOURS-IRIS_2-1__SHP__FRA_2021-01-01.7z",
        "Intercommunalite_Metropole_au_01-01-2021.zip",
    ],
    2020: [
        "base-ic-evol-struct-pop-2020_csv.zip",
        "base-ic-diplomes-formation-2020_csv.zip",
        "base-ic-couples-familles-menages-2020_csv.zip",
        "base-ic-activite-residents-2020_csv.zip",
        "BASE_TD_FILO_DISP_IRIS_2020_CSV.zip",
        "base-cc-filosofi-2020_CSV.zip",
        "CONTOURS-IRIS_2-1__SHP__FRA_2022-01-01.7z",
        "Intercommunalite_Metropole_au_01-01-2022.zip",
    ],
    2021: [
        "base-ic-evol-struct-pop-2021_csv.zip",
        "base-ic-diplomes-formation-2021_csv.zip",
        "base-ic-couples-familles-menages-2021_csv.zip",
        "base-ic-activite-residents-2021_csv.zip",
        "BASE_TD_FILO_IRIS_2021_DISP_CSV.zip",
        "base-cc-filosofi-2021-geo2025_csv.zip",
        "CONTOURS-IRIS_3-0__SHP__FRA_2023-01-01.7z",
        "Intercommunalite_Metropole_au_01-01-2023.zip",
    ],
}
COMMON_NAMES = ["table_passage_geo2003_geo2025.zip", "commune_debit_filaire.csv"]
KEYS = [
    "rp_evol_struct_pop",
    "rp_diplomes_formation",
    "rp_couples_familles_menages",
    "rp_activite_residents",
    "filosofi_iris",
    "filosofi_communes",
    "contours_iris",
    "communes_epci",
    "cog_passage",
    "arcep_debit",
]
GEO_2017 = "IRIS;REG;DEP;UU2010;COM;LIBCOM;TRIRIS;GRD_QUART;LIBIRIS;TYP_IRIS;MODIF_IRIS;LAB_IRIS".split(";")
GEO_2020 = ["IRIS", "COM", "TYP_IRIS", "LAB_IRIS"]


@pytest.fixture(scope="module")
def model() -> P.Model:
    return P.load_model()


def members(content: bytes) -> list[str]:
    return zipfile.ZipFile(io.BytesIO(content)).namelist()


def member_text(content: bytes, name: str, encoding: str = "utf-8") -> str:
    return zipfile.ZipFile(io.BytesIO(content)).read(name).decode(encoding)


def rows_of(text: str, skip: int = 0) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text), delimiter=";"))[skip:]


def xlsx_rows(content: bytes, sheet: str) -> list[tuple]:
    book = openpyxl.load_workbook(io.BytesIO(content), read_only=True)
    return list(book[sheet].iter_rows(values_only=True))


def zipped_book(file: P.PublishedFile) -> bytes:
    (name,) = members(file.content)
    return zipfile.ZipFile(io.BytesIO(file.content)).read(name)


# ------------------------------------------------------------------ model


def test_model_parts_and_census_consistency(model: P.Model) -> None:
    assert model.outlines["FXX"].crs.to_epsg() == 2154
    assert model.outlines["REU"].crs.to_epsg() == 2975
    assert model.outlines["MYT"].crs.to_epsg() == 4471
    assert all(frame.is_valid.all() for frame in model.outlines.values())
    codes = set(model.iris.index)
    assert {
        "574630101",
        "574630104",
        "576720000",
        "577510000",
        "291550000",
        "974110101",
        "974110102",
        "974180000",
        "976110000",
    } <= codes
    assert model.iris.COM.isin(P.LYON_ARRONDISSEMENTS).any() and not (model.iris.COM == P.LYON).any()
    rates = []
    for vintage in P.CENSUS_VINTAGES:
        c = model.census(vintage)
        assert "976110000" not in c.index
        assert (c.CHOM1564 <= c.ACT1564).all() and (c.ACT1564 <= c.POP).all()
        assert (c.POP1529 + c.POP65P <= c.POP15P + 1e-6).all() and (c.POP15P <= c.POP).all()
        assert (c.POP75P <= c.POP65P).all() and (c.NSCOL15P_DIPLMIN <= c.NSCOL15P).all()
        assert (c.MENPSEUL <= c.MEN).all() and (c.FAMMONO <= c.FAM).all()
        rates.append(round(c.POP65P.sum() / c.POP.sum(), 6))
    assert len(set(rates)) == len(rates)
    assert not any(code.startswith("976") for code in model.filosofi_iris(2020).index)
    assert "97611" not in model.filosofi_communes(2020).index


def test_model_merger(model: P.Model) -> None:
    assert {P.MERGER_ABSORBING, P.MERGER_ABSORBED} <= set(model.epci(2023).index)
    assert P.MERGER_ABSORBED not in model.epci(2025).index
    assert P.MERGER_ABSORBED in model.filosofi_communes(2020).index
    assert P.MERGER_ABSORBED not in model.filosofi_communes(2021).index
    assert P.MERGER_ABSORBED not in model.arcep().index
    assert model.epci().at["29155", "EPCI"] == "ZZZZZZZZZ"


# ------------------------------------------------------------------ RP base-ic


@pytest.mark.parametrize("vintage", P.CENSUS_VINTAGES)
def test_rp_csv_zips(model: P.Model, vintage: int) -> None:
    census = model.census(vintage)
    yy = str(vintage)[2:]
    for theme in P.RP_THEMES:
        if theme == "activite-residents" and vintage == 2017:
            continue
        file = P.rp_base_ic(model, theme, vintage)
        stem = f"base-ic-{theme}-{vintage}"
        assert file.name == f"{stem}_csv.zip"
        assert members(file.content) == [f"{stem}.CSV", f"meta_{stem}.CSV"]
        assert member_text(file.content, f"meta_{stem}.CSV").startswith("COD_VAR;LIB_VAR;")
        text = member_text(file.content, f"{stem}.CSV")
        assert '"' not in text
        header, *rows = rows_of(text)
        geo = GEO_2017 if vintage <= 2019 else GEO_2020
        assert header[: len(geo)] == geo
        assert all(h[:4] in (f"P{yy}_", f"C{yy}_") for h in header[len(geo) :])
        assert len(header) - len(geo) >= 5
        assert {row[1 if vintage >= 2020 else 4] for row in rows} >= {"69381", "69389", "57463", "97411"}
        assert not any(row[0].startswith("976") or P.LYON in row for row in rows)
        assert not any("," in cell for row in rows for cell in row[len(geo) :])
    header, *rows = rows_of(
        member_text(P.rp_base_ic(model, "evol-struct-pop", vintage).content, f"base-ic-evol-struct-pop-{vintage}.CSV")
    )
    values = {row[0]: float(row[header.index(f"P{yy}_POP")]) for row in rows}
    assert values == census.POP.to_dict()
    assert any("." in row[header.index(f"P{yy}_POP")] for row in rows)


def test_rp_activite_2017_xlsx(model: P.Model) -> None:
    file = P.rp_base_ic(model, "activite-residents", 2017)
    assert file.name == "base-ic-activite-residents-2017.zip"
    assert members(file.content) == ["base-ic-activite-residents-2017.xlsx"]
    book = zipfile.ZipFile(io.BytesIO(file.content)).read("base-ic-activite-residents-2017.xlsx")
    assert openpyxl.load_workbook(io.BytesIO(book), read_only=True).sheetnames[0] == "IRIS"
    rows = xlsx_rows(book, "IRIS")
    assert rows[0][0] == "Activité des résidents en 2017"
    assert rows[4][0] == "Code géographique IRIS"
    assert list(rows[5][:14]) == GEO_2017 + ["P17_ACT1564", "P17_CHOM1564"]
    data = rows[6:]
    assert all(isinstance(row[0], str) and len(row[0]) == 9 for row in data)
    act = {row[0]: row[12] for row in data}
    assert act == model.census(2017).ACT1564.to_dict()


# ------------------------------------------------------------------ Filosofi IRIS


def test_filosofi_iris_2017_xlsx(model: P.Model) -> None:
    file = P.filosofi_iris(model, 2017)
    assert file.name == "BASE_TD_FILO_DISP_IRIS_2017.xlsx"
    book = openpyxl.load_workbook(io.BytesIO(file.content), read_only=True)
    assert book.sheetnames[:3] == ["IRIS_DISP", "Variables", "Documentation générale"]
    rows = xlsx_rows(file.content, "IRIS_DISP")
    assert list(rows[5][:7]) == ["IRIS", "LIBIRIS", "COM", "LIBCOM", "DISP_TP6017", "DISP_Q117", "DISP_MED17"]
    assert rows[5][-1] == "DISP_NOTE17" and "DISP_PPMINI17" in rows[5]
    data = {row[0]: row for row in rows[6:]}
    assert P.EXTRA_FILOSOFI_IRIS in data
    cells = [cell for row in rows[6:] for cell in row[4:]]
    assert {"s", "nd"} <= {c for c in cells if isinstance(c, str)}
    expected = model.filosofi_iris(2017)
    med = rows[5].index("DISP_MED17")
    assert {code: data[code][med] for code in expected.index} == expected.MED.to_dict()


@pytest.mark.parametrize("year", [2018, 2019, 2020, 2021])
def test_filosofi_iris_csv(model: P.Model, year: int) -> None:
    file = P.filosofi_iris(model, year)
    archive, member = {
        2018: ("BASE_TD_FILO_DISP_IRIS_2018.zip", "BASE_TD_FILO_DISP_IRIS_2018.csv"),
        2019: ("BASE_TD_FILO_DISP_IRIS_2019.zip", "BASE_TD_FILO_DISP_IRIS_2019.csv"),
        2020: ("BASE_TD_FILO_DISP_IRIS_2020_CSV.zip", "BASE_TD_FILO_DISP_IRIS_2020.csv"),
        2021: ("BASE_TD_FILO_IRIS_2021_DISP_CSV.zip", "BASE_TD_FILO_IRIS_2021_DISP.csv"),
    }[year]
    assert file.name == archive and members(file.content)[0] == member
    if year <= 2019:
        assert f"meta_{member}" in members(file.content)
    raw = zipfile.ZipFile(io.BytesIO(file.content)).read(member)
    text = raw.decode("ascii")
    assert "\r\n" in text
    header, *rows = rows_of(text)
    yy = str(year)[2:]
    assert header[:2] == ["IRIS", f"DISP_TP60{yy}"] and header[-1] == f"DISP_NOTE{yy}"
    assert "LIBIRIS" not in header and "COM" not in header and f"DISP_PPMINI{yy}" in header
    codes = [row[0] for row in rows]
    assert ("10040101" in codes) == (year == 2019) and ("010040101" in codes) == (year != 2019)
    cells = {cell for row in rows for cell in row[1:]}
    comma = any("," in cell for cell in cells)
    assert comma == (year >= 2020)
    markers = {2018: {"", "s", "nd"}, 2019: {"", "s", "nd"}, 2020: {"ns", "nd", "s"}, 2021: {"ns", "nd", "s", "so"}}[
        year
    ]
    assert markers <= cells
    if year == 2020:
        secret = next(row for row in rows if row[0] == P.SECRET_TP60_IRIS_2020)
        assert secret[1] == "s"
    if year == 2021:
        assert header[2] == "DISP_INCERT21"
        assert all(row[2].isdigit() for row in rows)
    tp60 = {row[0]: float(row[1].replace(",", ".")) for row in rows if row[1] not in ("s", "")}
    expected = model.filosofi_iris(year).TP60.dropna()
    assert {code: tp60[code] for code in expected.index} == expected.to_dict()


# ------------------------------------------------------------------ Filosofi communes


def test_filosofi_communes_wide(model: P.Model) -> None:
    expected = {
        2017: (
            "base-filosofi-2017_CSV.zip",
            ["cc_filosofi_2017_COM.CSV", "cc_filosofi_2017_DEP.CSV", "cc_filosofi_2017_EPCI.CSV"],
        ),
        2018: (
            "base-cc-filosofi-2018_CSV_geo2021.zip",
            [
                "cc_filosofi_2018_COM-geo2021.CSV",
                "cc_filosofi_2018_DEP-geo2021.CSV",
                "cc_filosofi_2018_EPCI-geo2021.CSV",
            ],
        ),
        2019: (
            "base-cc-filosofi-2019_CSV.zip",
            ["cc_filosofi_2019_COM.csv", "cc_filosofi_2019_DEP.csv", "cc_filosofi_2019_EPCI.csv"],
        ),
        2020: (
            "base-cc-filosofi-2020_CSV.zip",
            [
                "cc_filosofi_2020_BV2022.csv",
                "cc_filosofi_2020_COM.csv",
                "cc_filosofi_2020_EPCI.csv",
                "cc_filosofi_2020_DEP.csv",
            ],
        ),
    }
    for year, (archive, data_members) in expected.items():
        file = P.filosofi_communes(model, year)
        names = members(file.content)
        assert file.name == archive
        assert names[: len(data_members)] == data_members
        assert sorted(names[len(data_members) :]) == sorted(f"meta_{m}" for m in data_members)
        yy = str(year)[2:]
        com = next(m for m in data_members if "_COM" in m)
        header, *rows = rows_of(member_text(file.content, com))
        assert header[:6] == ["CODGEO", f"NBMENFISC{yy}", f"NBPERSMENFISC{yy}", f"MED{yy}", f"PIMP{yy}", f"TP60{yy}"]
        assert f"PPMINI{yy}" in header
        by_code = {row[0]: row for row in rows}
        assert P.LYON in by_code and not set(P.LYON_ARRONDISSEMENTS) & set(by_code)
        assert P.MERGER_ABSORBED in by_code and "97611" not in by_code
        assert "s" in {row[header.index(f"TP60{yy}")] for row in rows}
        truth = model.filosofi_communes(year)
        med = {code: float(row[3].replace(",", ".")) for code, row in by_code.items() if row[3] != "s"}
        assert {code: med[code] for code in truth.index} == truth.MED.to_dict()
        if year == 2019:
            assert "s" in {row[3] for row in rows}
            assert any("," in row[5] for row in rows)
    bv_header, *bv_rows = rows_of(member_text(P.filosofi_communes(model, 2020).content, "cc_filosofi_2020_BV2022.csv"))
    bv = {row[0]: float(row[3]) for row in bv_rows}
    assert all(len(code) == 5 for code in bv) and P.LYON in bv
    assert bv[P.LYON] != model.filosofi_communes(2020).at[P.LYON, "MED"]


def test_filosofi_communes_2021_sdmx(model: P.Model) -> None:
    file = P.filosofi_communes(model, 2021)
    assert file.name == "base-cc-filosofi-2021-geo2025_csv.zip"
    assert members(file.content) == ["DS_FILOSOFI_CC_data.csv", "DS_FILOSOFI_CC_metadata.csv"]
    text = member_text(file.content, "DS_FILOSOFI_CC_data.csv")
    assert text.startswith(
        '"GEO";"GEO_OBJECT";"FILOSOFI_MEASURE";"UNIT_MEASURE";"UNIT_MULT";"CONF_STATUS";'
        '"OBS_STATUS";"TIME_PERIOD";"OBS_VALUE"'
    )
    header, *rows = rows_of(text)
    records = [dict(zip(header, row)) for row in rows]
    assert {"COM", "EPCI", "DEP"} <= {r["GEO_OBJECT"] for r in records}
    assert {"MED_SL", "PR_MD60", "D1_SL", "D9_SL", "NUM_HH", "NUM_PER"} <= {r["FILOSOFI_MEASURE"] for r in records}
    assert {r["TIME_PERIOD"] for r in records} == {"2021"} and {r["OBS_STATUS"] for r in records} == {"A"}
    assert all((r["CONF_STATUS"] == "C") == (r["OBS_VALUE"] == "") for r in records)
    assert {"C", "F"} == {r["CONF_STATUS"] for r in records}
    communes = {r["GEO"] for r in records if r["GEO_OBJECT"] == "COM"}
    assert P.MERGER_ABSORBING in communes and P.MERGER_ABSORBED not in communes
    med = {
        r["GEO"]: float(r["OBS_VALUE"])
        for r in records
        if r["GEO_OBJECT"] == "COM" and r["FILOSOFI_MEASURE"] == "MED_SL" and r["OBS_VALUE"]
    }
    assert med == model.filosofi_communes(2021).MED.dropna().to_dict()
    meta = member_text(file.content, "DS_FILOSOFI_CC_metadata.csv")
    assert meta.startswith('"COD_VAR";"LIB_VAR";"COD_MOD";"LIB_MOD"')


# ------------------------------------------------------------------ IGN


def test_contours_iris_2019_names(model: P.Model) -> None:
    file = P.contours_iris(model, 2019)
    assert file.name == "CONTOURS-IRIS_2-1__SHP__FRA_2019-01-01.7z"
    with py7zr.SevenZipFile(io.BytesIO(file.content)) as archive:
        names = set(archive.getnames())
    delivery = "CONTOURS-IRIS_2-1__SHP__FRA_2019-01-01/CONTOURS-IRIS/1_DONNEES_LIVRAISON_2020-01-00139"
    for folder in ("LAMB93_FXX", "RGR92UTM40S_REU", "RGM04UTM38S_MYT"):
        for ext in ("shp", "shx", "dbf", "prj", "cpg"):
            assert f"{delivery}/CONTOURS-IRIS_2-1_SHP_{folder}-2019/CONTOURS-IRIS.{ext}" in names
    top = "CONTOURS-IRIS_2-1__SHP__FRA_2019-01-01/CONTOURS-IRIS/"
    assert any(n.startswith(top + "2_METADONNEES_LIVRAISON_") and "." in n.rsplit("/", 1)[-1] for n in names)
    assert any(n.startswith(top + "3_SUPPLEMENTS_LIVRAISON_") and "." in n.rsplit("/", 1)[-1] for n in names)


def test_contours_iris_2023_shapefiles(model: P.Model, tmp_path: Path) -> None:
    file = P.contours_iris(model, 2023)
    assert file.name == "CONTOURS-IRIS_3-0__SHP__FRA_2023-01-01.7z"
    with py7zr.SevenZipFile(io.BytesIO(file.content)) as archive:
        archive.extractall(tmp_path)
    delivery = (
        tmp_path / "CONTOURS-IRIS_3-0__SHP__FRA_2023-01-01" / "CONTOURS-IRIS" / "1_DONNEES_LIVRAISON_2024-02-00238"
    )
    expected = {"LAMB93_FXX": (2154, "FXX"), "RGR92UTM40S_REU": (2975, "REU"), "RGM04UTM38S_MYT": (4471, "MYT")}
    for folder, (epsg, territory) in expected.items():
        path = delivery / f"CONTOURS-IRIS_3-0_SHP_{folder}-ED2023-01-01" / "CONTOURS-IRIS.shp"
        info = pyogrio.read_info(path)
        assert info["crs"] == f"EPSG:{epsg}"
        assert list(info["fields"]) == ["INSEE_COM", "NOM_COM", "IRIS", "CODE_IRIS", "NOM_IRIS", "TYP_IRIS"]
        assert info["features"] == len(model.outlines[territory])
    fxx = pyogrio.read_dataframe(delivery / "CONTOURS-IRIS_3-0_SHP_LAMB93_FXX-ED2023-01-01" / "CONTOURS-IRIS.shp")
    assert (fxx.IRIS == fxx.CODE_IRIS.str[-4:]).all()
    assert {"291550000", "574630101", "693810101"} <= set(fxx.CODE_IRIS)


def test_contours_iris_2024_gpkg(model: P.Model, tmp_path: Path) -> None:
    file = P.contours_iris_gpkg_7z(model, 2024, "FXX")
    assert file.name == "CONTOURS-IRIS_3-0__GPKG_LAMB93_FXX_2024-01-01.7z"
    with py7zr.SevenZipFile(io.BytesIO(file.content)) as archive:
        archive.extractall(tmp_path)
    (gpkg,) = tmp_path.rglob("iris.gpkg")
    assert gpkg.parent.name == "CONTOURS-IRIS_3-0_GPKG_LAMB93_FXX-ED2024-01-01"
    assert gpkg.parent.parent.name.startswith("1_DONNEES_LIVRAISON_")
    assert [layer for layer, _ in pyogrio.list_layers(gpkg)] == ["contours_iris"]
    info = pyogrio.read_info(gpkg, layer="contours_iris")
    assert list(info["fields"]) == ["code_insee", "nom_commune", "iris", "code_iris", "nom_iris", "type_iris"]


# ------------------------------------------------------------------ INSEE EPCI, COG


def test_epci_file_names() -> None:
    assert P.epci_file_names(2019) == (
        "Intercommunalite_Metropole_au_01-01-2019.zip",
        "Intercommunalite_Metropole_au_01-01-2019.xls",
    )
    assert P.epci_file_names(2020) == (
        "Intercommunalite_Metropole_au_01-01-2020_v1.zip",
        "Intercommunalite-Metropole_au_01-01-2020_v1.xlsx",
    )
    assert P.epci_file_names(2021) == (
        "Intercommunalite_Metropole_au_01-01-2021.zip",
        "Intercommunalite-Metropole_au_01-01-2021.xlsx",
    )
    for year in (2022, 2023):
        assert P.epci_file_names(year) == (
            f"Intercommunalite_Metropole_au_01-01-{year}.zip",
            f"Intercommunalite_Metropole_au_01-01-{year}.xlsx",
        )
    assert P.epci_file_names(2024) == ("epci_au_01-01-2024.zip", "EPCI_au_01-01-2024.xlsx")


def check_composition(rows: list[list], year: int) -> None:
    assert str(rows[0][0]) == f"Composition communale des EPCI au 1er janvier {year}"
    assert rows[4][:3] == ["Code géographique", "Libellé géographique", "EPCI - Métropole"]
    assert rows[5][:6] == ["CODGEO", "LIBGEO", "EPCI", "LIBEPCI", "DEP", "REG"]
    data = {row[0]: row for row in rows[6:]}
    assert all(isinstance(code, str) for code in data)
    assert P.LYON in data and not set(P.LYON_ARRONDISSEMENTS) & set(data)
    for code in ("29155", "29083"):
        assert data[code][2:4] == ["ZZZZZZZZZ", "Sans objet"]
    assert data["57463"][2] == "200039865" and data["97611"][4] == "976"


def test_epci_2019_xls(model: P.Model) -> None:
    book = CalamineWorkbook.from_filelike(io.BytesIO(zipped_book(P.epci_composition(model, 2019))))
    assert book.sheet_names == ["EPCI", "Composition_communale"]
    rows = book.get_sheet_by_name("Composition_communale").to_python(skip_empty_area=False)
    check_composition([list(row) for row in rows], 2019)
    epci = book.get_sheet_by_name("EPCI").to_python(skip_empty_area=False)
    assert list(epci[5][:4]) == ["EPCI", "LIBEPCI", "NATURE_EPCI", "NB_COM"]
    assert ["ZZZZZZZZZ", "Sans objet", "ZZ"] in [list(row[:3]) for row in epci[6:]]


@pytest.mark.parametrize("year", [2020, 2023, 2025])
def test_epci_xlsx(model: P.Model, year: int) -> None:
    file = P.epci_composition(model, year)
    assert (file.name, members(file.content)[0]) == P.epci_file_names(year)
    rows = [[c for c in row] for row in xlsx_rows(zipped_book(file), "Composition_communale")]
    check_composition(rows, year)
    codes = {row[0] for row in rows[6:]}
    assert (P.MERGER_ABSORBED in codes) == (year < 2025)


def test_table_passage_2025(model: P.Model) -> None:
    file = P.table_passage_2025(model)
    assert file.name == "table_passage_geo2003_geo2025.zip"
    assert members(file.content) == ["table_passage_annuelle_2025.xlsx"]
    book = zipped_book(file)
    sheets = openpyxl.load_workbook(io.BytesIO(book), read_only=True).sheetnames
    assert sheets.index("COM") > 0
    rows = xlsx_rows(book, "COM")
    header = list(rows[5])
    assert {f"CODGEO_{y}" for y in range(2003, 2026)} | {"LIBGEO_2025"} == set(header)
    data = [dict(zip(header, row)) for row in rows[6:]]
    merged = [r for r in data if r["CODGEO_2025"] == P.MERGER_ABSORBING]
    assert {r["CODGEO_2024"] for r in merged} == {P.MERGER_ABSORBING, P.MERGER_ABSORBED}
    codes = {r["CODGEO_2025"] for r in data}
    assert set(model.epci(2025).index) <= codes and P.LYON in codes


# ------------------------------------------------------------------ ARCEP


def test_arcep_current(model: P.Model) -> None:
    file = P.arcep_debit_filaire(model)
    assert file.name == "commune_debit_filaire.csv"
    header, *rows = rows_of(file.content.decode("utf-8"))
    assert header == [
        "code_insee",
        "nom_com",
        "code_dep",
        "nom_dep",
        "code_reg",
        "nom_reg",
        "nbr",
        "type",
        "inel_hd",
        "elig_hd05",
        "elig_hd3",
        "elig_bhd8",
        "elig_thd30",
        "elig_thd100",
        "elig_thd1g",
        "date",
    ]
    records = [dict(zip(header, row)) for row in rows]
    codes = [r["code_insee"] for r in records]
    assert len(codes) == len(set(codes)) and P.LYON in codes
    assert not set(P.LYON_ARRONDISSEMENTS) & set(codes) and P.MERGER_ABSORBED not in codes
    assert {"97611", "29155"} <= set(codes)
    for r in records:
        assert r["type"] == "all" and r["date"] == "2025-06-30"
        counts = [
            int(r[k]) for k in ("nbr", "elig_hd05", "elig_hd3", "elig_bhd8", "elig_thd30", "elig_thd100", "elig_thd1g")
        ]
        assert counts == sorted(counts, reverse=True)
        assert int(r["inel_hd"]) == counts[0] - counts[1]
    truth = model.arcep()
    assert {r["code_insee"]: int(r["elig_thd30"]) for r in records} == truth.elig_thd30.to_dict()


def test_arcep_beta_2019(model: P.Model) -> None:
    lines = P.arcep_debit_beta_2019(model).content.decode("utf-8").splitlines()
    assert lines[0].startswith("Version beta : les données sont présentées en l’état")
    header, *rows = rows_of("\n".join(lines[1:]))
    assert "elig_hd8" in header and "elig_bhd8" not in header
    for row in rows:
        r = dict(zip(header, row))
        assert r["type"] == "logloc"
        classes = ["inel_hd", "elig_hd05", "elig_hd3", "elig_hd8", "elig_thd30", "elig_thd100", "elig_thd1g"]
        assert sum(int(r[k]) for k in classes) == int(r["nbr"])
    assert P.MERGER_ABSORBED in {row[0] for row in rows}


# ------------------------------------------------------------------ mirror


@pytest.mark.parametrize("vintage", P.CENSUS_VINTAGES)
def test_write_mirror(model: P.Model, vintage: int, tmp_path: Path) -> None:
    start = time.perf_counter()
    paths = P.write_mirror(tmp_path, vintage, model)
    assert time.perf_counter() - start < 5
    assert list(paths) == KEYS
    assert [p.name for p in paths.values()] == EXPECTED_MIRROR_NAMES[vintage] + COMMON_NAMES
    assert all(p.parent == tmp_path and p.stat().st_size > 0 for p in paths.values())
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths.values())


def test_values_are_decimal_and_vintage_dependent(model: P.Model) -> None:
    a, b = model.census(2017), model.census(2021)
    assert not np.allclose((a.CHOM1564 / a.ACT1564).dropna(), (b.CHOM1564 / b.ACT1564).dropna())
    assert (a.POP % 1 != 0).any()

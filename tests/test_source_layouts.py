"""Readers on fixtures written in the publishers' real layouts, one per layout era.

ARCEP's quarterly files (cumulative speed classes, `elig_bhd8`) next to the 2019 beta sample
(exclusive classes); Filosofi's commune tables, wide (one CSV per geographic level) and long
(2021, one row per geography × measure); INSEE's EPCI workbooks from the 2019 `.xls` to the
2024 `EPCI_au_…xlsx`, with the communes that belong to no EPCI (`ZZZZZZZZZ`); the 2025 table de
passage. Expected values are worked out by hand from the fixture rows.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

import sources.filosofi as filosofi
from sources.arcep import read_arcep_debit
from sources.cog import read_cog_passage, read_communes_epci
from sources.common import InputError
from sources.filosofi import read_filosofi_communes, read_filosofi_iris
from tests.conftest import SAMPLE


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------------------------------------
# ARCEP « Ma connexion internet », by commune
# ---------------------------------------------------------------------------------------------

ARCEP_BETA = SAMPLE / "arcep" / "commune-debit-beta_dep69.csv"

# Quarterly file since April 2021 (commune_debit_filaire.csv): header on line 1, cumulative
# classes: nbr ≥ elig_hd05 ≥ elig_hd3 ≥ elig_bhd8 ≥ elig_thd30 ≥ elig_thd100 ≥ elig_thd1g.
ARCEP_CURRENT = (
    "code_insee;nom_com;code_dep;nom_dep;code_reg;nom_reg;nbr;type;inel_hd;elig_hd05;elig_hd3;elig_bhd8;"
    "elig_thd30;elig_thd100;elig_thd1g;date\n"
    "01001;L'Abergement-Clémenciat;01;Ain;84;Auvergne-Rhône-Alpes;450;all;12;438;420;300;180;150;150;2025-06-30\n"
    "69123;Lyon;69;Rhône;84;Auvergne-Rhône-Alpes;390000;all;500;389500;388000;385000;375000;370000;360000;"
    "2025-06-30\n"
    "75056;Paris;75;Paris;11;Île-de-France;1600000;all;1000;1599000;1598000;1597000;1590000;1585000;1580000;"
    "2025-06-30\n"
).encode()


def test_arcep_current_file_cumulative_classes(tmp_path):
    """≥ 30 Mbit/s is elig_thd30 alone: summing the three THD classes would count fibre thrice."""
    df = read_arcep_debit(write_bytes(tmp_path / "commune_debit_filaire.csv", ARCEP_CURRENT))
    assert df.attrs["layout"] == "cumulatif"
    assert df.attrs["date"] == "2025-06-30"
    assert df["INSEE_COM"].tolist() == ["01001", "69123", "75056"]
    rows = df.set_index("INSEE_COM")
    assert rows.loc["01001", "locaux"] == 450 and rows.loc["01001", "locaux_thd"] == 180
    assert rows.loc["69123", "locaux"] == 390000 and rows.loc["69123", "locaux_thd"] == 375000
    assert rows.loc["75056", "locaux_thd"] == 1590000
    assert rows.loc["69123", "nom_com"] == "Lyon"


def test_arcep_type_rows_other_than_all_are_not_totals(tmp_path):
    """Short header in another order; per commune an `all` row and two partial rows."""
    text = (
        "code_insee;type;nbr;inel_hd;elig_hd05;elig_hd3;elig_bhd8;elig_thd30;elig_thd100;elig_thd1g;date\n"
        "01001;res;400;10;390;380;270;160;130;130;2025-03-31\n"
        "01001;all;450;12;438;420;300;180;150;150;2025-03-31\n"
        "01001;pro;50;2;48;40;30;20;20;20;2025-03-31\n"
        "2A004;all;42000;100;41900;41500;40000;30000;28000;25000;2025-03-31\n"
        "2A004;res;38000;90;37910;37600;36300;27000;25200;22500;2025-03-31\n"
    )
    df = read_arcep_debit(write_bytes(tmp_path / "commune_debit.csv", text.encode()))
    assert df["INSEE_COM"].tolist() == ["01001", "2A004"]
    assert df["locaux"].tolist() == [450, 42000]
    assert df["locaux_thd"].tolist() == [180, 30000]
    assert df.attrs["layout"] == "cumulatif"


def test_arcep_cumulative_inequality_violated_is_refused_with_its_line(tmp_path):
    lines = ARCEP_CURRENT.decode().splitlines()
    cells = lines[2].split(";")  # Lyon, line 3: elig_thd100 above elig_thd30
    cells[13] = "380000"
    path = write_bytes(
        tmp_path / "commune_debit_filaire.csv", ("\n".join(lines[:2] + [";".join(cells)]) + "\n").encode()
    )
    with pytest.raises(InputError) as err:
        read_arcep_debit(path)
    message = str(err.value)
    assert "ligne 3" in message and "'elig_thd100'" in message
    assert "380000" in message and "375000" in message and "cumulatives" in message


def test_arcep_header_of_neither_layout_is_refused(tmp_path):
    text = "code_insee;nbr;type;ftth;date\n01001;450;all;150;2025-06-30\n"
    with pytest.raises(InputError) as err:
        read_arcep_debit(write_bytes(tmp_path / "debit.csv", text.encode()))
    message = str(err.value)
    assert "elig_thd30" in message and "elig_bhd8" in message
    assert "commune_debit_filaire.csv" in message and "satellite" in message


def test_arcep_beta_sample_exclusive_classes_are_summed():
    df = read_arcep_debit(ARCEP_BETA)
    assert df.attrs["layout"] == "beta_exclusive"
    assert df.attrs["date"] == "2019-09-30"
    lyon = df.set_index("INSEE_COM").loc["69123"]
    assert lyon["locaux"] == 378636
    assert lyon["locaux_thd"] == 2118 + 60 + 359230


# ---------------------------------------------------------------------------------------------
# INSEE Filosofi, commune level
# ---------------------------------------------------------------------------------------------

LONG_HEADER = '"GEO";"GEO_OBJECT";"FILOSOFI_MEASURE";"UNIT_MEASURE";"UNIT_MULT";"CONF_STATUS";"OBS_STATUS";"TIME_PERIOD";"OBS_VALUE"'


def long_row(geo: str, level: str, measure: str, value: str, conf: str = "F", year: str = "2021") -> str:
    unit = {"MED_SL": "EUR_YR", "D1_SL": "EUR_YR", "PR_MD60": "PCT"}.get(measure, "HH")
    status = "A" if conf == "F" else "O"
    return ";".join(f'"{v}"' for v in (geo, level, measure, unit, "0", conf, status, year, value))


LONG_ROWS = [
    long_row("FR", "FRANCE", "MED_SL", "23160"),
    long_row("69", "DEP", "MED_SL", "24530"),
    long_row("69", "DEP", "PR_MD60", "14.6"),
    long_row("200046977", "EPCI", "MED_SL", "24290"),
    long_row("01001", "COM", "MED_SL", "24220"),
    long_row("01001", "COM", "PR_MD60", "", conf="C"),  # confidential: no value
    long_row("01001", "COM", "NUM_HH", "330"),
    long_row("01001", "COM", "D1_SL", "14580"),
    long_row("69123", "COM", "MED_SL", "25070"),
    long_row("69123", "COM", "PR_MD60", "16.2"),
    long_row("69123", "COM", "NUM_HH", "255612"),
    long_row("COM-75056", "COM", "MED_SL", "29890"),
    long_row("COM-75056", "COM", "PR_MD60", "14.5"),
    long_row("2405", "ZE2020", "MED_SL", "21010"),
]


def long_file(tmp_path: Path, rows: list[str], name: str = "DS_FILOSOFI_CC_data.csv") -> Path:
    return write_bytes(tmp_path / name, ("\n".join([LONG_HEADER, *rows]) + "\n").encode("utf-8"))


def test_filosofi_communes_long_layout_pivoted(tmp_path):
    df = read_filosofi_communes(long_file(tmp_path, LONG_ROWS))
    assert df.attrs["layout"] == "long" and df.attrs["annee"] == 2021
    assert df["INSEE_COM"].tolist() == ["01001", "69123", "75056"]  # DEP, EPCI, ZE, FRANCE rows ignored
    rows = df.set_index("INSEE_COM")
    assert rows.loc["01001", "MED"] == 24220 and rows.loc["01001", "NBMENFISC"] == 330
    assert math.isnan(rows.loc["01001", "TP60"])  # CONF_STATUS = C
    assert rows.loc["69123", "TP60"] == pytest.approx(16.2) and rows.loc["69123", "MED"] == 25070
    assert rows.loc["75056", "MED"] == 29890 and math.isnan(rows.loc["75056", "NBMENFISC"])
    assert "D1" not in df.columns and "D1_SL" not in df.columns
    assert df["INSEE_COM"].map(type).eq(str).all()


def test_filosofi_communes_long_layout_read_by_chunks(tmp_path, monkeypatch):
    """The national file (~833 000 lines) is read by chunks; the result must not depend on them,
    nor the line an error names."""
    monkeypatch.setattr(filosofi, "_CHUNK_ROWS", 3)
    df = read_filosofi_communes(long_file(tmp_path, LONG_ROWS))
    assert df.set_index("INSEE_COM").loc["69123", "NBMENFISC"] == 255612
    bad = LONG_ROWS[:9] + [long_row("69123", "COM", "PR_MD60", "16,2x")] + LONG_ROWS[10:]
    with pytest.raises(InputError, match=r"ligne 11, colonne 'OBS_VALUE'"):
        read_filosofi_communes(long_file(tmp_path, bad))


def test_filosofi_communes_long_layout_refuses_several_years(tmp_path):
    rows = LONG_ROWS + [long_row("01001", "COM", "MED_SL", "23980", year="2020")]
    with pytest.raises(InputError, match=r"ligne 16, colonne 'TIME_PERIOD' : plusieurs années"):
        read_filosofi_communes(long_file(tmp_path, rows))


def test_filosofi_metadata_file_refused(tmp_path):
    text = '"COD_VAR";"LIB_VAR";"COD_MOD";"LIB_MOD"\n"FILOSOFI_MEASURE";"Mesure";"MED_SL";"Médiane du niveau de vie"\n'
    path = write_bytes(tmp_path / "DS_FILOSOFI_CC_metadata.csv", text.encode())
    with pytest.raises(InputError) as err:
        read_filosofi_communes(path)
    assert "DS_FILOSOFI_CC_data.csv" in str(err.value) and "métadonnées" in str(err.value)
    renamed = write_bytes(tmp_path / "filosofi.csv", text.encode())
    with pytest.raises(InputError, match="cc_filosofi_<aaaa>_COM"):
        read_filosofi_communes(renamed)


WIDE_HEADER = "CODGEO;NBMENFISC20;NBPERSMENFISC20;MED20;PIMP20;TP6020;TP60AGE120;PPMINI20\n"


@pytest.mark.parametrize(
    "name,first_code",
    [
        ("cc_filosofi_2020_BV2022.csv", "01004"),  # bassins de vie: codes that look like communes
        ("cc_filosofi_2018_DEP-geo2021.CSV", "01"),
        ("cc_filosofi_2020_EPCI.csv", "200069193"),
        ("cc_filosofi_2019_UU2020.csv", "01121"),
    ],
)
def test_filosofi_wide_table_of_another_level_refused(tmp_path, name, first_code):
    text = WIDE_HEADER + f"{first_code};12000;26000;22010;48;11,2;19,1;2,1\n"
    with pytest.raises(InputError) as err:
        read_filosofi_communes(write_bytes(tmp_path / name, text.encode()))
    message = str(err.value)
    assert "niveau géographique" in message and "cc_filosofi_<aaaa>_COM" in message


@pytest.mark.parametrize("name", ["cc_filosofi_2020_COM.csv", "cc_filosofi_2018_COM-geo2021.CSV"])
def test_filosofi_wide_commune_table_read(tmp_path, name):
    text = WIDE_HEADER + "01001;330;800;23010;52;s;s;s\n01004;6870;14720;20630,5;45;15,9;25,1;3,4\n"
    df = read_filosofi_communes(write_bytes(tmp_path / name, text.encode()))
    assert df.attrs["layout"] == "large" and df.attrs["annee"] == 2020
    rows = df.set_index("INSEE_COM")
    assert rows.loc["01004", "MED"] == 20630.5 and rows.loc["01004", "TP60"] == pytest.approx(15.9)
    assert rows.loc["01004", "PPMINI"] == pytest.approx(3.4) and rows.loc["01001", "NBMENFISC"] == 330
    assert math.isnan(rows.loc["01001", "TP60"])


def test_filosofi_sample_commune_file_still_read():
    df = read_filosofi_communes(SAMPLE / "insee" / "filosofi-2015-communes-MED15_dep69.csv")
    assert df.attrs["layout"] == "large" and df.attrs["annee"] == 2015
    assert df.set_index("INSEE_COM").loc["69001", "MED"] == pytest.approx(21606.53846)


def test_filosofi_iris_2021_decimal_comma_markers_and_incert(tmp_path):
    text = (
        "IRIS;DISP_TP6021;DISP_Q121;DISP_MED21;DISP_Q321;DISP_PPMINI21;DISP_INCERT21\n"
        "010040101;13,5;12340;21450;31200,5;2,8;1\n"
        "010040102;ns;ns;ns;ns;ns;0\n"
        "751010101;so;so;35010;so;so;2\n"
        "691230101;nd;nd;nd;nd;nd;0\n"
    )
    df = read_filosofi_iris(write_bytes(tmp_path / "BASE_TD_FILO_IRIS_2021_DISP.csv", text.encode()))
    assert df.attrs["annee"] == 2021
    rows = df.set_index("CODE_IRIS")
    assert rows.loc["010040101", "TP60"] == pytest.approx(13.5) and rows.loc["010040101", "Q3"] == 31200.5
    assert rows.loc["010040101", "PPMINI"] == pytest.approx(2.8)
    assert rows[["TP60", "MED", "PPMINI"]].loc["010040102"].isna().all()
    assert rows.loc["751010101", "MED"] == 35010 and math.isnan(rows.loc["751010101", "TP60"])
    assert rows["INCERT"].tolist() == [1, 0, 2, 0]


# ---------------------------------------------------------------------------------------------
# INSEE EPCI composition workbooks
# ---------------------------------------------------------------------------------------------

EPCI_CODES = ["CODGEO", "LIBGEO", "EPCI", "LIBEPCI", "DEP", "REG"]
EPCI_LABELS = [
    "Code géographique",
    "Libellé géographique",
    "EPCI - Métropole",
    "Libellé de l'EPCI / Métropole",
    "Département",
    "Région",
]
EPCI_DATA = [
    ["01001", "L'Abergement-Clémenciat", "200069193", "CC de la Dombes", "01", "84"],
    ["85113", "L'Île-d'Yeu", "ZZZZZZZZZ", "Sans objet", "85", "52"],
    ["13055", "Marseille", "200054807", "Métropole d'Aix-Marseille-Provence", "13", "93"],
    ["22016", "Île-de-Bréhat", "ZZZZZZZZZ", "Sans objet", "22", "53"],
    ["29083", "Île-de-Sein", "ZZZZZZZZZ", "Sans objet", "29", "53"],
    ["29155", "Ouessant", "ZZZZZZZZZ", "Sans objet", "29", "53"],
    ["69123", "Lyon", "200046977", "Métropole de Lyon", "69", "84"],
    ["75056", "Paris", "200054781", "Métropole du Grand Paris", "75", "11"],
]
WITHOUT_EPCI = ["22016", "29083", "29155", "85113"]


def epci_sheets(year: int, data: list[list[str]]) -> dict[str, list[list[str]]]:
    """The two sheets of INSEE's workbook: `EPCI` first, then `Composition_communale` with four
    title rows, a label row (row 5), the code row (row 6) and the data from row 7."""
    titles = [
        [f"Composition communale des EPCI à fiscalité propre au 1er janvier {year}"],
        ["Géographie au 01/01/" + str(year)],
        ["Source : Insee, Code officiel géographique"],
        [],
    ]
    summary = titles + [
        ["EPCI - Métropole", "Libellé", "Nature", "Nombre de communes"],
        ["EPCI", "LIBEPCI", "NATURE_EPCI", "NB_COM"],
        ["200069193", "CC de la Dombes", "CC", "36"],
    ]
    return {"EPCI": summary, "Composition_communale": titles + [EPCI_LABELS, EPCI_CODES] + data}


def write_workbook(path: Path, sheets: dict[str, list[list[str]]]) -> Path:
    if path.suffix == ".xls":
        import xlwt

        book = xlwt.Workbook()
        for name, rows in sheets.items():
            sheet = book.add_sheet(name)
            for r, row in enumerate(rows):
                for c, value in enumerate(row):
                    sheet.write(r, c, value)
        book.save(str(path))
        return path
    from openpyxl import Workbook

    book = Workbook()
    book.remove(book.active)
    for name, rows in sheets.items():
        sheet = book.create_sheet(name)
        for row in rows:
            sheet.append(row)
    book.save(path)
    return path


@pytest.mark.parametrize(
    "name,year",
    [
        ("Intercommunalite_Metropole_au_01-01-2019.xls", 2019),
        ("Intercommunalite-Metropole_au_01-01-2020_v1.xlsx", 2020),
        ("Intercommunalite-Metropole_au_01-01-2021.xlsx", 2021),
        ("Intercommunalite_Metropole_au_01-01-2023.xlsx", 2023),
        ("EPCI_au_01-01-2024.xlsx", 2024),
    ],
)
def test_epci_workbooks_keep_communes_without_epci(tmp_path, name, year):
    df = read_communes_epci(write_workbook(tmp_path / name, epci_sheets(year, EPCI_DATA)))
    assert len(df) == 8 and df["INSEE_COM"].is_unique
    assert df.attrs["communes_sans_epci"] == WITHOUT_EPCI
    rows = df.set_index("INSEE_COM")
    assert rows.loc["69123", "EPCI"] == "200046977" and rows.loc["75056", "EPCI"] == "200054781"
    assert rows.loc["13055", "NOM_EPCI"] == "Métropole d'Aix-Marseille-Provence"
    assert rows.loc["01001", "NOM_COM"] == "L'Abergement-Clémenciat"
    for code in WITHOUT_EPCI:
        assert pd.isna(rows.loc[code, "EPCI"]) and pd.isna(rows.loc[code, "NOM_EPCI"])
    assert rows.loc["85113", "NOM_COM"] == "L'Île-d'Yeu"
    assert "ZZZZZZZZZ" not in set(df["EPCI"].dropna()) and "Sans objet" not in set(df["NOM_EPCI"].dropna())


@pytest.mark.parametrize("suffix", [".xlsx", ".xls"])
def test_epci_workbook_invalid_code_refused_with_its_row(tmp_path, suffix):
    data = [list(r) for r in EPCI_DATA]
    data[2][2] = "ZZZZZZZZ"  # row 9 of the sheet: eight Z are not INSEE's "no EPCI" code
    path = write_workbook(tmp_path / f"EPCI_au_01-01-2024{suffix}", epci_sheets(2024, data))
    with pytest.raises(InputError) as err:
        read_communes_epci(path)
    message = str(err.value)
    assert "ligne 9, colonne 'EPCI'" in message and "'ZZZZZZZZ'" in message and "ZZZZZZZZZ" in message


def test_epci_csv_layouts_with_and_without_epci(tmp_path):
    insee = write_bytes(
        tmp_path / "epci.csv",
        (
            "CODGEO;LIBGEO;EPCI;LIBEPCI;DEP;REG\n"
            "22016;Île-de-Bréhat;ZZZZZZZZZ;Sans objet;22;53\n"
            "1001;L'Abergement-Clémenciat;200069193;CC de la Dombes;01;84\n"
        ).encode(),
    )
    df = read_communes_epci(insee)
    assert df["INSEE_COM"].tolist() == ["22016", "01001"]
    assert pd.isna(df["EPCI"].iloc[0]) and df["EPCI"].iloc[1] == "200069193"
    assert df.attrs["communes_sans_epci"] == ["22016"]
    sample = read_communes_epci(SAMPLE / "insee" / "communes-epci-2016_dep69.csv")
    assert sample.set_index("INSEE_COM").loc["69381", "EPCI"] == "200046977"
    assert sample.attrs["communes_sans_epci"] == []
    bad = write_bytes(
        tmp_path / "bad.csv", b"COM;LIBCOM;EPCI;LIBEPCI\n69001;Affoux;200040566;CA\n69002;Aigueperse;2469006;CC\n"
    )
    with pytest.raises(InputError, match=r"ligne 3, colonne 'EPCI'"):
        read_communes_epci(bad)


# ---------------------------------------------------------------------------------------------
# INSEE table de passage annuelle (2025 edition)
# ---------------------------------------------------------------------------------------------

YEARS = list(range(2003, 2026))
# (code before, code after, year of the merger): Arbignieu → Arboys en Bugey (2016),
# Annecy-le-Vieux → Annecy (2017); Lyon unchanged.
HISTORIES = [
    ("01015", "01015", 2016, "Arboys en Bugey"),
    ("01340", "01015", 2016, "Arboys en Bugey"),
    ("74011", "74010", 2017, "Annecy"),
    ("69123", "69123", 2003, "Lyon"),
]


def passage_rows() -> list[list[str]]:
    titles = [
        ["Table de passage annuelle des codes communes 2003-2025"],
        ["Géographie au 1er janvier 2025"],
        ["Source : Insee, Code officiel géographique"],
        [],
    ]
    labels = [f"Code officiel géographique {y}" for y in YEARS] + ["Libellé géographique 2025"]
    codes = [f"CODGEO_{y}" for y in YEARS] + ["LIBGEO_2025"]
    data = [[old if y < year else new for y in YEARS] + [label] for old, new, year, label in HISTORIES]
    return titles + [labels, codes] + data


@pytest.mark.parametrize("sheets", [["Documentation", "COM"], ["Notes", "Table"]])
def test_table_de_passage_2025(tmp_path, sheets):
    notes = [["Table de passage annuelle"], ["Cette table donne, pour chaque commune, son code chaque année."]]
    path = write_workbook(tmp_path / "table_passage_annuelle_2025.xlsx", {sheets[0]: notes, sheets[1]: passage_rows()})
    df = read_cog_passage(path)
    assert df.attrs["years"] == YEARS
    assert len(df) == 4 and list(df.columns) == [f"CODGEO_{y}" for y in YEARS]
    assert df["CODGEO_2003"].tolist() == ["01015", "01340", "74011", "69123"]
    assert df["CODGEO_2015"].tolist() == ["01015", "01340", "74011", "69123"]
    assert df["CODGEO_2016"].tolist() == ["01015", "01015", "74011", "69123"]
    assert df["CODGEO_2025"].tolist() == ["01015", "01015", "74010", "69123"]

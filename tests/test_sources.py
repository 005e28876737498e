"""Parsers on the sample's real files (hand-checked values) and on broken copies of them."""

from __future__ import annotations

import math
import shutil

import pytest

from config.settings import census_variables, load_catalogue, load_tic
from sources.arcep import read_arcep_debit
from sources.cog import read_communes_epci
from sources.common import InputError
from sources.filosofi import read_filosofi_communes, read_filosofi_iris
from sources.ign_iris import read_contours_iris
from sources.insee_rp import read_base_ic
from tests.conftest import SAMPLE, write

POP = SAMPLE / "insee" / "base-ic-evol-struct-pop-2016_dep69.csv"
ARCEP = SAMPLE / "arcep" / "commune-debit-beta_dep69.csv"


def test_base_ic_detects_vintage_and_keeps_codes_as_text():
    df = read_base_ic(POP, "evol-struct-pop")
    assert df.attrs["millesime"] == 2016
    assert len(df) == 751
    row = df.set_index("CODE_IRIS").loc["690810102"]  # Écully, Vianney (first data line)
    assert row["INSEE_COM"] == "69081"
    assert row["P_POP"] == pytest.approx(1890.952158)
    assert row["P_POP65P"] == pytest.approx(381.2034566)
    assert df["CODE_IRIS"].str.len().eq(9).all()


def test_base_ic_other_vintage_and_corsica(tmp_path):
    path = write(
        tmp_path / "b.csv",
        "IRIS;COM;TYP_IRIS;P21_POP;P21_POP65P\n2A0040101;2A004;H;1000,5;200\n010010000;01001;Z;50;s\n",
    )
    df = read_base_ic(path, "evol-struct-pop")
    assert df.attrs["millesime"] == 2021
    assert df["CODE_IRIS"].tolist() == ["2A0040101", "010010000"]
    assert df["P_POP"].iloc[0] == 1000.5
    assert math.isnan(df["P_POP65P"].iloc[1])


@pytest.mark.parametrize(
    "text,needle",
    [
        ("IRIS;COM;TYP_IRIS;P16_POP;C17_MEN\n690010000;69001;Z;1;1\n", "plusieurs millésimes"),
        ("IRIS;COM;TYP_IRIS;POP\n690010000;69001;Z;1\n", "Pyy_/Cyy_"),
        ("IRIS;COM;P16_POP\n690010000;69001;1\n", "TYP_IRIS"),
        ("IRIS;COM;TYP_IRIS;P16_POP\n690010000;69001;Z;12a\n", "ligne 2"),
        ("IRIS;COM;TYP_IRIS;P16_POP\n690010000;69001;Z;-3\n", "négatif"),
        ("IRIS;COM;TYP_IRIS;P16_POP\n690010000;69001;Z;1\n690010000;69001;Z;2\n", "code IRIS en double"),
        ("IRIS;COM;TYP_IRIS;P16_POP\n6900100;69001;Z;1\n", "IRIS invalide"),
        ("IRIS;COM;TYP_IRIS;P16_POP\n690010000;69002;Z;1\n", "ne commence pas par le code de sa commune"),
    ],
)
def test_base_ic_refuses_bad_files(tmp_path, text, needle):
    path = write(tmp_path / "bad.csv", text)
    with pytest.raises(InputError) as err:
        read_base_ic(path, "evol-struct-pop")
    message = str(err.value)
    assert needle in message
    assert str(path) in message and "correction :" in message


def test_empty_and_missing_files(tmp_path):
    with pytest.raises(InputError, match="vide"):
        read_base_ic(write(tmp_path / "e.csv", ""), "x")
    with pytest.raises(InputError, match="introuvable"):
        read_base_ic(tmp_path / "nope.csv", "x")


def test_latin1_file_is_decoded(tmp_path):
    path = write(tmp_path / "l.csv", "IRIS;COM;TYP_IRIS;LIBCOM;P16_POP\n690010000;69001;Z;Écully;3\n", "cp1252")
    assert read_base_ic(path, "x")["LIBCOM"].iloc[0] == "Écully"


def test_filosofi_iris_xlsx_with_title_rows():
    df = read_filosofi_iris(SAMPLE / "filosofi" / "BASE_TD_FILO_DISP_IRIS_2017.xlsx")
    assert df.attrs["annee"] == 2017
    assert len(df) == 12345
    first = df.set_index("CODE_IRIS").loc["010040101"]  # row 7 of sheet IRIS_DISP
    assert first["TP60"] == pytest.approx(19.8)
    assert first["MED"] == 19250
    rhone = df[df["CODE_IRIS"].str.startswith("69")]
    assert len(rhone) == 433
    assert rhone["TP60"].isna().sum() == 115  # suppressed under the threshold


def test_filosofi_iris_csv_decimal_comma_and_lost_zero(tmp_path):
    path = write(
        tmp_path / "f.csv", "IRIS;DISP_TP6020;DISP_MED20;DISP_PPMINI20\n10040101;13,0;21450;2,8\n570190102;nd;19970;s\n"
    )
    df = read_filosofi_iris(path)
    assert df["CODE_IRIS"].tolist() == ["010040101", "570190102"]
    assert df["TP60"].iloc[0] == 13.0 and df["PPMINI"].iloc[0] == 2.8
    assert math.isnan(df["TP60"].iloc[1]) and df["MED"].iloc[1] == 19970


def test_filosofi_communes():
    df = read_filosofi_communes(SAMPLE / "insee" / "filosofi-2015-communes-MED15_dep69.csv")
    assert df.attrs["annee"] == 2015
    assert df.set_index("INSEE_COM").loc["69001", "MED"] == pytest.approx(21606.53846)
    assert "69381" in set(df["INSEE_COM"])


def test_arcep_free_text_first_line_and_thd_classes():
    df = read_arcep_debit(ARCEP).set_index("INSEE_COM")
    assert len(df) == 278
    lyon = df.loc["69123"]  # 378 636 premises; ≥30 Mbit/s = 2 118 + 60 + 359 230
    assert lyon["locaux"] == 378636
    assert lyon["locaux_thd"] == 2118 + 60 + 359230


def test_arcep_inconsistent_classes_refused(tmp_path):
    lines = ARCEP.read_text(encoding="utf-8").splitlines()
    cells = lines[2].split(";")
    cells[4] = str(int(cells[4]) + 10)
    path = write(tmp_path / "a.csv", "\n".join(lines[:2] + [";".join(cells)]) + "\n")
    with pytest.raises(InputError, match=r"ligne 3.*'nbr'"):
        read_arcep_debit(path)


def test_communes_epci_both_layouts(tmp_path):
    df = read_communes_epci(SAMPLE / "insee" / "communes-epci-2016_dep69.csv")
    assert df.set_index("INSEE_COM").loc["69381", "EPCI"] == "200046977"
    insee = write(tmp_path / "e.csv", "CODGEO;LIBGEO;EPCI;LIBEPCI\n1001;L'Abergement;200069193;CC\n")
    assert read_communes_epci(insee)["INSEE_COM"].tolist() == ["01001"]


def test_contours(tmp_path):
    gdf = read_contours_iris(SAMPLE / "ign" / "CONTOURS-IRIS_2016_dep69.gpkg")
    assert len(gdf) == 751 and gdf.crs.to_epsg() == 2154
    assert gdf["CODE_IRIS"].is_unique
    broken = shutil.copy(SAMPLE / "insee" / "communes-epci-2016_dep69.csv", tmp_path / "x.gpkg")
    with pytest.raises(InputError, match="illisible"):
        read_contours_iris(broken)
    no_crs = tmp_path / "nocrs.gpkg"
    gdf.set_crs(None, allow_override=True).to_file(no_crs, layer="CONTOURS_IRIS")
    with pytest.raises(InputError, match="pas de projection"):
        read_contours_iris(no_crs)


@pytest.mark.parametrize("suffix", [".xls", ".xlsx"])
def test_base_ic_spreadsheet_with_title_rows(tmp_path, suffix):
    """Older vintages ship base-ic as XLS/XLSX: 5 title rows, a label row, then the code row."""
    csv = read_base_ic(POP, "evol-struct-pop")
    lines = [line.split(";") for line in POP.read_text(encoding="utf-8").splitlines()[:21]]
    header, rows = lines[0], lines[1:]
    titles = [
        ["Évolution et structure de la population en 2016"],
        ["IRIS"],
        ["Mise en ligne le 18/10/2019"],
        ["Source : Insee, RP2016"],
        [],
        ["Code IRIS"] + ["libellé"] * (len(header) - 1),
    ]
    path = tmp_path / f"base-ic-evol-struct-pop-2016{suffix}"
    if suffix == ".xls":
        import xlwt

        book = xlwt.Workbook()
        sheet = book.add_sheet("IRIS")
        for r, row in enumerate(titles + [header] + rows):
            for c, value in enumerate(row):
                sheet.write(r, c, float(value) if r > 6 and c >= 7 else value)
        book.save(str(path))
    else:
        from openpyxl import Workbook

        book = Workbook()
        sheet = book.active
        sheet.title = "IRIS"
        for row in titles + [header] + [[float(v) if c >= 7 else v for c, v in enumerate(r)] for r in rows]:
            sheet.append(row)
        book.save(path)
    sheet_table = read_base_ic(path, "evol-struct-pop")
    assert sheet_table.attrs["millesime"] == 2016 and len(sheet_table) == 20
    expected = csv.set_index("CODE_IRIS").loc[sheet_table["CODE_IRIS"]]
    assert sheet_table["P_POP"].to_numpy() == pytest.approx(expected["P_POP"].to_numpy())
    assert sheet_table["CODE_IRIS"].str.len().eq(9).all()


def test_base_ic_reads_only_the_variables_asked_for(tmp_path):
    path = write(
        tmp_path / "base-ic-evol-struct-pop-2021.CSV",
        "IRIS;REG;DEP;COM;LIBCOM;LIBIRIS;TYP_IRIS;P21_POP;P21_POP1529;P21_POP0014;C21_MEN\n"
        "010010000;84;01;01001;A;A;Z;100;20;15;40\n",
    )
    wanted = read_base_ic(path, "evol_struct_pop", variables={"P_POP", "P_POP1529"})
    assert [c for c in wanted.columns if c[:2] in ("P_", "C_")] == ["P_POP", "P_POP1529"]
    assert wanted.attrs["millesime"] == 2021 and wanted.loc[0, "P_POP1529"] == 20
    everything = read_base_ic(path, "evol_struct_pop")
    assert {"P_POP0014", "C_MEN"} <= set(everything.columns)
    # what a run asks for: every census count of the indicator catalogue and of the TIC groups
    used = census_variables(load_catalogue(), load_tic())
    assert {"P_POP", "C_MEN", "C_MENPSEUL", "P_POP1529", "P_CHOM1564", "P_POP15P", "P_POP75P"} <= used


def test_sample_filosofi_extract_is_the_rhone_of_the_national_workbook():
    """The sample run reads the Rhône extract (data/sample-69/PROVENANCE.md): what the reader
    returns from it is exactly what it returns for the Rhône from INSEE's whole-France file."""
    import pandas as pd

    whole = read_filosofi_iris(SAMPLE / "filosofi" / "BASE_TD_FILO_DISP_IRIS_2017.xlsx")
    extract = read_filosofi_iris(SAMPLE / "filosofi" / "BASE_TD_FILO_DISP_IRIS_2017_dep69.xlsx")
    rhone = whole[whole["CODE_IRIS"].astype(str).str.startswith("69")].reset_index(drop=True)
    assert len(extract) == 433
    pd.testing.assert_frame_equal(extract.reset_index(drop=True), rhone)
    assert extract.attrs["annee"] == whole.attrs["annee"] == 2017

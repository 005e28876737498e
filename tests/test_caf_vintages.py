"""CAF "non connectés" files and commune-code alignment between vintages."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from config import load_catalogue
from sources.caf import read_caf_non_connectes
from sources.common import InputError
from tests.conftest import write
from transforms.indicators import IndicatorInputs, compute_indicators
from transforms.vintages import align_commune_counts, code_mapping


def base():
    return pd.DataFrame(
        {
            "CODE_IRIS": ["690010000", "693810101", "693810102", "693820101"],
            "INSEE_COM": ["69001", "69381", "69381", "69382"],
            "C_MEN": [100.0, 300.0, 100.0, 400.0],
            "P_POP": [250.0, 600.0, 200.0, 800.0],
        }
    )


def test_caf_file_validated_blank_is_secret(tmp_path):
    path = write(
        tmp_path / "caf.csv",
        "code_geo;niveau;millesime;allocataires;non_connectes\n"
        "69001;commune;2023;40;\n69123;commune;2023;1000;150\n"
        "693820101;IRIS;2023;300;12\n",
    )
    caf = read_caf_non_connectes(path)
    assert caf["niveau"].tolist() == ["commune", "commune", "iris"]
    assert math.isnan(caf["non_connectes"].iloc[0])  # blank = unknown, never 0
    with pytest.raises(InputError, match="ligne 2.*non_connectes.*9 non connectés pour 4 allocataires"):
        read_caf_non_connectes(
            write(tmp_path / "b.csv", "code_geo;niveau;millesime;allocataires;non_connectes\n69001;commune;2023;4;9\n")
        )
    with pytest.raises(InputError, match=r"colonne 'niveau' : niveau 'canton' inconnu : ni IRIS ni commune"):
        read_caf_non_connectes(
            write(tmp_path / "c.csv", "code_geo;niveau;millesime;allocataires;non_connectes\n69001;canton;2023;4;1\n")
        )


def test_caf_indicator_iris_rows_first_then_commune_apportioned(tmp_path):
    path = write(
        tmp_path / "caf.csv",
        "code_geo;niveau;millesime;allocataires;non_connectes\n"
        "69001;commune;2023;40;\n69123;commune;2023;1000;150\n"
        "693820101;IRIS;2023;300;12\n",
    )
    caf_ind = [i for i in load_catalogue().indicators if i.id == "caf_non_connectes"]
    result = compute_indicators(base(), caf_ind, IndicatorInputs(caf_non_connectes=read_caf_non_connectes(path)))
    t = result.table.set_index("CODE_IRIS")
    # Lyon's commune row (69123) is shared by the households of 69381's two IRIS… and 69382's,
    # but 69382's IRIS has its own row, which wins.
    assert (
        t.loc["693820101", "caf_non_connectes_num"] == 12 and t.loc["693820101", "caf_non_connectes_source"] == "iris"
    )
    lyon_households = 300 + 100 + 400
    assert t.loc["693810101", "caf_non_connectes_den"] == pytest.approx(1000 * 300 / lyon_households)
    assert t.loc["693810101", "caf_non_connectes_taux"] == pytest.approx(0.15)
    assert t.loc["693810101", "caf_non_connectes_source"] == "commune"
    assert math.isnan(t.loc["690010000", "caf_non_connectes_taux"])  # secret stays unknown


def test_commune_codes_of_merged_communes_are_summed():
    passage = pd.DataFrame({"CODGEO_2017": ["69001", "69002", "69003"], "CODGEO_2018": ["69001", "69001", "69003"]})
    mapping = code_mapping(passage, 2018)
    counts = pd.DataFrame(
        {
            "INSEE_COM": ["69001", "69002", "69003", "99999"],
            "num": [1.0, 2.0, 3.0, 4.0],
            "den": [10.0, 20.0, 30.0, 40.0],
        }
    )
    aligned, report = align_commune_counts(counts, {"69001", "69003"}, mapping, ["num", "den"], "ARCEP")
    assert aligned.set_index("INSEE_COM").loc["69001", "den"] == 30.0
    assert report.unmatched_left == ["99999"] and "69002" in report.note
    with pytest.raises(ValueError, match="couvre 2017–2018"):
        code_mapping(passage, 2016)
    assert code_mapping(passage, 2021) == mapping  # past its last year: the last year, reported by callers

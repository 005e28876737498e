"""Joins and indicator construction on the sample, with the counts checked by hand."""

from __future__ import annotations

import pandas as pd
import pytest

from sources.arcep import read_arcep_debit
from sources.cog import read_communes_epci
from sources.filosofi import read_filosofi_communes, read_filosofi_iris
from sources.ign_iris import read_contours_iris
from sources.insee_rp import read_base_ic
from transforms.geo_codes import city_code, departement_code
from transforms.indicators import IndicatorInputs, compute_indicators
from transforms.iris_base import VintageError, build_iris_base, census_vintage, join_census


@pytest.fixture(scope="module")
def base(sample_settings):
    paths = sample_settings.input_paths()
    themes = {
        k: read_base_ic(paths[k], k)
        for k in ("rp_evol_struct_pop", "rp_diplomes_formation", "rp_couples_familles_menages")
    }
    census, reports = join_census(themes)
    assert all(r.complete for r in reports)
    base, reports = build_iris_base(
        read_contours_iris(paths["contours_iris"]), census, read_communes_epci(paths["communes_epci"])
    )
    assert all(r.complete for r in reports)
    return base


@pytest.fixture(scope="module")
def indicators(base, sample_settings, catalogue):
    paths = sample_settings.input_paths()
    inputs = IndicatorInputs(
        filosofi_iris=read_filosofi_iris(paths["filosofi_iris"]),
        filosofi_communes=read_filosofi_communes(paths["filosofi_communes"]),
        arcep_debit=read_arcep_debit(paths["arcep_debit"]),
    )
    return compute_indicators(base, catalogue.indicators, inputs)


def test_codes():
    assert city_code(pd.Series(["69381", "75120", "13216", "69001"])).tolist() == ["69123", "75056", "13055", "69001"]
    assert departement_code(pd.Series(["2A004", "97411", "01001"])).tolist() == ["2A", "974", "01"]


def test_spine(base):
    assert len(base) == 751
    assert base["CODE_IRIS"].is_unique
    assert (base.loc[base["INSEE_COM"].str.startswith("6938"), "EPCI"] == "200046977").all()
    assert set(base["DEP"]) == {"69"}


def test_mixed_vintages_refused():
    a = pd.DataFrame({"CODE_IRIS": []})
    a.attrs["millesime"] = 2016
    b = pd.DataFrame({"CODE_IRIS": []})
    b.attrs["millesime"] = 2017
    with pytest.raises(VintageError, match="RP 2016.*RP 2017"):
        census_vintage({"a": a, "b": b})


def test_lyon_arrondissements_share_the_arcep_row(base, indicators):
    table = pd.concat([base[["INSEE_COM"]], indicators.table], axis=1)
    lyon = table[table["INSEE_COM"].str.startswith("6938")]
    # apportioned counts add up to the single ARCEP row 69123
    assert lyon["non_thd_den"].sum() == pytest.approx(378636)
    assert lyon["non_thd_num"].sum() == pytest.approx(378636 - (2118 + 60 + 359230))
    assert lyon["non_thd_taux"].round(12).nunique() == 1
    assert (lyon["non_thd_source"] == "commune").all()
    report = next(r for r in indicators.reports if r.join == "communes ↔ ARCEP")
    assert report.unmatched_left == []


def test_filosofi_iris_then_commune(base, indicators):
    table = pd.concat([base[["CODE_IRIS", "P_POP"]], indicators.table.drop(columns="CODE_IRIS")], axis=1).set_index(
        "CODE_IRIS"
    )
    assert (table["revenu_median_source"] == "iris").sum() == 433
    # Vianney (Écully): DISP_MED17 = published IRIS value, weighted by its population
    row = table.loc["690810102"]
    assert row["revenu_median_source"] == "iris"
    assert row["revenu_median_den"] == pytest.approx(row["P_POP"])
    # Affoux, not split into IRIS: commune MED15 = 21 606.54, flagged
    affoux = table.loc["690010000"]
    assert affoux["revenu_median_source"] == "commune"
    assert affoux["revenu_median_taux"] == pytest.approx(21606.53846)
    # poverty has no commune fallback in the sample: no value, flagged empty
    assert affoux["pauvrete_source"] == "" and pd.isna(affoux["pauvrete_taux"])


def test_indicators_without_inputs_are_reported(indicators):
    assert set(indicators.skipped) == {"non_4g", "chomage", "caf_non_connectes"}
    assert "P_CHOM1564" in indicators.skipped["chomage"]
    assert indicators.table["non_residentiel"].sum() == 5

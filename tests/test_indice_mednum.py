"""MedNum 2019 scoring on hand-checked numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from indice.mednum import Reference, aggregate_scores, reference_values, score_mednum
from tests.conftest import census_indicator as ind


@pytest.fixture
def frame():
    # Two départements; département 01 has IRIS a, b; 02 has c.
    return pd.DataFrame(
        {
            "CODE_IRIS": ["010010101", "010010102", "020010000"],
            "INSEE_COM": ["01001", "01001", "02001"],
            "EPCI": ["200000001", "200000001", "200000002"],
            "DEP": ["01", "01", "02"],
            "REG": ["84", "84", "32"],
            "seul_num": [30.0, 10.0, 20.0],
            "seul_den": [100.0, 100.0, 50.0],
            "rev_num": [20000.0 * 100, 30000.0 * 300, 25000.0 * 50],
            "rev_den": [100.0, 300.0, 50.0],
            "vieux_num": [5.0, 0.0, 1.0],
            "vieux_den": [10.0, 0.0, 4.0],
        }
    )


INDS = [ind("seul", "information"), ind("rev", "interfaces", higher=True), ind("vieux", "numerique")]


def test_reference_is_ratio_of_sums(frame):
    refs = reference_values(frame, INDS, Reference("departement"))
    # département 01: (30 + 10) / (100 + 100) = 0.2 ; 02: 20 / 50 = 0.4
    assert refs["seul"].tolist() == pytest.approx([0.2, 0.2, 0.4])
    # income: population-weighted (2 000 000 + 9 000 000) / 400 = 27 500
    assert refs["rev"].iloc[0] == pytest.approx(27500.0)


def test_scores_by_hand(frame):
    out = score_mednum(frame, INDS, Reference("departement")).scores
    # seul: 100 * 0.3 / 0.2 = 150 ; 100 * 0.1 / 0.2 = 50
    assert out["seul_score"].tolist()[:2] == pytest.approx([150.0, 50.0])
    # income is inverted: 100 * 27 500 / 20 000 = 137.5 (poorer = more fragile)
    assert out["rev_score"].iloc[0] == pytest.approx(137.5)
    # vieux for b has a zero denominator: no score, skipped in the means (not counted as 0)
    assert np.isnan(out["vieux_score"].iloc[1])
    b_rev = 100 * 27500 / 30000
    assert out["score_global"].iloc[1] == pytest.approx((50.0 + b_rev) / 2)
    # a: global = mean(150, 137.5, vieux) with vieux = 100 * 0.5 / (5/10) = 100
    assert out["score_global"].iloc[0] == pytest.approx((150 + 137.5 + 100) / 3)
    assert out["score_acces"].iloc[0] == pytest.approx((150 + 137.5) / 2)
    assert out["score_competences"].iloc[0] == pytest.approx(100.0)
    # the single IRIS of département 02 is its own reference
    assert out["seul_score"].iloc[2] == pytest.approx(100.0)


def test_legacy_2020(frame):
    out = score_mednum(frame, INDS, Reference("territoire"), legacy_2020=True).scores
    # zero denominator scores 0 and counts in the means
    assert out["vieux_score"].iloc[1] == 0.0
    # income is not inverted and its reference is the mean of commune values:
    # commune 01001 rate = ... each IRIS keeps its own rate; commune mean over distinct communes
    refs = reference_values(frame, INDS, Reference("territoire"), commune_mean=frozenset({"rev"}))
    # distinct (commune) values: first IRIS of 01001 (20 000) and 02001 (25 000) → 22 500
    assert refs["rev"].iloc[0] == pytest.approx(22500.0)
    assert out["rev_score"].iloc[0] == pytest.approx(100 * 20000 / 22500)
    assert out["score_numerique"].iloc[1] == 0.0


def test_pooled_means_are_not_means_of_axes():
    scores = pd.DataFrame({"a_score": [100.0], "b_score": [200.0], "c_score": [300.0]})
    out = aggregate_scores(scores, {"a": "information", "b": "information", "c": "interfaces"})
    assert out["score_information"].iloc[0] == 150.0
    assert out["score_interfaces"].iloc[0] == 300.0
    assert out["score_acces"].iloc[0] == pytest.approx(200.0)  # not (150 + 300) / 2 = 225
    assert np.isnan(out["score_administratif"].iloc[0])


def test_region_reference_from_configuration(frame):
    fixed = {"84": {"seul": 0.25}, "32": {"seul": 0.5}}
    out = score_mednum(frame, INDS, Reference("region", fixed))
    assert out.scores["seul_score"].tolist() == pytest.approx([120.0, 40.0, 80.0])
    # indicators without a configured value are reported and left unscored
    assert set(out.unscored) == {"rev", "vieux"}
    assert out.scores["rev_score"].isna().all()


def test_scaling_all_counts_leaves_scores_unchanged(frame):
    scaled = frame.copy()
    for col in [c for c in frame.columns if c.endswith(("_num", "_den"))]:
        scaled[col] = frame[col] * 7.3
    a = score_mednum(frame, INDS, Reference("epci")).scores
    b = score_mednum(scaled, INDS, Reference("epci")).scores
    pd.testing.assert_frame_equal(a, b, rtol=1e-12)

"""IFN 2023, weighting presets, TIC estimates and method properties, on hand-checked numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config import load_methods, load_tic
from config.settings import TicConfig
from indice.ifn import _round_significant_text, round_significant, score_ifn, to_notes
from indice.mednum import Reference, score_mednum
from indice.methods import MethodParams, exposure_summary, score_all
from indice.tic import estimate_people
from indice.weighting import composite_score, weighted_mean
from tests.conftest import census_indicator as ind


def test_decile_notes_balanced_without_ties():
    notes = to_notes(pd.Series(np.arange(100.0)))
    assert notes.value_counts().sort_index().tolist() == [10] * 10
    assert notes.iloc[0] == 1 and notes.iloc[99] == 10


def test_decile_notes_ties_and_missing():
    values = pd.Series([5.0, 5.0, 5.0, 1.0, np.nan, 9.0, 2.0, 3.0, 4.0, 6.0, 7.0])
    notes = to_notes(values)
    # 10 present values; the three 5.0 share rank 5 (method "min") → note floor(4*10/10)+1 = 5
    assert notes.iloc[:3].tolist() == [5.0, 5.0, 5.0]
    assert notes.iloc[3] == 1.0 and notes.iloc[5] == 10.0
    assert np.isnan(notes.iloc[4])
    assert notes.dropna().between(1, 10).all()


def test_rounding_to_significant_digits_is_the_decimal_texts():
    """The floating-point rounding gives, bit for bit, the value of each number's `%.8e` text,
    including ties, powers of ten, extreme exponents, subnormals, signs, zero and NaN."""
    rng = np.random.default_rng(2026)
    edges = [0.0, -0.0, np.nan, np.inf, -np.inf, 5e-324, 1e-310, 1.7976931348623157e308, 0.1234567885, 1.2345678950]
    steps = [m * 10.0**k for k in range(-25, 25) for m in (1, 5, 9.9999999995, 9.99999999951, 1.0000000005, 1.23456789)]
    # ten-digit decimals ending in 5: the tenth digit is a tie in decimal, not in binary
    ties = [float(f"{m}5e{k}") for m, k in zip(rng.integers(10**8, 10**9, 5000), rng.integers(-15, 10, 5000))]
    values = np.concatenate(
        [
            edges,
            steps,
            ties,
            rng.random(20_000),
            rng.integers(0, 5000, 20_000) / rng.integers(1, 5000, 20_000),
            -(10.0 ** rng.uniform(-30, 30, 20_000)),
        ]
    )
    fast = round_significant(pd.Series(values)).to_numpy()
    text = _round_significant_text(values, 9)
    assert np.array_equal(fast, text, equal_nan=True)
    assert np.array_equal(np.signbit(fast), np.signbit(text))
    # values equal at nine significant digits become one float
    assert round_significant(pd.Series([0.1234567891, 0.1234567894])).nunique() == 1


def test_minmax_notes():
    notes = to_notes(pd.Series([0.1, 0.2, 0.4]), "minmax")
    assert notes.tolist() == pytest.approx([1.0, 4.0, 10.0])
    assert to_notes(pd.Series([3.0, 3.0]), "minmax").tolist() == [1.0, 1.0]


def test_ifn_score_is_mean_of_available_notes():
    rates = pd.DataFrame({"a": np.arange(10.0), "b": np.arange(10.0)[::-1], "rev": np.arange(10.0)})
    table, missing = score_ifn(
        rates, {"general": ["a", "b", "absent"], "senior": ["a", "rev"]}, higher_is_better=frozenset({"rev"})
    )
    assert missing == {"general": ["absent"], "senior": []}
    assert table["ifn2023_a_note"].tolist() == list(range(1, 11))
    assert (table["ifn2023_score"] == 5.5).all()  # (k + 11 - k) / 2
    # higher is better: the highest income gets note 1
    assert table["ifn2023_rev_note"].iloc[9] == 1 and table["ifn2023_rev_note"].iloc[0] == 10
    assert (table["ifn2023_senior_score"] == 5.5).all()


def test_weights_need_not_sum_to_one():
    scores = pd.DataFrame({"a_score": [100.0, 100.0], "b_score": [200.0, np.nan]})
    # 3·100 + 1·200 over 4 = 125 ; second row only a is available → 100
    assert weighted_mean(scores, {"a_score": 3, "b_score": 1}).tolist() == pytest.approx([125.0, 100.0])
    assert weighted_mean(scores, {"a_score": 0.3, "b_score": 0.1}).tolist() == pytest.approx([125.0, 100.0])


def test_axis_means_scheme():
    scores = pd.DataFrame({"a_score": [100.0], "b_score": [200.0], "c_score": [300.0]})
    axis_of = {"a": "information", "b": "information", "c": "interfaces"}
    # axis means 150 and 300; axis weights 2 and 1 → (300 + 300) / 3 = 200
    got = composite_score(scores, axis_of, scheme="axis_means", axis_weights={"information": 2, "interfaces": 1})
    assert got.iloc[0] == pytest.approx(200.0)
    pooled = composite_score(scores, axis_of, scheme="pooled")
    assert pooled.iloc[0] == pytest.approx(200.0)
    assert composite_score(scores, axis_of, scheme="axis_means").iloc[0] == pytest.approx(225.0)


def test_tic_estimates_and_age_total():
    counts = pd.DataFrame(
        {
            "P_POP1529": [100.0, 0.0],
            "C_MENPSEUL": [50.0, 10.0],
            "P_POP3044": [200.0, 10.0],
            "P_POP4559": [100.0, 0.0],
            "P_POP6074": [100.0, 0.0],
            "P_POP75P": [50.0, 5.0],
        }
    )
    result = estimate_people(counts, load_tic())
    est = result.estimates
    assert est["est_illectronisme_1529"].tolist() == pytest.approx([3.0, 0.0])
    assert est["est_sans_equipement_seuls"].tolist() == pytest.approx([14.75, 2.95])
    assert "est_non_usage_1529" not in est  # the source gives no rate
    assert est["est_sans_equipement_75p"].iloc[0] == pytest.approx(26.6)
    # age total: 0.03·(100+200) + 0.09·100 + 0.27·100 + 0.67·50 = 9 + 9 + 27 + 33.5
    assert est["est_illectronisme_age"].iloc[0] == pytest.approx(78.5)
    assert "15p" in result.skipped and "P_POP15P" in result.skipped["15p"]
    assert "couples_sans_enfant" in result.skipped


def test_tic_configuration_refuses_bad_rates():
    data = load_tic().model_dump()
    data["groups"]["seuls"]["rates"]["illectronisme"] = 32.4  # a percentage, not a share
    with pytest.raises(ValueError, match="entre 0 et 1"):
        TicConfig.model_validate(data)


def test_exposure_summary_counts_lyon_once():
    frame = pd.DataFrame({"INSEE_COM": ["69381", "69382", "69003", "69003"], "P_POP": [1000.0, 2000.0, 500.0, 10.0]})
    out = exposure_summary(frame, pd.Series([True, True, True, pd.NA], dtype="boolean"))
    assert out["iris_exposes"] == 3
    assert out["codes_communes"] == ["69003", "69123"]
    assert out["communes_arrondissements_distincts"] == 3
    assert out["arrondissements"] == ["69381", "69382"]
    assert out["population"] == 3500.0


INDS = [ind("x", "information"), ind("y", "interfaces"), ind("z", "numerique")]


def _frame(nums, dens):
    frame = pd.DataFrame(
        {
            "INSEE_COM": ["01001"] * len(nums),
            "EPCI": ["200000001"] * len(nums),
            "DEP": ["01"] * len(nums),
            "REG": ["84"] * len(nums),
        }
    )
    for k, ind_id in enumerate("xyz"):
        frame[f"{ind_id}_num"] = [n[k] for n in nums]
        frame[f"{ind_id}_den"] = [d[k] for d in dens]
    return frame


counts = st.lists(st.tuples(*[st.floats(1, 1000)] * 3), min_size=3, max_size=12)


@settings(max_examples=30, deadline=None)
@given(nums=counts, factor=st.floats(0.01, 100))
def test_scaling_every_count_leaves_every_score_unchanged(nums, factor):
    dens = [tuple(v * 2 + 1 for v in n) for n in nums]
    frame = _frame(nums, dens)
    scaled = _frame([tuple(v * factor for v in n) for n in nums], [tuple(v * factor for v in d) for d in dens])
    params = MethodParams(
        Reference("territoire"),
        load_methods().weightings,
        load_methods().ifn_2023,
        load_tic(),
        methods=("mednum_2019", "ifn_2023", "opale_2022"),
    )
    a = score_all(frame, INDS, params).table
    b = score_all(scaled, INDS, params).table
    pd.testing.assert_frame_equal(a, b, rtol=1e-9)


@settings(max_examples=30, deadline=None)
@given(nums=counts, which=st.integers(0, 2), bump=st.floats(1.01, 5))
def test_raising_one_risk_rate_never_lowers_that_iris_score(nums, which, bump):
    dens = [tuple(v * 2 + 1 for v in n) for n in nums]
    frame = _frame(nums, dens)
    raised = frame.copy()
    col = f"{'xyz'[which]}_num"
    raised.loc[0, col] = min(raised.loc[0, col] * bump, frame.loc[0, col.replace("_num", "_den")])
    before = score_mednum(frame, INDS, Reference("territoire")).scores
    after = score_mednum(raised, INDS, Reference("territoire")).scores
    assert after.loc[0, f"{'xyz'[which]}_score"] >= before.loc[0, f"{'xyz'[which]}_score"] - 1e-9
    assert after.loc[0, "score_global"] >= before.loc[0, "score_global"] - 1e-9

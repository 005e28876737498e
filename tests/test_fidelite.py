"""Issue 14: scores that mean the same thing everywhere (reference units read whole, ties,
completeness, reliability, mailles, vintages, TIC citations)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config import load_catalogue, load_tic
from config.settings import ConfigError, ReliabilityRule
from indice.ifn import to_notes
from indice.mednum import Completeness, Reference, aggregate_scores, score_mednum, unit_references
from indice.methods import reliability
from sources.registry import PARSERS
from tests.conftest import LYON_EPCI
from transforms.chain import CENSUS_INPUTS, territory_base
from transforms.mailles import carried_flags
from transforms.territory import Territory

# --- 1. the reference unit is always whole ---------------------------------------------------


def _materialize_scores(tmp_path, territory: list[str], reference: str = "departement"):
    """iris_scores and mailles_scores with what they need, on the embedded sample."""
    import dagster as dg

    from tests.conftest import materialize_sample

    result = materialize_sample(
        tmp_path / "out",
        dg.AssetSelection.assets("iris_scores", "mailles_scores").upstream(),
        with_checks=False,
        territory=territory,
        reference=reference,
    )
    assert result.success
    iris = result.output_for_node("iris_indicateurs")
    scored = result.output_for_node("iris_scores")
    table = pd.concat([iris.frame[["CODE_IRIS"]], scored.table], axis=1).set_index("CODE_IRIS")
    return table, scored, result


@pytest.fixture(scope="module")
def rhone_and_metropole(tmp_path_factory):
    return (
        _materialize_scores(tmp_path_factory.mktemp("rhone"), []),
        _materialize_scores(tmp_path_factory.mktemp("metropole"), [LYON_EPCI]),
    )


def test_territory_does_not_change_the_scores(rhone_and_metropole):
    (rhone, rhone_scored, _), (lyon, lyon_scored, result) = rhone_and_metropole
    assert len(rhone) == 751 and len(lyon) == 512
    columns = [c for c in lyon.columns if c.endswith("_score") and not c.startswith(("ifn2023_", "opale_"))] + [
        c for c in lyon.columns if c.startswith("score_")
    ]
    assert "score_global" in columns and "men_seul_score" in columns and "non_thd_score" in columns
    # identical to the last bit, not merely close
    pd.testing.assert_frame_equal(rhone.loc[lyon.index, columns], lyon[columns], check_exact=True)
    for scored in (rhone_scored, lyon_scored):
        assert scored.metadata["reference"] == "departement"
        units = scored.metadata["unites_de_reference"]
        assert [(u["unite"], u["iris"]) for u in units] == [("69", 751)]
    assert rhone_scored.metadata["unites_de_reference"] == lyon_scored.metadata["unites_de_reference"]
    base = result.output_for_node("iris_base")
    assert len(base) == 751 and int(base["territoire_etude"].sum()) == 512


def test_commune_scores_use_the_whole_departement(rhone_and_metropole):
    (_, _, rhone_result), (_, _, lyon_result) = rhone_and_metropole
    rhone = rhone_result.output_for_node("mailles_scores")["communes"]
    lyon = lyon_result.output_for_node("mailles_scores")["communes"]
    rhone_keys = rhone_result.output_for_node("mailles")["communes"]["INSEE_COM"]
    lyon_keys = lyon_result.output_for_node("mailles")["communes"]["INSEE_COM"]
    a = rhone.table.set_index(rhone_keys.to_numpy())
    b = lyon.table.set_index(lyon_keys.to_numpy())
    pd.testing.assert_series_equal(a.loc[b.index, "score_global"], b["score_global"], check_exact=True)


@pytest.fixture(scope="module")
def sample_inputs(sample_settings):
    paths = sample_settings.input_paths()
    return {k: PARSERS[k](paths[k]) for k in ("contours_iris", "communes_epci", *CENSUS_INPUTS) if k in paths}


def _base(inputs, communes_epci, codes, level, fallback="refuse"):
    census = {k: inputs.get(k) for k in CENSUS_INPUTS}
    return territory_base(
        inputs["contours_iris"],
        communes_epci,
        census,
        Territory("test", codes),
        reference_level=level,
        reference_fallback=fallback,
    )


def test_incomplete_epci_is_refused_with_its_missing_communes(sample_inputs):
    # CA Viennagglo as the national composition file lists it: Isère communes are not loaded
    members = sample_inputs["communes_epci"]
    viennagglo = members[members["EPCI"] == "243800455"].iloc[0]
    extra = pd.DataFrame([{**viennagglo, "INSEE_COM": code} for code in ("38544", "38480")])
    national = pd.concat([members, extra], ignore_index=True)
    with pytest.raises(ConfigError) as caught:
        _base(sample_inputs, national, ["69235"], "epci")
    message = str(caught.value)
    assert "243800455" in message and "38480, 38544" in message and "--reference" in message
    fallen = _base(sample_inputs, national, ["69235"], "epci", fallback="departement")
    assert fallen.reference.level == "departement" and fallen.reference.asked == "epci"
    assert "remplacée par la référence departement" in fallen.reference.notes[0]
    assert len(fallen.frame) == 751 and fallen.frame.attrs["reference"]["niveau"] == "departement"
    # the whole EPCIs of the file are complete: no refusal, the partial-file caveat is noted
    whole = _base(sample_inputs, members, [LYON_EPCI], "epci")
    assert len(whole.frame) == 512 and whole.reference.units == {LYON_EPCI: 512}
    seat = _base(sample_inputs, members, ["69235"], "epci").reference.notes
    assert any("243800455" in n and "département 38" in n for n in seat)


def test_reference_units_are_computed_on_whole_units():
    frame = pd.DataFrame(
        {"DEP": ["69", "69", "69"], "a_num": [1.0, 2.0, 9.0], "a_den": [10.0, 10.0, 10.0]},
    )
    ind = [i for i in load_catalogue().indicators if i.id == "men_seul"][0].model_copy(update={"id": "a"})
    fixed = unit_references(frame, [ind], "departement")
    assert fixed == {"69": {"a": pytest.approx(0.4)}}
    subset = frame.iloc[:1]
    scores = score_mednum(subset, [ind], Reference("departement", fixed)).scores
    assert scores["a_score"].iloc[0] == pytest.approx(100 * 0.1 / 0.4)


# --- 2. ties ---------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    communes=st.lists(
        st.tuples(
            st.floats(0.001, 0.999),  # the commune's rate
            st.lists(st.floats(1.0, 5000.0), min_size=1, max_size=6),  # its IRIS' weights
        ),
        min_size=2,
        max_size=12,
    )
)
def test_copied_commune_values_share_a_note(communes):
    """A commune value given to several IRIS (num = rate × weight, den = weight, as Filosofi and
    ARCEP values are stored) gives the same IFN note to each of them."""
    rows = [(k, rate * w, w) for k, (rate, weights) in enumerate(communes) for w in weights]
    frame = pd.DataFrame(rows, columns=["commune", "num", "den"])
    notes = to_notes(frame["num"] / frame["den"])
    assert (notes.groupby(frame["commune"]).nunique() == 1).all()


# --- 3. completeness -------------------------------------------------------------------------


def test_completeness_columns_and_rule():
    axis_of = {"a": "information", "b": "information", "c": "interfaces", "d": "administratif", "e": "numerique"}
    scores = pd.DataFrame(
        {
            "a_score": [100.0, 120.0],
            "b_score": [80.0, np.nan],
            "c_score": [110.0, np.nan],
            "d_score": [90.0, 100.0],
            "e_score": [100.0, 100.0],
        }
    )
    default = aggregate_scores(scores, axis_of)
    assert default["nb_indicateurs_notes"].tolist() == [5, 3]
    assert default["indicateurs_manquants"].tolist() == ["", "b,c"]
    assert default["n_information"].tolist() == [2, 1] and default["n_interfaces"].tolist() == [1, 0]
    # MedNum 2019: the mean of what is available
    assert default["score_global"].iloc[1] == pytest.approx((120 + 100 + 100) / 3)
    strict = aggregate_scores(scores, axis_of, rule=Completeness(2, True))
    assert np.isnan(strict["score_information"].iloc[1]) and np.isnan(strict["score_global"].iloc[1])
    assert strict["score_information"].iloc[0] == 90  # two indicators: enough
    assert np.isnan(strict["score_global"].iloc[0])  # interfaces has one indicator, under the minimum


# --- 4. reliability --------------------------------------------------------------------------


def test_reliability_flag():
    frame = pd.DataFrame({"P_POP": [150.0, 5000.0, 5000.0, np.nan], "TYP_IRIS": ["H", "A", "H", "Z"]})
    assert reliability(frame, ReliabilityRule()).tolist() == ["faible", "faible", "bonne", "faible"]
    assert reliability(frame, ReliabilityRule(min_population=100, weak_types=[])).tolist()[:3] == [
        "bonne",
        "bonne",
        "bonne",
    ]


# --- 5. mailles ------------------------------------------------------------------------------


def test_maille_flags_carried_up():
    iris = pd.DataFrame(
        {
            "INSEE_COM": ["1", "1", "2", "2"],
            "p_num": [1.0, np.nan, 2.0, 3.0],
            "p_den": [10.0, 0.0, 10.0, 10.0],
            "p_source": ["iris", "", "iris", "commune"],
            "p_annee": ["2017", "", "2017", "2015"],
        }
    )
    weight = pd.Series([100.0, 300.0, 50.0, 50.0])
    flags = carried_flags(iris, "INSEE_COM", "p", weight)
    assert flags["p_couverture"].tolist() == [0.25, 1.0]
    assert flags["p_source"].tolist() == ["iris", "mixte"]
    assert flags["p_annee"].tolist() == ["2017", "2015, 2017"]


# --- 8. TIC ratios ---------------------------------------------------------------------------


def test_verified_tic_rates_need_a_citation():
    tic = load_tic()
    assert not tic.groups["1529"].rate_verified("sans_equipement")
    assert tic.groups["1529"].rate_verified("illectronisme")
    assert "plus large" in tic.groups["non_dipl"].caveat
    data = tic.model_dump()
    data["groups"]["15p"]["citation"] = None
    with pytest.raises(ValueError, match="citation"):
        type(tic).model_validate(data)


# --- points 6 and 7 of the issue, through the command line ---------------------------------


def _cli_run(tmp_path, capsys, *args: str) -> tuple[int, str, pd.DataFrame]:
    import geopandas as gpd

    from pipelines.cli import main
    from tests.conftest import INSTANCE_YAML, write

    home = tmp_path / "dagster"
    home.mkdir()
    write(home / "dagster.yaml", INSTANCE_YAML)
    import os

    old = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        code = main(["run", "--out", str(tmp_path / "out"), *args])
    finally:
        os.environ.pop("DAGSTER_HOME") if old is None else os.environ.__setitem__("DAGSTER_HOME", old)
    captured = capsys.readouterr()
    layer = gpd.read_parquet(tmp_path / "out" / "layers" / "iris.parquet") if code == 0 else pd.DataFrame()
    return code, captured.out + captured.err, layer


def test_region_reference_says_which_indicators_are_unscored(tmp_path, capsys):
    """Point 7 of the audit: `--reference region` emptied the interfaces axis while the console
    said « 746/751 IRIS notés ». Indicators without a configured région value are named, with
    the reason, in the console and the metadata; their scores are empty, never made up."""
    code, text, layer = _cli_run(tmp_path, capsys, "--reference", "region")
    assert code == 0, text[-2000:]
    unscored = [c for c in ("non_thd", "pauvrete", "revenu_median", "minima") if layer[f"{c}_score"].isna().all()]
    assert unscored, "the sample's région values lack some indicators"
    assert "IRIS notés sans " in text and "(pas de valeur de référence)" in text
    for ind_id in unscored:
        assert f"non noté : {ind_id} : " in text
    metadata = (tmp_path / "out" / "layers" / "iris.metadata.json").read_text(encoding="utf-8")
    assert all(ind_id in metadata for ind_id in unscored)


def test_income_years_mixed_are_flagged_per_iris_and_in_the_summary(tmp_path, capsys):
    """Point 8 of the audit: IRIS incomes 2017, commune fallback 2015, never flagged."""
    code, text, layer = _cli_run(tmp_path, capsys)
    assert code == 0, text[-2000:]
    years = layer.set_index("CODE_IRIS")["revenu_median_annee"]
    sources = layer.set_index("CODE_IRIS")["revenu_median_source"]
    assert set(years[sources == "commune"].dropna().astype(str)) == {"2015"}
    assert set(years[sources == "iris"].dropna().astype(str)) == {"2017"}
    assert "millésimes mélangés" in text and "revenu_median_annee" in text
    dictionary = pd.read_csv(tmp_path / "out" / "layers" / "dictionnaire.csv", sep=";", dtype=str).set_index("code")
    note = dictionary.loc["revenu_median_taux", "note"]
    assert "Millésimes mélangés" in note and "2017" in note and "2015" in note

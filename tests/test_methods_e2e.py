"""Issue 4 end to end: all methods and mailles on the Métropole de Lyon, read back from the files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from config import load_tic
from pipelines.cli import main
from tests.conftest import INSTANCE_YAML, LYON_EPCI, materialize_sample, write


def read(path):
    return pq.read_table(path).drop_columns(["geometry", "bbox"]).to_pandas()


@pytest.fixture(scope="module")
def lyon_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lyon")
    home = tmp / "home"
    home.mkdir()
    write(home / "dagster.yaml", INSTANCE_YAML)
    mp = pytest.MonkeyPatch()
    mp.setenv("DAGSTER_HOME", str(home))
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(["run", "--territory", LYON_EPCI, "--out", str(tmp / "out")])
    mp.undo()
    return code, buffer.getvalue(), tmp / "out" / "layers"


def test_territory_run_reports_exposed_iris(lyon_run):
    code, printed, layers = lyon_run
    assert code == 0
    assert "Opale : " in printed and "IRIS exposés" in printed
    iris = read(layers / "iris.parquet")
    assert len(iris) == 512 and (iris["EPCI"] == LYON_EPCI).all()
    info = json.loads((layers / "iris.metadata.json").read_text(encoding="utf-8"))
    summary = info["details_methodes"]["opale_resume"]
    assert summary["iris_exposes"] == int(iris["opale_expose"].fillna(False).sum()) > 0
    assert info["details_methodes"]["methode_opale_2022"]["reference"] == "territoire"
    # the Opale flag is score >= 110, IRIS of weak reliability (under 200 residents, type A/D) set aside
    scored = iris[iris["opale_score"].notna()]
    assert (scored["opale_expose"] == ((scored["opale_score"] >= 110) & (scored["fiabilite"] == "bonne"))).all()
    weak = (iris["P_POP"].fillna(0) < 200) | iris["TYP_IRIS"].isin(["A", "D"])
    assert (iris["fiabilite"] == weak.map({True: "faible", False: "bonne"})).all()
    set_aside = int(((scored["opale_score"] >= 110) & (scored["fiabilite"] == "faible")).sum())
    assert set_aside > 0 and summary["iris_fiabilite_faible_ecartees"] == set_aside
    assert f"{set_aside} IRIS au-dessus du seuil écartées (fiabilité faible)" in printed


def test_territory_run_records_the_whole_reference_and_completeness(lyon_run):
    _, printed, layers = lyon_run
    info = json.loads((layers / "iris.metadata.json").read_text(encoding="utf-8"))
    assert info["reference"] == "departement"
    details = info["details_methodes"]
    units = details["unites_de_reference"]
    assert [(u["unite"], u["iris"]) for u in units] == [("69", 751)]  # the whole département, not the EPCI
    assert set(units[0]["taux"]) >= {"men_seul", "non_thd", "pauvrete"}
    assert "Référence departement : unité(s) entière(s) 69 (751 IRIS)" in printed
    iris = read(layers / "iris.parquet")
    rated = iris[iris["score_global"].notna()]
    present = {
        c[: -len("_score")] for c in iris if c.endswith("_score") and not c.startswith(("ifn", "opale", "score"))
    }
    for _, row in rated.head(50).iterrows():
        missing = [i for i in row["indicateurs_manquants"].split(",") if i]
        noted = [i for i in present if pd.notna(row[f"{i}_score"])]
        assert sorted(missing) == sorted(present - set(noted)) and row["nb_indicateurs_notes"] == len(noted)
    assert rated["nb_indicateurs_notes"].nunique() > 1 and not details["completude"]["homogene"]
    assert "ensembles d'indicateurs différents" in printed
    # the département layer has one unit: IFN deciles are not published there
    departements = read(layers / "departements.parquet")
    assert not [c for c in departements if c.startswith("ifn2023_")]


def test_ifn_notes_are_deciles(lyon_run):
    *_, layers = lyon_run
    iris = read(layers / "iris.parquet")
    notes = [c for c in iris.columns if c.startswith("ifn2023_") and c.endswith("_note")]
    assert {"ifn2023_non_thd_note", "ifn2023_pop_65p_note", "ifn2023_non_dipl_note", "ifn2023_pauvrete_note"} <= set(
        notes
    )
    for column in notes:
        values = iris[column].dropna()
        assert values.between(1, 10).all() and (values == values.round()).all(), column
    # IRIS-level indicators without ties fill every decile evenly (±1)
    for column in ("ifn2023_pop_65p_note", "ifn2023_non_dipl_note"):
        counts = iris[column].value_counts()
        assert len(counts) == 10 and counts.max() - counts.min() <= 1, column
    assert iris["ifn2023_score"].dropna().between(1, 10).all()


def test_commune_layer_is_a_recomputation_from_iris_sums(lyon_run):
    *_, layers = lyon_run
    iris = read(layers / "iris.parquet")
    communes = read(layers / "communes.parquet").set_index("INSEE_COM")
    assert len(communes) == iris["INSEE_COM"].nunique() == 67  # 59 communes, Lyon by its 9 arrondissements
    sums = iris.groupby("INSEE_COM")[["men_seul_num", "men_seul_den", "pop_65p_num", "pop_65p_den"]].sum()
    info = json.loads((layers / "communes.metadata.json").read_text(encoding="utf-8"))
    (unit,) = json.loads((layers / "iris.metadata.json").read_text(encoding="utf-8"))["details_methodes"][
        "unites_de_reference"
    ]
    taux = unit["taux"]
    assert info["reference"] == "departement"
    for ind_id in ("men_seul", "pop_65p"):
        np.testing.assert_allclose(communes[f"{ind_id}_num"], sums.loc[communes.index, f"{ind_id}_num"])
        rate = sums[f"{ind_id}_num"] / sums[f"{ind_id}_den"]
        np.testing.assert_allclose(communes[f"{ind_id}_taux"], rate.loc[communes.index])
        # score against the same département reference as the IRIS: Σnum / Σden over the whole
        # département (751 IRIS), not over the study territory
        reference = taux[ind_id]
        assert reference != pytest.approx(sums[f"{ind_id}_num"].sum() / sums[f"{ind_id}_den"].sum())
        np.testing.assert_allclose(communes[f"{ind_id}_score"], 100 * rate.loc[communes.index] / reference)
    epci = read(layers / "epci.parquet")
    assert epci["EPCI"].tolist() == [LYON_EPCI]
    assert epci["P_POP"].iloc[0] == pytest.approx(iris["P_POP"].sum())
    assert communes["P_POP"].sum() == pytest.approx(iris["P_POP"].sum())


def test_estimates_sum_to_rate_times_count(lyon_run):
    *_, layers = lyon_run
    iris = read(layers / "iris.parquet")
    epci = read(layers / "epci.parquet")
    tic = load_tic()
    est = [c for c in iris.columns if c.startswith("est_")]
    assert {"est_illectronisme_1529", "est_illectronisme_non_dipl", "est_sans_equipement_seuls"} <= set(est)
    counts = {"1529": "pop_1529_num", "non_dipl": "non_dipl_num", "seuls": "men_seul_num"}
    for column in est:
        outcome, group = (
            column[len("est_") :].rsplit("_", 1)
            if not column.endswith("non_dipl")
            else (column[len("est_") : -len("_non_dipl")], "non_dipl")
        )
        expected = tic.groups[group].rates[outcome] * iris[counts[group]].sum()
        assert iris[column].sum() == pytest.approx(expected), column
        assert epci[column].iloc[0] == pytest.approx(expected), column


def test_configuration_chooses_the_methods(tmp_path):

    config = write(tmp_path / "c.yaml", "run:\n  methods: [mednum_2019]\n  territory: [pays-arbresle]\n")
    result = materialize_sample(tmp_path / "out", config_file=str(config))
    assert result.success
    iris = read(tmp_path / "out" / "layers" / "iris.parquet")
    assert len(iris) == 18 and iris["INSEE_COM"].nunique() == 17  # L'Arbresle has 2 IRIS
    assert "score_global" in iris and not [c for c in iris if c.startswith(("ifn2023_", "opale_", "est_"))]

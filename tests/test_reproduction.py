"""The 2020 MedNum publication, reproduced from the sample's INSEE files (methodology §4.1)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from indice.mednum import Reference, aggregate_scores, score_mednum
from sources.cog import read_communes_epci
from sources.filosofi import read_filosofi_communes
from sources.ign_iris import read_contours_iris
from sources.insee_rp import read_base_ic
from tests.conftest import LYON_EPCI
from transforms.indicators import IndicatorInputs, compute_indicators
from transforms.iris_base import build_iris_base, join_census

CENSUS_COLUMNS = {
    "men_seul": "CM Part des ménages {}",
    "fam_mono": "CM Part des familles {}",
    "pop_1529": "CM Part des personnes âgées de 15 – 29 ans {}",
    "pop_65p": "CM Part des personnes âgées de 65 {}",
    "non_dipl": "CM Part des non ou peu diplômés {}",
}
PUBLISHED_AXES = {
    "score_information": "ACCES A L'INFORMATION {} 1",
    "score_interfaces": "ACCÈS AUX INTERFACES NUMERIQUES {} 1",
    "score_administratif": "COMPETENCES ADMINISTATIVES {} 1",
    "score_numerique": "COMPÉTENCES NUMÉRIQUES / SCOLAIRES {} 1",
    "score_acces": "GLOBAL ACCES {} 1",
    "score_competences": "GLOBAL COMPETENCES {} 1",
    "score_global": "SCORE GLOBAL {} 1",
}
# The published 2020 index used six indicators: the five census ones and income.
PUBLISHED_AXIS_OF = {
    "men_seul": "information",
    "fam_mono": "information",
    "revenu_median": "interfaces",
    "pop_1529": "administratif",
    "pop_65p": "numerique",
    "non_dipl": "numerique",
}


@pytest.fixture(scope="module")
def legacy_frame(sample_settings, catalogue):
    paths = sample_settings.input_paths()
    themes = {
        k: read_base_ic(paths[k], k)
        for k in ("rp_evol_struct_pop", "rp_diplomes_formation", "rp_couples_familles_menages")
    }
    census, _ = join_census(themes)
    base, _ = build_iris_base(
        read_contours_iris(paths["contours_iris"]), census, read_communes_epci(paths["communes_epci"])
    )
    inputs = IndicatorInputs(filosofi_communes=read_filosofi_communes(paths["filosofi_communes"]))
    census_ids = [i for i in catalogue.indicators if i.id in CENSUS_COLUMNS]
    result = compute_indicators(base, census_ids, inputs, legacy_2020=True)
    return base, result.table, census_ids


def test_legacy_census_scores_match_publication(legacy_frame, published):
    """`--reference epci --legacy-2020`: the five census scores equal the published `CM … EPCI`.

    (At département level MedNum's reference values differ from the sample's sums by ~0.1 %,
    e.g. 0.383233 vs 0.383824 for one-person households: its département total was not
    computed from these IRIS, so only the EPCI level is an exact reproduction.)
    """
    base, table, indicators = legacy_frame
    frame = pd.concat([base[["CODE_IRIS", "INSEE_COM", "EPCI", "DEP"]], table.drop(columns="CODE_IRIS")], axis=1)
    scores = score_mednum(frame, indicators, Reference("epci"), legacy_2020=True).scores
    merged = pd.concat([frame, scores], axis=1).merge(published, on="CODE_IRIS", suffixes=("", "_pub"))
    lyon = merged[merged["EPCI"] == LYON_EPCI]
    assert len(lyon) == 512
    for ind_id, column in CENSUS_COLUMNS.items():
        rows = lyon[lyon[f"{ind_id}_den"] > 0]
        assert len(rows) >= 506
        diff = (rows[f"{ind_id}_score"] - rows[column.format("EPCI")]).abs()
        assert diff.max() < 1e-5, (ind_id, diff.max())


def test_legacy_reference_values_are_ratios_of_sums(legacy_frame, published):
    base, table, indicators = legacy_frame
    frame = pd.concat([base[["CODE_IRIS", "INSEE_COM", "EPCI", "DEP"]], table.drop(columns="CODE_IRIS")], axis=1)
    refs = score_mednum(frame, indicators, Reference("epci"), legacy_2020=True).references
    lyon = frame["EPCI"] == LYON_EPCI
    published_seuil = published.loc[published["EPCI"] == LYON_EPCI, "SEUILS Part des ménages EPCI"].iloc[0]
    assert refs.loc[lyon, "men_seul"].iloc[0] == pytest.approx(published_seuil, abs=1e-8)


def test_legacy_zero_denominator_scores_zero(legacy_frame, published):
    base, table, indicators = legacy_frame
    frame = pd.concat([base[["CODE_IRIS", "INSEE_COM", "EPCI", "DEP"]], table.drop(columns="CODE_IRIS")], axis=1)
    scores = score_mednum(frame, indicators, Reference("epci"), legacy_2020=True).scores
    zero = frame["fam_mono_den"] == 0
    assert zero.sum() == 6
    assert (scores.loc[zero, "fam_mono_score"] == 0).all()
    # ... and the default gives no score to those IRIS instead.
    default = score_mednum(frame, indicators, Reference("epci")).scores
    assert default.loc[zero, "fam_mono_score"].isna().all()


@pytest.mark.parametrize("level,label", [("epci", "EPCI"), ("departement", "departement"), ("region", "region")])
def test_pooled_means_reproduce_published_axes(published, level, label):
    """Fed the published per-indicator scores, the pooled means give the published aggregates."""
    scores = pd.DataFrame(
        {
            **{f"{i}_score": published[c.format(label)] for i, c in CENSUS_COLUMNS.items()},
            "revenu_median_score": published[f"CM revenue median {label}"],
        }
    )
    ours = aggregate_scores(scores, PUBLISHED_AXIS_OF)
    for column, pub in PUBLISHED_AXES.items():
        pub_col = pub.format(level)
        if pub_col not in published.columns:  # the publication writes "GLOBAL COMPETENCES  departement 1"
            pub_col = pub_col.replace("COMPETENCES ", "COMPETENCES  ")
        diff = (ours[column] - published[pub_col]).abs()
        assert np.nanmax(diff.to_numpy()) < 1e-5, (column, level)

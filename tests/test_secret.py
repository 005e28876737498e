"""Secret statistique of CAF counts: primary and secondary suppression, tried as an attacker would
(red-team audit S5: commune 43/500 minus the published sibling IRIS 40/300 gave back the blanked
IRIS 3/200 exactly)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from outputs.disclosure import Nesting, apply_secret, blank, determined_cells, suppression_masks

ID = "caf_non_connectes"
NESTINGS = [
    Nesting("iris", "communes", "INSEE_COM", "INSEE_COM"),
    Nesting("communes", "epci", "EPCI", "EPCI"),
]


def _tables(iris: list[tuple[str, str, float, float]], epci_of: dict[str, str]) -> dict[str, pd.DataFrame]:
    """IRIS rows (code, commune, non connectés, allocataires); communes and EPCI are their sums,
    as the mailles are built (sums of IRIS counts)."""
    t = pd.DataFrame(iris, columns=["CODE_IRIS", "INSEE_COM", f"{ID}_num", f"{ID}_den"])
    t["EPCI"] = t["INSEE_COM"].map(epci_of)
    communes = t.groupby(["INSEE_COM", "EPCI"], as_index=False)[[f"{ID}_num", f"{ID}_den"]].sum()
    epci = t.groupby("EPCI", as_index=False)[[f"{ID}_num", f"{ID}_den"]].sum()
    return {"iris": t, "communes": communes, "epci": epci}


def _hidden(masks: dict[str, pd.Series], tables: dict[str, pd.DataFrame], name: str, key: str) -> list[str]:
    return sorted(tables[name].loc[masks[name], key])


def test_the_audit_recovery_no_longer_works():
    """Commune 69006 = 43/500 with IRIS 40/300 and 3/200: blanking the 3 alone gives it back."""
    tables = _tables([("690060101", "69006", 40, 300), ("690060102", "69006", 3, 200)], {"69006": "200046977"})
    masks = suppression_masks(tables, NESTINGS, ID, 5)
    assert _hidden(masks, tables, "iris", "CODE_IRIS") == ["690060101", "690060102"]
    assert not masks["communes"].any()  # 43/500 is published: only the sum of both IRIS is known
    layer = blank(tables["iris"], ID, masks["iris"])
    commune = tables["communes"].iloc[0]
    # the attacker's subtraction now has nothing to subtract
    assert layer[f"{ID}_num"].isna().all() and layer[f"{ID}_secret"].all()
    assert commune[f"{ID}_num"] - layer[f"{ID}_num"].sum(min_count=1) != 3
    assert determined_cells(tables, NESTINGS, masks, ID) == []


def test_the_smallest_sibling_is_blanked_and_the_others_published():
    tables = _tables(
        [("690010101", "69001", 3, 40), ("690010102", "69001", 40, 300), ("690010103", "69001", 100, 900)],
        {"69001": "E"},
    )
    masks = suppression_masks(tables, NESTINGS, ID, 5)
    assert _hidden(masks, tables, "iris", "CODE_IRIS") == ["690010101", "690010102"]
    assert tables["iris"].loc[~masks["iris"], f"{ID}_num"].tolist() == [100]


def test_two_blanked_cells_whose_sum_is_still_small_get_a_third():
    """2 + 2 = 4 < 5: the pair's total would still be a small count."""
    tables = _tables(
        [("1", "A", 2, 30), ("2", "A", 2, 30), ("3", "A", 50, 400), ("4", "A", 80, 600)],
        {"A": "E"},
    )
    masks = suppression_masks(tables, NESTINGS, ID, 5)
    assert _hidden(masks, tables, "iris", "CODE_IRIS") == ["1", "2", "3"]


def test_a_commune_blanked_to_protect_its_sibling_does_not_leak_through_its_own_iris():
    """EPCI = A + B + C; A (3) is small, B blanked next to it; if every IRIS of B stayed
    published, B would be their sum and A = EPCI − B − C. One IRIS of B is blanked too."""
    tables = _tables(
        [
            ("a1", "A", 3, 20),
            ("b1", "B", 30, 200),
            ("b2", "B", 70, 500),
            ("c1", "C", 120, 900),
            ("c2", "C", 150, 1000),
        ],
        {"A": "E", "B": "E", "C": "E"},
    )
    masks = suppression_masks(tables, NESTINGS, ID, 5)
    assert _hidden(masks, tables, "communes", "INSEE_COM") == ["A", "B"]
    hidden_iris = _hidden(masks, tables, "iris", "CODE_IRIS")
    assert "a1" in hidden_iris and {"b1", "b2"} & set(hidden_iris)
    assert determined_cells(tables, NESTINGS, masks, ID) == []


@pytest.mark.parametrize("seed", range(12))
def test_no_blanked_small_count_is_determined_by_the_published_totals(seed):
    """Random territories: after suppression, solving every published relation IRIS → commune →
    EPCI determines no blanked cell, and everything under the threshold is blanked."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(6):
        for k in range(int(rng.integers(1, 5))):
            num = int(rng.choice([0, 1, 2, 3, 4, 8, 20, 60]))
            rows.append((f"{c}{k}", f"C{c}", num, num + int(rng.integers(0, 200))))
    tables = _tables(rows, {f"C{c}": f"E{c % 2}" for c in range(6)})
    masks = suppression_masks(tables, NESTINGS, ID, 5)
    for name, table in tables.items():
        counts = table[[f"{ID}_num", f"{ID}_den"]]
        small = ((counts > 0) & (counts < 5)).any(axis=1)
        assert not (small & ~masks[name]).any(), name
    assert determined_cells(tables, NESTINGS, masks, ID) == []


@pytest.mark.parametrize("seed", range(6))
def test_epci_across_two_departements_do_not_give_a_small_commune_back(seed):
    """With EPCI and départements both published, an EPCI that straddles two départements gives
    its communes of each side by difference (département − its other EPCI): protecting each
    parent on its own is not enough, the final audit must find nothing."""
    rng = np.random.default_rng(100 + seed)
    rows = []
    for c in range(24):
        for k in range(int(rng.integers(1, 3))):
            num = int(rng.choice([0, 1, 2, 3, 9, 30, 80]))
            rows.append((f"{c:02d}{k}", f"C{c:02d}", num, num + int(rng.integers(1, 300))))
    t = pd.DataFrame(rows, columns=["CODE_IRIS", "INSEE_COM", f"{ID}_num", f"{ID}_den"])
    number = t["INSEE_COM"].str[1:].astype(int)
    t["EPCI"] = "E" + (number // 5).astype(str)  # 5 communes an EPCI …
    t["DEP"] = "D" + (number // 8).astype(str)  # … 8 a département: EPCI E1, E3 straddle
    counts = [f"{ID}_num", f"{ID}_den"]
    tables = {
        "iris": t,
        "communes": t.groupby(["INSEE_COM", "EPCI", "DEP"], as_index=False)[counts].sum(),
        "epci": t.groupby("EPCI", as_index=False)[counts].sum(),
        "departements": t.groupby("DEP", as_index=False)[counts].sum(),
    }
    nestings = [*NESTINGS, Nesting("communes", "departements", "DEP", "DEP")]
    masks = suppression_masks(tables, nestings, ID, 5)
    for name, table in tables.items():
        small = ((table[counts] > 0) & (table[counts] < 5)).any(axis=1)
        assert not (small & ~masks[name]).any(), name
        exposed = [c for c in determined_cells(tables, nestings, masks, ID) if small[c[1]] and c[0] == name]
        assert exposed == [], name


def test_no_caf_row_is_not_a_secret():
    """Audit S13: communes absent from the CAF file were all flagged secret (0 < 5)."""
    table = pd.DataFrame({f"{ID}_num": [np.nan, 0.0, 2.0], f"{ID}_den": [np.nan, 0.0, 40.0]})
    out = apply_secret(table, [ID], 5)
    assert out[f"{ID}_secret"].tolist() == [False, False, True]


# --- end to end: the sample with a CAF file, as the red-team audit tried it -------------------


@pytest.fixture(scope="module")
def caf_run(tmp_path_factory):
    """The sample with CAF counts for two communes' IRIS: 69006 (2 IRIS: 3/200 and 40/300, the
    audit's case) and 69043 (3 IRIS: 2/100, 50/400, 80/500)."""
    import os

    from pipelines.cli import main
    from tests.conftest import INSTANCE_YAML, write

    tmp = tmp_path_factory.mktemp("caf")
    (tmp / "dagster").mkdir()
    write(tmp / "dagster" / "dagster.yaml", INSTANCE_YAML)
    rows = [
        "code_geo;niveau;millesime;allocataires;non_connectes",
        "690060101;IRIS;2016;300;40",
        "690060102;IRIS;2016;200;3",
        "690430101;IRIS;2016;100;2",
        "690430102;IRIS;2016;400;50",
        "690430103;IRIS;2016;500;80",
    ]
    caf = write(tmp / "caf.csv", "\n".join(rows) + "\n")
    config = write(tmp / "c.yaml", f"inputs:\n  caf_non_connectes: {caf}\n")
    old = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(tmp / "dagster")
    try:
        assert main(["run", "--config", str(config), "--out", str(tmp / "out")]) == 0
    finally:
        if old is None:
            os.environ.pop("DAGSTER_HOME")
        else:
            os.environ["DAGSTER_HOME"] = old
    return tmp


def _layer(run, maille: str) -> pd.DataFrame:
    import geopandas as gpd

    return pd.DataFrame(gpd.read_parquet(run / "out" / "layers" / f"{maille}.parquet").drop(columns="geometry"))


def test_published_layers_give_no_blanked_count_back(caf_run):
    iris = _layer(caf_run, "iris").set_index("CODE_IRIS")
    communes = _layer(caf_run, "communes").set_index("INSEE_COM")
    num, secret = f"{ID}_num", f"{ID}_secret"
    # 69006: the attacker's subtraction (commune − published sibling) has nothing to subtract
    assert iris.loc[["690060101", "690060102"], secret].all()
    assert iris.loc[["690060101", "690060102"], num].isna().all()
    assert communes.loc["69006", num] == 43
    # 69043: the two smallest blanked, the sum they leave (52) is not a small count
    assert iris.loc[["690430101", "690430102"], secret].all() and not iris.loc["690430103", secret]
    assert communes.loc["69043", num] - iris.loc["690430103", num] == 52
    # no unit anywhere publishes a CAF count between 1 and 4
    for maille in ("iris", "communes", "epci", "departements"):
        counts = _layer(caf_run, maille)[[num, f"{ID}_den"]]
        assert not ((counts > 0) & (counts < 5)).any().any(), maille
    # IRIS without CAF data: neither secret nor zero
    others = iris.drop(index=["690060101", "690060102", "690430101", "690430102", "690430103"])
    assert not others[secret].any() and others[num].isna().all()


def test_axis_and_global_scores_of_blanked_units_do_not_contain_the_caf_score(caf_run):
    """Audit S6: 3 × score_information − men_seul − fam_mono gave back the blanked score."""
    iris = _layer(caf_run, "iris").set_index("CODE_IRIS")
    for code in ("690060102", "690430101"):
        row = iris.loc[code]
        assert np.isnan(row[f"{ID}_score"])
        assert row["score_information"] == pytest.approx((row["men_seul_score"] + row["fam_mono_score"]) / 2)
    published = iris.loc["690430103"]  # its CAF score is published, and counted
    assert not np.isnan(published[f"{ID}_score"])
    expected = (published["men_seul_score"] + published["fam_mono_score"] + published[f"{ID}_score"]) / 3
    assert published["score_information"] == pytest.approx(expected)


def test_pack_keeps_the_flags_and_no_caf_value_in_dagster_metadata(caf_run):
    import dagster as dg

    pack = pd.read_csv(caf_run / "out" / "geoclip" / "iris.csv", sep=";", dtype={"CODE_IRIS": str})
    flagged = pack.loc[pack[f"{ID}_secret"].astype(str).str.lower().isin(["true", "vrai"]), "CODE_IRIS"]
    assert set(flagged) == {"690060101", "690060102", "690430101", "690430102"}
    instance = dg.DagsterInstance.from_config(str(caf_run / "dagster"))
    headers = []  # the column names of every markdown preview (the dictionary's rows name columns: fine)
    for run in instance.get_runs():
        for record in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
            metadata = record.dagster_event.step_materialization_data.materialization.metadata
            headers += [str(v.value).splitlines()[0] for v in metadata.values() if str(v.value).startswith("|")]
    # Reference rates (`unite | iris | …`) are rates of whole reference units, not unit rows.
    rows = [h for h in headers if not h.replace(" ", "").startswith("|unite|")]
    assert rows and not any(ID in h for h in rows), [h for h in rows if ID in h]

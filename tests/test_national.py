"""Département partitions, their national merge, and territories mapped onto partitions."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from config import ConfigError
from indice.priorite import CLASS_COLUMNS
from pipelines.cli import main
from pipelines.defs.national import DEPARTEMENTS
from transforms.territory import Territory, partition_keys


def test_partitions_cover_every_departement():
    keys = DEPARTEMENTS.get_partition_keys()
    assert len(keys) == 101 and {"2A", "2B", "971", "972", "973", "974", "976"} <= set(keys)


def test_territories_map_onto_partition_keys():
    epci = pd.DataFrame({"INSEE_COM": ["01001", "69001", "2A004"], "EPCI": ["200000001", "200000001", "200000002"]})
    keys = DEPARTEMENTS.get_partition_keys()
    assert partition_keys(Territory("x", ["200000001"]), epci, keys) == ["01", "69"]  # straddles two départements
    assert partition_keys(Territory("x", ["2A004", "97411", "57"]), epci, keys) == ["2A", "57", "974"]
    assert len(partition_keys(Territory("France"), epci, keys)) == 101
    with pytest.raises(ConfigError, match="not in the commune"):
        partition_keys(Territory("x", ["999999999"]), epci, keys)


def test_by_departement_run_matches_the_territory_run(materialized, tmp_path, dagster_home):
    out = tmp_path / "out"
    assert main(["run", "--territory", "rhone", "--by-departement", "--out", str(out)]) == 0
    national = pq.read_table(out / "layers" / "france_iris.parquet").drop_columns(["geometry", "bbox"]).to_pandas()
    partition = out / "partitions" / "departement=69" / "iris.parquet"
    assert partition.exists()
    _, layers = materialized
    territory = pq.read_table(layers / "iris.parquet").drop_columns(["geometry", "bbox"]).to_pandas()
    assert national["CODE_IRIS"].tolist() == territory["CODE_IRIS"].tolist()
    for column in ("score_global", "men_seul_score", "ifn2023_score", "est_illectronisme_1529"):
        np.testing.assert_allclose(national[column], territory[column], equal_nan=True)
    # the offer of mediation too: the sample's places, each IRIS at its point on surface
    offer = [c for c in territory.columns if c.startswith("offre_")]
    assert len(offer) > 5 and list(national.columns[-len(offer) - 3 :]) == [*offer, *CLASS_COLUMNS]
    for column in offer:
        np.testing.assert_allclose(national[column], territory[column], rtol=1e-12, equal_nan=True, err_msg=column)
    for column in CLASS_COLUMNS:
        assert (
            national[column].astype("object").fillna("").tolist()
            == territory[column].astype("object").fillna("").tolist()
        ), column
    with dg.DagsterInstance.get() as instance:
        assert instance.get_latest_materialization_event(dg.AssetKey("france_iris")) is not None


def test_partition_without_inputs_fails_clearly(tmp_path, dagster_home, capsys):
    # Ain is outside the embedded sample: the catalogue's files are needed, and offline with an
    # empty cache the run says which, at once
    assert (
        main(
            [
                "run",
                "--territory",
                "01",
                "--by-departement",
                "--offline",
                "--cache-dir",
                str(tmp_path / "c"),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "hors des fichiers configurés" in err and "absent(s) du cache" in err and "Traceback" not in err

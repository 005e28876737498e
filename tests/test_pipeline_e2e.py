"""End to end: materialize every asset on the sample, read the layers back independently."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import geopandas as gpd
import pandas as pd
import pyarrow.parquet as pq
import pyogrio
import pytest

from config.settings import load_publication
from outputs.layers import IDENTITY_COLUMNS
from pipelines.cli import main
from tests.conftest import LYON_EPCI, ROOT, write

CENSUS = {
    "men_seul": "CM Part des ménages EPCI",
    "fam_mono": "CM Part des familles EPCI",
    "pop_1529": "CM Part des personnes âgées de 15 – 29 ans EPCI",
    "pop_65p": "CM Part des personnes âgées de 65 EPCI",
    "non_dipl": "CM Part des non ou peu diplômés EPCI",
}


def test_run_succeeds_with_all_checks(materialized):
    result, _ = materialized
    assert result.success
    checks = result.get_asset_check_evaluations()
    assert len(checks) == 29
    # Every check passes but one warning, by design on the sample: its IRIS are scored on 7, 8 or
    # 9 indicators (Filosofi's poverty and minima exist for 318 IRIS only).
    failed = {(c.check_name, c.severity.value) for c in checks if not c.passed}
    assert failed == {("scores_sur_memes_indicateurs", "WARN")}
    materialized_keys = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert {
        "iris_base",
        "iris_indicateurs",
        "iris_scores",
        "mailles",
        "mailles_scores",
        "couche_iris",
        "couche_communes",
        "couche_epci",
        "couche_departements",
    } <= materialized_keys


def test_geoparquet(materialized):
    _, layers = materialized
    table = pq.read_table(layers / "iris.parquet")
    geo = json.loads(table.schema.metadata[b"geo"])
    assert geo["version"] == "1.1.0"
    column = geo["columns"]["geometry"]
    assert column["covering"]["bbox"]["xmin"] == ["bbox", "xmin"]
    assert column["crs"]["id"] == {"authority": "EPSG", "code": 2154}
    assert table.num_rows == 751
    names = table.schema.names
    assert names[: len(IDENTITY_COLUMNS["iris"])] == list(IDENTITY_COLUMNS["iris"])
    assert (
        names.index("men_seul_num")
        < names.index("men_seul_den")
        < names.index("men_seul_taux")
        < names.index("men_seul_score")
    )
    assert names.index("score_global") < names.index("methode") < names.index("millesime_rp")
    codes = table.column("CODE_IRIS").to_pylist()
    assert all(isinstance(c, str) and len(c) == 9 for c in codes)
    info = json.loads(table.schema.metadata[b"fragilite"])
    assert info["methode"] == "mednum_2019" and info["reference"] == "departement" and info["millesime_rp"] == 2016
    df = table.drop_columns(["geometry", "bbox"]).to_pandas()
    assert df["score_global"].notna().sum() == 746  # 5 IRIS without residents have no score
    assert df.loc[df["non_residentiel"], "score_global"].isna().all()


def test_geopackage_and_geojson(materialized):
    _, layers = materialized
    gpkg = pyogrio.read_dataframe(layers / "iris.gpkg")
    assert len(gpkg) == 751 and gpkg.crs.to_epsg() == 2154
    assert gpkg["CODE_IRIS"].str.len().eq(9).all()
    assert not (layers / "iris.geojson").exists()  # GeoJSON is the web format: simplified, under web/
    raw = json.loads((layers.parent / "web" / "iris_10m.geojson").read_text(encoding="utf-8"))
    assert "crs" not in raw
    assert len(raw["features"]) == 751
    parquet = gpd.read_parquet(layers / "iris.parquet")
    assert [f["properties"]["CODE_IRIS"] for f in raw["features"]] == parquet["CODE_IRIS"].tolist()
    shown = load_publication().web_selection([c for c in parquet.columns if c not in ("geometry", "bbox")])
    assert list(raw["features"][0]["properties"]) == shown
    assert "score_global" in shown and "CODE_IRIS" in shown and "men_seul_num" not in shown
    web_scores = pd.Series([f["properties"]["score_global"] for f in raw["features"]], dtype="float64")
    assert ((web_scores - parquet["score_global"]).abs().max()) <= 0.5e-4  # rounded to 4 decimals
    assert web_scores.round(4).equals(web_scores)
    assert all(
        isinstance(f["properties"]["CODE_IRIS"], str) and len(f["properties"]["CODE_IRIS"]) == 9
        for f in raw["features"]
    )
    lons, lats = [], []
    for feature in raw["features"]:
        ring = feature["geometry"]["coordinates"][0][0]
        lons += [p[0] for p in ring]
        lats += [p[1] for p in ring]
    assert 4.2 < min(lons) and max(lons) < 5.2  # the Rhône, in longitude/latitude
    assert 45.4 < min(lats) and max(lats) < 46.4
    decimals = max(len(str(v).split(".")[1]) for v in lons[:500] if "." in str(v))
    assert decimals <= 6


def test_cli_legacy_epci_reproduces_publication(tmp_path, dagster_home, published, capsys):
    out = tmp_path / "legacy"
    assert main(["run", "--reference", "epci", "--legacy-2020", "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "IRIS notés" in printed.out and "layers/" in printed.out and "rapport.html" in printed.out
    layer = pq.read_table(out / "layers" / "iris.parquet").drop_columns(["geometry", "bbox"]).to_pandas()
    assert (layer["methode"] == "mednum_2019_legacy_2020").all() and (layer["reference"] == "epci").all()
    merged = layer.merge(published, on="CODE_IRIS", suffixes=("", "_pub"))
    lyon = merged[merged["EPCI"] == LYON_EPCI]
    for ind_id, column in CENSUS.items():
        rows = lyon[lyon[f"{ind_id}_den"] > 0]
        assert len(rows) >= 506
        assert (rows[f"{ind_id}_score"] - rows[column]).abs().max() < 1e-5
    # the run is recorded in the instance the UI reads
    with dg.DagsterInstance.get() as instance:
        assert instance.get_latest_materialization_event(dg.AssetKey("couche_iris")) is not None


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_bad_input_fails_cleanly_and_keeps_previous_outputs(tmp_path, dagster_home, capsys):
    out = tmp_path / "out"
    assert main(["run", "--out", str(out)]) == 0
    before = _digest(out / "layers")
    broken = write(
        tmp_path / "pop.csv", "IRIS;COM;TYP_IRIS;P16_POP;P16_POP1529;P16_POP65P\n690010000;69001;Z;douze;1;1\n"
    )
    config = write(tmp_path / "user.yaml", f"inputs:\n  rp_evol_struct_pop: {broken.name}\n")
    capsys.readouterr()
    assert main(["run", "--config", str(config), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert str(broken) in err and "ligne 2" in err and "P16_POP" in err and "correction :" in err
    assert _digest(out / "layers") == before  # byte for byte, no temporary left behind


def test_bad_configuration_is_reported(tmp_path, capsys):
    config = write(tmp_path / "c.yaml", "run:\n  reference: canton\n")
    assert main(["run", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "run.reference" in err and str(config) in err and "Traceback" not in err


def test_region_without_values_for_vintage_fails_with_fix(tmp_path, dagster_home, capsys):
    config = write(tmp_path / "c.yaml", "reference_values: []\n")
    assert main(["run", "--config", str(config), "--reference", "region", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "aucune valeur de référence pour le RP 2016" in err


def test_config_command_prints_effective_paths(capsys):
    assert main(["config"]) == 0
    text = capsys.readouterr().out
    assert str(ROOT / "data" / "sample-69" / "insee" / "base-ic-evol-struct-pop-2016_dep69.csv") in text
    assert "reference: departement" in text


def test_dg_check_defs():
    env = {**os.environ, "DAGSTER_HOME": str(ROOT)}
    done = subprocess.run(
        [str(Path(sys.executable).with_name("dg")), "check", "defs"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_dictionary_covers_every_column(materialized):
    _, layers = materialized
    dictionary = pd.read_csv(layers / "dictionnaire.csv", sep=";", dtype=str, keep_default_na=False)
    columns = [c for c in pq.read_schema(layers / "iris.parquet").names if c not in ("geometry", "bbox")]
    # The IRIS layer's columns first, in its order; then those of the other tables (mailles, pack).
    assert dictionary["code"].tolist()[: len(columns)] == columns
    assert dictionary["code"].is_unique
    assert (dictionary["libelle"] != "").all()
    est = dictionary[dictionary["code"].str.startswith("est_")]
    assert len(est) > 0 and est["note"].str.contains("ne jamais additionner").all()
    score = dictionary.set_index("code").loc["men_seul_score"]
    assert score["methode"] == "mednum_2019" and score["reference"] == "departement"
    assert dictionary.set_index("code").loc["non_thd_taux", "maille_source"] == "commune"
    assert dictionary.set_index("code").loc["pauvrete_taux", "millesime"] == "2017"


def test_a_renamed_census_column_is_refused_not_dropped(tmp_path, dagster_home, capsys):
    """`P16_POP65P` renamed by a publisher: the run stops and names it, instead of publishing
    layers without `pop_65p` and exit 0."""
    source = (ROOT / "data" / "sample-69" / "insee" / "base-ic-evol-struct-pop-2016_dep69.csv").read_text(
        encoding="utf-8"
    )
    renamed = write(tmp_path / "pop.csv", source.replace("P16_POP65P", "P16_POP65_PLUS", 1))
    config = write(tmp_path / "user.yaml", f"inputs:\n  rp_evol_struct_pop: {renamed.name}\n")
    assert main(["run", "--config", str(config), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "P16_POP65P" in err and str(renamed) in err and "Traceback" not in err


def test_command_line_help_and_usage_errors_are_in_french(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "utilisation : fragilite" in text and "calculer l'indice" in text and "usage:" not in text
    with pytest.raises(SystemExit):
        main(["run", "--reference", "canton"])
    err = capsys.readouterr().err
    assert "erreur : argument --reference: choix invalide : 'canton'" in err


def test_validate_reads_census_files_as_the_run_does(tmp_path, capsys):
    """One reading path for `run` and `validate`: the renamed column is refused by both."""
    source = (ROOT / "data" / "sample-69" / "insee" / "base-ic-evol-struct-pop-2016_dep69.csv").read_text(
        encoding="utf-8"
    )
    renamed = write(tmp_path / "pop.csv", source.replace("P16_POP65P", "P16_POP65_PLUS", 1))
    config = write(tmp_path / "user.yaml", f"inputs:\n  rp_evol_struct_pop: {renamed.name}\n")
    assert main(["validate", "--config", str(config)]) == 2
    assert "P16_POP65P" in capsys.readouterr().out

"""Shared fixtures: the embedded sample (never ../shared) and small hand-made tables."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from config import load_catalogue, load_settings
from config.settings import Indicator

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample-69"
LYON_EPCI = "200046977"
# A test's Dagster instance, configured like the embedded one (dagster.yaml): no telemetry, no
# capture of step stdout/stderr by watcher processes.
INSTANCE_YAML = (
    "telemetry:\n  enabled: false\ncompute_logs:\n  module: dagster._core.storage.noop_compute_log_manager\n"
    "  class: NoOpComputeLogManager\n"
)


def embedded_instance_yaml(home: Path) -> str:
    """The project's own `dagster.yaml` (storages, pooled event log, no log capture), its
    folders moved under `home`."""
    return (ROOT / "dagster.yaml").read_text(encoding="utf-8").replace("build/dagster", str(home))


@pytest.fixture(scope="session")
def catalogue():
    return load_catalogue()


@pytest.fixture(scope="session")
def sample_settings():
    return load_settings()


@pytest.fixture(scope="session")
def published() -> pd.DataFrame:
    """MedNum's published 2020 scores for the 751 IRIS of the sample."""
    return pd.read_csv(
        SAMPLE / "reference" / "mednum-2020-scores_dep69.csv",
        sep=";",
        dtype={"CODE_IRIS": str, "COM": str, "EPCI": str},
    )


def census_indicator(id_: str, axis: str, higher: bool = False) -> Indicator:
    """A census-ratio indicator `P_A / P_B` of the given axis, for scoring tests on hand-made frames."""
    return Indicator(
        id=id_,
        label=id_,
        axis=axis,
        computation="census_ratio",
        source="rp_evol_struct_pop",
        numerator="P_A",
        denominator="P_B",
        higher_is_better=higher,
        unit="part",
    )


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def materialize_sample(out: Path, selection=None, with_checks: bool = True, **options):
    """One in-process run of the sample's assets (and checks), as the CLI and the UI run them
    (steps on threads, pipelines/executor.py), into `out`, on an ephemeral instance. `options`
    are FragiliteConfig fields (config_file, territory, reference…); `selection` defaults to the
    territory run. Every value is kept for `result.output_for_node`."""
    import dagster as dg

    from pipelines.definitions import TERRITORY_SELECTION, build_definitions, run_resources
    from pipelines.executor import materialize
    from pipelines.resources import FragiliteConfig

    resource = FragiliteConfig(out_dir=str(out), **options)
    defs = build_definitions(resource)
    return materialize(
        [*defs.assets, *(defs.asset_checks if with_checks else [])],
        instance=dg.DagsterInstance.ephemeral(),
        resources=run_resources(resource),
        selection=TERRITORY_SELECTION if selection is None else selection,
        capture_outputs=True,
    )


@pytest.fixture(scope="session")
def materialized(tmp_path_factory):
    """Every asset and check of the sample, materialized once into a temporary folder."""
    out = tmp_path_factory.mktemp("out")
    return materialize_sample(out), out / "layers"


@pytest.fixture
def dagster_home(tmp_path, monkeypatch):
    """A temporary Dagster instance for runs started by the command line."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    write(home / "dagster.yaml", INSTANCE_YAML)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home

"""The production configuration loads: instance schema (Postgres, queue, S3 logs) and code location
(Celery executor, S3 IO manager, département partitions)."""

from __future__ import annotations

import dagster as dg
import pytest
from dagster._core.instance.config import dagster_instance_config

from tests.conftest import ROOT

ENV = {
    "DAGSTER_PG_USERNAME": "u",
    "DAGSTER_PG_PASSWORD": "p",
    "DAGSTER_PG_HOST": "127.0.0.1",
    "DAGSTER_PG_DB": "d",
    "CELERY_BROKER_URL": "pyamqp://guest@127.0.0.1//",
    "FRAGILITE_S3_BUCKET": "bucket",
    "FRAGILITE_OUT_DIR": "/srv/fragilite",
}


@pytest.fixture
def env(monkeypatch):
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)


def test_production_instance_configuration_is_valid(env):
    config, custom_class = dagster_instance_config(str(ROOT / "deploy"), "dagster.yaml")
    assert "postgres" in config["storage"]
    assert config["run_coordinator"]["config"]["max_concurrent_runs"] == 8
    assert config["compute_logs"]["class"] == "S3ComputeLogManager"
    assert config["telemetry"]["enabled"] is False


def test_local_instance_configuration_is_valid():
    config, _ = dagster_instance_config(str(ROOT), "dagster.yaml")
    assert config["storage"]["sqlite"]["base_dir"] == "build/dagster/storage"
    assert config["telemetry"]["enabled"] is False


def test_production_definitions_load(env):
    from deploy.definitions import production_definitions

    defs = production_definitions()
    dg.Definitions.validate_loadable(defs)
    job = defs.resolve_implicit_global_asset_job_def()
    assert "celery" in job.executor_def.name
    assert type(defs.resources["io_manager"]).__name__ == "S3PickleIOManager"
    graph = defs.resolve_asset_graph()
    assert graph.get(dg.AssetKey("iris_departement")).partitions_def.get_partition_keys()[-1] == "976"

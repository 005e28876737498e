"""The production configuration loads: instance schema (Postgres, run queue and concurrency limits,
run monitoring, logs on the shared folder) and code location (multiprocess or Celery executor,
Parquet values on the shared folder, département partitions). tests/test_scale_out.py runs it."""

from __future__ import annotations

import dagster as dg
import pytest
from dagster._core.instance.config import dagster_instance_config

from tests.conftest import ROOT

ENV = {
    "DAGSTER_PG_USERNAME": "u",
    "DAGSTER_PG_PASSWORD": "p",
    "DAGSTER_PG_HOST": "127.0.0.1",
    "DAGSTER_PG_PORT": "5432",
    "DAGSTER_PG_DB": "d",
    "FRAGILITE_WORK_DIR": "/srv/fragilite/travail",
    "FRAGILITE_LOG_DIR": "/srv/fragilite/journaux",
    "FRAGILITE_OUT_DIR": "/srv/fragilite/sorties",
    "CELERY_BROKER_URL": "pyamqp://guest@127.0.0.1//",
    "CELERY_RESULT_BACKEND": "rpc://",
}


@pytest.fixture
def env(monkeypatch):
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("FRAGILITE_EXECUTOR", raising=False)
    monkeypatch.delenv("FRAGILITE_CONFIG", raising=False)


def test_production_instance_configuration_is_valid(env):
    config, _ = dagster_instance_config(str(ROOT / "deploy"), "dagster.yaml")
    assert config["storage"]["postgres"]["postgres_db"]["scheme"] == "postgresql+psycopg2"
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert config["concurrency"]["runs"]["max_concurrent_runs"] == 8
    assert config["run_monitoring"]["enabled"] is True
    assert config["run_monitoring"]["max_resume_run_attempts"] == 0  # the default launcher cannot resume
    assert config["compute_logs"]["class"] == "LocalComputeLogManager"
    assert config["telemetry"]["enabled"] is False


def _resolved(data) -> dict:
    """A configured class's config from dagster.yaml, with its `{env: …}` values read."""
    import yaml
    from dagster._config import process_config

    klass = getattr(__import__(data.module_name, fromlist=[data.class_name]), data.class_name)
    processed = process_config(klass.config_type(), yaml.safe_load(data.config_yaml))
    assert processed.success, processed.errors
    return processed.value


def test_production_instance_reads_its_settings_from_the_environment(env):
    """The connection and every folder come from the environment (no server needed here)."""
    from dagster._core.instance.ref import InstanceRef
    from dagster_postgres.utils import pg_url_from_config

    ref = InstanceRef.from_dir(str(ROOT / "deploy"))
    assert pg_url_from_config(_resolved(ref.storage_data)) == "postgresql+psycopg2://u:p@127.0.0.1:5432/d"
    assert _resolved(ref.compute_logs_data)["base_dir"] == ENV["FRAGILITE_LOG_DIR"]
    assert _resolved(ref.local_artifact_storage_data)["base_dir"] == ENV["FRAGILITE_WORK_DIR"]


def test_local_instance_configuration_is_valid():
    config, _ = dagster_instance_config(str(ROOT), "dagster.yaml")
    # Laid out as Dagster's `storage: sqlite` with base_dir build/dagster/storage lays them out.
    assert config["run_storage"]["config"]["base_dir"] == "build/dagster/storage/history"
    assert config["event_log_storage"]["config"]["base_dir"] == "build/dagster/storage/history/runs"
    assert config["schedule_storage"]["config"]["base_dir"] == "build/dagster/storage/schedules"
    assert config["telemetry"]["enabled"] is False


def test_production_definitions_load(env):
    from deploy.definitions import production_definitions

    defs = production_definitions()
    dg.Definitions.validate_loadable(defs)
    job = defs.resolve_implicit_global_asset_job_def()
    assert job.executor_def.name == "multiprocess"
    io_manager = defs.resources["io_manager"]
    assert type(io_manager).__name__ == "ParquetIOManager"
    assert io_manager.base_dir.env_var_name == "FRAGILITE_WORK_DIR"
    graph = defs.resolve_asset_graph()
    assert graph.get(dg.AssetKey("iris_departement")).partitions_def.get_partition_keys()[-1] == "976"


def test_celery_executor_is_chosen_from_the_environment(env, monkeypatch):
    from deploy.definitions import production_definitions

    monkeypatch.setenv("FRAGILITE_EXECUTOR", "celery")
    job = production_definitions().resolve_implicit_global_asset_job_def()
    assert "celery" in job.executor_def.name
    monkeypatch.setenv("FRAGILITE_EXECUTOR", "k8s")
    with pytest.raises(ValueError, match="valeurs possibles multiprocess, celery"):
        production_definitions()

"""The embedded instance's event log (pipelines/event_log.py): Dagster's SQLite files, one open
connection per database, and the UI still follows a run's events as they are stored."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import dagster as dg
import yaml
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

from pipelines.event_log import OPEN_DATABASES, PooledSqliteEventLogStorage
from tests.conftest import ROOT, embedded_instance_yaml


def _message(run_id: str, text: str) -> EventLogEntry:
    return EventLogEntry(
        error_info=None,
        level=20,
        user_message=text,
        run_id=run_id,
        timestamp=time.time(),
        step_key=None,
        job_name="essai",
        dagster_event=None,
    )


def test_embedded_instance_declares_the_pooled_event_log():
    """`dagster.yaml` declares it, where Dagster's `storage: sqlite` puts each database."""
    config = yaml.safe_load((ROOT / "dagster.yaml").read_text(encoding="utf-8"))
    assert config["event_log_storage"]["class"] == "PooledSqliteEventLogStorage"
    assert config["event_log_storage"]["config"]["base_dir"] == "build/dagster/storage/history/runs"
    assert config["run_storage"]["config"]["base_dir"] == "build/dagster/storage/history"
    assert "PooledSqliteEventLogStorage" in embedded_instance_yaml(Path("/x"))


def test_a_run_stored_by_the_pool_reads_back_with_dagsters_own_storage(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(embedded_instance_yaml(home), encoding="utf-8")
    monkeypatch.setenv("DAGSTER_HOME", str(home))

    @dg.asset
    def un() -> int:
        return 1

    @dg.asset
    def deux(un: int) -> int:
        return un + 1

    with dg.DagsterInstance.get() as instance:
        assert type(instance.event_log_storage).__name__ == "PooledSqliteEventLogStorage"
        result = dg.materialize([un, deux], instance=instance)
        assert result.success
        stored = [e.dagster_event_type for e in instance.all_logs(result.run_id) if e.is_dagster_event]
        assert instance.get_latest_materialization_event(dg.AssetKey("deux")).run_id == result.run_id
    plain = SqliteEventLogStorage(str(home / "storage" / "history" / "runs"))  # Dagster's own class
    again = [e.dagster_event_type for e in plain.get_logs_for_run(result.run_id) if e.is_dagster_event]
    assert again == stored and len(stored) > 10
    assert plain.get_latest_materialization_events([dg.AssetKey("un")])[dg.AssetKey("un")].run_id == result.run_id


def test_a_watcher_sees_each_event_while_the_connection_stays_open(tmp_path):
    """The UI (another process, its own storage object) is told of every event as it is stored,
    though the writer never closes its connection (writes stay in the WAL file)."""
    folder = str(tmp_path / "runs")
    writer = PooledSqliteEventLogStorage(folder)
    reader = PooledSqliteEventLogStorage(folder)
    run_id = "0" * 8 + "-0000-0000-0000-" + "1" * 12
    writer.store_event(_message(run_id, "début"))  # creates the run's database
    seen: list[str] = []
    arrived = threading.Event()

    def heard(entry: EventLogEntry, _cursor: str) -> None:
        seen.append(entry.user_message)
        if len(seen) >= 4:
            arrived.set()

    reader.watch(run_id, None, heard)
    try:
        time.sleep(0.3)  # the watch is in place
        for i in range(3):
            writer.store_event(_message(run_id, f"événement {i}"))
            time.sleep(0.05)
        assert arrived.wait(10), f"le suivi n'a vu que {seen}"
    finally:
        reader.end_watch(run_id, heard)
        reader.dispose()
        writer.dispose()
    assert seen == ["début", "événement 0", "événement 1", "événement 2"]


def test_open_databases_are_bounded(tmp_path):
    """A long-lived process (the UI, the daemon) does not keep every run's file open."""
    storage = PooledSqliteEventLogStorage(str(tmp_path / "runs"))
    try:
        for i in range(10):
            storage.store_event(_message(f"{i:08d}-0000-0000-0000-000000000000", "x"))
        assert len(storage._engines) <= OPEN_DATABASES
        assert len(storage.get_all_run_ids()) == 10
        assert all(len(storage.get_logs_for_run(r)) == 1 for r in storage.get_all_run_ids())
    finally:
        storage.dispose()
    assert not storage._engines


def test_wipe_closes_the_files_first(tmp_path):
    storage = PooledSqliteEventLogStorage(str(tmp_path / "runs"))
    storage.store_event(_message("a" * 8 + "-0000-0000-0000-000000000000", "x"))
    storage.wipe()
    assert storage.get_all_run_ids() == []
    assert not list(Path(tmp_path / "runs").glob("a*.db*"))
    storage.dispose()

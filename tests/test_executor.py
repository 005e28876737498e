"""The run's steps on threads (pipelines/executor.py): steps in parallel as Dagster records them,
failures, retries and interruption as the in-process executor handles them, and the values of the
IO manager released once read by their last step (pipelines/storage.py)."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from pipelines.executor import materialize
from pipelines.storage import ParquetIOManager

ROOT = Path(__file__).resolve().parent.parent


def _steps(instance: dg.DagsterInstance, run_id: str) -> dict[str, dict[str, float]]:
    """Per step, the time of each of its events (STEP_START, STEP_SUCCESS…)."""
    times: dict[str, dict[str, float]] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is not None and event.step_key:
            times.setdefault(event.step_key, {}).setdefault(event.event_type_value, entry.timestamp)
    return times


def _waiting_for_each_other(timeout: float) -> list[dg.AssetsDefinition]:
    """Two assets, each waiting for the other to start: run one after the other, the barrier
    breaks after `timeout` seconds."""
    barrier = threading.Barrier(2, timeout=timeout)

    @dg.asset
    def gauche() -> int:
        barrier.wait()
        return 1

    @dg.asset
    def droite() -> int:
        barrier.wait()
        return 2

    return [gauche, droite]


def test_independent_steps_run_at_once_and_dependents_after():
    @dg.asset
    def somme(gauche: int, droite: int) -> int:
        return gauche + droite

    with dg.DagsterInstance.ephemeral() as instance:
        result = materialize(
            [*_waiting_for_each_other(20), somme], selection="*", resources={}, instance=instance, capture_outputs=True
        )
        assert result.success and result.output_for_node("somme") == 3
        steps = _steps(instance, result.run_id)
    assert steps["gauche"]["STEP_START"] < steps["droite"]["STEP_SUCCESS"]
    assert steps["droite"]["STEP_START"] < steps["gauche"]["STEP_SUCCESS"]
    assert steps["somme"]["STEP_START"] >= max(steps[s]["STEP_SUCCESS"] for s in ("gauche", "droite"))


def test_dagster_materialize_runs_them_one_after_the_other():
    """The reason for the executor: the same two steps deadlock under Dagster's own
    `materialize` (in-process executor, one step at a time)."""
    assert not dg.materialize(_waiting_for_each_other(1), raise_on_error=False).success


def test_objects_alive_before_the_run_left_out_of_its_full_collections():
    """During a run, what was alive before it is frozen out of the cyclic collector and full
    collections are rarer; a failed run hands both back too."""
    seen = {}
    before = gc.get_threshold()

    @dg.asset
    def observe() -> int:
        seen["frozen"], seen["threshold"] = gc.get_freeze_count(), gc.get_threshold()
        return 1

    @dg.asset
    def fails() -> int:
        raise RuntimeError("échec voulu")

    with dg.DagsterInstance.ephemeral() as instance:
        assert materialize([observe], selection="*", resources={}, instance=instance).success
        assert seen["frozen"] > 10_000  # modules, definitions, instance
        assert seen["threshold"] == (before[0], before[1], before[2] * 4)
        assert gc.get_freeze_count() == 0 and gc.get_threshold() == before
        with pytest.raises(RuntimeError, match="échec voulu"):
            materialize([fails], selection="*", resources={}, instance=instance)
        assert gc.get_freeze_count() == 0 and gc.get_threshold() == before
        # a caller's own freeze (the `fragilite` command freezes its start-up) is left as it is
        gc.freeze()
        try:
            frozen = gc.get_freeze_count()
            assert materialize([observe], selection="*", resources={}, instance=instance).success
            # nothing more frozen by the run, nothing handed back after it (objects freed by their
            # reference count leave the frozen set: the count may only go down)
            assert seen["frozen"] <= frozen and 0.99 * frozen < gc.get_freeze_count() <= frozen
        finally:
            gc.unfreeze()


def test_failure_recorded_dependents_skipped_and_raised():
    started = threading.Event()

    @dg.asset
    def casse() -> int:
        started.wait(10)
        raise ValueError("valeur impossible dans casse")

    @dg.asset
    def aval(casse: int) -> int:
        return casse

    @dg.asset
    def voisin() -> int:
        started.set()
        return 1

    assets = [casse, aval, voisin]
    with dg.DagsterInstance.ephemeral() as instance:
        result = materialize(assets, selection="*", resources={}, instance=instance, raise_on_error=False)
        steps = _steps(instance, result.run_id)
    assert not result.success
    assert "STEP_FAILURE" in steps["casse"] and "STEP_SUCCESS" in steps["voisin"]
    assert "STEP_START" not in steps.get("aval", {})
    with pytest.raises(ValueError, match="valeur impossible"):
        materialize(assets, selection="*", resources={}, instance=dg.DagsterInstance.ephemeral())


def test_a_step_retried_on_its_thread():
    attempts = []

    @dg.asset
    def fragile(context) -> int:
        attempts.append(context.retry_number)
        if context.retry_number == 0:
            raise dg.RetryRequested(max_retries=1)
        return 7

    @dg.asset
    def suite(fragile: int) -> int:
        return fragile + 1

    result = materialize(
        [fragile, suite], selection="*", resources={}, instance=dg.DagsterInstance.ephemeral(), capture_outputs=True
    )
    assert result.success and attempts == [0, 1] and result.output_for_node("suite") == 8


def test_values_released_after_their_last_reader(tmp_path):
    """The IO manager keeps a value in memory until the last step of the run that reads it has
    read it, then lets it go (it stays on disk)."""
    held: list[weakref.ref] = []
    seen: dict[str, bool] = {}

    @dg.asset
    def table() -> pd.DataFrame:
        frame = pd.DataFrame({"x": [1, 2, 3]})
        held.append(weakref.ref(frame))
        return frame

    @dg.asset
    def lecteur(table: pd.DataFrame) -> int:
        seen["meme_objet"] = held[0]() is table  # from memory, not read back from disk
        return int(table["x"].sum())

    @dg.asset(deps=[lecteur])
    def apres() -> bool:
        gc.collect()
        seen["libere"] = held[0]() is None
        return True

    result = materialize(
        [table, lecteur, apres],
        selection="*",
        resources={"io_manager": ParquetIOManager(base_dir=str(tmp_path))},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success and seen == {"meme_objet": True, "libere": True}
    assert (tmp_path / "valeurs" / "table" / "table.parquet").exists()


INTERRUPTED_RUN = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import dagster as dg
    from pipelines.executor import materialize

    marks = Path(sys.argv[1])

    def busy(name):
        (marks / name).touch()
        while True:  # Python code: an interruption is raised at its next instruction
            time.sleep(0.01)

    @dg.asset
    def long_a() -> int:
        busy("long_a")

    @dg.asset
    def long_b() -> int:
        busy("long_b")

    @dg.asset
    def ensuite(long_a: int, long_b: int) -> int:
        (marks / "ensuite").touch()
        return 0

    try:
        materialize([long_a, long_b, ensuite], selection="*", resources={}, instance=dg.DagsterInstance.ephemeral())
    except BaseException as exc:
        print(type(exc).__name__)
        sys.exit(130)
    """
)


def test_interruption_stops_the_running_steps_and_starts_no_other(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(INTERRUPTED_RUN, encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not ((tmp_path / "long_a").exists() and (tmp_path / "long_b").exists()):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)  # both busy steps stopped: the run ends
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err.decode()
    assert b"DagsterExecutionInterruptedError" in out
    assert not (tmp_path / "ensuite").exists()

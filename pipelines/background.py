"""Work one step starts for later steps of the same run, on the core the steps leave idle.

The in-process executor runs one step at a time, on one core. Geometry work that needs only
the IRIS outlines (the coverage validity, the web simplification: tens of seconds for France,
in GEOS, which releases the GIL) is started when `iris_base` is materialized and runs on a
worker thread while the indicators and scores are computed; the steps that need it take the
result. A step that finds nothing started (another process: the multiprocess executor, or a
step re-executed alone from the UI) computes it itself, so results never depend on it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

# One worker: tasks run in the order they were started (a task may wait for an earlier one).
_POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fragilite-arriere-plan")
_STARTED: dict[tuple[str, str], Future] = {}
_LOCK = threading.Lock()


def start(run_id: str, name: str, task: Callable[..., Any], *args: Any) -> Future:
    """Start `task(*args)` for the steps of run `run_id` that will ask for `name`."""
    with _LOCK:
        for key in [k for k in _STARTED if k[0] != run_id]:  # an earlier run's: never asked for again
            del _STARTED[key]
        future = _STARTED[(run_id, name)] = _POOL.submit(task, *args)
    return future


def result(run_id: str, name: str, compute: Callable[[], Any]) -> Any:
    """What was started as `name` for this run (waiting for it), else `compute()` now."""
    with _LOCK:
        future = _STARTED.get((run_id, name))
    return future.result() if future is not None else compute()

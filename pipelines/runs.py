"""Runs that died: a killed `fragilite run` (SIGKILL, power cut, closed laptop) never writes its
end, and Dagster shows it STARTED forever, which blocks the run queue, the schedule and the sensor
(`max_concurrent_runs`). Each command-line run carries its process id and host in its tags; before
a new run, the runs of this host whose process is gone are marked failed, with the reason.

Runs launched by the daemon (UI, schedule, sensor) are watched by Dagster's run monitoring
(`run_monitoring` in dagster.yaml: start timeout and maximum run time).
"""

from __future__ import annotations

import os
import socket

import dagster as dg

PID_TAG = "fragilite/pid"
HOST_TAG = "fragilite/hote"
LIVE_STATUSES = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]


def process_tags() -> dict[str, str]:
    """Tags that let a later run tell whether this run's process is still alive."""
    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def sweep_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed the command-line runs of this host whose process is gone; their run ids."""
    host = socket.gethostname()
    swept = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=LIVE_STATUSES, tags={HOST_TAG: host})):
        pid = run.tags.get(PID_TAG, "")
        if not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        instance.report_run_failed(
            run,
            f"Processus {pid} disparu (calcul interrompu sans fin propre : arrêt forcé, machine éteinte) ; "
            "exécution marquée en échec par le calcul suivant. Les sorties précédentes sont intactes.",
        )
        swept.append(run.run_id)
    return swept

"""Production code location: the same assets, each step of a run in its own process, values on a
file system every machine mounts.

    dagster-webserver -m deploy.definitions      (with DAGSTER_HOME=deploy/, see deploy/README.md)
    dagster-daemon run -m deploy.definitions

The executor is Dagster's multiprocess executor (steps of a run in parallel processes on the
machine that runs it), the one `tests/test_scale_out.py` exercises; FRAGILITE_EXECUTOR=celery
sends the steps to Celery workers instead (CELERY_BROKER_URL, CELERY_RESULT_BACKEND).

Environment: FRAGILITE_WORK_DIR (intermediate values, `<dir>/valeurs/`), FRAGILITE_OUT_DIR
(published layers), both on a shared file system when steps run on several machines;
FRAGILITE_CONFIG (optional): the run configuration file (vintage, sources, methods).
"""

from __future__ import annotations

import os

import dagster as dg

from pipelines.definitions import build_definitions
from pipelines.resources import FragiliteConfig
from pipelines.storage import ParquetIOManager

EXECUTORS = ("multiprocess", "celery")


def multiprocess_executor() -> dg.ExecutorDefinition:
    """One process per step, at most one per core (`max_concurrent` 0); the processes fork from a
    server that has imported this module once, so a step does not pay the imports again."""
    return dg.multiprocess_executor.configured(
        {"max_concurrent": 0, "start_method": {"forkserver": {"preload_modules": [__name__]}}}
    )


def celery_executor() -> dg.ExecutorDefinition:
    """Steps as Celery tasks (a département partition per task on the workers); imported only when
    chosen."""
    from dagster_celery import celery_executor as executor

    return executor.configured(
        {
            "broker": {"env": "CELERY_BROKER_URL"},
            "backend": {"env": "CELERY_RESULT_BACKEND"},
            "include": ["dagster_celery.executor"],
        }
    )


def chosen_executor(name: str | None = None) -> dg.ExecutorDefinition:
    name = name or os.environ.get("FRAGILITE_EXECUTOR") or "multiprocess"
    if name not in EXECUTORS:
        raise ValueError(f"FRAGILITE_EXECUTOR={name!r} : valeurs possibles {', '.join(EXECUTORS)}")
    return multiprocess_executor() if name == "multiprocess" else celery_executor()


def production_definitions(executor: str | None = None) -> dg.Definitions:
    """The code location of `pipelines.definitions`, with the production executor and the
    intermediate values under FRAGILITE_WORK_DIR."""
    fragilite = FragiliteConfig(config_file=os.environ.get("FRAGILITE_CONFIG"), out_dir=dg.EnvVar("FRAGILITE_OUT_DIR"))
    base = build_definitions(fragilite)
    return dg.Definitions(
        assets=base.assets,
        asset_checks=base.asset_checks,
        schedules=base.schedules,
        sensors=base.sensors,
        resources={**base.resources, "io_manager": ParquetIOManager(base_dir=dg.EnvVar("FRAGILITE_WORK_DIR"))},
        executor=chosen_executor(executor),
    )


defs = production_definitions()

"""Production code location: the same assets, run by Celery workers, one département partition
per task, intermediate values in an object store.

    dagster-webserver -m deploy.definitions      (with DAGSTER_HOME=deploy/)
    dagster-celery worker start -A dagster_celery.app

Environment: DAGSTER_PG_* (instance), CELERY_BROKER_URL, FRAGILITE_S3_BUCKET, FRAGILITE_OUT_DIR
(a folder every worker mounts, e.g. a network file system, for the published layers).
"""

import dagster as dg
from dagster_aws.s3 import S3PickleIOManager, S3Resource
from dagster_celery import celery_executor

from pipelines.definitions import build_definitions
from pipelines.resources import FragiliteConfig

EXECUTOR = celery_executor.configured(
    {
        "broker": {"env": "CELERY_BROKER_URL"},
        "include": ["dagster_celery.executor"],
    }
)


def production_definitions() -> dg.Definitions:
    base = build_definitions(FragiliteConfig(out_dir=dg.EnvVar("FRAGILITE_OUT_DIR")))
    return dg.Definitions(
        assets=base.assets,
        asset_checks=base.asset_checks,
        schedules=base.schedules,
        sensors=base.sensors,
        resources={
            **base.resources,
            "io_manager": S3PickleIOManager(
                s3_resource=S3Resource(), s3_bucket=dg.EnvVar("FRAGILITE_S3_BUCKET"), s3_prefix="fragilite/io"
            ),
        },
        executor=EXECUTOR,
    )


defs = production_definitions()

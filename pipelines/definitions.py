"""The code location: every asset, check and resource, assembled in one place.

`dg dev`, `dg check defs` and `fragilite run` all load these definitions.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import dagster as dg

from pipelines.resources import FragiliteConfig
from pipelines.storage import ParquetIOManager

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# A territory run: everything but the département partitions and their national merge.
TERRITORY_SELECTION = dg.AssetSelection.all() - dg.AssetSelection.groups("national")
# The département partitions read the source assets, parsed once for all of them.
NATIONAL_SOURCES = dg.AssetSelection.groups("sources")
NATIONAL_PARTITIONS = dg.AssetSelection.assets("iris_departement")
NATIONAL_MERGE = dg.AssetSelection.assets("france_iris")


def run_resources(fragilite: FragiliteConfig | None = None) -> dict:
    """The resources of a run: its configuration, and the IO manager that stores each value as
    Parquet/JSON under the instance's storage folder (and keeps the run's values in memory)."""
    return {"fragilite": fragilite or FragiliteConfig(), "io_manager": ParquetIOManager()}


def build_definitions(fragilite: FragiliteConfig | None = None) -> dg.Definitions:
    """Assets, checks, schedule and sensor from `pipelines/defs/`, with the run configuration as a
    resource; every asset links to its source code in the UI."""
    loaded = dg.load_from_defs_folder(path_within_project=Path(__file__).resolve().parent)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)  # code references are a beta Dagster feature
        assets = dg.with_source_code_references(list(loaded.assets or []))
    return dg.Definitions(
        assets=assets,
        asset_checks=loaded.asset_checks,
        schedules=loaded.schedules,
        sensors=loaded.sensors,
        resources=run_resources(fragilite),
        # Every run path (CLI, UI, schedule, sensor) runs its steps in one process: the default
        # multiprocess executor starts a process per step (seconds of imports each, 40+ steps).
        executor=dg.in_process_executor,
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions()

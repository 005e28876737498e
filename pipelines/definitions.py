"""The code location: every asset, check and resource, assembled in one place.

`dg dev`, `dg check defs` and `fragilite run` all load these definitions.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import dagster as dg

from pipelines.resources import FragiliteConfig, RunPicklesIOManager

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# A territory run: everything but the département partitions and their national merge.
TERRITORY_SELECTION = dg.AssetSelection.all() - dg.AssetSelection.groups("national")
NATIONAL_PARTITIONS = dg.AssetSelection.assets("iris_departement")
NATIONAL_MERGE = dg.AssetSelection.assets("france_iris")


def run_resources(fragilite: FragiliteConfig | None = None) -> dict:
    """The resources of a run: its configuration, and the IO manager that keeps values in memory
    within the run (and pickles them for later runs)."""
    return {"fragilite": fragilite or FragiliteConfig(), "io_manager": RunPicklesIOManager()}


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
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions()

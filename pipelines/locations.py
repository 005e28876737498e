"""The Dagster UI's two code locations, so that "Materialize all" is one run where a user clicks it.

Dagster's UI opens its backfill dialog (partitions to choose, none chosen, Launch disabled) as
soon as the assets a "Materialize" button would launch include a partitioned one
(`stateForLaunchingAssets` in ui-core's `assets/LaunchAssetExecutionButton.tsx`, Dagster 1.13),
and the global lineage page offers to materialize every executable asset of every code location
of the workspace. Two locations of one workspace would still share that page. So the UI serves
one location at a time:

- `fragilite` (`fragilite ui`, `dg dev`, `dagster dev`): the territory chain, runnable; the
  national assets drawn in the lineage with their partitions and history (they are materialized
  by `fragilite run --by-departement` or in production) but not runnable here. "Materialize
  all", on the lineage page or the `territoire` job, is one run, as `fragilite run`.
- `fragilite_national` (`fragilite ui --national`): the source assets, the département
  partitions and their merge, runnable; "Materialize all" asks which départements (a backfill:
  the sources once, one run per département, then the merge), as `fragilite run
  --by-departement`.

The command line, the production location (deploy/) and the tests use `build_definitions()`,
where every asset runs. FRAGILITE_CONFIG names the configuration file of the UI's runs (as in
production); without it, the configuration's defaults (the embedded sample).
"""

from __future__ import annotations

import logging
import os

import dagster as dg

from pipelines.definitions import NATIONAL_GROUP, build_definitions
from pipelines.resources import FragiliteConfig

TERRITORY_LOCATION = "fragilite"
NATIONAL_LOCATION = "fragilite_national"
TERRITORY_JOBS = ("territoire",)
NATIONAL_JOBS = ("national", "fusion_nationale")


class _OwnName(logging.Filter):
    """Dagster warns, at every load, that a location's name is not the project's
    (`[tool.dg.project]`): `fragilite_national` is this project under its own name, on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "does not match the name" not in record.getMessage()


def ui_config() -> FragiliteConfig:
    """The configuration of runs launched from the UI: FRAGILITE_CONFIG, else the defaults."""
    return FragiliteConfig(config_file=os.environ.get("FRAGILITE_CONFIG") or None)


def _is_national(asset: dg.AssetsDefinition) -> bool:
    return NATIONAL_GROUP in asset.group_names_by_key.values()


def _location(
    full: dg.Definitions,
    assets: list,
    jobs: tuple[str, ...],
    checked: set[dg.AssetKey],
    automation: bool,
) -> dg.Definitions:
    """A location cut from the full definitions: these assets, the checks on them, these jobs,
    the same resources and in-process executor."""
    return dg.Definitions(
        assets=assets,
        asset_checks=[c for c in full.asset_checks or [] if {k.asset_key for k in c.check_keys} <= checked],
        schedules=full.schedules if automation else None,
        sensors=full.sensors if automation else None,
        jobs=[job for job in full.jobs or [] if job.name in jobs],
        resources=full.resources,
        executor=full.executor,
    )


def territory_location(fragilite: FragiliteConfig | None = None) -> dg.Definitions:
    """The territory chain runnable, the national assets shown (external assets with the same
    keys, partitions, dependencies and descriptions), the weekly schedule and the CAF sensor."""
    full = build_definitions(fragilite or ui_config())
    runnable = [a for a in full.assets if not _is_national(a)]
    shown = [spec for a in full.assets if _is_national(a) for spec in a.specs]
    keys = {k for a in runnable for k in a.keys} | {s.key for s in shown}
    return _location(full, runnable + shown, TERRITORY_JOBS, keys, automation=True)


def national_location(fragilite: FragiliteConfig | None = None) -> dg.Definitions:
    """The source assets and the national group, runnable, with the `national` and
    `fusion_nationale` jobs; no territory asset, no schedule or sensor (they run territories)."""
    components = logging.getLogger("dagster.components.core.component_tree")
    if not any(isinstance(f, _OwnName) for f in components.filters):
        components.addFilter(_OwnName())
    full = build_definitions(fragilite or ui_config())
    sources = {key for a in full.assets if _is_national(a) for key in a.dependency_keys}
    assets = [a for a in full.assets if _is_national(a) or set(a.keys) <= sources]
    keys = {k for a in assets for k in a.keys}
    return _location(full, assets, NATIONAL_JOBS, keys, automation=False)


@dg.definitions
def national() -> dg.Definitions:
    """`fragilite_national`, loaded by `pipelines/workspace_national.yaml`."""
    return national_location()

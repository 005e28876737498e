"""The code location: every asset, check, job and resource, assembled in one place.

`fragilite run`, the production location (deploy/) and the tests load `build_definitions()`, where
every asset runs. There is one job per kind of run: `territoire` (the unpartitioned territory
assets, as `fragilite run`), `national` (the département partitions, as `fragilite run
--by-departement`) and `fusion_nationale` (their merge); a job never mixes partitioned and
unpartitioned assets. The UI (`dg dev`, `fragilite ui`) loads `defs`, the territory location of
`pipelines/locations.py`: the national assets are drawn there but run in their own location
(`fragilite ui --national`), so that "Materialize all" on the lineage page is one run.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import dagster as dg

from config import Settings, load_settings
from pipelines.executor import thread_executor
from pipelines.resources import FragiliteConfig
from pipelines.storage import ParquetIOManager

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The département partitions and their national merge (pipelines/defs/national.py).
NATIONAL_GROUP = "national"
# A territory run: everything but the département partitions and their national merge.
TERRITORY_SELECTION = dg.AssetSelection.all() - dg.AssetSelection.groups(NATIONAL_GROUP)
# The département partitions read the source assets, parsed once for all of them.
NATIONAL_SOURCES = dg.AssetSelection.groups("sources")
NATIONAL_PARTITIONS = dg.AssetSelection.assets("iris_departement")
NATIONAL_MERGE = dg.AssetSelection.assets("france_iris")


def run_settings(fragilite: FragiliteConfig) -> Settings:
    """The settings a resource stands for, without caching them on it (a resource's cached
    properties would join the configuration Dagster validates)."""
    return load_settings(fragilite.config_file, fragilite.overrides())


def run_tags(settings: Settings) -> dict[str, str]:
    """What tells runs apart in the UI's run list: territory, census vintage, reference, output
    folder and configuration file."""
    return {
        "fragilite/territoire": ",".join(settings.run.territory) or settings.run.territory_label,
        "fragilite/millesime": str(settings.run.vintage) if settings.run.vintage else "fichiers de la configuration",
        "fragilite/reference": settings.run.reference,
        "fragilite/sortie": str(Path(settings.run.out_dir).resolve()),
    }


def jobs(settings: Settings) -> list[dg.UnresolvedAssetJobDefinition]:
    """The UI's one-click runs, tagged with the configuration's defaults, in process (steps on
    threads)."""
    tags = {**run_tags(settings), "fragilite/commande": "ui"}
    return [
        dg.define_asset_job(
            "territoire",
            selection=TERRITORY_SELECTION,
            executor_def=thread_executor,
            tags=tags,
            description="Calcul du territoire configuré, des fichiers sources aux couches, paquet, cartes et rapport "
            "(comme `fragilite run`).",
        ),
        dg.define_asset_job(
            "national",
            selection=NATIONAL_PARTITIONS,
            executor_def=thread_executor,
            tags=tags,
            description="Indicateurs des IRIS par département (une partition par département), à partir des sources "
            "déjà lues par `territoire` ; puis lancer `fusion_nationale`.",
        ),
        dg.define_asset_job(
            "fusion_nationale",
            selection=NATIONAL_MERGE,
            executor_def=thread_executor,
            tags=tags,
            description="Fusion des partitions départementales et notes de toutes les méthodes sur la table "
            "nationale (`layers/france_iris.parquet`).",
        ),
    ]


def run_resources(fragilite: FragiliteConfig | None = None) -> dict:
    """The resources of a run: its configuration, and the IO manager that stores each value as
    Parquet/JSON under the instance's storage folder (and keeps the run's values in memory)."""
    return {"fragilite": fragilite or FragiliteConfig(), "io_manager": ParquetIOManager()}


def build_definitions(fragilite: FragiliteConfig | None = None) -> dg.Definitions:
    """Assets, checks, schedule and sensor from `pipelines/defs/`, with the run configuration as a
    resource; every asset links to its source code in the UI."""
    from pipelines import defs as package
    from pipelines.defs.automation import depot_caf, verification_hebdomadaire

    # The modules of `pipelines/defs/`, loaded directly: `load_from_defs_folder` would also
    # read Dagster's component library and every installed plugin (half a second per start).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)  # code references are a beta Dagster feature
        assets = dg.with_source_code_references(list(dg.load_assets_from_package_module(package)))
    return dg.Definitions(
        assets=assets,
        asset_checks=dg.load_asset_checks_from_package_module(package),
        schedules=[verification_hebdomadaire],
        sensors=[depot_caf],
        jobs=jobs(run_settings(fragilite or FragiliteConfig())),
        resources=run_resources(fragilite),
        # Every run path (CLI, UI, schedule, sensor) runs its steps in one process, two at a time
        # on threads (pipelines/executor.py): the default multiprocess executor starts a process
        # per step (seconds of imports each, 40+ steps).
        executor=thread_executor,
    )


@dg.definitions
def defs() -> dg.Definitions:
    """The UI's `fragilite` location: the territory chain runnable, the national assets shown."""
    from pipelines.locations import territory_location

    return territory_location()

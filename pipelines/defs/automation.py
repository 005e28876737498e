"""Automation, off by default in the embedded instance: a weekly schedule that re-materializes
when the publishers changed something, and a sensor on the CAF drop folder."""

import hashlib
import json

import dagster as dg

from pipelines.resources import FragiliteConfig
from sources.watch import catalogue_changes, drop_folder_files

# Territory runs (the département partitions are backfilled on their own).
ALL_ASSETS = dg.AssetSelection.all() - dg.AssetSelection.groups("national")


@dg.schedule(
    cron_schedule="0 6 * * 1",
    target=ALL_ASSETS,
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Chaque lundi à 6 h : vérifie le catalogue (nouveaux millésimes, fichiers changés chez "
    "l'éditeur) et relance le calcul s'il y a du nouveau.",
)
def verification_hebdomadaire(context: dg.ScheduleEvaluationContext, fragilite: FragiliteConfig):
    settings = fragilite.settings
    if settings.run.vintage is None:
        return dg.SkipReason(
            "run.vintage n'est pas réglé : le calcul lit des fichiers locaux, rien à vérifier chez les producteurs"
        )
    state = settings.sources.resolved_cache_dir() / "catalogue_state.json"
    changes = catalogue_changes(fragilite.source_catalogue, settings.run.vintage, state)
    if not changes:
        return dg.SkipReason("aucun changement chez les producteurs depuis la dernière vérification")
    context.log.info("; ".join(changes))
    # A digest of the changes, stable across processes (Python's hash() of text is salted per process).
    digest = hashlib.sha256("\n".join(changes).encode("utf-8")).hexdigest()[:16]
    return dg.RunRequest(run_key=f"catalogue-{digest}", tags={"fragilite/motif": "catalogue"})


@dg.sensor(
    target=ALL_ASSETS,
    default_status=dg.DefaultSensorStatus.STOPPED,
    minimum_interval_seconds=60,
    description="Surveille le dossier de dépôt des fichiers CAF « allocataires non connectés » "
    "(sources.caf_drop_folder) et relance le calcul avec chaque fichier nouveau ou modifié.",
)
def depot_caf(context: dg.SensorEvaluationContext, fragilite: FragiliteConfig):
    folder = fragilite.settings.sources.caf_drop_folder
    if folder is None:
        return dg.SkipReason("sources.caf_drop_folder n'est pas réglé : aucun dossier de dépôt CAF à surveiller")
    seen = json.loads(context.cursor) if context.cursor else {}
    current = drop_folder_files(folder)
    new = {name: sig for name, sig in current.items() if seen.get(name) != sig}
    context.update_cursor(json.dumps(current))
    if not new:
        return dg.SkipReason(f"aucun fichier nouveau dans {folder}")
    return [
        dg.RunRequest(
            run_key=f"caf-{name}-{sig}",
            tags={"fragilite/caf": name},
            run_config={"resources": {"fragilite": {"config": {"caf_file": str(folder / name)}}}},
        )
        for name, sig in sorted(new.items())
    ]

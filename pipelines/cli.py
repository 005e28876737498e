"""`fragilite`: the command line. Runs the Dagster assets in the local instance, so that a run
started here shows in the Dagster UI (`fragilite ui`) with its lineage, metadata and checks."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from config import ConfigError, load_settings, settings_as_yaml
from config.settings import PROJECT_ROOT

EXIT_INPUT = 2
EXIT_FAILED = 1


# argparse's own words, in French (argparse translates through gettext's `_`; no catalogue of
# ours is installed, so the few phrases a user meets are given here).
ARGPARSE_FR = {
    "usage: ": "utilisation : ",
    "options": "options",
    "positional arguments": "arguments",
    "show this help message and exit": "afficher cette aide et quitter",
    "the following arguments are required: %s": "arguments obligatoires manquants : %s",
    "invalid choice: %(value)r (choose from %(choices)s)": "choix invalide : %(value)r (au choix : %(choices)s)",
    "%(prog)s: error: %(message)s\n": "%(prog)s : erreur : %(message)s\n",
    "unrecognized arguments: %s": "arguments inconnus : %s",
    "expected one argument": "une valeur est attendue",
    "invalid %(type)s value: %(value)r": "valeur %(type)s invalide : %(value)r",
}


def _parser() -> argparse.ArgumentParser:
    argparse._ = lambda text: ARGPARSE_FR.get(text, text)
    parser = argparse.ArgumentParser(
        prog="fragilite",
        description="Indice de fragilité numérique à l'IRIS (méthode MedNum), orchestré par Dagster.",
    )
    parser.add_argument("--debug", action="store_true", help="afficher la trace complète en cas d'erreur")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser(
        "run", help="calculer l'indice et écrire les couches (par défaut : l'échantillon embarqué du Rhône)"
    )
    _config_option(run)
    run.add_argument(
        "--reference",
        choices=["departement", "epci", "territoire", "region", "france"],
        help="territoire de référence des scores (par défaut : departement)",
    )
    run.add_argument(
        "--legacy-2020",
        action="store_true",
        default=None,
        help="reproduire la publication MedNum 2020 (voir le README)",
    )
    run.add_argument(
        "--territory",
        metavar="CODES",
        help="territoire d'étude : un nom de config/territories.yaml (rhone, metropole-lyon, pays-arbresle, "
        "metz-metropole…) ou des codes de départements, communes ou EPCI séparés par des virgules ; hors des "
        "fichiers configurés, le dernier millésime du catalogue est pris",
    )
    run.add_argument("--out", metavar="DOSSIER", help="dossier de sortie (par défaut : build/sorties/)")
    run.add_argument(
        "--by-departement",
        action="store_true",
        help="calculer les partitions départementales que couvre le territoire, puis leur fusion nationale "
        "(layers/france_iris.parquet), au lieu des couches du territoire",
    )
    _source_options(run)
    run.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="afficher la trace complète en cas d'erreur"
    )

    fetch = sub.add_parser(
        "fetch", help="télécharger (ou vérifier hors ligne) tous les fichiers d'un millésime, sans calculer"
    )
    _config_option(fetch)
    _source_options(fetch, vintage_required=True)

    check = sub.add_parser(
        "validate", help="vérifier les entrées d'un calcul (format, codes, jointures, millésimes), sans calculer"
    )
    _config_option(check)
    _source_options(check)

    listing = sub.add_parser("sources", help="lister le catalogue des sources (config/sources.yaml)")
    _config_option(listing)
    listing.add_argument("--json", action="store_true", help="sortie JSON (pour un script)")

    show = sub.add_parser("config", help="afficher la configuration effective (YAML)")
    _config_option(show)

    ui = sub.add_parser("ui", help="ouvrir l'interface Dagster sur http://127.0.0.1:3000")
    ui.add_argument("--port", type=int, default=3000)
    ui.add_argument(
        "--national",
        action="store_true",
        help="l'interface du calcul national : sources, partitions départementales et fusion (au lieu des calculs "
        "de territoire) ; « Materialize all » y demande les départements à calculer",
    )
    return parser


def _source_options(parser: argparse.ArgumentParser, vintage_required: bool = False) -> None:
    parser.add_argument(
        "--vintage",
        type=int,
        required=vintage_required,
        help="millésime du recensement (par exemple 2021) : ses fichiers sont pris au catalogue au lieu des "
        "entrées de la configuration ; la géographie suit (millésime + 2)",
    )
    parser.add_argument("--offline", action="store_true", default=None, help="n'utiliser que le cache et --mirror")
    parser.add_argument(
        "--mirror", metavar="DOSSIER", help="dossier de fichiers déjà téléchargés, reconnus par leur nom"
    )
    parser.add_argument(
        "--cache-dir", metavar="DOSSIER", help="cache des téléchargements (par défaut : ~/.cache/fragilite-numerique)"
    )
    parser.add_argument(
        "--accept-changed",
        action="store_true",
        default=None,
        help="accepter un fichier dont la somme de contrôle diffère du catalogue (republié par l'éditeur)",
    )


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FICHIER", help="fichier YAML qui complète config/defaults.yaml")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    if args.command != "run":
        _settle_heap()  # only a run loads the whole chain before its work starts
    try:
        if args.command == "config":
            print(settings_as_yaml(load_settings(args.config)), end="")
            return 0
        if args.command == "ui":
            return _ui(args.port, args.national)
        if args.command == "sources":
            return _sources(args)
        if args.command == "fetch":
            return _fetch(_resource(args))
        if args.command == "validate":
            return _validate(_resource(args))
        return _run(args)
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        return _interrupted()
    except Exception as exc:  # noqa: BLE001 - the one place errors become messages
        if _is_interruption(exc):
            return _interrupted()
        if debug:
            raise
        print(f"fragilite : erreur : {_failed_checks(exc) or _system_error(exc) or _user_error(exc)}", file=sys.stderr)
        print("  (relancez avec --debug pour la trace complète)", file=sys.stderr)
        return EXIT_INPUT if _is_input_error(exc) else EXIT_FAILED
    except BaseException as exc:  # Dagster turns Ctrl-C inside a step into its own BaseException
        if _is_interruption(exc):
            return _interrupted()
        raise


def _interrupted() -> int:
    print("fragilite : interrompu ; les sorties précédentes sont intactes", file=sys.stderr)
    return 130


def _is_interruption(exc: BaseException) -> bool:
    """Ctrl-C, as Python raises it or as Dagster wraps it (DagsterExecutionInterruptedError)."""
    pending, seen = [exc], set()
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, KeyboardInterrupt) or type(current).__name__ == "DagsterExecutionInterruptedError":
            return True
        pending += [getattr(current, "user_exception", None), current.__cause__, current.__context__]
    return False


def _user_error(exc: BaseException) -> BaseException:
    """The user's own exception inside Dagster's wrappers (our errors are not unwrapped)."""
    from dagster._core.errors import DagsterError

    seen = exc
    while isinstance(seen, DagsterError):
        inner = getattr(seen, "user_exception", None) or seen.__cause__
        if inner is None:
            break
        seen = inner
    return seen


def _system_error(exc: BaseException) -> str | None:
    """The machine said no (full disk, no permission): in French, with what to do."""
    import errno

    error = _user_error(exc)
    if not isinstance(error, OSError):
        return None
    where = f" ({error.filename})" if error.filename else ""
    if error.errno == errno.ENOSPC:
        return (
            f"disque plein{where} : rien n'a été publié et les sorties précédentes sont intactes ; libérez de la "
            "place (la chaîne écrit le nouvel ensemble à côté de l'ancien avant de l'échanger) ou choisissez un autre "
            "dossier avec --out"
        )
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"écriture refusée{where} : choisissez un dossier où vous pouvez écrire avec --out"
    return None


def _failed_checks(exc: BaseException) -> str | None:
    """A blocking check stopped the run: what each failed check says (file, first values, fix),
    read from this process's run in the event log (Dagster's own message names the check only)."""
    if type(_user_error(exc)).__name__ != "DagsterAssetCheckFailedError":
        return None
    import dagster as dg

    from pipelines.runs import PID_TAG

    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs(filters=dg.RunsFilter(tags={PID_TAG: str(os.getpid())}), limit=1)
        if not runs:
            return None
        records = instance.all_logs(runs[0].run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    lines = []
    for record in records:
        evaluation = record.dagster_event.event_specific_data
        if not evaluation.passed and evaluation.blocking:
            what = evaluation.description or "contrôle non réussi (détails dans l'interface : `fragilite ui`)"
            lines.append(
                f"contrôle bloquant « {evaluation.asset_key.to_user_string()} : {evaluation.check_name} » : {what}"
            )
    return ("le calcul s'arrête avant de publier quoi que ce soit.\n  " + "\n  ".join(lines)) if lines else None


def _is_input_error(exc: BaseException) -> bool:
    from outputs.files import OutputFolderError, OutputLockedError
    from sources.archives import ArchiveError
    from sources.common import InputError
    from sources.download import DownloadError
    from transforms.iris_base import VintageError

    return isinstance(
        _user_error(exc),
        (
            InputError,
            ConfigError,
            VintageError,
            OutputLockedError,
            OutputFolderError,
            DownloadError,
            ArchiveError,
        ),
    )


def _use_local_instance() -> None:
    """The project's own Dagster instance (dagster.yaml at the root), unless DAGSTER_HOME is set."""
    if not os.environ.get("DAGSTER_HOME"):
        os.environ["DAGSTER_HOME"] = str(PROJECT_ROOT)
        os.chdir(PROJECT_ROOT)


def _resource(args: argparse.Namespace):
    from pipelines.resources import FragiliteConfig

    def absolute(value: str | None) -> str | None:
        return str(Path(value).expanduser().resolve()) if value else None

    return FragiliteConfig(
        config_file=absolute(args.config),
        reference=getattr(args, "reference", None),
        legacy_2020=getattr(args, "legacy_2020", None),
        out_dir=absolute(getattr(args, "out", None)),
        territory=[c.strip() for c in args.territory.split(",") if c.strip()]
        if getattr(args, "territory", None)
        else None,
        vintage=args.vintage,
        offline=args.offline,
        mirror=absolute(args.mirror),
        cache_dir=absolute(args.cache_dir),
        accept_changed=args.accept_changed,
    )


def _fetch(resource) -> int:
    """Every catalogued file of the vintage, in the cache (offline: all missing listed at once).
    An optional file that cannot be had is reported; the run goes on without its indicators."""
    from sources.catalogue import missing_files, plan_lines, resolve_inputs
    from sources.download import MissingFilesError, fetcher_from_settings

    settings = resource.settings
    fetcher = fetcher_from_settings(settings, hosts=resource.source_catalogue.hosts)
    print(f"fragilite : fichiers du RP {settings.run.vintage} (cache {fetcher.cache_dir})", file=sys.stderr)
    if fetcher.offline:  # every missing required file at once, before the territory is looked up
        quarter = settings.sources.arcep_trimestre
        required = missing_files(resource.source_catalogue, settings.run.vintage, fetcher, quarter, departements=[])
        if any(not m.optional for m in required):
            raise MissingFilesError([m for m in required if not m.optional])
    departements = resource.departements()
    options = {"quarter": settings.sources.arcep_trimestre, "departements": departements}
    if departements is not None:
        print(f"  fichiers par département pour : {', '.join(departements)}", file=sys.stderr)
    for line in plan_lines(resource.source_catalogue, settings.run.vintage, fetcher, **options):
        print(f"  {line}", file=sys.stderr)
    resolved = resolve_inputs(
        resource.source_catalogue, settings.run.vintage, fetcher, settings.sources.max_extract_mb << 20, **options
    )
    for key, found in resolved.items():
        if isinstance(found, Exception):
            print(f"  {key:<28} facultatif, écarté : {str(found).splitlines()[0]}")
        else:
            path, provenance = found
            missing = provenance.get("groupes_manquants")
            gaps = f" (sans fichiers : {', '.join(missing)})" if missing else ""
            print(f"  {key:<28} {provenance['vintage']:<7} {path}{gaps}")
    return 0


def _validate(resource) -> int:
    """Every problem of every input at once; exit 2 if any would stop a run."""
    from sources.validation import validate_inputs

    settings = resource.settings
    if settings.run.vintage is not None:
        _fetch(resource)
    from sources.catalogue import is_optional
    from sources.validation import Problem

    paths, unavailable = {}, []
    for key in type(settings.inputs).model_fields:
        try:
            paths[key] = resource.input_file(key)[0]
        except Exception as exc:  # noqa: BLE001 - reported below, with every other problem
            level = "avertissement" if is_optional(resource.source_catalogue, key) else "erreur"
            unavailable.append(Problem(level, key, str(exc)))
    problems = unavailable + validate_inputs(
        paths, settings.run.vintage, resource.catalogue, resource.tic, settings.run.indicators
    )
    errors = [p for p in problems if p.level == "erreur"]
    for problem in problems:
        print(problem)
    print(f"fragilite validate: {len(errors)} erreur(s), {len(problems) - len(errors)} avertissement(s)")
    return EXIT_INPUT if errors else 0


def _sources(args: argparse.Namespace) -> int:
    import json

    from config.settings import load_sources

    catalogue = load_sources(load_settings(args.config).sources.catalogue)
    rows = [
        {
            "dataset": name,
            "publisher": d.publisher,
            "input": d.input,
            "vintage": v,
            "url": f.url,
            "url_verified": f.url_verified,
            "format": d.file(v).format,
            "member": f.member,
            "checksum": f.md5 or f.sha256,
            "size": f.size,
            "note": f.note,
        }
        for name, d in catalogue.datasets.items()
        for v, f in d.files.items()
    ]
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    for r in rows:
        flag = "" if r["url_verified"] else "  [adresse non confirmée]"
        print(f"{r['dataset']:<28} {r['vintage']:<7} {r['url']}{flag}")
    return 0


def _run(args: argparse.Namespace) -> int:
    import dagster as dg

    from outputs.files import check_output_folder
    from pipelines.definitions import TERRITORY_SELECTION, build_definitions

    resource = _resource(args)
    settings = _resource(args).settings  # validate the configuration before starting anything
    if settings.run.vintage is None and settings.run.territory:
        chosen = _vintage_for_territory(_resource(args))
        if chosen is not None:
            args.vintage = chosen
            resource = _resource(args)
            settings = _resource(args).settings
    check_output_folder(Path(settings.run.out_dir))  # before downloads and computing, not at the end
    if settings.run.vintage is not None:
        _fetch(_resource(args))  # downloads with progress (or the offline list of missing files), before the run
    _use_local_instance()
    _show_progress()
    started = time.perf_counter()
    territory = ",".join(settings.run.territory) or settings.run.territory_label
    print(
        f"fragilite: {territory}, référence {settings.run.reference}"
        f"{', legacy 2020' if settings.run.legacy_2020 else ''}",
        file=sys.stderr,
    )
    defs = build_definitions(resource)
    _settle_heap()
    everything = [*defs.assets, *defs.asset_checks]
    # Dagster's own console lines (step failures with their stack traces) only with --debug: the
    # event log keeps them for the UI, and the user reads one clean message.
    level = "ERROR" if getattr(args, "debug", False) else "CRITICAL"
    quiet = {"loggers": {"console": {"config": {"log_level": level}}}}
    with dg.DagsterInstance.get() as instance:
        if args.by_departement:
            return _run_partitions(resource, _resource(args), everything, instance, quiet, started)
        tags = {
            "fragilite/commande": "run",
            "fragilite/territoire": ",".join(settings.run.territory) or "entrées",
            "fragilite/reference": settings.run.reference,
        }
        if settings.run.vintage is not None:
            tags["fragilite/millesime"] = str(settings.run.vintage)
        result = _materialize(everything, instance, resource, quiet, tags=tags, selection=TERRITORY_SELECTION)
    _summary(result, Path(settings.run.out_dir), time.perf_counter() - started)
    return 0 if result.success else EXIT_FAILED


def _materialize(everything, instance, resource, run_config: dict, **selection):
    """One Dagster run of the CLI: the run's resources, the quiet console, a selection. Runs that
    died before it (killed process) are marked failed first, so that they block nothing."""

    from pipelines.definitions import run_resources, run_settings, run_tags
    from pipelines.executor import materialize
    from pipelines.runs import process_tags, sweep_dead_runs

    for run_id in sweep_dead_runs(instance):
        print(f"fragilite : exécution {run_id[:8]} interrompue sans fin propre, marquée en échec", file=sys.stderr)
    # Territory, vintage, reference and output folder tell the runs apart in the UI.
    selection["tags"] = {**process_tags(), **selection.get("tags", {}), **run_tags(run_settings(resource))}
    return materialize(
        everything, instance=instance, resources=run_resources(resource), run_config=run_config, **selection
    )


def _vintage_for_territory(helper) -> int | None:
    """The census vintage to download when the configured inputs (the embedded sample by default)
    do not cover the territory: the catalogue's latest complete one. None: the inputs serve."""
    from sources.catalogue import latest_vintage
    from sources.registry import PARSERS
    from transforms.territory import resolve_territory, uncovered_codes

    settings = helper.settings
    territory = resolve_territory(settings.run.territory, helper.territory_presets)
    epci_path = settings.input_paths().get("communes_epci")
    if territory.whole or epci_path is None:
        return None
    missing = uncovered_codes(territory, PARSERS["communes_epci"](epci_path))
    if not missing:
        return None
    vintage = latest_vintage(helper.source_catalogue)
    print(
        f"fragilite : {', '.join(missing)} hors des fichiers configurés ({epci_path.name}) : millésime le plus "
        f"récent du catalogue retenu, RP {vintage} (géographie {vintage + 2}) ; fichiers pris dans le cache, "
        "le dossier --mirror ou téléchargés",
        file=sys.stderr,
    )
    return vintage


def _run_partitions(resource, helper, everything, instance, run_config, started: float) -> int:
    """The source files parsed once, the territory's département partitions one by one, then the
    national merge (where every method is scored).

    `helper` is a second resource used for look-ups: reading a resource's cached properties
    would add them to the configuration Dagster validates.
    """

    from pipelines.definitions import NATIONAL_MERGE, NATIONAL_PARTITIONS, NATIONAL_SOURCES
    from pipelines.defs.national import DEPARTEMENTS
    from sources.download import progress_bar
    from sources.registry import PARSERS
    from transforms.territory import partition_keys, resolve_territory

    settings = helper.settings
    territory = resolve_territory(settings.run.territory, helper.territory_presets)
    epci_path, _ = helper.input_file("communes_epci")
    keys = partition_keys(territory, PARSERS["communes_epci"](epci_path), DEPARTEMENTS.get_partition_keys())
    print(f"fragilite : {len(keys)} partition(s) département : {', '.join(keys)}", file=sys.stderr)
    sources = _materialize(everything, instance, resource, run_config, selection=NATIONAL_SOURCES)
    if not sources.success:
        return EXIT_FAILED
    # One bar for the partitions (on a terminal, or FRAGILITE_PROGRESS=1), the département at work after it.
    with progress_bar("départements", len(keys), unit="département") as bar:
        for key in keys:
            bar.set_postfix_str(key)
            result = _materialize(
                everything, instance, resource, run_config, partition_key=key, selection=NATIONAL_PARTITIONS
            )
            if not result.success:
                return EXIT_FAILED
            bar.update()
    result = _materialize(everything, instance, resource, run_config, selection=NATIONAL_MERGE)
    print(_national_summary(result, len(keys), time.perf_counter() - started))
    return 0 if result.success else EXIT_FAILED


def _national_summary(result, departements: int, seconds: float) -> str:
    """The last line of a national run: départements, time, IRIS of each merged file."""
    files: dict = {}
    for event in result.get_asset_materialization_events():
        metadata = event.step_materialization_data.materialization.metadata
        if "fichiers" in metadata:
            files = metadata["fichiers"].value
    merged = " ; ".join(f"{count} IRIS dans {path}" for path, count in files.items()) or "aucun fichier"
    return f"\n{departements} département(s) calculé(s) et fusionné(s) en {seconds:.1f} s : {merged}"


class _ProgressHandler(logging.Handler):
    """Writes to whatever `sys.stderr` is at the time of the record (not at set-up), above the
    progress bar if one is drawn (tqdm redraws it below)."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        tqdm.write(f"  · {record.getMessage()}", file=sys.stderr)


def _show_progress() -> None:
    progress = logging.getLogger("fragilite.progress")
    if not any(isinstance(h, _ProgressHandler) for h in progress.handlers):
        progress.addHandler(_ProgressHandler())
        progress.setLevel(logging.INFO)
        progress.propagate = False


OUTPUTS = (
    ("layers", "couches IRIS, communes, EPCI, départements (GeoParquet, GeoPackage) et dictionnaire"),
    ("geoclip", "paquet de publication type Geoclip (CSV, XLSX, contours)"),
    ("web", "couches GeoJSON pour le web (contours simplifiés)"),
    ("cartes", "cartes PNG"),
    ("rapport.html", "rapport du territoire"),
    ("fragilite.qgs", "projet QGIS (couches stylées, lieux de médiation)"),
)


def _summary(result, out_dir: Path, seconds: float) -> None:
    """What a user needs after a run: how many IRIS, which files, checks, warnings, exposure."""
    metadata = {
        event.asset_key.to_user_string(): {
            k: v.value for k, v in event.step_materialization_data.materialization.metadata.items()
        }
        for event in result.get_asset_materialization_events()
    }
    checks = result.get_asset_check_evaluations()
    failed = [c for c in checks if not c.passed]
    scores = metadata.get("iris_scores", {})
    print(f"\n{_scored_line(scores)} en {seconds:.1f} s. Écrit dans {out_dir} :")
    for name, what in OUTPUTS:
        path = out_dir / name
        if path.is_dir():
            files = [p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")]
            size = sum(p.stat().st_size for p in files)
            print(f"  {name + '/':<16} {len(files):3d} fichiers {size / 1e6:7.2f} Mo  {what}")
        elif path.exists():
            print(f"  {name:<16}               {path.stat().st_size / 1e6:7.2f} Mo  {what}")
    print(
        f"Contrôles : {len(checks) - len(failed)}/{len(checks)} réussis"
        + "".join(f"\n  ÉCHEC {c.asset_key.to_user_string()}:{c.check_name}" for c in failed)
    )
    opale = scores.get("opale_resume")
    if opale:
        arr = f", {len(opale['arrondissements'])} arrondissement(s)" if opale["arrondissements"] else ""
        population = f"{opale['population']:,.0f}".replace(",", "\u202f")
        print(
            f"Opale : {opale['iris_exposes']} IRIS exposés (score ≥ seuil) dans {opale['communes']} "
            f"commune(s){arr} ({opale['communes_arrondissements_distincts']} en comptant les "
            f"arrondissements), {population} habitants"
            + (
                f" ; {opale['iris_fiabilite_faible_ecartees']} IRIS au-dessus du seuil écartées (fiabilité faible)"
                if opale.get("iris_fiabilite_faible_ecartees")
                else ""
            )
        )
    _print_scoring(metadata)
    for key, meta in metadata.items():
        if meta.get("erreur"):
            print(f"  source écartée : {key} : {str(meta['erreur']).splitlines()[0]}")
    for note in metadata.get("iris_base", {}).get("parties_ecartees", []):
        print(f"  attention : {note}")
    for warning in metadata.get("iris_indicateurs", {}).get("avertissements", []):
        print(f"  attention : {warning}")
    _print_joins(metadata)
    _print_connectivity(metadata)
    print("Lignage, métadonnées et contrôles : `fragilite ui`, puis http://127.0.0.1:3000")


def _scored_line(scores: dict) -> str:
    """« 746/751 IRIS notés » only when every indicator had a reference; otherwise says which not."""
    table = scores.get("dagster/row_count", 0)
    noted = scores.get("iris_scores", 0)
    line = f"{noted}/{table} IRIS notés" if table else f"{noted} IRIS notés"
    unscored = scores.get("indicateurs_sans_reference") or {}
    return line + (f" sans {', '.join(unscored)} (pas de valeur de référence)" if unscored else "")


def _print_scoring(metadata: dict) -> None:
    """Reference units, unscored indicators, indicator sets and reliability, in a few lines."""
    scores = metadata.get("iris_scores", {})
    universe = scores.get("univers_de_reference") or {}
    units = scores.get("unites_de_reference") or []
    if units:
        listed = ", ".join(f"{u['unite']} ({u['iris']} IRIS)" if u.get("iris") else u["unite"] for u in units[:6])
        more = f" et {len(units) - 6} autre(s)" if len(units) > 6 else ""
        print(f"Référence {universe.get('niveau', scores.get('reference', ''))} : unité(s) entière(s) {listed}{more}")
    for note in universe.get("notes", []):
        print(f"  attention : {note}")
    for ind_id, why in (scores.get("indicateurs_sans_reference") or {}).items():
        print(f"  non noté : {ind_id} : {why}")
    completeness = scores.get("completude") or {}
    if completeness and not completeness.get("homogene", True):
        sets = ", ".join(f"{n} IRIS sur {k}" for k, n in completeness["iris_par_nombre_d_indicateurs"].items())
        print(
            f"  attention : les scores reposent sur des ensembles d'indicateurs différents ({sets} indicateurs) ; "
            "colonnes nb_indicateurs_notes et indicateurs_manquants"
        )
    reliability = scores.get("fiabilite") or {}
    if reliability.get("faible"):
        print(
            f"  fiabilité faible : {reliability['faible']} IRIS (moins de {reliability['population_minimale']:g} "
            f"habitants ou IRIS de type {', '.join(reliability['types_faibles'])}), colonne fiabilite"
        )


def _print_connectivity(metadata: dict) -> None:
    """Which IRIS got `non_thd` measured from ARCEP's buildings and which the commune rate."""
    meta = metadata.get("iris_connectivite")
    if not meta or "iris_non_thd_immeuble" not in meta and not meta.get("departements_sans_fichiers"):
        return
    total = meta.get("iris_total", 0)
    measured = meta.get("iris_non_thd_immeuble", 0)
    missing = meta.get("departements_sans_fichiers") or []
    gaps = f" (départements sans fichiers : {', '.join(missing)})" if missing else ""
    quarter = f", ARCEP {meta['millesime']}" if meta.get("millesime") else ""
    print(f"non_thd : {measured} IRIS mesurées à l'immeuble, {total - measured} au taux communal{gaps}{quarter}")


def _print_joins(metadata: dict) -> None:
    """Per source, the codes that did not join after mapping (the full lists are in the metadata)."""
    reports = [
        *metadata.get("iris_base", {}).get("jointures", []),
        *metadata.get("iris_indicateurs", {}).get("jointures", []),
    ]
    for r in reports:
        codes = r.get("unmatched_left", []) + r.get("unmatched_right", [])
        count = r.get("unmatched_left_count", 0) + r.get("unmatched_right_count", 0)
        if count:
            shown = ", ".join(codes[:6]) + (" …" if count > 6 else "")
            print(f"  jointure {r['join']} : {count} code(s) non joint(s) ({shown})")


def _ui(port: int, national: bool = False) -> int:
    """`dg dev` on the territory location; with --national, `dagster dev` on the national one
    (pipelines/locations.py says why they are not one workspace)."""
    _use_local_instance()
    address = ["--host", "127.0.0.1", "--port", str(port)]
    if national:
        workspace = PROJECT_ROOT / "pipelines" / "workspace_national.yaml"
        command = [str(Path(sys.executable).with_name("dagster")), "dev", "-w", str(workspace), *address]
        # `dg dev` serves the project's own location only; `dagster dev` says so at every start.
        os.environ["PYTHONWARNINGS"] = "ignore:Function `dev_command` is superseded"
    else:
        command = [str(Path(sys.executable).with_name("dg")), "dev", *address]
    os.execv(command[0], command)
    return 0  # unreachable: execv replaces the process


def console() -> int:
    """The `fragilite` command: `main` in a process of its own. Python's garbage collector would
    walk every object of the libraries again and again while they are imported (a second of a
    sample run): it is paused until the chain is loaded (`_settle_heap`), and the run's objects,
    which die with the process, are frozen at the end, sparing a last collection at exit."""
    gc.disable()
    try:
        return main()
    finally:
        gc.enable()
        gc.freeze()


def _settle_heap() -> None:
    """Once the libraries and the definitions are loaded, in a `fragilite` process (`console`):
    they live as long as the process, so they are frozen out of the collector's walks, and
    collection resumes for the run's own objects. A caller that keeps the collector running
    (tests calling `main`) is left as it is."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


if __name__ == "__main__":
    sys.exit(console())

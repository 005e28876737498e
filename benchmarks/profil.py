"""Profile the national benchmark under cProfile: the whole run, and one step in detail.

    python -m benchmarks.profil --scale 0.1
    python -m benchmarks.profil --scale 1 --etape iris_accessibilite --top 30 --sortie build/profils
    python -m benchmarks.profil --scale 1 --inputs build/bench --etape scores_publies   # inputs reused

The input set is generated as `benchmarks.national` does (same generator, same seed), then the
whole pipeline runs in-process under one cProfile profiler. With `--etape`, the profiler is
switched to a second one for the duration of that Dagster step (its key: the asset's name, or
`sorties` for the outputs' multi-asset), so the functions listed for the step are exactly those
that ran during it. The `.prof` files (whole run, the step's included; and the step alone) are
written to `--sortie` (a temporary folder by default) and open in `snakeviz`, or with
`python -m pstats <fichier>`.

cProfile sees one thread only: the steps run one after the other on the main thread (Dagster's
in-process executor; `fragilite run` runs two at a time), a step's own worker threads (those of
`sorties`) are missing, and cProfile slows Python-heavy code more than numpy/GEOS calls. For a
sampling view of every thread at near-native speed, use py-spy (installed in the venv) on the
benchmark itself:

    .venv/bin/py-spy record --threads --rate 200 -o profil.svg -- .venv/bin/python -m benchmarks.national --scale 1
    .venv/bin/py-spy record --format speedscope -o profil.json -- .venv/bin/python -m benchmarks.national --scale 0.1
    .venv/bin/py-spy record --gil --threads -o gil.svg -- .venv/bin/python -m benchmarks.national --scale 1

With `--gil`, only the thread holding the GIL is sampled: what serialises the steps' threads
(matplotlib, pyogrio's GeoPackage writer, shapely's WKB and GeoJSON writers hold it).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import shutil
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from benchmarks.national import inputs_for, run_pipeline

ROOT = Path(__file__).resolve().parent.parent
ANCHORS = ("site-packages/", str(ROOT) + "/", sysconfig.get_paths()["stdlib"] + "/")
FRAMEWORK = ("dagster/", "dagster_shared/")  # the step's enclosing frames: left out of the cumulative list
END_EVENTS = ("STEP_SUCCESS", "STEP_FAILURE")


class StepSwitch:
    """Swaps the whole-run profiler for the step's while the step `key` runs."""

    def __init__(self, whole: cProfile.Profile, step: cProfile.Profile, key: str | None) -> None:
        self.whole, self.step, self.key = whole, step, key
        self.seen: list[str] = []
        self.ran = False

    def __call__(self, event_type: str, step_key: str) -> None:
        if event_type == "STEP_START":
            self.seen.append(step_key)
        if step_key != self.key:
            return
        if event_type == "STEP_START":
            self.whole.disable()
            self.step.enable()
            self.ran = True
        elif event_type in END_EVENTS:
            self.step.disable()
            self.whole.enable()


def where(file: str, line: int, name: str) -> str:
    """`module/file.py:line(name)`, short: from the project root or site-packages."""
    if file == "~":
        return name  # a builtin
    path = file
    for anchor in ANCHORS:
        if anchor in path:
            path = path.split(anchor, 1)[1]
            break
    return f"{path}:{line}({name})"


def top_lines(stats: pstats.Stats, key: str, count: int) -> list[str]:
    """The `count` functions with the highest `key` (`cumulative` or `internal`) time; by
    cumulative time, Dagster's own frames (around every step) are left out."""
    index = 3 if key == "cumulative" else 2
    rows = [
        item
        for item in stats.stats.items()
        if key != "cumulative" or not any(where(*item[0]).startswith(f) for f in FRAMEWORK)
    ]
    rows = sorted(rows, key=lambda item: item[1][index], reverse=True)[:count]
    lines = [f"  {'appels':>10} {'propre_s':>9} {'cumulé_s':>9}  fonction"]
    for func, (_, calls, own, cumulative, _) in rows:
        lines.append(f"  {calls:10d} {own:9.2f} {cumulative:9.2f}  {where(*func)}")
    return lines


def summary(stats: pstats.Stats, title: str, count: int, keys: tuple[str, ...]) -> str:
    labels = {
        "cumulative": "temps cumulé (la fonction et ce qu'elle appelle ; hors cadre Dagster)",
        "internal": "temps propre",
    }
    parts = []
    for key in keys:
        parts.append(f"\n--- {title} : {count} premières fonctions par {labels[key]} ---")
        parts += top_lines(stats, key, count)
    return "\n".join(parts)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profil", description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=0.1, help="fraction de la France (1 = ~48 600 IRIS)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--etape", help="clé d'une étape Dagster à détailler (ex. iris_accessibilite, sorties)")
    parser.add_argument("--top", type=int, default=30, help="nombre de fonctions listées")
    parser.add_argument("--sortie", type=Path, help="dossier des fichiers .prof (défaut : un dossier temporaire)")
    parser.add_argument(
        "--inputs",
        type=Path,
        help="données générées une fois dans ce dossier et reprises ensuite (comme benchmarks.national)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    out_prof = args.sortie or Path(tempfile.mkdtemp(prefix="fragilite-profil-"))
    out_prof.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix=f"fragilite-profil-{args.scale:g}-"))
    try:
        generated = inputs_for(args.scale, args.seed, root, args.inputs)
        whole, step = cProfile.Profile(), cProfile.Profile()
        switch = StepSwitch(whole, step, args.etape)
        wall0, cpu0 = time.perf_counter(), time.process_time()
        whole.enable()
        try:
            # cProfile sees one thread: the steps run one after the other on this one.
            result, steps, _ = run_pipeline(generated.config, root / "out", on_event=switch, serial=True)
        finally:
            whole.disable()
            step.disable()
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"pipeline sous cProfile : {wall:.1f} s mur, {cpu:.1f} s CPU (le profilage ralentit le code Python)")
    if not result.success:
        print("le pipeline a échoué : profil partiel", file=sys.stderr)
    print(f"\n{args.top} étapes les plus longues (mur, sous profilage) :\n{'étape':<44} {'mur_s':>8}")
    for key, start, end in sorted(steps, key=lambda s: s[2] - s[1], reverse=True)[: args.top]:
        print(f"{key:<44} {end - start:8.2f}")
    whole_file = out_prof / f"profil-{args.scale:g}.prof"
    stats = pstats.Stats(whole)
    if switch.ran:
        stats.add(pstats.Stats(step))
    stats.dump_stats(whole_file)
    print(summary(stats, "tout le pipeline", args.top, ("internal",)))
    written = [whole_file]
    if args.etape:
        if not switch.ran:
            print(
                f"\nétape {args.etape!r} inconnue ou non exécutée ; étapes du run : {', '.join(sorted(set(switch.seen)))}",
                file=sys.stderr,
            )
            return 2
        step_file = out_prof / f"profil-{args.scale:g}-{args.etape}.prof"
        step_stats = pstats.Stats(step)
        step_stats.dump_stats(step_file)
        written.append(step_file)
        print(f"\nétape {args.etape} : {step_stats.total_tt:.2f} s de temps profilé")
        print(summary(step_stats, f"étape {args.etape}", args.top, ("cumulative", "internal")))
    print("\nprofils écrits : " + ", ".join(str(p) for p in written) + " (snakeviz, ou python -m pstats <fichier>)")
    return 0 if result.success else 1


if __name__ == "__main__":
    raise SystemExit(main())

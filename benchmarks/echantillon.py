"""Embedded sample benchmark: what a new user waits for after `make run`.

    python -m benchmarks.echantillon              # three runs of `fragilite run`, as typed
    python -m benchmarks.echantillon --runs 5

Each run is the command itself in a fresh process (imports, Dagster instance, event log, every
method, maille and output of the default run), into a temporary output folder and a temporary
Dagster home (the project's `dagster.yaml`, its folders moved there), so that runs do not share
caches. Per run: wall time, CPU time (user + system of the process and its children) and peak
resident memory. The last line reads
`echantillon wall_s=<median> cpu_s=<median> peak_rss_mb=<max> runs=<n>`.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one_run(index: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="fragilite-echantillon-") as tmp:
        home = Path(tmp) / "dagster"
        home.mkdir()
        # The project's own instance configuration (storages, event log, no log capture), in
        # this run's folder.
        instance = (ROOT / "dagster.yaml").read_text(encoding="utf-8").replace("build/dagster", str(home))
        (home / "dagster.yaml").write_text(instance, encoding="utf-8")
        env = {**os.environ, "DAGSTER_HOME": str(home)}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        done = subprocess.run(
            [str(Path(sys.executable).with_name("fragilite")), "run", "--out", str(Path(tmp) / "sorties")],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            raise SystemExit(f"le calcul de l'échantillon a échoué (code {done.returncode}) :\n{done.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    peak = after.ru_maxrss / 1024  # kB → MB (Linux); the largest child so far
    print(f"run {index}: wall_s={wall:.2f} cpu_s={cpu:.2f} peak_rss_mb={peak:.0f}")
    return {"wall_s": wall, "cpu_s": cpu, "peak_rss_mb": peak}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.echantillon", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    runs = [one_run(i + 1) for i in range(args.runs)]
    print(
        f"echantillon wall_s={statistics.median(r['wall_s'] for r in runs):.2f} "
        f"cpu_s={statistics.median(r['cpu_s'] for r in runs):.2f} "
        f"peak_rss_mb={max(r['peak_rss_mb'] for r in runs):.0f} runs={len(runs)}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

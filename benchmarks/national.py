"""National benchmark: generate a France-scale input set, run the full pipeline, print figures.

    python -m benchmarks.national --scale 1            # all of France (~48,600 IRIS)
    python -m benchmarks.national --scale 0.1,0.5,1    # how cost grows
    python -m benchmarks.national --inputs build/bench # generate once, reuse on the next runs

Every method, every maille, every format and the publication pack run, in one process (steps on
threads, pipelines/executor.py), from local files (no download). Per stage: wall time, CPU time and peak
resident memory, sampled every 20 ms; then output sizes. The last line reads
`total wall_s=<s> cpu_s=<s> peak_rss_mb=<MB> iris=<count>`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.generate import Generated, generate

PAGE = os.sysconf("SC_PAGE_SIZE")
MULTI_ASSET_STEPS = ("sorties",)


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * PAGE / 1e6


@dataclass
class Sampler:
    """Wall clock, process CPU time and resident memory, every `interval` seconds."""

    interval: float = 0.02
    samples: list[tuple[float, float, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), time.process_time(), rss_mb()))
            self._stop.wait(self.interval)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.time(), time.process_time(), rss_mb()))

    def window(self, start: float, end: float) -> tuple[float, float]:
        """CPU seconds and peak RSS between two wall-clock times."""
        inside = [s for s in self.samples if start <= s[0] <= end] or [min(self.samples, key=lambda s: abs(s[0] - end))]
        before = max((s for s in self.samples if s[0] <= start), default=inside[0], key=lambda s: s[0])
        after = min((s for s in self.samples if s[0] >= end), default=inside[-1], key=lambda s: s[0])
        return after[1] - before[1], max(s[2] for s in inside)


def watch_steps(instance: object, on_event: Callable[[str, str], None]) -> None:
    """Call `on_event(event type, step key)` once each step event is stored: in-process, in the
    step's own thread, so a profiler can be switched on and off around one step."""
    handle = instance.handle_new_event

    def handle_and_tell(event, **kwargs) -> None:
        handle(event, **kwargs)
        step_event = event.dagster_event
        if step_event is not None and step_event.step_key is not None:
            on_event(step_event.event_type_value, step_event.step_key)

    instance.handle_new_event = handle_and_tell


def run_pipeline(
    config: Path, out_dir: Path, on_event: Callable[[str, str], None] | None = None, serial: bool = False
) -> tuple[object, list[tuple[str, float, float]], dict[str, float]]:
    """Materialize every territory asset; return the result, the (step, start, end) wall times,
    and the seconds each asset of a multi-asset step took (they overlap within the step).
    `on_event(event type, step key)`, if given, hears each step event as it happens. `serial`:
    the steps one after the other on this thread (Dagster's in-process executor), as a profiler
    of one thread needs them, instead of two at a time on threads as `fragilite run` runs them."""
    import dagster as dg

    from pipelines.definitions import TERRITORY_SELECTION, build_definitions, run_resources
    from pipelines.executor import materialize
    from pipelines.resources import FragiliteConfig

    resource = FragiliteConfig(config_file=str(config), out_dir=str(out_dir))
    defs = build_definitions(resource)
    with dg.DagsterInstance.ephemeral() as instance:
        if on_event is not None:
            watch_steps(instance, on_event)
        result = (dg.materialize if serial else materialize)(
            [*defs.assets, *defs.asset_checks],
            instance=instance,
            selection=TERRITORY_SELECTION,
            resources=run_resources(resource),
            run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
        )
        starts, steps, parts = {}, [], {}
        for entry in instance.all_logs(result.run_id):
            event = entry.dagster_event
            if event is None or event.step_key is None:
                continue
            if event.event_type_value == "STEP_START":
                starts[event.step_key] = entry.timestamp
            elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE") and event.step_key in starts:
                steps.append((event.step_key, starts[event.step_key], entry.timestamp))
            elif event.event_type_value == "ASSET_MATERIALIZATION":
                materialization = event.step_materialization_data.materialization
                if "duree_s" in materialization.metadata:
                    parts[materialization.asset_key.to_user_string()] = materialization.metadata["duree_s"].value
    return result, sorted(steps, key=lambda s: s[1]), parts


def folder_sizes(out_dir: Path) -> dict[str, float]:
    sizes: dict[str, float] = {}
    for path in out_dir.rglob("*"):
        if path.is_file() and "dagster" not in path.parts:
            top = path.relative_to(out_dir).parts[0]
            sizes[top] = sizes.get(top, 0.0) + path.stat().st_size / 1e6
    return dict(sorted(sizes.items()))


def inputs_for(scale: float, seed: int, root: Path, reuse: Path | None) -> Generated:
    """Generate the input set, or reuse the one already generated under `reuse` for this scale and
    seed (generation takes minutes at scale 1; the files are deterministic from the seed)."""
    started = time.perf_counter()
    if reuse is None:
        generated = generate(root / "inputs", scale, seed)
    else:
        folder = reuse / f"scale-{scale:g}-seed-{seed}"
        stamp = folder / "generated.json"
        if stamp.exists():
            generated = Generated(folder=folder, config=folder / "config.yaml", **json.loads(stamp.read_text()))
        else:
            generated = generate(folder, scale, seed)
            facts = {"iris": generated.iris, "communes": generated.communes, "vertices": generated.vertices}
            stamp.write_text(json.dumps(facts), encoding="utf-8")
    print(
        f"\n=== scale {scale:g}: {generated.iris} IRIS, {generated.communes} communes, "
        f"{generated.vertices:,} vertices (ready in {time.perf_counter() - started:.1f} s) ==="
    )
    return generated


def bench(scale: float, seed: int, keep: Path | None, reuse: Path | None = None) -> dict:
    root = Path(tempfile.mkdtemp(prefix=f"fragilite-bench-{scale:g}-"))
    try:
        generated = inputs_for(scale, seed, root, reuse)
        out = root / "out"
        wall0, cpu0 = time.perf_counter(), time.process_time()
        with Sampler() as sampler:
            result, steps, parts = run_pipeline(generated.config, out)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        if not result.success:
            raise SystemExit(f"the pipeline failed at scale {scale}")
        print(f"{'stage':<44} {'wall_s':>8} {'cpu_s':>8} {'peak_rss_mb':>12}")
        for step, start, end in steps:
            cpu_s, peak = sampler.window(start, end)
            print(f"{step:<44} {end - start:8.2f} {cpu_s:8.2f} {peak:12.0f}")
            if step in MULTI_ASSET_STEPS:
                for asset, seconds in parts.items():
                    print(f"  {asset:<42} {seconds:8.2f}  (en parallèle dans l'étape)")
        print("output sizes (MB): " + ", ".join(f"{k} {v:.1f}" for k, v in folder_sizes(out).items()))
        peak = max(s[2] for s in sampler.samples)
        if keep is not None:
            shutil.copytree(out, keep / f"scale-{scale:g}", dirs_exist_ok=True)
        return {"scale": scale, "wall_s": wall, "cpu_s": cpu, "peak_rss_mb": peak, "iris": generated.iris}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.national", description=__doc__.split("\n")[0])
    parser.add_argument("--scale", default="1", help="fraction of the national size, or a comma list (0.1,0.5,1)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--keep", type=Path, help="copy the outputs of each scale into this folder")
    parser.add_argument(
        "--inputs", type=Path, help="generate the input sets into this folder once and reuse them on later runs"
    )
    args = parser.parse_args(argv)
    runs = [bench(float(s), args.seed, args.keep, args.inputs) for s in args.scale.split(",")]
    if len(runs) > 1:
        print("\nscale   iris   wall_s  cpu_s  peak_rss_mb  wall_s per 1,000 IRIS")
        for r in runs:
            print(
                f"{r['scale']:<6g} {r['iris']:6d} {r['wall_s']:7.1f} {r['cpu_s']:6.1f} {r['peak_rss_mb']:11.0f}"
                f"  {1000 * r['wall_s'] / r['iris']:6.2f}"
            )
    last = runs[-1]
    print(
        f"total wall_s={last['wall_s']:.1f} cpu_s={last['cpu_s']:.1f} peak_rss_mb={last['peak_rss_mb']:.0f} "
        f"iris={last['iris']}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

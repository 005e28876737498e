"""The repository holds source only, and the asset graph changes only by a reviewed diff."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

SNAPSHOT = ROOT / "tests" / "snapshots" / "asset_graph.json"
# Folders a run may write into (besides --out); everything else in the checkout is source.
RUN_FOLDERS = {"build", ".venv", ".git", "__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis"}


def asset_graph() -> dict:
    """Keys, groups, dependencies and checks of every asset: what a reviewer must see change."""
    from pipelines.definitions import defs

    graph = defs().resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "groupe": node.group_name,
            "depend_de": sorted(k.to_user_string() for k in node.parent_keys),
            "partitionne": node.is_partitioned,
        }
    checks = sorted(f"{k.asset_key.to_user_string()}:{k.name}" for k in graph.asset_check_keys)
    return {"assets": assets, "controles": checks}


def test_asset_graph_matches_the_reviewed_snapshot():
    """A change to the graph is a reviewed diff: regenerate with FRAGILITE_SNAPSHOT=1 and commit it."""
    current = asset_graph()
    if os.environ.get("FRAGILITE_SNAPSHOT") == "1":
        SNAPSHOT.write_text(json.dumps(current, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    assert current == json.loads(SNAPSHOT.read_text(encoding="utf-8"))


def _tree() -> set[Path]:
    found = set()
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in RUN_FOLDERS and not d.endswith(".egg-info")]
        found.update(Path(folder, f).relative_to(ROOT) for f in files)
    return found


def test_a_run_writes_nothing_outside_build_and_out(tmp_path):
    """Instance storage, step logs and caches of a `fragilite run` stay in build/ (gitignored) and
    --out: nothing lands in the source tree, tracked or not."""
    before = _tree()
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "run", "--territory", "pays-arbresle"],  # default --out
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (ROOT / "build" / "sorties" / "layers" / "iris.parquet").exists()
    assert _tree() - before == set()
    assert (ROOT / "build" / "dagster" / "storage").is_dir()


def test_only_source_is_tracked():
    """No wheel, Dagster storage or run output committed."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    assert not [p for p in tracked if p.endswith((".whl", ".pyc")) or p.split("/")[0] in {"storage", "build", "logs"}]

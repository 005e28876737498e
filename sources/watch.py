"""What changed at the publishers since the last run: new vintages, changed files.

Used by the weekly schedule. A HEAD request gives each file's size and validators (ETag,
Last-Modified); they are compared with what was recorded at the last check, kept in the cache.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import requests

from config.settings import Catalogue

HeadFn = Callable[[str], dict[str, str]]


def http_head(url: str, timeout: float = 20.0) -> dict[str, str]:
    response = requests.head(url, allow_redirects=True, timeout=timeout)
    response.raise_for_status()
    return {k: response.headers.get(k, "") for k in ("Content-Length", "ETag", "Last-Modified")}


def newer_vintages(catalogue: Catalogue, vintage: int) -> list[int]:
    """Census vintages after `vintage` that every RP dataset of the catalogue covers."""
    rp = [d for d in catalogue.datasets.values() if d.input and d.vintage_rule == "rp"]
    common = set.intersection(*(set(d.files) for d in rp)) if rp else set()
    return sorted(int(v) for v in common if v.isdigit() and int(v) > vintage)


def catalogue_changes(catalogue: Catalogue, vintage: int, state_file: Path, head: HeadFn = http_head) -> list[str]:
    """Human-readable changes since the last check; the new state is saved atomically."""
    state = json.loads(state_file.read_text(encoding="utf-8")) if state_file.exists() else {}
    changes = [f"nouveau millésime du recensement au catalogue : RP {v}" for v in newer_vintages(catalogue, vintage)]
    current = {}
    for name, dataset in catalogue.datasets.items():
        if dataset.input is None:
            continue
        key = dataset.vintage_for(vintage)
        if key not in dataset.files:
            continue
        entry = dataset.file(key)
        try:
            current[entry.url] = head(entry.url)
        except requests.RequestException as exc:
            changes.append(f"{name} {key} : inaccessible ({exc})")
            continue
        before = state.get(entry.url)
        if before is not None and before != current[entry.url]:
            changes.append(f"{name} {key} : modifié chez l'éditeur ({before} → {current[entry.url]})")
    state_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = state_file.with_name(state_file.name + ".tmp")
    tmp.write_text(json.dumps({**state, **current}, indent=2), encoding="utf-8")
    os.replace(tmp, state_file)
    return changes


def drop_folder_files(folder: Path) -> dict[str, str]:
    """CSV files of a drop folder with a signature (size and modification time)."""
    if not folder.is_dir():
        return {}
    return {p.name: f"{p.stat().st_size}-{p.stat().st_mtime_ns}" for p in sorted(folder.glob("*.csv"))}

"""Resolve a run's input files from the source catalogue: download or reuse, verify, extract."""

from __future__ import annotations

from pathlib import Path

from config.settings import Catalogue, ConfigError, Dataset, SourceFile
from sources.archives import extract
from sources.download import Fetcher, MissingFile, MissingFilesError, file_digest

ARCHIVE_SUFFIXES = (".zip", ".7z")


def _entry(catalogue: Catalogue, input_key: str, vintage: int) -> tuple[str, Dataset, str, SourceFile] | None:
    """The catalogue file feeding `input_key` at census vintage `vintage` (None: not catalogued)."""
    for name, dataset in catalogue.datasets.items():
        if dataset.input != input_key:
            continue
        key = dataset.vintage_for(vintage)
        if key not in dataset.files:
            available = ", ".join(sorted(dataset.files))
            raise ConfigError(f"sources: no {name} file for RP {vintage} (needs vintage {key}; the catalogue has "
                              f"{available}); choose another --vintage or add the file to config/sources.yaml")
        return name, dataset, key, dataset.file(key)
    return None


def catalogued_inputs(catalogue: Catalogue) -> list[str]:
    return [d.input for d in catalogue.datasets.values() if d.input is not None]


def missing_files(catalogue: Catalogue, vintage: int, fetcher: Fetcher) -> list[MissingFile]:
    """Offline check, before anything runs: every file neither in the cache nor in the mirror."""
    missing = []
    for input_key in catalogued_inputs(catalogue):
        name, _, key, entry = _entry(catalogue, input_key, vintage)
        target = fetcher.cache_path(name, key, entry)
        in_mirror = fetcher.mirror is not None and (fetcher.mirror / entry.cache_name).is_file()
        if not target.exists() and not in_mirror:
            missing.append(MissingFile(name, key, entry.url, target))
    return missing


def resolve_input(catalogue: Catalogue, input_key: str, vintage: int, fetcher: Fetcher,
                  max_bytes: int) -> tuple[Path, dict] | None:
    """The local file to read for one input (downloaded, verified, extracted) and its provenance."""
    found = _entry(catalogue, input_key, vintage)
    if found is None:
        return None
    name, _, key, entry = found
    archive = fetcher.fetch(name, key, entry)
    path = archive
    if entry.member and archive.suffix.lower() in ARCHIVE_SUFFIXES:
        path = extract(archive, entry.member, fetcher.cache_dir / "extracted" / name / key, max_bytes)
    return path, {"dataset": name, "vintage": key, "url": entry.url, "url_verified": entry.url_verified,
                  "sha256": file_digest(archive), "file": str(path)}


def resolve_inputs(catalogue: Catalogue, vintage: int, fetcher: Fetcher, max_bytes: int) -> dict[str, tuple[Path, dict]]:
    """Every catalogued input; offline, all missing files are listed at once first."""
    if fetcher.offline:
        missing = missing_files(catalogue, vintage, fetcher)
        if missing:
            raise MissingFilesError(missing)
    return {k: resolve_input(catalogue, k, vintage, fetcher, max_bytes) for k in catalogued_inputs(catalogue)}

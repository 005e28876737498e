"""Resolve a run's input files from the source catalogue: download or reuse, verify, extract."""

from __future__ import annotations

from pathlib import Path

from config.settings import Catalogue, ConfigError, Dataset, SourceFile
from sources.archives import extract
from sources.download import Fetcher, MissingFile, MissingFilesError, file_digest

ARCHIVE_SUFFIXES = (".zip", ".7z")


def _entry(
    catalogue: Catalogue, input_key: str, vintage: int, quarter: str = "last"
) -> tuple[str, Dataset, str, SourceFile] | None:
    """The catalogue file feeding `input_key` at census vintage `vintage` (None: not catalogued)."""
    for name, dataset in catalogue.datasets.items():
        if dataset.input != input_key:
            continue
        key = dataset.vintage_for(vintage, quarter)
        if not dataset.has_vintage(key):
            available = ", ".join(sorted(dataset.files))
            raise ConfigError(
                f"sources : pas de fichier {name} pour le RP {vintage} (il faut le millésime {key} ; "
                f"le catalogue a {available}) ; choisissez un autre --vintage ou ajoutez le fichier "
                "à config/sources.yaml"
            )
        return name, dataset, key, dataset.file(key)
    return None


def catalogued_inputs(catalogue: Catalogue) -> list[str]:
    return [d.input for d in catalogue.datasets.values() if d.input is not None]


def dataset_of(catalogue: Catalogue, input_key: str) -> Dataset | None:
    return next((d for d in catalogue.datasets.values() if d.input == input_key), None)


def is_optional(catalogue: Catalogue, input_key: str) -> bool:
    """Optional inputs (catalogue `optional: true`) degrade to a warning when they fail."""
    dataset = dataset_of(catalogue, input_key)
    return dataset is not None and dataset.optional


def census_vintages(catalogue: Catalogue) -> list[int]:
    """Census vintages for which every required catalogued input has a file, oldest first."""
    required = [d for d in catalogue.datasets.values() if d.input is not None and not d.optional]
    rp_years = {int(v) for d in required if d.vintage_rule == "rp" for v in d.files if v.isdigit()}
    return sorted(y for y in rp_years if all(d.has_vintage(d.vintage_for(y)) for d in required))


def latest_vintage(catalogue: Catalogue) -> int:
    """The most recent census vintage the catalogue covers completely."""
    vintages = census_vintages(catalogue)
    if not vintages:
        raise ConfigError(
            "sources : aucun millésime du recensement n'a tous ses fichiers dans le catalogue (config/sources.yaml)"
        )
    return vintages[-1]


def missing_files(catalogue: Catalogue, vintage: int, fetcher: Fetcher, quarter: str = "last") -> list[MissingFile]:
    """Offline check, before anything runs: every file neither in the cache nor in the mirror."""
    missing = []
    for input_key in catalogued_inputs(catalogue):
        name, _, key, entry = _entry(catalogue, input_key, vintage, quarter)
        target = fetcher.cache_path(name, key, entry)
        in_mirror = fetcher.mirror is not None and (fetcher.mirror / entry.cache_name).is_file()
        if not target.exists() and not in_mirror:
            missing.append(
                MissingFile(name, key, entry.url, target, optional=dataset_of(catalogue, input_key).optional)
            )
    return missing


def resolve_input(
    catalogue: Catalogue, input_key: str, vintage: int, fetcher: Fetcher, max_bytes: int, quarter: str = "last"
) -> tuple[Path, dict] | None:
    """The local file to read for one input (downloaded, verified, extracted) and its provenance.

    Provenance carries `geography`, the year of the file's commune and IRIS codes, which decides
    how they are mapped onto the census geography."""
    found = _entry(catalogue, input_key, vintage, quarter)
    if found is None:
        return None
    name, _, key, entry = found
    archive = fetcher.fetch(name, key, entry)
    digest = file_digest(archive)
    path = archive
    if entry.member and archive.suffix.lower() in ARCHIVE_SUFFIXES:
        path = extract(
            archive, entry.member, fetcher.cache_dir / "extracted" / name / key, max_bytes, archive_sha256=digest
        )
    return path, {
        "dataset": name,
        "vintage": key,
        "url": entry.url,
        "url_verified": entry.url_verified,
        "sha256": digest,
        "file": str(path),
        "geography": entry.geography,
    }


def resolve_inputs(
    catalogue: Catalogue, vintage: int, fetcher: Fetcher, max_bytes: int, quarter: str = "last"
) -> dict[str, tuple[Path, dict] | Exception]:
    """Every catalogued input. Offline, every missing required file is listed at once first; a
    failing optional input is returned as its exception (the caller reports it)."""
    if fetcher.offline:
        missing = [m for m in missing_files(catalogue, vintage, fetcher, quarter) if not m.optional]
        if missing:
            raise MissingFilesError(missing)
    resolved: dict[str, tuple[Path, dict] | Exception] = {}
    for key in catalogued_inputs(catalogue):
        try:
            resolved[key] = resolve_input(catalogue, key, vintage, fetcher, max_bytes, quarter)
        except Exception as exc:  # noqa: BLE001 - re-raised below unless the input is optional
            if not is_optional(catalogue, key):
                raise
            resolved[key] = exc
    return resolved

"""Resolve a run's input files from the source catalogue: download or reuse, verify, extract.

Most inputs are one file. An input fed by several files — ARCEP's building files (two datasets,
one file per département of the study territory, or the national pair for all of France) or
« Mon réseau mobile » (one file per operator) — resolves to a folder under the cache holding
links to exactly the files of this selection, which is what `inputs.<key>` expects as a folder.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from config.settings import Catalogue, ConfigError, Dataset, SourceFile
from sources.archives import extract
from sources.download import DownloadError, Fetcher, MissingFile, MissingFilesError, file_digest, format_size

ARCHIVE_SUFFIXES = (".zip", ".7z")
NATIONAL = "national"
MAX_NAMED_SELECTION = 8  # up to this many départements, the selection folder is named after them


@dataclass(frozen=True)
class PlannedFile:
    """One file a run needs: which input and dataset, its vintage and its group (a département,
    `national`, or a part such as an operator; None for a single-file input)."""

    input: str
    dataset: str
    vintage: str
    entry: SourceFile
    group: str | None
    optional: bool

    @property
    def size(self) -> tuple[int | None, bool]:
        """Size in bytes and whether it is exact (`size`) or approximate (`size_hint`)."""
        if self.entry.size is not None:
            return self.entry.size, True
        return self.entry.size_hint, False


class NoFileObtained(DownloadError):
    """Not one complete group of a multi-file input could be had; `provenance` says what is missing."""

    def __init__(self, message: str, provenance: dict):
        super().__init__(message)
        self.provenance = provenance


def _entry(
    catalogue: Catalogue, input_key: str, vintage: int, quarter: str = "last"
) -> tuple[str, Dataset, str, SourceFile] | None:
    """The catalogue file feeding `input_key` at census vintage `vintage` (None: not catalogued)."""
    found = _entries(catalogue, input_key, vintage, quarter)
    return found[0] if found else None


def _entries(
    catalogue: Catalogue, input_key: str, vintage: int, quarter: str = "last"
) -> list[tuple[str, Dataset, str, SourceFile]]:
    """Every dataset feeding `input_key`, with the vintage and entry a census vintage needs."""
    out = []
    for name, dataset in datasets_of(catalogue, input_key):
        key = dataset.vintage_for(vintage, quarter)
        if not dataset.has_vintage(key):
            available = ", ".join(sorted(dataset.files))
            raise ConfigError(
                f"sources : pas de fichier {name} pour le RP {vintage} (il faut le millésime {key} ; "
                f"le catalogue a {available}) ; choisissez un autre --vintage ou ajoutez le fichier "
                "à config/sources.yaml"
            )
        out.append((name, dataset, key, dataset.file(key)))
    return out


def catalogued_inputs(catalogue: Catalogue) -> list[str]:
    """The inputs the catalogue feeds, once each, in catalogue order."""
    return list(dict.fromkeys(d.input for d in catalogue.datasets.values() if d.input is not None))


def datasets_of(catalogue: Catalogue, input_key: str) -> list[tuple[str, Dataset]]:
    return [(name, d) for name, d in catalogue.datasets.items() if d.input == input_key]


def dataset_of(catalogue: Catalogue, input_key: str) -> Dataset | None:
    return next((d for _, d in datasets_of(catalogue, input_key)), None)


def is_optional(catalogue: Catalogue, input_key: str) -> bool:
    """Optional inputs (catalogue `optional: true`) degrade to a warning when they fail."""
    datasets = datasets_of(catalogue, input_key)
    return bool(datasets) and all(d.optional for _, d in datasets)


def is_multi_file(catalogue: Catalogue, input_key: str) -> bool:
    """An input resolved to a folder: several datasets, per-département files, or parts."""
    datasets = datasets_of(catalogue, input_key)
    return len(datasets) > 1 or any(d.per_departement or d.parts for _, d in datasets)


def is_per_departement(catalogue: Catalogue, input_key: str) -> bool:
    return any(d.per_departement for _, d in datasets_of(catalogue, input_key))


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


def planned_files(
    catalogue: Catalogue,
    input_key: str,
    vintage: int,
    quarter: str = "last",
    departements: list[str] | None = None,
) -> list[PlannedFile]:
    """The files one input needs. A per-département dataset gives one file per département of
    `departements`, or its national file when `departements` is None (all of France)."""
    out = []
    for name, dataset, key, entry in _entries(catalogue, input_key, vintage, quarter):
        if dataset.per_departement and departements is None:
            if entry.national is None:
                raise ConfigError(
                    f"sources : {name} n'a pas de fichier national dans config/sources.yaml ; donnez un "
                    "territoire (--territory) pour n'en prendre que les départements"
                )
            pairs = [(NATIONAL, entry.national_file())]
        elif dataset.per_departement:
            pairs = [(dep, entry.for_departement(dep)) for dep in departements]
        elif dataset.parts:
            pairs = [(code, entry.with_values(part=code)) for code in dataset.parts]
        else:
            pairs = [(None, entry)]
        out += [PlannedFile(input_key, name, key, e, group, dataset.optional) for group, e in pairs]
    return out


def _available(fetcher: Fetcher, planned: PlannedFile) -> str | None:
    """Where a planned file already is: `cache`, `miroir`, or None (to download)."""
    if fetcher.cache_path(planned.dataset, planned.vintage, planned.entry).exists():
        return "cache"
    if fetcher.mirror is not None and (fetcher.mirror / planned.entry.cache_name).is_file():
        return "miroir"
    return None


def _missing(fetcher: Fetcher, planned: PlannedFile) -> MissingFile:
    size, exact = planned.size
    return MissingFile(
        planned.dataset,
        planned.vintage,
        planned.entry.url,
        fetcher.cache_path(planned.dataset, planned.vintage, planned.entry),
        optional=planned.optional,
        size=size,
        size_exact=exact,
    )


def all_planned(
    catalogue: Catalogue, vintage: int, quarter: str = "last", departements: list[str] | None = None
) -> list[PlannedFile]:
    """Every file of every catalogued input of a run."""
    return [
        p for key in catalogued_inputs(catalogue) for p in planned_files(catalogue, key, vintage, quarter, departements)
    ]


def missing_files(
    catalogue: Catalogue,
    vintage: int,
    fetcher: Fetcher,
    quarter: str = "last",
    departements: list[str] | None = None,
) -> list[MissingFile]:
    """Offline check, before anything runs: every file neither in the cache nor in the mirror,
    with its size when the catalogue knows it."""
    return [
        _missing(fetcher, p)
        for p in all_planned(catalogue, vintage, quarter, departements)
        if _available(fetcher, p) is None
    ]


def plan_lines(
    catalogue: Catalogue,
    vintage: int,
    fetcher: Fetcher,
    quarter: str = "last",
    departements: list[str] | None = None,
) -> list[str]:
    """What a run will read, before anything is downloaded: the files already held, and those to
    download with their sizes (catalogue, else the server's Content-Length) and total."""
    planned = all_planned(catalogue, vintage, quarter, departements)
    held = [p for p in planned if _available(fetcher, p) is not None]
    wanted = [p for p in planned if _available(fetcher, p) is None]
    verb = "absent(s) (hors ligne)" if fetcher.offline else "à télécharger"
    lines = [f"{len(held)} fichier(s) déjà en cache ou dans le miroir, {len(wanted)} {verb}"]
    total, unknown, approximate = 0, 0, False
    for p in wanted:
        size, exact = p.size
        if size is None and not fetcher.offline:
            size, exact = fetcher.remote_size(p.entry.url), True
        if size is None:
            unknown += 1
        else:
            total += size
            approximate |= not exact
        flag = " (facultatif)" if p.optional else ""
        lines.append(f"  {p.dataset:<20} {p.vintage:<8} {p.entry.cache_name:<48} {format_size(size, exact)}{flag}")
    if wanted and len(wanted) > unknown:
        rest = f", plus {unknown} fichier(s) de taille inconnue" if unknown else ""
        lines.append(f"  total {verb} : {format_size(total, not approximate)}{rest}")
    return lines


def resolve_input(
    catalogue: Catalogue,
    input_key: str,
    vintage: int,
    fetcher: Fetcher,
    max_bytes: int,
    quarter: str = "last",
    departements: list[str] | None = None,
) -> tuple[Path, dict] | None:
    """The local file (or folder, for a multi-file input) to read for one input, downloaded,
    verified and extracted, and its provenance.

    Provenance carries `geography`, the year of the file's commune and IRIS codes, which decides
    how they are mapped onto the census geography."""
    if is_multi_file(catalogue, input_key):
        return _resolve_folder(catalogue, input_key, vintage, fetcher, quarter, departements)
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


def _resolve_folder(
    catalogue: Catalogue,
    input_key: str,
    vintage: int,
    fetcher: Fetcher,
    quarter: str,
    departements: list[str] | None,
) -> tuple[Path, dict]:
    """Fetch every file of a multi-file input; keep the groups (départements, national pair,
    parts) whose files all came, and link them into one folder of the cache.

    A département that lacks one of its files is left out whole: buildings without their
    eligibility file would count as premises without any offer. A failing file of an optional
    input is recorded, never the end of the run; of a required one, it is raised."""
    planned = planned_files(catalogue, input_key, vintage, quarter, departements)
    obtained: dict[PlannedFile, Path] = {}
    failures: dict[PlannedFile, str] = {}
    for p in planned:
        try:
            obtained[p] = fetcher.fetch(p.dataset, p.vintage, p.entry)
        except DownloadError as exc:
            if not p.optional:
                raise
            failures[p] = str(exc).splitlines()[0]
    groups = list(dict.fromkeys(p.group for p in planned))
    complete = [g for g in groups if all(p in obtained for p in planned if p.group == g)]
    incomplete = [g for g in groups if g not in complete]
    vintages = sorted({p.vintage for p in planned})
    kept = [p for p in planned if p.group in complete]
    provenance = {
        "dataset": ", ".join(dict.fromkeys(p.dataset for p in planned)),
        "vintage": ", ".join(vintages),
        "url": planned[0].entry.url if planned else "",
        "url_verified": all(p.entry.url_verified for p in planned),
        "sha256": None,
        "geography": None,
        "groupes": groups,
        "groupes_manquants": incomplete,
        "departements": None if departements is None else list(departements),
        "departements_manquants": [g for g in incomplete if is_per_departement(catalogue, input_key)],
        "manquants": [f"{p.entry.cache_name} : {failures[p]}" for p in planned if p in failures],
        "fichiers": [
            {"url": p.entry.url, "fichier": str(obtained[p]), "url_verified": p.entry.url_verified} for p in kept
        ],
    }
    if not complete:
        listed = "; ".join(provenance["manquants"][:6]) or "aucun fichier"
        raise NoFileObtained(f"{input_key} : aucun fichier obtenu ({listed})", provenance)
    folder = _selection_folder(fetcher, input_key, vintages, groups)
    _link_into(folder, [obtained[p] for p in kept])
    provenance["file"] = str(folder)
    return folder, provenance


def _selection_folder(fetcher: Fetcher, input_key: str, vintages: list[str], groups: list[str | None]) -> Path:
    """`<cache>/selections/<input>/<vintage>/<groups>`: one folder per selection, so that a run
    reads its own départements only, whatever else the cache holds."""
    codes = [g or "fichier" for g in groups]
    label = (
        "-".join(codes)
        if len(codes) <= MAX_NAMED_SELECTION
        else f"{len(codes)}-groupes-" + (hashlib.sha256(",".join(codes).encode()).hexdigest()[:12])
    )
    return fetcher.cache_dir / "selections" / input_key / "+".join(vintages) / label


def _link_into(folder: Path, files: list[Path]) -> None:
    """Make `folder` hold exactly `files` (hard links, else symbolic links, else copies)."""
    folder.mkdir(parents=True, exist_ok=True)
    wanted = {f.name: f for f in files}
    for path in folder.iterdir():
        if path.is_symlink() or path.is_file():
            if path.name not in wanted or not _same_file(path, wanted[path.name]):
                path.unlink()
    for name, source in wanted.items():
        target = folder / name
        if target.exists():
            continue
        try:
            os.link(source, target)
        except OSError:
            try:
                target.symlink_to(source.resolve())
            except OSError:
                shutil.copyfile(source, target)


def _same_file(link: Path, source: Path) -> bool:
    try:
        return link.resolve() == source.resolve() or os.path.samefile(link, source)
    except OSError:
        return False


def resolve_inputs(
    catalogue: Catalogue,
    vintage: int,
    fetcher: Fetcher,
    max_bytes: int,
    quarter: str = "last",
    departements: list[str] | None = None,
) -> dict[str, tuple[Path, dict] | Exception]:
    """Every catalogued input. Offline, every missing required file is listed at once first; a
    failing optional input is returned as its exception (the caller reports it)."""
    if fetcher.offline:
        missing = [m for m in missing_files(catalogue, vintage, fetcher, quarter, departements) if not m.optional]
        if missing:
            raise MissingFilesError(missing)
    resolved: dict[str, tuple[Path, dict] | Exception] = {}
    for key in catalogued_inputs(catalogue):
        try:
            resolved[key] = resolve_input(catalogue, key, vintage, fetcher, max_bytes, quarter, departements)
        except Exception as exc:  # noqa: BLE001 - re-raised below unless the input is optional
            if not is_optional(catalogue, key):
                raise
            resolved[key] = exc
    return resolved

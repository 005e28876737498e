"""Safe writing: one output set per run, committed whole.

A run writes every file into a staging folder beside the output folder (each file under a
temporary name first, then renamed), and the whole set replaces the previous one at the end
(`output_transaction`). A run that fails or is killed at any point leaves the previous set
byte for byte; two runs on one output folder cannot interleave (the lock refuses the second).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

# Files written at once by `write_all` (this machine class has two cores).
WRITERS = min(2, os.cpu_count() or 1)


class OutputLockedError(RuntimeError):
    """Another run is writing to the same output folder."""


# Everything the pipeline keeps beside an output folder `<out>` carries this mark in its name:
# the lock, the staging folder of a run, the previous set during the final swap. Nothing else
# is ever removed.
MARK = "fragilite"
MANIFEST = "manifeste.json"


def _beside(out_dir: Path, what: str) -> Path:
    return out_dir.parent / f".{out_dir.name}.{MARK}-{what}"


class OutputFolderError(ValueError):
    """The output folder cannot receive a run's files (checked before anything is computed)."""


def check_output_folder(out_dir: Path) -> None:
    """Refuse, before a run computes anything, an output folder that could never be committed:
    a path that is a file, a parent that cannot be created or written (the staging folder, the
    lock and the swap live beside the folder), a folder another run holds."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputFolderError(f"{out_dir} : c'est un fichier, pas un dossier ; donnez un dossier avec --out")
    parent = out_dir.parent
    existing = next((p for p in (parent, *parent.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise OutputFolderError(f"{out_dir} : {existing} est un fichier ; donnez un dossier avec --out")
    target = parent if parent.exists() else existing
    if target is not None and not _writable(target):
        raise OutputFolderError(
            f"{out_dir} : pas le droit d'écrire dans {target} (la chaîne y écrit le dossier de sortie, "
            "son dossier de préparation et son verrou) ; choisissez un autre dossier avec --out"
        )
    if out_dir.exists() and not _writable(out_dir):
        raise OutputFolderError(f"{out_dir} : dossier en lecture seule ; choisissez un autre dossier avec --out")
    lock = _beside(out_dir, "verrou")
    if lock.exists():  # a lock file outlives its run: only a held lock means another run
        with open(lock, "a+") as handle:
            _lock(handle, out_dir)


def _lock(handle, out_dir: Path) -> None:
    """Take the output folder's lock (held until `handle` closes), or say who holds it."""
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise OutputLockedError(
            f"{out_dir} : un autre calcul fragilite écrit ici ; attendez sa fin ou choisissez un autre dossier avec --out"
        ) from None


def _writable(folder: Path) -> bool:
    """A file can be created in `folder` (tried for real: permissions, read-only mounts, root)."""
    probe = folder / f".{MARK}-sonde-{uuid.uuid4().hex[:8]}"
    try:
        probe.touch(exist_ok=False)
    except OSError:
        return False
    probe.unlink(missing_ok=True)
    return True


@contextmanager
def output_lock(out_dir: Path) -> Iterator[None]:
    """Exclusive, non-blocking lock on an output folder (released when the process dies).

    The lock file stands beside the folder (the folder itself is swapped at each commit). Under
    the lock, what a killed run left is put right: an interrupted swap is completed or undone,
    and staging folders of dead runs are removed.
    """
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    handle = open(_beside(out_dir, "verrou"), "a+")
    try:
        _lock(handle, out_dir)
        _recover(out_dir)
        yield
    finally:
        handle.close()


def _recover(out_dir: Path) -> None:
    """Undo what a run killed during its commit left: the previous set is restored if the new
    one never arrived, or dropped if it did; staging folders are removed."""
    previous = _beside(out_dir, "precedent")
    if previous.exists():
        if out_dir.exists():
            shutil.rmtree(previous)
        else:
            os.rename(previous, out_dir)
    for staging in out_dir.parent.glob(f".{out_dir.name}.{MARK}-*.staging"):
        shutil.rmtree(staging, ignore_errors=True)
    for tmp in out_dir.rglob(f".*.{MARK}.tmp*") if out_dir.exists() else ():
        tmp.unlink(missing_ok=True)  # left by versions that wrote in place


@contextmanager
def output_transaction(out_dir: Path, run_id: str, inputs: dict[str, str] | None = None) -> Iterator[Path]:
    """One output set per run: every file is written into a staging folder beside `out_dir`
    (yielded), and the whole set replaces the previous one at the end, after a manifest (run id,
    inputs' checksums, file list) written last. A run that fails, is interrupted or killed at any
    point leaves the previous set byte for byte. Files of the previous set that the run does not
    rewrite (a partial run, files a user added) are carried over."""
    out_dir = Path(out_dir)
    with output_lock(out_dir):
        staging = _beside(out_dir, f"{run_id[:8]}.staging")
        staging.mkdir(parents=True)
        try:
            yield staging
            _carry_over(out_dir, staging)
            _write_manifest(staging, run_id, inputs or {})
            _swap(out_dir, staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise


def _carry_over(out_dir: Path, staging: Path) -> None:
    """Hard links (else copies) of the previous files the run did not write."""
    if not out_dir.is_dir():
        return
    for old in out_dir.rglob("*"):
        relative = old.relative_to(out_dir)
        new = staging / relative
        if old.is_dir() or new.exists() or relative.name == MANIFEST:
            continue
        new.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(old, new)
        except OSError:
            shutil.copy2(old, new)


def _write_manifest(staging: Path, run_id: str, inputs: dict[str, str]) -> None:
    files = sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file())
    manifest = {
        "run_id": run_id,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "entrees": inputs,
        "fichiers": files,
    }
    path = staging / MANIFEST
    path.write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def _swap(out_dir: Path, staging: Path) -> None:
    """Two renames on one file system: the old set aside, the new one in place (a kill between
    the two is undone by `_recover`), then the old set removed."""
    previous = _beside(out_dir, "precedent")
    if out_dir.exists():
        os.rename(out_dir, previous)
    os.rename(staging, out_dir)
    shutil.rmtree(previous, ignore_errors=True)


def write_all(targets: dict[Path, Callable[[Path], object]], workers: int = WRITERS) -> dict[Path, int]:
    """Call each writer on a temporary sibling path, then rename all into place.

    Writers run on `workers` threads: most of their time is spent in GEOS, DuckDB, Arrow, GDAL
    or zlib, which release the GIL, so two files are written at once on two cores. A writer
    that produces companion files (a shapefile's .dbf, .shx…) returns them as
    {staged path: final path}; they are committed with the rest. Returns the size in bytes of
    each final file. If any writer fails, every staged file is removed and no final file is
    touched.
    """
    staged: dict[Path, Path] = {}  # final → staged (and companions)
    for final in targets:
        final.parent.mkdir(parents=True, exist_ok=True)
        staged[final] = final.with_name(f".{final.stem}.{uuid.uuid4().hex[:8]}.{MARK}.tmp{final.suffix}")

    def run(final: Path) -> None:
        companions = targets[final](staged[final])
        companions = companions if isinstance(companions, dict) else {}
        staged.update({dest: src for src, dest in companions.items()})
        for tmp in [staged[final], *companions]:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())

    try:
        if workers > 1 and len(targets) > 1:
            pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fragilite-write")
            try:
                for future in [pool.submit(run, final) for final in targets]:
                    future.result()  # the first failure is raised here
            finally:
                pool.shutdown(wait=True, cancel_futures=True)  # nothing left running before clean-up
        else:
            for final in targets:
                run(final)
    except BaseException:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)
        raise
    for final, tmp in staged.items():
        os.replace(tmp, final)
    return {final: final.stat().st_size for final in staged}

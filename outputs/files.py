"""Safe writing: stage every file under a temporary name, then rename them all into place.

A run that fails or is killed mid-write leaves the previous outputs untouched and no partial
file under a final name; two runs on one output folder cannot interleave (the lock refuses the
second).
"""

from __future__ import annotations

import fcntl
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

# Files written at once by `write_all` (this machine class has two cores).
WRITERS = min(2, os.cpu_count() or 1)


class OutputLockedError(RuntimeError):
    """Another run is writing to the same output folder."""


class WritesAbortedError(RuntimeError):
    """The run failed or was interrupted elsewhere: these files were discarded, not published."""


# Set while a run that writes from several threads is failing or being interrupted: the writes
# still running then discard their files instead of publishing them (see `writes_abortable`).
_ABORTED = threading.Event()


@contextmanager
def writes_abortable() -> Iterator[Callable[[], None]]:
    """Around a thread pool whose threads write with `write_all`: gives `abort`, to call when a
    failure or Ctrl-C reaches the pool's owner, after which the writes still running discard
    their files (an interrupted run publishes nothing more). Cleared when the block ends, once
    the pool, entered inside it, has waited for its threads."""
    _ABORTED.clear()
    try:
        yield _ABORTED.set
    finally:
        _ABORTED.clear()


@contextmanager
def output_lock(out_dir: Path) -> Iterator[None]:
    """Exclusive, non-blocking lock on an output folder (released when the process dies)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    handle = open(out_dir / ".fragilite.lock", "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputLockedError(
                f"{out_dir}: another fragilite run is writing here; wait for it to finish or use --out"
            ) from None
        _remove_stale_temporaries(out_dir)
        yield
    finally:
        handle.close()


def _remove_stale_temporaries(out_dir: Path) -> None:
    """Temporary files left by a run that was killed (SIGKILL cannot clean up after itself).

    Only called while holding the lock, so no other writer is using them.
    """
    for tmp in out_dir.rglob(".*.tmp*"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)


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
        staged[final] = final.with_name(f".{final.stem}.{uuid.uuid4().hex[:8]}.tmp{final.suffix}")

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
    if _ABORTED.is_set():
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)
        raise WritesAbortedError(", ".join(str(p) for p in targets))
    for final, tmp in staged.items():
        os.replace(tmp, final)
    return {final: final.stat().st_size for final in staged}

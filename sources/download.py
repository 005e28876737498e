"""Downloads: a cache that never holds a half-written or unverified file.

Each file is streamed to a temporary name in the cache, its size and checksum checked, then
renamed into place. A file the catalogue gives no checksum for is recorded at its first download
(`<name>.sha256` beside it) and checked against that record on every later use.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from config.settings import Settings, SourceFile

RETRY_STATUS = (429, 500, 502, 503, 504)
CHUNK = 1 << 16


class DownloadError(Exception):
    """A file could not be obtained or verified."""


class ChecksumMismatch(DownloadError):
    """The publisher's file differs from the catalogue's checksum."""


@dataclass
class MissingFile:
    dataset: str
    vintage: str
    url: str
    cache_path: Path
    optional: bool = False

    def __str__(self) -> str:
        flag = " (facultatif)" if self.optional else ""
        return (
            f"  - {self.dataset} {self.vintage}{flag} : {self.url}\n"
            f"    à déposer en {self.cache_path} (ou dans le dossier --mirror sous le nom {self.cache_path.name})"
        )


class MissingFilesError(DownloadError):
    """Offline, and some files are neither in the cache nor in the mirror."""

    def __init__(self, missing: list[MissingFile]):
        self.missing = missing
        listed = "\n".join(str(m) for m in missing)
        super().__init__(
            f"hors ligne : {len(missing)} fichier(s) absent(s) du cache et du miroir :\n{listed}\n"
            "  correction : téléchargez-les (fragilite fetch --vintage …, sans --offline) ou "
            "déposez-les dans un dossier passé avec --mirror"
        )


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _session(retries: int) -> requests.Session:
    """Retries with exponential backoff on 429/5xx and connection errors (urllib3 level)."""
    retry = Retry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        backoff_factor=0.5,
        status_forcelist=RETRY_STATUS,
        allowed_methods=frozenset({"GET", "HEAD"}),
        respect_retry_after_header=True,
        raise_on_status=False,
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = "fragilite-numerique (open data pipeline)"
    return session


@dataclass
class Fetcher:
    """Get a catalogue file into the cache: from the cache, the mirror, or the network."""

    cache_dir: Path
    mirror: Path | None = None
    offline: bool = False
    accept_changed: bool = False
    timeout_s: float = 60.0
    retries: int = 4
    progress: bool = True
    log: list[str] = field(default_factory=list)

    def cache_path(self, dataset: str, vintage: str, entry: SourceFile) -> Path:
        return self.cache_dir / "downloads" / dataset / vintage / entry.cache_name

    def fetch(self, dataset: str, vintage: str, entry: SourceFile) -> Path:
        target = self.cache_path(dataset, vintage, entry)
        if target.exists():
            self._verify(target, entry, source="cache")
            return target
        if self.mirror is not None and (self.mirror / entry.cache_name).is_file():
            self._install(self.mirror / entry.cache_name, target, entry)
            return target
        if self.offline:
            raise MissingFilesError([MissingFile(dataset, vintage, entry.url, target)])
        self._download(entry, target)
        return target

    # --- internals -------------------------------------------------------------------------

    def _install(self, origin: Path, target: Path, entry: SourceFile) -> None:
        """Copy a file the user holds into the cache, verified like a download."""
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
        try:
            shutil.copyfile(origin, tmp)
            self._check(tmp, entry, origin=str(origin))
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        self._record(target)
        self.log.append(f"copied {origin} → {target}")

    def _download(self, entry: SourceFile, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
        session = _session(self.retries)
        last_error: Exception | None = None
        try:
            for attempt in range(self.retries + 1):
                try:
                    self._stream(session, entry.url, tmp)
                    self._check(tmp, entry, origin=entry.url)
                    os.replace(tmp, target)
                    self._record(target)
                    self.log.append(f"downloaded {entry.url} → {target}")
                    return
                except ChecksumMismatch:
                    raise
                except (requests.RequestException, DownloadError) as exc:
                    last_error = exc
                    tmp.unlink(missing_ok=True)
                    if attempt < self.retries:
                        time.sleep(min(0.5 * 2**attempt, 8.0))
            raise DownloadError(
                f"{entry.url}: download failed after {self.retries + 1} attempt(s): {last_error}\n"
                f"  fix: check the network, or download the file yourself and pass its folder with --mirror"
            )
        finally:
            tmp.unlink(missing_ok=True)
            session.close()

    def _stream(self, session: requests.Session, url: str, tmp: Path) -> None:
        with session.get(url, stream=True, timeout=self.timeout_s) as response:
            if response.status_code >= 400:
                raise DownloadError(f"{url}: HTTP {response.status_code}")
            expected = int(response.headers.get("Content-Length") or 0) or None
            received = 0
            started = time.monotonic()
            with open(tmp, "wb") as fh:
                for chunk in response.iter_content(CHUNK):
                    fh.write(chunk)
                    received += len(chunk)
                    self._show(url, received, expected, started)
                fh.flush()
                os.fsync(fh.fileno())
            if self.progress and sys.stderr.isatty():
                print(file=sys.stderr)
            if expected is not None and received != expected:
                raise DownloadError(f"{url}: truncated body, {received} of {expected} bytes received")

    def _show(self, url: str, received: int, expected: int | None, started: float) -> None:
        if not (self.progress and sys.stderr.isatty()):
            return
        name = url.rsplit("/", 1)[-1][:40]
        rate = received / max(time.monotonic() - started, 1e-6) / 1e6
        if expected:
            done = int(30 * received / expected)
            bar = "#" * done + "." * (30 - done)
            print(
                f"\r  {name:<40} [{bar}] {received / 1e6:7.1f}/{expected / 1e6:.1f} Mo {rate:5.1f} Mo/s",
                end="",
                file=sys.stderr,
                flush=True,
            )
        else:
            print(f"\r  {name:<40} {received / 1e6:7.1f} Mo {rate:5.1f} Mo/s", end="", file=sys.stderr, flush=True)

    def _check(self, path: Path, entry: SourceFile, origin: str) -> None:
        check_format(path, entry.format, origin)
        size = path.stat().st_size
        if entry.size is not None and size != entry.size:
            self._mismatch(origin, f"size {size} bytes, the catalogue says {entry.size}")
        for algorithm in ("md5", "sha256"):
            expected = getattr(entry, algorithm)
            if expected and file_digest(path, algorithm) != expected.lower():
                self._mismatch(origin, f"{algorithm} {file_digest(path, algorithm)}, the catalogue says {expected}")

    def _mismatch(self, origin: str, detail: str) -> None:
        if self.accept_changed:
            self.log.append(f"accepted a changed file from {origin}: {detail}")
            return
        raise ChecksumMismatch(
            f"{origin}: the file differs from the catalogue ({detail}); the publisher may have "
            "changed it.\n  fix: check the publisher's page, then rerun with --accept-changed to use "
            "the new file (and update config/sources.yaml)"
        )

    def _record(self, path: Path) -> None:
        record = path.with_name(path.name + ".sha256")
        tmp = record.with_name(record.name + ".tmp")
        tmp.write_text(file_digest(path) + "\n", encoding="ascii")
        os.replace(tmp, record)

    def _verify(self, path: Path, entry: SourceFile, source: str) -> None:
        """A cached file must still match what was recorded when it came in."""
        record = path.with_name(path.name + ".sha256")
        if not record.exists():
            self._check(path, entry, origin=f"{source} {path}")
            self._record(path)
            return
        if record.read_text(encoding="ascii").strip() != file_digest(path):
            raise DownloadError(
                f"{path}: cached file changed since it was downloaded (checksum differs from {record.name})\n"
                "  fix: delete it (and its .sha256) so that it is downloaded again"
            )


# First bytes of each declared format: a captive portal's HTML page, an error page saved under
# the file's name or a truncated archive is refused before it reaches the cache.
MAGIC = {
    "zip": (b"PK\x03\x04", b"PK\x05\x06"),
    "xlsx": (b"PK\x03\x04",),
    "7z": (b"7z\xbc\xaf\x27\x1c",),
    "xls": (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",),
    "gpkg": (b"SQLite format 3\x00",),
}


def check_format(path: Path, declared: str | None, origin: str) -> None:
    """The file is what the catalogue declares (zip, 7z, xlsx, xls, gpkg by their signature; csv:
    text that is not an HTML page)."""
    if declared is None:
        return
    with open(path, "rb") as fh:
        head = fh.read(512)
    if declared in MAGIC:
        ok = head.startswith(MAGIC[declared])
    else:  # csv
        text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
        ok = bool(head) and not text.startswith((b"<!doctype", b"<html", b"<?xml", b"<head")) and b"\x00" not in head
    if not ok:
        shown = head[:40].decode("latin-1").replace("\n", " ")
        raise DownloadError(
            f"{origin} : le fichier reçu n'est pas au format {declared} attendu (début : {shown!r})\n"
            "  correction : l'adresse renvoie peut-être une page d'erreur ou de connexion ; vérifiez-la dans "
            "un navigateur, ou déposez le vrai fichier dans le dossier --mirror"
        )


def fetcher_from_settings(settings: Settings, progress: bool = True) -> Fetcher:
    options = settings.sources
    return Fetcher(
        cache_dir=options.resolved_cache_dir(),
        mirror=options.mirror,
        offline=options.offline,
        accept_changed=options.accept_changed,
        timeout_s=options.timeout_s,
        retries=options.retries,
        progress=progress,
    )

"""Downloads: a cache that never holds a half-written or unverified file.

Each file is streamed to a temporary name in the cache, its size and checksum checked, then
renamed into place. A file the catalogue gives no checksum for is recorded at its first download
(`<name>.sha256` beside it) and checked against that record on every later use.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
import shutil
import sys
import time
import uuid
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin, urlparse

import requests
import urllib3
from requests.adapters import HTTPAdapter
from tqdm import tqdm
from urllib3.util.retry import Retry

from config.settings import Settings, SourceFile

RETRY_STATUS = (429, 500, 502, 503, 504)
CHUNK = 1 << 16
MAX_REDIRECTS = 10
TMP_PREFIX = ".fragilite-"  # only files named so are ever removed from the cache's folders


class DownloadError(Exception):
    """A file could not be obtained or verified."""


class ChecksumMismatch(DownloadError):
    """The publisher's file differs from the catalogue's checksum."""


class FinalDownloadError(DownloadError):
    """A failure another attempt would not cure: deadline passed, redirect refused."""


def format_size(size: int | None, exact: bool = True) -> str:
    """A size for people: `12,3 Mo`, `≈ 1,35 Go`, `taille inconnue`."""
    if size is None:
        return "taille inconnue"
    value, unit = (size / 1e9, "Go") if size >= 1e9 else (size / 1e6, "Mo") if size >= 1e5 else (size / 1e3, "ko")
    text = f"{value:.{2 if unit == 'Go' else 1}f} {unit}".replace(".", ",")
    return text if exact else f"≈ {text}"


@dataclass
class MissingFile:
    dataset: str
    vintage: str
    url: str
    cache_path: Path
    optional: bool = False
    size: int | None = None  # bytes, when the catalogue knows it
    size_exact: bool = True  # False: the catalogue's approximate `size_hint`

    def __str__(self) -> str:
        flag = " (facultatif)" if self.optional else ""
        size = f" ({format_size(self.size, self.size_exact)})" if self.size is not None else ""
        return (
            f"  - {self.dataset} {self.vintage}{flag}{size} : {self.url}\n"
            f"    à déposer en {self.cache_path} (ou dans le dossier --mirror sous le nom {self.cache_path.name})"
        )


class MissingFilesError(DownloadError):
    """Offline, and some files are neither in the cache nor in the mirror."""

    def __init__(self, missing: list[MissingFile]):
        self.missing = missing
        listed = "\n".join(str(m) for m in missing)
        sizes = [m.size for m in missing if m.size is not None]
        total = f" ({format_size(sum(sizes), all(m.size_exact for m in missing if m.size is not None))} connus)"
        super().__init__(
            f"hors ligne : {len(missing)} fichier(s) absent(s) du cache et du miroir{total if sizes else ''} :\n"
            f"{listed}\n"
            "  correction : téléchargez-les (fragilite fetch --vintage …, sans --offline) ou "
            "déposez-les dans un dossier passé avec --mirror"
        )


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _CappedRetry(Retry):
    """urllib3's retries, with the server's `Retry-After` capped: `Retry-After: 100000` would
    otherwise put the run to sleep for a day per attempt."""

    max_retry_after: float = 60.0

    def parse_retry_after(self, retry_after: str) -> float:
        return min(super().parse_retry_after(retry_after), self.max_retry_after)


def _session(retries: int, max_retry_after: float = 60.0) -> requests.Session:
    """Retries with exponential backoff on 429/5xx and connection errors (urllib3 level).
    Redirects are not followed here: `Fetcher` follows them itself, checking each target."""
    retry_class = type("CappedRetry", (_CappedRetry,), {"max_retry_after": max_retry_after})
    retry = retry_class(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        redirect=0,
        backoff_factor=0.5,
        status_forcelist=RETRY_STATUS,
        allowed_methods=frozenset({"GET", "HEAD"}),
        respect_retry_after_header=True,
        raise_on_status=False,
        raise_on_redirect=False,
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = "fragilite-numerique (open data pipeline)"
    session.headers["Accept-Encoding"] = "gzip, deflate"  # the encodings `_Decoder` undoes
    return session


@dataclass
class Fetcher:
    """Get a catalogue file into the cache: from the cache, the mirror, or the network.

    `hosts`: the catalogue's declared hosts; a redirect elsewhere is refused (empty: any host).
    A redirect from https to http is always refused. `deadline_s` bounds a file's whole
    download, retries included; after `rate_grace_s`, an attempt slower on average than
    `min_rate_bps` bytes/s is abandoned (a server trickling one byte a second never times out).
    """

    cache_dir: Path
    mirror: Path | None = None
    offline: bool = False
    accept_changed: bool = False
    timeout_s: float = 60.0
    retries: int = 4
    # Progress bars on stderr: True (or "auto") when stderr is a terminal, "always" when asked
    # (FRAGILITE_PROGRESS=1), False never: never control characters in logs or tests.
    progress: bool | str = True
    log: list[str] = field(default_factory=list)
    hosts: tuple[str, ...] = ()
    deadline_s: float = 3600.0
    min_rate_bps: float = 10_000.0
    rate_grace_s: float = 30.0
    max_retry_after_s: float = 60.0

    def cache_path(self, dataset: str, vintage: str, entry: SourceFile) -> Path:
        """Where a catalogue file is cached: always inside the cache folder, whatever the
        catalogue's dataset names, vintages, URLs or file names say."""
        root = (self.cache_dir / "downloads").resolve()
        path = (root / dataset / vintage / entry.cache_name).resolve()
        if root not in path.parents or not entry.cache_name or entry.cache_name in (".", ".."):
            raise DownloadError(
                f"{dataset} {vintage} : le catalogue placerait le fichier hors du cache ({path}) ; "
                "corrigez le nom du jeu, le millésime, l'adresse ou `filename` dans config/sources.yaml"
            )
        return path

    @property
    def shows_progress(self) -> bool:
        return progress_shown(self.progress, from_environment=False)  # applied by fetcher_from_settings

    def remote_size(self, url: str, timeout_s: float = 10.0) -> int | None:
        """The size the server announces (HEAD, redirects checked like a download), for the plan
        shown before downloading; None when it does not say or does not answer."""
        session = _session(0, self.max_retry_after_s)
        try:
            for _ in range(MAX_REDIRECTS + 1):
                response = session.head(url, timeout=min(self.timeout_s, timeout_s), allow_redirects=False)
                if not response.is_redirect:
                    break
                location = urljoin(url, response.headers["Location"])
                self._check_redirect(url, location)
                url = location
            else:
                return None
            if response.status_code >= 400 or response.headers.get("Content-Encoding"):
                return None
            return int(response.headers.get("Content-Length") or 0) or None
        except (requests.RequestException, DownloadError, ValueError):
            return None
        finally:
            session.close()

    def fetch(self, dataset: str, vintage: str, entry: SourceFile) -> Path:
        target = self.cache_path(dataset, vintage, entry)
        if target.parent.is_dir():
            self._remove_stale(target)
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

    def _temporary(self, target: Path) -> Path:
        """A fresh temporary beside `target`, named so that `_remove_stale` can recognise it."""
        target.parent.mkdir(parents=True, exist_ok=True)
        return target.with_name(f"{TMP_PREFIX}{target.name}.{uuid.uuid4().hex[:8]}.part")

    def _remove_stale(self, target: Path) -> None:
        """Remove the temporaries of `target` a killed run left: those older than the deadline,
        which no live download still writes. Only this project's, and only inside the cache."""
        folder = target.parent.resolve()
        if not folder.is_relative_to(self.cache_dir.resolve()):
            return
        pattern = re.compile(rf"{re.escape(TMP_PREFIX + target.name)}\.[0-9a-f]{{8}}\.part")
        cutoff = time.time() - self.deadline_s
        for path in folder.iterdir():
            if pattern.fullmatch(path.name) and path.is_file() and not path.is_symlink():
                if path.stat().st_mtime < cutoff:
                    path.unlink(missing_ok=True)
                    self.log.append(f"removed stale temporary {path}")

    def _install(self, origin: Path, target: Path, entry: SourceFile) -> None:
        """Copy a file the user holds into the cache, verified like a download."""
        tmp = self._temporary(target)
        try:
            shutil.copyfile(origin, tmp)
            self._check(tmp, entry, origin=str(origin))
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        self._record(target)
        self.log.append(f"copied {origin} → {target}")

    def _download(self, entry: SourceFile, target: Path) -> None:
        tmp = self._temporary(target)
        deadline = time.monotonic() + self.deadline_s
        session = _session(self.retries, self.max_retry_after_s)
        last_error: Exception | None = None
        try:
            for attempt in range(self.retries + 1):
                try:
                    complete = self._stream(session, entry, tmp, deadline)
                    self._check(tmp, entry, origin=entry.url)
                    if not complete:
                        check_complete(tmp, _format_of(entry), entry.url)
                    os.replace(tmp, target)
                    self._record(target)
                    self.log.append(f"downloaded {entry.url} → {target}")
                    return
                except (ChecksumMismatch, FinalDownloadError):
                    raise
                except (requests.RequestException, DownloadError) as exc:
                    last_error = exc
                    tmp.unlink(missing_ok=True)
                    pause = min(0.5 * 2**attempt, 8.0)
                    if attempt < self.retries and time.monotonic() + pause < deadline:
                        time.sleep(pause)
                    elif attempt < self.retries:
                        break
            raise DownloadError(
                f"{entry.url} : échec du téléchargement après {attempt + 1} essai(s) : {last_error}\n"
                "  correction : vérifiez le réseau, ou téléchargez le fichier vous-même et passez son dossier "
                "avec --mirror"
            )
        finally:
            tmp.unlink(missing_ok=True)
            session.close()

    def _stream(self, session: requests.Session, entry: SourceFile, tmp: Path, deadline: float) -> bool:
        """Write the body to `tmp`; True when its length was checked against Content-Length.

        The raw bytes are read (`decode_content=False`) so that their count is compared with
        Content-Length, which counts encoded bytes; a gzip body is decoded here, into `tmp`."""
        url = entry.url
        with self._open(session, url, deadline) as response:
            if response.status_code >= 400:
                raise DownloadError(f"{response.url} : HTTP {response.status_code}")
            _refuse_html(response, entry)
            expected = int(response.headers.get("Content-Length") or 0) or None
            encoding = response.headers.get("Content-Encoding", "")
            if _format_of(entry) == "gz" and encoding.strip().lower() in ("gzip", "x-gzip"):
                encoding = ""  # a .gz file served as gzip-encoded: the gzip bytes are the file
            decoder = _Decoder(response.url, encoding)
            received, started = 0, time.monotonic()
            bar = self._bar(entry.cache_name, expected)
            try:
                with open(tmp, "wb") as fh:
                    while chunk := response.raw.read1(CHUNK, decode_content=False):
                        received += len(chunk)
                        fh.write(decoder.feed(chunk))
                        self._pace(url, received, started, deadline)
                        bar.update(len(chunk))
                    fh.write(decoder.finish())
                    fh.flush()
                    os.fsync(fh.fileno())
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                raise DownloadError(f"{url} : réception interrompue (truncated) : {exc}") from exc
            finally:
                bar.close()
            if expected is not None and received != expected:
                raise DownloadError(f"{url} : corps tronqué (truncated body), {received} octets reçus sur {expected}")
            return expected is not None

    def _open(self, session: requests.Session, url: str, deadline: float) -> requests.Response:
        """GET `url`, following redirects one by one: each target must be a declared host, and
        an https address never hands over to plain http."""
        for _ in range(MAX_REDIRECTS + 1):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise FinalDownloadError(f"{url} : délai de {self.deadline_s:.0f} s dépassé avant la réponse")
            timeout = min(self.timeout_s, remaining)
            response = session.get(url, stream=True, timeout=timeout, allow_redirects=False)
            if not response.is_redirect:
                return response
            location = urljoin(url, response.headers["Location"])
            response.close()
            self._check_redirect(url, location)
            url = location
        raise FinalDownloadError(
            f"{url} : plus de {MAX_REDIRECTS} redirections\n"
            "  correction : ouvrez l'adresse dans un navigateur et mettez à jour l'URL dans config/sources.yaml"
        )

    def _check_redirect(self, origin: str, location: str) -> None:
        old, new = urlparse(origin), urlparse(location)
        host = (new.hostname or "").lower()
        if new.scheme not in ("http", "https"):
            problem = f"protocole {new.scheme!r} non autorisé"
        elif old.scheme == "https" and new.scheme == "http":
            problem = "passage de https à http (non chiffré)"
        elif self.hosts and host not in {h.lower() for h in self.hosts}:
            problem = f"hôte {host!r} absent des hôtes déclarés {list(self.hosts)}"
        else:
            return
        raise FinalDownloadError(
            f"{origin} : redirection refusée vers {location} ({problem})\n"
            "  correction : si l'éditeur a vraiment déplacé le fichier, vérifiez la nouvelle adresse dans un navigateur "
            "puis mettez à jour l'URL (et `hosts`) dans config/sources.yaml, ou déposez le fichier dans --mirror"
        )

    def _pace(self, url: str, received: int, started: float, deadline: float) -> None:
        """Stop a download past its deadline, or one too slow once the grace period is over."""
        now = time.monotonic()
        if now > deadline:
            raise FinalDownloadError(
                f"{url} : délai de {self.deadline_s:.0f} s dépassé ({received} octets reçus)\n"
                "  correction : réessayez plus tard, ou téléchargez le fichier vous-même et passez son dossier "
                "avec --mirror"
            )
        elapsed = now - started
        if elapsed > self.rate_grace_s and received / elapsed < self.min_rate_bps:
            raise DownloadError(
                f"{url} : débit trop faible ({received / elapsed:.0f} octets/s en moyenne sur {elapsed:.0f} s, "
                f"minimum {self.min_rate_bps:.0f})"
            )

    def _bar(self, name: str, expected: int | None) -> tqdm:
        """A progress bar on stderr (size from Content-Length when the server gives it); a
        disabled one, which prints nothing, unless `shows_progress`."""
        return progress_bar(name, expected, enabled=self.shows_progress)

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


class _Decoder:
    """Undo the body's Content-Encoding (gzip or deflate) while it is written; the file saved is
    the decoded content, the length checked the encoded one."""

    def __init__(self, url: str, encoding: str):
        self.url = url
        self.encoding = encoding.strip().lower()
        if self.encoding in ("", "identity"):
            self._inflater = None
        elif self.encoding in ("gzip", "x-gzip", "deflate"):
            self._inflater = zlib.decompressobj(zlib.MAX_WBITS | 32)  # gzip or zlib header
        else:
            raise FinalDownloadError(f"{url} : encodage de contenu {encoding!r} non pris en charge")

    def feed(self, data: bytes) -> bytes:
        if self._inflater is None:
            return data
        out = []
        try:
            while data:
                out.append(self._inflater.decompress(data))
                data = self._inflater.unused_data if self._inflater.eof else b""
                if data:  # several gzip members, one after the other
                    self._inflater = zlib.decompressobj(zlib.MAX_WBITS | 32)
        except zlib.error as exc:
            raise DownloadError(f"{self.url} : contenu {self.encoding} illisible ({exc})") from exc
        return b"".join(out)

    def finish(self) -> bytes:
        if self._inflater is None:
            return b""
        if not self._inflater.eof:
            raise DownloadError(f"{self.url} : contenu {self.encoding} tronqué (truncated)")
        return self._inflater.flush()


def _format_of(entry: SourceFile) -> str | None:
    """The declared format, else the one the file's name tells."""
    if entry.format:
        return entry.format
    suffix = Path(entry.cache_name).suffix.lower().lstrip(".")
    return suffix if suffix in ("zip", "7z", "xlsx", "xls", "csv", "gpkg", "gz") else None


def _refuse_html(response: requests.Response, entry: SourceFile) -> None:
    """A `text/html` answer for a data file is a login, error or captive-portal page."""
    content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if content_type not in ("text/html", "application/xhtml+xml"):
        return
    if Path(entry.cache_name).suffix.lower() in (".html", ".htm"):
        return
    raise DownloadError(
        f"{response.url} : le serveur a répondu par une page HTML (Content-Type {content_type}) au lieu du "
        f"fichier {_format_of(entry) or entry.cache_name}\n"
        "  correction : l'adresse renvoie peut-être une page d'erreur ou de connexion (portail captif) ; "
        "vérifiez-la dans un navigateur, ou déposez le vrai fichier dans le dossier --mirror"
    )


def check_complete(path: Path, declared: str | None, origin: str) -> None:
    """A body received without Content-Length could have been cut short: its structure must end
    properly (an archive's end records, a text file's last line)."""
    checks = {"zip": _zip_complete, "xlsx": _zip_complete, "7z": _7z_complete, "csv": _csv_complete}
    checks |= {"xls": _xls_complete, "gpkg": _sqlite_complete, "gz": _gzip_complete}
    problem = checks[declared](path) if declared in checks else None
    if problem:
        raise DownloadError(
            f"{origin} : fichier reçu sans longueur annoncée (Content-Length) et incomplet : {problem} "
            "(truncated)\n  correction : la connexion a sans doute été coupée ; relancez le téléchargement, ou "
            "déposez le fichier dans le dossier --mirror"
        )


SMALL_ZIP = 64 << 20  # below this size every member's checksum is verified too


def _zip_complete(path: Path) -> str | None:
    if not zipfile.is_zipfile(path):
        return "l'enregistrement de fin d'archive zip est absent"
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip() if path.stat().st_size <= SMALL_ZIP else None
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
        return f"archive zip illisible ({exc})"
    return f"membre {bad!r} corrompu" if bad else None


def _7z_complete(path: Path) -> str | None:
    import py7zr

    try:
        with py7zr.SevenZipFile(path) as archive:
            archive.getnames()
    except Exception as exc:  # py7zr raises many kinds on a cut archive
        return f"en-tête de fin de l'archive 7z illisible ({type(exc).__name__}: {exc})"
    return None


def _csv_complete(path: Path) -> str | None:
    """Ends with a line break, and its last line has as many fields as the one before."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        fh.seek(max(size - (1 << 16), 0))
        tail = fh.read()
    if not tail.endswith((b"\n", b"\r")):
        return "la dernière ligne n'est pas terminée"
    lines = [line for line in re.split(rb"\r\n|\r|\n", tail) if line.strip()]
    if len(lines) < 3:
        return None  # too short to compare (the first line of the tail may be cut)
    last, before = (line.decode("latin-1") for line in lines[-2:][::-1])
    for sep in (";", ",", "\t"):
        count = len(next(csv.reader([before], delimiter=sep)))
        if count > 1 and len(next(csv.reader([last], delimiter=sep))) != count:
            return f"la dernière ligne a un nombre de champs différent de la précédente (séparateur {sep!r})"
    return None


def _gzip_complete(path: Path) -> str | None:
    """Every gzip member ends with its trailer (read through once, nothing kept)."""
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
    try:
        with open(path, "rb") as fh:
            while block := fh.read(1 << 20):
                while block:
                    if inflater.eof:  # the next member of a multi-member file
                        inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
                    inflater.decompress(block, 1 << 20)
                    block = inflater.unused_data if inflater.eof else inflater.unconsumed_tail
    except zlib.error as exc:
        return f"flux gzip illisible ({exc})"
    return None if inflater.eof else "flux gzip tronqué (fin de membre absente)"


def _xls_complete(path: Path) -> str | None:
    size = path.stat().st_size
    return None if size and size % 512 == 0 else f"taille {size} octets, pas un multiple des secteurs de 512 octets"


def _sqlite_complete(path: Path) -> str | None:
    with open(path, "rb") as fh:
        header = fh.read(100)
    if len(header) < 100:
        return "en-tête SQLite incomplet"
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    size = path.stat().st_size
    if pages and page_size and size != pages * page_size:
        return f"taille {size} octets au lieu des {pages} pages de {page_size} octets annoncées"
    return None


# First bytes of each declared format: a captive portal's HTML page, an error page saved under
# the file's name or a truncated archive is refused before it reaches the cache.
MAGIC = {
    "zip": (b"PK\x03\x04", b"PK\x05\x06"),
    "xlsx": (b"PK\x03\x04",),
    "7z": (b"7z\xbc\xaf\x27\x1c",),
    "xls": (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",),
    "gpkg": (b"SQLite format 3\x00",),
    "gz": (b"\x1f\x8b",),
}


def check_format(path: Path, declared: str | None, origin: str) -> None:
    """The file is what the catalogue declares (zip, 7z, xlsx, xls, gpkg, gz by their signature; csv:
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


def fetcher_from_settings(
    settings: Settings, progress: bool = True, hosts: tuple[str, ...] | list[str] = ()
) -> Fetcher:
    """The fetcher the settings describe; `hosts`: the catalogue's declared hosts, the only ones a
    redirect may lead to (empty: no restriction)."""
    options = settings.sources
    return Fetcher(
        cache_dir=options.resolved_cache_dir(),
        mirror=options.mirror,
        offline=options.offline,
        accept_changed=options.accept_changed,
        timeout_s=options.timeout_s,
        retries=options.retries,
        progress=_progress_from_environment(progress),
        hosts=tuple(hosts),
    )


def progress_shown(setting: bool | str = True, from_environment: bool = True) -> bool:
    """Whether progress bars print: `setting` True (or "auto") on a terminal, "always" even when
    stderr is not one, False never; FRAGILITE_PROGRESS overrides it (`_progress_from_environment`).
    Never control characters in logs, the UI's runs or tests unless asked."""
    if from_environment:
        setting = _progress_from_environment(setting)
    if setting in ("always", "toujours"):
        return True
    if setting in (True, "auto"):
        return sys.stderr.isatty()
    return False


def progress_bar(label: str, total: float | None, unit: str = "o", enabled: bool | None = None) -> tqdm:
    """The one kind of progress bar of long steps (downloads, extraction, national runs): on
    stderr, a French unit (bytes "o" scaled to ko, Mo, Go), kept on screen when done as the
    step's summary; a disabled bar, which prints nothing, unless `enabled` (default:
    `progress_shown()`)."""
    return tqdm(
        total=total,
        desc=f"  {label[:64]}",
        unit=unit,
        unit_scale=unit == "o",
        unit_divisor=1000,
        file=sys.stderr,
        disable=not (progress_shown() if enabled is None else enabled),
        leave=True,
        dynamic_ncols=True,
        mininterval=0.5,
    )


def _progress_from_environment(default: bool | str) -> bool | str:
    """FRAGILITE_PROGRESS=1 (or toujours) asks for progress bars even when stderr is not a
    terminal; 0 (or jamais) turns them off."""
    asked = os.environ.get("FRAGILITE_PROGRESS", "").strip().lower()
    if asked in ("1", "toujours", "always", "oui"):
        return "always"
    if asked in ("0", "jamais", "never", "non"):
        return False
    return default

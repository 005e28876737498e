"""Safe extraction of zip and 7z archives (INSEE zips, IGN 7z).

Only the members a catalogue entry asks for are extracted, and each is checked first: no absolute
path or `..`, no link, no member (and no total) larger than the limit, no zip member that
decompresses more than `RATIO_LIMIT` times its compressed size. Extraction goes to a temporary
folder renamed into place, so a failure leaves nothing half-extracted.

The extraction folder records the archive's sha256 (`.archive.sha256`) and each extracted file's
path, size and sha256 (`.members.json`): a folder left by another archive, or whose files were
altered or removed since, is wiped and extracted again rather than silently reused.

Extracting IGN's outlines or an ARCEP coverage map writes hundreds of megabytes: a progress bar
(bytes written) shows it on a terminal, or when FRAGILITE_PROGRESS=1 asks (sources.download).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import uuid
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from tqdm import tqdm

from sources.download import progress_bar

SHAPEFILE_COMPANIONS = (".shx", ".dbf", ".prj", ".cpg")
# Uncompressed/compressed ratio above which a zip member is taken for a decompression bomb.
# Real INSEE CSVs compress 5–20 times; members under RATIO_MIN_BYTES are too small to harm
# (and are still bounded by max_bytes), so the ratio is only checked above that size.
RATIO_LIMIT = 200
RATIO_MIN_BYTES = 1 << 20
ARCHIVE_DIGEST_FILE = ".archive.sha256"
MANIFEST_FILE = ".members.json"
_CHUNK = 1 << 20


class ArchiveError(Exception):
    """An archive is corrupt, hostile, or lacks the expected member."""


@dataclass(frozen=True)
class Member:
    name: str
    size: int
    is_link: bool
    is_dir: bool
    compressed: int | None = None  # known for zip members only (7z compresses blocks of files)


def _safe_name(archive: Path, name: str) -> PurePosixPath:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or re.match(r"^[A-Za-z]:", name):
        raise ArchiveError(
            f"{archive} : le membre {name!r} sort du dossier d'extraction (chemin absolu ou « .. ») ; archive refusée\n"
            "  correction : supprimez l'archive du cache et téléchargez-la depuis le site de l'éditeur"
        )
    return path


def _zip_members(archive: Path) -> list[Member]:
    with zipfile.ZipFile(archive) as zf:
        out = []
        for info in zf.infolist():
            mode = info.external_attr >> 16
            out.append(Member(info.filename, info.file_size, stat.S_ISLNK(mode), info.is_dir(), info.compress_size))
        return out


def _7z_members(archive: Path) -> list[Member]:
    import py7zr

    with py7zr.SevenZipFile(archive, "r") as sz:
        return [Member(f.filename, f.uncompressed or 0, f.is_symlink, f.is_directory) for f in sz.list()]


def list_members(archive: Path) -> list[Member]:
    try:
        if zipfile.is_zipfile(archive):
            return _zip_members(archive)
        import py7zr

        if py7zr.is_7zfile(archive):
            return _7z_members(archive)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ArchiveError(
            f"{archive} : archive corrompue ({exc}) ; supprimez-la du cache pour la télécharger de nouveau"
        ) from exc
    except Exception as exc:  # py7zr raises several unrelated types on corrupt input
        raise ArchiveError(
            f"{archive} : archive 7z corrompue ({type(exc).__name__} : {exc}) ; supprimez-la du cache pour la télécharger de nouveau"
        ) from exc
    raise ArchiveError(
        f"{archive} : ni une archive zip ni une archive 7z ; vérifiez le fichier (page HTML téléchargée à la place ?)"
    )


def extract(archive: Path, pattern: str, dest: Path, max_bytes: int, archive_sha256: str | None = None) -> Path:
    """Extract the members whose path matches `pattern` (regex, searched) into `dest`.

    One main file (not a shapefile companion) → returns `dest/<its name>`, companions beside it.
    Several main files of the same name in different folders (IGN: one `CONTOURS-IRIS.shp` per
    part of France) → each folder's files go to `dest/<folder name>/` and `dest` is returned.
    Main files of different names → `ArchiveError`: the pattern must pick one file.

    `dest` is reused only if it was extracted from this very archive (`archive_sha256`, computed
    when not given) and its files are unchanged; otherwise it is wiped and extracted again.
    """
    archive, dest = Path(archive), Path(dest)
    wanted = _select(archive, list_members(archive), pattern)
    for member in wanted:
        _check_member(archive, member, max_bytes)
    _check_total(archive, wanted, max_bytes)
    targets, result = _plan(archive, wanted, pattern)
    digest = (archive_sha256 or _sha256(archive)).lower()
    if not _is_current(dest, digest, list(targets.values())):
        _extract_fresh(archive, wanted, targets, dest, digest, max_bytes)
    return dest / result if result else dest


def source_member(path: Path) -> str | None:
    """The archive path an extracted file came from (its folder names may say what it is, e.g.
    IGN's projection), read from the extraction's manifest; None if not extracted by `extract`."""
    path = Path(path)
    for root in (path.parent, path.parent.parent):
        try:
            files = json.loads((root / MANIFEST_FILE).read_text(encoding="utf-8"))["files"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        relative = path.relative_to(root).as_posix()
        found = next((f.get("member") for f in files if isinstance(f, dict) and f.get("path") == relative), None)
        if found:
            return str(found)
    return None


def _select(archive: Path, members: list[Member], pattern: str) -> list[Member]:
    regex = re.compile(pattern)
    wanted = [m for m in members if not m.is_dir and (regex.search(m.name) or regex.search(PurePosixPath(m.name).name))]
    if not wanted:
        names = [m.name for m in members if not m.is_dir][:15]
        raise ArchiveError(
            f"{archive} : aucun membre ne correspond au motif {pattern!r} ; membres : {names}\n"
            "  correction : l'éditeur a peut-être renommé le fichier : mettez à jour `member` dans config/sources.yaml"
        )
    return wanted


def _check_member(archive: Path, member: Member, max_bytes: int) -> None:
    """Refuse before extracting anything: escaping paths, links, oversized members, zip bombs."""
    _safe_name(archive, member.name)
    if member.is_link:
        raise ArchiveError(f"{archive} : le membre {member.name!r} est un lien ; archive refusée")
    if member.size > max_bytes:
        raise ArchiveError(
            f"{archive} : le membre {member.name!r} fait {member.size / 1e6:.0f} Mo une fois extrait, "
            f"au-delà de la limite de {max_bytes / 1e6:.0f} Mo (sources.max_extract_mb)"
        )
    if member.compressed is not None and member.size > RATIO_MIN_BYTES:
        ratio = member.size / max(member.compressed, 1)
        if ratio > RATIO_LIMIT:
            raise ArchiveError(
                f"{archive} : le membre {member.name!r} se décompresse {ratio:.0f} fois "
                f"({member.compressed} octets → {member.size / 1e6:.0f} Mo), au-delà du rapport de {RATIO_LIMIT} : "
                "bombe de décompression probable ; archive refusée\n"
                "  correction : supprimez l'archive du cache et téléchargez-la de nouveau depuis le site de l'éditeur"
            )


def _check_total(archive: Path, wanted: list[Member], max_bytes: int) -> None:
    total = sum(m.size for m in wanted)
    if total > max_bytes:
        raise ArchiveError(
            f"{archive} : les {len(wanted)} membres retenus font {total / 1e6:.0f} Mo une fois extraits, "
            f"au-delà de la limite de {max_bytes / 1e6:.0f} Mo (sources.max_extract_mb)\n"
            "  correction : resserrez le motif `member` de config/sources.yaml ou relevez sources.max_extract_mb"
        )


def _is_companion(name: str) -> bool:
    return name.lower().endswith(SHAPEFILE_COMPANIONS)


def _plan(archive: Path, wanted: list[Member], pattern: str) -> tuple[dict[str, str], str | None]:
    """Where each member goes, relative to `dest`, and what to return (None: `dest` itself)."""
    mains = [m for m in wanted if not _is_companion(m.name)] or wanted
    basenames = sorted({PurePosixPath(m.name).name for m in mains})
    if len(basenames) > 1:
        listed = ", ".join(m.name for m in mains[:10]) + (" …" if len(mains) > 10 else "")
        raise ArchiveError(
            f"{archive} : le motif `member` {pattern!r} retient {len(mains)} fichiers de noms différents : {listed}\n"
            "  correction : le motif `member` de config/sources.yaml doit désigner exactement un fichier "
            "(par exemple '(?i)^cc_filosofi_2020_COM\\.csv$'), ou un même nom de fichier rangé dans "
            "plusieurs dossiers (un par partie de la France)"
        )
    nested = len(mains) > 1
    targets: dict[str, str] = {}
    for member in wanted:
        path = _safe_name(archive, member.name)
        relative = f"{path.parent.name}/{path.name}" if nested and path.parent.name else path.name
        clash = next((name for name, target in targets.items() if target == relative), None)
        if clash is not None:
            raise ArchiveError(
                f"{archive} : les membres {clash!r} et {member.name!r} seraient extraits au même endroit "
                f"({relative}) ; archive non extraite\n"
                "  correction : resserrez le motif `member` de config/sources.yaml pour ne retenir qu'un des deux"
            )
        targets[member.name] = relative
    main = mains[0]
    return targets, None if nested else targets[main.name]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _is_current(dest: Path, digest: str, expected: Iterable[str]) -> bool:
    """`dest` holds exactly the expected files, from this archive, unaltered (size, then sha256)."""
    try:
        if (dest / ARCHIVE_DIGEST_FILE).read_text(encoding="ascii").strip().lower() != digest:
            return False
        files = json.loads((dest / MANIFEST_FILE).read_text(encoding="utf-8"))["files"]
        recorded = {f["path"]: (int(f["size"]), str(f["sha256"])) for f in files}
    except (OSError, ValueError, KeyError, TypeError):
        return False
    present = {p.relative_to(dest).as_posix() for p in dest.rglob("*") if not p.is_dir()}
    if set(recorded) != set(expected) or present - {ARCHIVE_DIGEST_FILE, MANIFEST_FILE} != set(recorded):
        return False
    for relative, (size, _) in recorded.items():
        path = dest / relative
        if path.is_symlink() or not path.is_file() or path.stat().st_size != size:
            return False
    return all(_sha256(dest / relative) == sha for relative, (_, sha) in recorded.items())


def _extract_fresh(
    archive: Path, wanted: list[Member], targets: dict[str, str], dest: Path, digest: str, max_bytes: int
) -> None:
    """Extract into a temporary sibling of `dest`, then swap it into place."""
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.part")
    raw, out = tmp / "raw", tmp / "out"
    raw.mkdir(parents=True)
    try:
        _extract_to(archive, wanted, raw, max_bytes)
        files, total = [], 0
        for member in wanted:
            source = raw / _safe_name(archive, member.name)
            if source.is_symlink() or not source.is_file():
                raise ArchiveError(
                    f"{archive} : le membre {member.name!r} n'a pas été extrait comme un fichier "
                    "ordinaire ; archive refusée\n  correction : supprimez l'archive du cache et "
                    "téléchargez-la de nouveau"
                )
            size = source.stat().st_size
            total += size
            if size > max_bytes or total > max_bytes:
                raise ArchiveError(
                    f"{archive} : une fois extrait, {member.name!r} dépasse la limite de "
                    f"{max_bytes / 1e6:.0f} Mo (sources.max_extract_mb)\n  correction : resserrez "
                    "le motif `member` ou relevez sources.max_extract_mb"
                )
            target = out / targets[member.name]
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)
            files.append({"path": targets[member.name], "size": size, "sha256": _sha256(target), "member": member.name})
        (out / MANIFEST_FILE).write_text(json.dumps({"files": files}, indent=1, ensure_ascii=False), encoding="utf-8")
        (out / ARCHIVE_DIGEST_FILE).write_text(digest + "\n", encoding="ascii")
        _swap_into_place(out, dest, digest, list(targets.values()))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _swap_into_place(out: Path, dest: Path, digest: str, expected: Iterable[str]) -> None:
    """Replace `dest` by `out`; a stale `dest` is moved aside first, then deleted."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    old = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.old")
    if dest.exists() or dest.is_symlink():
        os.replace(dest, old)
    try:
        os.replace(out, dest)
    except OSError as exc:
        if not _is_current(dest, digest, expected):  # else another process extracted it meanwhile
            raise ArchiveError(
                f"{dest} : impossible de mettre l'extraction en place ({exc})\n"
                "  correction : supprimez ce dossier et relancez"
            ) from exc
    finally:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        elif old.exists() or old.is_symlink():
            old.unlink()


@contextmanager
def extraction_progress(archive: Path, total: int, files: int) -> Iterator[tqdm]:
    """The progress bar of one extraction (bytes written, of `total`), left on screen with the
    number of files as the step's summary; prints nothing unless progress bars are on."""
    bar = progress_bar(f"extraction {Path(archive).name}", total)
    try:
        yield bar
        bar.set_postfix_str(f"{files} fichier(s) extrait(s)", refresh=False)
    finally:
        bar.close()


def extract_7z(archive: Path, names: list[str], folder: Path) -> None:
    """Extract these members of a 7z archive into `folder` (their paths kept), with a progress
    bar. py7zr decompresses a solid block whole, but reports only the bytes it writes."""
    import py7zr
    from py7zr.callbacks import ExtractCallback

    class Progress(ExtractCallback):
        """Bytes written, as py7zr reports them (every second and at each file's end); its
        other events (file started, ended, post-processing) need no display."""

        def report_update(self, decompressed_bytes: str) -> None:
            bar.update(int(decompressed_bytes))

        def report_start_preparation(self) -> None: ...
        def report_start(self, processing_file_path: str, processing_bytes: str) -> None: ...
        def report_end(self, processing_file_path: str, wrote_bytes: str) -> None: ...
        def report_warning(self, message: str) -> None: ...
        def report_postprocess(self) -> None: ...

    wanted = set(names)
    with py7zr.SevenZipFile(archive, "r") as sz:
        sizes = [f.uncompressed or 0 for f in sz.list() if f.filename in wanted]
    with extraction_progress(archive, sum(sizes), len(sizes)) as bar:
        # closing the archive waits for py7zr's reporting thread: every byte is counted
        with py7zr.SevenZipFile(archive, "r") as sz:
            sz.extract(path=folder, targets=names, callback=Progress())


def _extract_to(archive: Path, members: list[Member], folder: Path, max_bytes: int) -> None:
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                with extraction_progress(archive, sum(m.size for m in members), len(members)) as bar:
                    for member in members:
                        target = folder / _safe_name(archive, member.name)
                        target.parent.mkdir(parents=True, exist_ok=True)
                        with zf.open(member.name) as src, open(target, "wb") as out:
                            _bounded_copy(archive, member.name, src, out, max_bytes, bar)
        else:
            extract_7z(archive, [m.name for m in members], folder)
    except ArchiveError:
        raise
    except Exception as exc:
        raise ArchiveError(
            f"{archive} : échec de l'extraction ({type(exc).__name__} : {exc}) ; l'archive est "
            "peut-être tronquée\n  correction : supprimez-la du cache pour la télécharger de nouveau"
        ) from exc


def _bounded_copy(archive: Path, name: str, src: BinaryIO, out: BinaryIO, max_bytes: int, bar: tqdm) -> None:
    """Copy, stopping as soon as the member outgrows the limit its header declared it under."""
    written = 0
    for chunk in iter(lambda: src.read(_CHUNK), b""):
        written += len(chunk)
        if written > max_bytes:
            raise ArchiveError(
                f"{archive} : une fois extrait, {name!r} dépasse la limite de "
                f"{max_bytes / 1e6:.0f} Mo (sources.max_extract_mb) ; archive refusée\n"
                "  correction : supprimez l'archive du cache et téléchargez-la de nouveau"
            )
        out.write(chunk)
        bar.update(len(chunk))

"""Safe extraction of zip and 7z archives (INSEE zips, IGN 7z).

Only the members a catalogue entry asks for are extracted, and each is checked first: no absolute
path or `..`, no link, no member larger than the limit. Extraction goes to a temporary folder
renamed into place, so a failure leaves nothing half-extracted.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

SHAPEFILE_COMPANIONS = (".shx", ".dbf", ".prj", ".cpg")


class ArchiveError(Exception):
    """An archive is corrupt, hostile, or lacks the expected member."""


@dataclass(frozen=True)
class Member:
    name: str
    size: int
    is_link: bool
    is_dir: bool


def _safe_name(archive: Path, name: str) -> PurePosixPath:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or re.match(r"^[A-Za-z]:", name):
        raise ArchiveError(f"{archive}: member {name!r} points outside the extraction folder; archive refused")
    return path


def _zip_members(archive: Path) -> list[Member]:
    with zipfile.ZipFile(archive) as zf:
        out = []
        for info in zf.infolist():
            mode = info.external_attr >> 16
            out.append(Member(info.filename, info.file_size, stat.S_ISLNK(mode), info.is_dir()))
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
        raise ArchiveError(f"{archive}: corrupt archive ({exc}); delete it from the cache to download it again")
    except Exception as exc:  # py7zr raises several unrelated types on corrupt input
        raise ArchiveError(f"{archive}: corrupt 7z archive ({type(exc).__name__}: {exc}); delete it from the cache")
    raise ArchiveError(f"{archive}: neither a zip nor a 7z archive")


def extract(archive: Path, pattern: str, dest: Path, max_bytes: int) -> Path:
    """Extract the members whose path matches `pattern` (regex, searched) into `dest`.

    Returns the main file: the first match that is not a shapefile companion. Already extracted
    (dest exists) → reused.
    """
    members = list_members(archive)
    regex = re.compile(pattern)
    wanted = [m for m in members if not m.is_dir and (regex.search(m.name) or regex.search(PurePosixPath(m.name).name))]
    if not wanted:
        names = [m.name for m in members if not m.is_dir][:15]
        raise ArchiveError(f"{archive}: no member matches {pattern!r}; members: {names}\n"
                           "  fix: the publisher may have renamed the file: update `member` in config/sources.yaml")
    for m in wanted:
        _safe_name(archive, m.name)
        if m.is_link:
            raise ArchiveError(f"{archive}: member {m.name!r} is a link; archive refused")
        if m.size > max_bytes:
            raise ArchiveError(f"{archive}: member {m.name!r} is {m.size / 1e6:.0f} Mo once extracted, "
                               f"over the {max_bytes / 1e6:.0f} Mo limit (sources.max_extract_mb)")
    main = next((m for m in wanted if not m.name.lower().endswith(SHAPEFILE_COMPANIONS)), wanted[0])
    final = dest / PurePosixPath(main.name).name
    if final.exists():
        return final
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.part")
    tmp.mkdir(parents=True)
    try:
        _extract_to(archive, [m.name for m in wanted], tmp)
        dest.mkdir(parents=True, exist_ok=True)
        for m in wanted:
            source = tmp / _safe_name(archive, m.name)
            if source.stat().st_size > max_bytes:
                raise ArchiveError(f"{archive}: member {m.name!r} exceeds the size limit once extracted")
            os.replace(source, dest / PurePosixPath(m.name).name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _extract_to(archive: Path, names: list[str], folder: Path) -> None:
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for name in names:
                    target = folder / _safe_name(archive, name)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(name) as src, open(target, "wb") as out:
                        shutil.copyfileobj(src, out)
        else:
            import py7zr

            with py7zr.SevenZipFile(archive, "r") as sz:
                sz.extract(path=folder, targets=names)
    except ArchiveError:
        raise
    except Exception as exc:
        raise ArchiveError(f"{archive}: extraction failed ({type(exc).__name__}: {exc}); the archive may be "
                           "truncated: delete it from the cache to download it again")

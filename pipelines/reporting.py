"""What assets tell their audiences: a progress line, and metadata for the Dagster UI."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import dagster as dg
import pandas as pd

PROGRESS = logging.getLogger("fragilite.progress")


def report(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext, message: str) -> None:
    """One line per finished step, to the Dagster log (UI) and to the command line."""
    context.log.info(message)
    PROGRESS.info(message)


def table_metadata(frame: pd.DataFrame, preview_rows: int = 5) -> dict:
    """Row count, column schema and a markdown preview, for any table an asset returns."""
    schema = dg.TableSchema(
        columns=[dg.TableColumn(name=str(c), type=str(t)) for c, t in frame.dtypes.items() if str(c) != "geometry"]
    )
    preview = frame.drop(columns=["geometry"], errors="ignore").head(preview_rows)
    return {
        "dagster/row_count": len(frame),
        "dagster/column_schema": schema,
        "apercu": dg.MetadataValue.md(preview.to_markdown(index=False)),
    }


def file_metadata(path: Path) -> dict:
    """Path, size and SHA-256 of an input file, so a reviewer knows exactly what was read. A folder
    (IGN's outlines, one shapefile per part of France) is summed over its files, in name order."""
    files = (
        sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")) if path.is_dir() else [path]
    )
    digest = hashlib.sha256()
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode("utf-8"))
        with open(file, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return {
        "fichier": dg.MetadataValue.path(str(path)),
        "taille_octets": sum(f.stat().st_size for f in files),
        "sha256": digest.hexdigest(),
    }

"""What assets tell their audiences: a progress line, and metadata for the Dagster UI."""

from __future__ import annotations

import functools
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


@functools.cache
def private_prefixes() -> tuple[str, ...]:
    """Column prefixes of data under the secret statistique: the CAF-sourced indicators."""
    from config import load_catalogue

    return tuple(f"{i.id}_" for i in load_catalogue().indicators if i.source == "caf_non_connectes")


@functools.lru_cache(maxsize=64)
def column_descriptions(columns: tuple[str, ...]) -> dict[str, str]:
    """Each column's words from the data dictionary (label — definition (unit)), for the schema the
    Dagster UI shows: the same words as `dictionnaire.csv`, for every table between steps too."""
    from config import load_catalogue, load_tic
    from outputs.dictionary import RunContext, column_texts, data_dictionary

    run = RunContext(millesime_rp=0, vintages={}, methode="", reference="")
    return column_texts(data_dictionary(list(columns), load_catalogue(), load_tic(), run))


def table_metadata(frame: pd.DataFrame, preview_rows: int = 5, descriptions: dict[str, str] | None = None) -> dict:
    """Row count, column schema (described by the dictionary) and a markdown preview, for any
    table an asset returns."""
    names = tuple(str(c) for c in frame.columns if str(c) != "geometry")
    described = descriptions if descriptions is not None else column_descriptions(names)
    schema = dg.TableSchema(
        columns=[
            dg.TableColumn(name=str(c), type=str(t), description=described.get(str(c)))
            for c, t in frame.dtypes.items()
            if str(c) != "geometry"
        ]
    )
    # No raw CAF row in the event log or the UI (secret statistique): previews leave them out.
    private = [c for c in frame.columns if str(c).startswith(private_prefixes())]
    preview = frame.drop(columns=["geometry", *private], errors="ignore").head(preview_rows)
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

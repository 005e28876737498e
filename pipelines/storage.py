"""Intermediate values between steps, stored as files anyone can open.

Every asset value is written under the instance's storage folder (`build/dagster/storage/` for
the embedded instance), one folder per asset: tables as (Geo)Parquet, readable with DuckDB,
pandas or QGIS; the small structures around them (an indicator result's lists of codes, a
method's parameters) as JSON. Nothing is pickled, so a value survives library upgrades and can
be inspected. Within a run, each value is also kept in memory until the last step of the run
that reads it has read it, so that the many steps that read the IRIS outlines do not read them
back from disk, and a value no later step needs is not held through the outputs' step.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import shutil
import threading
import uuid
from pathlib import Path
from typing import Any

import dagster as dg
import geopandas as gpd
import pandas as pd
from dagster._core.execution.plan.outputs import StepOutputHandle

KIND = "kind.json"


def _type_name(obj: object) -> str:
    return f"{type(obj).__module__}:{type(obj).__qualname__}"


def _import(name: str) -> type:
    module, _, qualname = name.partition(":")
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


def _plain(value: object) -> object:
    """numpy scalars, paths, timestamps and sets as JSON values (anything else is refused)."""
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return value.item()
    if isinstance(value, (Path, pd.Timestamp)):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return sorted(value) if isinstance(value, (set, frozenset)) else list(value)
    raise TypeError(type(value).__name__)


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, default=_plain)


def _jsonable(value: object) -> bool:
    try:
        _dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def save(obj: object, folder: Path) -> None:
    """Write `obj` into `folder` (created): tables as Parquet, structures as folders, the rest JSON."""
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(obj, pd.DataFrame):
        geo = isinstance(obj, gpd.GeoDataFrame)
        # No dictionary encoding: tried on every column, it is given up on most of them (unique
        # codes, measures) and cost 40 % of the write; the files come out no larger.
        geoparquet = {"schema_version": "1.1.0"} if geo else {}
        obj.to_parquet(folder / "table.parquet", index=True, use_dictionary=False, **geoparquet)
        attrs = obj.attrs if _jsonable(obj.attrs) else {}
        kind = {"kind": "geotable" if geo else "table", "attrs": attrs}
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for item in dataclasses.fields(obj):
            save(getattr(obj, item.name), folder / item.name)
        kind = {"kind": "dataclass", "type": _type_name(obj), "fields": [f.name for f in dataclasses.fields(obj)]}
    elif isinstance(obj, dict) and not _jsonable(obj):
        keys = list(obj)
        for i, key in enumerate(keys):
            save(obj[key], folder / f"{i:03d}")
        kind = {"kind": "dict", "keys": keys}
    elif isinstance(obj, list) and not _jsonable(obj):
        for i, item in enumerate(obj):
            save(item, folder / f"{i:03d}")
        kind = {"kind": "list", "length": len(obj)}
    elif _jsonable(obj):
        kind = {"kind": "json", "value": obj}
    else:
        raise TypeError(f"stockage intermédiaire : type non pris en charge {_type_name(obj)}")
    (folder / KIND).write_text(_dumps(kind), encoding="utf-8")


def load(folder: Path) -> object:
    """What `save` wrote."""
    kind = json.loads((folder / KIND).read_text(encoding="utf-8"))
    match kind["kind"]:
        case "geotable":
            table = gpd.read_parquet(folder / "table.parquet")
        case "table":
            table = pd.read_parquet(folder / "table.parquet")
        case "dataclass":
            return _import(kind["type"])(**{name: load(folder / name) for name in kind["fields"]})
        case "dict":
            return {key: load(folder / f"{i:03d}") for i, key in enumerate(kind["keys"])}
        case "list":
            return [load(folder / f"{i:03d}") for i in range(kind["length"])]
        case _:
            return kind["value"]
    table.attrs.update(kind["attrs"])
    return table


class _RunValues(dg.IOManager):
    """The IO manager of one run: files under `root`, and this run's values in memory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.values: dict[Path, object] = {}  # this run's values still to be read by its steps
        self.readers: dict[Path, set[str]] = {}  # the steps of this run still to read each of them
        self._lock = threading.Lock()  # steps run two at a time (pipelines/executor.py)

    def _path(self, context: dg.OutputContext | dg.InputContext) -> Path:
        path = self.root.joinpath(*context.asset_key.path)
        return path / context.asset_partition_key if context.has_asset_partitions else path

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        path = self._path(context)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            save(obj, tmp)
            if path.exists():
                shutil.rmtree(path)
            tmp.rename(path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        readers = _readers(context)
        if readers:  # kept in memory until the last step of the run that reads it has
            with self._lock:
                self.values[path], self.readers[path] = obj, readers
        context.add_output_metadata({"stockage": dg.MetadataValue.path(str(path))})

    def load_input(self, context: dg.InputContext) -> object:
        path = self._path(context)
        with self._lock:
            if path in self.values:
                value, readers = self.values[path], self.readers[path]
                readers.discard(context.step_context.step.key)
                if not readers:
                    del self.values[path], self.readers[path]
                return value
        if not (path / KIND).exists():
            raise FileNotFoundError(
                f"valeur intermédiaire absente : {path} ; matérialisez d'abord {context.asset_key.to_user_string()}"
            )
        return load(path)


def _readers(context: dg.OutputContext) -> set[str]:
    """The steps of this run's plan that read this output (an asset's checks read it too)."""
    step_context = context.step_context
    produced = StepOutputHandle(step_context.step.key, context.name)
    return {
        step.key
        for step in step_context.execution_plan.get_steps_to_execute_in_topo_order()
        if any(produced in given.get_step_output_handle_dependencies() for given in step.step_inputs)
    }


class ParquetIOManager(dg.ConfigurableIOManagerFactory):
    """Each asset value in `<base_dir>/valeurs/<asset key>[/<partition>]/` (Parquet and JSON, see
    `save`; default base: the instance's storage folder), written to a temporary folder then
    renamed. The run's own values are also kept in memory for its later steps: consumers must not
    modify their inputs in place (none does, each builds new frames)."""

    base_dir: str | None = None

    def create_io_manager(self, context: dg.InitResourceContext) -> _RunValues:
        return _RunValues(Path(self.base_dir or context.instance.storage_directory()) / "valeurs")

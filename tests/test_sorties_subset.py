"""Each publication can be materialized alone (`sorties` is subsettable): only its files are
rewritten, the rest of the output set is kept as the previous run left it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import dagster as dg
import pytest

from pipelines.definitions import TERRITORY_SELECTION, build_definitions, run_resources
from pipelines.executor import materialize
from pipelines.resources import FragiliteConfig
from tests.conftest import embedded_instance_yaml, write


def _digests(out: Path) -> dict[str, str]:
    return {
        str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name != "manifeste.json"
    }


def _materialized(result: dg.ExecuteInProcessResult) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A whole territory run, then runs of one publication each, on one instance (the later runs
    read the earlier run's stored values)."""
    tmp = tmp_path_factory.mktemp("subset")
    out, home = tmp / "out", tmp / "home"
    home.mkdir()
    write(home / "dagster.yaml", embedded_instance_yaml(home))
    resource = FragiliteConfig(out_dir=str(out))
    defs = build_definitions(resource)
    everything = [*defs.assets, *defs.asset_checks]
    mp = pytest.MonkeyPatch()
    mp.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:

        def run(selection):
            result = materialize(everything, instance=instance, resources=run_resources(resource), selection=selection)
            assert result.success
            return result, _digests(out), json.loads((out / "manifeste.json").read_text(encoding="utf-8"))

        full = run(TERRITORY_SELECTION)
        layer = run(["couche_iris"])
        report = run(["rapport"])
    mp.undo()
    return out, full, layer, report


def test_one_layer_alone_rewrites_only_its_files(runs):
    out, (_, before, _), (result, after, manifest), _ = runs
    assert _materialized(result) == {"couche_iris"}
    step = result.get_step_success_events()
    # upstream values read from the first run's storage; the layer's own check runs with it
    assert {e.step_key for e in step} == {"sorties", "couche_iris_couche_relisible"}
    info = json.loads((out / "layers" / "iris.metadata.json").read_text(encoding="utf-8"))
    assert info["run_id"] == result.run_id == manifest["run_id"]
    changed = {name for name in after if after[name] != before.get(name)}
    # the layer's three files (they carry the run's id and date), nothing else
    assert changed == {"layers/iris.parquet", "layers/iris.gpkg", "layers/iris.metadata.json"}
    assert set(after) == set(before)  # maps, web layers, pack, report, styles all kept
    assert set(manifest["fichiers"]) == set(before)


def test_the_report_alone_keeps_the_published_maps(runs):
    """The report embeds the IRIS map: drawn for it, but `cartes/` is not republished."""
    out, (_, before, _), (_, after_layer, _), (result, after, _) = runs
    assert _materialized(result) == {"rapport"}
    changed = {name for name in after if after[name] != after_layer.get(name)}
    assert changed <= {"rapport.html"}
    assert all(after[name] == before[name] for name in before if name.startswith("cartes/"))
    html = (out / "rapport.html").read_text(encoding="utf-8")
    assert "data:image/png;base64," in html

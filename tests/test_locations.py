"""The UI's two code locations (pipelines/locations.py): the territory one launches nothing
partitioned, so its "Materialize all" is one run; the national one runs the partitions."""

from __future__ import annotations

import dagster as dg

from pipelines.definitions import NATIONAL_GROUP, build_definitions
from pipelines.locations import national_location, territory_location


def _runnable(graph) -> set[dg.AssetKey]:
    return {k for k in graph.get_all_asset_keys() if graph.get(k).is_executable}


def test_the_territory_location_draws_the_national_assets_but_runs_none_of_them():
    location = territory_location()
    dg.Definitions.validate_loadable(location)
    graph = location.resolve_asset_graph()
    full = build_definitions().resolve_asset_graph()
    # the same graph as every run path's (keys, groups, dependencies, partitions, checks)...
    assert graph.get_all_asset_keys() == full.get_all_asset_keys()
    for key in full.get_all_asset_keys():
        node, same = graph.get(key), full.get(key)
        assert (node.group_name, node.parent_keys, node.is_partitioned, node.description) == (
            same.group_name,
            same.parent_keys,
            same.is_partitioned,
            same.description,
        ), key
    assert graph.asset_check_keys == full.asset_check_keys
    # ...where nothing partitioned, nothing national runs: "Materialize all" is one run
    national = {k for k in graph.get_all_asset_keys() if graph.get(k).group_name == NATIONAL_GROUP}
    assert national and _runnable(graph) == graph.get_all_asset_keys() - national
    assert not any(graph.get(k).is_partitioned for k in _runnable(graph))
    jobs = {job.name for job in location.resolve_all_job_defs() if not job.name.startswith("__")}
    assert jobs == {"territoire"}
    assert location.resolve_job_def("territoire").asset_layer.executable_asset_keys == _runnable(graph)
    assert {s.name for s in location.schedules} == {"verification_hebdomadaire"}
    assert {s.name for s in location.sensors} == {"depot_caf"}


def test_the_national_location_runs_the_sources_the_partitions_and_the_merge():
    location = national_location()
    dg.Definitions.validate_loadable(location)
    graph = location.resolve_asset_graph()
    groups = {graph.get(k).group_name for k in graph.get_all_asset_keys()}
    assert groups == {"sources", NATIONAL_GROUP}
    assert _runnable(graph) == graph.get_all_asset_keys()
    # every asset the national ones read is here, runnable
    for key in graph.get_all_asset_keys():
        assert graph.get(key).parent_keys <= graph.get_all_asset_keys(), key
    national = location.resolve_job_def("national")
    assert national.partitions_def is not None
    assert national.asset_layer.executable_asset_keys == {dg.AssetKey("iris_departement")}
    merge = location.resolve_job_def("fusion_nationale")
    assert merge.asset_layer.executable_asset_keys == {dg.AssetKey("france_iris")}
    assert not location.schedules and not location.sensors


def test_the_ui_configuration_comes_from_fragilite_config(tmp_path, monkeypatch):
    config = tmp_path / "interface.yaml"
    config.write_text(f"run:\n  out_dir: {tmp_path / 'sorties'}\n", encoding="utf-8")
    monkeypatch.setenv("FRAGILITE_CONFIG", str(config))
    job = territory_location().resolve_job_def("territoire")
    assert job.tags["fragilite/sortie"] == str(tmp_path / "sorties")

"""Every asset is readable in the UI: group, description, kinds, owner; outputs are checked."""

from __future__ import annotations

import dagster as dg

from pipelines.definitions import defs

GROUPS = {"sources", "transforms", "indice", "offre", "outputs", "national"}


def test_definitions_load_and_describe_every_asset():
    definitions = defs()
    dg.Definitions.validate_loadable(definitions)
    graph = definitions.resolve_asset_graph()
    checked = {k.asset_key for k in graph.asset_check_keys}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.group_name in GROUPS, key
        assert node.description and len(node.description) > 40, key
        assert node.owners, key
        assert any(tag.startswith("dagster/kind/") for tag in node.tags), key
        if node.group_name in ("outputs", "national") and not node.is_partitioned:
            assert key in checked, key


def test_one_job_per_kind_of_run_in_process_and_tagged():
    """`territoire`, `national` and `fusion_nationale` exist on every run path (the UI shows the
    first in the territory location, the other two in the national one, pipelines/locations.py):
    a job never mixes partitioned and unpartitioned assets (no empty backfill dialog), and every
    job runs its steps in one process (on threads), as the command line does."""
    from pipelines.definitions import build_definitions, run_settings, run_tags
    from pipelines.executor import thread_executor
    from pipelines.resources import FragiliteConfig

    definitions = build_definitions()
    graph = definitions.resolve_asset_graph()
    territory = definitions.resolve_job_def("territoire")
    national = definitions.resolve_job_def("national")
    merge = definitions.resolve_job_def("fusion_nationale")
    for job in (territory, national, merge):
        assert job.executor_def is thread_executor, job.name
        assert job.tags["fragilite/commande"] == "ui" and job.tags["fragilite/sortie"], job.name
    territory_keys = territory.asset_layer.executable_asset_keys
    assert territory_keys == {k for k in graph.get_all_asset_keys() if graph.get(k).group_name != "national"}
    assert not any(graph.get(k).is_partitioned for k in territory_keys | merge.asset_layer.executable_asset_keys)
    assert national.partitions_def is not None and national.asset_layer.executable_asset_keys == {
        dg.AssetKey("iris_departement")
    }
    tags = run_tags(run_settings(FragiliteConfig(out_dir="/tmp/ailleurs", reference="epci")))
    assert tags["fragilite/sortie"] == "/tmp/ailleurs" and tags["fragilite/reference"] == "epci"

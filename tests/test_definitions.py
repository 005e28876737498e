"""Every asset is readable in the UI: group, description, kinds, owner; outputs are checked."""

from __future__ import annotations

import dagster as dg

from pipelines.definitions import defs

GROUPS = {"sources", "transforms", "indice", "outputs", "national"}


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

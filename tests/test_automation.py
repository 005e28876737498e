"""The weekly catalogue check and the CAF drop-folder sensor, evaluated without a daemon."""

from __future__ import annotations

import json

import dagster as dg

from config.settings import load_sources
from pipelines.defs.automation import depot_caf, verification_hebdomadaire
from pipelines.resources import FragiliteConfig
from sources.watch import catalogue_changes, newer_vintages
from tests.conftest import write


def test_catalogue_changes_between_checks(tmp_path):
    catalogue = load_sources()
    state = tmp_path / "state.json"
    responses = {}

    def head(url):
        return responses.get(url, {"Content-Length": "100", "ETag": "a", "Last-Modified": ""})

    first = catalogue_changes(catalogue, 2019, state, head)
    assert first == [
        "nouveau millésime du recensement au catalogue : RP 2020",
        "nouveau millésime du recensement au catalogue : RP 2021",
    ]
    assert catalogue_changes(catalogue, 2021, state, head) == []  # same files, nothing new
    url = catalogue.datasets["filosofi_iris"].files["2021"].url
    responses[url] = {"Content-Length": "120", "ETag": "b", "Last-Modified": ""}
    changes = catalogue_changes(catalogue, 2021, state, head)
    assert len(changes) == 1 and changes[0].startswith("filosofi_iris 2021 : modifié chez l'éditeur")
    assert json.loads(state.read_text())[url]["ETag"] == "b"
    assert newer_vintages(catalogue, 2021) == []


def test_schedule_skips_when_the_run_reads_local_files():
    context = dg.build_schedule_context(resources={"fragilite": FragiliteConfig()})
    result = verification_hebdomadaire(context)
    assert isinstance(result, dg.SkipReason) and "run.vintage" in result.skip_message


def test_caf_drop_folder_sensor(tmp_path):
    folder = tmp_path / "depot"
    folder.mkdir()
    config = write(tmp_path / "c.yaml", f"sources:\n  caf_drop_folder: {folder}\n")
    resources = {"fragilite": FragiliteConfig(config_file=str(config))}
    with dg.build_sensor_context(resources=resources) as context:
        assert isinstance(depot_caf(context), dg.SkipReason)
        cursor = context.cursor
    write(folder / "caf69.csv", "code_geo;niveau;millesime;allocataires;non_connectes\n69123;commune;2023;10;2\n")
    with dg.build_sensor_context(cursor=cursor, resources=resources) as context:
        requests = depot_caf(context)
        cursor = context.cursor
    assert len(requests) == 1
    assert requests[0].run_config["resources"]["fragilite"]["config"]["caf_file"] == str(folder / "caf69.csv")
    with dg.build_sensor_context(cursor=cursor, resources=resources) as context:
        assert isinstance(depot_caf(context), dg.SkipReason)  # already seen
    # the file the sensor names becomes the run's CAF input
    assert FragiliteConfig(caf_file=str(folder / "caf69.csv")).settings.inputs.caf_non_connectes == folder / "caf69.csv"

"""End to end through the Dagster UI's API: `dg dev` on 127.0.0.1 with a temporary DAGSTER_HOME,
a CLI run of the sample then the `territoire` job launched over GraphQL as the UI's button does,
the asset graph, jobs, tags, materialization metadata and check results read back, and the
lineage page rendered in headless Chromium; the whole process group is shut down."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import INSTANCE_YAML, ROOT, write

# No "join the community" modal over the lineage page.
UI_INSTANCE_YAML = INSTANCE_YAML + "nux:\n  enabled: false\n"

LAUNCH = """mutation($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename
  ... on LaunchRunSuccess { run { runId } }
  ... on PythonError { message }
  ... on RunConfigValidationInvalid { errors { message } } } }"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Api:
    def __init__(self, port: int):
        self.base = f"http://127.0.0.1:{port}"

    def ready(self) -> bool:
        try:
            return urllib.request.urlopen(f"{self.base}/server_info", timeout=5).status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def query(self, query: str, variables: dict | None = None) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"{self.base}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        answer = json.loads(urllib.request.urlopen(request, timeout=60).read())
        assert "errors" not in answer, answer
        return answer["data"]


@pytest.fixture
def dg_dev(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    write(home / "dagster.yaml", UI_INSTANCE_YAML)
    port = _free_port()
    log = open(tmp_path / "dg-dev.log", "w")
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("dg")), "dev", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env={**os.environ, "DAGSTER_HOME": str(home)},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    api = Api(port)
    try:
        deadline = time.monotonic() + 180
        while not api.ready():
            assert process.poll() is None, (tmp_path / "dg-dev.log").read_text()
            assert time.monotonic() < deadline, "dg dev did not answer within 180 s"
            time.sleep(1)
        yield api, tmp_path, home
    finally:
        # The whole process group (webserver, daemon, code servers), not just the parent.
        os.killpg(process.pid, signal.SIGTERM)
        if not _group_gone(process, timeout=45):
            os.killpg(process.pid, signal.SIGKILL)
            _group_gone(process, timeout=15)
        log.close()
    with pytest.raises(ProcessLookupError):  # no process of the group left behind
        os.killpg(process.pid, 0)


def _group_gone(process: subprocess.Popen, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        process.poll()
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.5)
    return False


RUN = """query($id: ID!) { runOrError(runId: $id) { ... on Run { status startTime endTime
  tags { key value } eventConnection { events { __typename ... on MessageEvent { message } } } } } }"""


def _wait(api: Api, run_id: str, timeout: float = 420) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        run = api.query(RUN, {"id": run_id})["runOrError"]
        if run["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
            return run
        assert time.monotonic() < deadline, f"run still {run['status']}"
        time.sleep(2)


def _cli_run(home: Path, out: Path) -> None:
    """`fragilite run` on the same instance as the UI: its run is the yardstick."""
    subprocess.run(
        [str(Path(sys.executable).with_name("fragilite")), "run", "--out", str(out)],
        cwd=ROOT,
        env={**os.environ, "DAGSTER_HOME": str(home)},
        check=True,
        capture_output=True,
        timeout=600,
    )


def test_run_from_the_ui_api(dg_dev):
    api, tmp_path, home = dg_dev
    location = api.query("{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }")
    entry = location["workspaceOrError"]["locationEntries"][0]
    assert entry["loadStatus"] == "LOADED"

    graph = api.query(
        "{ assetNodes { assetKey { path } groupName description isPartitioned jobNames dependencyKeys { path } } }"
    )["assetNodes"]
    groups = {n["assetKey"]["path"][0]: n["groupName"] for n in graph}
    assert groups["iris_base"] == "transforms" and groups["couche_iris"] == "outputs"
    deps = {n["assetKey"]["path"][0]: [d["path"][0] for d in n["dependencyKeys"]] for n in graph}
    assert "iris_indicateurs" in deps["iris_mednum_2019"] and "iris_scores" in deps["couche_iris"]
    # the national assets show their sources upstream
    assert {"contours_iris", "communes_epci", "rp_evol_struct_pop"} <= set(deps["iris_departement"])
    assert "iris_departement" in deps["france_iris"]
    assert all(n["description"] for n in graph)
    # one job per kind of run, never mixing partitioned and unpartitioned assets (no empty backfill)
    in_job = {job: [n for n in graph if job in n["jobNames"]] for job in ("territoire", "national", "fusion_nationale")}
    assert {n["assetKey"]["path"][0] for n in in_job["territoire"]} == {
        key for key, group in groups.items() if group != "national"
    }
    assert not any(n["isPartitioned"] for n in in_job["territoire"] + in_job["fusion_nationale"])
    assert in_job["national"] and all(n["isPartitioned"] for n in in_job["national"])

    cli_out = tmp_path / "cli"
    _cli_run(home, cli_out)
    runs = api.query("{ runsOrError { ... on Runs { results { runId startTime endTime tags { key value } } } } }")
    cli = runs["runsOrError"]["results"][0]
    cli_tags = {t["key"]: t["value"] for t in cli["tags"]}
    assert cli_tags["fragilite/sortie"] == str(cli_out.resolve()) and cli_tags["fragilite/commande"] == "run"
    cli_seconds = cli["endTime"] - cli["startTime"]

    # the UI's "Materialize all" on the territoire job: no asset selection, no executor given
    out = tmp_path / "out"
    launched = api.query(
        LAUNCH,
        {
            "p": {
                "selector": {
                    "repositoryLocationName": entry["name"],
                    "repositoryName": "__repository__",
                    "jobName": "territoire",
                },
                "runConfigData": {"resources": {"fragilite": {"config": {"out_dir": str(out)}}}},
            }
        },
    )["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    run = _wait(api, run_id)
    assert run["status"] == "SUCCESS"
    assert (out / "layers" / "iris.parquet").exists()
    messages = [e.get("message") or "" for e in run["eventConnection"]["events"]]
    assert any("in process" in m for m in messages) and not any("multiprocess" in m for m in messages)
    ui_seconds = run["endTime"] - run["startTime"]
    print(f"durées de calcul de l'échantillon : CLI {cli_seconds:.1f} s, UI (job territoire) {ui_seconds:.1f} s")
    assert ui_seconds <= 2 * cli_seconds, (ui_seconds, cli_seconds)
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert tags["fragilite/sortie"] == str(out.resolve()) and tags["fragilite/commande"] == "ui"
    assert tags["fragilite/reference"] == "departement" and tags["fragilite/territoire"]
    assert "fragilite/millesime" in tags

    asset = api.query("""{ assetOrError(assetKey: {path: ["couche_iris"]}) { ... on Asset {
        assetMaterializations(limit: 2) { runId metadataEntries { label
          ... on IntMetadataEntry { intValue } ... on TextMetadataEntry { text } ... on PathMetadataEntry { path }
          ... on TableSchemaMetadataEntry { schema { columns { name description } } } } } } } }""")["assetOrError"]
    latest, previous = asset["assetMaterializations"]
    assert latest["runId"] == run_id and previous["runId"] == cli["runId"]
    entries = {e["label"]: e for e in latest["metadataEntries"]}
    assert entries["dagster/row_count"]["intValue"] == 751
    assert entries["crs"]["text"] == "EPSG:2154"
    assert {"dagster/column_schema", "apercu", "fichiers", "bbox"} <= set(entries)
    columns = entries["dagster/column_schema"]["schema"]["columns"]
    assert all(c["description"] for c in columns), [c["name"] for c in columns if not c["description"]]
    # the two output folders are told apart in the asset's history
    folders = [{e["label"]: e for e in m["metadataEntries"]}["dossier_sortie"]["path"] for m in (latest, previous)]
    assert folders == [str(out), str(cli_out.resolve())]

    checks = api.query("""{ assetNodes { assetKey { path } assetChecksOrError { ... on AssetChecks {
        checks { name executionForLatestMaterialization { status } } } } } }""")["assetNodes"]
    results = {
        (n["assetKey"]["path"][0], c["name"]): c["executionForLatestMaterialization"]["status"]
        for n in checks
        for c in n["assetChecksOrError"].get("checks", [])
        if c["executionForLatestMaterialization"]
    }
    assert results[("iris_base", "codes_valides")] == "SUCCEEDED"
    assert results[("couche_iris", "couche_relisible")] == "SUCCEEDED"
    assert results[("dictionnaire", "dictionnaire_complet")] == "SUCCEEDED"
    assert len([s for s in results.values() if s == "SUCCEEDED"]) >= 18

    _lineage_screenshot(api, tmp_path)


def _chromium() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and os.environ.get("FRAGILITE_REQUIRE_CHROMIUM"):
        pytest.fail("chromium is required here (FRAGILITE_REQUIRE_CHROMIUM is set) but not installed")
    return found


def _lineage_screenshot(api: Api, tmp_path: Path) -> None:
    """The global lineage page, rendered by headless Chromium: the asset groups are drawn."""
    chromium = _chromium()
    if chromium is None:
        pytest.skip("chromium not installed (apt-get install chromium)")
    shot = tmp_path / "lineage.png"
    common = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1600,1000",
        "--virtual-time-budget=30000",
    ]
    url = f"{api.base}/asset-groups"
    dom = subprocess.run([*common, "--dump-dom", url], check=True, capture_output=True, text=True, timeout=180).stdout
    for group in ("sources", "transforms", "indice", "outputs", "national"):
        assert group in dom, group
    subprocess.run([*common, f"--screenshot={shot}", url], check=True, capture_output=True, timeout=180)
    from matplotlib.image import imread

    if os.environ.get("FRAGILITE_SCREENSHOTS"):  # kept for a reviewer (a CI artefact)
        shutil.copy(shot, Path(os.environ["FRAGILITE_SCREENSHOTS"]) / "dagster_lignage.png")
    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (1000, 1600)
    # a drawn graph on the page's background, not a blank or error page: many distinct colours
    # (text, boxes, edges), and a few percent of the page not background
    colours, counts = np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0, return_counts=True)
    drawn = 1 - counts.max() / counts.sum()
    assert len(colours) > 200 and drawn > 0.03, (len(colours), drawn)

"""End to end through the Dagster UI's API: `dg dev` on 127.0.0.1 with a temporary DAGSTER_HOME,
a run of the sample launched over GraphQL, then the asset graph, materialization metadata and
check results read back; the whole process group is shut down."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import INSTANCE_YAML, ROOT, write

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
    write(home / "dagster.yaml", INSTANCE_YAML)
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
        yield api, tmp_path
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


def test_run_from_the_ui_api(dg_dev):
    api, tmp_path = dg_dev
    location = api.query("{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }")
    entry = location["workspaceOrError"]["locationEntries"][0]
    assert entry["loadStatus"] == "LOADED"

    graph = api.query("{ assetNodes { assetKey { path } groupName description dependencyKeys { path } } }")[
        "assetNodes"
    ]
    groups = {n["assetKey"]["path"][0]: n["groupName"] for n in graph}
    assert groups["iris_base"] == "transforms" and groups["couche_iris"] == "outputs"
    deps = {n["assetKey"]["path"][0]: [d["path"][0] for d in n["dependencyKeys"]] for n in graph}
    assert "iris_indicateurs" in deps["iris_mednum_2019"] and "iris_scores" in deps["couche_iris"]
    assert all(n["description"] for n in graph)

    out = tmp_path / "out"
    selection = [n["assetKey"] for n in graph if n["groupName"] != "national"]
    launched = api.query(
        LAUNCH,
        {
            "p": {
                "selector": {
                    "repositoryLocationName": entry["name"],
                    "repositoryName": "__repository__",
                    "jobName": "__ASSET_JOB",
                    "assetSelection": selection,
                },
                # no executor given: the code location's default (in-process) applies
                "runConfigData": {"resources": {"fragilite": {"config": {"out_dir": str(out)}}}},
            }
        },
    )["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    deadline = time.monotonic() + 420
    status = ""
    while status not in ("SUCCESS", "FAILURE", "CANCELED"):
        assert time.monotonic() < deadline, f"run still {status}"
        time.sleep(3)
        status = api.query("query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }", {"id": run_id})[
            "runOrError"
        ]["status"]
    assert status == "SUCCESS"
    assert (out / "layers" / "iris.parquet").exists()
    run = api.query(
        """query($id: ID!) { runOrError(runId: $id) { ... on Run { startTime endTime
        eventConnection { events { __typename ... on MessageEvent { message } } } } } }""",
        {"id": run_id},
    )["runOrError"]
    messages = [e.get("message") or "" for e in run["eventConnection"]["events"]]
    assert any("in process" in m for m in messages) and not any("multiprocess" in m for m in messages)
    assert run["endTime"] - run["startTime"] < 90  # a CLI run of the sample: ~10–20 s here

    asset = api.query("""{ assetOrError(assetKey: {path: ["couche_iris"]}) { ... on Asset {
        assetMaterializations(limit: 1) { runId metadataEntries { label
          ... on IntMetadataEntry { intValue } ... on TextMetadataEntry { text } } } } } }""")["assetOrError"]
    materialization = asset["assetMaterializations"][0]
    assert materialization["runId"] == run_id
    entries = {e["label"]: e for e in materialization["metadataEntries"]}
    assert entries["dagster/row_count"]["intValue"] == 751
    assert entries["crs"]["text"] == "EPSG:2154"
    assert {"dagster/column_schema", "apercu", "fichiers", "bbox"} <= set(entries)

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
    assert len([s for s in results.values() if s == "SUCCEEDED"]) >= 18

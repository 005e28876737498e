"""End to end through the Dagster UI: `dg dev` on 127.0.0.1 with a temporary DAGSTER_HOME, a CLI
run of the sample then the `territoire` job launched over GraphQL as the UI's button does, the
asset graph, jobs, tags, materialization metadata and check results read back; then the global
lineage page in headless Chromium, driven over the DevTools protocol: its "Materialize all" is
clicked and one run starts (no backfill dialog). The national location (`fragilite ui
--national`) runs the sources, a département partition and the merge. Every process group
started is shut down."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, embedded_instance_yaml, write


def _ui_instance_yaml(home: Path) -> str:
    """The project's own instance configuration (pooled event log, run queue, run monitoring),
    its folders in `home`; no "join the community" modal over the lineage page."""
    return embedded_instance_yaml(home) + "nux:\n  enabled: false\n"


BIN = Path(sys.executable).parent

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

    def location(self) -> dict:
        entries = self.query("{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }")
        [entry] = entries["workspaceOrError"]["locationEntries"]
        assert entry["loadStatus"] == "LOADED", entry
        return entry

    def launch(self, location: str, job: str, run_config: dict, **params) -> str:
        selector = {"repositoryLocationName": location, "repositoryName": "__repository__", "jobName": job}
        selector.update(params.pop("selector", {}))
        launched = self.query(LAUNCH, {"p": {"selector": selector, "runConfigData": run_config, **params}})
        assert launched["launchRun"]["__typename"] == "LaunchRunSuccess", launched
        return launched["launchRun"]["run"]["runId"]


@contextmanager
def _serve(command: list[str], tmp_path: Path, home: Path, env: dict) -> Iterator[Api]:
    """A Dagster UI command (`dg dev`, `fragilite ui`) in its own process group, until it answers;
    yields its API; then the whole group (webserver, daemon, code servers) is stopped."""
    port = _free_port()
    log_path = tmp_path / f"ui-{port}.log"
    log = open(log_path, "w")
    process = subprocess.Popen(
        [*command, "--port", str(port)],
        cwd=ROOT,
        env={**os.environ, "DAGSTER_HOME": str(home), **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    api = Api(port)
    try:
        deadline = time.monotonic() + 180
        while not api.ready():
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "the Dagster UI did not answer within 180 s"
            time.sleep(1)
        yield api
    finally:
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


def _home(tmp_path: Path) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    write(home / "dagster.yaml", _ui_instance_yaml(home))
    return home


def _ui_config(tmp_path: Path, out: Path) -> dict:
    """FRAGILITE_CONFIG for the UI's runs: the sample, written into `out` (not build/sorties)."""
    config = write(tmp_path / "interface.yaml", f"run:\n  out_dir: {json.dumps(str(out))}\n")
    return {"FRAGILITE_CONFIG": str(config)}


@pytest.fixture
def dg_dev(tmp_path):
    home = _home(tmp_path)
    env = _ui_config(tmp_path, tmp_path / "interface")
    with _serve([str(BIN / "dg"), "dev", "--host", "127.0.0.1"], tmp_path, home, env) as api:
        yield api, tmp_path, home


@pytest.fixture
def national_ui(tmp_path):
    home = _home(tmp_path)
    env = _ui_config(tmp_path, tmp_path / "national")
    with _serve([str(BIN / "fragilite"), "ui", "--national"], tmp_path, home, env) as api:
        yield api


RUN = """query($id: ID!) { runOrError(runId: $id) { ... on Run { status startTime endTime jobName
  assetSelection { path } tags { key value } eventConnection { events { __typename ... on MessageEvent { message } } } } } }"""


def _wait(api: Api, run_id: str, timeout: float = 420) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        run = api.query(RUN, {"id": run_id})["runOrError"]
        if run["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
            return run
        assert time.monotonic() < deadline, f"run still {run['status']}"
        time.sleep(2)


def _run_ids(api: Api) -> list[str]:
    runs = api.query("{ runsOrError { ... on Runs { results { runId } } } }")["runsOrError"]["results"]
    return [r["runId"] for r in runs]


def _cli_run(home: Path, out: Path) -> None:
    """`fragilite run` on the same instance as the UI: its run is the yardstick."""
    subprocess.run(
        [str(BIN / "fragilite"), "run", "--out", str(out)],
        cwd=ROOT,
        env={**os.environ, "DAGSTER_HOME": str(home)},
        check=True,
        capture_output=True,
        timeout=600,
    )


GRAPH = """{ assetNodes { assetKey { path } groupName description isPartitioned isExecutable jobNames
  dependencyKeys { path } } }"""


def test_run_from_the_ui_api(dg_dev):
    api, tmp_path, home = dg_dev
    entry = api.location()

    graph = api.query(GRAPH)["assetNodes"]
    groups = {n["assetKey"]["path"][0]: n["groupName"] for n in graph}
    assert groups["iris_base"] == "transforms" and groups["couche_iris"] == "outputs"
    deps = {n["assetKey"]["path"][0]: [d["path"][0] for d in n["dependencyKeys"]] for n in graph}
    assert "iris_indicateurs" in deps["iris_mednum_2019"] and "scores_publies" in deps["couche_iris"]
    # the national assets are drawn with their sources upstream and their partitions...
    assert {"contours_iris", "communes_epci", "rp_evol_struct_pop"} <= set(deps["iris_departement"])
    assert "iris_departement" in deps["france_iris"]
    assert all(n["description"] for n in graph)
    national = [n for n in graph if n["groupName"] == "national"]
    assert {n["assetKey"]["path"][0]: n["isPartitioned"] for n in national} == {
        "iris_departement": True,
        "france_iris": False,
    }
    # ...but run in their own location (`fragilite ui --national`): nothing partitioned runs here
    assert not any(n["isExecutable"] or n["jobNames"] for n in national)
    runnable = {n["assetKey"]["path"][0] for n in graph if n["isExecutable"]}
    assert runnable == {key for key, group in groups.items() if group != "national"}
    jobs = {n["assetKey"]["path"][0]: n["jobNames"] for n in graph}
    assert all("territoire" in jobs[key] for key in runnable)

    cli_out = tmp_path / "cli"
    _cli_run(home, cli_out)
    runs = api.query("{ runsOrError { ... on Runs { results { runId startTime endTime tags { key value } } } } }")
    cli = runs["runsOrError"]["results"][0]
    cli_tags = {t["key"]: t["value"] for t in cli["tags"]}
    assert cli_tags["fragilite/sortie"] == str(cli_out.resolve()) and cli_tags["fragilite/commande"] == "run"
    cli_seconds = cli["endTime"] - cli["startTime"]

    # the `territoire` job's "Materialize all": no asset selection, no executor given
    out = tmp_path / "out"
    run_config = {"resources": {"fragilite": {"config": {"out_dir": str(out)}}}}
    run_id = api.launch(entry["name"], "territoire", run_config)
    run = _wait(api, run_id)
    assert run["status"] == "SUCCESS"
    assert (out / "layers" / "iris.parquet").exists()
    messages = [e.get("message") or "" for e in run["eventConnection"]["events"]]
    assert any("dans ce processus" in m for m in messages) and not any("multiprocess" in m for m in messages)
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

    _materialize_all_from_the_lineage(api, tmp_path, runnable)


# --- the lineage page in headless Chromium --------------------------------------------------


def _chromium() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and os.environ.get("FRAGILITE_REQUIRE_CHROMIUM"):
        pytest.fail("chromium is required here (FRAGILITE_REQUIRE_CHROMIUM is set) but not installed")
    return found


class Browser:
    """Headless Chromium driven over the DevTools protocol on a pipe (Chromium reads commands on
    its fd 3 and answers on fd 4, NUL-separated JSON): clicks and reads a page like a user, with
    the standard library only."""

    def __init__(self, chromium: str, profile: Path, size: tuple[int, int] = (1600, 1000)):
        commands, self._to_browser = os.pipe()
        self._from_browser, answers = os.pipe()

        def on_fds_3_and_4() -> None:  # in the child, before exec (the pipes close on exec)
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (commands, answers)]
            for target, fd in zip((3, 4), high, strict=True):
                os.dup2(fd, target, inheritable=True)
                os.close(fd)

        self.process = subprocess.Popen(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                f"--window-size={size[0]},{size[1]}",
                "--remote-debugging-pipe",
                "about:blank",
            ],
            preexec_fn=on_fds_3_and_4,
            close_fds=False,  # Python's own descriptors are not inherited (PEP 446), fds 3 and 4 are
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        os.close(commands)
        os.close(answers)
        self._buffer, self._next_id, self.session = b"", 0, None
        page = next(t for t in self.call("Target.getTargets")["targetInfos"] if t["type"] == "page")
        self.session = self.call("Target.attachToTarget", targetId=page["targetId"], flatten=True)["sessionId"]
        self.call(
            "Emulation.setDeviceMetricsOverride", width=size[0], height=size[1], deviceScaleFactor=1, mobile=False
        )

    def call(self, method: str, timeout: float = 60, **params) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if self.session and not method.startswith(("Target.", "Browser.")):
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" not in self._buffer:
                ready, _, _ = select.select([self._from_browser], [], [], max(deadline - time.monotonic(), 0))
                assert ready, f"Chromium did not answer {method} within {timeout} s"
                chunk = os.read(self._from_browser, 1 << 16)
                assert chunk, "Chromium closed the DevTools pipe"
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            answer = json.loads(raw)
            if answer.get("id") == self._next_id:  # events (no id) are not needed here
                assert "error" not in answer, (method, answer["error"])
                return answer["result"]

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 120, what: str = ""):
        deadline = time.monotonic() + timeout
        while not (value := self.evaluate(expression)):
            assert time.monotonic() < deadline, f"{what or expression} : not seen within {timeout} s"
            time.sleep(0.5)
        return value

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=10)
        except (AssertionError, OSError):
            pass
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        os.close(self._to_browser)
        os.close(self._from_browser)


# The lineage page's launch button, found by its label as a user finds it (the UI's test ids are
# stripped from its production build).
BUTTON = "[...document.querySelectorAll('button')].find(b => b.textContent.startsWith('Materialize'))"
# What a click may open instead of launching a run: the partitions (backfill) dialog, a
# launchpad, an alert or a confirmation (Blueprint dialogs).
DIALOGS = "[...document.querySelectorAll('[role=\"dialog\"], .bp5-dialog')]"


def _lineage_page(api: Api, tmp_path: Path) -> Browser:
    """Headless Chromium on the global lineage page (skips without Chromium)."""
    chromium = _chromium()
    if chromium is None:
        pytest.skip("chromium not installed (apt-get install chromium)")
    browser = Browser(chromium, tmp_path / "profile")
    browser.call("Page.navigate", url=f"{api.base}/asset-groups")
    return browser


def _materialize_all_from_the_lineage(api: Api, tmp_path: Path, runnable: set[str]) -> None:
    """The global lineage page as a user sees it: the graph drawn (screenshot), then its
    "Materialize all" clicked: one run of every runnable asset starts, no dialog opens."""
    browser = _lineage_page(api, tmp_path)
    try:
        # The button is disabled while the graph is laid out, then counts what it launches.
        label = browser.wait_for(
            f"{BUTTON} && !{BUTTON}.disabled && {BUTTON}.textContent.startsWith('Materialize all') "
            f"&& {BUTTON}.textContent",
            what="the enabled « Materialize all » button",
        )
        # "…" would mark a partitioned asset among those launched (the backfill dialog's sign)
        assert label == f"Materialize all ({len(runnable)})", label
        groups = ("sources", "transforms", "indice", "outputs", "national")
        browser.wait_for(
            f"{json.dumps(groups)}.every(g => document.documentElement.outerHTML.includes(g))",
            what="the asset groups drawn",
        )
        _check_screenshot(browser, tmp_path)

        before = set(_run_ids(api))
        browser.evaluate(f"{BUTTON}.click(), true")
        deadline = time.monotonic() + 90
        while not (new := set(_run_ids(api)) - before):
            opened = browser.evaluate(f"{DIALOGS}.map(d => d.innerText.slice(0, 300))")
            assert not opened, f"« Materialize all » opened a dialog instead of a run: {opened}"
            assert time.monotonic() < deadline, "no run launched within 90 s of the click"
            time.sleep(0.5)
        assert not browser.evaluate(f"{DIALOGS}.length")
    finally:
        browser.close()
    [run_id] = new
    run = _wait(api, run_id)
    assert run["status"] == "SUCCESS", run["status"]
    assert {a["path"][0] for a in run["assetSelection"]} == runnable
    assert not any(t["key"] == "dagster/backfill" for t in run["tags"])
    tags = {t["key"]: t["value"] for t in run["tags"]}
    out = tmp_path / "interface"  # FRAGILITE_CONFIG's folder: the UI's default configuration
    assert tags["fragilite/sortie"] == str(out.resolve()), tags
    assert (out / "layers" / "iris.parquet").exists()
    print(f"« Materialize all » de la page de lignage : exécution {run_id[:8]} du job {run['jobName']}, réussie")


def _check_screenshot(browser: Browser, tmp_path: Path) -> None:
    """A drawn graph on the page's background, not a blank or error page: many distinct colours
    (text, boxes, edges), and a few percent of the page not background."""
    from matplotlib.image import imread

    shot = tmp_path / "lineage.png"
    shot.write_bytes(base64.b64decode(browser.call("Page.captureScreenshot", format="png")["data"]))
    if os.environ.get("FRAGILITE_SCREENSHOTS"):  # kept for a reviewer (a CI artefact)
        shutil.copy(shot, Path(os.environ["FRAGILITE_SCREENSHOTS"]) / "dagster_lignage.png")
    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (1000, 1600)
    colours, counts = np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0, return_counts=True)
    drawn = 1 - counts.max() / counts.sum()
    assert len(colours) > 200 and drawn > 0.03, (len(colours), drawn)


# --- the national location -------------------------------------------------------------------


def test_national_location_runs_a_partition_and_the_merge(national_ui, tmp_path):
    """`fragilite ui --national`: the sources and the national group, runnable, with the
    `national` and `fusion_nationale` jobs; the sources, the Rhône partition and the merge run
    from it. There, "Materialize all" asks which départements to compute: the backfill dialog
    the territory location avoids (and the proof that the test above would see it)."""
    api = national_ui
    entry = api.location()
    assert entry["name"] == "fragilite_national"
    graph = {n["assetKey"]["path"][0]: n for n in api.query(GRAPH)["assetNodes"]}
    assert {n["groupName"] for n in graph.values()} == {"sources", "national"}
    assert all(n["isExecutable"] for n in graph.values())
    assert graph["iris_departement"]["isPartitioned"] and "national" in graph["iris_departement"]["jobNames"]
    assert "fusion_nationale" in graph["france_iris"]["jobNames"]

    sources = [{"path": [key]} for key, n in graph.items() if n["groupName"] == "sources"]
    steps = [
        ("__ASSET_JOB", {"selector": {"assetSelection": sources}}),
        ("national", {"executionMetadata": {"tags": [{"key": "dagster/partition", "value": "69"}]}}),
        ("fusion_nationale", {}),
    ]
    for job, params in steps:
        run = _wait(api, api.launch(entry["name"], job, {}, **params))
        assert run["status"] == "SUCCESS", (job, run["status"])
    out = tmp_path / "national"
    assert (out / "partitions" / "departement=69" / "iris.parquet").exists()
    assert (out / "layers" / "france_iris.parquet").exists()

    browser = _lineage_page(api, tmp_path)
    try:
        label = browser.wait_for(f"{BUTTON} && !{BUTTON}.disabled && {BUTTON}.textContent", what="the button")
        assert label == "Materialize all…", label
        browser.evaluate(f"{BUTTON}.click(), true")
        opened = browser.wait_for(f"{DIALOGS}.map(d => d.innerText).join(' ')", what="the partitions dialog")
        assert "Partition selection" in opened and "Launch backfill" in opened, opened
    finally:
        browser.close()

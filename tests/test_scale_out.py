"""Scale-out that has run: a real PostgreSQL server, the production instance (`deploy/dagster.yaml`
as is: Postgres storage, run queue, concurrency limits, run monitoring) and code location
(`deploy/definitions.py`: multiprocess executor, Parquet values on a shared folder) run a
backfill of two département partitions launched as the UI launches it (GraphQL
`launchPartitionBackfill` on `dagster-webserver`), queued and launched by `dagster-daemon`; the
merged national layer is read back with pyarrow and compared with a territory run of the same
départements.

PostgreSQL binaries (Debian package `postgresql`): the test is skipped without them, unless
FRAGILITE_REQUIRE_POSTGRES is set (CI), where it fails.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import requests

from pipelines.cli import main
from tests import publishers as P
from tests.conftest import ROOT, write

REQUIRE = "FRAGILITE_REQUIRE_POSTGRES"
DEPARTEMENTS = ("57", "69")
VINTAGE = 2021
BACKFILL_TIMEOUT_S = 300
# `dagster-daemon run`, its backfill loop ticking every 5 s instead of Dagster's fixed 30 s (no
# setting exists): a backfill advances one dependency level per tick (sources, partitions,
# merge), and four 30-s ticks would double the test's time. Nothing else differs.
DAEMON_TICK_S = 5
DAEMON = """
import sys
import dagster._daemon.controller as controller
from dagster._daemon.cli import main
assert controller.DEFAULT_DAEMON_INTERVAL_SECONDS == 30, "Dagster a changé l'intervalle de ses démons"
controller.DEFAULT_DAEMON_INTERVAL_SECONDS = int(sys.argv.pop(1))
sys.exit(main())
"""


def backfill_assets() -> list[str]:
    """What a national backfill selects: the source assets the partitions read (parsed once, in
    one run), the département partitions and their merge."""
    import dagster as dg

    from pipelines.definitions import build_definitions

    graph = build_definitions().resolve_asset_graph()
    parents = {
        *graph.get(dg.AssetKey("iris_departement")).parent_keys,
        *graph.get(dg.AssetKey("france_iris")).parent_keys,
    }
    sources = sorted(k.to_user_string() for k in parents if k != dg.AssetKey("iris_departement"))
    return [*sources, "iris_departement", "france_iris"]


def postgres_bin() -> Path | None:
    """The folder of `initdb` and `pg_ctl`: on the PATH, or Debian's /usr/lib/postgresql/<n>/bin."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return versions[-1].parent if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Postgres:
    port: int
    user: str
    db: str


def _unprivileged() -> dict:
    """PostgreSQL refuses to run as root: as root, run its commands as `postgres` (created by the
    Debian package) or `nobody`."""
    if os.geteuid() != 0:
        return {}
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            account = pwd.getpwnam(name)
            return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    pytest.fail("lancé en root sans compte « postgres » ni « nobody » pour faire tourner PostgreSQL")


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    """A throw-away PostgreSQL cluster on a free loopback port, stopped and deleted at the end."""
    import psycopg2

    bindir = postgres_bin()
    if bindir is None:
        reason = "binaires PostgreSQL (initdb, pg_ctl) absents : apt-get install postgresql"
        if os.environ.get(REQUIRE):
            pytest.fail(f"{REQUIRE} est défini mais {reason}")
        pytest.skip(reason)
    as_user = _unprivileged()
    # Not under pytest's tmp_path: its parents are private to root, and a socket path is short.
    root = Path(tempfile.mkdtemp(prefix="fragilite-pg-"))
    if as_user:
        os.chown(root, as_user["user"], as_user["group"])
    data, port = root / "data", _free_port()

    def pg(*args: str) -> None:
        done = subprocess.run([str(bindir / args[0]), *args[1:]], cwd=root, capture_output=True, text=True, **as_user)
        if done.returncode:
            log = (root / "log").read_text() if (root / "log").exists() else ""
            pytest.fail(f"{args[0]} a échoué ({done.returncode}) : {done.stderr}{done.stdout}\n{log[-2000:]}")

    pg("initdb", "-D", str(data), "-U", "fragilite", "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions")
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off -c max_connections=200"
    pg("pg_ctl", "-D", str(data), "-l", str(root / "log"), "-o", options, "-w", "-t", "60", "start")
    try:
        connection = psycopg2.connect(host="127.0.0.1", port=port, user="fragilite", dbname="postgres")
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("CREATE DATABASE dagster")
        connection.close()
        yield Postgres(port=port, user="fragilite", db="dagster")
    finally:
        subprocess.run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], cwd=root, **as_user)
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class Service:
    name: str
    process: subprocess.Popen
    log: Path

    def tail(self, chars: int = 3000) -> str:
        return f"--- {self.name} ---\n{self.log.read_text(errors='replace')[-chars:]}"


@contextlib.contextmanager
def service(name: str, command: list[str], env: dict, folder: Path) -> Iterator[Service]:
    """A long-running command in its own process group (its code servers and run workers with
    it), its output in `<folder>/<name>.log`; the group is stopped at the end."""
    log = folder / f"{name}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield Service(name, process, log)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def wait_for_code_server(port: int, server: Service, timeout: float = 120) -> None:
    """The code server has loaded the code location (before the webserver and the daemon ask)."""
    from dagster._grpc.client import DagsterGrpcClient

    client = DagsterGrpcClient(port=port, host="127.0.0.1")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.process.poll() is None, f"le serveur de code s'est arrêté\n{server.tail()}"
        try:
            client.list_repositories()
            return
        except Exception:  # not listening yet, or still importing the code location
            time.sleep(1)
    pytest.fail(f"serveur de code muet en {timeout} s\n{server.tail()}")


def _script(name: str) -> str:
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else (shutil.which(name) or name)


def graphql(port: int, query: str, variables: dict | None = None) -> dict:
    response = requests.post(
        f"http://127.0.0.1:{port}/graphql", json={"query": query, "variables": variables or {}}, timeout=60
    )
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body["errors"]
    return body["data"]


WORKSPACE_QUERY = """
{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""

LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
    ... on PythonError { stack }
  }
}
"""


def wait_for_code_location(port: int, running: dict[str, Service], timeout: float = 120) -> None:
    """The webserver answers and has loaded the code location from the code server."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        for service in running.values():
            assert service.process.poll() is None, f"{service.name} s'est arrêté\n{service.tail()}"
        with contextlib.suppress(requests.ConnectionError):
            entries = graphql(port, WORKSPACE_QUERY)["workspaceOrError"].get("locationEntries", [])
            last = str(entries)
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                errors = [e for e in entries if e["locationOrLoadError"]["__typename"] != "RepositoryLocation"]
                assert not errors, errors
                return
        time.sleep(1)
    pytest.fail(
        f"emplacement de code non chargé en {timeout} s : {last}\n" + "\n".join(s.tail() for s in running.values())
    )


def wait_for_backfill(instance, backfill_id: str, running: dict[str, Service], timeout: float):
    from dagster._core.execution.backfill import BulkActionStatus

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for service in running.values():
            assert service.process.poll() is None, f"{service.name} s'est arrêté\n{service.tail()}"
        backfill = instance.get_backfill(backfill_id)
        if backfill.status not in (BulkActionStatus.REQUESTED, BulkActionStatus.CANCELING):
            return backfill
        time.sleep(2)
    pytest.fail(f"remplissage {backfill_id} inachevé en {timeout} s\n" + "\n".join(s.tail() for s in running.values()))


def failures(instance, runs) -> str:
    """The error messages of failed runs, to say why in the test report."""
    from dagster import DagsterEventType

    lines = []
    for run in runs:
        for record in instance.all_logs(
            run.run_id, of_type={DagsterEventType.STEP_FAILURE, DagsterEventType.RUN_FAILURE}
        ):
            data = record.dagster_event.event_specific_data if record.dagster_event else None
            error = getattr(data, "error", None)
            lines.append(
                f"{run.run_id[:8]} {record.step_key or ''}: {record.message} {error.to_string() if error else ''}"
            )
    return "\n".join(lines)


def _config_file(folder: Path, mirror: Path, cache: Path) -> Path:
    """The run configuration the deployment reads (FRAGILITE_CONFIG): the census vintage of the
    mirror, files taken offline from it (the fixtures are not INSEE's bytes: accept_changed)."""
    text = (
        f"run:\n  vintage: {VINTAGE}\n  territory: [{', '.join(repr(d) for d in DEPARTEMENTS)}]\n"
        f"sources:\n  mirror: {mirror}\n  offline: true\n  cache_dir: {cache}\n  accept_changed: true\n"
    )
    return write(folder / "fragilite.yaml", text)


def _layer_without_geometry(path: Path):
    return pq.read_table(path).drop_columns(["geometry", "bbox"]).to_pandas().set_index("CODE_IRIS").sort_index()


@dataclass
class Deployment:
    """The folders and environment of the production instance and code location."""

    home: Path
    work: Path
    logs: Path
    out: Path
    env: dict[str, str]


def deployment(folder: Path, postgres: Postgres, config: Path) -> Deployment:
    """DAGSTER_HOME holding deploy/dagster.yaml as is, and the variables it and
    deploy/definitions.py read (deploy/README.md)."""
    home, work, logs, out = (folder / name for name in ("home", "partage", "journaux", "sorties"))
    for path in (home, work, logs):
        path.mkdir()
    shutil.copyfile(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    env = {
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_USERNAME": postgres.user,
        "DAGSTER_PG_PASSWORD": "sans-objet",  # trust authentication on the loopback
        "DAGSTER_PG_HOST": "127.0.0.1",
        "DAGSTER_PG_PORT": str(postgres.port),
        "DAGSTER_PG_DB": postgres.db,
        "FRAGILITE_WORK_DIR": str(work),
        "FRAGILITE_LOG_DIR": str(logs),
        "FRAGILITE_OUT_DIR": str(out),
        "FRAGILITE_CONFIG": str(config),
        "FRAGILITE_EXECUTOR": "multiprocess",
        "PYTHONPATH": str(ROOT),
    }
    return Deployment(home, work, logs, out, env)


def _run_lines(instance, runs, origin: float) -> list[str]:
    """Per run: what it materialized; when it was created, started and ended (seconds after the
    backfill's launch); the time its steps took (the rest: process start-up, imports, events)."""
    lines = []
    for record in sorted((instance.get_run_record_by_id(r.run_id) for r in runs), key=lambda x: x.start_time or 0):
        run = record.dagster_run
        steps = sum(s.end_time - s.start_time for s in instance.get_run_step_stats(run.run_id) if s.end_time)
        what = run.tags.get("dagster/partition") or ",".join(
            sorted(k.to_user_string() for k in run.asset_selection or [])
        )
        created = record.create_timestamp.timestamp() - origin
        lines.append(
            f"  {what[:40]:40} créée +{created:5.1f} s, début +{record.start_time - origin:5.1f} s, "
            f"fin +{record.end_time - origin:5.1f} s ; étapes {steps:4.1f} s"
        )
    return lines


def test_two_departement_backfill_on_the_production_instance(postgres, tmp_path, dagster_home, capsys, monkeypatch):
    import dagster as dg
    from dagster._core.execution.backfill import BulkActionStatus
    from dagster._core.storage.dagster_run import DagsterRunStatus, RunsFilter

    selection = backfill_assets()
    mirror = tmp_path / "mirror"
    P.write_mirror(mirror, VINTAGE)
    deploy = deployment(tmp_path, postgres, _config_file(tmp_path, mirror, tmp_path / "cache"))
    for key, value in deploy.env.items():
        monkeypatch.setenv(key, value)
    env = dict(os.environ)
    code_port, web_port = _free_port(), _free_port()
    write(
        deploy.home / "workspace.yaml",
        f"load_from:\n  - grpc_server:\n      host: 127.0.0.1\n      port: {code_port}\n",
    )
    workspace = ["-w", str(deploy.home / "workspace.yaml")]
    code_server = [_script("dagster"), "code-server", "start", "-h", "127.0.0.1", "-p", str(code_port)]
    webserver = [_script("dagster-webserver"), "-h", "127.0.0.1", "-p", str(web_port), *workspace]
    daemon = [sys.executable, "-c", DAEMON, str(DAEMON_TICK_S), "run", *workspace]
    with contextlib.ExitStack() as stack:
        # one code server for the code location, as a cluster runs it: the webserver and the
        # daemon connect to it, and it starts the run workers
        running = {
            "code-server": stack.enter_context(
                service("code-server", [*code_server, "-m", "deploy.definitions"], env, tmp_path)
            )
        }
        wait_for_code_server(code_port, running["code-server"])
        running["webserver"] = stack.enter_context(service("webserver", webserver, env, tmp_path))
        running["daemon"] = stack.enter_context(service("daemon", daemon, env, tmp_path))
        instance = stack.enter_context(dg.DagsterInstance.from_config(str(deploy.home)))
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        wait_for_code_location(web_port, running)
        started = time.perf_counter()
        params = {
            "assetSelection": [{"path": [key]} for key in selection],
            "partitionNames": list(DEPARTEMENTS),
            "title": "deux départements",
        }
        launched = graphql(web_port, LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched

        # Meanwhile, the reference: a territory run of the same
        # départements by the command line, in this process, on its own instance and cache.
        monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
        territory_out = tmp_path / "territoire"
        code = main(
            [
                "run",
                "--config",
                str(tmp_path / "fragilite.yaml"),
                "--cache-dir",
                str(tmp_path / "cache-cli"),
                "--out",
                str(territory_out),
            ]
        )
        assert code == 0, capsys.readouterr().err[-3000:]
        territory_s = time.perf_counter() - started

        backfill = wait_for_backfill(instance, launched["backfillId"], running, BACKFILL_TIMEOUT_S)
        backfill_s = time.perf_counter() - started
        runs = instance.get_runs(filters=RunsFilter.for_backfill(backfill.backfill_id))
        assert backfill.status == BulkActionStatus.COMPLETED_SUCCESS, (
            f"{backfill.status}\n{failures(instance, runs)}\n" + "\n".join(s.tail() for s in running.values())
        )
        # one run for the sources (parsed once), one per département partition, one for the merge
        assert all(run.status == DagsterRunStatus.SUCCESS for run in runs)
        partitions = sorted(run.tags.get("dagster/partition", "") for run in runs)
        assert partitions == ["", "", *DEPARTEMENTS], partitions
        executors = {
            run.run_id: [
                r.message for r in instance.all_logs(run.run_id) if "multiprocess executor" in (r.message or "")
            ]
            for run in runs
        }
        assert all(executors.values()), executors
        timings = _run_lines(instance, runs, backfill.backfill_timestamp)

    with capsys.disabled():
        print(f"\nremplissage de {len(DEPARTEMENTS)} partitions : {backfill_s:.1f} s, {len(runs)} exécutions")
        print("\n".join(timings))
        print(f"  (pendant ce temps, run de territoire {'+'.join(DEPARTEMENTS)} en processus : {territory_s:.1f} s)")

    # The merged layer, read with pyarrow, and the territory run: same IRIS, same values.
    merged = _layer_without_geometry(deploy.out / "layers" / "france_iris.parquet")
    territory = _layer_without_geometry(territory_out / "layers" / "iris.parquet")
    assert len(merged) == len(territory) > 200
    assert merged.index.equals(territory.index) and set(merged["DEP"]) == set(DEPARTEMENTS)
    for column in ("score_global", "men_seul_taux", "non_thd_taux", "ifn2023_score"):
        np.testing.assert_allclose(merged[column], territory[column], rtol=1e-12, equal_nan=True, err_msg=column)
    for departement in DEPARTEMENTS:
        assert (deploy.out / "partitions" / f"departement={departement}" / "iris.parquet").exists()
    # values between steps on the shared folder, step logs beside them
    assert {p.name for p in (deploy.work / "valeurs").iterdir()} >= set(selection[:-2])
    assert any(deploy.logs.rglob("*.out")) or any(deploy.logs.rglob("*.err")), sorted(deploy.logs.rglob("*"))[:20]

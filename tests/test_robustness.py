"""Bad inputs and faults (docs/robustesse.md): each case refused with a clear message or repaired
with a warning, and no fault loses or corrupts an output."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
from shapely.geometry import Polygon, box

from config import ConfigError, load_catalogue, load_settings
from outputs.files import OutputLockedError, output_lock, write_all
from pipelines.cli import main
from sources.common import InputError
from sources.filosofi import read_filosofi_iris
from sources.ign_iris import read_contours_iris
from sources.validation import validate_inputs
from tests.conftest import INSTANCE_YAML, ROOT, SAMPLE, materialize_sample, write
from transforms.indicators import IndicatorInputs, compute_indicators


def test_validate_reports_every_problem_at_once(tmp_path, capsys):
    bad_pop = write(
        tmp_path / "pop.csv", "IRIS;COM;TYP_IRIS;P16_POP;P16_POP1529;P16_POP65P\n690010000;69001;Z;douze;1;1\n"
    )
    bad_epci = write(tmp_path / "epci.csv", "COM;LIBCOM;LIBEPCI\n69001;Affoux;CA\n")
    config = write(
        tmp_path / "c.yaml", f"inputs:\n  rp_evol_struct_pop: {bad_pop.name}\n  communes_epci: {bad_epci.name}\n"
    )
    assert main(["validate", "--config", str(config)]) == 2
    out = capsys.readouterr().out
    assert "[erreur] rp_evol_struct_pop" in out and "ligne 2" in out
    assert "[erreur] communes_epci" in out and "'EPCI'" in out
    assert "2 erreur(s)" in out


def test_validate_warns_on_mixed_vintages_and_wrong_vintage(sample_settings, tmp_path):
    paths = dict(sample_settings.input_paths())
    problems = validate_inputs(paths, expected_vintage=2019)
    assert any(p.level == "erreur" and "RP 2016" in p.message and "RP 2019" in p.message for p in problems)
    paths["filosofi_iris"] = write(tmp_path / "f.csv", "IRIS;DISP_TP6020;DISP_MED20\n10040101;13,0;21450\n")
    problems = validate_inputs(paths)
    assert any(p.level == "avertissement" and "revenus 2020 pour le recensement RP 2016" in p.message for p in problems)
    assert any(p.input == "filosofi_iris" and "1 code(s) complété(s)" in p.message for p in problems)


def test_corrupt_spreadsheet_and_geopackage(tmp_path):
    broken = tmp_path / "BASE_TD_FILO_DISP_IRIS_2017.xlsx"
    broken.write_bytes((SAMPLE / "filosofi" / "BASE_TD_FILO_DISP_IRIS_2017.xlsx").read_bytes()[:5000])
    with pytest.raises(InputError, match="classeur illisible") as err:
        read_filosofi_iris(broken)
    assert "téléchargez le fichier à nouveau" in str(err.value)
    gpkg = tmp_path / "c.gpkg"
    gpkg.write_bytes((SAMPLE / "ign" / "CONTOURS-IRIS_2016_dep69.gpkg").read_bytes()[:4096])
    with pytest.raises(InputError, match="illisible"):
        read_contours_iris(gpkg)


def test_self_intersecting_geometry_is_repaired_and_reported(tmp_path):
    bowtie = Polygon([(0, 0), (10, 10), (10, 0), (0, 10), (0, 0)])
    gdf = gpd.GeoDataFrame(
        {
            "INSEE_COM": ["69001", "69002"],
            "NOM_COM": ["A", "B"],
            "IRIS": ["0000", "0000"],
            "CODE_IRIS": ["690010000", "690020000"],
            "NOM_IRIS": ["A", "B"],
            "TYP_IRIS": ["Z", "Z"],
        },
        geometry=[bowtie, box(20, 0, 30, 10)],
        crs=2154,
    )
    path = tmp_path / "c.gpkg"
    gdf.to_file(path, layer="CONTOURS_IRIS")
    out = read_contours_iris(path)
    assert out.geometry.is_valid.all()
    assert out.attrs["geometries_reparees"] == ["690010000"]
    assert out.geometry.iloc[0].area == pytest.approx(50.0)  # both lobes of the bow-tie kept


def test_numerator_above_denominator_is_kept_and_warned():
    base = pd.DataFrame({"CODE_IRIS": ["690010000"], "INSEE_COM": ["69001"], "C_MEN": [10.0], "C_MENPSEUL": [12.0]})
    men_seul = [i for i in load_catalogue().indicators if i.id == "men_seul"]
    result = compute_indicators(base, men_seul, IndicatorInputs())
    assert result.table["men_seul_taux"].iloc[0] == pytest.approx(1.2)
    assert any("above denominator" in w and "690010000" in w for w in result.warnings)


def test_yaml_is_loaded_safely(tmp_path):
    marker = tmp_path / "pwned"
    config = write(tmp_path / "c.yaml", f"run: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError, match="YAML invalide"):
        load_settings(config)
    assert not marker.exists()


def test_swapping_an_input_goes_through_the_same_validation(tmp_path):
    other = write(tmp_path / "arcep.csv", "code_insee;nbr\n69001;10\n")
    config = write(tmp_path / "c.yaml", f"inputs:\n  arcep_debit: {other.name}\n")
    settings = load_settings(config)
    assert settings.inputs.arcep_debit == other.resolve()
    problems = validate_inputs(dict(settings.input_paths()))
    assert any(p.input == "arcep_debit" and "inel_hd" in p.message for p in problems)


def test_failed_writer_leaves_previous_outputs(tmp_path):
    final = tmp_path / "a.txt"
    final.write_text("previous")

    def fails(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_all({final: lambda tmp: tmp.write_text("new"), tmp_path / "b.txt": fails})
    assert final.read_text() == "previous" and sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_two_runs_cannot_share_an_output_folder(tmp_path):
    with output_lock(tmp_path):
        with pytest.raises(OutputLockedError, match="un autre calcul fragilite écrit ici"):
            with output_lock(tmp_path):
                pass
    with output_lock(tmp_path):  # released: usable again
        pass


def test_out_that_cannot_be_written_is_refused_before_computing(tmp_path, capsys, monkeypatch):
    """An --out that is a file, or under a file, fails in a blink with exit 2 and the fix, not
    after the whole computation (audit: `--out` problems found only at the end)."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    (tmp_path / "dagster").mkdir()
    write(tmp_path / "dagster" / "dagster.yaml", INSTANCE_YAML)
    a_file = write(tmp_path / "rapport.txt", "déjà là")
    for out in (a_file, a_file / "sorties"):
        started = time.perf_counter()
        assert main(["run", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert "rapport.txt" in err and "est un fichier" in err and "--out" in err, err
        assert time.perf_counter() - started < 5 and "Traceback" not in err
    assert a_file.read_text() == "déjà là"


def test_out_on_a_read_only_mount_is_refused_before_computing(tmp_path):
    """Permissions are tried for real (root ignores mode bits): a folder where nothing can be
    created is refused, with the folder named."""
    from outputs.files import OutputFolderError, check_output_folder

    locked = tmp_path / "lecture_seule"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        probe = locked / "x"
        try:
            probe.touch()
        except OSError:
            with pytest.raises(OutputFolderError, match="lecture_seule.*--out"):
                check_output_folder(locked / "sorties")
        else:
            probe.unlink()
            pytest.skip("running as root: mode bits do not stop writes here")
    finally:
        locked.chmod(0o755)
    check_output_folder(tmp_path / "nouveau" / "sorties")  # a folder still to create is fine
    assert not any(p.name.startswith(".fragilite-sonde") for p in tmp_path.rglob("*"))


def test_out_held_by_another_run_is_refused_before_computing(tmp_path):
    from outputs.files import check_output_folder

    out = tmp_path / "sorties"
    with output_lock(out):
        with pytest.raises(OutputLockedError, match="un autre calcul fragilite écrit ici"):
            check_output_folder(out)
    check_output_folder(out)  # the lock file stays behind, unheld: fine


def test_a_killed_run_left_started_is_marked_failed_by_the_next_one(tmp_path, monkeypatch):
    """A SIGKILLed CLI run never writes its end: it stays STARTED, holds the queue, the schedule
    and the sensor. The next run marks it failed (its process is gone) and says so."""
    import dagster as dg

    from pipelines.runs import HOST_TAG, PID_TAG, process_tags, sweep_dead_runs

    home = tmp_path / "dagster"
    home.mkdir()
    write(home / "dagster.yaml", INSTANCE_YAML)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with dg.DagsterInstance.get() as instance:

        def started_run(tags: dict[str, str]) -> str:
            run = instance.create_run_for_job(
                dg.Definitions(
                    jobs=[dg.define_asset_job("j", selection="a")], assets=[dg.asset(lambda: 1, name="a")]
                ).resolve_job_def("j"),
                tags=tags,
            )
            instance.handle_run_event(
                run.run_id,
                dg.DagsterEvent(event_type_value="PIPELINE_START", job_name="j"),
            )
            return run.run_id

        killed = started_run({**process_tags(), PID_TAG: str(dead.pid)})
        alive = started_run(process_tags())  # this very process: alive
        other_host = started_run({PID_TAG: str(dead.pid), HOST_TAG: "autre-machine"})
        assert sweep_dead_runs(instance) == [killed]
        status = {r: instance.get_run_by_id(r).status for r in (killed, alive, other_host)}
        assert status == {
            killed: dg.DagsterRunStatus.FAILURE,
            alive: dg.DagsterRunStatus.STARTED,
            other_host: dg.DagsterRunStatus.STARTED,
        }
        messages = [e.message for e in instance.all_logs(killed) if e.message]
        assert any("Processus" in m and "disparu" in m for m in messages)


def test_a_blocking_check_failure_names_the_values_and_the_fix(tmp_path, capsys, monkeypatch):
    """A CAF file where one commune has every allocataire « non connecté » and the others none:
    the reference rate is tiny, that commune's score is far beyond 10 000. The blocking check
    stops the run, and the message says which check, which values and what to do (audit: blocking
    checks said neither file nor value nor fix)."""
    home = tmp_path / "dagster"
    home.mkdir()
    write(home / "dagster.yaml", INSTANCE_YAML)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    communes = pd.read_csv(SAMPLE / "insee" / "communes-epci-2016_dep69.csv", sep=";", dtype=str)["COM"]
    rows = ["code_geo;niveau;millesime;allocataires;non_connectes"]
    rows += [f"{c};commune;2016;{1000 if i == 0 else 100000};{1000 if i == 0 else 0}" for i, c in enumerate(communes)]
    caf = write(tmp_path / "caf.csv", "\n".join(rows) + "\n")
    config = write(tmp_path / "c.yaml", f"inputs:\n  caf_non_connectes: {caf}\n")
    out = tmp_path / "out"
    assert main(["run", "--config", str(config), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "contrôle bloquant « iris_scores : scores_plausibles »" in err, err
    assert "caf_non_connectes_score = " in err and "Correction" in err and "Traceback" not in err
    assert not out.exists()  # nothing published


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_a_full_disk_leaves_the_previous_set_and_says_so(tmp_path):
    """A real small disk (tmpfs, root only): a second run that cannot write its whole set fails
    with a French message, and the previous set stays byte for byte, with no staging left."""
    disk = tmp_path / "disque"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(disk)]).returncode:
        pytest.skip("monter un petit disque (tmpfs) demande les droits root")
    try:
        home = tmp_path / "dagster"
        home.mkdir()
        write(home / "dagster.yaml", INSTANCE_YAML)
        env = {**os.environ, "DAGSTER_HOME": str(home)}
        out = disk / "sorties"
        cmd = [sys.executable, "-m", "pipelines.cli", "run", "--out", str(out)]
        subprocess.run(cmd, env=env, cwd=ROOT, check=True, capture_output=True, timeout=300)
        before = _digest(out)
        used = sum((out / p).stat().st_size for p in before)
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        (disk / "remplissage").write_bytes(b"\0" * int(free - used // 2))  # room for half a new set
        done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert done.returncode == 1, done.stderr[-2000:]
        assert "disque plein" in done.stderr and "sorties précédentes sont intactes" in done.stderr
        assert "Traceback" not in done.stderr
        assert _digest(out) == before
        assert sorted(p.name for p in disk.iterdir()) == sorted(["sorties", "remplissage", ".sorties.fragilite-verrou"])
    finally:
        subprocess.run(["umount", str(disk)])


def test_invalid_outlines_fail_the_run_and_keep_the_previous_set(tmp_path, capsys, monkeypatch):
    """Audit: a run failing on invalid outlines replaced 17 files. An IRIS grown over its
    neighbours makes the coverage invalid: the run fails naming the overlapping IRIS, and the
    previous set stays byte for byte."""
    home = tmp_path / "dagster"
    home.mkdir()
    write(home / "dagster.yaml", INSTANCE_YAML)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    out = tmp_path / "out"
    assert main(["run", "--out", str(out)]) == 0
    before = _digest(out)
    contours = gpd.read_file(SAMPLE / "ign" / "CONTOURS-IRIS_2016_dep69.gpkg")
    grown = contours.index[contours["CODE_IRIS"] == "690060101"]
    contours.loc[grown, "geometry"] = contours.loc[grown, "geometry"].buffer(300)
    contours.to_file(tmp_path / "contours.gpkg", driver="GPKG")
    config = write(tmp_path / "c.yaml", f"inputs:\n  contours_iris: {tmp_path / 'contours.gpkg'}\n")
    capsys.readouterr()
    assert main(["run", "--config", str(config), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "pas une couverture valide" in err and ("690060101 ×" in err or "× 690060101" in err), err[-2000:]
    assert "Traceback" not in err
    assert _digest(out) == before and not _staged(out)


def _staged(out: Path) -> list[Path]:
    """Files of the run's staging folder (which the run may rename away while it is listed)."""
    try:
        return [p for d in out.parent.glob(f".{out.name}.fragilite-*.staging") for p in d.rglob("*") if p.is_file()]
    except OSError:
        return []


# Points of a run where it is killed: while the staging folder is filled (by file count), once
# the maps are drawn, once the manifest is written (the swap is next), and during the swap.
KILL_POINTS = {
    "premiers fichiers": lambda out: len(_staged(out)) >= 1,
    "couches écrites": lambda out: len(_staged(out)) >= 8,
    "paquet en cours": lambda out: len(_staged(out)) >= 30,
    "cartes": lambda out: any(p.parent.name == "cartes" for p in _staged(out)),
    "manifeste": lambda out: any(p.name == "manifeste.json" for p in _staged(out)),
    "échange": lambda out: (out.parent / f".{out.name}.fragilite-precedent").exists(),
}


@pytest.mark.parametrize(
    "sig,point",
    [(signal.SIGKILL, p) for p in KILL_POINTS] + [(signal.SIGINT, "couches écrites"), (signal.SIGINT, "cartes")],
)
def test_run_killed_at_any_point_keeps_previous_outputs(tmp_path, sig, point):
    home = tmp_path / "home"
    home.mkdir()
    write(home / "dagster.yaml", INSTANCE_YAML)
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "pipelines.cli", "run", "--territory", "pays-arbresle", "--out", str(out)]
    subprocess.run(cmd, env=env, cwd=ROOT, check=True, capture_output=True, timeout=300)
    before = _digest(out)
    proc = subprocess.Popen(
        cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    reached = KILL_POINTS[point]
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if reached(out):
                os.killpg(proc.pid, sig)
                break
            time.sleep(0.001)
        else:
            if proc.poll() is not None and point in ("manifeste", "échange"):
                pytest.skip(f"point {point!r} (milliseconds before the swap) passed before it could be observed")
            pytest.fail(f"the run ended before point {point!r}")
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    if point == "échange":
        # Killed during the two renames of the commit: the next run puts the previous set back
        # (old set moved aside, new one not yet in place) or keeps the new one (in place, old set
        # not yet removed): a whole set either way, never a mix.
        with output_lock(out):
            pass
        manifest = json.loads((out / "manifeste.json").read_text(encoding="utf-8"))
        files = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()} - {"manifeste.json"}
        assert _digest(out) == before or files == set(manifest["fichiers"]) - {"manifeste.json"}
        return
    assert _digest(out) == before  # every published file byte for byte
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and b"Traceback" not in err
        assert not _staged(out)  # an interrupted run cleans up after itself
    with output_lock(out):  # the next run removes what a killed one could not
        pass
    assert not _staged(out) and not list(out.parent.glob(f".{out.name}.fragilite-*.staging"))


def test_unprojected_outlines_refused(tmp_path):
    gdf = read_contours_iris(SAMPLE / "ign" / "CONTOURS-IRIS_2016_dep69.gpkg").head(3).to_crs(4326)
    path = tmp_path / "wgs84.gpkg"
    gdf.to_file(path, layer="CONTOURS_IRIS")
    with pytest.raises(InputError, match="non projeté"):
        read_contours_iris(path)


def test_dagster_ui_binds_to_loopback(monkeypatch):
    seen = {}
    monkeypatch.setattr(os, "execv", lambda path, argv: seen.update(argv=argv))
    monkeypatch.setenv("DAGSTER_HOME", str(ROOT))
    main(["ui", "--port", "3999"])
    argv = seen["argv"]
    assert argv[argv.index("--host") + 1] == "127.0.0.1" and "3999" in argv


def test_completed_codes_reported_by_the_source_asset(tmp_path):
    import dagster as dg

    filo = write(tmp_path / "f.csv", "IRIS;DISP_TP6020;DISP_MED20\n10040101;13,0;21450\n690010000;s;20000\n")
    config = write(tmp_path / "c.yaml", f"inputs:\n  filosofi_iris: {filo.name}\n")
    result = materialize_sample(
        tmp_path / "out",
        dg.AssetSelection.assets("filosofi_iris").without_checks()
        | dg.AssetSelection.checks_for_assets("filosofi_iris"),
        config_file=str(config),
    )
    assert result.success
    materialization = result.asset_materializations_for_node("filosofi_iris")[0]
    assert materialization.metadata["codes_completes"].value == 1
    check = result.get_asset_check_evaluations()[0]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN

"""End to end on the publishers' real layouts: every census vintage 2017–2021, any territory.

The files come from `tests/publishers.py`, written to the publishers' facts (file and member
names, title rows, headers, markers, odd codes), never to the readers' assumptions; they are
served through `--mirror` and, once, from a local HTTP server (127.0.0.1). The rates the run
writes are compared with a computation by hand from the values the files hold.
"""

from __future__ import annotations

import http.server
import re
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from config.settings import CONFIG_DIR
from pipelines.cli import main
from tests import publishers as P
from tests.conftest import write

TERRITORY = "69123,pays-arbresle,metz-metropole"
MERGED, ABSORBING = "69216", "69022"  # merged in geography 2025 (tests/publishers.py)


def _run(args: list[str], capsys) -> tuple[int, str, str]:
    """Exit code, standard output (the run summary) and standard error (progress, errors)."""
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _mirror_run(capsys, mirror: Path, tmp_path: Path, *args: str, out: Path | None = None) -> tuple[int, str, str]:
    """`fragilite run` offline from a mirror of publisher-layout files; `--accept-changed`: the
    fixtures are not INSEE's bytes, whose checksums the catalogue pins."""
    options = ["--mirror", str(mirror), "--offline", "--cache-dir", str(tmp_path / "cache"), "--accept-changed"]
    return _run(["run", *args, *options, "--out", str(out or tmp_path / "out")], capsys)


def _layer(out: Path, maille: str = "iris") -> pd.DataFrame:
    return pq.read_table(out / "layers" / f"{maille}.parquet").drop_columns(["geometry", "bbox"]).to_pandas()


def expected_rates(model: P.Model, vintage: int, codes: pd.Index) -> pd.DataFrame:
    """Each indicator's rate per IRIS, by hand from the values written in the fixture files."""
    census = model.census(vintage).loc[codes]
    out = pd.DataFrame(
        {
            "men_seul": census.MENPSEUL / census.MEN,
            "fam_mono": census.FAMMONO / census.FAM,
            "pop_1529": census.POP1529 / census.POP,
            "pop_65p": census.POP65P / census.POP,
            "non_dipl": census.NSCOL15P_DIPLMIN / census.NSCOL15P,
            "chomage": census.CHOM1564 / census.ACT1564,
        },
        index=codes,
    )
    # The commune of each IRIS as the commune-level files spell it (Lyon as 69123), in each
    # file's geography (a commune merged since the census takes the code of the new commune).
    cog = model.communes.loc[census.COM, "CODGEO"].to_numpy()
    filosofi_geo = 2025 if vintage == 2021 else 2023
    filo_keys = [model.geography_code(c, filosofi_geo) for c in cog]
    arcep_keys = [model.geography_code(c, 2025) for c in cog]
    iris_values = model.filosofi_iris(vintage).reindex(codes)
    commune_values = model.filosofi_communes(vintage).reindex(filo_keys).set_axis(codes)
    # Filosofi values are weighted by population, commune counts apportioned by households: an
    # IRIS without residents (or households) gets no rate.
    for column, variable, scale in (("pauvrete", "TP60", 0.01), ("revenu_median", "MED", 1.0)):
        out[column] = (iris_values[variable].fillna(commune_values[variable]) * scale).where(census.POP > 0)
    arcep = model.arcep(2025).reindex(arcep_keys).set_axis(codes)
    out["non_thd"] = (1 - arcep.elig_thd30 / arcep.nbr).where(census.MEN > 0)
    return out


@pytest.fixture(scope="module")
def mirrors(tmp_path_factory) -> dict[int, Path]:
    """One folder per census vintage, holding its files under the publishers' own names."""
    root = tmp_path_factory.mktemp("mirrors")
    return {
        vintage: (P.write_mirror(root / str(vintage), vintage), root / str(vintage))[1] for vintage in range(2017, 2022)
    }


@pytest.mark.parametrize("vintage", [2017, 2018, 2019, 2020, 2021])
def test_every_census_vintage_runs_on_real_layouts(vintage, mirrors, tmp_path, dagster_home, capsys):
    out = tmp_path / "out"
    code, _, err = _mirror_run(
        capsys, mirrors[vintage], tmp_path, "--vintage", str(vintage), "--territory", TERRITORY, out=out
    )
    assert code == 0, err[-3000:]
    layer = _layer(out).set_index("CODE_IRIS")
    model = P.load_model()
    wanted = model.iris[
        (model.iris.COM.str.startswith("6938"))
        | model.iris.COM.isin(model.communes.index[model.communes.EPCI.isin(["246900625", "200039865"])])
    ].index
    assert set(layer.index) == set(wanted)
    assert (layer["millesime_rp"] == vintage).all()
    expected = expected_rates(model, vintage, layer.index)
    for indicator in expected.columns:
        np.testing.assert_allclose(layer[f"{indicator}_taux"], expected[indicator], rtol=1e-9, err_msg=indicator)
    # commune values given to IRIS are flagged; Lyon's arrondissements share the city's ARCEP row
    assert (layer["non_thd_source"] == "commune").all()
    lyon = layer[layer["INSEE_COM"].str.startswith("6938")]
    assert lyon["non_thd_taux"].nunique() == 1
    # the commune merged in geography 2025 is served by the new commune's row, not lost
    merged = layer[layer["INSEE_COM"] == MERGED]
    absorbing = layer[layer["INSEE_COM"] == ABSORBING]
    assert merged["non_thd_taux"].iloc[0] == pytest.approx(absorbing["non_thd_taux"].iloc[0])
    residents = layer["pop_65p_den"] > 0
    assert layer.loc[residents, "score_global"].notna().all() and residents.sum() > 200


def test_latest_vintage_chosen_for_a_territory_outside_the_sample(mirrors, tmp_path, dagster_home, capsys):
    """`run --territory metz-metropole`, no --vintage: the sample does not cover Moselle, so the
    catalogue's latest complete vintage is used, and the run says so."""
    out = tmp_path / "out"
    code, _, err = _mirror_run(capsys, mirrors[2021], tmp_path, "--territory", "metz-metropole", out=out)
    assert code == 0, err[-3000:]
    assert "RP 2021" in err and "200039865" in err
    layer = _layer(out)
    assert sorted(layer["CODE_IRIS"]) == ["574630101", "574630102", "574630103", "574630104", "576720000", "577510000"]
    assert (layer["millesime_rp"] == 2021).all() and (layer["EPCI"] == "200039865").all()


def test_offline_with_an_empty_cache_lists_every_file_within_seconds(tmp_path, dagster_home, capsys):
    from config.settings import load_sources

    started = time.monotonic()
    code, _, err = _run(
        [
            "run",
            "--territory",
            "metz-metropole",
            "--offline",
            "--cache-dir",
            str(tmp_path / "c"),
            "--out",
            str(tmp_path / "o"),
        ],
        capsys,
    )
    assert code == 2 and time.monotonic() - started < 15
    catalogue = load_sources()
    for name in ("rp_evol_struct_pop", "filosofi_iris", "contours_iris", "communes_epci"):
        dataset = catalogue.datasets[name]
        assert dataset.file(dataset.vintage_for(2021)).url in err, name
    assert "--mirror" in err and "hors ligne" in err


def test_whole_inputs_keep_communes_without_epci_and_set_the_overseas_aside(mirrors, tmp_path, dagster_home, capsys):
    """INSEE's `ZZZZZZZZZ` (Ouessant: no EPCI) is kept and reported; a run of every IRIS of the
    inputs covers metropolitan France (one CRS per layer) and says which overseas IRIS it left."""
    out = tmp_path / "out"
    # The fixture's EPCI workbook lists Île-de-Sein (29083) without its outline: département 29 is
    # not whole in these inputs, so its reference would be refused; the territory one serves here.
    code, summary, _ = _mirror_run(
        capsys, mirrors[2019], tmp_path, "--vintage", "2019", "--reference", "territoire", out=out
    )
    assert code == 0
    layer = _layer(out)
    ouessant = layer[layer["CODE_IRIS"] == "291550000"]
    assert len(ouessant) == 1 and ouessant["EPCI"].isna().all() and ouessant["score_global"].notna().all()
    assert not layer["DEP"].isin(["974", "976"]).any()
    assert "outre-mer" in summary and "974" in summary
    epci = _layer(out, "epci")
    assert "ZZZZZZZZZ" not in set(epci["EPCI"]) and epci["EPCI"].notna().all()
    communes = _layer(out, "communes")
    assert "29155" in set(communes["INSEE_COM"])


def test_an_overseas_departement_runs_in_its_own_projection(mirrors, tmp_path, dagster_home, capsys):
    out = tmp_path / "out"
    code, _, err = _mirror_run(capsys, mirrors[2021], tmp_path, "--vintage", "2021", "--territory", "974", out=out)
    assert code == 0, err[-3000:]
    import geopandas as gpd

    layer = gpd.read_parquet(out / "layers" / "iris.parquet")
    assert layer.crs.to_epsg() == 2975
    assert sorted(layer["CODE_IRIS"]) == ["974110101", "974110102", "974180000"]
    assert (out / "geoclip" / "contours" / "iris_2975.shp").exists()
    assert "EPSG:2975" in (out / "fragilite.qgs").read_text(encoding="utf-8")
    web = gpd.read_file(out / "web" / "iris_10m.geojson")
    minx, miny, maxx, maxy = web.total_bounds  # WGS84, around Saint-Denis de La Réunion
    assert 55 < minx < maxx < 56.5 and -21.5 < miny < maxy < -20.5


def test_mayotte_without_census_is_reported_not_a_crash(mirrors, tmp_path, dagster_home, capsys):
    code, _, err = _mirror_run(capsys, mirrors[2021], tmp_path, "--vintage", "2021", "--territory", "976")
    assert code == 2
    assert "Mayotte" in err and "Traceback" not in err


def test_a_failing_optional_source_costs_its_indicators_not_the_run(mirrors, tmp_path, dagster_home, capsys):
    """Filosofi communes 2020 holds the bassins de vie first; a zip without the commune table
    (here: only BV2022) makes the optional source fail: the run goes on and says why."""
    import shutil
    import zipfile

    mirror = tmp_path / "mirror"
    shutil.copytree(mirrors[2020], mirror)
    archive = mirror / "base-cc-filosofi-2020_CSV.zip"
    with zipfile.ZipFile(archive) as zf:
        kept = {n: zf.read(n) for n in zf.namelist() if "_COM" not in n}
    with zipfile.ZipFile(archive, "w") as zf:
        for name, data in kept.items():
            zf.writestr(name, data)
    out = tmp_path / "out"
    code, summary, _ = _mirror_run(
        capsys, str(mirror), tmp_path, "--vintage", "2020", "--territory", "pays-arbresle", out=out
    )
    assert code == 0
    assert "source écartée : filosofi_communes" in summary
    layer = _layer(out)
    assert not (layer["pauvrete_source"] == "commune").any()  # no commune fallback without the file
    assert (layer["pauvrete_source"] == "iris").any()


class _Mirror(http.server.BaseHTTPRequestHandler):
    folder: Path = Path(".")

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802 - http.server's name
        path = _Mirror.folder / self.path.rsplit("/", 1)[-1]
        if not path.is_file():
            self.send_error(404)
            return
        body = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_download_from_a_publisher_like_server(mirrors, tmp_path, dagster_home, capsys):
    """The shipped catalogue, every host replaced by a local server that serves the real-layout
    files at the publishers' paths: fetch, then run offline from the cache."""
    _Mirror.folder = mirrors[2018]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Mirror)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        local = f"http://127.0.0.1:{httpd.server_address[1]}"
        text = (CONFIG_DIR / "sources.yaml").read_text(encoding="utf-8")
        text = re.sub(r"https://[a-z.]+/", local + "/", text)
        text = re.sub(r"hosts: \[[^\]]*\]", "hosts: [127.0.0.1]", text, flags=re.S)
        catalogue = write(tmp_path / "catalogue.yaml", text)
        config = write(tmp_path / "config.yaml", f"sources:\n  catalogue: {catalogue}\n  retries: 0\n")
        cache, out = tmp_path / "cache", tmp_path / "out"
        code, _, err = _run(
            ["fetch", "--config", str(config), "--vintage", "2018", "--cache-dir", str(cache), "--accept-changed"],
            capsys,
        )
        assert code == 0, err
    finally:
        httpd.shutdown()
        httpd.server_close()
    code, _, err = _run(
        [
            "run",
            "--config",
            str(config),
            "--vintage",
            "2018",
            "--territory",
            "pays-arbresle",
            "--offline",
            "--cache-dir",
            str(cache),
            "--out",
            str(out),
        ],
        capsys,
    )
    assert code == 0, err[-3000:]
    layer = _layer(out).set_index("CODE_IRIS")
    expected = expected_rates(P.load_model(), 2018, layer.index)
    np.testing.assert_allclose(layer["men_seul_taux"], expected["men_seul"], rtol=1e-9)
    np.testing.assert_allclose(layer["non_thd_taux"], expected["non_thd"], rtol=1e-9)


OFFER_CLASSES = ("classe_fragilite", "classe_accessibilite", "priorite")


def test_two_departements_by_partition_equal_the_territory_run(mirrors, tmp_path, dagster_home, capsys):
    """One chain: a territory run of Rhône and Moselle, and their two département partitions
    (sources parsed once) merged and scored on the merged table, publish the same IRIS values,
    the offer of mediation included (demand at ARCEP's buildings in Lyon, given in the mirror, and
    at the point on surface elsewhere)."""
    from tests.test_offre import two_buildings_per_iris, write_arcep

    mirror = tmp_path / "mirror"
    shutil.copytree(mirrors[2021], mirror)
    outlines = P.load_model().outlines["FXX"]
    buildings, measured = two_buildings_per_iris(outlines[outlines["INSEE_COM"].str.startswith("6938")])
    write_arcep(mirror, "69", buildings)
    common = ("--vintage", "2021", "--territory", "69,57")
    code, _, err = _mirror_run(capsys, mirror, tmp_path, *common, out=tmp_path / "territoire")
    assert code == 0, err[-3000:]
    demand = f"points de demande : {len(measured)} IRIS aux immeubles ARCEP, "
    assert len(measured) > 20 and demand in err
    code, _, err = _mirror_run(capsys, mirror, tmp_path, *common, "--by-departement", out=tmp_path / "national")
    assert code == 0, err[-3000:]
    assert demand in err  # the national merge reads the partitions' buildings
    territory = _layer(tmp_path / "territoire")
    merged = (
        pq.read_table(tmp_path / "national" / "layers" / "france_iris.parquet")
        .drop_columns(["geometry", "bbox"])
        .to_pandas()
    )
    assert len(territory) > 200 and set(merged["DEP"]) == {"57", "69"}
    # Every column, the offer of digital mediation (`offre_*`, priority classes) included.
    offer = [c for c in territory.columns if c.startswith("offre_") or c in OFFER_CLASSES]
    assert len(offer) > 5 and list(merged.columns) == list(territory.columns)
    pd.testing.assert_frame_equal(merged, territory, check_exact=False, rtol=1e-12)
    for dep in ("57", "69"):
        assert (tmp_path / "national" / "partitions" / f"departement={dep}" / "iris.parquet").exists()

"""Broadband and 4G at the IRIS from ARCEP's building-level files (DuckDB spatial).

Fixtures follow the published layouts: `;`-separated gzip CSVs with the exact headers of
`base_imb_<DEP>.csv.gz` and `actuel_<DEP>.csv.gz`, coordinates in EPSG:3857 computed from known
Lambert-93 points; « Mon réseau mobile » GeoPackages (7z) with the published field names.
Expected counts are hand counts, written next to each building.
"""

from __future__ import annotations

import gzip
import socket
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import py7zr
import pytest
import shapely
from pyproj import Transformer
from shapely.geometry import Point, box

from config.connectivity import ConnectivityConfig, load_connectivity
from sources.arcep_batiments import BASE_IMB_COLUMNS, ELIGIBILITE_COLUMNS, register_buildings
from sources.arcep_mobile import register_coverage, subdivide
from sources.common import InputError
from transforms.connectivite import iris_connectivity
from transforms.duckdb_spatial import connect

X0, Y0 = 840_000.0, 6_518_000.0  # Lambert-93, near Lyon
KM = 1_000.0
TO_3857 = Transformer.from_crs(2154, 3857, always_xy=True)

# IRIS: 1 km squares in a row. A and B in commune 01001, C alone in 01002, D in Lyon 1er (69381).
IRIS = [("010010101", "01001", 0), ("010010102", "01001", 1), ("010020000", "01002", 2), ("693810101", "69381", 3)]

# Buildings: id, commune, Lambert-93 point (None = invalid coordinates), premises, offers (techno, class).
BUILDINGS = [
    ("IMB/01001/X/0001", "01001", (0.5, 0.5), "10", [("FO", "THD100")]),  # A, THD
    ("IMB/01001/X/0002", "01001", (0.2, 0.7), "5", [("SAT", "THD30"), ("CU", "HD3")]),  # A, THD only by satellite
    ("IMB/01001/X/0003", "01001", (0.8, 0.2), "abc", [("FO", "THD1G")]),  # A, premises unreadable → 0
    ("IMB/01001/X/0004", "01001", (1.5, 0.5), "20", [("CU", "BHD8"), ("4GF", "THD30"), ("LTE", "THD30")]),  # B
    ("IMB/01001/X/0005", "01001", (1.3, 0.8), "3", []),  # B, no offer at all
    ("IMB/01001/X/0006", "01001", (0.5, 1.5), "38", [("HDR", "HD3")]),  # outside every IRIS → commune 01001
    ("IMB/01002/X/0001", "1002", None, "4", [("FO", "THD1G")]),  # invalid coordinates, code lost its 0 → 01002
    ("IMB/01999/X/0001", "01999", (5.5, 5.5), "6", [("FO", "THD1G")]),  # commune without IRIS
    ("IMB/38185/X/0001", "38185", (50.0, -80.0), "9", [("FO", "THD1G")]),  # another département
    ("IMB/69123/X/0001", "69123", (3.5, 0.5), "7", [("COAX", "THD100")]),  # Lyon as one city, point in D
    ("IMB/69123/X/0002", "69123", (0.0, 0.0), "2", []),  # Lyon, coordinates 0,0 → city → IRIS of 69381
]


def _lambert(point: tuple[float, float]) -> tuple[float, float]:
    return X0 + point[0] * KM, Y0 + point[1] * KM


def _write_gz(path: Path, header: tuple[str, ...], rows: list[dict]) -> Path:
    lines = [";".join(header)] + [";".join(str(r.get(c, "")) for c in header) for r in rows]
    with gzip.open(path, "wt", encoding="utf-8", newline="") as fh:
        fh.write("\n".join(lines) + "\n")
    return path


def _base_rows(buildings) -> list[dict]:
    rows = []
    for imb_id, insee, point, premises, _ in buildings:
        if point is None:
            x, y = "", "abc"
        elif point == (0.0, 0.0):
            x, y = 0, 0
        else:
            x, y = (repr(v) for v in TO_3857.transform(*_lambert(point)))
        rows.append(
            {
                "imb_id": imb_id,
                "imb_x": x,
                "imb_y": y,
                "imb_code": imb_id,
                "imb_code_insee": insee,
                "imb_nbr_logloc": premises,
                "imb_source": "DGFIP",
                "imb_type": "PA",
                "addr_nom_voie": "rue de l'Église",
                "addr_nom_commune": "Saint-Étienne",
            }
        )
    return rows


def _offer_rows(buildings) -> list[dict]:
    return [
        {
            "imb_id": imb_id,
            "code_operateur": "ORAN",
            "code_techno": techno,
            "classe_debit_montant": "HD3",
            "classe_debit_descendant": classe,
        }
        for imb_id, _, _, _, offers in buildings
        for techno, classe in offers
    ]


@pytest.fixture()
def arcep_files(tmp_path: Path) -> dict[str, list[Path]]:
    by_dep = {
        "01": [b for b in BUILDINGS if not b[1].startswith("69")],
        "69": [b for b in BUILDINGS if b[1].startswith("69")],
    }
    base = [_write_gz(tmp_path / f"base_imb_{d}.csv.gz", BASE_IMB_COLUMNS, _base_rows(b)) for d, b in by_dep.items()]
    offers = [
        _write_gz(tmp_path / f"actuel_{d}.csv.gz", ELIGIBILITE_COLUMNS, _offer_rows(b)) for d, b in by_dep.items()
    ]
    return {"base_imb": base, "eligibilite": offers}


def _disc(point: tuple[float, float], radius_km: float = 0.15):
    return Point(*_lambert(point)).buffer(radius_km * KM)


def _gpkg_7z(folder: Path, operator: str, rows: list[tuple[str, str, str, object]], crs: int = 2154) -> Path:
    """One operator's coverage, as published: a GeoPackage inside a 7z archive."""
    frame = gpd.GeoDataFrame(
        {
            "operateur": [operator] * len(rows),
            "date": ["2025-06-30"] * len(rows),
            "techno": [r[0] for r in rows],
            "usage": [r[1] for r in rows],
            "niveau": [r[2] for r in rows],
            "dept": ["01"] * len(rows),
        },
        geometry=[shapely.MultiPolygon([r[3]]) for r in rows],
        crs=crs,
    )
    name = f"{operator.replace(' ', '_')}_couv_4G_data.gpkg"
    frame.to_file(folder / name, layer="couverture", engine="pyogrio")
    archive = folder / f"{name}.7z"
    with py7zr.SevenZipFile(archive, "w") as z:
        z.write(folder / name, arcname=name)
    (folder / name).unlink()
    return archive


@pytest.fixture()
def coverage_files(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "mobile"
    folder.mkdir()
    orange = _gpkg_7z(
        folder,
        "Orange",
        [
            ("4G", "data", "TBC", _disc((0.5, 0.5))),  # building 1
            ("4G", "data", "TBC", _disc((3.5, 0.5))),  # Lyon building
            ("4G", "voix", "TBC", _disc((1.3, 0.8))),  # building 5, voice only: ignored
            ("3G", "data", "TBC", _disc((1.3, 0.8))),  # building 5, 3G: ignored
        ],
    )
    sfr = _gpkg_7z(
        folder,
        "SFR",
        [
            ("4G", "data", "CL", _disc((0.2, 0.7))),  # building 2, limited coverage: not kept
            ("4G", "data", "BC", _disc((1.5, 0.5))),  # building 4
        ],
    )
    return [orange, sfr]


@pytest.fixture()
def iris_frame() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {"CODE_IRIS": [c for c, _, _ in IRIS], "INSEE_COM": [m for _, m, _ in IRIS]},
        geometry=[box(X0 + k * KM, Y0, X0 + (k + 1) * KM, Y0 + KM) for _, _, k in IRIS],
        crs=2154,
    )


def _run(tmp_path, arcep_files, iris, coverage=None, **options):
    con = connect(tmp_path / "work", memory_limit="1GB", threads=2)
    built = register_buildings(con, arcep_files["base_imb"], arcep_files["eligibilite"], target_crs=iris.crs, **options)
    cov = None
    if coverage:
        cov = register_coverage(con, coverage, work_dir=tmp_path / "work", target_crs=iris.crs)
    table, report = iris_connectivity(con, iris, "batiments", "couverture_4g" if coverage else None)
    return table.set_index("CODE_IRIS"), report, built, cov


def test_counts_per_iris_equal_hand_count(tmp_path, arcep_files, iris_frame, coverage_files):
    table, report, built, cov = _run(tmp_path, arcep_files, iris_frame, coverage_files)
    a, b, c, d = (table.loc[code] for code, _, _ in IRIS)
    # A: located 10 (THD, covered) + 5 (SAT only, CL only) + 0 (unreadable); building 6 (38
    # premises, outside) split A:B = 15:23 → A gets 15, all without THD and without 4G.
    assert a["batiments"] == 3
    assert a["locaux"] == pytest.approx(15 + 15)
    assert a["locaux_sans_thd"] == pytest.approx(5 + 15)
    assert a["locaux_4g"] == pytest.approx(30)
    assert a["locaux_sans_4g"] == pytest.approx(5 + 15)
    assert a["locaux_commune"] == pytest.approx(15)
    # B: 20 (THD by fixed 4G, SFR BC) + 3 (no offer, voice/3G only) + 23 from building 6.
    assert (b["batiments"], b["locaux"], b["locaux_sans_thd"], b["locaux_sans_4g"]) == (2, 46, 3 + 23, 3 + 23)
    # C: only building 7 (invalid coordinates, commune 1002 → 01002): THD, coverage unknown.
    assert (c["batiments"], c["locaux"], c["locaux_sans_thd"], c["locaux_4g"], c["locaux_sans_4g"]) == (0, 4, 0, 0, 0)
    # D (Lyon 1er): building coded 69123 located by its point (7, THD, covered) + the one at 0,0 by city.
    assert (d["batiments"], d["locaux"], d["locaux_sans_thd"], d["locaux_4g"], d["locaux_sans_4g"]) == (1, 9, 2, 7, 0)
    assert table["donnees_batiments"].all()

    assert report["dans_iris"] == 6
    assert report["hors_iris"] == 1
    assert report["coordonnees_invalides"] == 2
    assert report["rattaches_commune"] == 3
    assert report["rattaches_commune_coordonnees_invalides"] == 2
    assert (report["sans_commune"], report["communes_sans_iris"], report["locaux_sans_commune"]) == (1, ["01999"], 6)
    assert report["hors_territoire"] == 1
    assert report["departements_sans_batiments"] == []
    assert report["departements"]["01"] == {"batiments": 8, "dans_iris": 5, "rattaches_commune": 2}
    assert report["batiments_couverts_4g"] == 3

    assert built["batiments"] == 11 and built["coordonnees_invalides"] == 2
    assert built["locaux_non_numeriques"] == 1
    assert built["batiments_sans_offre"] == 2
    assert built["batiments_codes_inconnus"] == 1  # the LTE row
    assert built["technologies"] == ["FO", "CU", "COAX", "THDR", "4GF", "HDR"]
    assert cov["operateurs_absents"] == ["Bouygues Telecom", "Free Mobile"]
    assert sum(layer["gardees"] for layer in cov["fichiers"].values()) == 3


def test_satellite_counted_when_configured(tmp_path, arcep_files, iris_frame):
    technologies = ("FO", "CU", "COAX", "4GF", "SAT", "THDR", "HDR")
    table, report, _, _ = _run(tmp_path, arcep_files, iris_frame, technologies=technologies)
    assert table.loc["010010101", "locaux_sans_thd"] == pytest.approx(15)  # building 2 is now THD
    assert table["locaux_sans_4g"].isna().all()  # no coverage given
    assert report["couverture_4g"] is False


def test_departement_without_buildings_is_null(tmp_path, arcep_files, iris_frame):
    iris = pd.concat(
        [
            iris_frame,
            gpd.GeoDataFrame(
                {"CODE_IRIS": ["070010000"], "INSEE_COM": ["07001"]}, geometry=[box(0, 0, 1, 1)], crs=2154
            ),
        ],
        ignore_index=True,
    )
    table, report, _, _ = _run(tmp_path, arcep_files, iris)
    assert report["departements_sans_batiments"] == ["07"]
    assert not table.loc["070010000", "donnees_batiments"]
    assert np.isnan(table.loc["070010000", "locaux"])


def test_overseas_iris_in_their_own_crs(tmp_path):
    """Réunion: IRIS in EPSG:2975, buildings registered in Lambert-93 and re-projected per part."""
    to_3857 = Transformer.from_crs(2975, 3857, always_xy=True)
    x, y = 340_000.0, 7_660_000.0
    buildings = [
        ("IMB/97411/X/1", "97411", to_3857.transform(x + 500, y + 500), "12", [("FO", "THD1G")]),
        ("IMB/97411/X/2", "97411", to_3857.transform(x + 300, y + 600), "4", [("CU", "HD3")]),
    ]
    rows = [
        {"imb_id": i, "imb_x": repr(px), "imb_y": repr(py), "imb_code_insee": c, "imb_nbr_logloc": n}
        for i, c, (px, py), n, _ in buildings
    ]
    files = {
        "base_imb": [_write_gz(tmp_path / "base_imb_974.csv.gz", BASE_IMB_COLUMNS, rows)],
        "eligibilite": [_write_gz(tmp_path / "actuel_974.csv.gz", ELIGIBILITE_COLUMNS, _offer_rows(buildings))],
    }
    iris = gpd.GeoDataFrame(
        {"CODE_IRIS": ["974110101"], "INSEE_COM": ["97411"]}, geometry=[box(x, y, x + KM, y + KM)], crs=2975
    )
    con = connect(tmp_path / "work")
    register_buildings(con, files["base_imb"], files["eligibilite"], target_crs=2154)
    table, report = iris_connectivity(con, iris, "batiments", None)
    assert (table.loc[0, "batiments"], table.loc[0, "locaux"], table.loc[0, "locaux_sans_thd"]) == (2, 16, 4)
    assert report["crs_iris"] == ["EPSG:2975"]


def test_missing_column_refused_with_file_and_column(tmp_path, arcep_files, iris_frame):
    header = tuple(c for c in BASE_IMB_COLUMNS if c != "imb_nbr_logloc")
    bad = _write_gz(tmp_path / "base_imb_01_bad.csv.gz", header, _base_rows(BUILDINGS[:2]))
    con = connect(tmp_path / "work")
    with pytest.raises(InputError) as err:
        register_buildings(con, [bad], arcep_files["eligibilite"])
    assert err.value.column == "imb_nbr_logloc"
    assert "base_imb_01_bad.csv.gz" in str(err.value) and "ligne 1" in str(err.value)


def test_coverage_layer_without_usage_refused(tmp_path):
    frame = gpd.GeoDataFrame(
        {"operateur": ["Orange"], "techno": ["4G"], "niveau": ["TBC"]}, geometry=[box(0, 0, 1, 1)], crs=2154
    )
    frame.to_file(tmp_path / "orange.gpkg", engine="pyogrio")
    con = connect(tmp_path / "work")
    with pytest.raises(InputError) as err:
        register_coverage(con, [tmp_path / "orange.gpkg"], work_dir=tmp_path / "work")
    assert err.value.column == "usage" and "orange.gpkg" in str(err.value)


def test_extension_loads_without_network(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("réseau interdit pendant le test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    con = connect(tmp_path / "work")
    path = con.execute(
        "SELECT install_path FROM duckdb_extensions() WHERE extension_name = 'spatial' AND loaded"
    ).fetchone()
    assert path and path[0].startswith(str(tmp_path / "work"))
    assert con.execute("SELECT ST_AsText(ST_Point(1, 2))").fetchone()[0] == "POINT (1 2)"
    temp = con.execute("SELECT current_setting('temp_directory')").fetchone()[0]
    assert temp.startswith(str(tmp_path / "work"))


def test_subdivide_keeps_the_area_and_bounds_vertices():
    ring = Point(0, 0).buffer(1000, quad_segs=2000)  # ~8,000 vertices
    pieces = subdivide(np.array([ring]), 256)
    assert shapely.get_num_coordinates(pieces).max() <= 256
    assert shapely.area(pieces).sum() == pytest.approx(ring.area, rel=1e-9)


def test_config_defaults_match_the_file():
    assert load_connectivity() == ConnectivityConfig()
    assert "SAT" not in load_connectivity().technologies


def test_a_run_measures_broadband_at_the_iris_from_building_files(tmp_path, dagster_home, capsys):
    """`inputs.arcep_batiments`: every IRIS of Lyon and the Pays de L'Arbresle gets its own
    non_thd rate, counted from ARCEP's building points (flagged `iris`), equal to a hand count;
    the IRIS of the rest of the Rhône keep the commune rate where they have no building."""
    import pyarrow.parquet as pq

    from pipelines.cli import main
    from tests.conftest import SAMPLE, write

    iris = gpd.read_file(SAMPLE / "ign" / "CONTOURS-IRIS_2016_dep69.gpkg")
    chosen = iris[iris["INSEE_COM"].str.startswith("6938") | iris["INSEE_COM"].isin(["69010", "69022", "69216"])]
    points = chosen.geometry.representative_point()
    buildings, expected = [], {}
    for i, (code, commune, point) in enumerate(zip(chosen["CODE_IRIS"], chosen["INSEE_COM"], points)):
        slow = 1 + i % 5  # premises without 30 Mbit/s in this IRIS
        x, y = TO_3857.transform(point.x, point.y)
        for n, (premises, offers) in enumerate(((10, [("FO", "THD100")]), (slow, [("CU", "HD3"), ("SAT", "THD30")]))):
            buildings.append((f"IMB/{commune}/T/{i:04d}{n}", commune, (x, y + n), str(premises), offers))
        expected[code] = slow / (10 + slow)
    base = [
        {"imb_id": b, "imb_x": repr(x), "imb_y": repr(y), "imb_code": b, "imb_code_insee": c, "imb_nbr_logloc": p}
        for b, c, (x, y), p, _ in buildings
    ]
    folder = tmp_path / "arcep"
    folder.mkdir()
    _write_gz(folder / "base_imb_69.csv.gz", BASE_IMB_COLUMNS, base)
    _write_gz(
        folder / "actuel_69.csv.gz",
        ELIGIBILITE_COLUMNS,
        _offer_rows([(b, c, None, p, o) for b, c, _, p, o in buildings]),
    )
    config = write(tmp_path / "c.yaml", f"inputs:\n  arcep_batiments: {folder}\n")
    out = tmp_path / "out"
    assert main(["run", "--config", str(config), "--territory", "69123,pays-arbresle", "--out", str(out)]) == 0
    layer = pq.read_table(out / "layers" / "iris.parquet").to_pandas().set_index("CODE_IRIS")
    measured = layer.loc[layer.index.intersection(list(expected))]
    assert len(measured) > 150 and (measured["non_thd_source"] == "iris").all()
    np.testing.assert_allclose(measured["non_thd_taux"], pd.Series(expected)[measured.index], rtol=1e-12)
    lyon = measured[measured["INSEE_COM"].str.startswith("6938")]
    assert lyon["non_thd_taux"].nunique() == 5  # the arrondissements' IRIS have their own rates
    assert layer["non_thd_score"].notna().sum() >= len(expected)
    capsys.readouterr()


def _frame_3857(rows: list[tuple[str, str, tuple[float, float, float, float]]]) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {"CODE_IRIS": [r[0] for r in rows], "INSEE_COM": [r[1] for r in rows]},
        geometry=[box(*r[2]) for r in rows],
        crs=3857,
    )


def _files_3857(folder: Path, buildings, extra_offers: list[dict] = ()) -> dict[str, list[Path]]:
    """Buildings given directly in EPSG:3857 (x, y exact), so that a point can lie on an outline."""
    base = [
        {"imb_id": i, "imb_x": repr(x), "imb_y": repr(y), "imb_code": i, "imb_code_insee": c, "imb_nbr_logloc": n}
        for i, c, (x, y), n, _ in buildings
    ]
    return {
        "base_imb": [_write_gz(folder / "base_imb_01.csv.gz", BASE_IMB_COLUMNS, base)],
        "eligibilite": [
            _write_gz(folder / "actuel_01.csv.gz", ELIGIBILITE_COLUMNS, _offer_rows(buildings) + list(extra_offers))
        ],
    }


@pytest.mark.parametrize("overlap", [False, True])
def test_points_on_outlines_in_two_iris_and_outside_every_iris(tmp_path, overlap):
    """Outlines: a point on the line shared by two IRIS goes to the smaller code, a point on the
    territory's edge to its only IRIS; a point inside two overlapping IRIS to the smaller code,
    reported; a point outside every IRIS to its commune, spread by located premises."""
    rows = [
        ("010010101", "01001", (0, 0, 1000, 1000)),  # P
        ("010010102", "01001", (1000, 0, 2000, 1000)),  # Q
        ("010020101", "01002", (5000, 0, 6000, 1000)),  # R
    ]
    if overlap:
        rows.append(("010020102", "01002", (5500, 0, 6500, 1000)))  # S overlaps R on x in [5500, 6000]
    buildings = [
        ("IMB/01001/X/1", "01001", (500.0, 500.0), "10", [("FO", "THD100")]),  # inside P
        ("IMB/01001/X/2", "01001", (1000.0, 500.0), "4", [("CU", "HD3")]),  # on the P|Q line → P
        ("IMB/01001/X/3", "01001", (2000.0, 500.0), "6", [(" fo ", "thd1g")]),  # on Q's outer edge → Q, THD
        ("IMB/01001/X/4", "01001", (3000.0, 500.0), "20", [("FO", "THD30")]),  # outside: P 14/20, Q 6/20
        ("IMB/01002/X/1", "01002", (5750.0, 500.0), "3", []),  # inside R (and S)
        ("IMB/01002/X/2", "01002", (5200.0, 500.0), "7", [("SAT", "THD1G")]),  # inside R
    ]
    files = _files_3857(tmp_path, buildings)
    con = connect(tmp_path / "work", memory_limit="1GB", threads=2)
    register_buildings(con, files["base_imb"], files["eligibilite"], target_crs=3857)
    table, report = iris_connectivity(con, _frame_3857(rows), "batiments", None)
    table = table.set_index("CODE_IRIS")
    p, q, r = table.loc["010010101"], table.loc["010010102"], table.loc["010020101"]
    assert (p["batiments"], p["locaux"], p["locaux_sans_thd"], p["locaux_commune"]) == (2, 14 + 14, 4, 14)
    assert (q["batiments"], q["locaux"], q["locaux_sans_thd"], q["locaux_commune"]) == (1, 6 + 6, 0, 6)
    assert (r["batiments"], r["locaux"], r["locaux_sans_thd"], r["locaux_commune"]) == (2, 10, 10, 0)
    if overlap:
        assert (table.loc["010020102", "batiments"], table.loc["010020102", "locaux"]) == (0, 0)
    assert report["limite_iris"] == 2
    assert report["iris_multiples"] == (1 if overlap else 0)
    assert (report["dans_iris"], report["hors_iris"], report["rattaches_commune"]) == (5, 1, 1)
    assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE '\\_%' ESCAPE '\\'").fetchone() == (
        0,
    )


@pytest.mark.parametrize("twice", [False, True])
def test_duplicate_buildings_and_offers_counted_once(tmp_path, twice):
    """A building given by two files is kept once; duplicate offer rows count as rows but make one
    building; codes with spaces or in lower case are read as the published codes; an offer whose
    building is absent is reported."""
    buildings = [
        ("IMB/01001/X/1", "01001", (500.0, 500.0), "10", [("FO", "THD100"), ("FO", "THD100")]),
        ("IMB/01001/X/2", "01001", (600.0, 500.0), "4", [("cu ", "hd3"), ("LTE", "THD30")]),
    ]
    orphan = [{"imb_id": "IMB/01001/X/9", "code_techno": "FO", "classe_debit_descendant": "THD1G"}]
    files = _files_3857(tmp_path, buildings, orphan)
    if twice:  # the national file and the département file, both given
        again = [b for b in BUILDINGS if b[0] == "IMB/01001/X/0005"] + [
            ("IMB/01001/X/2", "01001", None, "4", []),
        ]
        national = tmp_path / "national"
        national.mkdir()
        files["base_imb"].append(_write_gz(national / "base_imb.csv.gz", BASE_IMB_COLUMNS, _base_rows(again)))
    con = connect(tmp_path / "work", memory_limit="1GB", threads=2)
    built = register_buildings(con, files["base_imb"], files["eligibilite"], target_crs=3857)
    assert built["offres"] == 5
    assert built["offres_sans_batiment"] == 1
    assert built["batiments_thd"] == 1
    assert built["imb_id_en_double"] == (1 if twice else 0)
    assert built["batiments"] == (4 if twice else 2)
    assert built["batiments_avec_offres"] == (3 if twice else 2)
    assert built["batiments_codes_inconnus"] == (2 if twice else 1)  # the LTE row, per building row
    kept = con.execute("SELECT imb_id, valide, locaux FROM batiments ORDER BY imb_id").fetchall()
    extra = [("IMB/01001/X/0005", True, 3.0)] if twice else []  # far from the IRIS below, no offer
    assert kept == extra + [("IMB/01001/X/1", True, 10.0), ("IMB/01001/X/2", True, 4.0)]  # the valid X/2 kept
    iris = _frame_3857([("010010101", "01001", (0, 0, 1000, 1000))])
    table, report = iris_connectivity(con, iris, "batiments", None)
    row = table.loc[0]
    assert (row["batiments"], row["locaux"], row["locaux_sans_thd"]) == (2, 14 + 3 * twice, 4 + 3 * twice)
    assert report["rattaches_commune"] == int(twice)

"""IGN CONTOURS-IRIS deliveries as IGN packs them (7z, one folder per part of France) and the
archive extraction they go through: nested parts, staleness, hostile archives."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import geopandas as gpd
import py7zr
import pytest
from pyproj import CRS
from shapely.geometry import LineString, box

from sources.archives import ArchiveError, extract
from sources.common import InputError
from sources.ign_iris import part_crs, read_contours_iris, with_crs

MAX = 64 << 20
# The catalogue's member patterns for the 2019 and 2023 national archives.
PARTS = "(LAMB93_FXX|RGR92UTM40S_REU|RGM04UTM38S_MYT|RGAF09UTM20_GLP|RGAF09UTM20_MTQ|UTM22RGFG95_GUF)"
PATTERN_2019 = PARTS + r"-(ED)?2019(-01-01)?/CONTOURS-IRIS\.(shp|shx|dbf|prj|cpg)$"
PATTERN_2023 = PARTS + r"-(ED)?2023(-01-01)?/CONTOURS-IRIS\.(shp|shx|dbf|prj|cpg)$"
# Small squares (1 km) where each part of France lies in its own projection.
METROPOLE = (2154, 840_000, 6_520_000)
REUNION = (2975, 338_000, 7_690_000)
MAYOTTE = (4471, 520_000, 8_590_000)


def _outlines(communes: list[str], where: tuple[int, int, int], lower: bool = False) -> gpd.GeoDataFrame:
    """One IRIS per commune (code <commune>0101), with IGN's fields of edition 2-1 or 3-0 (lower)."""
    epsg, x, y = where
    codes = [f"{c}0101" for c in communes]
    fields = {
        "INSEE_COM": communes,
        "NOM_COM": [f"Commune {c}" for c in communes],
        "IRIS": ["0101"] * len(codes),
        "CODE_IRIS": codes,
        "NOM_IRIS": [f"Quartier {c}" for c in codes],
        "TYP_IRIS": ["H"] * len(codes),
    }
    if lower:
        names = {
            "INSEE_COM": "code_insee",
            "NOM_COM": "nom_commune",
            "IRIS": "iris",
            "CODE_IRIS": "code_iris",
            "NOM_IRIS": "nom_iris",
            "TYP_IRIS": "type_iris",
        }
        fields = {names[k]: v for k, v in fields.items()}
    squares = [box(x + 1000 * i, y, x + 1000 * (i + 1), y + 1000) for i in range(len(codes))]
    return gpd.GeoDataFrame(fields, geometry=squares, crs=epsg)


def _delivery(root: Path, edition: str, year: int, parts: dict[str, gpd.GeoDataFrame], livraison: str) -> Path:
    """IGN's 7z layout: <archive>/CONTOURS-IRIS/1_DONNEES_LIVRAISON_…/<part folder>/CONTOURS-IRIS.*,
    plus metadata and supplements folders; returns the 7z."""
    name = f"CONTOURS-IRIS_{edition}__SHP__FRA_{year}-01-01"
    base = root / "staging" / name / "CONTOURS-IRIS"
    for folder, frame in parts.items():
        (base / f"1_DONNEES_LIVRAISON_{livraison}" / folder).mkdir(parents=True)
        frame.to_file(base / f"1_DONNEES_LIVRAISON_{livraison}" / folder / "CONTOURS-IRIS.shp", engine="pyogrio")
        (base / f"2_METADONNEES_LIVRAISON_{livraison}" / folder).mkdir(parents=True)
        (base / f"2_METADONNEES_LIVRAISON_{livraison}" / folder / f"{folder}.xml").write_text("<md/>")
    (base / f"3_SUPPLEMENTS_LIVRAISON_{livraison}").mkdir()
    (base / f"3_SUPPLEMENTS_LIVRAISON_{livraison}" / "LISEZ-MOI.txt").write_text("IGN")
    archive = root / f"{name}.7z"
    with py7zr.SevenZipFile(archive, "w") as sz:
        sz.writeall(root / "staging" / name, name)
    return archive


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    path.write_bytes(buffer.getvalue())
    return path


@pytest.fixture
def edition_2019(tmp_path) -> Path:
    return _delivery(
        tmp_path,
        "2-1",
        2019,
        {
            "CONTOURS-IRIS_2-1_SHP_LAMB93_FXX-2019": _outlines(["69001", "69002", "69123"], METROPOLE),
            "CONTOURS-IRIS_2-1_SHP_RGR92UTM40S_REU-2019": _outlines(["97411", "97415"], REUNION),
            "CONTOURS-IRIS_2-1_SHP_RGM04UTM38S_MYT-2019": _outlines(["97611", "97608"], MAYOTTE),
        },
        "2019-06-00122",
    )


def test_2019_archive_gives_one_folder_per_part_read_into_one_frame(edition_2019, tmp_path):
    dest = tmp_path / "extracted"
    out = extract(edition_2019, PATTERN_2019, dest, MAX)
    assert out == dest and out.is_dir()
    folders = sorted(p.name for p in dest.iterdir() if p.is_dir())
    assert folders == [
        "CONTOURS-IRIS_2-1_SHP_LAMB93_FXX-2019",
        "CONTOURS-IRIS_2-1_SHP_RGM04UTM38S_MYT-2019",
        "CONTOURS-IRIS_2-1_SHP_RGR92UTM40S_REU-2019",
    ]
    for folder in folders:  # same basenames, kept apart rather than overwriting each other
        assert sorted(p.name for p in (dest / folder).iterdir()) == [
            "CONTOURS-IRIS.cpg",
            "CONTOURS-IRIS.dbf",
            "CONTOURS-IRIS.prj",
            "CONTOURS-IRIS.shp",
            "CONTOURS-IRIS.shx",
        ]
    manifest = json.loads((dest / ".members.json").read_text(encoding="utf-8"))
    assert len(manifest["files"]) == 15

    iris = read_contours_iris(out)
    assert list(iris.columns) == [
        "INSEE_COM",
        "NOM_COM",
        "IRIS",
        "CODE_IRIS",
        "NOM_IRIS",
        "TYP_IRIS",
        "EPSG",
        "geometry",
    ]
    assert len(iris) == 7 and iris.crs is None
    assert iris.groupby("EPSG")["CODE_IRIS"].apply(sorted).to_dict() == {
        2154: ["690010101", "690020101", "691230101"],
        2975: ["974110101", "974150101"],
        4471: ["976080101", "976110101"],
    }
    assert iris.attrs["parties"] == {
        "LAMB93_FXX": {"epsg": 2154, "iris": 3},
        "RGM04UTM38S_MYT": {"epsg": 4471, "iris": 2},
        "RGR92UTM40S_REU": {"epsg": 2975, "iris": 2},
    }
    reunion = with_crs(iris[iris["INSEE_COM"].str.startswith("974")])
    assert reunion.crs.to_epsg() == 2975 and len(reunion) == 2
    assert reunion.total_bounds[0] == pytest.approx(338_000) and reunion.total_bounds[3] == pytest.approx(7_691_000)
    assert with_crs(iris[iris["EPSG"] == 2154]).crs.to_epsg() == 2154
    with pytest.raises(ValueError, match=r"EPSG:2154, EPSG:2975, EPSG:4471.*une seule partie de la France"):
        with_crs(iris)


def test_unchanged_extraction_is_reused(edition_2019, tmp_path):
    dest = tmp_path / "extracted"
    extract(edition_2019, PATTERN_2019, dest, MAX)
    shp = dest / "CONTOURS-IRIS_2-1_SHP_LAMB93_FXX-2019" / "CONTOURS-IRIS.shp"
    inode = shp.stat().st_ino
    assert extract(edition_2019, PATTERN_2019, dest, MAX) == dest
    assert shp.stat().st_ino == inode  # not extracted again
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_one_part_selected_is_returned_as_its_file(edition_2019, tmp_path):
    only_metropole = r"LAMB93_FXX-2019/CONTOURS-IRIS\.(shp|shx|dbf|prj|cpg)$"
    out = extract(edition_2019, only_metropole, tmp_path / "x", MAX)
    assert out == tmp_path / "x" / "CONTOURS-IRIS.shp"
    iris = read_contours_iris(out)
    assert iris.crs.to_epsg() == 2154 and set(iris["EPSG"]) == {2154} and len(iris) == 3
    assert iris.attrs["parties"] == {"LAMB93_FXX": {"epsg": 2154, "iris": 3}}


def test_2023_edition_folders(tmp_path):
    archive = _delivery(
        tmp_path,
        "3-0",
        2023,
        {
            "CONTOURS-IRIS_3-0_SHP_LAMB93_FXX-ED2023-01-01": _outlines(["69001", "69381"], METROPOLE),
            "CONTOURS-IRIS_3-0_SHP_RGR92UTM40S_REU-ED2023-01-01": _outlines(["97411"], REUNION),
        },
        "2024-02-00238",
    )
    out = extract(archive, PATTERN_2023, tmp_path / "x", MAX)
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == [
        "CONTOURS-IRIS_3-0_SHP_LAMB93_FXX-ED2023-01-01",
        "CONTOURS-IRIS_3-0_SHP_RGR92UTM40S_REU-ED2023-01-01",
    ]
    iris = read_contours_iris(out)
    assert iris.attrs["parties"] == {
        "LAMB93_FXX": {"epsg": 2154, "iris": 2},
        "RGR92UTM40S_REU": {"epsg": 2975, "iris": 1},
    }
    assert iris.set_index("CODE_IRIS")["EPSG"].to_dict() == {"690010101": 2154, "693810101": 2154, "974110101": 2975}


def test_geopackage_with_lower_case_fields(tmp_path):
    folder = (
        tmp_path
        / "staging"
        / "CONTOURS-IRIS_3-0__GPKG_LAMB93_FXX_2024-01-01"
        / "CONTOURS-IRIS"
        / "1_DONNEES_LIVRAISON_2024-03-00150"
        / "CONTOURS-IRIS_3-0_GPKG_LAMB93_FXX-ED2024-01-01"
    )
    folder.mkdir(parents=True)
    gpkg = folder / "iris.gpkg"
    emprise = gpd.GeoDataFrame({"nom": ["emprise"]}, geometry=[box(800_000, 6_500_000, 900_000, 6_600_000)], crs=2154)
    emprise.to_file(gpkg, layer="emprise_iris", engine="pyogrio")  # holds "iris" but is not the outlines
    _outlines(["69001", "69123", "2A004"], METROPOLE, lower=True).to_file(gpkg, layer="contours_iris", engine="pyogrio")
    archive = tmp_path / "CONTOURS-IRIS_3-0__GPKG_LAMB93_FXX_2024-01-01.7z"
    with py7zr.SevenZipFile(archive, "w") as sz:
        sz.writeall(
            tmp_path / "staging" / "CONTOURS-IRIS_3-0__GPKG_LAMB93_FXX_2024-01-01",
            "CONTOURS-IRIS_3-0__GPKG_LAMB93_FXX_2024-01-01",
        )
    out = extract(archive, r"(?i)LAMB93_FXX-(ED)?2024(-01-01)?/[^/]+\.gpkg$", tmp_path / "x", MAX)
    assert out == tmp_path / "x" / "iris.gpkg"
    iris = read_contours_iris(out)
    assert iris.attrs["layer"] == "contours_iris" and len(iris) == 3
    assert iris["INSEE_COM"].tolist() == ["69001", "69123", "2A004"]
    assert iris["CODE_IRIS"].tolist() == ["690010101", "691230101", "2A0040101"]
    assert iris["NOM_COM"].iloc[0] == "Commune 69001" and set(iris["TYP_IRIS"]) == {"H"}
    assert iris.crs.to_epsg() == 2154 and iris.attrs["parties"] == {"LAMB93_FXX": {"epsg": 2154, "iris": 3}}

    no_iris_field = tmp_path / "sans_iris.gpkg"
    _outlines(["69001"], METROPOLE, lower=True).drop(columns="iris").to_file(no_iris_field, layer="CONTOURS_IRIS")
    assert read_contours_iris(no_iris_field)["IRIS"].tolist() == ["0101"]  # from the IRIS code


def test_part_in_the_wrong_projection_is_refused(tmp_path):
    rhone_in_reunion_utm = _outlines(["69001", "69002"], REUNION)
    archive = _delivery(
        tmp_path,
        "2-1",
        2019,
        {
            "CONTOURS-IRIS_2-1_SHP_LAMB93_FXX-2019": rhone_in_reunion_utm,
            "CONTOURS-IRIS_2-1_SHP_RGR92UTM40S_REU-2019": _outlines(["97411"], REUNION),
        },
        "2019-06-00122",
    )
    out = extract(archive, PATTERN_2019, tmp_path / "x", MAX)
    with pytest.raises(InputError, match=r"EPSG:2975.*69.*EPSG:2154") as err:
        read_contours_iris(out)
    assert "CONTOURS-IRIS_2-1_SHP_LAMB93_FXX-2019" in str(err.value)


def test_projection_known_from_the_folder_name(tmp_path):
    """An ESRI .prj pyproj cannot match to an EPSG code: IGN's folder name says which it is."""
    folder = tmp_path / "CONTOURS-IRIS_2-1_SHP_RGR92UTM40S_REU-2019"
    folder.mkdir()
    _outlines(["97411", "97415"], REUNION).to_file(folder / "CONTOURS-IRIS.shp")
    wkt = CRS.from_epsg(2975).to_wkt("WKT1_ESRI").replace("D_RGR_1992", "D_Reseau_Geodesique_Reunion_IGN")
    (folder / "CONTOURS-IRIS.prj").write_text(wkt)
    assert gpd.read_file(folder / "CONTOURS-IRIS.shp").crs.to_epsg() is None  # the case being tested
    iris = read_contours_iris(folder / "CONTOURS-IRIS.shp")
    assert iris.crs.to_epsg() == 2975 and set(iris["EPSG"]) == {2975}

    # Extracted alone, the part is flattened out of its folder: the manifest keeps the folder name.
    archive = tmp_path / "reu.7z"
    with py7zr.SevenZipFile(archive, "w") as sz:
        sz.writeall(folder, f"CONTOURS-IRIS/1_DONNEES_LIVRAISON_2019-06-00122/{folder.name}")
    flat = extract(archive, PATTERN_2019, tmp_path / "extracted", MAX)
    assert flat == tmp_path / "extracted" / "CONTOURS-IRIS.shp"
    iris = read_contours_iris(flat)
    assert iris.crs.to_epsg() == 2975 and iris.attrs["parties"] == {"RGR92UTM40S_REU": {"epsg": 2975, "iris": 2}}

    elsewhere = tmp_path / "copie"
    elsewhere.mkdir()
    for path in folder.iterdir():
        (elsewhere / path.name).write_bytes(path.read_bytes())
    with pytest.raises(InputError, match="sans code EPSG reconnu"):
        read_contours_iris(elsewhere / "CONTOURS-IRIS.shp")


def test_non_polygonal_geometry_is_refused(tmp_path):
    frame = _outlines(["69001", "69002"], METROPOLE)
    frame.loc[1, "geometry"] = LineString([(840_000, 6_520_000), (841_000, 6_521_000)])
    path = tmp_path / "lignes.gpkg"
    frame.to_file(path, layer="contours_iris")
    with pytest.raises(InputError, match=r"non surfacique.*LineString.*690020101"):
        read_contours_iris(path)


def test_part_crs():
    assert [part_crs(d) for d in ("69", "2A", "971", "972", "973", "974", "976")] == [
        2154,
        2154,
        5490,
        5490,
        2972,
        2975,
        4471,
    ]
    with pytest.raises(ValueError, match="975"):
        part_crs("975")


def test_same_basename_in_two_folders_is_not_overwritten(tmp_path):
    archive = _zip(tmp_path / "a.zip", {"nord/data.csv": b"nord", "sud/data.csv": b"sud"})
    out = extract(archive, r"data\.csv$", tmp_path / "x", MAX)
    assert out == tmp_path / "x"
    assert (out / "nord" / "data.csv").read_bytes() == b"nord" and (out / "sud" / "data.csv").read_bytes() == b"sud"


def test_main_files_of_different_names_are_refused(tmp_path):
    archive = _zip(
        tmp_path / "base-cc-filosofi-2020_CSV.zip",
        {
            "cc_filosofi_2020_BV2022.csv": b"CODGEO;MED20\n",
            "cc_filosofi_2020_COM.csv": b"CODGEO;MED20\n",
            "meta_cc_filosofi_2020_COM.csv": b"COD_VAR\n",
        },
    )
    with pytest.raises(
        ArchiveError,
        match=r"(?s)cc_filosofi_2020_BV2022\.csv.*cc_filosofi_2020_COM\.csv.*"
        r"exactement un fichier",
    ):
        extract(archive, r"(?i)^cc_filosofi.*\.csv$", tmp_path / "x", MAX)
    assert not (tmp_path / "x").exists()
    out = extract(archive, r"(?i)^cc_filosofi_2020_COM\.csv$", tmp_path / "x", MAX)
    assert out == tmp_path / "x" / "cc_filosofi_2020_COM.csv"


def test_changed_archive_is_extracted_again(tmp_path):
    archive = _zip(tmp_path / "a.zip", {"dossier/data.csv": b"version 1"})
    dest = tmp_path / "x"
    assert extract(archive, r"data\.csv$", dest, MAX).read_bytes() == b"version 1"
    _zip(archive, {"dossier/data.csv": b"version 2, longer"})
    out = extract(archive, r"data\.csv$", dest, MAX)
    assert out.read_bytes() == b"version 2, longer"
    assert len((dest / ".archive.sha256").read_text().strip()) == 64

    # A digest given by the caller is the one recorded and compared.
    assert extract(archive, r"data\.csv$", dest, MAX, archive_sha256="0" * 64).read_bytes() == b"version 2, longer"
    assert (dest / ".archive.sha256").read_text().strip() == "0" * 64


def test_changed_7z_archive_is_extracted_again(tmp_path):
    def build(communes: list[str]) -> Path:
        shutil.rmtree(tmp_path / "staging", ignore_errors=True)
        return _delivery(
            tmp_path,
            "2-1",
            2019,
            {"CONTOURS-IRIS_2-1_SHP_LAMB93_FXX-2019": _outlines(communes, METROPOLE)},
            "2019-06-00122",
        )

    archive = build(["69001"])
    dest = tmp_path / "x"
    assert read_contours_iris(extract(archive, PATTERN_2019, dest, MAX))["CODE_IRIS"].tolist() == ["690010101"]
    archive = build(["69001", "69002"])  # overwrites the archive with different content
    assert read_contours_iris(extract(archive, PATTERN_2019, dest, MAX))["CODE_IRIS"].tolist() == [
        "690010101",
        "690020101",
    ]


def test_altered_or_missing_extracted_file_is_extracted_again(tmp_path):
    archive = _zip(tmp_path / "a.zip", {"data.csv": b"original", "data.prj": b"PROJ"})
    dest = tmp_path / "x"
    out = extract(archive, r"data\.(csv|prj)$", dest, MAX)
    out.write_bytes(b"modified")  # same size: caught by the sha256
    assert extract(archive, r"data\.(csv|prj)$", dest, MAX).read_bytes() == b"original"
    (dest / "data.prj").unlink()
    assert extract(archive, r"data\.(csv|prj)$", dest, MAX) == out and (dest / "data.prj").read_bytes() == b"PROJ"
    (dest / ".members.json").write_text("{")
    assert extract(archive, r"data\.(csv|prj)$", dest, MAX).read_bytes() == b"original"


def test_extraction_left_by_an_older_version_is_replaced(tmp_path):
    """A folder without the digest files (earlier flattened layout) is not trusted."""
    archive = _zip(tmp_path / "a.zip", {"data.csv": b"current"})
    dest = tmp_path / "x"
    dest.mkdir()
    (dest / "data.csv").write_bytes(b"stale")
    assert extract(archive, r"data\.csv$", dest, MAX).read_bytes() == b"current"


def test_zip_bomb_is_refused_by_the_compression_ratio(tmp_path):
    archive = _zip(tmp_path / "bomb.zip", {"data.csv": b"0" * (8 << 20)})
    with pytest.raises(ArchiveError, match="bombe de décompression"):
        extract(archive, r"data\.csv$", tmp_path / "x", MAX)
    assert not (tmp_path / "x").exists()


def test_total_size_is_capped(tmp_path):
    archive = _zip(tmp_path / "a.zip", {"a/data.csv": bytes(range(256)) * 3, "b/data.csv": bytes(range(256)) * 3})
    with pytest.raises(ArchiveError, match="au-delà de la limite de"):
        extract(archive, r"data\.csv$", tmp_path / "x", 1000)  # each member is under 1000 bytes, not both
    assert not (tmp_path / "x").exists()

"""The offer of digital mediation: places file, accessibility measures, priority zones, assets."""

from __future__ import annotations

import logging

import dagster as dg
import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely

from config.offre import OFFRE_FILE, OffreConfig, load_offre
from config.settings import ConfigError, read_yaml
from indice.priorite import people_by_priority, priority
from sources.common import InputError
from sources.lieux_mediation import SCHEMA_COLUMNS, has_any, read_lieux_mediation, read_places, split_values
from tests.conftest import SAMPLE, materialize_sample, write
from transforms.accessibilite import (
    AccessParams,
    accessibility,
    building_points,
    commune_points,
    decay_weights,
    demand_points,
    demand_sentence,
    iris_points,
    locate_places,
    pairs_within,
)

# The header of the national file, as the schema's exemple-valide.csv (v1.0.2) and the
# consolidation library write it: comma-separated, every field in double quotes.
HEADER = ",".join(f'"{c}"' for c in SCHEMA_COLUMNS)
SIRET = "21690123100019"


def row(**values: str) -> str:
    """One line of the national file: the schema's columns in order, quoted; `values` by name."""
    base = {
        "pivot": "00000000000000",  # the national file's placeholder when the SIRET is unknown
        "commune": "Lyon",
        "code_postal": "69001",
        "adresse": "1 Place de la Comédie",
        "typologie": "MUNI",
        "source": "Conseiller Numérique",
        "itinerance": "Fixe",
        "date_maj": "2024-03-12",
        "services": "Aide aux démarches administratives|Maîtrise des outils numériques du quotidien",
        "frais_a_charge": "Gratuit",
        "modalites_acces": "Se présenter|Téléphoner",
    }
    cells = {**base, **values}
    return ",".join('"' + cells.get(c, "").replace('"', '""') + '"' for c in SCHEMA_COLUMNS)


NATIONAL = "\n".join(
    [
        HEADER,
        # line 2: a complete place in Lyon 1er
        row(id="lieu-a", nom="Mairie du 1er", pivot=SIRET, code_insee="69381", latitude="45.767", longitude="4.8357"),
        # line 3: no coordinates, the city code of Lyon: placed at the commune
        row(id="lieu-b", nom="Bibliothèque", code_insee="69123", adresse="30 Boulevard Vivier-Merle"),
        # line 4: neither coordinates nor commune code: refused
        row(id="lieu-c", nom="Bus numérique", code_insee="", code_postal="69000"),
        # line 5: same id as line 2, older: a duplicate
        row(id="lieu-a", nom="Mairie du 1er (ancienne fiche)", pivot=SIRET, code_insee="69381", date_maj="2023-01-05"),
        # line 6: coordinates in the Gulf of Guinea (0, 0): put at its commune, flagged
        row(id="lieu-e", nom="Centre social", code_insee="69266", latitude="0", longitude="0"),
        # line 7: latitude and longitude swapped: swapped back
        row(id="lieu-f", nom="Espace public numérique", code_insee="69266", latitude="4.88", longitude="45.77"),
        # lines 8–9: a presentation on two lines (a quoted line break)
        row(
            id="lieu-g",
            nom="Tiers-lieu",
            code_insee="69384",
            latitude="45.7797",
            longitude="4.8274",
            presentation_detail="Ateliers le mardi,\nrendez-vous le jeudi",
            publics_specifiquement_adresses="Seniors|Femmes",
        ),
        # line 10: no name: refused (the line after a two-line row)
        row(id="lieu-h", nom="", code_insee="69381", latitude="45.76", longitude="4.83"),
        # line 11: same SIRET and address as line 2, another source: the same structure
        row(
            id="lieu-i",
            nom="Mairie du 1er",
            pivot=SIRET,
            code_insee="69381",
            latitude="45.767",
            longitude="4.8357",
            source="France Services",
            date_maj="2022-09-01",
        ),
        # line 12: same SIRET, another address: another place of the same structure, kept
        row(
            id="lieu-j",
            nom="Mairie annexe",
            pivot=SIRET,
            code_insee="69381",
            adresse="2 rue d'Algérie",
            latitude="45.7672",
            longitude="4.8311",
        ),
        # line 13: a code postal whose zero a spreadsheet dropped, in the Ain
        row(
            id="lieu-k",
            nom="Maison France Services",
            code_postal="1000",
            code_insee="01053",
            latitude="46.2052",
            longitude="5.2255",
        ),
    ]
)


@pytest.fixture
def national(tmp_path):
    return write(tmp_path / "lieux-de-mediation-numerique-en-france.csv", NATIONAL + "\n")


def test_national_layout_is_read_and_validated(national):
    places = read_places(national)
    assert sorted(places["id"]) == ["lieu-a", "lieu-b", "lieu-e", "lieu-f", "lieu-g", "lieu-j", "lieu-k"]
    refused = {e["ligne"]: e["raison"] for e in places.attrs["lignes_refusees"]}
    assert set(refused) == {4, 10}
    assert "impossible à situer" in refused[4] and "`nom` vide" in refused[10]
    by_id = places.set_index("id")
    assert by_id.loc["lieu-a", "nom"] == "Mairie du 1er"  # the most recent of the two `lieu-a`
    assert by_id.loc["lieu-b", "localisation"] == "commune" and np.isnan(by_id.loc["lieu-b", "latitude"])
    assert by_id.loc["lieu-e", "localisation"] == "commune"
    assert "hors des limites en France métropolitaine" in by_id.loc["lieu-e", "motif_localisation"]
    assert (by_id.loc["lieu-f", "latitude"], by_id.loc["lieu-f", "longitude"]) == (45.77, 4.88)
    assert by_id.loc["lieu-f", "localisation"] == "coordonnees"
    assert by_id.loc["lieu-g", "ligne"] == 8 and by_id.loc["lieu-j", "ligne"] == 12
    assert by_id.loc["lieu-k", "code_postal"] == "01000"
    assert split_values(by_id.loc["lieu-g", "services"]) == [
        "Aide aux démarches administratives",
        "Maîtrise des outils numériques du quotidien",
    ]
    dropped = {(d["id"], d["regle"], d["ligne"]) for d in places.attrs["doublons"]}
    assert dropped == {("lieu-a", "id", 5), ("lieu-i", "pivot et adresse", 11)}
    assert [e["ligne"] for e in places.attrs["sans_coordonnees"]] == [3, 6]


def test_a_file_without_the_schema_is_refused_with_the_column(tmp_path):
    other = write(tmp_path / "lieux.csv", '"id","nom","commune"\n"1","Lieu","Lyon"\n')
    with pytest.raises(InputError, match="pivot") as err:
        read_lieux_mediation(other)
    assert err.value.line == 1 and "standard-mediation-num" in str(err.value)


def test_local_list_completes_or_replaces(national, tmp_path):
    # A local list saved by a French spreadsheet: `;`-separated, 0.x-style `;`-free values.
    local = write(
        tmp_path / "lieux_locaux.csv",
        ";".join(SCHEMA_COLUMNS)
        + "\n"
        + ";".join(
            {
                "id": "lieu-a",
                "pivot": "21690123100019",
                "nom": "Mairie du 1er (fiche locale)",
                "commune": "Lyon",
                "code_postal": "69001",
                "code_insee": "69381",
                "adresse": "1 Place de la Comédie",
                "latitude": "45,767",
                "longitude": "4,8357",
                "date_maj": "2020-01-01",
                "services": "Aide aux démarches administratives",
            }.get(c, "")
            for c in SCHEMA_COLUMNS
        )
        + "\n",
    )
    completed = read_places(national, local, "completer").set_index("id")
    assert completed.loc["lieu-a", "nom"] == "Mairie du 1er (fiche locale)"  # local wins, though older
    assert completed.loc["lieu-a", "latitude"] == 45.767 and "lieu-k" in completed.index
    replaced = read_places(national, local, "remplacer")
    assert replaced["id"].tolist() == ["lieu-a"]
    assert read_places(None, None) is None


def test_multi_valued_cells():
    assert split_values("Jeunes|Seniors") == ["Jeunes", "Seniors"]
    assert split_values("Jeunes;Seniors") == ["Jeunes", "Seniors"]  # schema 0.x
    assert split_values("") == [] and split_values(None) == []
    cells = pd.Series(["Seniors|Femmes", "Jeunes", ""])
    assert has_any(cells, ["Seniors"]).tolist() == [True, False, False]


# --- hand-computed measures -------------------------------------------------------------------
#
# Four IRIS points on a line (metres): I1 x=0, I2 x=3500, I3 x=6000, I4 x=20000, with 100, 200,
# 100 and 50 people at risk; two places: L1 x=1000 (démarches), L2 x=5000 (outils). Distances (km):
#        L1    L2
#   I1   1     5
#   I2   2.5   1.5
#   I3   5     1
#   I4   19    15
# Catchment d0 = 4 km: pairs I1–L1, I2–L1, I2–L2, I3–L2.


def grid():
    points = pd.DataFrame(
        {"CODE_IRIS": ["I1", "I2", "I3", "I4"], "x": [0.0, 3500, 6000, 20000], "y": 0.0, "poids": 1.0}
    )
    demand = pd.Series([100.0, 200, 100, 50], index=["I1", "I2", "I3", "I4"])
    places = pd.DataFrame(
        {
            "x": [1000.0, 5000],
            "y": [0.0, 0],
            "services": ["Aide aux démarches administratives", "Maîtrise des outils numériques du quotidien"],
            "publics_specifiquement_adresses": ["", "Seniors"],
        }
    )
    return points, demand, places


def params(decay: str, **more) -> AccessParams:
    return AccessParams(radii_km=(2, 5), catchment_km=4, decay=decay, **more)


def test_distances_and_counts_by_hand():
    points, demand, places = grid()
    table = accessibility(points, demand, places, params("aucune")).set_index("CODE_IRIS")
    assert table["offre_dist_km"].tolist() == pytest.approx([1, 1.5, 1, 15])
    # within 2 km: I1 (L1 at 1), I2 (L2 at 1.5), I3 (L2 at 1); within 5 km: I1 both (5 ≤ 5), I3 both
    assert table["offre_n_2km"].tolist() == [1, 1, 1, 0]
    assert table["offre_n_5km"].tolist() == [2, 2, 2, 0]
    assert table["offre_demande"].tolist() == [100, 200, 100, 50]


def test_2sfca_without_decay_by_hand():
    # R1 = 1 / (100 + 200) = 1/300 ; R2 = 1 / (200 + 100) = 1/300
    # A1 = R1 = 1/300 → 33.33 per 10,000 ; A2 = R1 + R2 = 2/300 → 66.67 ; A3 = R2 → 33.33 ; A4 = 0
    points, demand, places = grid()
    table = accessibility(points, demand, places, params("aucune"))
    assert table["offre_2sfca"].tolist() == pytest.approx([10_000 / 300, 20_000 / 300, 10_000 / 300, 0])
    # conservation: Σ A_i·P_i = 100/300 + 400/300 + 100/300 = 2 places
    assert table.attrs["conservation"] == pytest.approx({"somme_A_P": 2.0, "lieux_servis": 2.0})


def test_2sfca_with_steps_by_hand():
    # W = 1 up to 2 km, 0.5 up to 4 km: I1–L1 1, I2–L1 0.5, I2–L2 1, I3–L2 1
    # R1 = 1 / (1·100 + 0.5·200) = 1/200 ; R2 = 1 / (1·200 + 1·100) = 1/300
    # A1 = 1/200 → 50 ; A2 = 0.5/200 + 1/300 = 7/1200 → 58.33 ; A3 = 1/300 → 33.33 ; A4 = 0
    points, demand, places = grid()
    table = accessibility(points, demand, places, params("paliers", steps=((2, 1.0), (4, 0.5))))
    assert table["offre_2sfca"].tolist() == pytest.approx([50, 70_000 / 1200, 10_000 / 300, 0])


def test_2sfca_with_gaussian_decay_by_hand():
    # W(d) = (exp(-½(d/4)²) − exp(-½)) / (1 − exp(-½)): W(1) = 0.921806, W(1.5) = 0.827439, W(2.5) = 0.549082
    # R1 = 1 / (0.921806·100 + 0.549082·200) = 0.00495057 ; R2 = 1 / (0.827439·200 + 0.921806·100) = 0.00388096
    # A1 = 0.921806·R1 = 0.00456347 ; A2 = 0.549082·R1 + 0.827439·R2 = 0.00592952 ; A3 = 0.921806·R2 = 0.00357749
    points, demand, places = grid()
    assert decay_weights(np.array([0, 1, 4, 4.01]), params("gaussienne")).tolist() == pytest.approx(
        [1, 0.9218064, 0, 0], abs=1e-6
    )
    table = accessibility(points, demand, places, params("gaussienne"))
    assert table["offre_2sfca"].tolist() == pytest.approx([45.6347, 59.2952, 35.7749, 0], abs=1e-4)


def test_filters_by_service_and_public():
    # démarches: only L1. Distances 1, 2.5, 5, 19 ; R1 = 1/300 ; A = 1/300, 1/300, 0, 0 (I3 at 5 km > d0)
    points, demand, places = grid()
    p = params(
        "aucune",
        service_filters={"demarches": ["Aide aux démarches administratives"]},
        public_filters={"seniors": ["Seniors"]},
    )
    table = accessibility(points, demand, places, p)
    assert table["offre_dist_km_demarches"].tolist() == pytest.approx([1, 2.5, 5, 19])
    assert table["offre_2sfca_demarches"].tolist() == pytest.approx([10_000 / 300, 10_000 / 300, 0, 0])
    assert table["offre_dist_km_seniors"].tolist() == pytest.approx([5, 1.5, 1, 15])


def test_finer_demand_points_are_averaged_by_share():
    # I1 split in two buildings: 3 premises at x=0 (share 0.75, 75 people), 1 at x=2000 (0.25, 25
    # people), both 1 km from L1: mean distance 1 km. I2 keeps one point (3500, 0).
    # Within 4 km: I1a–L1 (1), I1b–L1 (1), I1b–L2 (3), I2–L1 (2.5), I2–L2 (1.5).
    # R1 = 1 / (75 + 25 + 200) = 1/300 ; R2 = 1 / (25 + 200) = 1/225
    # A(I1a) = 1/300 ; A(I1b) = 1/300 + 1/225 ; A(I1) = 0.75·A(I1a) + 0.25·A(I1b) = 4/900 → 44.44
    # A(I2) = 1/300 + 1/225 = 7/900 → 77.78
    points, demand, places = grid()
    buildings = pd.DataFrame(
        {"CODE_IRIS": ["I1", "I1", "I9"], "x": [0.0, 2000.0, 9.0], "y": [0.0, 0.0, 9.0], "locaux": [3, 1, 5]}
    )
    outlines = gpd.GeoDataFrame(
        {"CODE_IRIS": ["I1", "I2"]},
        geometry=[shapely.box(-500, -500, 2500, 500), shapely.box(3000, -500, 4000, 500)],
        crs=2154,
    )
    finer = building_points(buildings, outlines)  # I9 is not an IRIS of the outlines: left out
    assert finer.groupby("CODE_IRIS")["poids"].sum().to_dict() == {"I1": 1.0, "I2": 1.0}
    assert finer.set_index("CODE_IRIS")["point"].to_dict() == {"I1": "immeubles", "I2": "surface"}
    table = accessibility(finer, demand.loc[["I1", "I2"]], places, params("aucune")).set_index("CODE_IRIS")
    assert table.loc["I1", "offre_dist_km"] == pytest.approx(1.0)
    assert table["offre_2sfca"].tolist() == pytest.approx([40_000 / 900, 70_000 / 900])
    # conservation still holds at the points: 75/300 + 25·7/900 + 200·7/900 = 2 places
    assert table.attrs["conservation"]["somme_A_P"] == pytest.approx(2.0)


# --- ARCEP's buildings as demand points ----------------------------------------------------------
#
# Lambert-93, near Lyon (X0, Y0). IRIS A = [0, 2000] × [100, 1000] m, with three buildings on the
# line y = 550: b1 at x = 520 (1 premises), b2 at x = 1500 (2) and b3 at x = 1560 (1), b2 and b3 in
# the same 100 m square (x in [1500, 1600), y in [500, 600)). IRIS B = [2000, 4000] × [100, 1000],
# no building: its point on surface is its centre (3000, 550). One place L at (4520, 550).
#
# Demand points: A1 = b1 (x 520, 1 premises, share 1/4), A2 = b2 + b3 at their premises-weighted
# mean x (2·1500 + 1560) / 3 = 1520 (3 premises, share 3/4); B at 3000. Distances to L: A1 4 km,
# A2 3 km, B 1.52 km; distance of A = 1/4·4 + 3/4·3 = 3.25 km (its point on surface, x 1000,
# would give 3.52).
# People at risk P_A = 400, P_B = 100: P_A1 = 100, P_A2 = 300. Catchment 3.5 km, no decay: A2 and
# B reach L, R_L = 1 / (300 + 100) = 1/400; A_A1 = 0, A_A2 = A_B = 1/400; A of A = 3/4 · 1/400 →
# 18.75 per 10,000, of B 25. Places within 3.5 km: A 3/4 (A2 only), B 1; within 5 km: 1 and 1.
X0, Y0 = 840_000.0, 6_518_000.0
BUILDINGS = [("IMB/69381/X/0001", 520.0, 1), ("IMB/69381/X/0002", 1500.0, 2), ("IMB/69381/X/0003", 1560.0, 1)]


def write_arcep(folder, departement: str, buildings: list[tuple[str, str, float, float, int]], crs: int = 2154) -> None:
    """`base_imb_<dep>.csv.gz` and `actuel_<dep>.csv.gz` as ARCEP publishes them (`;`, gzip, the
    published headers, points in EPSG:3857) for (imb_id, commune, x, y in `crs`, premises)."""
    import gzip

    from pyproj import Transformer

    from sources.arcep_batiments import BASE_IMB_COLUMNS, ELIGIBILITE_COLUMNS

    to_3857 = Transformer.from_crs(crs, 3857, always_xy=True)
    base, offers = [], []
    for imb_id, commune, x, y, premises in buildings:
        mx, my = to_3857.transform(x, y)
        base.append({"imb_id": imb_id, "imb_x": repr(mx), "imb_y": repr(my), "imb_code": imb_id})
        base[-1] |= {"imb_code_insee": commune, "imb_nbr_logloc": str(premises), "imb_source": "DGFIP"}
        offers.append({"imb_id": imb_id, "code_operateur": "ORAN", "code_techno": "FO"})
        offers[-1] |= {"classe_debit_montant": "THD100", "classe_debit_descendant": "THD100"}
    for name, header, rows in (("base_imb", BASE_IMB_COLUMNS, base), ("actuel", ELIGIBILITE_COLUMNS, offers)):
        lines = [";".join(header)] + [";".join(str(r.get(c, "")) for c in header) for r in rows]
        with gzip.open(folder / f"{name}_{departement}.csv.gz", "wt", encoding="utf-8", newline="") as fh:
            fh.write("\n".join(lines) + "\n")


def two_buildings_per_iris(outlines: gpd.GeoDataFrame) -> tuple[list, dict[str, list[shapely.Point]]]:
    """Two buildings in each IRIS (Lambert-93 outlines), one in each half of its bounding box, with
    1 and 3 premises; IRIS whose two points would share a 100 m square are left without any."""
    buildings, points_by_iris = [], {}
    for code, commune, outline in zip(outlines["CODE_IRIS"], outlines["INSEE_COM"], outlines.geometry):
        minx, miny, maxx, maxy = outline.bounds
        middle = (minx + maxx) / 2
        halves = [outline.intersection(shapely.box(a, miny, b, maxy)) for a, b in ((minx, middle), (middle, maxx))]
        points = [h.representative_point() for h in halves if not h.is_empty]
        if len(points) < 2 or len({(int(p.x // 100), int(p.y // 100)) for p in points}) < 2:
            continue
        for n, (point, premises) in enumerate(zip(points, (1, 3))):
            buildings.append((f"IMB/{commune}/T/{code}{n}", commune, point.x, point.y, premises))
        points_by_iris[code] = points
    return buildings, points_by_iris


def test_arcep_buildings_are_the_demand_points_by_hand(tmp_path):
    from sources.arcep_batiments import register_buildings
    from transforms.connectivite import iris_connectivity
    from transforms.duckdb_spatial import connect

    write_arcep(tmp_path, "69", [(i, "69381", X0 + x, Y0 + 550, n) for i, x, n in BUILDINGS])
    outlines = gpd.GeoDataFrame(
        {"CODE_IRIS": ["693810101", "693810102"], "INSEE_COM": ["69381", "69381"]},
        geometry=[
            shapely.box(X0, Y0 + 100, X0 + 2000, Y0 + 1000),
            shapely.box(X0 + 2000, Y0 + 100, X0 + 4000, Y0 + 1000),
        ],
        crs=2154,
    )
    con = connect(tmp_path / "work", memory_limit="1GB", threads=1)
    register_buildings(con, [tmp_path / "base_imb_69.csv.gz"], [tmp_path / "actuel_69.csv.gz"], target_crs=2154)
    table, _ = iris_connectivity(con, outlines, "batiments", None)
    con.close()
    premises = table.attrs["points_batiments"]
    assert premises["CODE_IRIS"].tolist() == ["693810101", "693810101"]
    assert (premises["x"] - X0).tolist() == pytest.approx([520, 1520], abs=1e-6)
    assert (premises["y"] - Y0).tolist() == pytest.approx([550, 550], abs=1e-6)
    assert premises["locaux"].tolist() == [1, 3]
    points, counts = demand_points(outlines, premises)
    assert counts == {"iris_immeubles": 1, "iris_point_interieur": 1, "points": 3}
    assert demand_sentence(counts) == "points de demande : 1 IRIS aux immeubles ARCEP, 1 au point intérieur"
    assert points.loc[points["point"] == "surface", ["x", "y"]].to_numpy().tolist() == [[X0 + 3000, Y0 + 550]]
    assert points["poids"].tolist() == [0.25, 0.75, 1.0]
    place = pd.DataFrame({"x": [X0 + 4520], "y": [Y0 + 550], "services": [""], "publics_specifiquement_adresses": [""]})
    demand = pd.Series([400.0, 100.0], index=["693810101", "693810102"])
    table = accessibility(points, demand, place, AccessParams(radii_km=(3.5, 5), catchment_km=3.5))
    table = table.set_index("CODE_IRIS")
    assert table["offre_dist_km"].tolist() == pytest.approx([3.25, 1.52])
    assert table["offre_n_3_5km"].tolist() == pytest.approx([0.75, 1])
    assert table["offre_n_5km"].tolist() == pytest.approx([1, 1])
    assert table["offre_2sfca"].tolist() == pytest.approx([18.75, 25])
    assert table.attrs["conservation"] == pytest.approx({"somme_A_P": 1.0, "lieux_servis": 1.0})
    # without the buildings, A is measured from its point on surface (1000, 550): 3.52 km
    alone, counts = demand_points(outlines, None)
    assert counts["iris_immeubles"] == 0 and counts["iris_point_interieur"] == 2
    surface = accessibility(alone, demand, place, AccessParams(radii_km=(3.5,), catchment_km=3.5))
    assert surface["offre_dist_km"].tolist() == pytest.approx([3.52, 1.52])


def test_building_points_of_each_part_of_france_in_its_crs(tmp_path):
    """IRIS of Lyon (Lambert-93) and of Réunion (EPSG:2975) in one frame (`EPSG` column): each
    IRIS's points are in its own CRS, buildings registered in Lambert-93 and re-projected."""
    from sources.arcep_batiments import register_buildings
    from transforms.connectivite import iris_connectivity
    from transforms.duckdb_spatial import connect

    rx, ry = 340_000.0, 7_660_000.0  # Réunion, EPSG:2975
    write_arcep(tmp_path, "69", [("IMB/69381/X/1", "69381", X0 + 500, Y0 + 500, 2)])
    write_arcep(tmp_path, "974", [("IMB/97411/X/1", "97411", rx + 250, ry + 750, 5)], crs=2975)
    outlines = gpd.GeoDataFrame(
        {"CODE_IRIS": ["693810101", "974110101"], "INSEE_COM": ["69381", "97411"], "EPSG": [2154, 2975]},
        geometry=[shapely.box(X0, Y0, X0 + 1000, Y0 + 1000), shapely.box(rx, ry, rx + 1000, ry + 1000)],
    )
    con = connect(tmp_path / "work", memory_limit="1GB", threads=1)
    files = sorted(tmp_path.glob("base_imb_*")), sorted(tmp_path.glob("actuel_*"))
    register_buildings(con, *files, target_crs=2154)
    table, _ = iris_connectivity(con, outlines, "batiments", None)
    con.close()
    premises = table.attrs["points_batiments"].set_index("CODE_IRIS")
    assert premises.loc["693810101", ["x", "y", "locaux"]].tolist() == pytest.approx([X0 + 500, Y0 + 500, 2])
    assert premises.loc["974110101", ["x", "y", "locaux"]].tolist() == pytest.approx([rx + 250, ry + 750, 5])


def test_blocks_of_points_give_the_same_measures(monkeypatch):
    """France's millions of building points are taken by blocks: the same values as in one block."""
    import transforms.accessibilite as access

    points, demand, places = grid()
    p = params(
        "paliers", steps=((2, 1.0), (4, 0.5)), service_filters={"demarches": ["Aide aux démarches administratives"]}
    )
    whole = accessibility(points, demand, places, p)
    found = []
    monkeypatch.setattr(access, "BLOCK", 1)
    monkeypatch.setattr(access, "pairs_within", lambda *a: found.append(len(a[0])) or pairs_within(*a))
    pd.testing.assert_frame_equal(accessibility(points, demand, places, p), whole)
    assert found == [1] * 8  # four blocks of one point, each found in step 1 and again in step 2
    assert access.blocks(4, 3) == [slice(0, 3), slice(3, 4)]


def test_places_without_coordinates_go_to_their_commune(national):
    places = read_places(national)
    outlines = gpd.GeoDataFrame(
        {
            "CODE_IRIS": ["693810101", "693810102", "692660101"],
            "INSEE_COM": ["69381", "69381", "69266"],
        },
        geometry=[
            shapely.box(842000, 6519000, 843000, 6520000),
            shapely.box(843000, 6519000, 844000, 6520000),
            shapely.box(845000, 6518000, 846000, 6519000),
        ],
        crs=2154,
    )
    points = iris_points(outlines)
    population = pd.Series([300.0, 100.0, 50.0])
    centres = commune_points(points, outlines, population).set_index("code")
    # 69381: (842500·300 + 843500·100) / 400 = 842750 ; Lyon (69123) covers its arrondissements
    assert centres.loc["69381", "x"] == pytest.approx(842750)
    assert centres.loc["69123", "x"] == pytest.approx(842750)
    located, report = locate_places(places, outlines, points, population)
    by_id = located.set_index("id")
    assert by_id.loc["lieu-b", "x"] == pytest.approx(842750)  # Lyon → the arrondissements' centre
    assert by_id.loc["lieu-e", "x"] == pytest.approx(845500)  # Villeurbanne's only IRIS
    assert report["lieux_places_commune"] == 2 and report["n_lieux_non_places"] == 0


# --- priority ---------------------------------------------------------------------------------


def priority_config(**fragility) -> OffreConfig:
    data = read_yaml(OFFRE_FILE)
    data["priorite"]["fragilite"].update(fragility)
    data["priorite"]["accessibilite"].update({"type": "valeur", "seuils": [0, 10]})
    return OffreConfig.model_validate(data)


def test_priority_classes_by_hand():
    frame = pd.DataFrame(
        {
            "CODE_IRIS": list("ABCDEFG"),
            "INSEE_COM": ["69001", "69001", "69001", "69002", "69002", "69002", "69002"],
            # values ≤ 100 non fragile, ≤ 120 intermediate, > 120 fragile
            "score_global": [130, 130, 110, 110, 90, np.nan, 125],
            # 2SFCA ≤ 0 far, ≤ 10 intermediate, > 10 close
            "offre_2sfca": [0, 12, 0, 5, 0, 0, 5],
            "offre_demande": [10.0, 20, 30, 40, 50, 60, 70],
        }
    )
    config = priority_config(type="valeur", seuils=[100, 120]).priorite
    classes = priority(frame, config)
    assert classes["classe_fragilite"].tolist()[:5] == [
        "fragile",
        "fragile",
        "intermediaire",
        "intermediaire",
        "non_fragile",
    ]
    assert classes["classe_accessibilite"].tolist() == [
        "eloigne",
        "proche",
        "eloigne",
        "intermediaire",
        "eloigne",
        "eloigne",
        "intermediaire",
    ]
    assert classes["priorite"].tolist()[:5] == ["forte", "faible", "moyenne", "faible", "faible"]
    assert pd.isna(classes["priorite"].iloc[5])  # no score, no class
    assert classes["priorite"].iloc[6] == "moyenne"
    by_commune = people_by_priority(pd.concat([frame, classes], axis=1), "INSEE_COM").set_index("INSEE_COM")
    assert by_commune.loc["69001", "personnes_priorite_forte"] == 10
    assert by_commune.loc["69001", "personnes_priorite_moyenne"] == 30
    assert by_commune.loc["69001", "part_personnes_priorite_forte"] == pytest.approx(10 / 60)
    assert by_commune.loc["69002", "personnes_priorite_moyenne"] == 70
    assert by_commune.loc["69002", "personnes_non_classees"] == 60
    assert by_commune.loc["69002", "iris_priorite_faible"] == 2


def test_priority_quantile_thresholds():
    frame = pd.DataFrame({"score_global": np.arange(1.0, 11.0), "offre_2sfca": np.zeros(10)})
    classes = priority(frame, priority_config(type="quantile", seuils=[0.5, 0.8]).priorite)
    # quantiles of 1…10: q0.5 = 5.5, q0.8 = 8.2 → 1–5 non fragile, 6–8 intermediate, 9–10 fragile
    assert classes["priorite"].tolist() == ["faible"] * 5 + ["moyenne"] * 3 + ["forte"] * 2
    assert classes.attrs["seuils"]["score_global"] == pytest.approx([5.5, 8.2])


def test_configuration_errors_name_the_key(tmp_path):
    data = read_yaml(OFFRE_FILE)
    data["paliers"] = [{"jusqu_a_km": 5, "poids": 1}, {"jusqu_a_km": 15, "poids": 0.5}]
    bad = write(tmp_path / "offre.yaml", __import__("yaml").safe_dump(data, allow_unicode=True))
    with pytest.raises(ConfigError, match="exceeds bassin_km"):
        load_offre(bad)
    assert load_offre().decroissance == "paliers"


# --- Dagster ----------------------------------------------------------------------------------

OFFRE_ASSETS = ["lieux_mediation", "iris_accessibilite", "iris_priorite"]
OFFRE_CHECKS = ("lieux_schema", "lieux_coordonnees", "lieux_doublons", "accessibilite_coherente")


def test_assets_on_the_sample(tmp_path):
    result = materialize_sample(tmp_path / "out", dg.AssetSelection.assets(*OFFRE_ASSETS).upstream())
    assert result.success
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    for name in OFFRE_CHECKS:
        assert checks[name].passed, name
    places = result.output_for_node("lieux_mediation")
    assert len(places) == 46 and (places["localisation"] == "commune").sum() == 5
    table = result.output_for_node("iris_accessibilite")
    assert len(table) == 751 and table["offre_dist_km"].notna().all()
    assert table.attrs["demande_colonne"] == "est_illectronisme_non_dipl"  # the sample has no 15+ count
    # the sample has no ARCEP building files (data/sample-69/PROVENANCE.md): every IRIS at its point
    assert result.output_for_node("iris_connectivite", "points_batiments") is None
    sentence = "points de demande : 0 IRIS aux immeubles ARCEP, 751 au point intérieur"
    meta = result.asset_materializations_for_node("iris_accessibilite")[0].metadata
    assert table.attrs["points_demande"] == meta["points_demande"].value == sentence
    # every place of the synthetic file is inside an IRIS of the sample: distance 0 is possible,
    # never beyond the width of the département
    assert table["offre_dist_km"].max() < 60
    out = result.output_for_node("iris_priorite")
    assert set(out) == {"iris", "communes", "epci"}
    assert set(out["iris"]["priorite"].dropna()) <= {"forte", "moyenne", "faible"}
    assert (out["iris"]["priorite"] == "forte").sum() > 0
    total = out["communes"].filter(like="personnes_").drop(columns="part_personnes_priorite_forte", errors="ignore")
    assert total.to_numpy().sum() == pytest.approx(table["offre_demande"].sum())


def test_a_run_measures_the_offer_from_arcep_buildings(tmp_path, caplog):
    """`inputs.arcep_batiments`: the IRIS of Lyon with buildings are measured from them (two
    buildings each, 1 and 3 premises, in different 100 m squares), the others from their point
    on surface; the distance of a measured IRIS is the premises-weighted mean of its buildings'
    distances to their nearest place, the places put as the published layer puts them."""
    iris = gpd.read_file(SAMPLE / "ign" / "CONTOURS-IRIS_2016_dep69.gpkg")
    buildings, expected = two_buildings_per_iris(iris[iris["INSEE_COM"].str.startswith("6938")])
    folder = tmp_path / "arcep"
    folder.mkdir()
    write_arcep(folder, "69", buildings)
    config = write(tmp_path / "user.yaml", f"inputs:\n  arcep_batiments: {folder}\n")
    caplog.set_level(logging.INFO, logger="fragilite.progress")
    result = materialize_sample(
        tmp_path / "out", dg.AssetSelection.assets(*OFFRE_ASSETS).upstream(), config_file=str(config)
    )
    assert result.success
    table = result.output_for_node("iris_accessibilite").set_index("CODE_IRIS")
    sentence = f"points de demande : {len(expected)} IRIS aux immeubles ARCEP, {751 - len(expected)} au point intérieur"
    assert len(expected) > 100 and table.attrs["points_demande"] == sentence and sentence in caplog.text
    meta = result.asset_materializations_for_node("iris_accessibilite")[0].metadata
    assert meta["iris_points_immeubles"].value == len(expected)
    assert meta["iris_point_interieur"].value == 751 - len(expected)
    frame = result.output_for_node("iris_indicateurs").frame
    places, _ = locate_places(result.output_for_node("lieux_mediation"), frame, iris_points(frame), frame["P_POP"])
    lx, ly = places["x"].to_numpy(), places["y"].to_numpy()

    def nearest(point) -> float:
        return float(np.min(np.hypot(lx - point.x, ly - point.y))) / 1000

    by_hand = pd.Series({code: (nearest(a) + 3 * nearest(b)) / 4 for code, (a, b) in expected.items()})
    # within a millimetre: building points are kept to the millimetre (exact sums, transforms.connectivite)
    np.testing.assert_allclose(table.loc[by_hand.index, "offre_dist_km"], by_hand, rtol=0, atol=1e-6)
    # the others keep their point on surface
    surface = iris_points(frame).set_index("CODE_IRIS")
    others = surface.index.difference(by_hand.index)[:50]
    by_point = [nearest(shapely.Point(x, y)) for x, y in surface.loc[others, ["x", "y"]].to_numpy()]
    np.testing.assert_allclose(table.loc[others, "offre_dist_km"], by_point, rtol=1e-9)
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks["accessibilite_coherente"]


def test_without_places_the_offer_is_absent(tmp_path, caplog):
    config = write(tmp_path / "user.yaml", "inputs:\n  lieux_mediation: null\n")
    caplog.set_level(logging.INFO, logger="fragilite.progress")
    result = materialize_sample(
        tmp_path / "out", dg.AssetSelection.assets(*OFFRE_ASSETS).upstream(), config_file=str(config)
    )
    assert result.success
    for name in OFFRE_ASSETS:
        assert result.output_for_node(name) is None
    mine = [c for c in result.get_asset_check_evaluations() if c.check_name in OFFRE_CHECKS]
    assert len(mine) == len(OFFRE_CHECKS) and all(c.passed for c in mine)
    assert result.output_for_node("iris_scores").table["score_global"].notna().sum() == 746  # unchanged
    for name in OFFRE_ASSETS:
        assert f"{name}: offre de médiation absente" in caplog.text


def test_sample_file_is_labelled_synthetic():
    text = (SAMPLE / "LIEUX_MEDIATION.md").read_text(encoding="utf-8")
    assert "synthétique" in text.lower()
    places = read_lieux_mediation(SAMPLE / "lieux_mediation.csv")
    assert places["source"].str.contains("synthétique").all()


# --- published outputs (the `sorties` of the sample run, read back with independent readers) ---

PRIORITY_COLORS = {"forte": "#b2182b", "moyenne": "#ef8a62", "faible": "#fddbc7"}
PLACE_COLOR = "#08519c"


@pytest.fixture(scope="module")
def sample_run(materialized):
    """The session's sample run (tests/conftest.py), with its output folder."""
    result, layers = materialized
    assert result.success
    return result, layers.parent


def _pixels_of(pixels: np.ndarray, hex_color: str, tolerance: float = 0.02) -> int:
    rgb = np.array([int(hex_color[i : i + 2], 16) for i in (1, 3, 5)]) / 255
    return int(np.all(np.abs(pixels - rgb) < tolerance, axis=-1).sum())


def test_iris_layer_has_the_offer_columns_of_the_asset(sample_run):
    import pyarrow.parquet as pq

    result, out = sample_run
    access = result.output_for_node("iris_accessibilite")
    classes = result.output_for_node("iris_priorite")["iris"]
    table = pq.read_table(out / "layers" / "iris.parquet").to_pandas()
    measures = [c for c in access.columns if c != "CODE_IRIS"]
    added = [*measures, "classe_fragilite", "classe_accessibilite", "priorite"]
    # after the layer's own columns, before the geometry
    assert list(table.columns[-len(added) - 2 :]) == [*added, "geometry", "bbox"]
    assert list(table.columns[: len(IDENTITY)]) == IDENTITY
    merged = table.merge(access, on="CODE_IRIS", suffixes=("", "_asset"), validate="one_to_one")
    assert len(merged) == len(table) == 751
    for column in measures:
        np.testing.assert_allclose(merged[column], merged[f"{column}_asset"], equal_nan=True, err_msg=column)
    expected = classes.set_index("CODE_IRIS")["priorite"].astype("object").reindex(table["CODE_IRIS"])
    assert table["priorite"].astype("object").fillna("").tolist() == expected.fillna("").tolist()
    gpkg = pyogrio.read_dataframe(out / "layers" / "iris.gpkg", columns=["CODE_IRIS", "offre_2sfca", "priorite"])
    assert gpkg["priorite"].eq("forte").sum() == (table["priorite"] == "forte").sum() > 0


IDENTITY = ["CODE_IRIS", "NOM_IRIS", "TYP_IRIS", "INSEE_COM", "NOM_COM", "EPCI", "DEP"]


def test_communes_and_epci_count_people_by_priority(sample_run):
    _, out = sample_run
    iris = pd.read_parquet(out / "layers" / "iris.parquet", columns=["INSEE_COM", "EPCI", "offre_demande", "priorite"])
    forte = iris[iris["priorite"] == "forte"]
    for maille, key in (("communes", "INSEE_COM"), ("epci", "EPCI")):
        layer = pd.read_parquet(out / "layers" / f"{maille}.parquet")
        assert layer.columns.get_loc("part_personnes_priorite_forte") < layer.columns.get_loc("geometry")
        by_key = forte.groupby(key)["offre_demande"].sum()
        got = layer.set_index(key)["personnes_priorite_forte"]
        np.testing.assert_allclose(got.reindex(by_key.index), by_key, err_msg=maille)
        assert layer["iris_priorite_forte"].sum() == len(forte)
    # the pack: Lyon as a whole commune sums its arrondissements
    communes = pd.read_csv(out / "geoclip" / "communes.csv", sep=";", dtype={"CODGEO": str, "COMPARENT": str})
    lyon = communes.set_index("CODGEO").loc["69123"]
    arrondissements = communes[communes["COMPARENT"] == "69123"]
    assert lyon["personnes_priorite_forte"] == pytest.approx(arrondissements["personnes_priorite_forte"].sum())
    assert lyon["iris_priorite_faible"] == arrondissements["iris_priorite_faible"].sum() > 0


def test_places_layer_one_point_per_place(sample_run):
    from pyproj import Transformer

    result, out = sample_run
    places = result.output_for_node("lieux_mediation")
    readers = {
        "gpkg": lambda: pyogrio.read_dataframe(out / "layers" / "lieux_mediation.gpkg"),
        "parquet": lambda: gpd.read_parquet(out / "layers" / "lieux_mediation.parquet"),
    }
    for path, read in readers.items():
        layer = read()
        assert len(layer) == len(places) == 46 and layer.crs.to_epsg() == 2154, path
        assert set(layer.geom_type) == {"Point"}
        assert list(layer.columns[:-1]) == [
            "id",
            "nom",
            "commune",
            "code_insee",
            "typologie",
            "services",
            "publics_specifiquement_adresses",
            "dispositif_programmes_nationaux",
            "localisation",
            "source",
        ]
    assert (layer["localisation"] == "commune").sum() == 5
    # the points are the file's WGS84 coordinates, projected
    read = places.set_index("id")
    located = layer.set_index("id").loc[read.index[read["localisation"] == "coordonnees"]]
    lon, lat = Transformer.from_crs(2154, 4326, always_xy=True).transform(located.geometry.x, located.geometry.y)
    np.testing.assert_allclose(lat, read.loc[located.index, "latitude"], atol=1e-7)
    np.testing.assert_allclose(lon, read.loc[located.index, "longitude"], atol=1e-7)
    # GeoPackage 1.2, as the other layers
    import sqlite3

    with sqlite3.connect(out / "layers" / "lieux_mediation.gpkg") as con:
        assert con.execute("PRAGMA user_version").fetchone()[0] == 10200
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert checks["lieux_publies"].passed


def test_dictionary_and_pack_describe_the_offer(sample_run):
    _, out = sample_run
    dictionary = pd.read_csv(out / "layers" / "dictionnaire.csv", sep=";", dtype=str, keep_default_na=False)
    words = dictionary.set_index("code")
    tables = {
        "iris": out / "geoclip" / "iris.csv",
        "communes": out / "geoclip" / "communes.csv",
        "epci": out / "geoclip" / "epci.csv",
    }
    for maille, path in tables.items():
        header = pd.read_csv(path, sep=";", nrows=0).columns
        offer = [c for c in header if c.startswith(("offre_", "classe_", "priorite", "personnes_", "iris_", "part_"))]
        assert offer, maille
        assert all(words.loc[c, "libelle"] for c in offer), maille
    places = pyogrio.read_info(out / "layers" / "lieux_mediation.gpkg")["fields"]
    assert all(words.loc[c, "libelle"] for c in places)
    assert words.loc["offre_2sfca", "unite"] == "lieux pour 10 000 personnes à risque"
    assert words.loc["offre_dist_km_seniors", "definition"].endswith("(publics : Seniors)")
    assert "est_illectronisme_non_dipl" in words.loc["offre_demande", "definition"]
    assert "lieux_mediation" in words.loc["localisation", "tables"]
    assert (out / "geoclip" / "dictionnaire_indicateurs.csv").read_bytes() == (
        out / "layers" / "dictionnaire.csv"
    ).read_bytes()


def test_priority_map(sample_run):
    from matplotlib.image import imread

    _, out = sample_run
    path = out / "cartes" / "priorite.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = imread(path)[..., :3]
    for label, color in PRIORITY_COLORS.items():
        assert _pixels_of(pixels, color) > 200, label
    assert _pixels_of(pixels, PLACE_COLOR) > 100


def test_report_lists_the_fragile_iris_far_from_help(sample_run):
    _, out = sample_run
    html = (out / "rapport.html").read_text(encoding="utf-8")
    assert "IRIS fragiles éloignés de l&#x27;offre" in html or "IRIS fragiles éloignés de l'offre" in html
    assert html.count("data:image/png;base64,") == 3
    iris = pd.read_parquet(out / "layers" / "iris.parquet", columns=["CODE_IRIS", "priorite", "offre_demande"])
    forte = iris[iris["priorite"] == "forte"]
    assert 0 < len(forte) <= 50 and all(code in html for code in forte["CODE_IRIS"])
    section = html[html.index("éloignés de l") :]
    people = f"{round(forte['offre_demande'].sum()):,}".replace(",", "\u202f")
    assert f"<td>{len(forte)}</td>" in section and people in section
    assert "docs/offre.md" in section and "absente" not in section


def test_qgis_project_has_the_places_and_priority_layers(sample_run):
    import xml.etree.ElementTree as ET

    _, out = sample_run
    project = ET.parse(out / "fragilite.qgs").getroot()
    tree = [(n.get("name"), n.get("checked")) for n in project.find("layer-tree-group").iter("layer-tree-layer")]
    assert tree[:3] == [
        ("Lieux de médiation", "Qt::Checked"),
        ("IRIS — priorité", "Qt::Unchecked"),
        ("IRIS", "Qt::Checked"),
    ]
    layers = {m.findtext("layername"): m for m in project.iter("maplayer")}
    assert layers["Lieux de médiation"].get("geometry") == "Point"
    rules = [r.get("filter") for r in layers["IRIS — priorité"].find("renderer-v2/rules")]
    assert rules == [
        "\"priorite\" = 'forte'",
        "\"priorite\" = 'moyenne'",
        "\"priorite\" = 'faible'",
        '"priorite" IS NULL',
    ]


def test_without_places_the_outputs_are_unchanged(tmp_path):
    config = write(tmp_path / "user.yaml", "inputs:\n  lieux_mediation: null\n")
    out = tmp_path / "out"
    result = materialize_sample(out, config_file=str(config))
    assert result.success
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "couche_iris" in materialized and "couche_lieux_mediation" not in materialized
    for maille in ("iris", "communes", "epci"):
        columns = pyogrio.read_info(out / "layers" / f"{maille}.gpkg")["fields"]
        assert not [c for c in columns if c.startswith(("offre_", "classe_", "priorite", "personnes_", "part_"))]
    assert not (out / "layers" / "lieux_mediation.gpkg").exists() and not (out / "cartes" / "priorite.png").exists()
    html = (out / "rapport.html").read_text(encoding="utf-8")
    assert "Offre de médiation absente" in html and html.count("data:image/png;base64,") == 2
    import xml.etree.ElementTree as ET

    names = [m.findtext("layername") for m in ET.parse(out / "fragilite.qgs").getroot().iter("maplayer")]
    assert names == ["IRIS", "Communes", "EPCI", "Départements"]
    dictionary = pd.read_csv(out / "layers" / "dictionnaire.csv", sep=";", dtype=str, keep_default_na=False)
    assert not dictionary["code"].str.startswith("offre_").any()

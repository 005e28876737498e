"""The pack as its users open it: French Excel, scripts, commune-level tools; the report's words.

Every file is read back with an independent reader (the csv module, openpyxl, pyarrow), never
with the writer's own code.
"""

from __future__ import annotations

import csv
import io
import re
from html.parser import HTMLParser

import geopandas as gpd
import pandas as pd
import pyarrow.parquet as pq
import pytest
from openpyxl import load_workbook
from shapely.geometry import box

from config.settings import load_tic
from outputs.dictionary import RunContext, data_dictionary
from outputs.geoclip import write_pack
from outputs.report import fr_number, most_fragile, reference_display

MAILLES = {"iris": "CODE_IRIS", "communes": "CODGEO", "epci": "EPCI", "departements": "DEP"}
LYON = "69123"
LYON_ARRONDISSEMENTS = [str(c) for c in range(69381, 69390)]


@pytest.fixture(scope="module")
def run(materialized):
    result, layers = materialized
    assert result.success
    return result, layers.parent


@pytest.fixture(scope="module")
def out(run):
    return run[1]


def _csv_rows(path, encoding: str) -> list[list[str]]:
    with open(path, encoding=encoding, newline="") as fh:
        return list(csv.reader(fh, delimiter=";"))


def test_excel_csv_opens_in_french_excel_and_machine_csv_stays_plain(out):
    pack = out / "geoclip"
    for maille, key in MAILLES.items():
        raw = (pack / f"{maille}_excel.csv").read_bytes()
        assert raw.startswith(b"\xef\xbb\xbf") and b"\r\n" in raw  # BOM: Excel reads UTF-8
        excel = _csv_rows(pack / f"{maille}_excel.csv", "utf-8-sig")
        machine_bytes = (pack / f"{maille}.csv").read_bytes()
        assert not machine_bytes.startswith(b"\xef\xbb\xbf")
        machine = _csv_rows(pack / f"{maille}.csv", "utf-8")
        assert excel[0] == machine[0] and excel[0][0] == key and len(excel) == len(machine)
        column = excel[0].index("score_global")
        scores = [r[column] for r in excel[1:] if r[column]]
        plain = [r[column] for r in machine[1:] if r[column]]
        # the same numbers: decimal comma for Excel, decimal point for scripts
        assert scores and all(re.fullmatch(r"-?\d+(,\d+)?", v) for v in scores), scores[:5]
        assert all(re.fullmatch(r"-?\d+(\.\d+)?", v) for v in plain), plain[:5]
        assert [float(v.replace(",", ".")) for v in scores] == [float(v) for v in plain]
    iris = _csv_rows(pack / "iris_excel.csv", "utf-8-sig")
    names = {r[0]: r[1] for r in iris[1:]}
    assert any("é" in n for n in names.values())  # accents intact once decoded as UTF-8
    flag = iris[0].index("non_residentiel")
    assert {r[flag] for r in iris[1:]} <= {"VRAI", "FAUX", ""}


def test_city_row_sums_its_arrondissements_and_they_stay_flagged(out):
    communes = pd.read_csv(out / "geoclip" / "communes.csv", sep=";", dtype={"CODGEO": str, "COMPARENT": str})
    departement = pd.read_csv(out / "geoclip" / "departements.csv", sep=";", dtype={"DEP": str}).iloc[0]
    lyon = communes[communes["CODGEO"] == LYON]
    assert len(lyon) == 1
    lyon = lyon.iloc[0]
    arrondissements = communes[communes["CODGEO"].isin(LYON_ARRONDISSEMENTS)]
    assert len(arrondissements) == 9
    assert arrondissements["TYPECOM"].eq("ARM").all() and arrondissements["COMPARENT"].eq(LYON).all()
    assert lyon["TYPECOM"] == "COM" and pd.isna(lyon["COMPARENT"]) and lyon["NOM_COM"] == "Lyon"
    counts = [c for c in communes.columns if c.endswith(("_num", "_den")) or c in ("P_POP", "n_iris")]
    for column in counts:
        assert lyon[column] == pytest.approx(arrondissements[column].sum(min_count=1), rel=1e-12, nan_ok=True), column
    # rates from the sums, not means of the arrondissements' rates
    assert lyon["men_seul_taux"] == pytest.approx(lyon["men_seul_num"] / lyon["men_seul_den"])
    # the commune formula, with the département as reference: 100 × rate / the département's rate
    assert lyon["men_seul_score"] == pytest.approx(100 * lyon["men_seul_taux"] / departement["men_seul_taux"])
    # every other commune once, arrondissements and city both flagged: COM rows add up to the département
    com = communes[communes["TYPECOM"] == "COM"]
    assert com["CODGEO"].is_unique
    assert com["P_POP"].sum() == pytest.approx(departement["P_POP"])
    book = load_workbook(out / "geoclip" / "communes.xlsx", read_only=True)
    keys = [r[0] for r in book.active.iter_rows(min_row=2, values_only=True)]
    assert LYON in keys and set(LYON_ARRONDISSEMENTS) <= set(keys)


def test_dictionary_covers_every_column_of_every_table_with_the_cog_year(out):
    pack = out / "geoclip"
    dictionary = pd.read_csv(pack / "dictionnaire_indicateurs.csv", sep=";", dtype=str, keep_default_na=False)
    labelled = set(dictionary.loc[dictionary["libelle"] != "", "code"])
    for maille in MAILLES:
        header = _csv_rows(pack / f"{maille}.csv", "utf-8")[0]
        assert not set(header) - labelled, (maille, sorted(set(header) - labelled))
        layer = [c for c in pq.read_schema(out / "layers" / f"{maille}.parquet").names if c not in ("geometry", "bbox")]
        assert not set(layer) - labelled, (maille, sorted(set(layer) - labelled))
    assert {"CODGEO", "n_iris", "NOM_EPCI", "NOM_DEP", "TYPECOM", "COMPARENT"} <= labelled
    millesime = int(pd.read_csv(pack / "iris.csv", sep=";", usecols=["millesime_rp"])["millesime_rp"].iloc[0])
    cog = millesime + 2
    codes = dictionary.set_index("code")
    assert codes.loc["CODGEO", "millesime"] == f"COG {cog}" and codes.loc["CODE_IRIS", "millesime"] == f"COG {cog}"
    assert "communes" in codes.loc["n_iris", "tables"] and "iris" not in codes.loc["n_iris", "tables"]
    readme = (pack / "LISEZMOI.txt").read_text(encoding="utf-8")
    assert f"1er janvier {cog}" in readme and "iris_excel.csv" not in readme  # names given by pattern
    assert "<maille>_excel.csv" in readme and "<maille>.csv" in readme and "décimales « , »" in readme
    # the same dictionary beside the layers, and its Excel copy
    assert (out / "layers" / "dictionnaire.csv").read_bytes() == (pack / "dictionnaire_indicateurs.csv").read_bytes()
    assert (pack / "dictionnaire_indicateurs_excel.csv").read_bytes().startswith(b"\xef\xbb\xbf")


def test_secret_columns_are_labelled(catalogue):
    run = RunContext(millesime_rp=2019, vintages={}, methode="mednum_2019", reference="departement")
    columns = ["CODE_IRIS", "caf_non_connectes_num", "caf_non_connectes_secret"]
    dictionary = data_dictionary(columns, catalogue, load_tic(), run).set_index("code")
    assert dictionary.loc["caf_non_connectes_secret", "libelle"].endswith("secret statistique")
    assert dictionary.loc["caf_non_connectes_secret", "unite"] == "booléen"
    assert dictionary.loc["CODE_IRIS", "millesime"] == "COG 2021"


def test_formula_cells_neutralised_numbers_kept(tmp_path):
    """OWASP CSV injection: text that a spreadsheet would run is prefixed in the Excel CSV and
    stored as text in the XLSX; numbers, negative ones included, stay numbers."""
    hostile = ['=HYPERLINK("http://x","y")', "+33 6 00", "@SUM(A1)", "\tcmd", "-3,5", "Saint-Priest"]
    layer = gpd.GeoDataFrame(
        {
            "CODE_IRIS": [f"6900{i}0000" for i in range(len(hostile))],
            "NOM_IRIS": hostile,
            "men_seul_score": [-3.5, 100.25, 0.0, 1e-7, 12.0, -0.5],
        },
        geometry=[box(i, 0, i + 1, 1) for i in range(len(hostile))],
        crs=2154,
    )
    dictionary = pd.DataFrame({"code": ["=cmd"], "libelle": ["-2"]})
    write_pack({"iris": layer}, dictionary, tmp_path, [], "lisez-moi")
    rows = _csv_rows(tmp_path / "iris_excel.csv", "utf-8-sig")[1:]
    names = [r[1] for r in rows]
    assert names[:4] == ["'" + h for h in hostile[:4]]
    assert names[4:] == ["-3,5", "Saint-Priest"]  # a plain number and ordinary text: untouched
    assert [r[2] for r in rows] == ["-3,5", "100,25", "0,0", "1e-07", "12,0", "-0,5"]  # numbers, never prefixed
    machine = _csv_rows(tmp_path / "iris.csv", "utf-8")[1:]
    assert [r[1] for r in machine] == hostile and machine[0][2] == "-3.5"  # scripts get the data as it is
    sheet = load_workbook(tmp_path / "iris.xlsx").active
    cells = list(sheet.iter_rows(min_row=2))
    assert [c[1].value for c in cells] == hostile and all(c[1].data_type == "s" for c in cells)
    assert cells[0][2].value == -3.5 and cells[0][2].data_type == "n"
    with open(tmp_path / "dictionnaire_indicateurs_excel.csv", encoding="utf-8-sig", newline="") as fh:
        assert list(csv.reader(fh, delimiter=";"))[1] == ["'=cmd", "-2"]


class _Text(HTMLParser):
    """Visible text and table rows of an HTML page."""

    def __init__(self):
        super().__init__()
        self.text, self.rows, self._row, self._skip = io.StringIO(), [], None, False

    def handle_starttag(self, tag, attrs):
        self._skip = tag in ("style", "script")
        if tag == "tr":
            self._row = []

    def handle_endtag(self, tag):
        if tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._skip:
            return
        self.text.write(data)
        if self._row is not None and data.strip():
            self._row.append(data.strip())


def test_report_speaks_french_and_lists_only_inhabited_iris(out):
    page = _Text()
    page.feed((out / "rapport.html").read_text(encoding="utf-8"))
    text = page.text.getvalue()
    assert not re.search(r"departement|mednum_2019", text)
    assert "Méthode MedNum 2019, référence : département du Rhône (69)" in text
    assert re.search(r"\d\u202f\d{3}", text)  # thousands with a narrow no-break space
    assert not re.search(r"\d\.\d", text)  # never a decimal point
    iris = pd.read_parquet(out / "layers" / "iris.parquet", columns=["CODE_IRIS", "P_POP", "priorite"])
    iris = iris.set_index("CODE_IRIS")
    listed = [r[0] for r in page.rows if r and re.fullmatch(r"\d{5}[0-9A-Z]{4}", r[0])]
    # the 20 most fragile, then the IRIS of priority `forte` (fragile and far from the offer)
    forte = int((iris["priorite"] == "forte").sum())
    assert len(listed) == 20 + forte and (iris.loc[listed, "P_POP"] > 0).all()
    assert set(listed[20:]) == set(iris.index[iris["priorite"] == "forte"])
    lisezmoi = (out / "geoclip" / "LISEZMOI.txt").read_text(encoding="utf-8")
    assert not re.search(r"departement\b|mednum_2019", lisezmoi)  # `departements.csv` is a file name


def test_most_fragile_leaves_out_empty_and_unreliable_iris(catalogue):
    iris = pd.DataFrame(
        {
            "CODE_IRIS": ["693820000", "693830803", "690010000", "690020000"],
            "NOM_IRIS": ["Grande Poste", "Perrache", "Ordinaire", "Peu fiable"],
            "NOM_COM": ["Lyon 2e"] * 2 + ["Affoux", "Aigueperse"],
            "score_global": [252.1, 240.0, 120.0, 200.0],
            "P_POP": [0.0, 12.0, 300.0, 250.0],
            "non_residentiel": [True, False, False, False],
            "fiabilite": ["bonne", "bonne", "bonne", "faible"],
        }
    )
    listed = most_fragile(iris, catalogue, 10)
    assert listed["IRIS"].tolist() == ["693830803", "690010000"]
    assert listed["Score global"].tolist() == ["240,0", "120,0"]


def test_french_numbers_and_reference_words():
    assert fr_number(1827342) == "1\u202f827\u202f342" and fr_number(133471.04, 1) == "133\u202f471,0"
    assert fr_number(-3.5, 1) == "\u22123,5" and fr_number(float("nan")) == "—"
    names = {"69": "Rhône", "01": "Ain", "40": "Landes", "42": "Loire", "75": "Paris"}
    words = {code: reference_display("departement", [code], names, "") for code in names}
    assert words == {
        "69": "département du Rhône (69)",
        "01": "département de l'Ain (01)",
        "40": "département des Landes (40)",
        "42": "département de la Loire (42)",
        "75": "département de Paris (75)",
    }
    assert reference_display("territoire", [], names, "Métropole de Lyon") == "territoire d'étude (Métropole de Lyon)"


def test_every_output_table_schema_is_described_and_names_its_folder(run):
    result, out = run
    events = {e.asset_key.to_user_string(): e for e in result.get_asset_materialization_events()}
    for asset in ("couche_iris", "couche_communes", "couche_epci", "couche_departements", "dictionnaire"):
        metadata = events[asset].step_materialization_data.materialization.metadata
        columns = metadata["dagster/column_schema"].value.columns
        undescribed = [c.name for c in columns if not c.description]
        assert columns and not undescribed, (asset, undescribed)
    for asset in ("couche_iris", "pack_geoclip", "rapport", "cartes"):
        metadata = events[asset].step_materialization_data.materialization.metadata
        assert metadata["dossier_sortie"].value == str(out), asset


def test_report_says_which_scores_to_read_with_care(out):
    """Completeness and reliability in the report: counts, the map's legend explained, and the
    number of indicators behind each listed score."""
    page = _Text()
    page.feed((out / "rapport.html").read_text(encoding="utf-8"))
    text = page.text.getvalue()
    iris = pd.read_parquet(
        out / "layers" / "iris.parquet", columns=["score_global", "fiabilite", "nb_indicateurs_notes"]
    )
    scored = iris["score_global"].notna()
    weak = int((scored & (iris["fiabilite"] == "faible")).sum())
    fewer = int((scored & (iris["nb_indicateurs_notes"] < iris.loc[scored, "nb_indicateurs_notes"].max())).sum())
    assert weak > 0 and fewer > 0
    flat = re.sub(r"\s", "", text)
    assert f"{weak}IRISàfiabilitéfaible" in flat and f"{fewer}IRISnotéssurmoinsd'indicateurs" in flat
    assert "Hachures : fiabilité faible" in text and "Indicateurs notés" in text

"""Fixture builders reproducing the files INSEE, IGN and ARCEP really publish.

Every builder returns a :class:`PublishedFile` (publisher's file name + bytes) laid out the
way the publisher lays it out: archive member paths, title rows, header rows, separators,
decimal marks, secret markers, odd codes. The layouts follow the publishers' facts (cited in
each docstring), never the project's readers: the point is to catch readers that assume the
wrong layout.

The numbers come from a small territory :class:`Model`:

* **Rhône sample** (real): the IRIS of two EPCI of ``data/sample-69`` only — Métropole de Lyon
  (``200046977``, Lyon by arrondissement 69381–69389) and CC du Pays de L'Arbresle
  (``246900625``): 530 IRIS, 76 communes (Lyon 69123 = 9 arrondissements).
  ``load_model(full_sample=True)`` keeps all 751 IRIS of the sample (16 EPCI); both stay fast.
  Census counts POP, POP1529, POP65P, NSCOL15P, NSCOL15P_DIPLMIN, MEN, MENPSEUL, FAM,
  FAMMONO are the sample's RP 2016 values; all other values are synthetic.
* **Synthetic parts** (invented outlines: squares in the right CRS and place, invented counts):
  Metz Métropole (57463 Metz in 4 IRIS of type H, 57672 Montigny-lès-Metz and 57751 Woippy not
  split into IRIS), Ouessant 29155 (belongs to no EPCI), La Réunion (97411 Saint-Denis in 2 IRIS,
  97418 Sainte-Marie, EPSG:2975), Mayotte (97611 Mamoudzou, EPSG:4471, no census, no Filosofi).
* **Synthetic merger**: 69216 Saint-Julien-sur-Bibost is merged into 69022 Bibost in
  geography 2025 (table de passage 2025, ARCEP, Filosofi communes 2021 geo2025); every
  geography up to 2024 keeps both.
"""

from __future__ import annotations

import functools
import io
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely.geometry import MultiPolygon, box

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample-69"

LYON_METRO = "200046977"
PAYS_ARBRESLE = "246900625"
METZ_METRO = "200039865"
CINOR = "249740119"
CADEMA = "200060457"
NO_EPCI = "ZZZZZZZZZ"
NO_EPCI_LABEL = "Sans objet"
LYON = "69123"
LYON_ARRONDISSEMENTS = tuple(f"6938{i}" for i in range(1, 10))
MERGER_ABSORBING = "69022"  # Bibost
MERGER_ABSORBED = "69216"  # Saint-Julien-sur-Bibost
MERGER_GEOGRAPHY = 2025
ILE_DE_SEIN = ("29083", "Île-de-Sein")  # no EPCI, not in the outlines: EPCI workbook only
TINY_COMMUNE = ("26274", "Rochefourchat")  # not in the model: Filosofi communes row all `s`
EXTRA_FILOSOFI_IRIS = "010040101"  # Ain IRIS of every Filosofi IRIS file, not in the model
SECRET_TP60_IRIS_2020 = "574630104"  # DISP_TP6020 = `s` in Filosofi IRIS 2020
CENSUS_VINTAGES = tuple(range(2017, 2022))
RP_THEMES = ("evol-struct-pop", "diplomes-formation", "couples-familles-menages", "activite-residents")
ARCEP_DATE = "2025-06-30"
ARCEP_BETA_DATE = "2019-09-30"

#: geography of the Filosofi communes files ("base-cc"), by income year
FILOSOFI_CC_GEOGRAPHY = {2017: 2020, 2018: 2021, 2019: 2022, 2020: 2023, 2021: 2025}

REGIONS = {"84": "Auvergne-Rhône-Alpes", "44": "Grand Est", "53": "Bretagne", "04": "La Réunion", "06": "Mayotte"}
DEPARTEMENTS = {"69": "Rhône", "57": "Moselle", "29": "Finistère", "974": "La Réunion", "976": "Mayotte"}
EPCI_LABELS = {
    LYON_METRO: ("Métropole de Lyon", "ME"),
    PAYS_ARBRESLE: ("CC du Pays de L'Arbresle", "CC"),
    METZ_METRO: ("Metz Métropole", "ME"),
    CINOR: ("CA CINOR", "CA"),
    CADEMA: ("CA de Dembeni-Mamoudzou", "CA"),
    NO_EPCI: (NO_EPCI_LABEL, "ZZ"),
}

#: IGN CONTOURS-IRIS: territory → (folder tag, EPSG)
TERRITORIES = {
    "FXX": ("LAMB93_FXX", 2154),
    "GLP": ("RGAF09UTM20_GLP", 5490),
    "MTQ": ("RGAF09UTM20_MTQ", 5490),
    "GUF": ("UTM22RGFG95_GUF", 2972),
    "REU": ("RGR92UTM40S_REU", 2975),
    "MYT": ("RGM04UTM38S_MYT", 4471),
}
#: IGN delivery folder suffixes seen in the real archives (2024: invented)
IGN_DELIVERIES = {
    2019: "2020-01-00139",
    2020: "2020-12-00282",
    2021: "2021-06-00217",
    2022: "2022-06-00180",
    2023: "2024-02-00238",
    2024: "2024-05-00120",
}

BASE_COUNTS = ("POP", "POP1529", "POP65P", "NSCOL15P", "NSCOL15P_DIPLMIN", "MEN", "MENPSEUL", "FAM", "FAMMONO")
#: yearly drift of each count (so each census vintage gives different rates)
DRIFT = {
    "POP": 0.010,
    "POP1529": 0.020,
    "POP65P": 0.030,
    "NSCOL15P": 0.008,
    "NSCOL15P_DIPLMIN": -0.030,
    "MEN": 0.012,
    "MENPSEUL": 0.025,
    "FAM": 0.004,
    "FAMMONO": 0.020,
}


# ---------------------------------------------------------------------------- helpers


@dataclass(frozen=True)
class PublishedFile:
    """One file as the publisher serves it: its URL basename and its bytes."""

    name: str
    content: bytes

    def write(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / self.name
        path.write_bytes(self.content)
        return path


def _unit(*keys: object) -> float:
    """Deterministic pseudo-random number in [0, 1) from keys."""
    return zlib.crc32("|".join(map(str, keys)).encode()) / 2**32


def _round(x: float, digits: int = 6) -> float:
    """Round as the written decimal text will read back (exact float round-trip)."""
    return float(f"{x:.{digits}f}")


def _round_series(s: pd.Series, digits: int = 6) -> pd.Series:
    return s.astype(float).map(lambda x: _round(x, digits))


def _num(x: object, decimal: str = ".", digits: int = 6) -> str:
    """A number as INSEE prints it: no trailing zeros, no thousands separator; NaN → ''."""
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return ""
    if isinstance(x, str):
        return x
    text = f"{float(x):.{digits}f}".rstrip("0").rstrip(".")
    text = "0" if text in ("-0", "") else text
    return text.replace(".", decimal)


def _csv(
    header: Sequence[str],
    rows: Sequence[Sequence[object]],
    *,
    sep: str = ";",
    eol: str = "\r\n",
    encoding: str = "utf-8",
    quote: bool = False,
) -> bytes:
    """Delimited text with no quoting (or every field quoted with `"`)."""

    def field(v: object) -> str:
        text = "" if v is None else str(v)
        return f'"{text}"' if quote else text

    lines = [sep.join(field(h) for h in header)] + [sep.join(field(v) for v in row) for row in rows]
    return (eol.join(lines) + eol).encode(encoding)


def _zip(members: Sequence[tuple[str, bytes]]) -> bytes:
    """A zip holding `members` in this exact order."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members:
            archive.writestr(name, content)
    return buffer.getvalue()


def _xlsx(sheets: Sequence[tuple[str, Sequence[Sequence[object]]]]) -> bytes:
    """An xlsx workbook (openpyxl); str values become text cells, numbers numeric cells."""
    from openpyxl import Workbook

    book = Workbook()
    book.remove(book.active)
    for title, rows in sheets:
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(list(row))
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def _xls(sheets: Sequence[tuple[str, Sequence[Sequence[object]]]]) -> bytes:
    """An old BIFF8 .xls workbook (xlwt), as INSEE still served in 2019."""
    import xlwt

    book = xlwt.Workbook(encoding="utf-8")
    for title, rows in sheets:
        sheet = book.add_sheet(title)
        for r, row in enumerate(rows):
            for c, value in enumerate(row):
                if value is not None:
                    sheet.write(r, c, value)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def _title_rows(*titles: str) -> list[list[object]]:
    """INSEE workbook preamble: rows 1–4 of free text (padded with blanks)."""
    rows: list[list[object]] = [[t] for t in titles]
    return rows + [[None]] * (4 - len(rows))


def _square(x: float, y: float, size: float) -> MultiPolygon:
    """A square with a vertex every 500 m, so that neighbouring squares of different sizes share
    their vertices: IGN's outlines form a valid coverage (no T-junction), so must the fixture's."""
    return MultiPolygon([shapely.segmentize(box(x, y, x + size, y + size), 500)])


# ---------------------------------------------------------------------------- model

#: synthetic communes: code → (name, DEP, REG, EPCI, territory)
SYNTHETIC_COMMUNES = {
    "57463": ("Metz", "57", "44", METZ_METRO, "FXX"),
    "57672": ("Montigny-lès-Metz", "57", "44", METZ_METRO, "FXX"),
    "57751": ("Woippy", "57", "44", METZ_METRO, "FXX"),
    "29155": ("Ouessant", "29", "53", NO_EPCI, "FXX"),
    "97411": ("Saint-Denis", "974", "04", CINOR, "REU"),
    "97418": ("Sainte-Marie", "974", "04", CINOR, "REU"),
    "97611": ("Mamoudzou", "976", "06", CADEMA, "MYT"),
}
#: synthetic IRIS: (CODE_IRIS, NOM_IRIS, TYP_IRIS, POP, x, y, size) — x, y in the territory CRS
SYNTHETIC_IRIS = [
    ("574630101", "Metz-Centre", "H", 2650.0, 930000, 6890000, 1500),
    ("574630102", "Outre-Seille", "H", 2310.0, 931500, 6890000, 1500),
    ("574630103", "Sablon Nord", "H", 1980.0, 930000, 6891500, 1500),
    ("574630104", "Sablon Sud", "H", 1450.0, 931500, 6891500, 1500),
    ("576720000", "Montigny-lès-Metz", "Z", 3120.0, 930000, 6887000, 3000),
    ("577510000", "Woippy", "Z", 2480.0, 930000, 6893000, 3000),
    ("291550000", "Ouessant", "Z", 842.0, 95000, 6860000, 4000),
    ("974110101", "Centre Ville", "H", 2540.0, 338000, 7690000, 2000),
    ("974110102", "Le Butor", "H", 2210.0, 340000, 7690000, 2000),
    ("974180000", "Sainte-Marie", "Z", 3350.0, 342000, 7690000, 4000),
    ("976110000", "Mamoudzou", "Z", 0.0, 520000, 8590000, 5000),
]
#: base counts of synthetic IRIS: variable → (reference count, share before ±15 % noise)
SYNTHETIC_SHARES = {
    "POP1529": ("POP", 0.19),
    "POP65P": ("POP", 0.18),
    "NSCOL15P": ("POP", 0.68),
    "NSCOL15P_DIPLMIN": ("NSCOL15P", 0.30),
    "MEN": ("POP", 0.45),
    "MENPSEUL": ("MEN", 0.38),
    "FAM": ("MEN", 0.62),
    "FAMMONO": ("FAM", 0.20),
}


@dataclass
class Model:
    """The small territory every builder writes.

    * ``iris``: one row per IRIS (index CODE_IRIS): COM (arrondissement for Lyon), LIBCOM,
      IRIS, NOM_IRIS, TYP_IRIS, DEP, REG, TERRITORY (FXX/REU/MYT), SYNTHETIC and the base
      (RP 2016) counts of BASE_COUNTS (NaN for Mayotte, which has no census).
    * ``communes``: one row per commune or Lyon arrondissement (index COM): LIBCOM, DEP, REG,
      CODGEO/LIBGEO (the commune of the COG: 69123 for the arrondissements), EPCI, LIBEPCI,
      CODGEO_2025/LIBGEO_2025 (after the synthetic merger), TERRITORY.
    * ``outlines``: territory → GeoDataFrame (INSEE_COM, NOM_COM, IRIS, CODE_IRIS, NOM_IRIS,
      TYP_IRIS, geometry) in that territory's CRS (FXX 2154, REU 2975, MYT 4471).

    ``load_model`` caches one instance: treat these frames as read-only (the methods return
    new frames).
    """

    iris: pd.DataFrame
    communes: pd.DataFrame
    outlines: dict[str, gpd.GeoDataFrame]
    scope: str

    # -- census -----------------------------------------------------------------
    def census(self, vintage: int) -> pd.DataFrame:
        """Counts of RP `vintage` per IRIS (Mayotte excluded), exactly as written (6 decimals).

        Columns: COM, TYP_IRIS, POP, POP1529, POP65P, POP15P, POP75P, NSCOL15P,
        NSCOL15P_DIPLMIN, MEN, MENPSEUL, FAM, FAMMONO, POP15P_CS7, ACT1564, CHOM1564.
        Each count drifts by its own yearly rate, so every vintage gives different rates.
        """
        _check_vintage(vintage)
        base = self.iris[self.iris.TERRITORY != "MYT"]
        years = vintage - 2017
        c = pd.DataFrame({"COM": base.COM, "TYP_IRIS": base.TYP_IRIS}, index=base.index)
        for var, rate in DRIFT.items():
            c[var] = _round_series(base[var] * (1 + rate * years))
        c["NSCOL15P"] = np.minimum(c.NSCOL15P, c.POP)
        c["POP1529"] = np.minimum(c.POP1529, c.POP)
        c["POP65P"] = _round_series(np.minimum(c.POP65P, c.POP - c.POP1529))
        c["NSCOL15P_DIPLMIN"] = np.minimum(c.NSCOL15P_DIPLMIN, c.NSCOL15P)
        c["MENPSEUL"] = np.minimum(c.MENPSEUL, c.MEN)
        c["FAMMONO"] = np.minimum(c.FAMMONO, c.FAM)
        u = pd.Series([_unit(code, "census") for code in c.index], index=c.index)
        u2 = pd.Series([_unit(code, "chom") for code in c.index], index=c.index)
        pop15p = np.maximum(c.POP * (0.80 + 0.06 * u), np.maximum(c.POP1529 + c.POP65P, c.NSCOL15P))
        c["POP15P"] = _round_series(np.minimum(pop15p, c.POP))
        c["POP75P"] = _round_series(c.POP65P * (0.40 + 0.20 * u))
        c["POP15P_CS7"] = _round_series(np.minimum(c.POP65P * 0.93 + (c.POP15P - c.POP65P) * 0.02, c.POP15P))
        working_age = c.POP15P - c.POP65P
        c["ACT1564"] = _round_series(np.minimum(working_age * (0.66 + 0.12 * u) * (1 + 0.004 * years), working_age))
        c["CHOM1564"] = _round_series(c.ACT1564 * (0.05 + 0.10 * u2) * (1 - 0.03 * years))
        order = [
            "COM",
            "TYP_IRIS",
            "POP",
            "POP1529",
            "POP65P",
            "POP15P",
            "POP75P",
            "NSCOL15P",
            "NSCOL15P_DIPLMIN",
            "MEN",
            "MENPSEUL",
            "FAM",
            "FAMMONO",
            "POP15P_CS7",
            "ACT1564",
            "CHOM1564",
        ]
        return c[order].sort_index()

    # -- Filosofi ---------------------------------------------------------------
    def filosofi_iris(self, year: int) -> pd.DataFrame:
        """Filosofi IRIS of income `year`: TP60 (%), MED (€), PPMINI (%) as written.

        Rows only for published IRIS: type H with base POP ≥ 1,000, Mayotte excluded (INSEE
        publishes no row for the others). NaN = secret (`s`): DISP_TP6020 of
        SECRET_TP60_IRIS_2020 in 2020. The extra Ain row EXTRA_FILOSOFI_IRIS is not included.
        """
        _check_filosofi_year(year)
        pub = self.iris[(self.iris.TYP_IRIS == "H") & (self.iris.POP >= 1000) & (self.iris.TERRITORY != "MYT")]
        rows = {code: _filosofi_iris_values(code, year, pub.at[code, "DEP"]) for code in pub.index}
        frame = pd.DataFrame.from_dict(rows, orient="index")[["TP60", "MED", "PPMINI"]]
        if year == 2020 and SECRET_TP60_IRIS_2020 in frame.index:
            frame.loc[SECRET_TP60_IRIS_2020, "TP60"] = np.nan
        frame.index.name = "CODE_IRIS"
        return frame.sort_index()

    def filosofi_communes(self, year: int) -> pd.DataFrame:
        """Filosofi communes of income `year` in its geography (FILOSOFI_CC_GEOGRAPHY).

        Index CODGEO (Lyon as 69123; merged commune once from geography 2025). Columns
        NBMENFISC, NBPERSMENFISC, MED (€), TP60 (%), PPMINI (%) as written; NaN = secret:
        TP60/PPMINI when NBMENFISC < 1,000, MED when NBMENFISC < 50. PPMINI is NaN for 2021
        (the long 2021 file carries no such measure here). Mayotte has no row.
        """
        _check_filosofi_year(year)
        geography = FILOSOFI_CC_GEOGRAPHY[year]
        cog = self.cog_communes(FILOSOFI_CC_GEOGRAPHY[2020])
        cog = cog[cog.TERRITORY != "MYT"]
        per_commune = pd.DataFrame.from_dict(
            {code: _filosofi_commune_values(code, year, self._households(code)) for code in cog.index}, orient="index"
        )
        target = cog.index.map(lambda code: _geography_code(code, geography))
        frame = _aggregate_filosofi(per_commune, pd.Series(target, index=cog.index))
        if year >= 2021:
            frame["PPMINI"] = np.nan
        frame.index.name = "CODGEO"
        return frame.sort_index()

    def filosofi_levels(self, year: int) -> dict[str, pd.DataFrame]:
        """Filosofi communes file contents per level: COM, EPCI, DEP (synthetic aggregates)."""
        communes = self.filosofi_communes(year)
        cog = self.cog_communes(FILOSOFI_CC_GEOGRAPHY[year])
        levels = {"COM": communes}
        for level in ("EPCI", "DEP"):
            groups = cog.loc[communes.index, level]
            groups = groups[groups != NO_EPCI]
            levels[level] = _aggregate_filosofi(communes.loc[groups.index], groups)
        if year >= 2021:
            for level in ("EPCI", "DEP"):
                levels[level]["PPMINI"] = np.nan
        return levels

    def _households(self, codgeo: str) -> float:
        """Base (2016) households of a COG commune (sum over its IRIS)."""
        coms = self.communes.index[self.communes.CODGEO == codgeo]
        return float(self.iris.loc[self.iris.COM.isin(coms), "MEN"].sum())

    # -- geography --------------------------------------------------------------
    def cog_communes(self, geography: int) -> pd.DataFrame:
        """COG communes of `geography` (Lyon as 69123; merged from 2025): LIBGEO, DEP, REG,
        EPCI, LIBEPCI, TERRITORY, indexed by CODGEO."""
        rows = self.communes.drop_duplicates("CODGEO").set_index("CODGEO")
        if geography >= MERGER_GEOGRAPHY:
            rows = rows.drop(index=MERGER_ABSORBED, errors="ignore")
            rows["LIBGEO"] = self.communes.drop_duplicates("CODGEO_2025").set_index("CODGEO_2025").LIBGEO_2025
        return rows[["LIBGEO", "DEP", "REG", "EPCI", "LIBEPCI", "TERRITORY"]].sort_index()

    def epci(self, geography: int = 2023) -> pd.DataFrame:
        """Commune → EPCI of `geography` as in INSEE's Composition_communale sheet
        (EPCI = ZZZZZZZZZ for Ouessant). Extra rows the builder adds (Île-de-Sein) are not here."""
        return self.cog_communes(geography)[["LIBGEO", "EPCI", "LIBEPCI", "DEP", "REG"]]

    # -- ARCEP ------------------------------------------------------------------
    def arcep(self, year: int = 2025) -> pd.DataFrame:
        """ARCEP premises per commune (geography of `year`): nbr and CUMULATIVE counts
        elig_hd05 ≥ elig_hd3 ≥ elig_bhd8 ≥ elig_thd30 ≥ elig_thd100 ≥ elig_thd1g, inel_hd = nbr −
        elig_hd05. 2025 = the current quarterly file; 2019 = the figures of the beta file."""
        cog = self.cog_communes(2023)
        counts = pd.DataFrame.from_dict(
            {code: _arcep_counts(code, year, self._households(code), cog.at[code, "TERRITORY"]) for code in cog.index},
            orient="index",
        )
        target = pd.Series(cog.index.map(lambda code: _geography_code(code, year)), index=cog.index)
        frame = counts.groupby(target).sum()
        frame["inel_hd"] = frame.nbr - frame.elig_hd05
        geo = self.cog_communes(year)
        frame.insert(0, "nom_com", geo.LIBGEO)
        frame.insert(1, "code_dep", geo.DEP)
        frame.insert(2, "code_reg", geo.REG)
        frame.index.name = "code_insee"
        columns = [
            "nom_com",
            "code_dep",
            "code_reg",
            "nbr",
            "inel_hd",
            "elig_hd05",
            "elig_hd3",
            "elig_bhd8",
            "elig_thd30",
            "elig_thd100",
            "elig_thd1g",
        ]
        return frame[columns].sort_index()

    def geography_code(self, codgeo: str, geography: int) -> str:
        """The code of commune `codgeo` in `geography` (the merger applies from 2025)."""
        return _geography_code(codgeo, geography)


def _check_vintage(vintage: int) -> None:
    if vintage not in CENSUS_VINTAGES:
        raise ValueError(f"census vintage {vintage} not in 2017–2021")


def _check_filosofi_year(year: int) -> None:
    if year not in FILOSOFI_CC_GEOGRAPHY:
        raise ValueError(f"Filosofi year {year} not in 2017–2021")


def _geography_code(codgeo: str, geography: int) -> str:
    return MERGER_ABSORBING if (codgeo == MERGER_ABSORBED and geography >= MERGER_GEOGRAPHY) else codgeo


def _filosofi_iris_values(code: str, year: int, dep: str) -> dict[str, float]:
    """Synthetic Filosofi IRIS indicators (MED to 10 €, rates to 0.1 point)."""
    years = year - 2017
    u, u2 = _unit(code, "med"), _unit(code, "ppmini")
    overseas = dep.startswith("97")
    med = (16000 + 14000 * u + 350 * years) * (0.72 if overseas else 1.0)
    tp60 = 3 + 32 * (1 - u) ** 1.5 + 0.3 * years + (12 if overseas else 0)
    ppmini = 0.4 + 7 * (1 - u) ** 1.5 * (0.8 + 0.4 * u2) + 0.1 * years
    return {"MED": round(med / 10) * 10.0, "TP60": _round(tp60, 1), "PPMINI": _round(ppmini, 1)}


def _filosofi_commune_values(code: str, year: int, households: float) -> dict[str, float]:
    """Synthetic Filosofi commune indicators before secrecy."""
    years = year - 2017
    u = _unit(code, "commune-med")
    overseas = code.startswith("97")
    nbmen = float(round(households * 0.97 * (1 + 0.01 * years)))
    return {
        "NBMENFISC": nbmen,
        "NBPERSMENFISC": _round(nbmen * (2.1 + 0.4 * u), 1),
        "MED": _round((17500 + 9000 * u + 300 * years) * (0.75 if overseas else 1.0), 2),
        "TP60": _round(4 + 22 * (1 - u) + 0.2 * years + (14 if overseas else 0), 1),
        "PPMINI": _round(0.5 + 5 * (1 - u) + 0.1 * years, 1),
    }


def _aggregate_filosofi(values: pd.DataFrame, groups: pd.Series) -> pd.DataFrame:
    """Household-weighted aggregate of commune values by `groups`, then INSEE's secrecy."""
    weight = values.NBMENFISC
    frame = pd.DataFrame(
        {
            "NBMENFISC": weight.groupby(groups).sum(),
            "NBPERSMENFISC": values.NBPERSMENFISC.groupby(groups).sum().map(lambda x: _round(x, 1)),
        }
    )
    for var, digits in (("MED", 2), ("TP60", 1), ("PPMINI", 1)):
        weighted = (values[var].fillna(0) * weight).groupby(groups).sum() / frame.NBMENFISC
        single = values[var].groupby(groups).first()
        counts = groups.value_counts()
        frame[var] = [single[g] if counts[g] == 1 else _round(weighted[g], digits) for g in frame.index]
    frame.loc[frame.NBMENFISC < 1000, ["TP60", "PPMINI"]] = np.nan
    frame.loc[frame.NBMENFISC < 50, "MED"] = np.nan
    return frame


def _arcep_counts(code: str, year: int, households: float, territory: str) -> dict[str, int]:
    """Synthetic ARCEP premises with cumulative speed classes (fibre spreads from 2019 to 2025)."""
    u = _unit(code, "arcep")
    nbr = int(round(households * 1.2 + 15)) if households > 0 else 24150
    progress = max(0.0, min(1.0, (year - 2019) / 6))
    damp = 0.35 if territory == "MYT" else 1.0
    fastest_first = {  # share of premises at or above each speed, before making them cumulative
        "elig_thd1g": (0.08 + 0.80 * progress * (0.7 + 0.3 * u)) * damp,
        "elig_thd100": (0.12 + 0.80 * progress * (0.7 + 0.3 * u)) * damp,
        "elig_thd30": (0.45 + 0.40 * progress + 0.1 * u) * damp,
        "elig_bhd8": 0.90 - 0.05 * u - (0.3 if territory == "MYT" else 0.0),
        "elig_hd3": 0.95 - 0.03 * u - (0.2 if territory == "MYT" else 0.0),
        "elig_hd05": 0.995 - 0.02 * u,
    }
    counts, floor = {"nbr": nbr}, 0.0
    for name, share in fastest_first.items():
        floor = min(max(floor, share), 0.995)
        counts[name] = int(np.floor(nbr * floor))
    return counts


def _synthetic_frames() -> tuple[list[dict], dict[str, list[dict]]]:
    """IRIS rows and outline records of the synthetic parts."""
    rows, outlines = [], {"FXX": [], "REU": [], "MYT": []}
    for code, name, typ, pop, x, y, size in SYNTHETIC_IRIS:
        com = code[:5]
        libcom, dep, reg, _, territory = SYNTHETIC_COMMUNES[com]
        row = {
            "CODE_IRIS": code,
            "COM": com,
            "LIBCOM": libcom,
            "IRIS": code[5:],
            "NOM_IRIS": name,
            "TYP_IRIS": typ,
            "DEP": dep,
            "REG": reg,
            "TERRITORY": territory,
            "SYNTHETIC": True,
        }
        if territory == "MYT":
            row.update({var: np.nan for var in BASE_COUNTS})
        else:
            row["POP"] = _round(pop + _unit(code, "pop"), 6)
            for var, (reference, share) in SYNTHETIC_SHARES.items():
                row[var] = _round(row[reference] * share * (0.85 + 0.3 * _unit(code, var)), 6)
        rows.append(row)
        outlines[territory].append(
            {
                "INSEE_COM": com,
                "NOM_COM": libcom,
                "IRIS": code[5:],
                "CODE_IRIS": code,
                "NOM_IRIS": name,
                "TYP_IRIS": typ,
                "geometry": _square(x, y, size),
            }
        )
    return rows, outlines


def _sample_frames(full_sample: bool) -> tuple[pd.DataFrame, pd.DataFrame, gpd.GeoDataFrame]:
    """Rhône sample: commune→EPCI table, IRIS table with base counts, outlines."""
    insee = SAMPLE / "insee"
    epci = pd.read_csv(insee / "communes-epci-2016_dep69.csv", sep=";", dtype=str)
    if not full_sample:
        epci = epci[epci.EPCI.isin([LYON_METRO, PAYS_ARBRESLE])]
    outlines = gpd.read_file(SAMPLE / "ign" / "CONTOURS-IRIS_2016_dep69.gpkg", layer="CONTOURS_IRIS")
    outlines = outlines[outlines.INSEE_COM.isin(epci.COM)].reset_index(drop=True)
    counts = []
    for theme in ("evol-struct-pop", "diplomes-formation", "couples-familles-menages"):
        table = pd.read_csv(insee / f"base-ic-{theme}-2016_dep69.csv", sep=";", dtype={"IRIS": str, "COM": str})
        table = table.set_index("IRIS")
        counts.append(table[[c for c in table.columns if c[:4] in ("P16_", "C16_") and c[4:] in BASE_COUNTS]])
    counts = pd.concat(counts, axis=1).rename(columns=lambda c: c[4:])
    iris = outlines.drop(columns="geometry").rename(columns={"INSEE_COM": "COM", "NOM_COM": "LIBCOM"})
    iris = iris.set_index("CODE_IRIS").join(counts[list(BASE_COUNTS)])
    for var in BASE_COUNTS:
        iris[var] = _round_series(iris[var])
    iris["DEP"], iris["REG"], iris["TERRITORY"], iris["SYNTHETIC"] = "69", "84", "FXX", False
    return epci, iris, outlines


@functools.lru_cache(maxsize=2)
def _load_model(full_sample: bool) -> Model:
    epci, sample_iris, sample_outlines = _sample_frames(full_sample)
    synthetic_rows, synthetic_outlines = _synthetic_frames()
    iris = pd.concat([sample_iris, pd.DataFrame(synthetic_rows).set_index("CODE_IRIS")])
    iris = iris[
        ["COM", "LIBCOM", "IRIS", "NOM_IRIS", "TYP_IRIS", "DEP", "REG", "TERRITORY", "SYNTHETIC", *BASE_COUNTS]
    ].sort_index()
    iris.index.name = "CODE_IRIS"

    communes = []
    labels = iris.drop_duplicates("COM").set_index("COM").LIBCOM
    for row in epci.itertuples():
        label = EPCI_LABELS.get(row.EPCI, (row.LIBEPCI, "CC"))[0]
        lyon = row.COM in LYON_ARRONDISSEMENTS
        communes.append(
            {
                "COM": row.COM,
                "LIBCOM": labels.get(row.COM, row.LIBCOM),
                "DEP": "69",
                "REG": "84",
                "CODGEO": LYON if lyon else row.COM,
                "LIBGEO": "Lyon" if lyon else row.LIBCOM,
                "EPCI": row.EPCI,
                "LIBEPCI": label,
                "TERRITORY": "FXX",
            }
        )
    for com, (libcom, dep, reg, epci_code, territory) in SYNTHETIC_COMMUNES.items():
        communes.append(
            {
                "COM": com,
                "LIBCOM": libcom,
                "DEP": dep,
                "REG": reg,
                "CODGEO": com,
                "LIBGEO": libcom,
                "EPCI": epci_code,
                "LIBEPCI": EPCI_LABELS[epci_code][0],
                "TERRITORY": territory,
            }
        )
    communes = pd.DataFrame(communes).set_index("COM").sort_index()
    communes["CODGEO_2025"] = communes.CODGEO.map(lambda c: _geography_code(c, 2025))
    communes["LIBGEO_2025"] = communes.CODGEO_2025.map(communes.drop_duplicates("CODGEO").set_index("CODGEO").LIBGEO)

    frames = {"FXX": sample_outlines.to_dict("records") + synthetic_outlines["FXX"]}
    outlines = {"FXX": gpd.GeoDataFrame(frames["FXX"], geometry="geometry", crs=2154)}
    for territory in ("REU", "MYT"):
        outlines[territory] = gpd.GeoDataFrame(
            synthetic_outlines[territory], geometry="geometry", crs=TERRITORIES[territory][1]
        )
    scope = "all 751 IRIS of the Rhône sample" if full_sample else "Métropole de Lyon + CC du Pays de L'Arbresle"
    return Model(iris=iris, communes=communes, outlines=outlines, scope=scope)


def load_model(full_sample: bool = False) -> Model:
    """The territory model (cached): by default the sample's two EPCI (530 IRIS) + synthetic parts."""
    return _load_model(full_sample)


# ---------------------------------------------------------------------------- INSEE RP base-ic

RP_GEO_2017 = [
    "IRIS",
    "REG",
    "DEP",
    "UU2010",
    "COM",
    "LIBCOM",
    "TRIRIS",
    "GRD_QUART",
    "LIBIRIS",
    "TYP_IRIS",
    "MODIF_IRIS",
    "LAB_IRIS",
]
RP_GEO_2020 = ["IRIS", "COM", "TYP_IRIS", "LAB_IRIS"]
LAB_IRIS = {"H": "1", "A": "2", "D": "3", "Z": "5"}
RP_LABELS = {
    "IRIS": "IRIS",
    "REG": "Région",
    "DEP": "Département",
    "UU2010": "Unité urbaine",
    "COM": "Commune ou ARM",
    "LIBCOM": "Libellé commune ou ARM",
    "TRIRIS": "TRIRIS",
    "GRD_QUART": "Grand quartier",
    "LIBIRIS": "Libellé de l'IRIS",
    "TYP_IRIS": "Type d'IRIS",
    "MODIF_IRIS": "Modification de l'IRIS",
    "LAB_IRIS": "Label de qualité de l'IRIS",
    "POP": "Population",
    "POP0014": "Pop 0-14 ans",
    "POP1529": "Pop 15-29 ans",
    "POP3044": "Pop 30-44 ans",
    "POP65P": "Pop 65 ans ou plus",
    "POP75P": "Pop 75 ans ou plus",
    "POP15P": "Pop 15 ans ou plus",
    "POPF": "Pop Femmes",
    "POPH": "Pop Hommes",
    "POP0205": "Pop 2-5 ans",
    "SCOL0205": "Pop scolarisée 2-5 ans",
    "NSCOL15P": "Pop 15 ans ou plus non scolarisée",
    "NSCOL15P_DIPLMIN": "Pop 15 ans ou plus non scolarisée Sans diplôme ou CEP",
    "NSCOL15P_BAC": "Pop 15 ans ou plus non scolarisée BAC",
    "NSCOL15P_SUP5": "Pop 15 ans ou plus non scolarisée Bac+5",
    "MEN": "Ménages",
    "MENPSEUL": "Ménages 1 personne",
    "MENCOUPSENF": "Ménages Couple sans enfant",
    "PMEN": "Pop des ménages",
    "FAM": "Familles",
    "COUPAENF": "Familles Couple avec enfant(s)",
    "FAMMONO": "Familles Monoparentales",
    "POP15P_CS7": "Pop 15 ans ou plus Retraités",
    "POP15P_MARIEE": "Pop 15 ans ou plus mariée",
    "POP1564": "Pop 15-64 ans",
    "ACT1564": "Actifs 15-64 ans",
    "ACTOCC1564": "Actifs occupés 15-64 ans",
    "CHOM1564": "Chômeurs 15-64 ans",
    "INACT1564": "Inactifs 15-64 ans",
    "ETUD1564": "Élèves, étudiants et stagiaires non rémunérés 15-64 ans",
}


def _rp_variables(theme: str, c: pd.DataFrame) -> list[tuple[str, str, pd.Series]]:
    """(prefix P/C, variable, values) of a base-ic theme, the pipeline's and 3–5 decoys."""
    r = _round_series
    working_age = c.POP15P - c.POP65P
    if theme == "evol-struct-pop":
        return [
            ("P", "POP", c.POP),
            ("P", "POP0014", r(c.POP - c.POP15P)),
            ("P", "POP1529", c.POP1529),
            ("P", "POP3044", r((working_age - c.POP1529) * 0.5)),
            ("P", "POP65P", c.POP65P),
            ("P", "POP75P", c.POP75P),
            ("P", "POP15P", c.POP15P),
            ("P", "POPH", r(c.POP * 0.48)),
            ("P", "POPF", r(c.POP - c.POP * 0.48)),
        ]
    if theme == "diplomes-formation":
        return [
            ("P", "POP0205", r(c.POP * 0.045)),
            ("P", "SCOL0205", r(c.POP * 0.04)),
            ("P", "NSCOL15P", c.NSCOL15P),
            ("P", "NSCOL15P_DIPLMIN", c.NSCOL15P_DIPLMIN),
            ("P", "NSCOL15P_BAC", r(c.NSCOL15P * 0.17)),
            ("P", "NSCOL15P_SUP5", r(c.NSCOL15P * 0.12)),
        ]
    if theme == "couples-familles-menages":
        return [
            ("C", "MEN", c.MEN),
            ("C", "MENPSEUL", c.MENPSEUL),
            ("C", "MENCOUPSENF", r(c.MEN * 0.26)),
            ("C", "PMEN", r(c.POP * 0.98)),
            ("C", "FAM", c.FAM),
            ("C", "COUPAENF", r(c.FAM * 0.45)),
            ("C", "FAMMONO", c.FAMMONO),
            ("C", "POP15P_CS7", c.POP15P_CS7),
            ("P", "POP15P_MARIEE", r(c.POP15P * 0.44)),
        ]
    if theme == "activite-residents":
        return [
            ("P", "POP1564", r(working_age)),
            ("P", "ACT1564", c.ACT1564),
            ("P", "ACTOCC1564", r(c.ACT1564 - c.CHOM1564)),
            ("P", "CHOM1564", c.CHOM1564),
            ("P", "INACT1564", r(working_age - c.ACT1564)),
            ("P", "ETUD1564", r(working_age * 0.1)),
        ]
    raise ValueError(f"unknown base-ic theme {theme!r}")


def _rp_geo_values(model: Model, code: str) -> dict[str, str]:
    """Geography block of one IRIS row (codes as text)."""
    row = model.iris.loc[code]
    lyon_metro = row.COM in model.communes.index and model.communes.at[row.COM, "EPCI"] == LYON_METRO
    split = row.TYP_IRIS != "Z"
    return {
        "IRIS": code,
        "REG": row.REG,
        "DEP": row.DEP,
        "UU2010": "00758" if lyon_metro else (row.DEP + "701" if split else row.DEP + "000"),
        "COM": row.COM,
        "LIBCOM": row.LIBCOM,
        "TRIRIS": (code[:2] + code[5:9]) if split else "ZZZZZZ",
        "GRD_QUART": code[:7],
        "LIBIRIS": row.NOM_IRIS,
        "TYP_IRIS": row.TYP_IRIS,
        "MODIF_IRIS": "00",
        "LAB_IRIS": LAB_IRIS.get(row.TYP_IRIS, "1"),
    }


def rp_table(model: Model, theme: str, vintage: int) -> tuple[list[str], list[list[object]]]:
    """Header and rows of base-ic `theme` RP `vintage`: geography block of the era (12 columns
    up to 2019, `IRIS;COM;TYP_IRIS;LAB_IRIS` from 2020), variables prefixed P17_/C17_…"""
    _check_vintage(vintage)
    census = model.census(vintage)
    geo_columns = RP_GEO_2017 if vintage <= 2019 else RP_GEO_2020
    variables = _rp_variables(theme, census)
    yy = f"{vintage % 100:02d}"
    header = geo_columns + [f"{prefix}{yy}_{name}" for prefix, name, _ in variables]
    rows = []
    for code in census.index:
        geo = _rp_geo_values(model, code)
        rows.append([geo[c] for c in geo_columns] + [float(values[code]) for _, _, values in variables])
    return header, rows


def _rp_meta(header: Sequence[str]) -> bytes:
    """meta_ dictionary of a base-ic file: `COD_VAR;LIB_VAR;LIB_VAR_LONG;…`."""
    rows = []
    for code in header:
        name = code[4:] if code[:1] in "PC" and code[1:3].isdigit() else code
        label = RP_LABELS.get(name, name)
        rows.append([code, label, label, "", "", "CHAR" if name == code else "NUM", ""])
    return _csv(["COD_VAR", "LIB_VAR", "LIB_VAR_LONG", "COD_MOD", "LIB_MOD", "TYPE_VAR", "LONG_VAR"], rows)


def rp_base_ic_csv_zip(model: Model, theme: str, vintage: int) -> PublishedFile:
    """`base-ic-<theme>-<yyyy>_csv.zip` → `base-ic-<theme>-<yyyy>.CSV` + `meta_….CSV`
    (upper-case ext; `;`, `.` decimals, weighted counts, UTF-8, unquoted; CRLF up to 2019, LF after)."""
    if theme == "activite-residents" and vintage == 2017:
        raise ValueError("activité 2017 is an xlsx: use rp_activite_2017_xlsx_zip")
    header, rows = rp_table(model, theme, vintage)
    eol = "\r\n" if vintage <= 2019 else "\n"
    data = _csv(header, [[_num(v) if isinstance(v, float) else v for v in row] for row in rows], eol=eol)
    stem = f"base-ic-{theme}-{vintage}"
    return PublishedFile(f"{stem}_csv.zip", _zip([(f"{stem}.CSV", data), (f"meta_{stem}.CSV", _rp_meta(header))]))


def rp_activite_2017_xlsx_zip(model: Model) -> PublishedFile:
    """`base-ic-activite-residents-2017.zip` → `base-ic-activite-residents-2017.xlsx`: sheet
    `IRIS` first, rows 1–4 titles, row 5 French labels, row 6 variable codes, data from row 7
    (codes as text cells, counts numeric); second sheet `Documentation`."""
    header, rows = rp_table(model, "activite-residents", 2017)
    first = ["P17_ACT1564", "P17_CHOM1564"]
    geo = header[: len(RP_GEO_2017)]
    others = [h for h in header[len(RP_GEO_2017) :] if h not in first]
    order = geo + first + others
    position = [header.index(h) for h in order]
    labels = [RP_LABELS.get(h[4:] if h.startswith("P17_") else h, h) for h in order]
    labels[0] = "Code géographique IRIS"
    sheet = _title_rows(
        "Activité des résidents en 2017",
        "Recensement de la population - Base infracommunale (IRIS)",
        "Source : Insee, RP2017 exploitation principale, géographie au 01/01/2019",
    )
    sheet += [labels, order] + [[row[i] for i in position] for row in rows]
    documentation = [["Activité des résidents en 2017"], [None], ["Variables"]] + [
        [h, RP_LABELS.get(h[4:], h)] for h in order
    ]
    book = _xlsx([("IRIS", sheet), ("Documentation", documentation)])
    return PublishedFile("base-ic-activite-residents-2017.zip", _zip([("base-ic-activite-residents-2017.xlsx", book)]))


def rp_base_ic(model: Model, theme: str, vintage: int) -> PublishedFile:
    """The base-ic file of `theme` as published for RP `vintage` (csv zip, or the 2017 activité xlsx)."""
    if theme == "activite-residents" and vintage == 2017:
        return rp_activite_2017_xlsx_zip(model)
    return rp_base_ic_csv_zip(model, theme, vintage)


# ---------------------------------------------------------------------------- Filosofi IRIS

FILO_IRIS_VARS = [
    "TP60",
    "Q1",
    "MED",
    "Q3",
    "EQ",
    "D1",
    "D2",
    "D3",
    "D4",
    "D6",
    "D7",
    "D8",
    "D9",
    "RD",
    "S80S20",
    "GI",
    "PACT",
    "PTSA",
    "PCHO",
    "PBEN",
    "PPEN",
    "PPAT",
    "PPSOC",
    "PPFAM",
    "PPMINI",
    "PPLOGT",
    "PIMPOT",
    "NOTE",
]
FILO_IRIS_LABELS = [
    "IRIS",
    "Libellé de l'IRIS",
    "Commune ou ARM",
    "Libellé commune ou ARM",
    "Taux de pauvreté au seuil de 60 % (%)",
    "1er quartile (€)",
    "Médiane (€)",
    "3e quartile (€)",
    "Écart inter-quartile rapporté à la médiane",
    "1er décile (€)",
    "2e décile (€)",
    "3e décile (€)",
    "4e décile (€)",
    "6e décile (€)",
    "7e décile (€)",
    "8e décile (€)",
    "9e décile (€)",
    "Rapport interdécile D9/D1",
    "S80/S20",
    "Indice de Gini",
    "Part des revenus d’activité (%)",
    "dont part des salaires et traitements (%)",
    "dont part des indemnités de chômage (%)",
    "dont part des revenus des activités non salariées (%)",
    "Part des pensions, retraites et rentes (%)",
    "Part des revenus du patrimoine et autres revenus (%) ",
    "Part de l'ensemble des prestations sociales (%)",
    "dont part des prestations familiales (%)",
    "dont part des minima sociaux (%)",
    "dont part des prestations logement (%)",
    "Part des impôts (%)",
    "Note de précaution (voir onglet seuils)",
]
#: secret markers by income year, put in a few cells of other variables than TP60/MED/PPMINI
FILO_IRIS_MARKERS = {
    2017: ("s", "nd"),
    2018: ("", "s", "nd"),
    2019: ("", "s", "nd"),
    2020: ("ns", "nd", "s"),
    2021: ("ns", "nd", "s", "so"),
}
FILO_MARKED_VARS = ("GI", "PPAT", "D1", "PBEN")


def _filosofi_iris_rows(model: Model, year: int) -> list[tuple[str, str, str, str, dict[str, object]]]:
    """(IRIS, LIBIRIS, COM, LIBCOM, {var: value}) per published IRIS, the Ain row first."""
    published = model.filosofi_iris(year)
    records = [
        (
            EXTRA_FILOSOFI_IRIS,
            "Les Perouses-Triangle d'Activité",
            "01004",
            "Ambérieu-en-Bugey",
            _filosofi_iris_full(EXTRA_FILOSOFI_IRIS, {"TP60": 19.8, "MED": 19250.0, "PPMINI": 3.1}, year, -1),
        )
    ]
    for i, code in enumerate(published.index):
        row = model.iris.loc[code]
        records.append(
            (code, row.NOM_IRIS, row.COM, row.LIBCOM, _filosofi_iris_full(code, published.loc[code].to_dict(), year, i))
        )
    return records


def _filosofi_iris_full(code: str, core: dict[str, float], year: int, index: int) -> dict[str, object]:
    """All DISP_ variables of one IRIS: the model's TP60/MED/PPMINI, the rest derived, a few markers."""
    med, u = core["MED"], _unit(code, "disp")
    values: dict[str, object] = {
        "TP60": core["TP60"],
        "Q1": round(med * 0.74 / 10) * 10.0,
        "MED": med,
        "Q3": round(med * 1.31 / 10) * 10.0,
        "EQ": 0.57,
        "D1": round(med * 0.55 / 10) * 10.0,
        "D2": round(med * 0.67 / 10) * 10.0,
        "D3": round(med * 0.79 / 10) * 10.0,
        "D4": round(med * 0.9 / 10) * 10.0,
        "D6": round(med * 1.11 / 10) * 10.0,
        "D7": round(med * 1.23 / 10) * 10.0,
        "D8": round(med * 1.39 / 10) * 10.0,
        "D9": round(med * 1.66 / 10) * 10.0,
        "RD": 3.0,
        "S80S20": _round(3.2 + u, 1),
        "GI": _round(0.22 + 0.1 * u, 3),
        "PACT": _round(65 + 10 * u, 1),
        "PTSA": _round(58 + 8 * u, 1),
        "PCHO": 4.2,
        "PBEN": 2.6,
        "PPEN": _round(30 - 8 * u, 1),
        "PPAT": 7.2,
        "PPSOC": _round(core["PPMINI"] + 5.5, 1) if not np.isnan(core["PPMINI"]) else 8.6,
        "PPFAM": 3.3,
        "PPMINI": core["PPMINI"],
        "PPLOGT": 2.2,
        "PIMPOT": -13.8,
        "NOTE": 0.0,
    }
    if np.isnan(core["TP60"]):
        values["TP60"] = "s"
    markers = FILO_IRIS_MARKERS[year]
    if index >= 0 and index % 5 == 2:
        values[FILO_MARKED_VARS[index % len(FILO_MARKED_VARS)]] = markers[index % len(markers)]
    if index >= 0 and index % 11 == 4:  # every marker of the year appears at least once
        for var, marker in zip(FILO_MARKED_VARS, markers):
            values[var] = marker
    return values


def filosofi_iris_2017_xlsx(model: Model) -> PublishedFile:
    """`BASE_TD_FILO_DISP_IRIS_2017.xlsx` (not zipped): sheet `IRIS_DISP` (rows 1–4 titles,
    row 5 labels, row 6 codes IRIS, LIBIRIS, COM, LIBCOM, DISP_TP6017…DISP_NOTE17), numeric
    cells, `s`/`nd` text in suppressed cells; sheets `Variables`, `Documentation générale`."""
    header = ["IRIS", "LIBIRIS", "COM", "LIBCOM"] + [f"DISP_{v}17" for v in FILO_IRIS_VARS]
    sheet = _title_rows(
        "Indicateurs de distribution des revenus disponibles des ménages par unité de consommation - Année 2017",
        "France métropolitaine, Martinique, La Réunion - IRIS",
        "Mise en ligne le 23/04/2020       Géographie au 01/01/2018",
        "©Insee       Source(s) : Insee-DGFIP-Cnaf-Cnav-CCMSA, Fichier localisé social et fiscal (FiLoSoFi).",
    )
    sheet += [FILO_IRIS_LABELS, header]
    for code, libiris, com, libcom, values in _filosofi_iris_rows(model, 2017):
        sheet.append([code, libiris, com, libcom] + [values[v] for v in FILO_IRIS_VARS])
    variables = _title_rows("Indicateurs de distribution des revenus disponibles - Année 2017", "Variables")
    variables += [[None], ["VAR_ID", "VAR_LIB", "VAR_LIB_LONG"]] + [
        [h, lab, lab] for h, lab in zip(header, FILO_IRIS_LABELS)
    ]
    documentation = _title_rows(
        "Indicateurs de distribution des revenus disponibles - Année 2017", "Documentation générale"
    ) + [[None], ["Champ"]]
    book = _xlsx([("IRIS_DISP", sheet), ("Variables", variables), ("Documentation générale", documentation)])
    return PublishedFile("BASE_TD_FILO_DISP_IRIS_2017.xlsx", book)


FILO_IRIS_ARCHIVES = {  # year → (zip name, data member, decimal mark)
    2018: ("BASE_TD_FILO_DISP_IRIS_2018.zip", "BASE_TD_FILO_DISP_IRIS_2018.csv", "."),
    2019: ("BASE_TD_FILO_DISP_IRIS_2019.zip", "BASE_TD_FILO_DISP_IRIS_2019.csv", "."),
    2020: ("BASE_TD_FILO_DISP_IRIS_2020_CSV.zip", "BASE_TD_FILO_DISP_IRIS_2020.csv", ","),
    2021: ("BASE_TD_FILO_IRIS_2021_DISP_CSV.zip", "BASE_TD_FILO_IRIS_2021_DISP.csv", ","),
}


def filosofi_iris_csv_zip(model: Model, year: int) -> PublishedFile:
    """Filosofi IRIS 2018–2021 zipped CSV: `;`, CRLF, ASCII, header `IRIS;DISP_TP60yy;…`
    (no LIBIRIS/COM). 2018/2019 decimal `.`, blanks/`s`/`nd` secret, + `meta_` file; 2019
    drops the leading zero of IRIS codes (`10040101`); 2020/2021 decimal comma with
    `ns`/`nd`/`s` (`so` in 2021) and `s` for one DISP_TP6020; 2021 adds DISP_INCERT21 after TP60."""
    archive, member, decimal = FILO_IRIS_ARCHIVES[year]
    yy = f"{year % 100:02d}"
    variables = FILO_IRIS_VARS[:1] + (["INCERT"] if year >= 2021 else []) + FILO_IRIS_VARS[1:]
    header = ["IRIS"] + [f"DISP_{v}{yy}" for v in variables]
    rows = []
    for code, _, _, _, values in _filosofi_iris_rows(model, year):
        values["INCERT"] = str(int(_unit(code, "incert") * 3))
        written = code.lstrip("0") if year == 2019 else code
        rows.append([written] + [_num(values[v], decimal) for v in variables])
    members = [(member, _csv(header, rows, encoding="ascii"))]
    if year <= 2019:
        meta = _csv(
            ["COD_VAR", "LIB_VAR", "LIB_VAR_LONG"],
            [[h, lab, lab] for h, lab in zip(header, ["IRIS"] + FILO_IRIS_LABELS[4:])],
        )
        members.append((f"meta_{member}", meta))
    return PublishedFile(archive, _zip(members))


def filosofi_iris(model: Model, year: int) -> PublishedFile:
    """The Filosofi IRIS file of income `year` as published."""
    return filosofi_iris_2017_xlsx(model) if year == 2017 else filosofi_iris_csv_zip(model, year)


# ---------------------------------------------------------------------------- Filosofi communes

FILO_CC_VARS = [
    "NBMENFISC",
    "NBPERSMENFISC",
    "MED",
    "PIMP",
    "TP60",
    "TP60AGE1",
    "TP60AGE2",
    "TP60AGE3",
    "TP60AGE4",
    "TP60AGE5",
    "TP60AGE6",
    "TP60TOL1",
    "TP60TOL2",
    "PACT",
    "PTSA",
    "PCHO",
    "PBEN",
    "PPEN",
    "PPAT",
    "PPSOC",
    "PPFAM",
    "PPMINI",
    "PPLOGT",
    "PIMPOT",
    "D1",
    "D9",
    "RD",
]
FILO_CC_ARCHIVES = {  # year → (zip name, member pattern with {level}, level order)
    2017: ("base-filosofi-2017_CSV.zip", "cc_filosofi_2017_{level}.CSV", ("COM", "DEP", "EPCI")),
    2018: ("base-cc-filosofi-2018_CSV_geo2021.zip", "cc_filosofi_2018_{level}-geo2021.CSV", ("COM", "DEP", "EPCI")),
    2019: ("base-cc-filosofi-2019_CSV.zip", "cc_filosofi_2019_{level}.csv", ("COM", "DEP", "EPCI")),
    2020: ("base-cc-filosofi-2020_CSV.zip", "cc_filosofi_2020_{level}.csv", ("BV2022", "COM", "EPCI", "DEP")),
}
#: bassins de vie 2022 of the model (codes look like commune codes, values differ from the commune's)
BASSINS_DE_VIE = {"69123": "Lyon", "69010": "L'Arbresle", "57463": "Metz", "29155": "Ouessant", "97411": "Saint-Denis"}


def _filosofi_cc_row(code: str, values: pd.Series, decimal: str) -> list[str]:
    """One wide base-cc row; `s` where the model has NaN or the variable is secret with TP60."""
    secret_detail = np.isnan(values["TP60"])
    full = {
        "NBMENFISC": values["NBMENFISC"],
        "NBPERSMENFISC": values["NBPERSMENFISC"],
        "MED": values["MED"],
        "TP60": values["TP60"],
        "PPMINI": values["PPMINI"],
    }
    u = _unit(code, "cc")
    for i, var in enumerate(FILO_CC_VARS):
        if var not in full:
            full[var] = np.nan if secret_detail else _round(10 + 40 * _unit(code, var) + i * u, 1)
    cells = [_num(full[v], decimal) for v in FILO_CC_VARS]
    return [code] + [cell if cell else "s" for cell in cells]


def filosofi_communes_wide_zip(model: Model, year: int) -> PublishedFile:
    """Filosofi communes 2017–2020 ("base-cc"): one CSV per level in the zip + `meta_` files.
    `CODGEO;NBMENFISCyy;NBPERSMENFISCyy;MEDyy;PIMPyy;TP60yy;…;PPMINIyy;…`, `;`, `s` = secret;
    2019 lower-case `.csv` and decimal comma; 2020 lists `cc_filosofi_2020_BV2022.csv` FIRST."""
    archive, pattern, order = FILO_CC_ARCHIVES[year]
    yy = f"{year % 100:02d}"
    decimal = "," if year == 2019 else "."
    header = ["CODGEO"] + [f"{v}{yy}" for v in FILO_CC_VARS]
    levels = model.filosofi_levels(year)
    if "BV2022" in order:
        communes = levels["COM"]
        bv = communes.loc[[c for c in BASSINS_DE_VIE if c in communes.index]].copy()
        bv["NBMENFISC"] = bv.NBMENFISC * 3 + 1500
        bv["NBPERSMENFISC"] = bv.NBPERSMENFISC * 3 + 3300
        bv["MED"] = bv.MED.map(lambda x: _round(x * 1.07 + 350, 2))
        bv["TP60"] = bv.TP60.fillna(15.0).map(lambda x: _round(x * 0.8 + 1.5, 1))
        bv["PPMINI"] = bv.PPMINI.fillna(2.0).map(lambda x: _round(x * 0.9 + 0.2, 1))
        levels["BV2022"] = bv
    members, metas = [], []
    for level in order:
        rows = [_filosofi_cc_row(code, values, decimal) for code, values in levels[level].iterrows()]
        if level == "COM":
            rows.append([TINY_COMMUNE[0]] + ["s"] * len(FILO_CC_VARS))
            rows.sort()
        name = pattern.format(level=level)
        members.append((name, _csv(header, rows, eol="\n" if year >= 2019 else "\r\n")))
        metas.append((f"meta_{name}", _csv(["COD_VAR", "LIB_VAR", "LIB_VAR_LONG"], [[h, h, h] for h in header])))
    return PublishedFile(archive, _zip(members + metas))


SDMX_MEASURES = {  # measure → (model column, unit, digits)
    "NUM_HH": ("NBMENFISC", "HH", 0),
    "NUM_PER": ("NBPERSMENFISC", "PERS", 1),
    "MED_SL": ("MED", "EUR_YR", 2),
    "PR_MD60": ("TP60", "PT", 1),
    "D1_SL": ("D1", "EUR_YR", 0),
    "D9_SL": ("D9", "EUR_YR", 0),
}


def filosofi_communes_sdmx_zip(model: Model) -> PublishedFile:
    """Filosofi communes 2021 geo2025: `base-cc-filosofi-2021-geo2025_csv.zip` →
    `DS_FILOSOFI_CC_data.csv` (LONG layout, `;`, every field quoted, one row per geography ×
    measure, `C` + empty OBS_VALUE when confidential) + `DS_FILOSOFI_CC_metadata.csv`."""
    header = [
        "GEO",
        "GEO_OBJECT",
        "FILOSOFI_MEASURE",
        "UNIT_MEASURE",
        "UNIT_MULT",
        "CONF_STATUS",
        "OBS_STATUS",
        "TIME_PERIOD",
        "OBS_VALUE",
    ]
    levels = model.filosofi_levels(2021)
    rows = []
    for level in ("DEP", "EPCI", "COM"):
        for code, values in levels[level].iterrows():
            values = values.copy()
            values["D1"] = np.nan if np.isnan(values.TP60) else round(values.MED * 0.55 / 10) * 10.0
            values["D9"] = np.nan if np.isnan(values.TP60) else round(values.MED * 1.66 / 10) * 10.0
            for measure, (column, unit, digits) in SDMX_MEASURES.items():
                value = values[column]
                free = not np.isnan(value)
                rows.append(
                    [
                        code,
                        level,
                        measure,
                        unit,
                        "0",
                        "F" if free else "C",
                        "A",
                        "2021",
                        _num(value, digits=max(digits, 1)) if free else "",
                    ]
                )
    rows.append(["84", "REG", "MED_SL", "EUR_YR", "0", "F", "A", "2021", "23510"])
    metadata = _csv(
        ["COD_VAR", "LIB_VAR", "COD_MOD", "LIB_MOD"],
        [
            ["GEO_OBJECT", "Objet géographique", "COM", "Commune"],
            ["GEO_OBJECT", "Objet géographique", "EPCI", "Intercommunalité"],
            ["GEO_OBJECT", "Objet géographique", "DEP", "Département"],
            ["GEO_OBJECT", "Objet géographique", "REG", "Région"],
            ["FILOSOFI_MEASURE", "Mesure", "MED_SL", "Médiane du niveau de vie"],
            ["FILOSOFI_MEASURE", "Mesure", "PR_MD60", "Taux de pauvreté au seuil de 60 %"],
            ["FILOSOFI_MEASURE", "Mesure", "D1_SL", "1er décile du niveau de vie"],
            ["FILOSOFI_MEASURE", "Mesure", "D9_SL", "9e décile du niveau de vie"],
            ["FILOSOFI_MEASURE", "Mesure", "NUM_HH", "Nombre de ménages fiscaux"],
            ["FILOSOFI_MEASURE", "Mesure", "NUM_PER", "Nombre de personnes dans les ménages fiscaux"],
            ["CONF_STATUS", "Statut de confidentialité", "C", "Confidentiel"],
            ["CONF_STATUS", "Statut de confidentialité", "F", "Libre"],
        ],
        quote=True,
    )
    data = _csv(header, rows, quote=True, eol="\n")
    return PublishedFile(
        "base-cc-filosofi-2021-geo2025_csv.zip",
        _zip([("DS_FILOSOFI_CC_data.csv", data), ("DS_FILOSOFI_CC_metadata.csv", metadata)]),
    )


def filosofi_communes(model: Model, year: int) -> PublishedFile:
    """The Filosofi communes file of income `year` as published."""
    return filosofi_communes_sdmx_zip(model) if year == 2021 else filosofi_communes_wide_zip(model, year)


# ---------------------------------------------------------------------------- IGN CONTOURS-IRIS


def _write_7z(tree: Path, top: str) -> bytes:
    """7z archive of folder `tree` stored under `top/` (py7zr, directory entries included)."""
    import py7zr

    buffer = io.BytesIO()
    with py7zr.SevenZipFile(buffer, "w") as archive:
        archive.writeall(tree, arcname=top)
    return buffer.getvalue()


def _dummy_outline(territory: str) -> gpd.GeoDataFrame:
    """One invented IRIS for a DOM the model does not cover (GLP/MTQ/GUF)."""
    code, name, x, y = {
        "GLP": ("971050000", "Basse-Terre", 640000, 1770000),
        "MTQ": ("972090000", "Fort-de-France", 710000, 1610000),
        "GUF": ("973020000", "Cayenne", 350000, 545000),
    }[territory]
    return gpd.GeoDataFrame(
        [
            {
                "INSEE_COM": code[:5],
                "NOM_COM": name,
                "IRIS": "0000",
                "CODE_IRIS": code,
                "NOM_IRIS": name,
                "TYP_IRIS": "Z",
                "geometry": _square(x, y, 3000),
            }
        ],
        geometry="geometry",
        crs=TERRITORIES[territory][1],
    )


def _ign_supplements(delivery: Path, suffix: str, edition: str) -> None:
    """`2_METADONNEES_LIVRAISON_…` and `3_SUPPLEMENTS_LIVRAISON_…` with a small file each."""
    meta = delivery.parent / f"2_METADONNEES_LIVRAISON_{suffix}"
    meta.mkdir()
    (meta / f"CONTOURS-IRIS_{edition}.xml").write_text(f"<metadata product='CONTOURS-IRIS' edition='{edition}'/>\n")
    extra = delivery.parent / f"3_SUPPLEMENTS_LIVRAISON_{suffix}"
    extra.mkdir()
    (extra / "CONTOURS-IRIS_SUPPLEMENT.txt").write_text("Supplément de livraison\n")


def contours_iris_shp_7z(model: Model, year: int, dummy_overseas: bool = False) -> PublishedFile:
    """IGN CONTOURS-IRIS shapefile 7z of geography `year` (2019–2023).

    2-1 (2019–2022): `CONTOURS-IRIS_2-1__SHP__FRA_<Y>-01-01/CONTOURS-IRIS/1_DONNEES_LIVRAISON_<…>/
    CONTOURS-IRIS_2-1_SHP_<CRS>_<TER>-<Y>/CONTOURS-IRIS.{shp,shx,dbf,prj,cpg}`; 3-0 (2023): folders
    `CONTOURS-IRIS_3-0_SHP_<CRS>_<TER>-ED2023-01-01`. One folder per territory (FXX Lambert-93,
    REU EPSG:2975, MYT EPSG:4471; GLP/MTQ/GUF with one dummy IRIS if `dummy_overseas`),
    upper-case fields INSEE_COM, NOM_COM, IRIS, CODE_IRIS, NOM_IRIS, TYP_IRIS."""
    if not 2019 <= year <= 2023:
        raise ValueError("shapefile editions: 2019–2023 (use contours_iris_gpkg_7z from 2024)")
    edition = "2-1" if year <= 2022 else "3-0"
    top = f"CONTOURS-IRIS_{edition}__SHP__FRA_{year}-01-01"
    suffix = IGN_DELIVERIES[year]
    tag = f"{year}" if edition == "2-1" else f"ED{year}-01-01"
    outlines = dict(model.outlines)
    if dummy_overseas:
        outlines.update({t: _dummy_outline(t) for t in ("GLP", "MTQ", "GUF")})
    with tempfile.TemporaryDirectory() as tmp:
        delivery = Path(tmp) / "CONTOURS-IRIS" / f"1_DONNEES_LIVRAISON_{suffix}"
        for territory in TERRITORIES:
            if territory not in outlines:
                continue
            folder = delivery / f"CONTOURS-IRIS_{edition}_SHP_{TERRITORIES[territory][0]}-{tag}"
            folder.mkdir(parents=True)
            outlines[territory].to_file(
                folder / "CONTOURS-IRIS.shp", driver="ESRI Shapefile", engine="pyogrio", encoding="UTF-8"
            )
        _ign_supplements(delivery, suffix, edition)
        content = _write_7z(Path(tmp), top)
    return PublishedFile(f"{top}.7z", content)


def contours_iris_gpkg_7z(model: Model, year: int = 2024, territory: str = "FXX") -> PublishedFile:
    """IGN CONTOURS-IRIS 3-0 GeoPackage 7z (2024+), one archive per territory:
    `CONTOURS-IRIS_3-0__GPKG_<CRS>_<TER>_<Y>-01-01/CONTOURS-IRIS/1_DONNEES_LIVRAISON_…/
    CONTOURS-IRIS_3-0_GPKG_<CRS>_<TER>-ED<Y>-01-01/iris.gpkg`, layer `contours_iris`,
    LOWER-CASE fields code_insee, nom_commune, iris, code_iris, nom_iris, type_iris."""
    crs_tag = TERRITORIES[territory][0]
    top = f"CONTOURS-IRIS_3-0__GPKG_{crs_tag}_{year}-01-01"
    suffix = IGN_DELIVERIES.get(year, f"{year}-05-00120")
    outlines = model.outlines[territory].rename(
        columns={
            "INSEE_COM": "code_insee",
            "NOM_COM": "nom_commune",
            "IRIS": "iris",
            "CODE_IRIS": "code_iris",
            "NOM_IRIS": "nom_iris",
            "TYP_IRIS": "type_iris",
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        delivery = Path(tmp) / "CONTOURS-IRIS" / f"1_DONNEES_LIVRAISON_{suffix}"
        folder = delivery / f"CONTOURS-IRIS_3-0_GPKG_{crs_tag}-ED{year}-01-01"
        folder.mkdir(parents=True)
        outlines.to_file(folder / "iris.gpkg", layer="contours_iris", driver="GPKG", engine="pyogrio")
        _ign_supplements(delivery, suffix, "3-0")
        content = _write_7z(Path(tmp), top)
    return PublishedFile(f"{top}.7z", content)


def contours_iris(model: Model, year: int) -> PublishedFile:
    """The CONTOURS-IRIS archive of geography `year` (shapefile ≤ 2023, FXX GeoPackage after)."""
    return contours_iris_shp_7z(model, year) if year <= 2023 else contours_iris_gpkg_7z(model, year)


# ---------------------------------------------------------------------------- INSEE EPCI composition


def epci_file_names(year: int) -> tuple[str, str]:
    """(zip, member) of INSEE's EPCI composition: 2019 old .xls; 2020 and 2021 members with a
    HYPHEN (`Intercommunalite-Metropole_…`, 2020 `_v1`); 2022–2023 underscore; 2024+ `EPCI_au_…`."""
    if year >= 2024:
        return f"epci_au_01-01-{year}.zip", f"EPCI_au_01-01-{year}.xlsx"
    suffix = "_v1" if year == 2020 else ""
    archive = f"Intercommunalite_Metropole_au_01-01-{year}{suffix}.zip"
    if year == 2019:
        return archive, "Intercommunalite_Metropole_au_01-01-2019.xls"
    if year in (2020, 2021):
        return archive, f"Intercommunalite-Metropole_au_01-01-{year}{suffix}.xlsx"
    return archive, f"Intercommunalite_Metropole_au_01-01-{year}.xlsx"


def epci_sheets(model: Model, year: int) -> list[tuple[str, list[list[object]]]]:
    """Sheets `EPCI` and `Composition_communale` (rows 1–4 titles, row 5 labels, row 6 codes
    CODGEO, LIBGEO, EPCI, LIBEPCI, DEP, REG, data from row 7): one row per commune (Lyon
    69123, never arrondissements), Ouessant and Île-de-Sein with EPCI ZZZZZZZZZ / Sans objet."""
    composition = model.epci(year).reset_index()
    rows = [[r.CODGEO, r.LIBGEO, r.EPCI, r.LIBEPCI, r.DEP, r.REG] for r in composition.itertuples()]
    rows.append([ILE_DE_SEIN[0], ILE_DE_SEIN[1], NO_EPCI, NO_EPCI_LABEL, "29", "53"])
    rows.sort()
    source = "Source : Insee, Code officiel géographique ; DGCL, Base nationale sur l'intercommunalité"
    communes = _title_rows(f"Composition communale des EPCI au 1er janvier {year}", source)
    communes += [
        [
            "Code géographique",
            "Libellé géographique",
            "EPCI - Métropole",
            "Libellé de l'EPCI / Métropole",
            "Département",
            "Région",
        ],
        ["CODGEO", "LIBGEO", "EPCI", "LIBEPCI", "DEP", "REG"],
    ] + rows
    counts = pd.Series([r[2] for r in rows]).value_counts()
    labels = dict(zip(composition.EPCI, composition.LIBEPCI)) | {NO_EPCI: NO_EPCI_LABEL}
    epcis = _title_rows(f"Liste des EPCI à fiscalité propre au 1er janvier {year}", source)
    epcis += [
        ["EPCI - Métropole", "Libellé de l'EPCI / Métropole", "Nature d'EPCI", "Nombre de communes"],
        ["EPCI", "LIBEPCI", "NATURE_EPCI", "NB_COM"],
    ]
    epcis += [
        [code, labels[code], _epci_nature(code, labels[code]), int(counts[code])] for code in sorted(counts.index)
    ]
    return [("EPCI", epcis), ("Composition_communale", communes)]


def _epci_nature(code: str, label: str) -> str:
    """NATURE_EPCI: ME/CA/CC/CU, ZZ for "Sans objet"."""
    if code in EPCI_LABELS:
        return EPCI_LABELS[code][1]
    return next((n for n in ("CA", "CU", "CC") if label.startswith(n)), "CC")


def epci_composition(model: Model, year: int) -> PublishedFile:
    """INSEE's zipped EPCI composition workbook of geography `year` (see epci_file_names)."""
    archive, member = epci_file_names(year)
    sheets = epci_sheets(model, year)
    book = _xls(sheets) if member.endswith(".xls") else _xlsx(sheets)
    return PublishedFile(archive, _zip([(member, book)]))


# ---------------------------------------------------------------------------- INSEE table de passage


def table_passage_2025(model: Model) -> PublishedFile:
    """`table_passage_geo2003_geo2025.zip` → `table_passage_annuelle_2025.xlsx`: sheet
    `Liste des fusions` first, then `COM` (rows 1–4 titles, row 5 labels, row 6 codes
    CODGEO_2003…CODGEO_2025, LIBGEO_2025): the merged commune has CODGEO_2025 of the absorbing one."""
    years = list(range(2003, 2026))
    cog = model.cog_communes(2024)
    names_2025 = model.cog_communes(2025).LIBGEO
    rows = []
    for code in cog.index:
        target = _geography_code(code, 2025)
        rows.append([_geography_code(code, y) for y in years] + [names_2025[target]])
    titles = _title_rows(
        "Table de passage annuelle des codes communes entre 2003 et 2025",
        "Géographie au 1er janvier 2025",
        "Source : Insee, Code officiel géographique",
    )
    labels = [f"Code géographique de la commune au 1er janvier {y}" for y in years] + ["Libellé de la commune en 2025"]
    codes = [f"CODGEO_{y}" for y in years] + ["LIBGEO_2025"]
    fusions = _title_rows("Liste des fusions de communes entre 2003 et 2025") + [
        ["Date d'effet", "Commune absorbante", "Commune absorbée"],
        ["DATE_EFF", "COM_ABS", "COM_FUS"],
        ["2025-01-01", MERGER_ABSORBING, MERGER_ABSORBED],
    ]
    book = _xlsx([("Liste des fusions", fusions), ("COM", titles + [labels, codes] + rows)])
    return PublishedFile("table_passage_geo2003_geo2025.zip", _zip([("table_passage_annuelle_2025.xlsx", book)]))


# ---------------------------------------------------------------------------- ARCEP

ARCEP_HEADER = [
    "code_insee",
    "nom_com",
    "code_dep",
    "nom_dep",
    "code_reg",
    "nom_reg",
    "nbr",
    "type",
    "inel_hd",
    "elig_hd05",
    "elig_hd3",
    "elig_bhd8",
    "elig_thd30",
    "elig_thd100",
    "elig_thd1g",
    "date",
]
ARCEP_BETA_HEADER = [
    "code_insee",
    "nom_com",
    "code_dep",
    "code_reg",
    "nbr",
    "type",
    "inel_hd",
    "elig_hd05",
    "elig_hd3",
    "elig_hd8",
    "elig_thd30",
    "elig_thd100",
    "elig_thd1g",
    "date",
]
ARCEP_BETA_DISCLAIMER = (
    "Version beta : les données sont présentées en l’état et ne sont pas toutes fiables, "
    "certaines devant encore être améliorées"
)


def arcep_debit_filaire(model: Model) -> PublishedFile:
    """`commune_debit_filaire.csv` (current quarterly file): `;`, UTF-8, header line 1 with
    `elig_bhd8`, type `all`, CUMULATIVE speed classes, integer counts, date 2025-06-30, one
    row per commune of geography 2025 (Lyon 69123, the merged commune once)."""
    counts = model.arcep(2025)
    rows = [
        [
            code,
            r.nom_com,
            r.code_dep,
            DEPARTEMENTS[r.code_dep],
            r.code_reg,
            REGIONS[r.code_reg],
            r.nbr,
            "all",
            r.inel_hd,
            r.elig_hd05,
            r.elig_hd3,
            r.elig_bhd8,
            r.elig_thd30,
            r.elig_thd100,
            r.elig_thd1g,
            ARCEP_DATE,
        ]
        for code, r in counts.iterrows()
    ]
    return PublishedFile("commune_debit_filaire.csv", _csv(ARCEP_HEADER, rows, eol="\n"))


def arcep_debit_beta_2019(model: Model) -> PublishedFile:
    """ARCEP « Ma connexion internet » beta (2019): line 1 a free-text disclaimer, line 2 the
    header with `elig_hd8`, type `logloc`, EXCLUSIVE classes adding up to nbr."""
    counts = model.arcep(2019)
    rows = []
    for code, r in counts.iterrows():
        exclusive = [
            r.elig_hd05 - r.elig_hd3,
            r.elig_hd3 - r.elig_bhd8,
            r.elig_bhd8 - r.elig_thd30,
            r.elig_thd30 - r.elig_thd100,
            r.elig_thd100 - r.elig_thd1g,
            r.elig_thd1g,
        ]
        rows.append([code, r.nom_com, r.code_dep, r.code_reg, r.nbr, "logloc", r.inel_hd, *exclusive, ARCEP_BETA_DATE])
    body = _csv(ARCEP_BETA_HEADER, rows, eol="\n")
    return PublishedFile("commune-debit-beta.csv", (ARCEP_BETA_DISCLAIMER + "\n").encode() + body)


# ---------------------------------------------------------------------------- mirror

MIRROR_KEYS = (
    "rp_evol_struct_pop",
    "rp_diplomes_formation",
    "rp_couples_familles_menages",
    "rp_activite_residents",
    "filosofi_iris",
    "filosofi_communes",
    "contours_iris",
    "communes_epci",
    "cog_passage",
    "arcep_debit",
)


def mirror_files(vintage: int, model: Model | None = None) -> dict[str, Callable[[], PublishedFile]]:
    """Builder of every file a run of census `vintage` needs: RP N, CONTOURS-IRIS and EPCI of
    geography N+2, Filosofi IRIS and communes of income year N, table de passage 2025, ARCEP last."""
    _check_vintage(vintage)
    m = model or load_model()
    builders: dict[str, Callable[[], PublishedFile]] = {
        f"rp_{theme.replace('-', '_')}": functools.partial(rp_base_ic, m, theme, vintage) for theme in RP_THEMES
    }
    builders.update(
        {
            "filosofi_iris": functools.partial(filosofi_iris, m, vintage),
            "filosofi_communes": functools.partial(filosofi_communes, m, vintage),
            "contours_iris": functools.partial(contours_iris, m, vintage + 2),
            "communes_epci": functools.partial(epci_composition, m, vintage + 2),
            "cog_passage": functools.partial(table_passage_2025, m),
            "arcep_debit": functools.partial(arcep_debit_filaire, m),
        }
    )
    return {key: builders[key] for key in MIRROR_KEYS}


def write_mirror(folder: Path, vintage: int, model: Model | None = None) -> dict[str, Path]:
    """Write every file of a run of census `vintage` (2017–2021) into `folder` under the
    publisher's own file name; returns {dataset_key: path}."""
    folder = Path(folder)
    return {key: build().write(folder) for key, build in mirror_files(vintage, model).items()}

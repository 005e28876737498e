"""A France-scale synthetic input set, in the real layouts, deterministic from a seed.

At scale 1: ~48,600 IRIS in ~34,900 communes, ~1,250 EPCI and the 101 départements, outlines
forming a valid polygon coverage (Voronoi cells whose shared edges are densified once, so
neighbours keep identical vertices) of about two million vertices; INSEE base-ic CSVs, Filosofi
IRIS (decimal comma, `s` markers, Ain codes without their leading zero, as in 2019) and commune
files, ARCEP with its free-text first line, a CAF file with blanks, the commune → EPCI table and a
CONTOURS-IRIS GeoPackages (one per part of France, each in its own CRS, as IGN ships them). The figures are random but plausible (counts below their totals).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely.geometry import box

from config.settings import load_departement_names

FULL = {"iris": 48_600, "communes": 34_900, "epci": 1_250}
VERTICES_PER_IRIS = 44  # ~2.1 million vertices at scale 1
YEAR = 2021


@dataclass(frozen=True)
class Generated:
    folder: Path
    config: Path
    iris: int
    communes: int
    vertices: int


def _counts(scale: float) -> tuple[int, int, int]:
    n_iris = max(int(FULL["iris"] * scale), 200)
    n_communes = max(int(FULL["communes"] * scale), 150)
    n_epci = max(int(FULL["epci"] * scale), 20)
    return n_iris, n_communes, n_epci


def _coverage(points: np.ndarray, side: float, vertices_per_cell: int) -> np.ndarray:
    """Voronoi cells of `points` in a square, densified edge by edge, in the order of `points`."""
    frame = box(0, 0, side, side)
    cells = shapely.get_parts(shapely.voronoi_polygons(shapely.multipoints(points), extend_to=frame, ordered=True))
    cells = shapely.intersection(cells, frame)
    segment = shapely.length(cells).mean() / vertices_per_cell
    edges = shapely.segmentize(shapely.union_all(shapely.boundary(cells)), segment)
    faces = shapely.get_parts(shapely.polygonize(shapely.get_parts(edges)))
    found = shapely.STRtree(faces).query(shapely.points(points), predicate="within")
    order = np.empty(len(points), dtype=int)
    order[found[0]] = found[1]
    return faces[order]


def _departements(n_communes: int) -> list[str]:
    """Each commune's département, in contiguous runs; overseas départements get few communes."""
    codes = sorted(load_departement_names())
    weights = np.array([0.08 if c.startswith("97") else 1.0 for c in codes])
    sizes = np.maximum(np.floor(weights / weights.sum() * n_communes).astype(int), 1)
    sizes[np.argmax(sizes)] += n_communes - sizes.sum()
    return [c for c, k in zip(codes, sizes) for _ in range(k)]


# Where each overseas département's IRIS are moved, in its own projected CRS (IGN ships one
# shapefile per part of France, each in its projection: methodology §1).
OVERSEAS = {
    "971": (5490, 640_000, 1_770_000),
    "972": (5490, 700_000, 1_610_000),
    "973": (2972, 300_000, 500_000),
    "974": (2975, 330_000, 7_640_000),
    "976": (4471, 510_000, 8_570_000),
}


def _write_outlines(folder: Path, outlines: gpd.GeoDataFrame, deps: pd.Series) -> None:
    """One GeoPackage per part of France, as IGN's archives hold one shapefile per part:
    metropolitan France in Lambert-93, each overseas département moved into its own CRS."""
    folder.mkdir(parents=True, exist_ok=True)
    overseas = deps.isin(list(OVERSEAS)).to_numpy()
    outlines[~overseas].to_file(folder / "CONTOURS-IRIS_LAMB93_FXX.gpkg", layer="CONTOURS_IRIS", engine="pyogrio")
    for dep, (epsg, x, y) in OVERSEAS.items():
        part = outlines[(deps == dep).to_numpy()]
        if part.empty:
            continue
        minx, miny, _, _ = part.total_bounds
        shift = np.array([x - minx, y - miny])
        moved = part.set_geometry(shapely.transform(part.geometry.to_numpy(), lambda xy, s=shift: xy + s))
        moved.set_crs(epsg, allow_override=True).to_file(
            folder / f"CONTOURS-IRIS_{dep}.gpkg", layer="CONTOURS_IRIS", engine="pyogrio"
        )


def generate(folder: Path, scale: float = 1.0, seed: int = 2026) -> Generated:
    """Write the input files and a run configuration (`config.yaml`) into `folder`."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    n_iris, n_communes, n_epci = _counts(scale)
    side = 1_000_000 * np.sqrt(scale)
    x0, y0 = 100_000, 6_050_000

    # Communes: seeds ordered along rows of blocks so that a département is a compact run.
    seeds = rng.uniform(0, side, (n_communes, 2))
    block = side / 20
    seeds = seeds[np.lexsort((seeds[:, 0] // block, seeds[:, 1] // block))]
    deps = _departements(n_communes)
    communes = pd.DataFrame({"DEP": deps})
    communes["rank"] = communes.groupby("DEP").cumcount() + 1
    width = communes["DEP"].str.len().map({2: 3, 3: 2})
    communes["INSEE_COM"] = [d + str(r).zfill(w) for d, r, w in zip(communes["DEP"], communes["rank"], width)]
    communes["NOM_COM"] = "Commune " + communes["INSEE_COM"]
    epci_of = np.arange(n_communes) * n_epci // n_communes
    communes["EPCI"] = [str(200_000_000 + int(e)) for e in epci_of]
    communes["LIBEPCI"] = "EPCI " + communes["EPCI"]

    # IRIS: one per commune, plus extra IRIS around the seeds of the larger communes.
    extra = n_iris - n_communes
    big = rng.choice(n_communes, size=max(extra // 5, 1), replace=False)
    owner = np.concatenate([np.arange(n_communes), rng.choice(big, size=extra)])
    points = seeds[owner] + np.vstack([np.zeros((n_communes, 2)), rng.normal(0, block / 40, (extra, 2))])
    points = np.clip(points, 1.0, side - 1.0)
    geoms = _coverage(points, side, VERTICES_PER_IRIS)
    geoms = shapely.transform(geoms, lambda xy: xy + np.array([x0, y0]))

    iris = communes.iloc[owner][["INSEE_COM", "NOM_COM", "DEP", "EPCI"]].reset_index(drop=True)
    split = iris.groupby("INSEE_COM")["INSEE_COM"].transform("size") > 1
    number = iris.groupby("INSEE_COM").cumcount() + 1
    iris["IRIS"] = np.where(split, [f"01{n:02d}" for n in number], "0000")
    iris["CODE_IRIS"] = iris["INSEE_COM"] + iris["IRIS"]
    iris["TYP_IRIS"] = np.where(split, "H", "Z")
    iris["NOM_IRIS"] = np.where(split, "IRIS " + iris["CODE_IRIS"], iris["NOM_COM"])

    outlines = gpd.GeoDataFrame(
        iris[["INSEE_COM", "NOM_COM", "IRIS", "CODE_IRIS", "NOM_IRIS", "TYP_IRIS"]], geometry=geoms, crs=2154
    )
    _write_outlines(folder / "CONTOURS-IRIS", outlines, iris["DEP"])
    _census(folder, iris, rng)
    _filosofi(folder, iris, communes, rng, split.to_numpy())
    _arcep(folder, communes, rng)
    _caf(folder, communes, rng)
    pd.DataFrame(
        {
            "CODGEO": communes["INSEE_COM"],
            "LIBGEO": communes["NOM_COM"],
            "EPCI": communes["EPCI"],
            "LIBEPCI": communes["LIBEPCI"],
        }
    ).to_csv(folder / "communes-epci.csv", sep=";", index=False)
    config = folder / "config.yaml"
    config.write_text(CONFIG.format(year=YEAR), encoding="utf-8")
    return Generated(folder, config, n_iris, n_communes, int(shapely.get_num_coordinates(geoms).sum()))


BASE_IC_WIDTH = 100  # columns of an INSEE base-ic file


def _census(folder: Path, iris: pd.DataFrame, rng: np.random.Generator) -> None:
    n = len(iris)
    pop = rng.lognormal(np.log(1200), 0.6, n).round(3)

    def share(mean: float, total: np.ndarray) -> np.ndarray:
        return (total * np.clip(rng.normal(mean, mean / 4, n), 0, 1)).round(3)

    ids = pd.DataFrame(
        {
            "IRIS": iris["CODE_IRIS"],
            "REG": "84",
            "DEP": iris["DEP"],
            "COM": iris["INSEE_COM"],
            "LIBCOM": iris["NOM_COM"],
            "LIBIRIS": iris["NOM_IRIS"],
            "TYP_IRIS": iris["TYP_IRIS"],
        }
    )
    p = f"P{YEAR % 100}_"
    c = f"C{YEAR % 100}_"
    pop15 = share(0.82, pop)
    evol = ids.assign(
        **{
            f"{p}POP": pop,
            f"{p}POP1529": share(0.17, pop),
            f"{p}POP3044": share(0.18, pop),
            f"{p}POP4559": share(0.2, pop),
            f"{p}POP6074": share(0.17, pop),
            f"{p}POP65P": share(0.2, pop),
            f"{p}POP75P": share(0.09, pop),
            f"{p}POP15P": pop15,
            f"{c}POP15P_CS7": share(0.27, pop15),
        }
    )
    nscol = share(0.72, pop)
    dipl = ids.assign(**{f"{p}NSCOL15P": nscol, f"{p}NSCOL15P_DIPLMIN": share(0.26, nscol)})
    men = share(0.45, pop)
    fam = share(0.6, men)
    cfm = ids.assign(
        **{f"{c}MEN": men, f"{c}MENPSEUL": share(0.37, men), f"{c}FAM": fam, f"{c}FAMMONO": share(0.15, fam)}
    )
    act = share(0.47, pop)
    chom = share(0.12, act)
    activite = ids.assign(**{f"{p}ACT1564": act, f"{p}CHOM1564": chom, f"{p}ACTOCC1564": (act - chom).round(3)})
    for name, table in (
        ("evol-struct-pop", evol),
        ("diplomes-formation", dipl),
        ("couples-familles-menages", cfm),
        ("activite-residents", activite),
    ):
        # INSEE's files are ~100 columns wide (sex, age and socio-professional breakdowns); the
        # run reads only the few it uses, so the others are there to be skipped.
        width = BASE_IC_WIDTH - len(table.columns)
        breakdowns = pd.DataFrame(
            (rng.random((n, width)) * pop[:, None] / 10).round(3),
            index=table.index,
            columns=[f"{p}{name.split('-')[0].upper()}_DETAIL{k:03d}" for k in range(width)],
        )
        pd.concat([table, breakdowns], axis=1).to_csv(folder / f"base-ic-{name}-{YEAR}.CSV", sep=";", index=False)


def _filosofi(
    folder: Path, iris: pd.DataFrame, communes: pd.DataFrame, rng: np.random.Generator, split: np.ndarray
) -> None:
    rows = iris.loc[split, "CODE_IRIS"]
    n = len(rows)
    codes = rows.str.replace(r"^0", "", regex=True).to_numpy()  # like 2019: Ain lost its leading zero
    tp60 = np.round(rng.uniform(4, 40, n), 1).astype(str)
    tp60[rng.random(n) < 0.1] = "s"
    med = np.round(rng.normal(22_000, 4_000, n), -1).astype(int).astype(str)
    mini = np.round(rng.uniform(0.5, 9, n), 1).astype(str)
    y = YEAR % 100
    table = pd.DataFrame(
        {
            "IRIS": codes,
            f"DISP_TP60{y}": pd.Series(tp60).str.replace(".", ",", regex=False),
            f"DISP_MED{y}": med,
            f"DISP_PPMINI{y}": pd.Series(mini).str.replace(".", ",", regex=False),
        }
    )
    table.to_csv(folder / f"BASE_TD_FILO_IRIS_{YEAR}_DISP.csv", sep=";", index=False)
    m = len(communes)
    com = pd.DataFrame(
        {
            "CODGEO": communes["INSEE_COM"],
            "LIBGEO": communes["NOM_COM"],
            f"MED{y}": np.round(rng.normal(21_500, 3_000, m), -1),
            f"TP60{y}": np.where(rng.random(m) < 0.5, "", np.round(rng.uniform(5, 30, m), 1).astype(str)),
        }
    )
    com.to_csv(folder / f"base-cc-filosofi-{YEAR}.CSV", sep=";", index=False)


def _arcep(folder: Path, communes: pd.DataFrame, rng: np.random.Generator) -> None:
    m = len(communes)
    counts = rng.dirichlet([0.3, 0.2, 0.3, 1.0, 0.8, 0.5, 3.0], size=m) * rng.integers(50, 20_000, m)[:, None]
    counts = counts.round().astype(int)
    table = pd.DataFrame(
        counts, columns=["inel_hd", "elig_hd05", "elig_hd3", "elig_hd8", "elig_thd30", "elig_thd100", "elig_thd1g"]
    )
    table.insert(0, "type", "logloc")
    table.insert(0, "nbr", counts.sum(axis=1))
    table.insert(0, "code_reg", "84")
    table.insert(0, "code_dep", communes["DEP"])
    table.insert(0, "nom_com", communes["NOM_COM"])
    table.insert(0, "code_insee", communes["INSEE_COM"])
    table["date"] = "2021-09-30"
    with open(folder / "commune-debit.csv", "w", encoding="utf-8") as fh:
        fh.write("Version beta : les données sont présentées en l'état\n")
        table.to_csv(fh, sep=";", index=False)


def _caf(folder: Path, communes: pd.DataFrame, rng: np.random.Generator) -> None:
    m = len(communes)
    allocataires = rng.integers(3, 5_000, m)
    non = (allocataires * rng.uniform(0.02, 0.3, m)).round().astype(int).astype(str)
    non[rng.random(m) < 0.05] = ""
    pd.DataFrame(
        {
            "code_geo": communes["INSEE_COM"],
            "niveau": "commune",
            "millesime": str(YEAR),
            "allocataires": allocataires,
            "non_connectes": non,
        }
    ).to_csv(folder / "caf.csv", sep=";", index=False)


CONFIG = """run:
  territory_label: "France (jeu synthétique)"
  out_dir: out
inputs:
  rp_evol_struct_pop: base-ic-evol-struct-pop-{year}.CSV
  rp_diplomes_formation: base-ic-diplomes-formation-{year}.CSV
  rp_couples_familles_menages: base-ic-couples-familles-menages-{year}.CSV
  rp_activite_residents: base-ic-activite-residents-{year}.CSV
  filosofi_iris: BASE_TD_FILO_IRIS_{year}_DISP.csv
  filosofi_communes: base-cc-filosofi-{year}.CSV
  contours_iris: CONTOURS-IRIS
  communes_epci: communes-epci.csv
  arcep_debit: commune-debit.csv
  caf_non_connectes: caf.csv
"""

"""Premises without ≥ 30 Mbit/s and without 4G, measured at the IRIS from ARCEP's buildings.

Each building of ARCEP's `base_imb` is a point with its premises: placing the points in the
IRIS polygons (a DuckDB spatial join, R-tree backed) gives per-IRIS counts instead of a commune
rate copied to every IRIS. Everything per building stays in DuckDB; pandas receives one row
per IRIS.

A building outside every IRIS (a point on the coast, a bad coordinate) still counts: it is
given to its commune's IRIS in proportion to the premises located in each, and reported.
Lyon, Paris and Marseille buildings may carry the city code (69123): their points find the
arrondissement's IRIS; for the fallback, the city's IRIS are those of all its arrondissements.
"""

from __future__ import annotations

import duckdb
import geopandas as gpd
import numpy as np
import pandas as pd

from transforms.duckdb_spatial import column_crs, epsg_code, load_geometries
from transforms.geo_codes import ARRONDISSEMENT_TO_CITY, departement_code

MAX_LISTED = 200
SOURCE_CRS = "EPSG:3857"
OUTPUT_COLUMNS = (
    "CODE_IRIS",
    "INSEE_COM",
    "batiments",
    "locaux",
    "locaux_sans_thd",
    "locaux_4g",
    "locaux_sans_4g",
    "locaux_commune",
    "donnees_batiments",
)


def _parts(iris: gpd.GeoDataFrame) -> dict[str, gpd.GeoDataFrame]:
    """IRIS by CRS: the frame's CRS, or one part per value of its `EPSG` column (sources.ign_iris)."""
    if iris.crs is not None:
        return {epsg_code(iris.crs): iris}
    if "EPSG" in iris.columns:
        return {epsg_code(int(code)): part for code, part in iris.groupby("EPSG")}
    raise ValueError("contours IRIS sans projection : donnez un GeoDataFrame avec un CRS (EPSG:2154 en métropole)")


def _points(buildings: str, building_crs: str, crs: str, departements: list[str] | None) -> str:
    """SQL of the valid building points in `crs`: the stored point, else reprojected from EPSG:3857
    (then restricted to the part's départements, so that France is not reprojected per part)."""
    if crs == building_crs:
        return f"SELECT rowid AS rid, geom FROM {buildings} WHERE valide"
    deps = ", ".join(f"'{d}'" for d in departements or [])
    return (
        f"SELECT rowid AS rid, ST_Transform(ST_Point(x, y), '{SOURCE_CRS}', '{crs}', always_xy := true)"
        f"::GEOMETRY('{crs}') AS geom FROM {buildings} WHERE valide AND departement IN ({deps or 'NULL'})"
    )


def _commune_iris(iris: pd.DataFrame) -> pd.DataFrame:
    """Commune code → IRIS, each arrondissement's IRIS also listed under its city's code."""
    pairs = iris[["INSEE_COM", "CODE_IRIS"]].astype(str).rename(columns={"INSEE_COM": "code"})
    city = pairs["code"].map(ARRONDISSEMENT_TO_CITY)
    cities = pairs[city.notna()].assign(code=city[city.notna()])
    return pd.concat([pairs, cities], ignore_index=True).drop_duplicates()


def _locate(con: duckdb.DuckDBPyConnection, buildings: str, iris: gpd.GeoDataFrame) -> dict:
    """Table `_loc(rid, CODE_IRIS)`: each valid point in one IRIS (ST_Contains, then ST_Intersects
    for points on an outline, the smallest code when a point falls in several IRIS)."""
    building_crs = column_crs(con, buildings)
    con.execute("CREATE OR REPLACE TEMP TABLE _hits (rid BIGINT, CODE_IRIS VARCHAR)")
    parts = _parts(iris)
    for k, (crs, part) in enumerate(parts.items()):
        load_geometries(con, f"_iris_{k}", part, ["CODE_IRIS"], crs)
        deps = sorted(set(departement_code(part["INSEE_COM"].astype(str))))
        points = _points(buildings, building_crs or crs, crs, deps)
        con.execute(
            f"INSERT INTO _hits SELECT p.rid, i.CODE_IRIS FROM ({points}) p JOIN _iris_{k} i ON ST_Contains(i.geom, p.geom)"
        )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _loc AS SELECT rid, min(CODE_IRIS) AS CODE_IRIS, count(*) AS n FROM _hits GROUP BY rid"
    )
    multiple = con.execute("SELECT count(*) FROM _loc WHERE n > 1").fetchone()[0]
    on_outline = 0
    for k, crs in enumerate(parts):
        deps = sorted(set(departement_code(parts[crs]["INSEE_COM"].astype(str))))
        points = _points(buildings, building_crs or crs, crs, deps)
        before = con.execute("SELECT count(*) FROM _loc").fetchone()[0]
        con.execute(
            f"""INSERT INTO _loc SELECT p.rid, min(i.CODE_IRIS), count(*)
                FROM (SELECT * FROM ({points}) q WHERE rid NOT IN (SELECT rid FROM _loc)) p
                JOIN _iris_{k} i ON ST_Intersects(i.geom, p.geom) GROUP BY p.rid"""
        )
        on_outline += con.execute("SELECT count(*) FROM _loc").fetchone()[0] - before
        con.execute(f"DROP TABLE _iris_{k}")
    con.execute("DROP TABLE _hits")
    return {"iris_multiples": int(multiple), "limite_iris": int(on_outline), "crs_iris": list(parts)}


def _cover(con: duckdb.DuckDBPyConnection, buildings: str, coverage: str) -> str:
    """Table `_cov(rid)`: counted buildings inside any coverage polygon. Returns the coverage CRS."""
    crs = column_crs(con, coverage)
    if crs is None:
        raise ValueError(f"{coverage} : géométries sans CRS ; chargez-les avec sources.arcep_mobile.register_coverage")
    building_crs = column_crs(con, buildings)
    point = (
        "b.geom"
        if building_crs == crs
        else f"ST_Transform(ST_Point(b.x, b.y), '{SOURCE_CRS}', '{crs}', always_xy := true)::GEOMETRY('{crs}')"
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _cov AS
            SELECT DISTINCT p.rid FROM (
                SELECT c.rid, {point} AS geom FROM _counted c JOIN {buildings} b ON b.rowid = c.rid WHERE b.valide
            ) p JOIN {coverage} v ON ST_Intersects(v.geom, p.geom)"""
    )
    return crs


def iris_connectivity(
    con: duckdb.DuckDBPyConnection,
    iris: gpd.GeoDataFrame,
    buildings_view: str,
    coverage_view: str | None,
) -> tuple[pd.DataFrame, dict]:
    """Per IRIS: `batiments` (located by their point), `locaux`, `locaux_sans_thd`, `locaux_4g`
    (premises whose coverage could be tested: valid coordinates), `locaux_sans_4g` (null without
    coverage), `locaux_commune` (premises given by the commune fallback), `donnees_batiments`
    (the IRIS's département has buildings in the files; counts are null otherwise).

    `buildings_view` is the table of `sources.arcep_batiments.register_buildings`,
    `coverage_view` that of `sources.arcep_mobile.register_coverage`. The IRIS frame's CRS
    (or its `EPSG` column) is the target: points are compared with IRIS in the IRIS's CRS.
    """
    frame = iris[["CODE_IRIS", "INSEE_COM"]].astype(str).assign(departement=departement_code(iris["INSEE_COM"]))
    report = _locate(con, buildings_view, iris)
    con.register("_commune_iris_in", _commune_iris(frame))
    con.execute("CREATE OR REPLACE TEMP TABLE _commune_iris AS SELECT * FROM _commune_iris_in")
    con.unregister("_commune_iris_in")
    con.register("_iris_deps_in", pd.DataFrame({"departement": sorted(set(frame["departement"]))}))
    con.execute("CREATE OR REPLACE TEMP TABLE _iris_deps AS SELECT * FROM _iris_deps_in")
    con.unregister("_iris_deps_in")
    # Every building the territory counts: located by its point, else attached by its commune.
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _counted AS
            SELECT b.rowid AS rid, l.CODE_IRIS,
                   l.rid IS NULL AND b.imb_code_insee IN (SELECT code FROM _commune_iris) AS par_commune
            FROM {buildings_view} b LEFT JOIN _loc l ON l.rid = b.rowid
            WHERE l.rid IS NOT NULL OR b.imb_code_insee IN (SELECT code FROM _commune_iris)"""
    )
    coverage_crs = _cover(con, buildings_view, coverage_view) if coverage_view else None
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _state AS
            SELECT c.rid, c.CODE_IRIS, c.par_commune, b.imb_code_insee, b.locaux, b.thd, b.valide,
                   {"v.rid IS NOT NULL" if coverage_view else "NULL::BOOLEAN"} AS couvert
            FROM _counted c JOIN {buildings_view} b ON b.rowid = c.rid
            {"LEFT JOIN _cov v ON v.rid = c.rid" if coverage_view else ""}"""
    )
    located = con.execute(
        """SELECT CODE_IRIS, count(*) AS batiments, sum(locaux) AS locaux,
                  coalesce(sum(locaux) FILTER (NOT thd), 0) AS locaux_sans_thd, sum(locaux) AS locaux_4g,
                  CASE WHEN bool_and(couvert IS NULL) THEN NULL
                       ELSE coalesce(sum(locaux) FILTER (NOT couvert), 0) END AS locaux_sans_4g
           FROM _state WHERE NOT par_commune GROUP BY 1"""
    ).df()
    attached = _fallback(con, located, coverage_view is not None)
    table = _assemble(con, frame, located, attached, buildings_view, coverage_view is not None)
    report.update(_report(con, buildings_view, frame, coverage_crs))
    for name in ("_loc", "_counted", "_cov", "_state", "_commune_iris", "_iris_deps"):
        con.execute(f"DROP TABLE IF EXISTS {name}")
    return table, report


def _fallback(con: duckdb.DuckDBPyConnection, located: pd.DataFrame, with_coverage: bool) -> pd.DataFrame:
    """Buildings attached by commune, spread over the commune's IRIS by their located premises
    (evenly when none has any). One row per IRIS that receives a share."""
    con.register("_located_in", located[["CODE_IRIS", "locaux"]])
    sans_4g = "sum(locaux) FILTER (valide AND NOT couvert)" if with_coverage else "NULL::DOUBLE"
    attached = con.execute(
        f"""WITH per_commune AS (
                SELECT imb_code_insee AS code, sum(locaux) AS locaux,
                       coalesce(sum(locaux) FILTER (NOT thd), 0) AS sans_thd,
                       coalesce(sum(locaux) FILTER (valide), 0) AS l4g, coalesce({sans_4g}, 0) AS sans_4g
                FROM _state WHERE par_commune GROUP BY 1),
            weights AS (
                SELECT ci.code, ci.CODE_IRIS, coalesce(l.locaux, 0) AS w,
                       sum(coalesce(l.locaux, 0)) OVER (PARTITION BY ci.code) AS total,
                       count(*) OVER (PARTITION BY ci.code) AS n
                FROM _commune_iris ci LEFT JOIN _located_in l ON l.CODE_IRIS = ci.CODE_IRIS
                WHERE ci.code IN (SELECT code FROM per_commune)),
            shares AS (SELECT code, CODE_IRIS, CASE WHEN total > 0 THEN w / total ELSE 1.0 / n END AS share FROM weights)
            SELECT s.CODE_IRIS, sum(p.locaux * s.share) AS locaux, sum(p.sans_thd * s.share) AS locaux_sans_thd,
                   sum(p.l4g * s.share) AS locaux_4g, sum(p.sans_4g * s.share) AS locaux_sans_4g
            FROM per_commune p JOIN shares s ON s.code = p.code GROUP BY 1"""
    ).df()
    con.unregister("_located_in")
    return attached


def _assemble(
    con: duckdb.DuckDBPyConnection,
    frame: pd.DataFrame,
    located: pd.DataFrame,
    attached: pd.DataFrame,
    buildings: str,
    with_coverage: bool,
) -> pd.DataFrame:
    """One row per IRIS of the frame, in its order; null counts where the département has no buildings."""
    deps = {r[0] for r in con.execute(f"SELECT DISTINCT departement FROM {buildings}").fetchall()}
    out = frame[["CODE_IRIS", "INSEE_COM"]].reset_index(drop=True)
    loc = out[["CODE_IRIS"]].merge(located, on="CODE_IRIS", how="left").fillna({"batiments": 0})
    att = out[["CODE_IRIS"]].merge(attached, on="CODE_IRIS", how="left").fillna(0.0)
    out["batiments"] = loc["batiments"].astype("int64")
    for col in ("locaux", "locaux_sans_thd", "locaux_4g", "locaux_sans_4g"):
        out[col] = loc[col].astype("float64").fillna(0.0) + att[col].astype("float64")
    out["locaux_commune"] = att["locaux"].astype("float64")
    if not with_coverage:
        out["locaux_sans_4g"] = np.nan
    out["donnees_batiments"] = frame["departement"].isin(deps).to_numpy()
    counts = ["locaux", "locaux_sans_thd", "locaux_4g", "locaux_sans_4g", "locaux_commune"]
    out.loc[~out["donnees_batiments"], counts] = np.nan
    return out[list(OUTPUT_COLUMNS)]


def _report(con: duckdb.DuckDBPyConnection, buildings: str, frame: pd.DataFrame, coverage_crs: str | None) -> dict:
    """Where every building of the files went: in an IRIS, to its commune, or left out (and why)."""
    (total, invalid, located, outside, attached, attached_invalid, attached_premises) = con.execute(
        f"""SELECT count(*), count(*) FILTER (NOT b.valide), count(*) FILTER (c.rid IS NOT NULL AND NOT c.par_commune),
                   count(*) FILTER (b.valide AND c.par_commune), count(*) FILTER (c.par_commune),
                   count(*) FILTER (NOT b.valide AND c.par_commune), coalesce(sum(b.locaux) FILTER (c.par_commune), 0)
            FROM {buildings} b LEFT JOIN _counted c ON c.rid = b.rowid"""
    ).fetchone()
    left_out = con.execute(
        f"""SELECT b.imb_code_insee, b.departement IN (SELECT departement FROM _iris_deps) AS dans_dep,
                   count(*), sum(b.locaux)
            FROM {buildings} b WHERE b.rowid NOT IN (SELECT rid FROM _counted) GROUP BY 1, 2 ORDER BY 3 DESC"""
    ).fetchall()
    no_commune = [r for r in left_out if r[1]]
    per_dep = con.execute(
        f"""SELECT b.departement, count(*), count(*) FILTER (c.rid IS NOT NULL AND NOT c.par_commune),
                   count(*) FILTER (c.par_commune)
            FROM {buildings} b LEFT JOIN _counted c ON c.rid = b.rowid
            WHERE b.departement IN (SELECT departement FROM _iris_deps) GROUP BY 1 ORDER BY 1"""
    ).fetchall()
    present = {d for d, *_ in per_dep}
    report = {
        "batiments_fichiers": int(total),
        "batiments_comptes": int(located + attached),
        "dans_iris": int(located),
        "hors_iris": int(outside),
        "coordonnees_invalides": int(invalid),
        "rattaches_commune": int(attached),
        "rattaches_commune_coordonnees_invalides": int(attached_invalid),
        "locaux_rattaches_commune": float(attached_premises),
        "sans_commune": int(sum(r[2] for r in no_commune)),
        "locaux_sans_commune": float(sum(r[3] or 0 for r in no_commune)),
        "communes_sans_iris": [str(r[0]) for r in no_commune][:MAX_LISTED],
        "hors_territoire": int(sum(r[2] for r in left_out if not r[1])),
        "departements": {
            d: {"batiments": int(n), "dans_iris": int(i), "rattaches_commune": int(a)} for d, n, i, a in per_dep
        },
        "departements_sans_batiments": sorted(set(frame["departement"]) - present),
        "couverture_4g": coverage_crs is not None,
        "crs_couverture": coverage_crs,
    }
    if coverage_crs:
        report["batiments_couverts_4g"] = int(con.execute("SELECT count(*) FROM _cov").fetchone()[0])
    return report

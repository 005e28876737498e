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
# Demand points of the offer of mediation: located premises gathered per IRIS and square of this
# side (m), so that France's tens of millions of buildings become a few million points.
DEMAND_CELL_M = 100
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
    where = _points_where(building_crs, crs, departements)
    if crs == building_crs:
        return f"SELECT rowid AS rid, geom FROM {buildings} WHERE {where}"
    return (
        f"SELECT rowid AS rid, ST_Transform(ST_Point(x, y), '{SOURCE_CRS}', '{crs}', always_xy := true)"
        f"::GEOMETRY('{crs}') AS geom FROM {buildings} WHERE {where}"
    )


def _points_where(building_crs: str, crs: str, departements: list[str] | None) -> str:
    if crs == building_crs:
        return "valide"
    deps = ", ".join(f"'{d}'" for d in departements or [])
    return f"valide AND departement IN ({deps or 'NULL'})"


def _commune_iris(iris: pd.DataFrame) -> pd.DataFrame:
    """Commune code → IRIS, each arrondissement's IRIS also listed under its city's code."""
    pairs = iris[["INSEE_COM", "CODE_IRIS"]].astype(str).rename(columns={"INSEE_COM": "code"})
    city = pairs["code"].map(ARRONDISSEMENT_TO_CITY)
    cities = pairs[city.notna()].assign(code=city[city.notna()])
    return pd.concat([pairs, cities], ignore_index=True).drop_duplicates()


def _locate(con: duckdb.DuckDBPyConnection, buildings: str, iris: gpd.GeoDataFrame) -> dict:
    """View `_loc(rid, CODE_IRIS)`: each valid point in one IRIS (inside an IRIS, else on an
    outline; the smallest code when a point falls in several IRIS).

    One LEFT spatial join per CRS part tests every point once: a point inside no IRIS comes out
    with a null code and its geometry, and only those (a few per thousand) are tested again
    against the outlines. Points are never re-read nor anti-joined against the located ones.
    """
    building_crs = column_crs(con, buildings)
    parts = _parts(iris)
    expected = 0
    for k, (crs, part) in enumerate(parts.items()):
        load_geometries(con, f"_iris_{k}", part, ["CODE_IRIS"], crs)
        deps = sorted(set(departement_code(part["INSEE_COM"].astype(str))))
        points = _points(buildings, building_crs or crs, crs, deps)
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE _pass_{k} AS
                SELECT p.rid, i.CODE_IRIS, CASE WHEN i.CODE_IRIS IS NULL THEN p.geom END AS geom
                FROM ({points}) p LEFT JOIN _iris_{k} i ON ST_Contains(i.geom, p.geom)"""
        )
        where = _points_where(building_crs or crs, crs, deps)
        expected += con.execute(f"SELECT count(*) FROM {buildings} WHERE {where}").fetchone()[0]
    rows = sum(con.execute(f"SELECT count(*) FROM _pass_{k}").fetchone()[0] for k in range(len(parts)))
    if len(parts) == 1 and rows == expected:
        # Every point came out once: no point inside two IRIS, nothing to group.
        con.execute(
            "CREATE OR REPLACE TEMP VIEW _inside AS "
            "SELECT rid, CODE_IRIS, (CODE_IRIS IS NOT NULL)::BIGINT AS n FROM _pass_0"
        )
    else:
        union = " UNION ALL ".join(f"SELECT rid, CODE_IRIS FROM _pass_{k}" for k in range(len(parts)))
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _inside AS "
            f"SELECT rid, min(CODE_IRIS) AS CODE_IRIS, count(CODE_IRIS) AS n FROM ({union}) GROUP BY rid"
        )
    multiple = con.execute("SELECT count(*) FROM _inside WHERE n > 1").fetchone()[0]
    con.execute("CREATE OR REPLACE TEMP TABLE _outside AS SELECT rid FROM _inside WHERE n = 0")
    con.execute("CREATE OR REPLACE TEMP TABLE _outline (rid BIGINT, CODE_IRIS VARCHAR)")
    for k in range(len(parts)):
        con.execute(
            f"""INSERT INTO _outline SELECT p.rid, min(i.CODE_IRIS)
                FROM (SELECT rid, geom FROM _pass_{k} WHERE CODE_IRIS IS NULL AND rid IN (SELECT rid FROM _outside)
                      AND rid NOT IN (SELECT rid FROM _outline)) p
                JOIN _iris_{k} i ON ST_Intersects(i.geom, p.geom) GROUP BY p.rid"""
        )
        con.execute(f"DROP TABLE _iris_{k}")
    on_outline = con.execute("SELECT count(*) FROM _outline").fetchone()[0]
    con.execute(
        "CREATE OR REPLACE TEMP VIEW _loc AS SELECT rid, CODE_IRIS FROM _inside WHERE n > 0 "
        "UNION ALL SELECT rid, CODE_IRIS FROM _outline"
    )
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
                SELECT s.rid, {point} AS geom FROM _state s JOIN {buildings} b ON b.rowid = s.rid
                WHERE s.compte AND b.valide
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

    `table.attrs["points_batiments"]` holds the located premises as demand points
    (`premises_points`): a frame, not a JSON value, for the caller to take off the table.

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
    # Every building once, with where it goes: located by its point, else attached by its commune
    # (`compte`: one or the other). Later steps read this table only, without joins.
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _state AS
            SELECT b.rowid AS rid, l.CODE_IRIS, b.imb_code_insee, b.departement, b.locaux, b.thd, b.valide,
                   l.rid IS NOT NULL AS localise, l.rid IS NULL AND c.code IS NOT NULL AS par_commune,
                   l.rid IS NOT NULL OR c.code IS NOT NULL AS compte, NULL::BOOLEAN AS couvert
            FROM {buildings_view} b LEFT JOIN _loc l ON l.rid = b.rowid
            LEFT JOIN (SELECT DISTINCT code FROM _commune_iris) c ON c.code = b.imb_code_insee"""
    )
    coverage_crs = None
    if coverage_view:
        coverage_crs = _cover(con, buildings_view, coverage_view)
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _state AS SELECT s.* REPLACE (s.compte AND v.rid IS NOT NULL AS couvert) "
            "FROM _state s LEFT JOIN _cov v ON v.rid = s.rid"
        )
    located = con.execute(
        """SELECT CODE_IRIS, count(*) AS batiments, sum(locaux) AS locaux,
                  coalesce(sum(locaux) FILTER (NOT thd), 0) AS locaux_sans_thd, sum(locaux) AS locaux_4g,
                  CASE WHEN bool_and(couvert IS NULL) THEN NULL
                       ELSE coalesce(sum(locaux) FILTER (NOT couvert), 0) END AS locaux_sans_4g
           FROM _state WHERE localise GROUP BY 1"""
    ).df()
    attached = _fallback(con, located, coverage_view is not None)
    table = _assemble(con, frame, located, attached, coverage_view is not None)
    report.update(_report(con, frame, coverage_crs))
    table.attrs["points_batiments"] = premises_points(con, buildings_view, iris)
    _drop(con, ["_loc", "_inside", "_outside", "_outline", "_cov", "_state", "_commune_iris", "_iris_deps"])
    _drop(con, [f"_pass_{k}" for k in range(len(report["crs_iris"]))])
    return table, report


def premises_points(
    con: duckdb.DuckDBPyConnection, buildings: str, iris: gpd.GeoDataFrame, cell_m: int = DEMAND_CELL_M
) -> pd.DataFrame:
    """The buildings located in an IRIS (table `_state`) as demand points of the offer of
    mediation (`transforms.accessibilite.building_points`): per IRIS and `cell_m` square of the
    IRIS's CRS, `locaux` summed at their premises-weighted mean position `x, y` (IRIS CRS).

    Coordinates are whole millimetres (positive in the projected CRSs of France): their products
    with the premises are integers under 2^53 (10^10 mm × 10^5 premises), summed exactly as
    doubles whatever the order, so a département partition and a territory give the same points."""
    building_crs = column_crs(con, buildings)
    parts = _parts(iris)
    cell_mm = int(cell_m) * 1000
    frames = []
    for crs, part in parts.items():
        point = (
            "b.geom"
            if crs == (building_crs or crs)
            else f"ST_Transform(ST_Point(b.x, b.y), '{SOURCE_CRS}', '{crs}', always_xy := true)"
        )
        where = "s.localise AND s.locaux > 0"
        if len(parts) > 1:
            con.register("_part_codes", pd.DataFrame({"CODE_IRIS": part["CODE_IRIS"].astype(str).to_numpy()}))
            where += " AND s.CODE_IRIS IN (SELECT CODE_IRIS FROM _part_codes)"
        frames.append(
            con.execute(
                f"""WITH p AS (
                        SELECT s.CODE_IRIS, s.locaux::BIGINT AS n, round(ST_X({point}) * 1000)::BIGINT AS xm,
                               round(ST_Y({point}) * 1000)::BIGINT AS ym
                        FROM _state s JOIN {buildings} b ON b.rowid = s.rid WHERE {where})
                    SELECT CODE_IRIS, sum((xm * n)::DOUBLE) / sum(n) / 1000 AS x,
                           sum((ym * n)::DOUBLE) / sum(n) / 1000 AS y, sum(n)::DOUBLE AS locaux
                    FROM p GROUP BY CODE_IRIS, xm // {cell_mm}, ym // {cell_mm} ORDER BY 1, 2, 3"""
            ).df()
        )
        if len(parts) > 1:
            con.unregister("_part_codes")
    return pd.concat(frames, ignore_index=True).astype({"x": "float64", "y": "float64"})


def _drop(con: duckdb.DuckDBPyConnection, names: list[str]) -> None:
    """Drop the work tables and views of a run (a name is a view or a table depending on the data)."""
    views = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
    for name in names:
        con.execute(f"DROP {'VIEW' if name in views else 'TABLE'} IF EXISTS {name}")


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
    with_coverage: bool,
) -> pd.DataFrame:
    """One row per IRIS of the frame, in its order; null counts where the département has no buildings."""
    deps = {r[0] for r in con.execute("SELECT DISTINCT departement FROM _state").fetchall()}
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


def _report(con: duckdb.DuckDBPyConnection, frame: pd.DataFrame, coverage_crs: str | None) -> dict:
    """Where every building of the files went: in an IRIS, to its commune, or left out (and why)."""
    (total, invalid, located, outside, attached, attached_invalid, attached_premises) = con.execute(
        """SELECT count(*), count(*) FILTER (NOT valide), count(*) FILTER (localise),
                  count(*) FILTER (valide AND par_commune), count(*) FILTER (par_commune),
                  count(*) FILTER (NOT valide AND par_commune), coalesce(sum(locaux) FILTER (par_commune), 0)
           FROM _state"""
    ).fetchone()
    left_out = con.execute(
        """SELECT imb_code_insee, departement IN (SELECT departement FROM _iris_deps) AS dans_dep,
                  count(*), sum(locaux)
           FROM _state WHERE NOT compte GROUP BY 1, 2 ORDER BY 3 DESC"""
    ).fetchall()
    no_commune = [r for r in left_out if r[1]]
    per_dep = con.execute(
        """SELECT departement, count(*), count(*) FILTER (localise), count(*) FILTER (par_commune)
           FROM _state WHERE departement IN (SELECT departement FROM _iris_deps) GROUP BY 1 ORDER BY 1"""
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

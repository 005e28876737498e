"""ARCEP « Ma connexion internet », building level: buildings and their best fixed offer.

Two files per département (or one national pair), `;`-separated gzip CSVs in UTF-8:

- `base_imb_<DEP>.csv.gz`: one row per building, `imb_x`/`imb_y` in EPSG:3857 (web Mercator
  metres), `imb_nbr_logloc` premises (dwellings and business premises), `imb_code_insee` its
  commune (Lyon, Paris and Marseille by arrondissement or as the whole city);
- `actuel_<DEP>.csv.gz`: one row per building × operator × technology with the download class
  `classe_debit_descendant` (INEL, HD05, HD3, BHD8, THD30, THD100, THD1G).

The national pair holds ~28 million buildings and ~440 million offers: DuckDB reads the gzip
files directly (never pandas), after each file's header has been checked against the published
columns. The result is one DuckDB table, one row per building, that `transforms.connectivite`
places in the IRIS.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Sequence
from pathlib import Path

import duckdb

from config.connectivity import ALL_CLASSES, ALL_TECHNOLOGIES
from sources.common import InputError
from transforms.duckdb_spatial import epsg_code

BASE_IMB_COLUMNS = (
    "imb_id",
    "imb_x",
    "imb_y",
    "imb_code",
    "imb_code_insee",
    "imb_nbr_logloc",
    "imb_source",
    "imb_type",
    "addr_code",
    "imb_num",
    "addr_numero",
    "addr_rep",
    "addr_nom_voie",
    "addr_nom_ld",
    "addr_code_insee",
    "addr_nom_commune",
    "addr_id_fantoir",
    "addr_source",
)
BASE_IMB_USED = ("imb_id", "imb_x", "imb_y", "imb_code_insee", "imb_nbr_logloc")
ELIGIBILITE_COLUMNS = (
    "imb_id",
    "addr_code",
    "imb_code",
    "code_operateur",
    "code_techno",
    "classe_debit_montant",
    "classe_debit_descendant",
    "limitation",
    "saturation",
)
ELIGIBILITE_USED = ("imb_id", "code_techno", "classe_debit_descendant")
SOURCE_CRS = "EPSG:3857"
# Extent of web Mercator: a coordinate beyond it is not a position on Earth.
MERCATOR_MAX_X = 20_037_508.35
MERCATOR_MAX_Y = 20_048_966.11

BASE_IMB_WHAT = "la base des immeubles de l'ARCEP (base_imb_<DEP>.csv.gz)"
ELIGIBILITE_WHAT = "le fichier d'éligibilité de l'ARCEP (actuel_<DEP>.csv.gz)"
DOWNLOAD_FIX = "téléchargez le fichier sur data.arcep.fr (fixe/maconnexioninternet/…/departement/)"


def read_header(path: Path) -> list[str]:
    """The column names on the first line of a (gzip) `;`-separated file."""
    path = Path(path)
    opener = gzip.open if _is_gzip(path) else open
    try:
        with opener(path, "rt", encoding="utf-8-sig", newline="") as fh:
            line = fh.readline()
    except FileNotFoundError:
        raise InputError(path, "fichier introuvable", fix="vérifiez le chemin dans la configuration") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(path, f"archive gzip illisible ({exc})", line=1, fix=DOWNLOAD_FIX) from exc
    except UnicodeDecodeError as exc:
        raise InputError(path, f"en-tête illisible en UTF-8 ({exc.reason})", line=1, fix=DOWNLOAD_FIX) from exc
    if not line.strip():
        raise InputError(path, "fichier vide ou sans ligne d'en-tête", line=1, fix=DOWNLOAD_FIX)
    return [c.strip().strip('"') for c in line.rstrip("\r\n").split(";")]


def check_header(path: Path, expected: Sequence[str], what: str) -> list[str]:
    """The file's header, refused with the first missing column when one is absent."""
    header = read_header(path)
    missing = [c for c in expected if c not in header]
    if missing:
        raise InputError(
            path,
            f"colonne(s) absente(s) {missing} de l'en-tête de {what} ; colonnes lues : {header[:20]}",
            line=1,
            column=missing[0],
            fix=f"donnez {what}, séparé par ';', non modifié ; {DOWNLOAD_FIX}",
        )
    return header


def _is_gzip(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(2) == b"\x1f\x8b"
    except FileNotFoundError:
        raise InputError(path, "fichier introuvable", fix="vérifiez le chemin dans la configuration") from None


def _sql_list(values: Sequence[str]) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


def _csv_scan(files: Sequence[Path], expected: Sequence[str], used: Sequence[str], what: str) -> str:
    """A `read_csv` over files sharing a header, or a UNION of one per header layout.

    Files are grouped by header so that DuckDB reads a group in parallel (one file per thread);
    every column is read as text, so that a malformed number is counted, not fatal.
    """
    groups: dict[tuple[tuple[str, ...], str], list[Path]] = {}
    for path in files:
        header = tuple(check_header(path, expected, what))
        groups.setdefault((header, "gzip" if _is_gzip(path) else "none"), []).append(Path(path))
    scans = []
    for (header, compression), paths in groups.items():
        names = [f"{c}_{i}" if c in header[:i] else c for i, c in enumerate(header)]  # blank/dup names
        columns = "{" + ", ".join(f"'{n}': 'VARCHAR'" for n in names) + "}"
        listed = "[" + _sql_list([str(p) for p in paths]) + "]"
        scans.append(
            f"SELECT {', '.join(used)} FROM read_csv({listed}, delim=';', header=true, columns={columns}, "
            f"compression='{compression}', quote='\"', escape='\"', auto_detect=false)"
        )
    return " UNION ALL ".join(scans)


def _run(con: duckdb.DuckDBPyConnection, sql: str, files: Sequence[Path], what: str) -> None:
    """Execute a statement reading `files`, turning a DuckDB read error into an InputError."""
    try:
        con.execute(sql)
    except duckdb.Error as exc:
        message = str(exc)
        path = next((p for p in files if str(p) in message), files[0] if len(files) == 1 else None)
        raise InputError(
            path or ", ".join(str(p) for p in files[:5]),
            f"lecture de {what} impossible : {message.splitlines()[0]}",
            fix=f"vérifiez que le fichier est complet (gzip entier, lignes de {what} séparées par ';') ; {DOWNLOAD_FIX}",
        ) from exc


def register_buildings(
    con: duckdb.DuckDBPyConnection,
    base_imb: Sequence[Path],
    eligibilite: Sequence[Path],
    *,
    technologies: Sequence[str] = ("FO", "CU", "COAX", "THDR", "4GF", "HDR"),
    thd_classes: Sequence[str] = ("THD30", "THD100", "THD1G"),
    target_crs: object = 2154,
    name: str = "batiments",
) -> dict:
    """Create table `name`, one row per building: `imb_id`, `imb_code_insee`, `departement`,
    `locaux`, `thd`, `eligibilite` (the building has offers in the eligibility files), `x`/`y`
    (EPSG:3857, as published), `valide` and `geom` (point in `target_crs`, NULL when invalid).

    `thd`: at least one offer over `technologies` with a download class in `thd_classes`. The
    returned report counts what could not be used (invalid coordinates, unreadable premises,
    duplicates, unknown technology or class codes) so that nothing is dropped silently.
    """
    base_imb, eligibilite = [Path(p) for p in base_imb], [Path(p) for p in eligibilite]
    if not base_imb:
        raise InputError("base_imb", "aucun fichier de bâtiments donné", fix=f"donnez {BASE_IMB_WHAT}")
    _check_codes(technologies, ALL_TECHNOLOGIES, "technologies")
    _check_codes(thd_classes, ALL_CLASSES, "thd_classes")
    crs = epsg_code(target_crs)
    if eligibilite:
        scan = _csv_scan(eligibilite, ELIGIBILITE_COLUMNS, ELIGIBILITE_USED, ELIGIBILITE_WHAT)
        thd, unknown = _offer_flags(technologies, thd_classes)
        # One pass over the offers (440 M rows nationally): one row per building before any join.
        sql = (
            f"CREATE OR REPLACE TEMP TABLE _elig AS SELECT imb_id, bool_or({thd}) AS thd, "
            f"bool_or({unknown}) AS inconnu, count(*) AS offres FROM ({scan}) GROUP BY imb_id"
        )
    else:
        sql = "CREATE OR REPLACE TEMP TABLE _elig (imb_id VARCHAR, thd BOOLEAN, inconnu BOOLEAN, offres BIGINT)"
    _run(con, sql, eligibilite or base_imb, ELIGIBILITE_WHAT)
    # The buildings are read, typed and joined to their offers in one statement: the raw text
    # columns of 28 M buildings are never materialised.
    raw = _csv_scan(base_imb, BASE_IMB_COLUMNS, BASE_IMB_USED, BASE_IMB_WHAT)
    _run(con, _buildings_sql(name, crs, raw), base_imb, BASE_IMB_WHAT)
    report = _report(con, name, base_imb, eligibilite, technologies, thd_classes, crs)
    if report["imb_id_en_double"]:
        # The same building given twice (a national file and a département file): counted once.
        con.execute(
            f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM {name} QUALIFY row_number() OVER (PARTITION BY imb_id ORDER BY valide DESC, locaux DESC) = 1"
        )
    if eligibilite and report["offres"] and not report["batiments_avec_offres"]:
        raise InputError(
            ", ".join(str(p) for p in eligibilite[:5]),
            "aucun imb_id des fichiers d'éligibilité ne figure dans la base des immeubles donnée",
            column="imb_id",
            fix="donnez les fichiers base_imb et actuel du même département et du même trimestre",
        )
    con.execute("DROP TABLE IF EXISTS _elig")
    return report


def _offer_flags(technologies: Sequence[str], thd_classes: Sequence[str]) -> tuple[str, str]:
    """SQL of `thd` and `inconnu` for one offer row.

    Published codes are upper case without spaces: a row whose two codes are published codes is
    decided by plain comparisons, and only the other rows pay for `upper(trim(…))`, which over
    440 M rows costs more than reading them. Both branches give the same answer on such a row.
    """
    techno, classe = "code_techno", "classe_debit_descendant"
    published = f"{techno} IN ({_sql_list(ALL_TECHNOLOGIES)}) AND {classe} IN ({_sql_list(ALL_CLASSES)})"
    thd_exact = f"{techno} IN ({_sql_list(technologies)}) AND {classe} IN ({_sql_list(thd_classes)})"
    techno_n, classe_n = f"upper(trim({techno}))", f"upper(trim({classe}))"
    thd_any = f"{techno_n} IN ({_sql_list(technologies)}) AND {classe_n} IN ({_sql_list(thd_classes)})"
    unknown_any = f"{techno_n} NOT IN ({_sql_list(ALL_TECHNOLOGIES)}) OR {classe_n} NOT IN ({_sql_list(ALL_CLASSES)})"
    return (
        f"CASE WHEN {published} THEN {thd_exact} ELSE {thd_any} END",
        f"CASE WHEN {published} THEN false ELSE {unknown_any} END",
    )


def _check_codes(values: Sequence[str], known: Sequence[str], key: str) -> None:
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"{key} : code(s) inconnu(s) {unknown} ; codes de l'ARCEP : {list(known)}")


def _number(column: str) -> str:
    """A decimal read as published (a point) and, failing that, with a decimal comma. The plain
    cast already ignores surrounding spaces; `replace(trim(…))` only runs on the rows it refuses."""
    return f"coalesce(TRY_CAST({column} AS DOUBLE), TRY_CAST(replace(trim({column}), ',', '.') AS DOUBLE))"


def _buildings_sql(name: str, crs: str, raw: str) -> str:
    """Typed buildings from the `raw` scan: codes completed (a lost leading zero), numbers parsed,
    point projected, offers joined."""
    code = "upper(trim(imb_code_insee))"
    return f"""
    CREATE OR REPLACE TABLE {name} AS
    WITH parsed AS (
        SELECT
            trim(imb_id) AS imb_id,
            CASE WHEN length({code}) = 4 AND regexp_full_match({code}, '\\d{{4}}') THEN '0' || {code} ELSE {code} END
                AS imb_code_insee,
            {_number("imb_x")} AS x,
            {_number("imb_y")} AS y,
            {_number("imb_nbr_logloc")} AS n,
            coalesce(trim(imb_nbr_logloc), '') = '' AS locaux_vide
        FROM ({raw})
    ), checked AS (
        SELECT *,
            coalesce(isfinite(x) AND isfinite(y) AND abs(x) <= {MERCATOR_MAX_X} AND abs(y) <= {MERCATOR_MAX_Y}
                     AND NOT (x = 0 AND y = 0), false) AS valide,
            coalesce(n >= 0 AND isfinite(n), false) AS locaux_lisible
        FROM parsed
    )
    SELECT
        c.imb_id,
        c.imb_code_insee,
        CASE WHEN starts_with(c.imb_code_insee, '97') THEN left(c.imb_code_insee, 3)
             ELSE left(c.imb_code_insee, 2) END AS departement,
        CASE WHEN c.locaux_lisible THEN round(c.n) ELSE 0 END::DOUBLE AS locaux,
        c.locaux_lisible,
        c.locaux_vide,
        coalesce(e.thd, false) AS thd,
        e.imb_id IS NOT NULL AS eligibilite,
        coalesce(e.inconnu, false) AS code_inconnu,
        c.x, c.y, c.valide,
        (CASE WHEN c.valide THEN ST_Transform(ST_Point(c.x, c.y), '{SOURCE_CRS}', '{crs}', always_xy := true)
         END)::GEOMETRY('{crs}') AS geom
    FROM checked c LEFT JOIN _elig e ON c.imb_id = e.imb_id
    """


def _report(
    con: duckdb.DuckDBPyConnection,
    name: str,
    base_imb: list[Path],
    eligibilite: list[Path],
    technologies: Sequence[str],
    thd_classes: Sequence[str],
    crs: str,
) -> dict:
    """What was read and what could not be used, per file set and per département."""
    (rows, distinct, invalid, unreadable, blank, with_offers, thd, unknown, premises) = con.execute(
        f"""SELECT count(*), count(DISTINCT imb_id), count(*) FILTER (NOT valide),
                   count(*) FILTER (NOT locaux_lisible AND NOT locaux_vide), count(*) FILTER (locaux_vide),
                   count(*) FILTER (eligibilite), count(*) FILTER (thd), count(*) FILTER (code_inconnu),
                   coalesce(sum(locaux), 0)
            FROM {name}"""
    ).fetchone()
    offers, offered = con.execute("SELECT coalesce(sum(offres), 0), count(*) FROM _elig").fetchone()
    if rows == distinct:
        # `_elig` has one row per imb_id: each building with offers matched its own row.
        orphans = offered - with_offers
    else:
        orphans = con.execute(
            f"SELECT count(*) FROM _elig e ANTI JOIN (SELECT DISTINCT imb_id FROM {name}) b ON e.imb_id = b.imb_id"
        ).fetchone()[0]
    per_dep = con.execute(
        f"SELECT departement, count(*), sum(locaux), count(*) FILTER (thd) FROM {name} GROUP BY 1 ORDER BY 1"
    ).fetchall()
    return {
        "fichiers_base_imb": [str(p) for p in base_imb],
        "fichiers_eligibilite": [str(p) for p in eligibilite],
        "crs": crs,
        "technologies": list(technologies),
        "classes_thd": list(thd_classes),
        "batiments": int(rows),
        "locaux": float(premises),
        "coordonnees_invalides": int(invalid),
        "locaux_non_numeriques": int(unreadable),
        "locaux_vides": int(blank),
        "imb_id_en_double": int(rows - distinct),
        "offres": int(offers),
        "batiments_avec_offres": int(with_offers),
        "batiments_sans_offre": int(rows - with_offers),
        "batiments_thd": int(thd),
        "batiments_codes_inconnus": int(unknown),
        "offres_sans_batiment": int(orphans),
        "departements": {d: {"batiments": int(n), "locaux": float(lo), "thd": int(t)} for d, n, lo, t in per_dep},
    }

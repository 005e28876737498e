"""INSEE Filosofi: disposable income and poverty, at IRIS and at commune level.

IRIS file (`BASE_TD_FILO_DISP_IRIS_yyyy`): xlsx with title rows (codes on row 6 of sheet
`IRIS_DISP`) or CSV; decimal point or comma depending on the year; IRIS under the publication
threshold are absent or marked `s`/`nd`/`ns`/`so`; the 2019 CSV lost the leading zero of Ain's codes.
Variables are returned without their `DISP_` prefix and year suffix (`DISP_TP6017` → `TP60`);
the income year travels in `attrs["annee"]`.

Commune files come in two layouts. Up to 2020 ("large"), one CSV per geographic level
(`cc_filosofi_2019_COM.csv`, `…_DEP`, `…_EPCI`, `…_BV2022` whose 5-character codes look like
communes…) with `MEDyy`, `TP60yy` columns: only the commune table is accepted, recognised by its
name. From 2021 ("long", `DS_FILOSOFI_CC_data.csv`), one row per geography × measure: the
commune rows are kept and pivoted to the same columns.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from sources.common import (
    InputError,
    TextTable,
    check_field_counts,
    completed_codes,
    file_lines,
    normalise_codes,
    parse_numbers,
    read_sheet_table,
    read_text_table,
)

IRIS_SHEET = "IRIS_DISP"
_IRIS_VAR = re.compile(r"^DISP_([A-Z0-9]+?)(\d{2})$")
_COMMUNE_VAR = re.compile(r"^(MED|TP60|PPMINI|NBMENFISC|NBPERSMENFISC)(\d{2})$")

WIDE = "large"
LONG = "long"

# Level named after the year in INSEE's names (`cc_filosofi_2018_COM-geo2021.CSV`), and level
# tokens recognised in any other name (`…_BV2022.csv`, `…_DEP.csv`; not the sample's `_dep69`).
_INSEE_NAME = re.compile(r"^cc_filosofi_\d{4}_([A-Za-z]+)", re.IGNORECASE)
_OTHER_LEVEL = re.compile(r"_(DEP|EPCI|REG|METRO|FRANCE|BV\d{4}|UU\d{4}|AAV\d{4}|ZE\d{4})(?=[-_.]|$)", re.IGNORECASE)
_DICTIONARY_COLUMNS = {"COD_VAR", "LIB_VAR"}

LONG_COLUMNS = ("GEO", "GEO_OBJECT", "FILOSOFI_MEASURE", "CONF_STATUS", "TIME_PERIOD", "OBS_VALUE")
# Measures of the long layout and the wide variable each one continues.
LONG_MEASURES = {
    "MED_SL": "MED",  # median standard of living (€) = MEDyy
    "PR_MD60": "TP60",  # poverty rate at 60 % of the median (%) = TP60yy
    "NUM_HH": "NBMENFISC",  # fiscal households = NBMENFISCyy
    "NUM_PER": "NBPERSMENFISC",  # persons in fiscal households = NBPERSMENFISCyy
    "S_SOC_BEN_DI_MIN_SOC": "PPMINI",  # share of minimum social benefits in disposable income = PPMINIyy
}
_CHUNK_ROWS = 200_000


def _read(path: Path, key_column: str | tuple[str, ...], sheet: str | None, variables: str) -> TextTable:
    suffix = path.suffix.lower()
    if suffix in {".xlsx", ".xlsm", ".xls"}:
        return read_sheet_table(path, key_column=key_column, sheet=sheet, variables=variables)
    if suffix in {".csv", ".txt"}:
        return read_text_table(path, key_column=key_column)
    raise InputError(
        path,
        f"format {suffix!r} non pris en charge pour un fichier Filosofi",
        fix="donnez le fichier xlsx ou CSV publié par l'INSEE (extrait de son archive zip)",
    )


def _year(path: Path, found: set[str], example: str) -> int:
    if not found:
        raise InputError(
            path,
            f"aucune variable Filosofi suffixée par l'année (par exemple {example})",
            fix="utilisez un fichier Filosofi de l'INSEE",
        )
    if len(found) > 1:
        raise InputError(
            path,
            f"variables de plusieurs années mélangées : suffixes {sorted(found)}",
            fix="utilisez un fichier Filosofi par année de revenus",
        )
    return 2000 + int(found.pop())


def read_filosofi_iris(path: Path) -> pd.DataFrame:
    """Filosofi IRIS file → `CODE_IRIS` + numeric variables (`TP60`, `MED`, `PPMINI`, …)."""
    path = Path(path)
    table = _read(path, "IRIS", IRIS_SHEET, _IRIS_VAR.pattern)
    frame = table.frame
    matches = {c: m for c in frame.columns if (m := _IRIS_VAR.match(c))}
    year = _year(path, {m.group(2) for m in matches.values()}, "DISP_MED17")
    lines = file_lines(table)
    out = pd.DataFrame(
        {"CODE_IRIS": normalise_codes(frame["IRIS"], path=path, column="IRIS", kind="iris", lines=lines)}
    )
    out.attrs["codes_completes"] = completed_codes(frame["IRIS"], out["CODE_IRIS"])
    for col, m in matches.items():
        # Shares in Filosofi can be negative (DISP_PIMPOT, taxes); levels cannot.
        out[m.group(1)] = parse_numbers(frame[col], path=path, column=col, lines=lines, allow_negative=True)
    for needed in ("MED", "TP60"):
        if needed not in out.columns:
            raise InputError(
                path,
                f"aucune colonne DISP_{needed}aa",
                column=f"DISP_{needed}{year % 100:02d}",
                fix="utilisez le fichier Filosofi IRIS des revenus disponibles (DISP)",
            )
    out.attrs.update(annee=year, path=str(path))
    return out


def read_filosofi_communes(path: Path) -> pd.DataFrame:
    """Filosofi commune table, wide or long layout → `INSEE_COM`, `LIBGEO` (when present) and the
    floats `MED`, `TP60`, … present. `attrs`: `annee`, `path`, `layout` (`large` or `long`)."""
    path = Path(path)
    _refuse_dictionary_name(path)
    header = _sniff_header(path) if path.suffix.lower() in {".csv", ".txt"} else None
    if header is not None and "GEO_OBJECT" in header[1]:
        return _read_long(path, *header)
    if header is not None and _DICTIONARY_COLUMNS <= set(header[1]):
        raise _dictionary_error(path, "variables décrites (COD_VAR, LIB_VAR) et non des données")
    _refuse_other_level(path)
    return _read_wide(path)


def _refuse_dictionary_name(path: Path) -> None:
    name = path.name.lower()
    if "metadata" in name:
        raise InputError(
            path,
            "fichier de métadonnées (libellés des mesures), pas de données",
            fix=f"donnez le fichier de données de la même archive : {_data_name(path.name)}",
        )
    if name.startswith("meta_"):
        raise _dictionary_error(path, "dictionnaire des variables (meta_…), pas de données")


def _data_name(name: str) -> str:
    return re.sub("metadata", "data", name, flags=re.IGNORECASE)


def _dictionary_error(path: Path, what: str) -> InputError:
    return InputError(
        path,
        f"fichier {what}",
        fix="utilisez la table communale de l'archive : cc_filosofi_<aaaa>_COM….csv "
        "(ou DS_FILOSOFI_CC_data.csv à partir des revenus 2021)",
    )


def _refuse_other_level(path: Path) -> None:
    """Each wide archive holds one table per level; only its name tells the bassins de vie
    (5-character codes) from the communes."""
    insee = _INSEE_NAME.match(path.name)
    level = insee.group(1).upper() if insee else None
    if level == "COM":
        return
    other = _OTHER_LEVEL.search(path.stem)
    if level is None and other is None:
        return
    level = level or other.group(1).upper()
    raise InputError(
        path,
        f"table Filosofi du niveau géographique « {level} », pas des communes",
        fix="utilisez la table communale de la même archive : cc_filosofi_<aaaa>_COM….csv "
        "(par exemple cc_filosofi_2019_COM.csv)",
    )


def _read_wide(path: Path) -> pd.DataFrame:
    table = _read(path, ("CODGEO", "COM"), None, _COMMUNE_VAR.pattern)
    frame, key = table.frame, table.key
    matches = {c: m for c in frame.columns if (m := _COMMUNE_VAR.match(c))}
    year = _year(path, {m.group(2) for m in matches.values()}, "MED17")
    lines = file_lines(table)
    out = pd.DataFrame({"INSEE_COM": normalise_codes(frame[key], path=path, column=key, kind="commune", lines=lines)})
    if "LIBGEO" in frame.columns:
        out["LIBGEO"] = frame["LIBGEO"]
    for col, m in matches.items():
        out[m.group(1)] = parse_numbers(frame[col], path=path, column=col, lines=lines)
    out.attrs.update(annee=year, path=str(path), layout=WIDE)
    return out


def _sniff_header(path: Path, max_lines: int = 10) -> tuple[int, list[str], str] | None:
    """(0-based header line, its columns, encoding) of a long-layout file, read from the file's
    first bytes only (the national file is 200 MB); None when no line names GEO_OBJECT."""
    try:
        with path.open("rb") as stream:
            head = stream.read(1 << 16)
    except FileNotFoundError:
        raise InputError(
            path, "fichier introuvable", fix="vérifiez le chemin dans la configuration (`fragilite config`)"
        ) from None
    encoding = _encoding(head)
    text = head.decode(encoding, errors="ignore")
    for i, line in enumerate(text.splitlines()[:max_lines]):
        cells = [c.strip().strip('"').lstrip("\ufeff") for c in line.split(";")]
        if "GEO_OBJECT" in cells or _DICTIONARY_COLUMNS <= set(cells):
            return i, cells, encoding
    return None


def _encoding(head: bytes) -> str:
    """UTF-8 unless the first bytes say otherwise (a character cut at the end of them does not)."""
    try:
        head.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:
            return "cp1252"
    return "utf-8-sig"


def _read_long(path: Path, header_idx: int, header: list[str], encoding: str) -> pd.DataFrame:
    """Long layout (2021 on): keep the commune rows of the measures used, pivot them to one row
    per commune with the wide layout's names."""
    missing = [c for c in LONG_COLUMNS if c not in header]
    if missing:
        raise InputError(
            path,
            f"colonne(s) {missing} absente(s) de l'en-tête (format long de Filosofi)",
            line=header_idx + 1,
            column=missing[0],
            fix="utilisez DS_FILOSOFI_CC_data.csv tel que publié par l'INSEE",
        )
    rows = _long_commune_rows(path, header_idx, header, encoding)
    lines = (rows.index + header_idx + 2).tolist()
    codes = rows["GEO"].str.replace(r"^.*-", "", regex=True)  # `COM-75101` → `75101`
    rows["INSEE_COM"] = normalise_codes(codes, path=path, column="GEO", kind="commune", lines=lines, unique=False)
    year = _long_year(path, rows["TIME_PERIOD"], lines)
    _check_unique_measures(path, rows, lines)
    rows["value"] = _long_values(path, rows, lines)
    wide = rows.pivot(index="INSEE_COM", columns="FILOSOFI_MEASURE", values="value")
    out = pd.DataFrame({"INSEE_COM": wide.index.astype(str)})
    for measure, name in LONG_MEASURES.items():
        if measure in wide.columns:
            out[name] = wide[measure].to_numpy(dtype="float64")
    out.attrs.update(annee=year, path=str(path), layout=LONG)
    return out


def _long_commune_rows(path: Path, header_idx: int, header: list[str], encoding: str) -> pd.DataFrame:
    """Commune rows of the measures used, read by chunks of needed columns (index = data row)."""
    wanted = set(LONG_COLUMNS) | ({"UNIT_MULT"} & set(header))
    # pandas stops checking field counts when columns are picked: every row is checked first.
    check_field_counts(path, header_line=header_idx + 1, encoding=encoding)
    try:
        reader = pd.read_csv(
            path,
            sep=";",
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            skiprows=header_idx,
            encoding=encoding,
            chunksize=_CHUNK_ROWS,
            usecols=lambda c: str(c).strip().lstrip("\ufeff") in wanted,
        )
        kept = []
        for chunk in reader:
            chunk.columns = [str(c).strip().lstrip("\ufeff") for c in chunk.columns]
            chunk = chunk[
                (chunk["GEO_OBJECT"].str.strip() == "COM") & chunk["FILOSOFI_MEASURE"].str.strip().isin(LONG_MEASURES)
            ]
            kept.append(chunk)
    except pd.errors.ParserError as exc:
        match = re.search(r"line (\d+)", str(exc))
        raise InputError(
            path,
            f"ligne mal formée : {exc}",
            line=header_idx + int(match.group(1)) if match else None,
            fix="réparez ou retéléchargez le fichier",
        ) from exc
    except UnicodeDecodeError as exc:
        raise InputError(
            path,
            f"octets illisibles en {encoding} ({exc.reason})",
            fix="enregistrez le fichier en UTF-8, tel que l'INSEE le publie",
        ) from exc
    rows = pd.concat(kept) if kept else pd.DataFrame()
    if rows.empty:
        raise InputError(
            path,
            f"aucune ligne de commune (GEO_OBJECT = COM) pour les mesures {sorted(LONG_MEASURES)}",
            column="GEO_OBJECT",
            fix="utilisez le fichier national DS_FILOSOFI_CC_data.csv, qui contient les communes",
        )
    for col in rows.columns:
        rows[col] = rows[col].str.strip()
    return rows


def _check_unique_measures(path: Path, rows: pd.DataFrame, lines: list[int]) -> None:
    dup = rows.duplicated(subset=["INSEE_COM", "FILOSOFI_MEASURE"], keep="first")
    if dup.any():
        pos = int(dup.to_numpy().nonzero()[0][0])
        raise InputError(
            path,
            f"mesure {rows['FILOSOFI_MEASURE'].iloc[pos]} donnée deux fois pour la commune "
            f"{rows['INSEE_COM'].iloc[pos]}",
            line=lines[pos],
            column="FILOSOFI_MEASURE",
            fix="chaque commune a une valeur par mesure et par année : retéléchargez le fichier de l'INSEE",
        )


def _long_year(path: Path, periods: pd.Series, lines: list[int]) -> int:
    bad = ~periods.str.fullmatch(r"\d{4}")
    if bad.any():
        pos = int(bad.to_numpy().nonzero()[0][0])
        raise InputError(
            path,
            f"année de revenus illisible {periods.iloc[pos]!r}",
            line=lines[pos],
            column="TIME_PERIOD",
            fix="TIME_PERIOD donne l'année de revenus sur quatre chiffres (2021)",
        )
    other = periods != periods.iloc[0]
    if other.any():
        pos = int(other.to_numpy().nonzero()[0][0])
        raise InputError(
            path,
            f"plusieurs années de revenus mélangées : {sorted(set(periods))}",
            line=lines[pos],
            column="TIME_PERIOD",
            fix="gardez une seule année de revenus (TIME_PERIOD) par fichier",
        )
    return int(periods.iloc[0])


def _long_values(path: Path, rows: pd.DataFrame, lines: list[int]) -> pd.Series:
    """OBS_VALUE as floats; confidential (`CONF_STATUS = C`) or empty → NaN; `UNIT_MULT` applied."""
    confidential = rows["CONF_STATUS"].str.upper() == "C"
    values = parse_numbers(rows["OBS_VALUE"].where(~confidential, ""), path=path, column="OBS_VALUE", lines=lines)
    if "UNIT_MULT" in rows.columns:
        mult = pd.to_numeric(rows["UNIT_MULT"].replace("", "0"), errors="coerce")
        if mult.isna().any():
            pos = int(mult.isna().to_numpy().nonzero()[0][0])
            raise InputError(
                path,
                f"multiplicateur d'unité illisible {rows['UNIT_MULT'].iloc[pos]!r}",
                line=lines[pos],
                column="UNIT_MULT",
                fix="UNIT_MULT est une puissance de dix entière (0 : unités)",
            )
        values = values * 10.0**mult
    return values

"""Lieux de médiation numérique: the national consolidated file (ANCT / La MedNum) and local
lists in the same schema, validated place by place.

Layout, from the schema `LaMednum/standard-mediation-num` v1.0.2 (schema.json and
exemple-valide.csv of https://github.com/LaMednum/standard-mediation-num, commit 064c02c
« feat: use pipe as separator ») and from the library that writes the national file
(anct-cartographie-nationale/lieux-de-mediation-numerique, `to-schema-lieux-de-mediation-numerique-
fields.ts`: every list is `join('|')`, `date_maj` is `YYYY-MM-DD`): a comma-separated CSV,
fields in double quotes, UTF-8, one header line of 32 columns; WGS84 `latitude`/`longitude`,
empty when the place was not geocoded; multi-valued fields (`services`, `typologie`,
`publics_specifiquement_adresses`, `dispositif_programmes_nationaux`…) separated by `|`
(`;` in the 0.x versions of the schema, still accepted on the fields the measures filter on).
Readers of the data.gouv.fr file (resource 398edc71-0d51-4cb6-9cbe-2540a4db573c) note that
`code_insee` is sometimes empty and that `code_postal` loses its zero when read as a number:
every cell is read as text here.

A place is refused (with its line and the reason) only when it cannot be used: no `id`, no
`nom`, a broken row, or neither usable coordinates nor a commune code. Coordinates outside the
part of France the place's codes name (or outside France) are not used: the place is then put
at its commune (`localisation = commune`) by the accessibility step, and listed. Duplicates:
the same `id` twice (the most recent `date_maj` is kept; a local row wins over the national
one), then the same `pivot` at the same address (one structure listed by two sources); a
`pivot` shared by places at different addresses is legitimate (the schema: « plusieurs
bibliothèques rattachées à une même commune ») and kept.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from sources.common import COMMUNE_PATTERN, InputError

# Column order of the schema v1.0.2 (exemple-valide.csv).
SCHEMA_COLUMNS = (
    "id",
    "pivot",
    "nom",
    "commune",
    "code_postal",
    "code_insee",
    "adresse",
    "complement_adresse",
    "latitude",
    "longitude",
    "typologie",
    "telephone",
    "courriels",
    "site_web",
    "horaires",
    "presentation_resume",
    "presentation_detail",
    "source",
    "itinerance",
    "structure_parente",
    "date_maj",
    "services",
    "publics_specifiquement_adresses",
    "prise_en_charge_specifique",
    "frais_a_charge",
    "dispositif_programmes_nationaux",
    "formations_labels",
    "autres_formations_labels",
    "modalites_acces",
    "modalites_accompagnement",
    "fiche_acces_libre",
    "prise_rdv",
)
# `required: true` in the schema, plus the coordinates the measures read.
REQUIRED_COLUMNS = ("id", "pivot", "nom", "commune", "code_postal", "adresse", "date_maj", "latitude", "longitude")
# Multi-valued fields the measures filter on (values never contain `|` or `;`).
LIST_COLUMNS = ("services", "publics_specifiquement_adresses", "dispositif_programmes_nationaux", "typologie")
SEPARATORS = re.compile(r"\s*[|;]\s*")

# Bounding boxes (WGS84: lon min, lat min, lon max, lat max) of each part of France, with a
# margin of a few kilometres; Corsica is in metropolitan France.
PARTS: dict[str, tuple[float, float, float, float]] = {
    "metropole": (-5.3, 41.3, 9.7, 51.2),
    "971": (-61.9, 15.8, -60.9, 16.6),
    "972": (-61.3, 14.35, -60.75, 14.9),
    "973": (-54.7, 2.0, -51.5, 5.9),
    "974": (55.15, -21.45, 55.9, -20.8),
    "976": (44.9, -13.1, 45.35, -12.55),
}
# Placeholder SIRETs of places whose structure is unknown: never a reason to merge two places.
PLACEHOLDER_PIVOT = re.compile(r"^0*$")
MAX_LISTED = 500


def split_values(value: object) -> list[str]:
    """The values of a multi-valued cell (`A|B`, or `A;B` in the 0.x schema), blanks dropped."""
    if not isinstance(value, str) or not value.strip():
        return []
    return [v for v in SEPARATORS.split(value.strip()) if v]


def has_any(values: pd.Series, wanted: list[str]) -> pd.Series:
    """Rows whose multi-valued cell holds at least one of `wanted` (case and accents as written)."""
    wanted_set = {w.strip() for w in wanted}
    return values.map(lambda cell: bool(wanted_set.intersection(split_values(cell)))).astype(bool)


def part_of(code_insee: str, code_postal: str) -> str | None:
    """The part of France a place's codes name: an overseas département (971…976) or metropolitan
    France; None when neither code says."""
    for code in (code_insee, code_postal):
        if isinstance(code, str) and re.fullmatch(r"\d{5}|2[AB]\d{3}", code):
            return code[:3] if code.startswith("97") else "metropole"
    return None


def _inside(part: str, lon: float, lat: float) -> bool:
    x0, y0, x1, y1 = PARTS[part]
    return x0 <= lon <= x1 and y0 <= lat <= y1


def _number(text: str) -> float | None:
    text = text.strip().replace(",", ".")
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if np.isfinite(value) else None


def check_coordinates(lat_text: str, lon_text: str, part: str | None) -> tuple[float | None, float | None, str]:
    """(lat, lon, note): usable WGS84 coordinates inside the place's part of France (any part when
    its codes say none), with latitude and longitude swapped back when only that fits; or
    (None, None, why not)."""
    lat, lon = _number(lat_text), _number(lon_text)
    if lat is None and lon is None and not (lat_text.strip() or lon_text.strip()):
        return None, None, "coordonnées absentes"
    if lat is None or lon is None:
        return None, None, f"coordonnées illisibles ({lat_text!r}, {lon_text!r})"
    parts = [part] if part else list(PARTS)
    if any(_inside(p, lon, lat) for p in parts):
        return lat, lon, ""
    if any(_inside(p, lat, lon) for p in parts):
        return lon, lat, "latitude et longitude inversées (corrigées)"
    where = "en France" if part is None else ("en France métropolitaine" if part == "metropole" else f"dans le {part}")
    return None, None, f"coordonnées ({lat}, {lon}) hors des limites {where}"


def _open_rows(path: Path) -> tuple[str, str, list[str], Iterator[tuple[int, list[str]]], object]:
    """(encoding, separator, header, rows with their first file line, open handle)."""
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            with open(path, encoding=encoding, newline="") as fh:
                for _ in iter(lambda: fh.read(1 << 20), ""):
                    pass
            break
        except UnicodeDecodeError:
            continue
    else:
        raise InputError(path, "illisible en UTF-8 ou cp1252", fix="enregistrez le fichier en UTF-8")
    fh = open(path, encoding=encoding, newline="")  # closed by the caller
    first = fh.readline()
    fh.seek(0)
    # The national file is comma-separated; a list saved by a French spreadsheet uses `;`.
    sep = ";" if first.count(";") > first.count(",") else ","
    reader = csv.reader(fh, delimiter=sep)
    try:
        header = [h.strip().lstrip("\ufeff").strip() for h in next(reader)]
    except StopIteration:
        fh.close()
        raise InputError(path, "fichier vide", fix="téléchargez le fichier à nouveau") from None

    def rows() -> Iterator[tuple[int, list[str]]]:
        start = reader.line_num + 1
        for row in reader:
            yield start, row
            start = reader.line_num + 1

    return encoding, sep, header, rows(), fh


def read_lieux_mediation(path: Path, origine: str = "national") -> pd.DataFrame:
    """The places of one file in the national schema, one row per usable place.

    Columns: the schema's (text; absent optional columns empty), `latitude`/`longitude` as
    floats (NaN when unusable), `localisation` (`coordonnees`, or `commune`: to be placed at
    the commune of `code_insee`), `motif_localisation`, `partie`, `origine`, `ligne`. What was
    refused or repaired is in `attrs` (`lignes_refusees`, `sans_coordonnees`,
    `coordonnees_inversees`, `ecarts_schema`), each entry with its file line.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(
            path, "fichier introuvable", fix="vérifiez le chemin dans la configuration (`fragilite config`)"
        )
    encoding, sep, header, rows, fh = _open_rows(path)
    try:
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise InputError(
                path,
                f"colonne(s) absente(s) {missing} : ce n'est pas un fichier au schéma des lieux de médiation "
                f"numérique (en-tête lu avec le séparateur {sep!r} : {header[:8]}…)",
                line=1,
                column=missing[0],
                fix="donnez le fichier national consolidé (data.gouv.fr, « Lieux de médiation numérique ») ou une "
                "liste au schéma LaMednum/standard-mediation-num, en-tête compris",
            )
        records, refused, flagged, swapped, deviations = [], [], [], [], []
        for line, cells in rows:
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(header):
                refused.append(_refusal(path, line, "", f"{len(cells)} champs au lieu de {len(header)}"))
                continue
            row = {name: cells[i].strip() for i, name in enumerate(header)}
            record, problem = _place(row, line, origine, deviations)
            if problem:
                refused.append(_refusal(path, line, row.get("id", ""), problem))
                continue
            if record["localisation"] == "commune":
                flagged.append({"ligne": line, "id": record["id"], "motif": record["motif_localisation"]})
            elif record["motif_localisation"]:
                swapped.append({"ligne": line, "id": record["id"]})
            records.append(record)
    finally:
        fh.close()
    frame = pd.DataFrame.from_records(records, columns=[*SCHEMA_COLUMNS, *EXTRA_COLUMNS])
    frame["latitude"] = frame["latitude"].astype("float64")
    frame["longitude"] = frame["longitude"].astype("float64")
    frame["ligne"] = frame["ligne"].astype("int64")
    frame.attrs.update(
        {
            "fichier": str(path),
            "encodage": encoding,
            "separateur": sep,
            "colonnes_absentes": [c for c in SCHEMA_COLUMNS if c not in header],
            "lignes_refusees": refused[:MAX_LISTED],
            "n_lignes_refusees": len(refused),
            "sans_coordonnees": flagged[:MAX_LISTED],
            "n_sans_coordonnees": len(flagged),
            "coordonnees_inversees": swapped[:MAX_LISTED],
            "ecarts_schema": deviations[:MAX_LISTED],
            "n_ecarts_schema": len(deviations),
        }
    )
    return frame


EXTRA_COLUMNS = ("localisation", "motif_localisation", "partie", "origine", "ligne")


def _refusal(path: Path, line: int, place_id: str, reason: str) -> dict:
    return {"fichier": path.name, "ligne": line, "id": place_id, "raison": reason}


def _place(row: dict[str, str], line: int, origine: str, deviations: list[dict]) -> tuple[dict, str]:
    """One place from one row, or the reason it cannot be used."""
    for name in ("id", "nom"):
        if not row.get(name):
            return {}, f"champ obligatoire `{name}` vide"
    code_insee = row.get("code_insee", "").upper()
    code_postal = row.get("code_postal", "")
    if len(code_postal) == 4 and code_postal.isdigit():  # a spreadsheet dropped the zero
        code_postal = "0" + code_postal
    if code_postal and not re.fullmatch(r"\d{5}", code_postal):
        deviations.append({"ligne": line, "id": row["id"], "colonne": "code_postal", "valeur": code_postal})
    if len(code_insee) == 4 and code_insee.isdigit():
        code_insee = "0" + code_insee
    if code_insee and not COMMUNE_PATTERN.fullmatch(code_insee):
        deviations.append({"ligne": line, "id": row["id"], "colonne": "code_insee", "valeur": code_insee})
        code_insee = ""
    if row.get("date_maj") and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", row["date_maj"]):
        deviations.append({"ligne": line, "id": row["id"], "colonne": "date_maj", "valeur": row["date_maj"]})
    part = part_of(code_insee, code_postal)
    lat, lon, note = check_coordinates(row.get("latitude", ""), row.get("longitude", ""), part)
    if lat is None and not code_insee:
        return {}, f"{note} et pas de code_insee valide : lieu impossible à situer"
    record = {name: row.get(name, "") for name in SCHEMA_COLUMNS}
    for name in LIST_COLUMNS:
        record[name] = "|".join(split_values(record[name]))
    record.update(
        {
            "code_insee": code_insee,
            "code_postal": code_postal,
            "latitude": lat if lat is not None else np.nan,
            "longitude": lon if lon is not None else np.nan,
            "localisation": "coordonnees" if lat is not None else "commune",
            "motif_localisation": note,
            "partie": part or _part_of_point(lat, lon),
            "origine": origine,
            "ligne": line,
        }
    )
    return record, ""


def _part_of_point(lat: float | None, lon: float | None) -> str:
    return next((p for p in PARTS if lat is not None and _inside(p, lon, lat)), "")


def _same_address(frame: pd.DataFrame) -> pd.Series:
    """A key of the place's address: normalised street and postcode."""
    street = frame["adresse"].str.lower().str.replace(r"[^0-9a-zà-ÿ]+", " ", regex=True).str.strip()
    return street + "|" + frame["code_postal"]


def deduplicate(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[dict]]:
    """Places without duplicates, and the rows dropped (`id`, `doublon_de`, `regle`, `ligne`).

    Same `id`: a local row wins over a national one, then the most recent `date_maj`, then the
    first line. Same non-placeholder `pivot` at the same address: one structure listed twice by
    two sources; the most recent is kept.
    """
    if frame.empty:
        return frame, []
    order = frame.assign(
        _local=(frame["origine"] != "local").astype(int),
        _date=frame["date_maj"].where(frame["date_maj"] != "", "0000-00-00"),
    ).sort_values(["_local", "_date", "ligne"], ascending=[True, False, True], kind="stable")
    dropped: list[dict] = []
    by_id = order["id"].duplicated(keep="first")
    for _, row in order[by_id].iterrows():
        dropped.append(
            {
                "id": row["id"],
                "doublon_de": row["id"],
                "regle": "id",
                "ligne": int(row["ligne"]),
                "origine": row["origine"],
            }
        )
    kept = order[~by_id]
    key = kept["pivot"].where(~kept["pivot"].str.fullmatch(PLACEHOLDER_PIVOT.pattern), "")
    key = (key + "#" + _same_address(kept)).where(key != "", None)
    by_pivot = key.notna() & key.duplicated(keep="first")
    winners = dict(zip(key[~by_pivot & key.notna()], kept.loc[~by_pivot & key.notna(), "id"], strict=True))
    for idx, row in kept[by_pivot].iterrows():
        dropped.append(
            {
                "id": row["id"],
                "doublon_de": winners[key[idx]],
                "regle": "pivot et adresse",
                "ligne": int(row["ligne"]),
                "origine": row["origine"],
            }
        )
    result = kept[~by_pivot].drop(columns=["_local", "_date"]).sort_values(["origine", "ligne"], kind="stable")
    result = result.reset_index(drop=True)
    result.attrs = dict(frame.attrs)
    return result, dropped


def read_places(national: Path | None, local: Path | None = None, mode: str = "completer") -> pd.DataFrame | None:
    """The places a run uses: the national file, a local list completing or replacing it, one
    row per place after deduplication; None when no file is given (the offer is absent).

    `attrs` merges the reports of both files and lists the dropped duplicates (`doublons`).
    """
    files = []
    if national is not None and not (local is not None and mode == "remplacer"):
        files.append((Path(national), "national"))
    if local is not None:
        files.append((Path(local), "local"))
    if not files:
        return None
    frames = [read_lieux_mediation(path, origine) for path, origine in files]
    combined = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    attrs: dict = {"fichiers": [str(p) for p, _ in files], "mode_local": mode if local is not None else None}
    for key in ("lignes_refusees", "sans_coordonnees", "coordonnees_inversees", "ecarts_schema"):
        attrs[key] = [{**e, "origine": f.attrs.get("fichier")} for f in frames for e in f.attrs[key]][:MAX_LISTED]
    for key in ("n_lignes_refusees", "n_sans_coordonnees", "n_ecarts_schema"):
        attrs[key] = sum(int(f.attrs[key]) for f in frames)
    attrs["colonnes_absentes"] = {f.attrs["fichier"]: f.attrs["colonnes_absentes"] for f in frames}
    combined.attrs = attrs
    places, dropped = deduplicate(combined)
    # Placed at their commune: the places kept, not the duplicates dropped.
    at_commune = places[places["localisation"] == "commune"]
    flagged = [
        {"ligne": int(r.ligne), "id": r.id, "motif": r.motif_localisation, "origine": r.origine}
        for r in at_commune.itertuples()
    ]
    places.attrs.update(
        {
            "doublons": dropped[:MAX_LISTED],
            "n_doublons": len(dropped),
            "lignes_lues": len(combined),
            "sans_coordonnees": flagged[:MAX_LISTED],
            "n_sans_coordonnees": len(flagged),
        }
    )
    return places

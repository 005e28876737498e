"""IGN CONTOURS-IRIS: the IRIS outlines (GeoPackage or shapefile), in a projected CRS.

IGN publishes each part of France in its own projection: metropolitan France in Lambert-93,
each overseas département in its UTM zone. A delivery may hold several parts (one shapefile per
folder); they are read into one frame whose `EPSG` column says which CRS each geometry is in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import geopandas as gpd
import pandas as pd
import pyogrio
import shapely
from pyogrio.errors import DataSourceError
from pyproj import CRS

from sources.archives import source_member
from sources.common import InputError, normalise_codes, require_columns

COLUMNS = ("INSEE_COM", "NOM_COM", "IRIS", "CODE_IRIS", "NOM_IRIS", "TYP_IRIS")
# Projected CRS used by IGN for each part of France (methodology §1).
EXPECTED_CRS = {"metropole": 2154, "971": 5490, "972": 5490, "973": 2972, "974": 2975, "976": 4471}
# Field names of editions 2-1 (upper case) and 3-0 GeoPackages (lower case), by column.
FIELD_ALIASES = {
    "INSEE_COM": ("insee_com", "code_insee"),
    "NOM_COM": ("nom_com", "nom_commune"),
    "IRIS": ("iris",),
    "CODE_IRIS": ("code_iris",),
    "NOM_IRIS": ("nom_iris",),
    "TYP_IRIS": ("typ_iris", "type_iris"),
}
# IGN's folder names carry the projection: a second way to know it when pyproj cannot match the
# ESRI WKT of a `.prj` to an EPSG code.
FOLDER_CRS = {
    "LAMB93": 2154,
    "RGAF09UTM20": 5490,
    "UTM22RGFG95": 2972,
    "RGFG95UTM22": 2972,
    "RGR92UTM40S": 2975,
    "RGM04UTM38S": 4471,
}
_TOKEN = "|".join(FOLDER_CRS)
PART_LABEL = re.compile(rf"(?<![A-Z0-9])({_TOKEN})_([A-Z]{{3}})(?![A-Z])", re.IGNORECASE)
FOLDER_TOKEN = re.compile(rf"(?<![A-Z0-9])({_TOKEN})(?![A-Z0-9])", re.IGNORECASE)
METROPOLE_DEPARTEMENT = re.compile(r"^(?:0[1-9]|1\d|2[1-9AB]|[3-8]\d|9[0-5])$")
POLYGONAL = ("Polygon", "MultiPolygon")
PART_SUFFIXES = (".shp", ".gpkg")


@dataclass
class Part:
    """One part of France as read from one file: its rows, CRS and repairs."""

    path: Path
    label: str
    layer: str
    epsg: int
    frame: gpd.GeoDataFrame
    repaired: list[str]


def read_contours_iris(path: Path, layer: str | None = None) -> gpd.GeoDataFrame:
    """Read the outlines, keeping IGN's columns as text, with an `EPSG` column.

    `path` is a `.shp`, a `.gpkg`, or a folder of them (one per part of France, as `extract`
    leaves IGN's national archives). Each part must be in IGN's projection for its communes'
    départements. When every row shares one CRS, the frame's `crs` is set to it; when parts
    differ, `crs` is None and each geometry stays in the CRS of its `EPSG` value: select one
    part and call `with_crs` before any geometry work. `attrs["parties"]` gives each part's EPSG
    code and IRIS count.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(
            path, "fichier ou dossier introuvable", fix="vérifiez le chemin dans la configuration (`fragilite config`)"
        )
    parts = [_read_part(file, layer, _part_label(file)) for file in _part_files(path)]
    return _combine(path, _unique_labels(parts))


def part_crs(departement: str) -> int:
    """EPSG code of IGN's projection for a département: Lambert-93, or its overseas UTM zone."""
    code = str(departement).strip().upper()
    if code in EXPECTED_CRS and code != "metropole":
        return EXPECTED_CRS[code]
    if METROPOLE_DEPARTEMENT.match(code):
        return EXPECTED_CRS["metropole"]
    raise ValueError(
        f"département {code!r} : IGN ne publie pas de contours IRIS pour ce code (métropole 01 à 95, "
        "2A, 2B ; outre-mer 971, 972, 973, 974, 976)"
    )


def with_crs(frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """A copy of a subset of the outlines with `crs` set from its `EPSG` column (one value).

    A layer has one CRS: geometries of different parts of France cannot be drawn, measured or
    reprojected together.
    """
    if "EPSG" not in frame.columns:
        raise ValueError("pas de colonne EPSG : lisez les contours avec read_contours_iris, qui l'ajoute")
    values = sorted({int(v) for v in frame["EPSG"].dropna().unique()})
    if not values:
        return frame.copy()
    if len(values) > 1:
        listed = ", ".join(f"EPSG:{v}" for v in values)
        raise ValueError(
            f"ces IRIS sont dans plusieurs projections ({listed}) : un territoire doit tenir dans une "
            "seule partie de la France (la France métropolitaine, ou un seul département d'outre-mer)"
        )
    return frame.set_crs(values[0], allow_override=True)


def _part_files(path: Path) -> list[Path]:
    """The file itself, or every shapefile and GeoPackage under the folder (hidden ones aside)."""
    if not path.is_dir():
        return [path]
    files = sorted(
        p
        for p in path.rglob("*")
        if p.suffix.lower() in PART_SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )
    if not files:
        raise InputError(
            path,
            "aucun fichier CONTOURS-IRIS (.shp ou .gpkg) dans ce dossier",
            fix="vérifiez le motif `member` du catalogue ou le chemin donné dans la configuration",
        )
    return files


def _names(file: Path) -> list[str]:
    """The file's stem and folder names, nearest first, including the folders it had inside its
    archive (an extraction flattened to one file keeps them in its manifest)."""
    member = source_member(file)
    inside = list(PurePosixPath(member).parents)[:-1] if member else []
    return [file.stem, *(p.name for p in inside), *(p.name for p in file.parents)]


def _part_label(file: Path) -> str:
    """`LAMB93_FXX`, `RGR92UTM40S_REU`… from the nearest folder naming it, else the file stem."""
    for name in _names(file):
        match = PART_LABEL.search(name)
        if match:
            return f"{match.group(1)}_{match.group(2)}".upper()
    return file.stem


def _unique_labels(parts: list[Part]) -> list[Part]:
    seen: set[str] = set()
    for part in parts:
        if part.label in seen:
            part.label = f"{part.label} ({part.path.parent.name}/{part.path.name})"
        seen.add(part.label)
    return parts


def _folder_epsg(file: Path) -> int | None:
    for name in _names(file):
        match = FOLDER_TOKEN.search(name)
        if match:
            return FOLDER_CRS[match.group(1).upper()]
    return None


def _choose_layer(file: Path, layer: str | None) -> str:
    """The named layer, else `contours_iris` (any case), else a layer whose name holds IRIS."""
    try:
        layers = pyogrio.list_layers(file)
    except DataSourceError as exc:
        raise InputError(
            file,
            f"GeoPackage ou shapefile illisible ({exc})",
            fix="téléchargez de nouveau le fichier (supprimez-le du cache)",
        ) from exc
    names = [str(n) for n in layers[:, 0]]
    if layer is not None:
        if layer not in names:
            raise InputError(
                file,
                f"pas de couche {layer!r} ; les couches sont {names}",
                fix="donnez le nom d'une des couches du fichier",
            )
        return layer
    exact = [n for n in names if n.lower() == "contours_iris"]
    candidates = exact or [n for n in names if "IRIS" in n.upper()] or names
    if not candidates:
        raise InputError(file, "le fichier n'a aucune couche", fix="utilisez le fichier d'origine de l'IGN")
    return candidates[0]


def _rename_fields(frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Map IGN's field names of any edition (and case) onto COLUMNS."""
    by_lower = {str(c).lower(): c for c in frame.columns if c != frame.geometry.name}
    renames = {}
    for column, aliases in FIELD_ALIASES.items():
        if column in frame.columns:
            continue
        found = next((by_lower[a] for a in aliases if a in by_lower and by_lower[a] not in renames), None)
        if found is not None:
            renames[found] = column
    frame = frame.rename(columns=renames)
    if "IRIS" not in frame.columns and "CODE_IRIS" in frame.columns:
        frame["IRIS"] = frame["CODE_IRIS"].astype("string").str.strip().str[-4:]
    return frame


def _part_epsg(file: Path, crs: CRS | None) -> int:
    """The part's EPSG code: from pyproj, else from IGN's folder name."""
    if crs is None:
        raise InputError(
            file,
            "la couche n'a pas de projection (CRS) : ni .prj ni SRS déclaré",
            fix="utilisez le fichier d'origine de l'IGN (Lambert-93, EPSG:2154, en métropole ; "
            "UTM de chaque département d'outre-mer)",
        )
    if not crs.is_projected:
        raise InputError(
            file,
            f"système de coordonnées {crs.name!r} ({crs.to_string()}) non projeté : coordonnées en degrés, pas en "
            "mètres (surfaces et densités seraient fausses)",
            fix="utilisez le fichier d'origine de l'IGN, en Lambert-93 (EPSG:2154) en métropole ou dans la "
            "projection UTM du département d'outre-mer ; ne le réenregistrez pas en WGS84 (EPSG:4326)",
        )
    epsg = crs.to_epsg() or _folder_epsg(file)
    if epsg is None:
        raise InputError(
            file,
            f"projection {crs.name!r} sans code EPSG reconnu, et aucun dossier parent ne la "
            f"nomme ({', '.join(FOLDER_CRS)})",
            fix="gardez le fichier dans son dossier IGN d'origine (…_LAMB93_FXX-…, "
            "…_RGR92UTM40S_REU-…) ou réenregistrez-le avec un code EPSG",
        )
    return int(epsg)


def _departement(commune: str) -> str:
    return commune[:3] if commune.startswith("97") else commune[:2]


def _check_part_crs(file: Path, frame: gpd.GeoDataFrame, epsg: int) -> None:
    """Refuse a part whose CRS is not IGN's projection for the départements of its communes."""
    expected: dict[int, list[str]] = {}
    for dep in sorted(set(frame["INSEE_COM"].map(_departement))):
        try:
            expected.setdefault(part_crs(dep), []).append(dep)
        except ValueError as exc:
            raise InputError(
                file,
                str(exc),
                column="INSEE_COM",
                fix="utilisez les contours IRIS de l'IGN, qui couvrent la métropole et les DOM",
            ) from exc
    wrong = sorted((code, deps) for code, deps in expected.items() if code != epsg)
    if wrong:
        code, deps = wrong[0]
        raise InputError(
            file,
            f"contours en EPSG:{epsg} ({_crs_name(epsg)}) alors que les communes du ou des départements "
            f"{', '.join(deps[:5])} sont publiées par l'IGN en EPSG:{code} ({_crs_name(code)})",
            column="geometry",
            fix="prenez pour chaque partie de la France le fichier de son dossier IGN (…_LAMB93_FXX pour la "
            "métropole, …_RGR92UTM40S_REU pour La Réunion, etc.), ou reprojetez ces contours en "
            f"EPSG:{code}",
        )


def _crs_name(epsg: int) -> str:
    try:
        return CRS.from_epsg(epsg).name
    except Exception:  # noqa: BLE001 - a name is only a courtesy in a message
        return "?"


def _check_geometries(file: Path, frame: gpd.GeoDataFrame) -> None:
    empty = frame.geometry.is_empty | frame.geometry.isna()
    if empty.any():
        raise InputError(
            file,
            f"{int(empty.sum())} IRIS sans géométrie, le premier {frame.loc[empty, 'CODE_IRIS'].iloc[0]}",
            column="geometry",
            fix="utilisez le fichier d'origine de l'IGN",
        )
    kinds = frame.geometry.geom_type
    bad = ~kinds.isin(POLYGONAL)
    if bad.any():
        first = bad.to_numpy().nonzero()[0][0]
        raise InputError(
            file,
            f"{int(bad.sum())} géométrie(s) non surfacique(s), la première "
            f"({kinds.iloc[first]}) pour l'IRIS {frame['CODE_IRIS'].iloc[first]}",
            column="geometry",
            fix="les contours IRIS sont des polygones : utilisez le fichier d'origine de l'IGN",
        )


def _repair(frame: gpd.GeoDataFrame) -> list[str]:
    """Repair invalid outlines in place; returns their IRIS codes (reported as asset metadata)."""
    invalid = ~frame.geometry.is_valid
    repaired = frame.loc[invalid, "CODE_IRIS"].tolist()
    if repaired:
        # Self-intersections and the like: repaired by GEOS's "structure" method (polygons stay
        # polygons, collapsed parts dropped), and reported (asset metadata, warning check).
        frame.loc[invalid, "geometry"] = shapely.make_valid(
            frame.geometry[invalid].to_numpy(), method="structure", keep_collapsed=False
        )
    return repaired


def _read_part(file: Path, layer: str | None, label: str) -> Part:
    """One file: fields renamed, codes validated, CRS checked against its communes, geometries checked."""
    layer = _choose_layer(file, layer)
    frame = _rename_fields(gpd.read_file(file, layer=layer, engine="pyogrio"))
    require_columns(file, frame.columns, COLUMNS, "CONTOURS-IRIS de l'IGN")
    epsg = _part_epsg(file, frame.crs)
    frame["CODE_IRIS"] = normalise_codes(frame["CODE_IRIS"], path=file, column="CODE_IRIS", kind="iris")
    frame["INSEE_COM"] = normalise_codes(
        frame["INSEE_COM"], path=file, column="INSEE_COM", kind="commune", unique=False
    )
    for col in ("NOM_COM", "IRIS", "NOM_IRIS", "TYP_IRIS"):
        frame[col] = frame[col].astype(str)
    _check_part_crs(file, frame, epsg)
    _check_geometries(file, frame)
    frame = frame[list(COLUMNS) + ["geometry"]].copy()
    repaired = _repair(frame)
    frame["EPSG"] = epsg
    frame = frame[[*COLUMNS, "EPSG", "geometry"]].set_crs(None, allow_override=True)
    return Part(file, label, layer, epsg, frame, repaired)


def _combine(path: Path, parts: list[Part]) -> gpd.GeoDataFrame:
    """One frame for all parts: `crs` set when they share one, None otherwise."""
    frames = [p.frame for p in parts]
    frame = (
        frames[0]
        if len(frames) == 1
        else gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), geometry="geometry", crs=None)
    )
    dup = frame["CODE_IRIS"].duplicated()
    if dup.any():
        code = frame.loc[dup, "CODE_IRIS"].iloc[0]
        owners = [p.label for p in parts if (p.frame["CODE_IRIS"] == code).any()]
        raise InputError(
            path,
            f"l'IRIS {code} figure dans plusieurs parties ({', '.join(owners)})",
            column="CODE_IRIS",
            fix="ne gardez qu'un fichier par partie de la France (vérifiez le motif `member` du catalogue)",
        )
    frame["EPSG"] = frame["EPSG"].astype("int64")
    epsgs = sorted({p.epsg for p in parts if len(p.frame)}) or sorted({p.epsg for p in parts})
    if len(epsgs) == 1:
        frame = frame.set_crs(epsgs[0], allow_override=True)
    frame.attrs.update(
        path=str(path),
        layer=parts[0].layer if len(parts) == 1 else {p.label: p.layer for p in parts},
        geometries_reparees=[code for p in parts for code in p.repaired],
        parties={p.label: {"epsg": p.epsg, "iris": len(p.frame)} for p in parts},
    )
    return frame

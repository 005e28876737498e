"""The IRIS spine: outlines joined to the census themes and to EPCI membership.

Nothing is dropped silently: every code of one side without a partner on the other is listed in
a `JoinReport`, which the pipeline puts in the run's metadata.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import geopandas as gpd
import pandas as pd

from transforms.geo_codes import departement_code, lookup_commune_values

MAX_LISTED = 200  # codes listed per report; the counts are always complete


@dataclass
class JoinReport:
    """Outcome of one join: how many codes matched, which did not, and on which side."""

    join: str
    matched: int
    unmatched_left: list[str] = field(default_factory=list)
    unmatched_right: list[str] = field(default_factory=list)
    note: str = ""

    def as_dict(self) -> dict:
        d = asdict(self)
        d["unmatched_left_count"] = len(self.unmatched_left)
        d["unmatched_right_count"] = len(self.unmatched_right)
        d["unmatched_left"] = self.unmatched_left[:MAX_LISTED]
        d["unmatched_right"] = self.unmatched_right[:MAX_LISTED]
        return d

    @property
    def complete(self) -> bool:
        return not self.unmatched_left and not self.unmatched_right


class VintageError(ValueError):
    """Census themes of different vintages were given to one run."""


def census_vintage(themes: dict[str, pd.DataFrame]) -> int:
    """The one census vintage shared by all themes (refuse a mix)."""
    vintages = {name: int(df.attrs["millesime"]) for name, df in themes.items()}
    if len(set(vintages.values())) != 1:
        listed = ", ".join(f"{k} : RP {v}" for k, v in sorted(vintages.items()))
        raise VintageError(
            f"fichiers du recensement de millésimes différents : {listed} ; donnez les fichiers d'un seul millésime"
        )
    return next(iter(vintages.values()))


def join_census(themes: dict[str, pd.DataFrame]) -> tuple[pd.DataFrame, list[JoinReport]]:
    """Merge the base-ic themes on CODE_IRIS (outer join, mismatches reported)."""
    reports: list[JoinReport] = []
    names = sorted(themes)
    merged = themes[names[0]].copy()
    for name in names[1:]:
        other = themes[name]
        variables = [c for c in other.columns if c[:2] in ("P_", "C_") and c not in merged.columns]
        left, right = set(merged["CODE_IRIS"].to_numpy()), set(other["CODE_IRIS"].to_numpy())
        reports.append(
            JoinReport(
                join=f"recensement {names[0]} ↔ {name}",
                matched=len(left & right),
                unmatched_left=sorted(left - right),
                unmatched_right=sorted(right - left),
            )
        )
        extra = other[["CODE_IRIS", "INSEE_COM", "TYP_IRIS", *variables]]
        merged = merged.merge(extra, on="CODE_IRIS", how="outer", suffixes=("", "_other"))
        for col in ("INSEE_COM", "TYP_IRIS"):
            merged[col] = merged[col].fillna(merged.pop(f"{col}_other"))
    return merged, reports


def build_iris_base(
    contours: gpd.GeoDataFrame, census: pd.DataFrame, communes_epci: pd.DataFrame
) -> tuple[gpd.GeoDataFrame, list[JoinReport]]:
    """One row per IRIS outline with its census variables, EPCI, département and région.

    The outlines are the spine (an output layer needs a geometry); census IRIS without an
    outline, and outlines without census figures, are both reported.
    """
    left, right = set(contours["CODE_IRIS"].to_numpy()), set(census["CODE_IRIS"].to_numpy())
    reports = [
        JoinReport(
            join="CONTOURS-IRIS ↔ recensement",
            matched=len(left & right),
            unmatched_left=sorted(left - right),
            unmatched_right=sorted(right - left),
            note="à gauche : contours sans chiffres du recensement (gardés, indicateurs vides) ; "
            "à droite : IRIS du recensement sans contour (absents des couches)",
        )
    ]
    census_cols = [c for c in census.columns if c not in ("INSEE_COM", "TYP_IRIS")]
    base = contours.merge(census[census_cols], on="CODE_IRIS", how="left")

    epci_rows, used = lookup_commune_values(base["INSEE_COM"], communes_epci)
    base["EPCI"] = epci_rows["EPCI"]
    base["NOM_EPCI"] = epci_rows["NOM_EPCI"]
    communes = set(base["INSEE_COM"].to_numpy())
    missing = sorted(set(base.loc[used.isna(), "INSEE_COM"].to_numpy()))
    reports.append(
        JoinReport(
            join="communes ↔ EPCI",
            matched=len(communes) - len(missing),
            unmatched_left=missing,
            note="communes des contours absentes de la table communes → EPCI (sans EPCI)",
        )
    )
    base["DEP"] = departement_code(base["INSEE_COM"])
    if "REG" not in base.columns:
        base["REG"] = pd.NA
    base = gpd.GeoDataFrame(base, geometry="geometry", crs=contours.crs)
    return base.sort_values("CODE_IRIS").reset_index(drop=True), reports

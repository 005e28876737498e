"""Typed options of the offer of digital mediation (`offre.yaml`): catchment, decay, filters,
priority thresholds, and the local places file."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from config.settings import CONFIG_DIR, ConfigError, _format_validation, _Strict, read_yaml

OFFRE_FILE = CONFIG_DIR / "offre.yaml"

Decay = Literal["aucune", "gaussienne", "paliers"]
FRAGILITY_CLASSES = ("non_fragile", "intermediaire", "fragile")
ACCESS_CLASSES = ("eloigne", "intermediaire", "proche")
PRIORITY_CLASSES = ("forte", "moyenne", "faible")
FILTER_NAME = r"^[a-z][a-z0-9_]*$"


class Step(_Strict):
    """One step of a stepwise decay: weight `poids` up to `jusqu_a_km`."""

    jusqu_a_km: float = Field(gt=0)
    poids: float = Field(ge=0, le=1)


class ClassThresholds(_Strict):
    """Two thresholds cutting a column in three classes, as quantiles of the territory's IRIS or
    as values of the column."""

    colonne: str
    type: Literal["quantile", "valeur"] = "quantile"
    seuils: tuple[float, float]

    @model_validator(mode="after")
    def _ordered(self) -> ClassThresholds:
        low, high = self.seuils
        if low > high:
            raise ValueError(f"seuils must be increasing, got {list(self.seuils)}")
        if self.type == "quantile" and not (0 <= low <= 1 and 0 <= high <= 1):
            raise ValueError(f"quantile thresholds are between 0 and 1, got {list(self.seuils)}")
        return self


class FragilityThresholds(ClassThresholds):
    plus_haut_est_fragile: bool = True


class AccessThresholds(ClassThresholds):
    plus_haut_est_proche: bool = True


class PriorityConfig(_Strict):
    fragilite: FragilityThresholds
    accessibilite: AccessThresholds
    matrice: dict[Literal["non_fragile", "intermediaire", "fragile"], dict[str, str]]

    @field_validator("matrice")
    @classmethod
    def _complete(cls, v: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        missing = [f for f in FRAGILITY_CLASSES if f not in v]
        if missing:
            raise ValueError(f"matrice needs a row for each fragility class; missing {missing}")
        for fragility, row in v.items():
            if set(row) != set(ACCESS_CLASSES):
                raise ValueError(f"matrice.{fragility} needs exactly the keys {list(ACCESS_CLASSES)}")
            bad = {k: p for k, p in row.items() if p not in PRIORITY_CLASSES}
            if bad:
                raise ValueError(f"matrice.{fragility}: priorities are {list(PRIORITY_CLASSES)}, got {bad}")
        return v


class OffreConfig(_Strict):
    """Where the places come from and how access to them is measured."""

    fichier_local: Path | None = None
    mode_local: Literal["completer", "remplacer"] = "completer"
    rayons_km: list[float] = Field(default=[1, 2, 5, 10], min_length=1)
    bassin_km: float = Field(default=10, gt=0)
    decroissance: Decay = "paliers"
    paliers: list[Step] = []
    demande: list[str] = Field(
        default=["est_illectronisme_age", "est_illectronisme_15p", "est_illectronisme_non_dipl", "P_POP"],
        min_length=1,
    )
    filtres_services: dict[str, list[str]] = {}
    filtres_publics: dict[str, list[str]] = {}
    priorite: PriorityConfig

    @field_validator("rayons_km")
    @classmethod
    def _positive(cls, v: list[float]) -> list[float]:
        if any(r <= 0 for r in v):
            raise ValueError("radii are positive distances in km")
        return sorted(set(v))

    @field_validator("filtres_services", "filtres_publics")
    @classmethod
    def _filter_names(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        import re

        for name, values in v.items():
            if not re.match(FILTER_NAME, name):
                raise ValueError(f"filter name {name!r}: lower case letters, digits and _ only (a column suffix)")
            if not values:
                raise ValueError(f"filter {name!r} lists no value")
        return v

    @model_validator(mode="after")
    def _steps(self) -> OffreConfig:
        if self.decroissance == "paliers":
            if not self.paliers:
                raise ValueError("decroissance: paliers needs a `paliers` list")
            bounds = [s.jusqu_a_km for s in self.paliers]
            if bounds != sorted(bounds) or len(set(bounds)) != len(bounds):
                raise ValueError(f"paliers: bounds must be strictly increasing, got {bounds}")
            if bounds[-1] > self.bassin_km:
                raise ValueError(f"paliers: the last bound ({bounds[-1]} km) exceeds bassin_km ({self.bassin_km} km)")
        both = set(self.filtres_services) & set(self.filtres_publics)
        if both:
            raise ValueError(f"filter names used twice (services and publics): {sorted(both)}")
        return self


def load_offre(path: Path = OFFRE_FILE) -> OffreConfig:
    """Read and validate `offre.yaml`; `fichier_local` is resolved from the file's folder."""
    data = read_yaml(path)
    local = data.get("fichier_local")
    if isinstance(local, str) and local:
        data["fichier_local"] = str((Path(path).parent / local).expanduser().resolve())
    try:
        return OffreConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation(exc, str(path))) from exc

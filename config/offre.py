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
            raise ValueError(f"les seuils doivent être croissants, lu : {list(self.seuils)}")
        if self.type == "quantile" and not (0 <= low <= 1 and 0 <= high <= 1):
            raise ValueError(f"des seuils en quantiles sont entre 0 et 1, lu : {list(self.seuils)}")
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
            raise ValueError(f"matrice : une ligne par classe de fragilité ; il manque {missing}")
        for fragility, row in v.items():
            if set(row) != set(ACCESS_CLASSES):
                raise ValueError(f"matrice.{fragility} : il faut exactement les clés {list(ACCESS_CLASSES)}")
            bad = {k: p for k, p in row.items() if p not in PRIORITY_CLASSES}
            if bad:
                raise ValueError(f"matrice.{fragility} : les priorités sont {list(PRIORITY_CLASSES)}, lu : {bad}")
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
            raise ValueError("les rayons sont des distances positives en km")
        return sorted(set(v))

    @field_validator("filtres_services", "filtres_publics")
    @classmethod
    def _filter_names(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        import re

        for name, values in v.items():
            if not re.match(FILTER_NAME, name):
                raise ValueError(
                    f"nom de filtre {name!r} : minuscules, chiffres et _ seulement (il devient un suffixe de colonne)"
                )
            if not values:
                raise ValueError(f"le filtre {name!r} ne liste aucune valeur")
        return v

    @model_validator(mode="after")
    def _steps(self) -> OffreConfig:
        if self.decroissance == "paliers":
            if not self.paliers:
                raise ValueError("decroissance: paliers demande une liste `paliers`")
            bounds = [s.jusqu_a_km for s in self.paliers]
            if bounds != sorted(bounds) or len(set(bounds)) != len(bounds):
                raise ValueError(f"paliers : les bornes doivent être strictement croissantes, lu : {bounds}")
            if bounds[-1] > self.bassin_km:
                raise ValueError(f"paliers: the last bound ({bounds[-1]} km) exceeds bassin_km ({self.bassin_km} km)")
        both = set(self.filtres_services) & set(self.filtres_publics)
        if both:
            raise ValueError(f"noms de filtres employés deux fois (services et publics) : {sorted(both)}")
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

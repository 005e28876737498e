"""Typed options of the building-level connectivity measure (`connectivite.yaml`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator

from config.settings import CONFIG_DIR, ConfigError, _format_validation, _Strict, read_yaml

CONNECTIVITY_FILE = CONFIG_DIR / "connectivite.yaml"

Technology = Literal["FO", "CU", "COAX", "4GF", "SAT", "THDR", "HDR"]
SpeedClass = Literal["INEL", "HD05", "HD3", "BHD8", "THD30", "THD100", "THD1G"]
CoverageLevel = Literal["TBC", "BC", "CL"]

ALL_TECHNOLOGIES: tuple[str, ...] = ("FO", "CU", "COAX", "4GF", "SAT", "THDR", "HDR")
ALL_CLASSES: tuple[str, ...] = ("INEL", "HD05", "HD3", "BHD8", "THD30", "THD100", "THD1G")
ALL_LEVELS: tuple[str, ...] = ("TBC", "BC", "CL")


class ConnectivityConfig(_Strict):
    """Which offers make a building « THD » and which polygons make it « covered in 4G »."""

    technologies: list[Technology] = Field(default=["FO", "CU", "COAX", "THDR", "4GF", "HDR"], min_length=1)
    thd_classes: list[SpeedClass] = Field(default=["THD30", "THD100", "THD1G"], min_length=1)
    coverage_levels: list[CoverageLevel] = Field(default=["TBC", "BC"], min_length=1)
    operators: list[str] = Field(default=["Orange", "SFR", "Bouygues Telecom", "Free Mobile"], min_length=1)
    memory_limit: str = Field(default="4GB", pattern=r"^\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$")
    threads: int | None = Field(default=None, ge=1)
    max_vertices: int = Field(default=256, ge=16)

    @field_validator("operators")
    @classmethod
    def _named(cls, v: list[str]) -> list[str]:
        if any(not name.strip() for name in v):
            raise ValueError("un nom d'opérateur ne peut pas être vide")
        return [name.strip() for name in v]


def load_connectivity(path: Path = CONNECTIVITY_FILE) -> ConnectivityConfig:
    """Read and validate `connectivite.yaml` (errors name the file and the key)."""
    try:
        return ConnectivityConfig.model_validate(read_yaml(path))
    except ValidationError as exc:
        raise ConfigError(_format_validation(exc, str(path))) from exc

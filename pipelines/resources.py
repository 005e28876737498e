"""Dagster resources: the run configuration, as a `ConfigurableResource`.

The effective settings are rebuilt from `config/defaults.yaml`, an optional user file and the
fields set here (the command line sets them), then validated by the pydantic models of
`config.settings`.
"""

from __future__ import annotations

from functools import cached_property

import dagster as dg

from config import IndicatorCatalogue, Settings, load_catalogue, load_settings
from config.settings import (
    MethodsConfig,
    TerritoryPreset,
    TicConfig,
    load_departement_names,
    load_methods,
    load_territories,
    load_tic,
)


class FragiliteConfig(dg.ConfigurableResource):
    """Where the inputs are, which reference and method to use, where to write."""

    config_file: str | None = None
    reference: str | None = None
    legacy_2020: bool | None = None
    out_dir: str | None = None
    territory: list[str] | None = None

    def overrides(self) -> dict:
        run: dict = {}
        if self.reference is not None:
            run["reference"] = self.reference
        if self.legacy_2020 is not None:
            run["legacy_2020"] = self.legacy_2020
        if self.out_dir is not None:
            run["out_dir"] = self.out_dir
        if self.territory is not None:
            run["territory"] = self.territory
        return {"run": run} if run else {}

    @cached_property
    def settings(self) -> Settings:
        return load_settings(self.config_file, self.overrides())

    @cached_property
    def catalogue(self) -> IndicatorCatalogue:
        return load_catalogue()

    @cached_property
    def methods(self) -> MethodsConfig:
        return load_methods()

    @cached_property
    def tic(self) -> TicConfig:
        return load_tic()

    @cached_property
    def territory_presets(self) -> dict[str, TerritoryPreset]:
        return load_territories()

    @cached_property
    def departement_names(self) -> dict[str, str]:
        return load_departement_names()

"""Dagster resources: the run configuration, as a `ConfigurableResource`.

The effective settings are rebuilt from `config/defaults.yaml`, an optional user file and the
fields set here (the command line sets them), then validated by the pydantic models of
`config.settings`.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import dagster as dg

from config import IndicatorCatalogue, Settings, load_catalogue, load_settings
from config.settings import (
    Catalogue,
    MethodsConfig,
    TerritoryPreset,
    TicConfig,
    load_departement_names,
    load_methods,
    load_sources,
    load_territories,
    load_tic,
)
from sources.catalogue import NoFileObtained, catalogued_inputs, is_optional, is_per_departement, resolve_input
from sources.download import fetcher_from_settings


class FragiliteConfig(dg.ConfigurableResource):
    """Where the inputs are, which reference and method to use, where to write."""

    config_file: str | None = None
    reference: str | None = None
    legacy_2020: bool | None = None
    out_dir: str | None = None
    territory: list[str] | None = None
    vintage: int | None = None
    offline: bool | None = None
    mirror: str | None = None
    cache_dir: str | None = None
    accept_changed: bool | None = None
    caf_file: str | None = None  # a CAF "non connectés" file (set by the drop-folder sensor)

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
        if self.vintage is not None:
            run["vintage"] = self.vintage
        inputs = {"caf_non_connectes": self.caf_file} if self.caf_file else {}
        sources = {
            k: getattr(self, k)
            for k in ("offline", "mirror", "cache_dir", "accept_changed")
            if getattr(self, k) is not None
        }
        return {k: v for k, v in (("run", run), ("sources", sources), ("inputs", inputs)) if v}

    def input_file(self, key: str) -> tuple[Path | None, dict]:
        """The file an input reads, and where it came from.

        Without a vintage: the path of `inputs.<key>` (the embedded sample by default). With
        one: the catalogue's file for that census vintage, downloaded or taken from the cache
        or mirror, verified and extracted.
        """
        settings = self.settings
        if settings.run.vintage is None or key not in catalogued_inputs(self.source_catalogue):
            path = settings.input_paths().get(key)
            return path, ({"fichier": str(path)} if path else {})
        if key in self.resolved_inputs:  # a folder of many files is verified once per run
            return self.resolved_inputs[key]
        catalogue = self.source_catalogue
        try:
            resolved = resolve_input(
                catalogue,
                key,
                settings.run.vintage,
                fetcher_from_settings(settings, hosts=catalogue.hosts),
                settings.sources.max_extract_mb << 20,
                quarter=settings.sources.arcep_trimestre,
                departements=self.departements() if is_per_departement(catalogue, key) else None,
            )
        except NoFileObtained as exc:
            if not is_optional(catalogue, key):
                raise
            # Not one complete département (or part): the commune fallback, flagged, and the
            # provenance says which files were missing.
            resolved = None, {**exc.provenance, "erreur": str(exc)}
        self.resolved_inputs[key] = resolved if resolved is not None else (None, {})
        return self.resolved_inputs[key]

    def departements(self) -> list[str] | None:
        """The départements of the study territory, for the per-département files of the
        catalogue (ARCEP's building files): départements given, the département of each commune
        (2A/2B, 97x), those of each EPCI's member communes. None: all of France (no territory),
        served by the national files."""
        import pandas as pd

        from sources.common import DEPARTEMENT_PATTERN, EPCI_PATTERN
        from sources.registry import PARSERS
        from transforms.geo_codes import departement_code
        from transforms.territory import partition_keys, resolve_territory

        territory = resolve_territory(self.settings.run.territory, self.territory_presets)
        if territory.whole:
            return None
        communes_epci = pd.DataFrame({"INSEE_COM": pd.Series(dtype=str), "EPCI": pd.Series(dtype=str)})
        if any(EPCI_PATTERN.match(code) for code in territory.codes):
            path, _ = self.input_file("communes_epci")
            communes_epci = PARSERS["communes_epci"](path)
        known = set(departement_code(communes_epci["INSEE_COM"])) | {
            departement_code(pd.Series([c])).iloc[0] for c in territory.codes if not EPCI_PATTERN.match(c)
        }
        known |= {c for c in territory.codes if DEPARTEMENT_PATTERN.match(c)}
        return partition_keys(territory, communes_epci, sorted(known))

    @cached_property
    def resolved_inputs(self) -> dict[str, tuple[Path | None, dict]]:
        """Inputs resolved from the catalogue in this run (a run reads each input once or twice)."""
        return {}

    @property
    def output_folder(self) -> Path:
        """Where this run writes (settings.run.out_dir, with --out applied)."""
        return Path(self.settings.run.out_dir)

    @cached_property
    def source_catalogue(self) -> Catalogue:
        return load_sources(self.settings.sources.catalogue)

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

"""Configuration as data: YAML files in this folder, validated by the models of `settings`."""

from config.settings import (
    ConfigError,
    Indicator,
    IndicatorCatalogue,
    Settings,
    load_catalogue,
    load_methods,
    load_settings,
    load_tic,
    settings_as_yaml,
)

__all__ = [
    "ConfigError",
    "Indicator",
    "IndicatorCatalogue",
    "Settings",
    "load_catalogue",
    "load_methods",
    "load_settings",
    "load_tic",
    "settings_as_yaml",
]

"""Which parser reads which run input: the code half of the input registry, used by the Dagster
source assets and by `fragilite validate`.

The inputs themselves (their keys, roles, census themes, labels) are declared once, in
config/inputs.yaml; this module only maps each key to its reader, and refuses at import an input
declared with a source asset but no parser here, or a parser for an undeclared input.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from config.settings import (
    CENSUS_THEMES,
    INPUT_SPECS,
    INPUTS_FILE,
    IndicatorCatalogue,
    TicConfig,
    census_variables,
    required_census_variables,
)
from sources.arcep import read_arcep_debit
from sources.caf import read_caf_non_connectes
from sources.cog import read_cog_passage, read_communes_epci
from sources.filosofi import read_filosofi_communes, read_filosofi_iris
from sources.ign_iris import read_contours_iris
from sources.insee_rp import read_base_ic
from sources.lieux_mediation import read_lieux_mediation

__all__ = ["CENSUS_THEMES", "PARSERS", "read_input"]

PARSERS: dict[str, Callable[[Path], pd.DataFrame]] = {
    **{key: (lambda path, theme=theme: read_base_ic(path, theme)) for key, theme in CENSUS_THEMES.items()},
    "filosofi_iris": read_filosofi_iris,
    "filosofi_communes": read_filosofi_communes,
    "contours_iris": read_contours_iris,
    "communes_epci": read_communes_epci,
    "arcep_debit": read_arcep_debit,
    "caf_non_connectes": read_caf_non_connectes,
    "cog_passage": read_cog_passage,
    "lieux_mediation": read_lieux_mediation,
}


def registry_problems() -> list[str]:
    """What the declaration and the parsers disagree on: an input whose source asset would have no
    parser, a parser for an input config/inputs.yaml does not declare."""
    problems = [
        f"{key} : déclarée avec un asset source dans {INPUTS_FILE.name} mais sans lecteur dans sources/registry.py "
        "(ajoutez-le à PARSERS, ou remplacez asset par read_by)"
        for key, spec in INPUT_SPECS.items()
        if spec.asset is not None and key not in PARSERS
    ]
    problems += [
        f"{key} : lecteur dans sources/registry.py pour une entrée absente de {INPUTS_FILE.name} (déclarez-la)"
        for key in PARSERS
        if key not in INPUT_SPECS
    ]
    return problems


if registry_problems():
    raise RuntimeError("registre des entrées incohérent :\n  - " + "\n  - ".join(registry_problems()))


def read_input(
    key: str,
    path: Path,
    catalogue: IndicatorCatalogue | None = None,
    tic: TicConfig | None = None,
    wanted: Sequence[str] = (),
) -> pd.DataFrame:
    """One input as a run reads it — the same path for `fragilite run` and `fragilite validate`.
    Given the indicator catalogue and the TIC groups, a census file is parsed only for the
    variables the run uses (~100 per national file) and must hold those its indicators need."""
    if key in CENSUS_THEMES and catalogue is not None and tic is not None:
        return read_base_ic(
            path,
            CENSUS_THEMES[key],
            census_variables(catalogue, tic),
            required=required_census_variables(catalogue, key, list(wanted)),
        )
    return PARSERS[key](path)

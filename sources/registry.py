"""Which parser reads which run input: one place, used by the Dagster source assets and by
`fragilite validate`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from config.settings import IndicatorCatalogue, TicConfig, census_variables, required_census_variables
from sources.arcep import read_arcep_debit
from sources.caf import read_caf_non_connectes
from sources.cog import read_cog_passage, read_communes_epci
from sources.filosofi import read_filosofi_communes, read_filosofi_iris
from sources.ign_iris import read_contours_iris
from sources.insee_rp import read_base_ic
from sources.lieux_mediation import read_lieux_mediation

CENSUS_THEMES = {
    "rp_evol_struct_pop": "evol-struct-pop",
    "rp_diplomes_formation": "diplomes-formation",
    "rp_couples_familles_menages": "couples-familles-menages",
    "rp_activite_residents": "activite-residents",
}

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

"""Study territory: the IRIS a run processes, from presets or codes (département, commune, EPCI)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from config.settings import ConfigError, TerritoryPreset
from sources.common import COMMUNE_PATTERN as COMMUNE_RE
from sources.common import DEPARTEMENT_PATTERN as DEP_RE
from sources.common import EPCI_PATTERN as EPCI_RE
from transforms.geo_codes import CITY_ARRONDISSEMENTS


@dataclass
class Territory:
    label: str
    codes: list[str] = field(default_factory=list)

    @property
    def whole(self) -> bool:
        return not self.codes


def resolve_territory(spec: list[str], presets: dict[str, TerritoryPreset]) -> Territory:
    """Expand preset names; validate every code's form."""
    if not spec:
        return Territory("toutes les IRIS des fichiers d'entrée")
    codes: list[str] = []
    labels: list[str] = []
    for item in spec:
        item = item.strip()
        if item in presets:
            codes += presets[item].codes
            labels.append(presets[item].label)
            if not presets[item].codes:
                return Territory(presets[item].label)
        elif DEP_RE.match(item) or COMMUNE_RE.match(item) or EPCI_RE.match(item):
            codes.append(item)
            labels.append(item)
        else:
            raise ConfigError(
                f"territory: {item!r} is neither a preset ({', '.join(sorted(presets))}) nor a "
                "département (69, 2A, 974), commune (69123) or EPCI SIREN (200046977) code"
            )
    return Territory(", ".join(labels), codes)


def select_territory(base: pd.DataFrame, territory: Territory) -> pd.Series:
    """Boolean mask of the IRIS of the territory; a code matching no IRIS is an error."""
    if territory.whole:
        return pd.Series(True, index=base.index)
    mask = pd.Series(False, index=base.index)
    unmatched = []
    for code in territory.codes:
        if EPCI_RE.match(code):
            hit = base["EPCI"] == code
        elif COMMUNE_RE.match(code):
            hit = base["INSEE_COM"].isin((code, *CITY_ARRONDISSEMENTS.get(code, ())))
        else:
            hit = base["DEP"] == code
        if not hit.any():
            unmatched.append(code)
        mask |= hit
    if unmatched:
        raise ConfigError(
            f"territory: no IRIS of the inputs for code(s) {unmatched}; check the codes or give "
            "input files that cover them"
        )
    return mask


def partition_keys(territory: Territory, communes_epci: pd.DataFrame, all_keys: list[str]) -> list[str]:
    """The département partitions a territory needs (an EPCI may straddle départements)."""
    from transforms.geo_codes import departement_code

    if territory.whole:
        return list(all_keys)
    keys: set[str] = set()
    for code in territory.codes:
        if EPCI_RE.match(code):
            members = communes_epci.loc[communes_epci["EPCI"] == code, "INSEE_COM"]
            if members.empty:
                raise ConfigError(f"territory: EPCI {code} is not in the commune → EPCI table")
            keys |= set(departement_code(members))
        elif COMMUNE_RE.match(code):
            keys.add(departement_code(pd.Series([code])).iloc[0])
        else:
            keys.add(code)
    unknown = sorted(keys - set(all_keys))
    if unknown:
        raise ConfigError(f"territory: département(s) {unknown} are not partitions ({len(all_keys)} known)")
    return sorted(keys)

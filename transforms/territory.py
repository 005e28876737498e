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
        loaded = sorted(set(base["DEP"].dropna()))
        raise ConfigError(
            f"territoire : aucune IRIS des fichiers d'entrée pour {', '.join(unmatched)} (les fichiers chargés "
            f"couvrent le(s) département(s) {', '.join(loaded[:12])}{' …' if len(loaded) > 12 else ''}).\n"
            "  correction : sans --vintage, `fragilite run --territory <code>` télécharge lui-même le dernier "
            "millésime complet du catalogue pour un territoire hors de l'échantillon ; avec des fichiers déjà "
            "téléchargés : --vintage <année> --mirror <dossier> ; vérifiez aussi le code"
        )
    return mask


def require_census(base: pd.DataFrame, territory: Territory) -> None:
    """Refuse a territory none of whose IRIS has census figures (Mayotte: INSEE publishes no
    base infracommunale for it), with the reason, rather than publish empty layers."""
    pop = base["P_POP"] if "P_POP" in base.columns else pd.Series(float("nan"), index=base.index)
    if len(base) and pop.isna().all():
        deps = ", ".join(sorted(set(base["DEP"].dropna())))
        mayotte = " ; l'INSEE ne publie pas de recensement à l'IRIS pour Mayotte (976)" if "976" in deps else ""
        raise ConfigError(
            f"territoire {territory.label} (département {deps}) : aucune de ses {len(base)} IRIS n'a "
            f"d'effectifs dans les fichiers du recensement{mayotte} ; rien à calculer"
        )


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


METROPOLE_EPSG = 2154


def one_part_of_france(base: pd.DataFrame, territory: Territory) -> tuple[pd.DataFrame, list[str]]:
    """The IRIS of one part of France, in that part's projected CRS (methodology §1).

    IGN publishes metropolitan France in Lambert-93 and each overseas département in its own UTM
    projection; a layer has one CRS, so a run covers one part. Every IRIS of the inputs (no
    territory given) means metropolitan France when it is loaded: the overseas IRIS left out are
    returned as a note. A territory that straddles parts is refused.
    """
    from sources.ign_iris import with_crs

    if "EPSG" not in base.columns:
        return base, []
    parts = sorted(int(e) for e in base["EPSG"].dropna().unique())
    notes: list[str] = []
    if len(parts) > 1:
        if not territory.whole:
            listed = "; ".join(
                f"EPSG:{e} ({', '.join(sorted(set(base.loc[base['EPSG'] == e, 'DEP'])))})" for e in parts
            )
            raise ConfigError(
                f"territoire {territory.label} : ses IRIS sont dans plusieurs parties de France aux projections "
                f"différentes ({listed}) ; une couche "
                "n'a qu'une projection : lancez un calcul par partie (métropole, puis chaque département "
                "d'outre-mer, par exemple --territory 974)"
            )
        keep = METROPOLE_EPSG if METROPOLE_EPSG in parts else parts[0]
        left = base.loc[base["EPSG"] != keep, "DEP"]
        notes.append(
            f"{len(left)} IRIS d'outre-mer ({', '.join(sorted(set(left)))}) laissées de côté : une couche "
            f"n'a qu'une projection (EPSG:{keep} ici) ; calculez chaque département d'outre-mer à part "
            "(--territory 971, 972, 973, 974)"
        )
        base = base[base["EPSG"] == keep]
    return with_crs(base.reset_index(drop=True)).drop(columns="EPSG"), notes


def uncovered_codes(territory: Territory, communes_epci: pd.DataFrame) -> list[str]:
    """Codes of the territory that no commune of a commune → EPCI table covers: the inputs that
    table comes with cannot serve the territory (the CLI then downloads the catalogue's files)."""
    from transforms.geo_codes import city_code, departement_code

    communes = pd.concat([communes_epci["INSEE_COM"], city_code(communes_epci["INSEE_COM"])]).astype(str)
    deps, codes = set(departement_code(communes).to_numpy()), set(communes.to_numpy())
    epcis = set(communes_epci["EPCI"].dropna().astype(str).to_numpy())
    missing = []
    for code in territory.codes:
        if EPCI_RE.match(code):
            hit = code in epcis
        elif COMMUNE_RE.match(code):
            hit = code in codes or any(a in codes for a in CITY_ARRONDISSEMENTS.get(code, ()))
        else:
            hit = code in deps
        if not hit:
            missing.append(code)
    return missing


# Reference levels whose units are read whole from the loaded IRIS (methodology §8); the others
# (territoire: the study territory itself; region, france: configured values) need no expansion.
UNIT_COLUMN = {"departement": "DEP", "epci": "EPCI"}
LEVEL_LABELS = {"departement": "département", "epci": "EPCI"}


class FrozenRecord(dict):
    """A read-only dict that copies share. pandas deep-copies a frame's `attrs` at every
    operation on it (`NDFrame.__finalize__`): the reference universe (one entry per unit),
    carried by the IRIS table through the scoring, cost a national run about a second of
    copies. Nested values are frozen too (records, tuples)."""

    def __deepcopy__(self, memo: dict) -> FrozenRecord:
        return self

    def __copy__(self) -> FrozenRecord:
        return self

    def __reduce__(self):
        return (FrozenRecord, (dict(self),))

    def _read_only(self, *args, **kwargs):
        raise TypeError("FrozenRecord est en lecture seule : construisez-en un nouveau")

    __setitem__ = __delitem__ = __ior__ = clear = pop = popitem = setdefault = update = _read_only


@dataclass
class ReferenceUniverse:
    """The IRIS reference values are computed on: the whole reference units (départements or
    EPCI) that hold the study territory's IRIS, and how complete the inputs are."""

    level: str  # the level used (the fallback when the asked one was incomplete)
    asked: str  # the level the run asked for
    mask: pd.Series  # IRIS of the base in the universe (the study territory included)
    units: dict[str, int] = field(default_factory=dict)  # unit code → IRIS count
    missing: dict[str, list[str]] = field(default_factory=dict)  # unit code → communes absent from the inputs
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> FrozenRecord:
        """The universe in words, for a frame's `attrs` and the run's metadata (read-only:
        shared by every frame derived from the IRIS table)."""
        return FrozenRecord(
            niveau=self.level,
            niveau_demande=self.asked,
            unites=FrozenRecord(self.units),
            iris=int(self.mask.sum()),
            communes_manquantes=FrozenRecord({k: tuple(v) for k, v in self.missing.items()}),
            notes=tuple(self.notes),
        )


def reference_universe(
    base: pd.DataFrame,
    inside: pd.Series,
    level: str,
    communes_epci: pd.DataFrame,
    fallback: str = "refuse",
) -> ReferenceUniverse:
    """The whole reference units of the study territory (`inside`), checked against the commune
    → EPCI composition table: a unit one of whose communes has no IRIS in the inputs is refused
    with the list of missing communes, or replaced by the `fallback` level, named in a note."""
    universe = _universe(base, inside, level, communes_epci)
    if not universe.missing:
        return universe
    listed = "; ".join(
        f"{LEVEL_LABELS[level]} {unit} : {len(codes)} commune(s) absente(s) ({', '.join(codes[:8])}"
        f"{' …' if len(codes) > 8 else ''})"
        for unit, codes in sorted(universe.missing.items())
    )
    if fallback == "refuse":
        others = [o for o in ("departement", "territoire", "region", "france") if o != level]
        raise ConfigError(
            f"référence {level} incomplète dans les fichiers d'entrée : {listed}.\n"
            f"  correction : chargez les fichiers des départements de ces communes (par exemple avec --vintage, "
            f"qui prend les fichiers nationaux du catalogue), ou choisissez une autre référence (--reference "
            f"{', '.join(others[:-1])} ou {others[-1]}), ou nommez un repli dans la configuration "
            f"(run.reference_fallback: {others[0]})"
        )
    if fallback == level:
        raise ConfigError(
            f"run.reference_fallback vaut {fallback}, le niveau incomplet lui-même : choisissez-en un autre"
        )
    replaced = reference_universe(base, inside, fallback, communes_epci, "refuse")
    replaced.asked = level
    replaced.notes.insert(
        0,
        f"référence {level} incomplète ({listed}) : remplacée par la référence {fallback} (run.reference_fallback)",
    )
    return replaced


def _universe(base: pd.DataFrame, inside: pd.Series, level: str, communes_epci: pd.DataFrame) -> ReferenceUniverse:
    from transforms.geo_codes import city_code, departement_code, isin_codes

    column = UNIT_COLUMN.get(level)
    if column is None:
        return ReferenceUniverse(level, level, inside.copy(), {level: int(inside.sum())})
    units = set(base.loc[inside, column].dropna().astype(str).to_numpy())
    mask = isin_codes(base[column].astype(str), units) & base[column].notna() | inside
    counts = base.loc[mask, column].dropna().astype(str).value_counts().sort_index()
    # Members of each unit by the composition table, against the communes with IRIS (the cities of
    # Paris, Lyon and Marseille compared whole: the table may list the city or its arrondissements).
    members = communes_epci.assign(
        unit=communes_epci["EPCI"] if level == "epci" else departement_code(communes_epci["INSEE_COM"]),
        city=city_code(communes_epci["INSEE_COM"].astype(str)),
    )
    members = members[isin_codes(members["unit"].astype(str), units) & members["unit"].notna()]
    absent = members[~isin_codes(members["city"], city_code(base["INSEE_COM"].astype(str)).unique())]
    missing = {str(u): sorted(set(g["city"])) for u, g in absent.groupby("unit")}
    notes = _unverifiable(base, level, units, communes_epci)
    outside = int((inside & base[column].isna()).sum())
    if outside:
        notes.append(
            f"{outside} IRIS du territoire sans {LEVEL_LABELS[level]} (communes hors EPCI) : pas de référence, non notées"
        )
    return ReferenceUniverse(level, level, mask, {str(k): int(v) for k, v in counts.items()}, missing, notes)


def _unverifiable(base: pd.DataFrame, level: str, units: set[str], communes_epci: pd.DataFrame) -> list[str]:
    """EPCI whose completeness the composition table cannot show: the table covers only the
    loaded départements, and the EPCI's SIREN (24DD…: seat in département DD) names another one."""
    from transforms.geo_codes import departement_code

    if level != "epci":
        return []
    table_deps = set(departement_code(communes_epci["INSEE_COM"].astype(str)).to_numpy())
    if not table_deps <= set(base["DEP"].dropna().to_numpy()):
        return []  # the table reaches beyond the inputs: the member check above is complete
    notes = [
        f"le fichier de composition des EPCI ne couvre que le(s) département(s) chargé(s) "
        f"({', '.join(sorted(table_deps))}) : un EPCI à cheval sur un autre département n'y a pas toutes ses "
        "communes, ce que ce fichier ne peut pas montrer"
    ]
    for unit in sorted(units):
        seat = None
        if unit.startswith("24"):
            seat = unit[2:5] if unit[2:4] == "97" else unit[2:4]
        corsica = seat == "20" and bool(table_deps & {"2A", "2B"})
        if seat and seat not in table_deps and not corsica:
            notes.append(
                f"EPCI {unit} : siège dans le département {seat} d'après son SIREN, hors des fichiers chargés ; le "
                "fichier de composition ne couvre que les départements chargés, ses communes d'autres départements "
                "y manquent sans doute : sa référence est calculée sur une partie de l'EPCI (vérifiez avec le "
                "fichier national de l'INSEE, --vintage)"
            )
    return notes

"""Every scoring method in one pass, on any maille (IRIS, commune, EPCI, département).

The frame given in holds the identity keys (`INSEE_COM`, `EPCI`, `DEP`, `REG`), the indicator
pairs `<id>_num`/`<id>_den` and the census counts; the same call scores an IRIS table or a
table of summed counts, so coarser mailles are never averages of IRIS scores (§5).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from config.settings import ALL_METHODS, IfnConfig, Indicator, ReliabilityRule, TicConfig, Weighting
from indice.ifn import score_ifn
from indice.mednum import RELIABILITY_COLUMN, Completeness, Reference, rates, score_mednum
from indice.tic import estimate_people
from indice.weighting import composite_score
from transforms.geo_codes import city_code


@dataclass(frozen=True)
class MethodParams:
    reference: Reference
    weightings: dict[str, Weighting]
    ifn: IfnConfig
    tic: TicConfig
    methods: tuple[str, ...] = ALL_METHODS
    legacy_2020: bool = False
    # Opale's reference when it differs from the run's, computed on the whole units (else from the rows).
    opale_reference: Reference | None = None
    completeness: Completeness = Completeness()
    reliability: ReliabilityRule = ReliabilityRule()
    maille: str = "iris"  # iris, communes, epci, departements: IFN ranks units of one maille only


@dataclass
class Scored:
    table: pd.DataFrame  # every score column, aligned on the input rows
    references: pd.DataFrame  # MedNum x_k(R) per row
    metadata: dict = field(default_factory=dict)  # per method: what produced the columns


def score_method(method: str, frame: pd.DataFrame, indicators: list[Indicator], params: MethodParams) -> Scored:
    """One method's columns (and what produced them)."""
    axis_of = {i.id: i.axis for i in indicators}
    if method == "mednum_2019":
        preset = params.weightings["mednum_2019"]
        result = score_mednum(
            frame,
            indicators,
            params.reference,
            legacy_2020=params.legacy_2020,
            weights=preset.indicator_weights,
            rule=params.completeness,
        )
        return Scored(
            result.scores,
            result.references,
            {
                "mednum_2019": {
                    "libelle": preset.label,
                    "reference": params.reference.level,
                    "legacy_2020": params.legacy_2020,
                    "poids_indicateurs": preset.indicator_weights or "égaux",
                    "indicateurs_sans_score": result.unscored,
                    "regle_de_completude": {
                        "min_indicateurs_par_axe": params.completeness.min_indicators_per_axis,
                        "global_exige_tous_les_axes": params.completeness.global_requires_all_axes,
                        "regle_mednum_2019": params.completeness == Completeness(),
                    },
                }
            },
        )
    if method == "ifn_2023":
        if params.maille != "iris" and len(frame) < params.ifn.min_units:
            why = (
                f"{len(frame)} unité(s) de la maille {params.maille} dans le calcul, moins que ifn_2023.min_units "
                f"({params.ifn.min_units}) : des rangs déciles n'y auraient pas de sens ; notes non publiées"
            )
            return Scored(
                pd.DataFrame(index=frame.index), pd.DataFrame(index=frame.index), {"ifn_2023": {"non_publie": why}}
            )
        table, missing = score_ifn(
            pd.DataFrame({i.id: rates(frame, i.id) for i in indicators}, index=frame.index),
            params.ifn.indicator_sets,
            higher_is_better=frozenset(i.id for i in indicators if i.higher_is_better),
            mapping=params.ifn.mapping,
        )
        return Scored(
            table,
            pd.DataFrame(index=frame.index),
            {
                "ifn_2023": {
                    "notation": params.ifn.mapping,
                    "univers": params.ifn.universe
                    if params.maille == "iris"
                    else f"les {len(frame)} unités de la maille {params.maille} du calcul",
                    "precision_des_rangs": "taux arrondis à 9 chiffres significatifs avant le rang (égalités exactes)",
                    "ensembles": params.ifn.indicator_sets,
                    "indicateurs_absents": missing,
                }
            },
        )
    if method == "opale_2022":
        preset = params.weightings["opale_2022"]
        level = preset.reference or "territoire"
        local = score_mednum(frame, indicators, params.opale_reference or Reference(level)).scores
        score = composite_score(
            local,
            axis_of,
            scheme=preset.scheme,
            indicator_weights=preset.indicator_weights,
            axis_weights=preset.axis_weights,
        )
        expose = (score >= preset.threshold).astype("boolean").mask(score.isna())
        weak = reliability(frame, params.reliability) == "faible"
        set_aside = int((expose.fillna(False) & weak).sum())
        if params.reliability.exclude_from_exposed:
            expose = expose.mask(weak & expose.notna(), False)
        return Scored(
            pd.DataFrame({"opale_score": score, "opale_expose": expose}, index=frame.index),
            pd.DataFrame(index=frame.index),
            {
                "opale_2022": {
                    "libelle": preset.label,
                    "reference": level,
                    "seuil": preset.threshold,
                    "fiabilite_faible_ecartee": params.reliability.exclude_from_exposed,
                    "au_dessus_du_seuil_fiabilite_faible": set_aside,
                    "poids_axes": preset.axis_weights,
                    "poids_indicateurs": preset.indicator_weights or "égaux",
                }
            },
        )
    if method == "tic_2019":
        tic = estimate_people(frame, params.tic)
        return Scored(
            tic.estimates,
            pd.DataFrame(index=frame.index),
            {
                "tic_2019": {
                    "groupes": tic.groups,
                    "groupes_non_estimes": tic.skipped,
                    "avertissement": "les groupes se recouvrent : ne jamais additionner les colonnes est_*",
                    "mises_en_garde": {
                        n: g.caveat for n, g in params.tic.groups.items() if g.caveat and n in tic.groups
                    },
                    "taux_non_verifies": {
                        n: [o for o in g.rates if not g.rate_verified(o)]
                        for n, g in params.tic.groups.items()
                        if n in tic.groups and any(not g.rate_verified(o) for o in g.rates)
                    },
                }
            },
        )
    raise ValueError(f"unknown method {method!r}")


def combine(parts: list[Scored], index: pd.Index) -> Scored:
    """The methods' columns side by side, in the order given."""
    table = pd.concat([p.table for p in parts], axis=1) if parts else pd.DataFrame(index=index)
    references = next((p.references for p in parts if len(p.references.columns)), pd.DataFrame(index=index))
    metadata = {k: v for p in parts for k, v in p.metadata.items()}
    return Scored(table, references, metadata)


def score_all(frame: pd.DataFrame, indicators: list[Indicator], params: MethodParams) -> Scored:
    """Every method of `params.methods` in one pass, and the reliability flag of each row."""
    scored = combine([score_method(m, frame, indicators, params) for m in params.methods], frame.index)
    return with_reliability(scored, frame, params.reliability)


def reliability(frame: pd.DataFrame, rule: ReliabilityRule) -> pd.Series:
    """`faible` under `rule.min_population` residents or for an IRIS type of `rule.weak_types`
    (A activité, D divers: a few residents, extreme rates), else `bonne`."""
    population = frame["P_POP"].fillna(0) if "P_POP" in frame else pd.Series(0.0, index=frame.index)
    weak = population < rule.min_population
    if "TYP_IRIS" in frame:
        weak |= frame["TYP_IRIS"].astype("string").isin(rule.weak_types).fillna(False).astype(bool)
    return pd.Series(np.where(weak, "faible", "bonne"), index=frame.index)


def with_reliability(scored: Scored, frame: pd.DataFrame, rule: ReliabilityRule) -> Scored:
    """`fiabilite` added to the score table (published in every layer)."""
    scored.table[RELIABILITY_COLUMN] = reliability(frame, rule).to_numpy()
    scored.metadata["fiabilite"] = {
        "population_minimale": rule.min_population,
        "types_faibles": list(rule.weak_types),
        "faible": int((scored.table[RELIABILITY_COLUMN] == "faible").sum()),
    }
    return scored


def exposure_summary(frame: pd.DataFrame, expose: pd.Series, population: str = "P_POP") -> dict:
    """Exposed IRIS, the communes they fall in (Lyon, Paris, Marseille once, and separately by
    arrondissement) and the population living there."""
    exposed = frame.loc[expose.fillna(False).astype(bool)]
    communes = sorted(set(city_code(exposed["INSEE_COM"])))
    arrondissements = sorted(set(exposed["INSEE_COM"]) - set(communes))
    return {
        "iris_exposes": int(len(exposed)),
        "communes": len(communes),
        "codes_communes": communes,
        "communes_arrondissements_distincts": len(set(exposed["INSEE_COM"])),
        "arrondissements": arrondissements,
        "population": float(exposed[population].sum()) if population in exposed else None,
    }

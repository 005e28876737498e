"""Every scoring method in one pass, on any maille (IRIS, commune, EPCI, département).

The frame given in holds the identity keys (`INSEE_COM`, `EPCI`, `DEP`, `REG`), the indicator
pairs `<id>_num`/`<id>_den` and the census counts; the same call scores an IRIS table or a
table of summed counts, so coarser mailles are never averages of IRIS scores (§5).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from config.settings import ALL_METHODS, IfnConfig, Indicator, TicConfig, Weighting
from indice.ifn import score_ifn
from indice.mednum import Reference, rates, score_mednum
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
            frame, indicators, params.reference, legacy_2020=params.legacy_2020, weights=preset.indicator_weights
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
                }
            },
        )
    if method == "ifn_2023":
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
                    "univers": params.ifn.universe,
                    "ensembles": params.ifn.indicator_sets,
                    "indicateurs_absents": missing,
                }
            },
        )
    if method == "opale_2022":
        preset = params.weightings["opale_2022"]
        level = preset.reference or "territoire"
        local = score_mednum(frame, indicators, Reference(level)).scores
        score = composite_score(
            local,
            axis_of,
            scheme=preset.scheme,
            indicator_weights=preset.indicator_weights,
            axis_weights=preset.axis_weights,
        )
        expose = (score >= preset.threshold).astype("boolean").mask(score.isna())
        return Scored(
            pd.DataFrame({"opale_score": score, "opale_expose": expose}, index=frame.index),
            pd.DataFrame(index=frame.index),
            {
                "opale_2022": {
                    "libelle": preset.label,
                    "reference": level,
                    "seuil": preset.threshold,
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
    """Every method of `params.methods` in one pass."""
    return combine([score_method(m, frame, indicators, params) for m in params.methods], frame.index)


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

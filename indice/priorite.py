"""Priority zones: fragile IRIS far from digital help (docs/offre.md).

Two classes per IRIS, then a cross:
- fragility, from the global score (`score_global`, 100 = like the reference): `non_fragile`,
  `intermediaire`, `fragile`, cut at two thresholds (quantiles of the territory's IRIS, or values);
- accessibility, from the 2SFCA accessibility (`offre_2sfca`, places per 10,000 people at risk;
  or a distance, higher = farther): `eloigne`, `intermediaire`, `proche`;
- `priorite` = matrice[fragility][accessibility]: by default `forte` for a fragile IRIS far from
  help, `moyenne` for fragile-and-intermediate or intermediate-and-far, `faible` otherwise.

A value v is in the low class when v ≤ t_low, the middle one when t_low < v ≤ t_high, the high one
when v > t_high: an IRIS with no place in its catchment (2SFCA = 0) is « éloigné » even when many
IRIS share that value. An IRIS without a score or a measure has no class (missing, never « faible »).
Pure functions: frames in, frames out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from config.offre import PRIORITY_CLASSES, AccessThresholds, FragilityThresholds, PriorityConfig

CLASS_COLUMNS = ("classe_fragilite", "classe_accessibilite", "priorite")


def thresholds(values: pd.Series, rule: FragilityThresholds | AccessThresholds) -> tuple[float, float]:
    """The two cut values: quantiles of the present values, or the configured values."""
    low, high = rule.seuils
    if rule.type == "valeur":
        return float(low), float(high)
    present = values.dropna().astype("float64")
    if present.empty:
        return np.nan, np.nan
    return float(present.quantile(low)), float(present.quantile(high))


def three_classes(values: pd.Series, cuts: tuple[float, float], labels: tuple[str, str, str]) -> pd.Series:
    """labels[0] when v ≤ low, labels[1] when low < v ≤ high, labels[2] when v > high; missing
    values (and missing cuts) stay missing."""
    low, high = cuts
    v = values.astype("float64")
    out = pd.Series(pd.NA, index=values.index, dtype="string")
    if np.isnan(low) or np.isnan(high):
        return out
    out[v <= low] = labels[0]
    out[(v > low) & (v <= high)] = labels[1]
    out[v > high] = labels[2]
    return out


def fragility_class(score: pd.Series, rule: FragilityThresholds) -> pd.Series:
    labels = ("non_fragile", "intermediaire", "fragile")
    return three_classes(score, thresholds(score, rule), labels if rule.plus_haut_est_fragile else labels[::-1])


def access_class(measure: pd.Series, rule: AccessThresholds) -> pd.Series:
    labels = ("eloigne", "intermediaire", "proche")
    return three_classes(measure, thresholds(measure, rule), labels if rule.plus_haut_est_proche else labels[::-1])


def priority(frame: pd.DataFrame, config: PriorityConfig) -> pd.DataFrame:
    """`classe_fragilite`, `classe_accessibilite`, `priorite` for each row of `frame` (which holds
    the fragility and accessibility columns the configuration names); the cut values in `attrs`."""
    for column in (config.fragilite.colonne, config.accessibilite.colonne):
        if column not in frame.columns:
            raise ValueError(
                f"colonne {column!r} absente pour les zones prioritaires ; colonnes présentes : {sorted(frame.columns)[:30]}"
            )
    fragility = fragility_class(frame[config.fragilite.colonne], config.fragilite)
    access = access_class(frame[config.accessibilite.colonne], config.accessibilite)
    crossed = [
        config.matrice[f][a] if isinstance(f, str) and isinstance(a, str) else pd.NA
        for f, a in zip(fragility, access, strict=True)
    ]
    out = pd.DataFrame(
        {
            "classe_fragilite": fragility,
            "classe_accessibilite": access,
            "priorite": pd.Series(crossed, index=frame.index, dtype="string"),
        },
        index=frame.index,
    )
    out.attrs["seuils"] = {
        config.fragilite.colonne: list(thresholds(frame[config.fragilite.colonne], config.fragilite)),
        config.accessibilite.colonne: list(thresholds(frame[config.accessibilite.colonne], config.accessibilite)),
    }
    return out


def people_by_priority(frame: pd.DataFrame, key: str, people: str = "offre_demande") -> pd.DataFrame:
    """Per `key` (INSEE_COM, EPCI…): people at risk and IRIS in each priority class, and the share
    of the people in `forte`. Rows without a class count in `personnes_non_classees`."""
    data = frame[[key, people, "priorite"]].copy()
    data["priorite"] = data["priorite"].astype("object").where(data["priorite"].notna(), "non_classee")
    persons = data.pivot_table(index=key, columns="priorite", values=people, aggfunc="sum", fill_value=0.0)
    counts = data.pivot_table(index=key, columns="priorite", values=people, aggfunc="size", fill_value=0)
    out = pd.DataFrame(index=persons.index)
    for label in (*PRIORITY_CLASSES, "non_classee"):
        suffix = label if label != "non_classee" else "non_classees"
        out[f"personnes_{'priorite_' if label != 'non_classee' else ''}{suffix}"] = (
            persons[label].astype("float64") if label in persons else 0.0
        )
        out[f"iris_{'priorite_' if label != 'non_classee' else ''}{suffix}"] = (
            counts[label].astype("int64") if label in counts else 0
        )
    total = data.groupby(key)[people].sum()
    out["part_personnes_priorite_forte"] = (out["personnes_priorite_forte"] / total.where(total > 0)).astype("float64")
    return out.reset_index()

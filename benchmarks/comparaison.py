"""The default method against the scores La MedNum published in 2020, on the embedded sample.

    python -m benchmarks.comparaison

Runs the IRIS chain (transforms.chain) and MedNum scoring (indice.mednum) on the Rhône sample
with the département reference, in four variants that add one difference at a time, and prints,
for each, against the published `SCORE GLOBAL departement 1`: the Spearman rank correlation, the
share of the published top quintile (20 % most fragile IRIS) found in the variant's top quintile,
and the median absolute gap. Figures quoted in docs/comparaison-mednum-2020.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from config import load_catalogue, load_settings
from config.settings import PROJECT_ROOT
from indice.mednum import Reference, commune_mean_ids, score_mednum, unit_references
from sources.registry import PARSERS
from transforms.chain import CENSUS_INPUTS, INDICATOR_INPUTS, iris_indicators, territory_base
from transforms.territory import Territory

PUBLISHED = PROJECT_ROOT / "data" / "sample-69" / "reference" / "mednum-2020-scores_dep69.csv"
PUBLISHED_SCORE = "SCORE GLOBAL departement 1"
# The indicators of the 2020 publication (its `CM …` columns).
INDICATORS_2020 = ("men_seul", "fam_mono", "pop_1529", "pop_65p", "non_dipl", "revenu_median")


@dataclass(frozen=True)
class Variant:
    label: str
    legacy_2020: bool
    indicators: tuple[str, ...] | None  # None: every indicator of the sample


VARIANTS = (
    Variant("publication 2020 reproduite (legacy_2020, 6 indicateurs)", True, INDICATORS_2020),
    Variant("revenu IRIS inversé, zéros exclus (6 indicateurs)", False, INDICATORS_2020),
    Variant("+ non_thd (débit ARCEP communal)", False, (*INDICATORS_2020, "non_thd")),
    Variant("méthode par défaut, 9 indicateurs (+ pauvrete, minima)", False, None),
)


def spearman(a: pd.Series, b: pd.Series) -> float:
    """Pearson correlation of the ranks (average ranks for ties)."""
    return float(np.corrcoef(a.rank(), b.rank())[0, 1])


def top_quintile_overlap(a: pd.Series, b: pd.Series) -> float:
    """Share of b's 20 % highest scores that are also among a's 20 % highest."""
    n = int(round(0.2 * len(a)))
    return len(set(a.nlargest(n).index) & set(b.nlargest(n).index)) / n


def scores(variant: Variant) -> pd.Series:
    """SCORE GLOBAL of each IRIS of the sample under `variant` (département reference, whole)."""
    settings = load_settings()
    paths = settings.input_paths()
    keys = ("contours_iris", "communes_epci", *CENSUS_INPUTS, *INDICATOR_INPUTS)
    inputs = {k: PARSERS[k](paths[k]) if k in paths else None for k in keys}
    base = territory_base(
        inputs["contours_iris"],
        inputs["communes_epci"],
        {k: inputs[k] for k in CENSUS_INPUTS},
        Territory("échantillon"),
        reference_level="departement",
    )
    catalogue = load_catalogue()
    result = iris_indicators(
        base.frame,
        {**{k: inputs[k] for k in INDICATOR_INPUTS}, "connectivite": None},
        catalogue.indicators,
        legacy_2020=variant.legacy_2020,
    )
    frame = pd.DataFrame(result.frame.drop(columns="geometry"))
    indicators = [
        i
        for i in catalogue.indicators
        if f"{i.id}_num" in frame and (variant.indicators is None or i.id in variant.indicators)
    ]
    fixed = unit_references(
        frame, indicators, "departement", commune_mean=commune_mean_ids(indicators, variant.legacy_2020)
    )
    scored = score_mednum(frame, indicators, Reference("departement", fixed), legacy_2020=variant.legacy_2020)
    return pd.Series(scored.scores["score_global"].to_numpy(), index=frame["CODE_IRIS"])


def main() -> None:
    published = pd.read_csv(PUBLISHED, sep=";", dtype={"CODE_IRIS": str}).set_index("CODE_IRIS")[PUBLISHED_SCORE]
    print(f"référence : {PUBLISHED.name}, colonne « {PUBLISHED_SCORE} », {published.notna().sum()} IRIS")
    print(f"{'variante':<58} {'IRIS':>5} {'Spearman':>9} {'quintile':>9} {'écart méd.':>10}")
    for variant in VARIANTS:
        ours = scores(variant)
        both = pd.concat([ours.rename("ours"), published.rename("pub")], axis=1, join="inner").dropna()
        print(
            f"{variant.label:<58} {len(both):>5} {spearman(both['ours'], both['pub']):>9.4f} "
            f"{top_quintile_overlap(both['ours'], both['pub']):>9.1%} "
            f"{(both['ours'] - both['pub']).abs().median():>10.2f}"
        )


if __name__ == "__main__":
    main()

"""Group `indice`: scores of the MedNum 2019 method (or its 2020 publication)."""


import dagster as dg
import geopandas as gpd
import pandas as pd

from config import Settings
from config.settings import ConfigError
from indice.mednum import Reference, score_mednum
from pipelines.reporting import report, table_metadata
from pipelines.resources import FragiliteConfig

GROUP = "indice"
OWNERS = ["team:fragilite-numerique"]
KEY_COLUMNS = ["CODE_IRIS", "INSEE_COM", "EPCI", "DEP", "REG"]


def reference_from_settings(settings: Settings, millesime_rp: int) -> Reference:
    """The reference level, with configured values for region/france at this census vintage."""
    level = settings.run.reference
    if level not in ("region", "france"):
        return Reference(level)
    fixed = {
        rv.code: rv.for_mode(settings.run.legacy_2020)
        for rv in settings.reference_values
        if rv.level == level and rv.millesime_rp == millesime_rp
    }
    if not fixed:
        raise ConfigError(
            f"reference {level!r}: no reference values for RP {millesime_rp} in the configuration; "
            f"add a `reference_values` entry (level: {level}, millesime_rp: {millesime_rp}, values: …) "
            "or choose --reference departement, epci or territoire"
        )
    return Reference(level, fixed)


def method_label(settings: Settings) -> str:
    return "mednum_2019" + ("_legacy_2020" if settings.run.legacy_2020 else "")


@dg.asset(
    group_name=GROUP,
    kinds={"pandas"},
    owners=OWNERS,
    tags={"maille": "iris", "methode": "mednum_2019"},
)
def iris_scores(
    context: dg.AssetExecutionContext,
    fragilite: FragiliteConfig,
    iris_base: gpd.GeoDataFrame,
    iris_indicateurs: pd.DataFrame,
) -> dg.Output:
    """Scores MedNum par indicateur (100 = comme la référence), par axe, ACCÈS, COMPÉTENCES et
    score global, moyennes des scores d'indicateurs disponibles (un indicateur absent est ignoré,
    jamais compté 0)."""
    settings, catalogue = fragilite.settings, fragilite.catalogue
    millesime = int(iris_base["millesime_rp"].iloc[0])
    reference = reference_from_settings(settings, millesime)
    indicators = [i for i in catalogue.indicators if f"{i.id}_num" in iris_indicateurs.columns]
    frame = pd.concat(
        [iris_base[[c for c in KEY_COLUMNS if c in iris_base.columns]], iris_indicateurs.drop(columns="CODE_IRIS")],
        axis=1,
    )
    result = score_mednum(frame, indicators, reference, legacy_2020=settings.run.legacy_2020)
    scores = pd.concat([iris_base[["CODE_IRIS"]], result.scores], axis=1)
    group_col = {"departement": "DEP", "epci": "EPCI", "region": "REG"}.get(reference.level)
    refs = pd.concat([frame[[group_col]] if group_col else pd.DataFrame({"territoire": "territoire"}, index=frame.index),
                      result.references], axis=1).drop_duplicates()
    scored = int(scores["score_global"].notna().sum())
    report(context, f"iris_scores: {scored}/{len(scores)} IRIS scorés ({method_label(settings)}, "
                    f"référence {reference.level})")
    return dg.Output(scores, metadata={
        **table_metadata(scores),
        "methode": method_label(settings),
        "reference": reference.level,
        "reference_source": "valeurs de la configuration (IRIS de ce niveau non chargés)"
        if reference.level in ("region", "france") else "calculée sur les IRIS chargés",
        "valeurs_de_reference": dg.MetadataValue.md(refs.to_markdown(index=False)),
        "indicateurs_sans_score": dg.MetadataValue.json(result.unscored),
        "iris_scores": scored,
    })

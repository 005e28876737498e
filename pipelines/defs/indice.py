"""Group `indice`: every selected scoring method, on the IRIS and on the coarser mailles."""

from dataclasses import replace

import dagster as dg
import pandas as pd

from config import Settings
from config.settings import ConfigError
from indice.mednum import GROUP_COLUMN, Reference
from indice.methods import MethodParams, Scored, combine, exposure_summary, score_all, score_method
from pipelines.reporting import report, table_metadata
from pipelines.resources import FragiliteConfig
from transforms.indicators import IndicatorResult

GROUP = "indice"
OWNERS = ["team:fragilite-numerique"]


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


def method_params(fragilite: FragiliteConfig, frame: pd.DataFrame) -> MethodParams:
    settings = fragilite.settings
    methods = fragilite.methods
    if methods.ifn_2023.universe == "france" and "ifn_2023" in settings.run.methods:
        loaded = set(frame["DEP"])
        if len(loaded) < 96:
            raise ConfigError(
                f"ifn_2023.universe is 'france' but the inputs cover {len(loaded)} département(s); "
                "load national inputs or set universe: territoire in config/methods.yaml"
            )
    return MethodParams(
        reference=reference_from_settings(settings, int(frame["millesime_rp"].iloc[0])),
        weightings=methods.weightings,
        ifn=methods.ifn_2023,
        tic=fragilite.tic,
        methods=tuple(settings.run.methods),
        legacy_2020=settings.run.legacy_2020,
    )


def scored_indicators(fragilite: FragiliteConfig, table: pd.DataFrame) -> list:
    return [i for i in fragilite.catalogue.indicators if f"{i.id}_num" in table.columns]


METHOD_DESCRIPTIONS = {
    "mednum_2019": "Méthode MedNum 2019 : score de chaque indicateur (100 = comme la référence), des quatre "
    "axes, ACCÈS, COMPÉTENCES et score global (moyennes groupées des scores disponibles).",
    "ifn_2023": "Indice national IFN 2023 : notes 1–10 par rang décile des indicateurs, moyenne non pondérée, "
    "et les déclinaisons Senior et Jeune.",
    "opale_2022": "Pondération locale type Opale : moyenne pondérée des moyennes d'axes, référence = territoire "
    "d'étude, IRIS exposés au-delà du seuil.",
    "tic_2019": "Personnes à risque estimées : taux nationaux de l'enquête TIC 2019 de l'INSEE appliqués aux "
    "effectifs de chaque groupe (groupes qui se recouvrent).",
}


def _method_asset(method: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=f"iris_{method}",
        group_name=GROUP,
        kinds={"pandas"},
        owners=OWNERS,
        tags={"maille": "iris", "methode": method},
        description=METHOD_DESCRIPTIONS[method],
    )
    def _asset(
        context: dg.AssetExecutionContext, fragilite: FragiliteConfig, iris_indicateurs: IndicatorResult
    ) -> dg.Output:
        frame = pd.DataFrame(iris_indicateurs.frame.drop(columns="geometry"))
        if method not in fragilite.settings.run.methods:
            report(context, f"iris_{method}: méthode non retenue (run.methods)")
            return dg.Output(
                Scored(pd.DataFrame(index=frame.index), pd.DataFrame(index=frame.index), {}),
                metadata={"retenue": False},
            )
        params = method_params(fragilite, frame)
        scored = score_method(method, frame, scored_indicators(fragilite, frame), params)
        report(context, f"iris_{method}: {len(scored.table.columns)} colonnes")
        return dg.Output(
            scored,
            metadata={
                "retenue": True,
                **table_metadata(pd.concat([frame[["CODE_IRIS"]], scored.table], axis=1)),
                **{f"methode_{k}": dg.MetadataValue.json(v) for k, v in scored.metadata.items()},
            },
        )

    return _asset


iris_mednum_2019 = _method_asset("mednum_2019")
iris_ifn_2023 = _method_asset("ifn_2023")
iris_opale_2022 = _method_asset("opale_2022")
iris_tic_2019 = _method_asset("tic_2019")


@dg.asset(
    group_name=GROUP,
    kinds={"pandas"},
    owners=OWNERS,
    tags={"maille": "iris"},
)
def iris_scores(
    context: dg.AssetExecutionContext,
    fragilite: FragiliteConfig,
    iris_indicateurs: IndicatorResult,
    iris_mednum_2019: Scored,
    iris_ifn_2023: Scored,
    iris_opale_2022: Scored,
    iris_tic_2019: Scored,
) -> dg.Output:
    """Toutes les méthodes retenues réunies par IRIS, avec les valeurs de référence, les paramètres
    de chaque méthode et le résumé des IRIS exposés (Opale) : ce que publient les couches."""
    frame = pd.DataFrame(iris_indicateurs.frame.drop(columns="geometry"))
    params = method_params(fragilite, frame)
    by_method = {
        "mednum_2019": iris_mednum_2019,
        "ifn_2023": iris_ifn_2023,
        "opale_2022": iris_opale_2022,
        "tic_2019": iris_tic_2019,
    }
    scored = combine([by_method[m] for m in params.methods], frame.index)
    scored.metadata = _method_metadata(scored, frame, params)
    meta = scored.metadata
    table = pd.concat([frame[["CODE_IRIS"]], scored.table], axis=1)
    summary = meta.get("opale_resume")
    report(
        context,
        f"iris_scores: {int(table['score_global'].notna().sum()) if 'score_global' in table else 0}"
        f"/{len(table)} IRIS notés ({', '.join(params.methods)}, référence {params.reference.level})"
        + (f"; {summary['iris_exposes']} IRIS exposés (Opale)" if summary else ""),
    )
    return dg.Output(
        scored,
        metadata={
            **table_metadata(table),
            "methode": method_label(fragilite.settings),
            "reference": params.reference.level,
            "reference_source": "valeurs de la configuration (IRIS de ce niveau non chargés)"
            if params.reference.level in ("region", "france")
            else "calculée sur les IRIS chargés",
            "valeurs_de_reference": dg.MetadataValue.md(
                _reference_table(frame, scored, params).to_markdown(index=False)
            ),
            "iris_scores": int(table["score_global"].notna().sum()) if "score_global" in table else 0,
            **{k: dg.MetadataValue.json(v) for k, v in meta.items()},
        },
    )


def _method_metadata(scored: Scored, frame: pd.DataFrame, params: MethodParams) -> dict:
    """What produced the columns, per method, plus the Opale exposure summary."""
    meta = {f"methode_{k}": v for k, v in scored.metadata.items()}
    if "opale_expose" in scored.table:
        meta["opale_resume"] = exposure_summary(frame, scored.table["opale_expose"])
    return meta


def _reference_table(frame: pd.DataFrame, scored: Scored, params: MethodParams) -> pd.DataFrame:
    column = GROUP_COLUMN.get(params.reference.level)
    keys = frame[[column]] if column else pd.DataFrame({"territoire": "territoire"}, index=frame.index)
    return pd.concat([keys, scored.references], axis=1).drop_duplicates()


@dg.asset(
    group_name=GROUP,
    kinds={"pandas"},
    owners=OWNERS,
    tags={"maille": "commune-epci-departement"},
)
def mailles_scores(
    context: dg.AssetExecutionContext,
    fragilite: FragiliteConfig,
    mailles: dict,
) -> dg.Output:
    """Les mêmes méthodes, avec la même référence, appliquées aux communes, EPCI et départements
    à partir de leurs sommes d'effectifs (jamais des moyennes de scores d'IRIS)."""
    out = {}
    for name, table in mailles.items():
        frame = pd.DataFrame(table.drop(columns="geometry"))
        params = method_params(fragilite, frame)
        column = GROUP_COLUMN.get(params.reference.level)
        if column and column not in frame:
            # e.g. --reference epci on the département layer: the study territory stands in.
            params = replace(params, reference=Reference("territoire"))
        scored = score_all(frame, scored_indicators(fragilite, table), params)
        scored.metadata["reference"] = params.reference.level
        out[name] = scored
    report(context, "mailles_scores: " + ", ".join(f"{len(s.table)} {n}" for n, s in out.items()))
    return dg.Output(out, metadata={f"lignes_{n}": len(s.table) for n, s in out.items()})

"""Group `indice`: every selected scoring method, on the IRIS and on the coarser mailles."""

from dataclasses import replace

import dagster as dg
import pandas as pd

from config import Settings
from config.settings import ALL_METHODS, METHOD_DESCRIPTIONS, ConfigError, load_publication
from indice.mednum import GROUP_COLUMN, Completeness, Reference, commune_mean_ids, unit_references
from indice.methods import (
    MethodParams,
    Scored,
    combine,
    exposure_summary,
    score_all,
    score_method,
    with_reliability,
)
from outputs.disclosure import Nesting, suppression_masks
from pipelines.reporting import report, table_metadata
from pipelines.resources import FragiliteConfig
from transforms.geo_codes import ARRONDISSEMENT_TO_CITY
from transforms.indicators import IndicatorResult
from transforms.mailles import MAILLE_KEYS

GROUP = "indice"
OWNERS = ["team:fragilite-numerique"]


def reference_from_settings(settings: Settings, millesime_rp: int, level: str | None = None) -> Reference:
    """The reference level, with configured values for region/france at this census vintage."""
    level = level or settings.run.reference
    if level not in ("region", "france"):
        return Reference(level)
    fixed = {
        rv.code: rv.for_mode(settings.run.legacy_2020)
        for rv in settings.reference_values
        if rv.level == level and rv.millesime_rp == millesime_rp
    }
    if not fixed:
        raise ConfigError(
            f"référence {level!r} : aucune valeur de référence pour le RP {millesime_rp} dans la configuration ; "
            f"ajoutez une entrée `reference_values` (level: {level}, millesime_rp: {millesime_rp}, values: …) "
            "ou choisissez --reference departement, epci ou territoire"
        )
    return Reference(level, fixed)


def method_label(settings: Settings) -> str:
    return "mednum_2019" + ("_legacy_2020" if settings.run.legacy_2020 else "")


def reference_level(settings: Settings, frame: pd.DataFrame) -> str:
    """The level the run scores against: the one `iris_base` settled on (a named fallback when the
    asked level was incomplete in the inputs), else the configured one."""
    return (frame.attrs.get("reference") or {}).get("niveau") or settings.run.reference


def whole_unit_reference(
    settings: Settings, level: str, universe: pd.DataFrame, territory: pd.DataFrame, indicators: list
) -> Reference:
    """x_k(R) of every reference unit, computed once on its whole IRIS (`universe`; the study
    territory for `territoire`), so that any subset or maille is scored against the same values."""
    if level in ("region", "france"):
        return reference_from_settings(settings, int(universe["millesime_rp"].iloc[0]), level)
    rows = territory if level == "territoire" else universe
    commune_mean = commune_mean_ids(indicators, settings.run.legacy_2020)
    return Reference(level, unit_references(rows, indicators, level, commune_mean=commune_mean))


def method_params(
    fragilite: FragiliteConfig,
    frame: pd.DataFrame,
    *,
    universe: pd.DataFrame | None = None,
    territory: pd.DataFrame | None = None,
    maille: str = "iris",
) -> MethodParams:
    """Parameters of every method for `frame` (IRIS or a coarser maille). `universe` is every IRIS
    of the whole reference units, `territory` the IRIS of the study territory (both default to
    `frame`: the national merge is its own universe)."""
    settings = fragilite.settings
    methods = fragilite.methods
    universe = frame if universe is None else universe
    territory = frame if territory is None else territory
    if methods.ifn_2023.universe == "france" and "ifn_2023" in settings.run.methods:
        loaded = set(territory["DEP"])
        if len(loaded) < 96:
            raise ConfigError(
                f"ifn_2023.universe vaut 'france' mais les entrées couvrent {len(loaded)} département(s) ; "
                "chargez les fichiers nationaux ou mettez universe: territoire dans config/methods.yaml"
            )
    indicators = scored_indicators(fragilite, universe)
    level = reference_level(settings, universe)
    opale_level = methods.weightings["opale_2022"].reference or "territoire"
    return MethodParams(
        reference=whole_unit_reference(settings, level, universe, territory, indicators),
        weightings=methods.weightings,
        ifn=methods.ifn_2023,
        tic=fragilite.tic,
        methods=tuple(settings.run.methods),
        legacy_2020=settings.run.legacy_2020,
        opale_reference=Reference(opale_level, unit_references(territory, indicators, opale_level))
        if opale_level == "territoire"
        else Reference(opale_level, unit_references(universe, indicators, opale_level)),
        completeness=Completeness(**methods.completeness.model_dump()),
        reliability=methods.reliability,
        maille=maille,
    )


def scored_indicators(fragilite: FragiliteConfig, table: pd.DataFrame) -> list:
    return [i for i in fragilite.catalogue.indicators if f"{i.id}_num" in table.columns]


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
        params = iris_params(fragilite, iris_indicateurs)
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


# One asset per method declared in config/methods.yaml (`methods:`).
METHOD_ASSETS: list[dg.AssetsDefinition] = [_method_asset(method) for method in ALL_METHODS]


@dg.asset(
    group_name=GROUP,
    kinds={"pandas"},
    owners=OWNERS,
    tags={"maille": "iris"},
    ins={f"iris_{method}": dg.AssetIn(f"iris_{method}") for method in ALL_METHODS},
)
def iris_scores(
    context: dg.AssetExecutionContext,
    fragilite: FragiliteConfig,
    iris_indicateurs: IndicatorResult,
    **by_asset: Scored,
) -> dg.Output:
    """Toutes les méthodes retenues réunies par IRIS, avec la fiabilité de chaque IRIS, ce sur quoi
    repose chaque score (nombre d'indicateurs notés, indicateurs manquants), les unités de
    référence (entières : leurs IRIS, leurs taux), les paramètres de chaque méthode et le résumé
    des IRIS exposés (Opale) : ce que publient les couches."""
    frame = pd.DataFrame(iris_indicateurs.frame.drop(columns="geometry"))
    params = iris_params(fragilite, iris_indicateurs)
    parts = [by_asset[f"iris_{m}"] for m in params.methods]
    scored = with_reliability(combine(parts, frame.index), frame, params.reliability)
    universe = iris_indicateurs.reference_frame
    meta = _method_metadata(scored, frame, params)
    meta["unites_de_reference"] = reference_units(params, universe, frame)
    meta["univers_de_reference"] = universe.attrs.get("reference") or {"niveau": params.reference.level}
    meta["completude"] = completeness_summary(scored.table)
    meta["indicateurs_sans_reference"] = (scored.metadata.get("mednum_2019") or {}).get("indicateurs_sans_score", {})
    scored.metadata = {**meta, "reference": params.reference.level}
    table = pd.concat([frame[["CODE_IRIS"]], scored.table], axis=1)
    summary = meta.get("opale_resume")
    noted = int(table["score_global"].notna().sum()) if "score_global" in table else 0
    report(
        context,
        f"iris_scores: {noted}/{len(table)} IRIS notés ({', '.join(params.methods)}, référence "
        f"{params.reference.level} : {len(meta['unites_de_reference'])} unité(s), "
        f"{len(universe)} IRIS)" + (f"; {summary['iris_exposes']} IRIS exposés (Opale)" if summary else ""),
    )
    return dg.Output(
        scored,
        metadata={
            **table_metadata(table),
            "methode": method_label(fragilite.settings),
            "reference": params.reference.level,
            "reference_source": "valeurs de la configuration (IRIS de ce niveau non chargés)"
            if params.reference.level in ("region", "france")
            else f"calculée sur les unités de référence entières ({len(universe)} IRIS)",
            "valeurs_de_reference": dg.MetadataValue.md(
                pd.DataFrame(
                    [{"unite": u["unite"], "iris": u["iris"], **u["taux"]} for u in meta["unites_de_reference"]]
                ).to_markdown(index=False)
            ),
            "iris_scores": noted,
            **{k: dg.MetadataValue.json(v) for k, v in meta.items()},
        },
    )


def iris_params(fragilite: FragiliteConfig, iris: IndicatorResult) -> MethodParams:
    """The methods' parameters for the study territory's IRIS, with reference values computed
    on the whole reference units."""
    return method_params(fragilite, iris.frame, universe=iris.reference_frame, territory=iris.frame)


def reference_units(params: MethodParams, universe: pd.DataFrame, territory: pd.DataFrame) -> list[dict]:
    """Each reference unit the run's IRIS are scored against: code, IRIS count (None for
    configured values), reference rates."""
    reference = params.reference
    column = GROUP_COLUMN.get(reference.level)
    rows = territory if reference.level == "territoire" else universe
    if reference.level in ("region", "france"):
        counts = dict.fromkeys(reference.fixed, None)
    elif column:
        counts = rows[column].dropna().astype(str).value_counts().to_dict()
    else:
        counts = {"territoire": len(rows)}
    return [
        {"unite": code, "iris": None if n is None else int(n), "taux": dict(reference.fixed.get(code, {}))}
        for code, n in sorted(counts.items())
    ]


def completeness_summary(table: pd.DataFrame) -> dict:
    """How many IRIS rest on how many indicators, which indicators are missing where: the scores
    of a run rest on one indicator set (`homogene`) or not."""
    if "nb_indicateurs_notes" not in table:
        return {}
    scored = table[table["score_global"].notna()] if "score_global" in table else table
    sets = scored["nb_indicateurs_notes"].value_counts().sort_index(ascending=False)
    # Split once per distinct list, not per IRIS: most IRIS share one or two lists.
    lists = scored["indicateurs_manquants"].fillna("").value_counts()
    counts: dict[str, int] = {}
    for text, n in lists.items():
        for ind_id in filter(None, str(text).split(",")):
            counts[ind_id] = counts.get(ind_id, 0) + int(n)
    missing = dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))
    return {
        "homogene": bool(scored["indicateurs_manquants"].nunique() <= 1),
        "iris_par_nombre_d_indicateurs": {str(k): int(v) for k, v in sets.items()},
        "iris_sans_l_indicateur": {str(k): int(v) for k, v in missing.items()},
    }


def _method_metadata(scored: Scored, frame: pd.DataFrame, params: MethodParams) -> dict:
    """What produced the columns, per method, plus the Opale exposure summary."""
    meta = {f"methode_{k}": v for k, v in scored.metadata.items() if k != "fiabilite"}
    meta["fiabilite"] = scored.metadata.get("fiabilite", {})
    if "opale_expose" in scored.table:
        meta["opale_resume"] = {
            **exposure_summary(frame, scored.table["opale_expose"]),
            "iris_fiabilite_faible_ecartees": (scored.metadata.get("opale_2022") or {}).get(
                "au_dessus_du_seuil_fiabilite_faible", 0
            )
            if params.reliability.exclude_from_exposed
            else 0,
        }
    return meta


def maille_scores(
    fragilite: FragiliteConfig,
    name: str,
    table: pd.DataFrame,
    iris_indicateurs: IndicatorResult,
    exclude: list[str] = (),
) -> Scored:
    """One maille's scores, with the IRIS' reference values (`exclude`: indicators left out, for
    the units under the CAF secret)."""
    frame = pd.DataFrame(table.drop(columns="geometry", errors="ignore"))
    params = method_params(
        fragilite,
        frame,
        universe=iris_indicateurs.reference_frame,
        territory=iris_indicateurs.frame,
        maille=name,
    )
    column = GROUP_COLUMN.get(params.reference.level)
    if column and column not in frame:
        # e.g. --reference epci on the département layer: the study territory stands in, named.
        territory = iris_indicateurs.frame
        indicators = scored_indicators(fragilite, territory)
        fixed = unit_references(
            territory,
            indicators,
            "territoire",
            commune_mean=commune_mean_ids(indicators, fragilite.settings.run.legacy_2020),
        )
        params = replace(params, reference=Reference("territoire", fixed))
    indicators = [i for i in scored_indicators(fragilite, frame) if i.id not in exclude]
    scored = score_all(frame, indicators, params)
    scored.metadata["reference"] = params.reference.level
    return scored


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
    iris_indicateurs: IndicatorResult,
) -> dg.Output:
    """Les mêmes méthodes, avec les mêmes valeurs de référence que les IRIS (calculées sur les
    unités de référence entières), appliquées aux communes, EPCI et départements à partir de leurs
    sommes d'effectifs (jamais des moyennes de scores d'IRIS). Les notes IFN d'une maille sont des
    rangs parmi les unités de cette maille, non publiées quand elles sont trop peu nombreuses."""
    out = {name: maille_scores(fragilite, name, table, iris_indicateurs) for name, table in mailles.items()}
    report(context, "mailles_scores: " + ", ".join(f"{len(s.table)} {n}" for n, s in out.items()))
    return dg.Output(out, metadata={f"lignes_{n}": len(s.table) for n, s in out.items()})


# --- secret statistique: composites that do not give a blanked CAF score back -----------------

# Key column of each table the secret is decided on.
SECRET_KEYS = {**MAILLE_KEYS, "villes": MAILLE_KEYS["communes"]}
CAF_NESTINGS = (
    Nesting("iris", "communes", "INSEE_COM", "INSEE_COM"),
    Nesting("communes", "villes", "_ville", "INSEE_COM"),
    Nesting("communes", "epci", "EPCI", "EPCI"),
    Nesting("communes", "departements", "DEP", "DEP"),
)


def caf_indicator_ids(fragilite: FragiliteConfig) -> list[str]:
    return [i.id for i in fragilite.catalogue.indicators if i.source == "caf_non_connectes"]


def _with_cities(mailles: dict) -> dict[str, pd.DataFrame]:
    """The count tables the secret is checked on: the IRIS' mailles, plus Paris, Lyon and
    Marseille as sums of their arrondissements (the pack publishes them: `_ville` on the
    arrondissement rows names the city)."""
    tables = {name: pd.DataFrame(table.drop(columns="geometry", errors="ignore")) for name, table in mailles.items()}
    communes = tables.get("communes")
    if communes is not None:
        communes["_ville"] = communes["INSEE_COM"].astype(str).map(ARRONDISSEMENT_TO_CITY)
        counts = [c for c in communes.columns if c.endswith(("_num", "_den"))]
        cities = communes.dropna(subset=["_ville"]).groupby("_ville", as_index=False)[counts].sum(min_count=1)
        tables["villes"] = cities.rename(columns={"_ville": "INSEE_COM"})
    return tables


@dg.asset(
    group_name=GROUP,
    kinds={"pandas"},
    owners=OWNERS,
    tags={"maille": "iris-commune-epci-departement"},
    # The longest step just before the outputs: started first when its inputs are ready, the
    # offer's steps run beside it (pipelines/executor.py).
    op_tags={"dagster/priority": "1"},
)
def scores_publies(
    fragilite: FragiliteConfig,
    iris_indicateurs: IndicatorResult,
    iris_scores: Scored,
    mailles: dict,
    mailles_scores: dict,
) -> dg.Output:
    """Les scores tels qu'ils sont publiés : le secret statistique des effectifs CAF appliqué à
    toutes les mailles publiées (secret primaire sous le seuil, secondaire dans chaque maille
    parente, vérifié contre les relations additives entre mailles), et les scores des unités
    masquées recalculés sans l'indicateur CAF, pour qu'un score d'axe ou global ne rende pas la
    valeur masquée. `iris` et `mailles` : les scores ; `secret` : par table (`iris`, `communes`,
    `epci`, `departements`, `villes`), les codes des unités masquées. Identiques à `iris_scores`
    et `mailles_scores` sans données CAF."""
    iris, by_maille, secret = protect_caf(fragilite, iris_indicateurs, iris_scores, mailles, mailles_scores)
    counts = {name: len(codes) for name, codes in secret.items()}
    return dg.Output(
        {"iris": iris, "mailles": by_maille, "secret": {name: sorted(codes) for name, codes in secret.items()}},
        metadata={"unites_masquees": dg.MetadataValue.json(counts), "masquees": sum(counts.values())},
    )


def protect_caf(
    fragilite: FragiliteConfig,
    iris_indicateurs: IndicatorResult,
    iris_scores: Scored,
    mailles: dict,
    mailles_scores: dict[str, Scored],
) -> tuple[Scored, dict[str, Scored], dict[str, set[str]]]:
    """The CAF secret across every published maille (outputs.disclosure: primary and secondary
    suppression, audited against the additive relations between mailles), and the scores of each
    blanked unit recomputed without the CAF indicator, so that an axis or global score does not
    give the blanked score back. Returns the IRIS scores, the mailles' scores and, per table
    (`iris`, `communes`, `epci`, `departements`, `villes`), the codes of the units blanked;
    unchanged without CAF data."""
    caf = [i for i in caf_indicator_ids(fragilite) if f"{i}_num" in iris_indicateurs.frame]
    if not caf:
        return iris_scores, mailles_scores, {}
    threshold = load_publication().secret_threshold
    tables = {"iris": pd.DataFrame(iris_indicateurs.frame.drop(columns="geometry")), **_with_cities(mailles)}
    masks: dict[str, pd.Series] = {name: pd.Series(False, index=t.index) for name, t in tables.items()}
    for ind_id in caf:
        for name, mask in suppression_masks(tables, CAF_NESTINGS, ind_id, threshold).items():
            masks[name] |= mask
    iris_frame = tables["iris"]
    without = [i for i in scored_indicators(fragilite, iris_frame) if i.id not in caf]
    iris_out = rescored_where(
        iris_scores, masks["iris"], lambda: score_all(iris_frame, without, iris_params(fragilite, iris_indicateurs))
    )
    mailles_out = {
        name: rescored_where(
            scored,
            masks.get(name, pd.Series(False, index=scored.table.index)),
            lambda name=name: maille_scores(fragilite, name, mailles[name], iris_indicateurs, exclude=caf),
        )
        for name, scored in mailles_scores.items()
    }
    keys = {name: set(tables[name].loc[mask, SECRET_KEYS[name]].astype(str)) for name, mask in masks.items()}
    return iris_out, mailles_out, keys


def rescored_where(scored: Scored, mask: pd.Series, rescore) -> Scored:
    """`scored` with the rows of `mask` taken from `rescore()` (the same methods without the CAF
    indicator): its own columns, and nothing of the CAF indicator's."""
    if not mask.any():
        return scored
    other = rescore().table
    table = scored.table.copy()
    rows = mask[mask].index
    shared = [c for c in table.columns if c in other.columns]
    table.loc[rows, shared] = other.loc[rows, shared]
    for column in table.columns:
        if column not in other.columns and table[column].dtype.kind in "fi":
            table[column] = table[column].astype("float64")
            table.loc[rows, column] = float("nan")
    return Scored(table, scored.references, scored.metadata)

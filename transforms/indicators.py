"""Indicator numerators, denominators and rates per IRIS (methodology §3).

Every indicator is kept as a pair of counts so that any aggregate is Σnum / Σden. Values that
come from a coarser maille (a commune figure given to its IRIS) are flagged in `<id>_source`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd

from config.settings import Indicator
from transforms.geo_codes import isin_codes, lookup_commune_values
from transforms.iris_base import JoinReport

# Weight used to apportion commune counts to IRIS, by preference.
HOUSEHOLD_WEIGHTS = ("C_MEN", "P_POP")


@dataclass
class IndicatorInputs:
    """Parsed sources an indicator may draw on (None = not supplied for this run)."""

    filosofi_iris: pd.DataFrame | None = None
    filosofi_communes: pd.DataFrame | None = None
    arcep_debit: pd.DataFrame | None = None
    caf_non_connectes: pd.DataFrame | None = None
    cog_passage: pd.DataFrame | None = None
    # Per IRIS, premises without ≥ 30 Mbit/s and without 4G counted from ARCEP's buildings
    # (transforms.connectivite); None when the building files are not given.
    connectivite: pd.DataFrame | None = None
    geography_year: int | None = None  # census vintage + 2: the year commune codes are aligned to


@dataclass
class IndicatorResult:
    table: pd.DataFrame  # CODE_IRIS + <id>_num/_den/_taux[/_source] + non_residentiel
    computed: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # indicator id → reason
    reports: list[JoinReport] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    vintages: dict[str, str] = field(default_factory=dict)  # source → year or date of its data
    frame: pd.DataFrame | None = None  # the IRIS of the study territory joined with `table` (`join_to`)
    # indicator id → {year: IRIS count} when its IRIS values come from different years
    mixed_years: dict[str, dict[str, int]] = field(default_factory=dict)
    # Every IRIS of the whole reference units (study territory included) when they extend beyond
    # the study territory, else None: the reference values are computed on it, never published.
    universe: pd.DataFrame | None = None

    def join_to(self, base: gpd.GeoDataFrame) -> IndicatorResult:
        """One frame per IRIS: outline, keys, census counts and indicators (row-aligned). A base
        with a `territoire_etude` column (transforms.chain) is split: `frame` = the study
        territory (published), `universe` = every row (reference units)."""
        joined = gpd.GeoDataFrame(
            pd.concat([base, self.table.drop(columns="CODE_IRIS")], axis=1), geometry="geometry", crs=base.crs
        )
        joined.attrs.update(base.attrs)  # e.g. the coverage validity established on the base
        inside = joined["territoire_etude"].astype(bool) if "territoire_etude" in joined else None
        if inside is None or inside.all():
            self.frame, self.universe = joined, None
        else:
            self.frame = joined[inside.to_numpy()].reset_index(drop=True)
            self.frame.attrs.update(base.attrs)
            self.universe = joined
        return self

    @property
    def reference_frame(self) -> pd.DataFrame:
        """The rows reference values are computed on: the whole reference units."""
        return self.universe if self.universe is not None else self.frame


def compute_indicators(
    base: pd.DataFrame,
    indicators: list[Indicator],
    inputs: IndicatorInputs,
    *,
    legacy_2020: bool = False,
    commune_fallback: bool = True,
) -> IndicatorResult:
    """Numerator, denominator and rate of each indicator whose inputs exist, per IRIS."""
    out = pd.DataFrame({"CODE_IRIS": base["CODE_IRIS"].to_numpy()}, index=base.index)
    result = IndicatorResult(table=out)
    for name, table, attr in (
        ("filosofi_iris", inputs.filosofi_iris, "annee"),
        ("filosofi_communes", inputs.filosofi_communes, "annee"),
        ("arcep_debit", inputs.arcep_debit, "date"),
        ("caf_non_connectes", inputs.caf_non_connectes, "millesime"),
        ("arcep_batiments", inputs.connectivite, "millesime_batiments"),
        ("arcep_4g", inputs.connectivite, "millesime_4g"),
    ):
        if table is not None and table.attrs.get(attr):
            result.vintages[name] = str(table.attrs[attr])
    for ind in indicators:
        reason = _compute_one(base, ind, inputs, result, legacy_2020, commune_fallback)
        if reason:
            result.skipped[ind.id] = reason
        else:
            result.computed.append(ind.id)
    pop = base.get("P_POP")
    out["non_residentiel"] = (pop.fillna(0) <= 0) if pop is not None else False
    return result


def _compute_one(
    base: pd.DataFrame,
    ind: Indicator,
    inputs: IndicatorInputs,
    result: IndicatorResult,
    legacy_2020: bool,
    commune_fallback: bool,
) -> str | None:
    out = result.table
    if ind.computation == "census_ratio":
        missing = [v for v in (ind.numerator, ind.denominator) if v not in base.columns]
        if missing:
            return f"variable(s) du recensement {missing} absente(s) des fichiers ({ind.source})"
        num, den = base[ind.numerator], base[ind.denominator]
        over = num > den * (1 + 1e-9)
        if over.any():
            codes = base.loc[over, "CODE_IRIS"].tolist()
            result.warnings.append(
                f"{ind.id} : numérateur {ind.numerator} au-dessus du dénominateur {ind.denominator} (above denominator) "
                f"pour {len(codes)} IRIS ({', '.join(codes[:10])}) ; taux supérieurs à 1 gardés tels que publiés"
            )
        _store(out, ind.id, num, den)
        return None
    if ind.computation in ("filosofi_share", "filosofi_level"):
        return _filosofi(base, ind, inputs, result, legacy_2020, commune_fallback)
    if ind.computation == "arcep_non_thd":
        if inputs.arcep_debit is None and inputs.connectivite is None:
            return "fichiers ARCEP non fournis (inputs.arcep_debit, inputs.arcep_batiments)"
        if inputs.arcep_debit is not None:
            arcep = inputs.arcep_debit
            counts = pd.DataFrame(
                {"INSEE_COM": arcep["INSEE_COM"], "num": arcep["locaux"] - arcep["locaux_thd"], "den": arcep["locaux"]}
            )
            counts, keys = _aligned(base, counts, inputs, result, "ARCEP", arcep.attrs.get("geographie"))
            _apportioned(base, ind, counts, result, "ARCEP", keys)
        _measured_at_iris(base, ind, inputs.connectivite, "locaux_sans_thd", "locaux", result)
        return None
    if ind.computation == "arcep_non_4g":
        table = inputs.connectivite
        if table is None or table["locaux_sans_4g"].isna().all():
            return "couverture 4G « Mon réseau mobile » et fichiers ARCEP par immeuble non fournis (inputs.arcep_4g)"
        _measured_at_iris(base, ind, table, "locaux_sans_4g", "locaux_4g", result)
        return None
    if ind.computation == "caf_ratio":
        caf = inputs.caf_non_connectes
        if caf is None:
            return "fichier CAF « allocataires non connectés » non fourni (inputs.caf_non_connectes)"
        communes = caf[caf["niveau"] == "commune"]
        counts = pd.DataFrame(
            {"INSEE_COM": communes["code_geo"], "num": communes["non_connectes"], "den": communes["allocataires"]}
        )
        counts, keys = _aligned(base, counts, inputs, result, "CAF", caf.attrs.get("geographie"))
        _apportioned(base, ind, counts, result, "CAF", keys)
        iris = caf[caf["niveau"] == "iris"].set_index("code_geo")
        direct = isin_codes(base["CODE_IRIS"], iris.index)
        if direct.any():
            rows = iris.reindex(base.loc[direct, "CODE_IRIS"])
            table = result.table
            table.loc[direct, f"{ind.id}_num"] = rows["non_connectes"].to_numpy()
            table.loc[direct, f"{ind.id}_den"] = rows["allocataires"].to_numpy()
            with np.errstate(divide="ignore", invalid="ignore"):
                num, den = table[f"{ind.id}_num"], table[f"{ind.id}_den"]
                table[f"{ind.id}_taux"] = (num / den).where(den > 0)
            table.loc[direct, f"{ind.id}_source"] = "iris"
        return None
    return f"la source {ind.source} n'est pas encore lue par cette version"


def _measured_at_iris(
    base: pd.DataFrame, ind: Indicator, table: pd.DataFrame | None, num: str, den: str, result: IndicatorResult
) -> None:
    """Counts measured at the IRIS (ARCEP building points) replace the commune values where the
    IRIS's département has building data; flagged `<id>_source = iris`."""
    if table is None:
        return
    rows = table.set_index("CODE_IRIS").reindex(base["CODE_IRIS"])
    # An IRIS without any located premises keeps its commune value (if any).
    measured = (
        rows["donnees_batiments"].fillna(False).astype(bool).to_numpy()
        & rows[num].notna().to_numpy()
        & (rows[den].fillna(0).to_numpy() > 0)
    )
    out = result.table
    if f"{ind.id}_num" not in out:
        out[f"{ind.id}_num"], out[f"{ind.id}_den"], out[f"{ind.id}_taux"] = np.nan, 0.0, np.nan
        out[f"{ind.id}_source"] = ""
    numerator, denominator = rows[num].to_numpy(dtype="float64"), rows[den].to_numpy(dtype="float64")
    out.loc[measured, f"{ind.id}_num"] = numerator[measured]
    out.loc[measured, f"{ind.id}_den"] = denominator[measured]
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(denominator > 0, numerator / denominator, np.nan)
    out.loc[measured, f"{ind.id}_taux"] = rate[measured]
    out.loc[measured, f"{ind.id}_source"] = "iris"


def _aligned(
    base: pd.DataFrame,
    counts: pd.DataFrame,
    inputs: IndicatorInputs,
    result: IndicatorResult,
    label: str,
    source_year: int | None,
) -> tuple[pd.DataFrame, pd.Series]:
    """Commune counts and, per IRIS, the commune code to find them under (transforms.vintages).

    Without a table de passage the codes are used as they are. A source older than the census
    geography (or of unknown geography) is re-keyed onto the census communes; a newer one is
    looked up under each census commune's code in the source's geography.
    """
    communes = base["INSEE_COM"]
    if inputs.cog_passage is None or inputs.geography_year is None:
        return counts, communes
    from transforms.geo_codes import city_code
    from transforms.vintages import align_commune_counts, code_mapping

    if source_year is not None and int(source_year) > inputs.geography_year:
        return counts, _source_keys(base, inputs, result, label, source_year)
    known = set(communes) | set(city_code(communes))
    aligned, report = align_commune_counts(
        counts, known, code_mapping(inputs.cog_passage, inputs.geography_year), ["num", "den"], label
    )
    result.reports.append(report)
    return aligned, communes


def _source_keys(
    base: pd.DataFrame, inputs: IndicatorInputs, result: IndicatorResult, label: str, source_year: int | None
) -> pd.Series:
    """Per IRIS, its commune's code in the geography of a newer source (else the census code)."""
    communes = base["INSEE_COM"]
    if (
        inputs.cog_passage is None
        or inputs.geography_year is None
        or source_year is None
        or int(source_year) <= inputs.geography_year
    ):
        return communes
    from transforms.vintages import forward_keys

    keys, report = forward_keys(communes, inputs.cog_passage, inputs.geography_year, int(source_year), label)
    if not any(r.join == report.join for r in result.reports):
        result.reports.append(report)
    return keys


def _store(out: pd.DataFrame, ind_id: str, num: pd.Series, den: pd.Series) -> None:
    num = num.astype("float64").to_numpy()
    den = den.astype("float64").to_numpy()
    out[f"{ind_id}_num"] = num
    out[f"{ind_id}_den"] = den
    with np.errstate(divide="ignore", invalid="ignore"):
        out[f"{ind_id}_taux"] = np.where(den > 0, num / den, np.nan)


def _filosofi(
    base: pd.DataFrame,
    ind: Indicator,
    inputs: IndicatorInputs,
    result: IndicatorResult,
    legacy_2020: bool,
    commune_fallback: bool,
) -> str | None:
    """Filosofi value per IRIS, else its commune's (flagged), weighted by population.

    Under `legacy_2020` income is the commune median for every IRIS (MedNum 2020), stored as
    num = median, den = 1 so that the rate is the median itself.
    """
    variable = ind.variable
    scale = 0.01 if ind.computation == "filosofi_share" else 1.0
    communes = inputs.filosofi_communes
    commune_value = pd.Series(np.nan, index=base.index)
    if communes is not None and variable in communes.columns:
        keys = _source_keys(base, inputs, result, "Filosofi communes", communes.attrs.get("geographie"))
        rows, _ = lookup_commune_values(keys, communes)
        commune_value = rows[variable]

    if legacy_2020 and ind.computation == "filosofi_level":
        if communes is None or variable not in communes.columns:
            return f"legacy_2020 demande le fichier Filosofi communal avec {variable}yy (inputs.filosofi_communes)"
        _store(result.table, ind.id, commune_value, pd.Series(np.where(commune_value.notna(), 1.0, 0.0)))
        result.table[f"{ind.id}_source"] = np.where(commune_value.notna(), "commune", "")
        result.table[f"{ind.id}_annee"] = np.where(commune_value.notna(), _year(communes), "")
        _report_missing(base, ind, commune_value, result, "à la commune")
        return None

    iris = inputs.filosofi_iris
    if iris is None and communes is None:
        return "aucun fichier Filosofi fourni (inputs.filosofi_iris, inputs.filosofi_communes)"
    if "P_POP" not in base.columns:
        return "la population du recensement P_POP (evol-struct-pop) est nécessaire pour pondérer Filosofi"
    iris_value = pd.Series(np.nan, index=base.index)
    if iris is not None and variable in iris.columns:
        iris_value = base[["CODE_IRIS"]].merge(iris[["CODE_IRIS", variable]], on="CODE_IRIS", how="left")[variable]
        iris_value.index = base.index
        if not any(r.join == "IRIS ↔ Filosofi IRIS" for r in result.reports):
            codes, published = set(base["CODE_IRIS"]), set(iris["CODE_IRIS"])
            communes = set(base["INSEE_COM"])
            # Filosofi N is in the geography of N+1, the census in N+2: IRIS re-cut or renumbered
            # in between are on the right (Filosofi codes of the territory's communes).
            orphans = sorted(c for c in published - codes if c[:5] in communes)
            result.reports.append(
                JoinReport(
                    join="IRIS ↔ Filosofi IRIS",
                    matched=len(codes & published),
                    unmatched_left=sorted(codes - published),
                    unmatched_right=orphans,
                    note="gauche : IRIS que Filosofi ne publie pas (communes non découpées, IRIS sous le seuil de "
                    "diffusion), qui prennent la valeur communale s'il y en a une ; droite : IRIS Filosofi des "
                    f"communes du territoire absentes du recensement (géographie {iris.attrs.get('geographie') or '?'} "
                    f"contre {inputs.geography_year or '?'}), non utilisées",
                )
            )
    if ind.computation == "filosofi_level":
        # A median income of 0 is a suppressed value written as 0 (seen in MedNum's MED15).
        zero = (iris_value <= 0) | (commune_value <= 0)
        if zero.any():
            result.warnings.append(
                f"{ind.id} : {variable} <= 0 traité comme manquant pour {int(zero.sum())} IRIS "
                f"({', '.join(base.loc[zero, 'CODE_IRIS'].head(10))})"
            )
        iris_value, commune_value = iris_value.where(iris_value > 0), commune_value.where(commune_value > 0)
    use_commune = iris_value.isna() & commune_value.notna() & commune_fallback
    value = iris_value.where(~use_commune, commune_value) * scale
    source = np.select([iris_value.notna(), use_commune], ["iris", "commune"], default="")
    pop = base["P_POP"].fillna(0)
    _store(result.table, ind.id, (value * pop).where(value.notna()), pop.where(value.notna(), 0.0))
    # The published rate is the Filosofi value itself: (value × pop) / pop differs from it in the
    # last bits from one IRIS to the next, which would split a commune value copied to its IRIS.
    result.table[f"{ind.id}_taux"] = value.where(pop > 0).to_numpy()
    result.table[f"{ind.id}_source"] = source
    _flag_years(result, ind, source, _year(inputs.filosofi_iris), _year(inputs.filosofi_communes))
    _report_missing(base, ind, value, result, "ni à l'IRIS ni à la commune")
    return None


def _year(table: pd.DataFrame | None) -> str:
    return str(table.attrs.get("annee") or "") if table is not None else ""


def _flag_years(result: IndicatorResult, ind: Indicator, source: np.ndarray, iris_year: str, commune_year: str) -> None:
    """`<id>_annee`: the income year of each IRIS value; IRIS and commune values of different
    years are listed (warning, `mixed_years`), never mixed silently."""
    years = np.select([source == "iris", source == "commune"], [iris_year, commune_year], default="")
    result.table[f"{ind.id}_annee"] = years
    counts = pd.Series(years[years != ""]).value_counts()
    if len(counts) > 1:
        result.mixed_years[ind.id] = {str(k): int(v) for k, v in sorted(counts.items())}
        result.warnings.append(
            f"{ind.id} : millésimes mélangés, {int((source == 'commune').sum())} IRIS prennent la valeur communale "
            f"de {commune_year} (valeurs IRIS de {iris_year}) ; colonne {ind.id}_annee"
        )


def _report_missing(base: pd.DataFrame, ind: Indicator, value: pd.Series, result: IndicatorResult, level: str) -> None:
    missing = base.loc[value.isna(), "CODE_IRIS"].tolist()
    if missing:
        result.warnings.append(
            f"{ind.id} : pas de valeur {level} pour {len(missing)} IRIS (non notées) : {', '.join(missing[:10])}"
            + (" …" if len(missing) > 10 else "")
        )


def _apportioned(
    base: pd.DataFrame,
    ind: Indicator,
    counts: pd.DataFrame,
    result: IndicatorResult,
    label: str,
    keys: pd.Series | None = None,
) -> None:
    """Commune counts (`INSEE_COM`, `num`, `den`) apportioned to IRIS by their share of households.

    The apportioned counts add up to the commune's, and every IRIS carries the commune rate,
    flagged `commune`. Arrondissements take their city's row (69381 → 69123); with `keys`, IRIS
    are looked up under their commune's code in the source's geography, so that a commune merged
    since the census is shared by the IRIS of all the communes it absorbed. A blank count
    (secret statistique) stays blank.
    """
    rows, used = lookup_commune_values(base["INSEE_COM"] if keys is None else keys, counts)
    weight_col = next((c for c in HOUSEHOLD_WEIGHTS if c in base.columns), None)
    weight = base[weight_col].fillna(0) if weight_col else pd.Series(1.0, index=base.index)
    total = weight.groupby(used).transform("sum")
    share = (weight / total).where(total > 0)
    # A commune whose IRIS all have zero weight: split evenly rather than lose its counts.
    share = share.fillna(1.0 / used.groupby(used).transform("count"))
    _store(result.table, ind.id, rows["num"] * share, (rows["den"] * share).fillna(0.0))
    # Every IRIS carries its commune's rate exactly (num/den of the apportioned counts differs in
    # the last bits from one IRIS to the next, which would break ties between equal values).
    with np.errstate(divide="ignore", invalid="ignore"):
        commune_rate = (rows["num"] / rows["den"]).where(rows["den"] > 0)
    result.table[f"{ind.id}_taux"] = commune_rate.where(result.table[f"{ind.id}_den"] > 0).to_numpy()
    result.table[f"{ind.id}_source"] = np.where(used.notna(), "commune", "")
    communes = set(base["INSEE_COM"])
    unmatched = sorted(set(base.loc[used.isna(), "INSEE_COM"]))
    result.reports.append(
        JoinReport(
            join=f"communes ↔ {label}",
            matched=len(communes) - len(unmatched),
            unmatched_left=unmatched,
            note="arrondissements of Paris, Lyon and Marseille matched to their city's row",
        )
    )
    if unmatched:
        result.warnings.append(
            f"{ind.id} : {len(unmatched)} commune(s) absente(s) du fichier {label} : {unmatched[:10]}"
        )

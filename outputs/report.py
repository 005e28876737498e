"""A one-file territory report (HTML, images inlined, no network needed).

Everything a reader sees is in French and formatted one way: narrow no-break space between
thousands, decimal comma, a fixed number of decimals per kind of figure (`NUMBER_FORMATS`), and
labels rather than internal names (« MedNum 2019 », « département du Rhône (69) »).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from dataclasses import dataclass
from html import escape

import pandas as pd

from config.settings import IndicatorCatalogue, ReferenceValues, TicConfig, Weighting
from outputs.dictionary import vintages_line

NARROW_NBSP = "\u202f"
# Decimals shown for each kind of figure.
NUMBER_FORMATS = {"effectif": 0, "score": 1, "score_court": 0}


def fr_number(value: float | int | None, decimals: int = 0) -> str:
    """1234567.891 → « 1 234 567,9 » (narrow no-break space, decimal comma); missing → « — »."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)) or pd.isna(value):
        return "—"
    text = f"{float(value):,.{decimals}f}"
    return text.replace(",", NARROW_NBSP).replace(".", ",").replace("-", "\u2212")


# Articles of the département names (INSEE COG, TNCC): « du Rhône », « de l'Ain », « des Landes »…
_DE_LA = set(
    "16 17 19 2A 2B 21 23 24 26 31 33 42 43 44 48 50 51 52 53 54 55 57 58 70 71 72 73 74 76 77 80 85 86 87 93 "
    "971 972 973".split()
)
_DES = set("04 05 06 08 13 22 40 64 65 66 78 79 88 92".split())
_DE_L = set("01 02 03 07 09 10 11 12 27 28 34 35 36 37 38 60 61 89 91".split())
_DE = {"75", "974", "976"}


def of_departement(code: str, name: str) -> str:
    """« du Rhône », « de l'Ain », « de la Loire », « des Landes », « de Paris »."""
    if code in _DE_LA:
        return f"de la {name}"
    if code in _DES:
        return f"des {name}"
    if code in _DE_L:
        return f"de l'{name}"
    if code in _DE:
        return f"de {name}"
    return f"du {name}"


def method_display(methode: str, weightings: Mapping[str, Weighting]) -> str:
    """`mednum_2019` → « MedNum 2019 » (the configured label up to its colon); the 2020 rules
    (`mednum_2019_legacy_2020`) are said in words."""
    base = methode.removesuffix("_legacy_2020")
    preset = weightings.get(base)
    name = preset.label.split(" : ")[0].strip() if preset else base
    return name + (" (règles de l'indice 2020)" if methode.endswith("_legacy_2020") else "")


def reference_display(
    level: str,
    departements: list[str],
    departement_names: Mapping[str, str],
    territory_label: str,
    reference_values: list[ReferenceValues] = (),
) -> str:
    """The reference of the scores in words: « département du Rhône (69) », « EPCI de chaque
    IRIS », « territoire d'étude (…) », « région Auvergne-Rhône-Alpes », « France entière »."""
    if level == "departement":
        if len(departements) == 1:
            code = departements[0]
            return f"département {of_departement(code, departement_names.get(code, code))} ({code})"
        return "département de chaque IRIS"
    if level == "epci":
        return "EPCI de chaque IRIS"
    if level == "territoire":
        return f"territoire d'étude ({territory_label})"
    labels = sorted({rv.label for rv in reference_values if rv.level == level})
    if level == "region":
        return "région " + ", ".join(labels) if labels else "région"
    if level == "france":
        return "France entière"
    return level


@dataclass(frozen=True)
class ReportContext:
    territory: str
    methode: str  # as shown: « MedNum 2019 »
    reference: str  # as shown: « département du Rhône (69) »
    millesime_rp: int
    vintages: dict[str, str]
    run_date: str


def drivers(row: pd.Series, labels: dict[str, str], top: int = 3) -> str:
    """The indicators furthest above the reference (score − 100), most first."""
    above = {i: row[f"{i}_score"] - 100 for i in labels if pd.notna(row.get(f"{i}_score")) and row[f"{i}_score"] > 100}
    best = sorted(above, key=above.get, reverse=True)[:top]
    digits = NUMBER_FORMATS["score_court"]
    return ", ".join(f"{labels[i]} ({fr_number(row[f'{i}_score'], digits)})" for i in best) or "—"


def rankable(iris: pd.DataFrame) -> pd.Series:
    """IRIS that may be listed among the most fragile: scored, with inhabitants (a score of an
    IRIS without inhabitants says nothing about people), and not flagged unreliable."""
    keep = iris["score_global"].notna()
    if "P_POP" in iris:
        keep &= iris["P_POP"].fillna(0) > 0
    if "non_residentiel" in iris:
        keep &= ~iris["non_residentiel"].fillna(False).astype(bool)
    if "fiabilite" in iris:
        keep &= iris["fiabilite"].astype("string").fillna("") != "faible"
    return keep


def caution_counts(iris: pd.DataFrame) -> dict[str, int]:
    """Scored IRIS to read with care: unreliable, and scored on fewer indicators than the best
    covered (empty when the columns are absent)."""
    scored = iris["score_global"].notna()
    counts = {}
    if "fiabilite" in iris:
        counts["IRIS à fiabilité faible"] = int((scored & (iris["fiabilite"].astype("string") == "faible")).sum())
    if "nb_indicateurs_notes" in iris and scored.any():
        best = iris.loc[scored, "nb_indicateurs_notes"].max()
        counts["IRIS notés sur moins d'indicateurs"] = int((scored & (iris["nb_indicateurs_notes"] < best)).sum())
    return counts


def most_fragile(iris: pd.DataFrame, catalogue: IndicatorCatalogue, n: int) -> pd.DataFrame:
    labels = {i.id: i.label for i in catalogue.indicators if f"{i.id}_score" in iris}
    top = iris[rankable(iris)].nlargest(n, "score_global")
    return pd.DataFrame(
        {
            "IRIS": top["CODE_IRIS"],
            "Nom": top["NOM_IRIS"],
            "Commune": top["NOM_COM"],
            "Score global": [fr_number(v, NUMBER_FORMATS["score"]) for v in top["score_global"]],
            **(
                {"Indicateurs notés": [fr_number(v) for v in top["nb_indicateurs_notes"]]}
                if "nb_indicateurs_notes" in top
                else {}
            ),
            "Indicateurs les plus au-dessus de la référence (score)": [drivers(r, labels) for _, r in top.iterrows()],
        }
    )


def people_at_risk(iris: pd.DataFrame, tic: TicConfig) -> pd.DataFrame:
    """Σ est_<outcome>_<group> over the territory, one row per group (groups overlap); « non
    estimé » where TIC gives no rate for that group."""
    rows = []
    groups = {**{g: v.label for g, v in tic.groups.items()}, "age": "Total par tranches d'âge"}
    for group, label in groups.items():
        values = {tic.outcomes[o]: iris[f"est_{o}_{group}"].sum() for o in tic.outcomes if f"est_{o}_{group}" in iris}
        if values:
            rows.append({"Groupe": label, **{k: fr_number(round(v), 0) for k, v in values.items()}})
    return pd.DataFrame(rows).fillna("non estimé")


PRIORITY_ORDER = ("forte", "moyenne", "faible")
OFFER_ABSENT = (
    "Offre de médiation absente : aucun fichier de lieux de médiation numérique n'a été fourni "
    "(inputs.lieux_mediation, config/offre.yaml), la proximité de l'offre n'est pas mesurée."
)


def priority_counts(iris: pd.DataFrame) -> pd.DataFrame:
    """IRIS and people at risk (`offre_demande`) in each priority class, « non classé » last."""
    classes = iris["priorite"].astype("object").where(iris["priorite"].notna(), "non classé")
    rows = []
    for label in (*PRIORITY_ORDER, "non classé"):
        chosen = classes == label
        if label == "non classé" and not chosen.any():
            continue
        rows.append(
            {
                "Priorité": label,
                "IRIS": fr_number(int(chosen.sum())),
                "Personnes à risque (estimation)": fr_number(round(iris.loc[chosen, "offre_demande"].sum())),
            }
        )
    return pd.DataFrame(rows)


def far_and_fragile(iris: pd.DataFrame, limit: int) -> pd.DataFrame:
    """The `forte` IRIS, most fragile first: name, commune, score, distance, 2SFCA."""
    forte = iris[iris["priorite"].astype("object") == "forte"].sort_values("score_global", ascending=False).head(limit)
    return pd.DataFrame(
        {
            "IRIS": forte["CODE_IRIS"],
            "Nom": forte["NOM_IRIS"],
            "Commune": forte["NOM_COM"],
            "Score global": [fr_number(v, NUMBER_FORMATS["score"]) for v in forte["score_global"]],
            "Distance au lieu le plus proche (km)": [fr_number(v, 1) for v in forte["offre_dist_km"]],
            "Accessibilité 2SFCA (lieux pour 10 000 pers.)": [fr_number(v, 1) for v in forte["offre_2sfca"]],
        }
    )


def offer_section(iris: pd.DataFrame, priority_map: bytes | None, limit: int = 50) -> str:
    """« IRIS fragiles éloignés de l'offre »: counts by priority class, the `forte` IRIS, the map
    and the method in one sentence; one sentence when the offer is absent."""
    title = "<h2>IRIS fragiles éloignés de l'offre</h2>"
    if "priorite" not in iris or priority_map is None:
        return f"{title}\n<p>{escape(OFFER_ABSENT)}</p>"
    n_forte = int((iris["priorite"].astype("object") == "forte").sum())
    shown = f" (les {limit} plus fragiles sur {fr_number(n_forte)})" if n_forte > limit else ""
    return f"""{title}
{_table(priority_counts(iris))}
<h3>IRIS en priorité forte{escape(shown)}</h3>
{_table(far_and_fragile(iris, limit))}
{_img(priority_map, "Carte des zones prioritaires et des lieux de médiation")}
<p class="note">Méthode : chaque IRIS est classé selon sa fragilité (score global) et son accessibilité aux lieux de
médiation numérique, mesurée à vol d'oiseau par l'accessibilité potentielle à deux étapes (2SFCA, Luo et Wang 2003,
décroissance comme l'APL de la DREES) ; « forte » = IRIS fragile et éloigné de l'offre. Seuils, limites et références :
docs/offre.md du projet fragilite-numerique.</p>"""


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "<p>Aucune donnée.</p>"
    return frame.to_html(index=False, escape=True, border=0, na_rep="—")


CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;color:#222;background:#fafafa}
main{max-width:1100px;margin:auto;padding:24px 32px;background:#fff}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.2em;border-bottom:2px solid #e34a33;padding-bottom:4px;margin-top:1.6em}
.meta{color:#555;font-size:.9em}.kpis{display:flex;gap:16px;flex-wrap:wrap;margin:16px 0}
.kpi{background:#fff5eb;border-left:4px solid #e34a33;padding:10px 14px;min-width:150px}.kpi b{display:block;font-size:1.5em}
img{max-width:100%;height:auto}table{border-collapse:collapse;font-size:.85em;width:100%}
th,td{padding:4px 8px;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}th{background:#f2f2f2}
.note{font-size:.85em;color:#555}
"""


def render_report(
    iris: pd.DataFrame,
    context: ReportContext,
    catalogue: IndicatorCatalogue,
    tic: TicConfig,
    *,
    map_png: bytes,
    histogram: bytes,
    top_n: int = 20,
    opale: dict | None = None,
    priority_map: bytes | None = None,
) -> str:
    """The report's HTML: key figures, map, distribution, most fragile IRIS, people at risk, and
    the fragile IRIS far from the offer of mediation (`priority_map`, None when the offer is
    absent)."""
    scored = int(iris["score_global"].notna().sum())
    kpis = [
        ("IRIS", fr_number(len(iris))),
        ("IRIS notés", fr_number(scored)),
        ("Population", fr_number(iris["P_POP"].sum()) if "P_POP" in iris else "—"),
    ]
    if opale:
        kpis.append(("IRIS exposés (Opale)", fr_number(opale["iris_exposes"])))
    left_out = iris["score_global"].notna() & ~rankable(iris)
    caution = caution_counts(iris)
    kpis += [(label, fr_number(n)) for label, n in caution.items()]
    vintages = vintages_line(context.vintages)
    kpi_html = "".join(f'<div class="kpi"><b>{escape(v)}</b>{escape(k)}</div>' for k, v in kpis)
    return f"""<!DOCTYPE html>
<html lang="fr"><head><meta charset="utf-8"><title>Fragilité numérique — {escape(context.territory)}</title>
<style>{CSS}</style></head>
<body><main>
<h1>Indice de fragilité numérique — {escape(context.territory)}</h1>
<p class="meta">Méthode {escape(context.methode)}, référence : {escape(context.reference)} · recensement {context.millesime_rp}
 · {escape(vintages)} · calcul du {escape(context.run_date)}</p>
<div class="kpis">{kpi_html}</div>
<h2>Carte du score global</h2>
{_img(map_png, "Carte du score global par IRIS")}
<p class="note">100 = aussi fragile que la référence ; au-dessus, plus fragile. Gris : IRIS non noté (sans habitants).
Hachures : fiabilité faible (moins de 200 habitants, IRIS d'activité ou divers) ; contour pointillé : score calculé sur
moins d'indicateurs que les IRIS les mieux couverts (colonnes <code>fiabilite</code>, <code>nb_indicateurs_notes</code>,
<code>indicateurs_manquants</code>).</p>
<h2>Distribution des scores</h2>
{_img(histogram, "Histogramme du score global")}
<h2>Les {top_n} IRIS les plus fragiles</h2>
{_table(most_fragile(iris, catalogue, top_n))}
<p class="note">Hors IRIS sans habitants et IRIS dont la note est peu fiable ({fr_number(int(left_out.sum()))} IRIS notés
écartés de cette liste).</p>
<h2>Personnes à risque (estimations)</h2>
{_table(people_at_risk(iris, tic))}
<p class="note">Taux nationaux de l'enquête TIC ménages 2019 de l'INSEE appliqués aux effectifs locaux. Les groupes se
recouvrent (une personne peut être âgée, seule et peu diplômée) : ne pas additionner les lignes.</p>
{offer_section(iris, priority_map)}
<h2>Sources</h2>
<p class="note">INSEE (recensement, bases infracommunales ; Filosofi), ARCEP (Ma connexion internet), IGN (CONTOURS-IRIS),
La MedNum (méthode 2019). Licence Ouverte. Produit par fragilite-numerique.</p>
</main></body></html>
"""

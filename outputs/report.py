"""A one-file territory report (HTML, images inlined, no network needed)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from html import escape

import pandas as pd

from config.settings import IndicatorCatalogue, TicConfig
from outputs.dictionary import vintages_line


@dataclass(frozen=True)
class ReportContext:
    territory: str
    methode: str
    reference: str
    millesime_rp: int
    vintages: dict[str, str]
    run_date: str


def drivers(row: pd.Series, labels: dict[str, str], top: int = 3) -> str:
    """The indicators furthest above the reference (score − 100), most first."""
    above = {i: row[f"{i}_score"] - 100 for i in labels if pd.notna(row.get(f"{i}_score")) and row[f"{i}_score"] > 100}
    best = sorted(above, key=above.get, reverse=True)[:top]
    return ", ".join(f"{labels[i]} ({row[f'{i}_score']:.0f})" for i in best) or "—"


def most_fragile(iris: pd.DataFrame, catalogue: IndicatorCatalogue, n: int) -> pd.DataFrame:
    labels = {i.id: i.label for i in catalogue.indicators if f"{i.id}_score" in iris}
    top = iris[iris["score_global"].notna()].nlargest(n, "score_global")
    return pd.DataFrame(
        {
            "IRIS": top["CODE_IRIS"],
            "Nom": top["NOM_IRIS"],
            "Commune": top["NOM_COM"],
            "Score global": top["score_global"].round(1),
            "Indicateurs les plus au-dessus de la référence (score)": [drivers(r, labels) for _, r in top.iterrows()],
        }
    )


def people_at_risk(iris: pd.DataFrame, tic: TicConfig) -> pd.DataFrame:
    """Σ est_<outcome>_<group> over the territory, one row per group (groups overlap)."""
    rows = []
    groups = {**{g: v.label for g, v in tic.groups.items()}, "age": "Total par tranches d'âge"}
    for group, label in groups.items():
        values = {tic.outcomes[o]: iris[f"est_{o}_{group}"].sum() for o in tic.outcomes if f"est_{o}_{group}" in iris}
        if values:
            rows.append({"Groupe": label, **{k: round(v) for k, v in values.items()}})
    return pd.DataFrame(rows)


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "<p>Aucune donnée.</p>"
    return frame.to_html(
        index=False, escape=True, border=0, na_rep="", float_format=lambda v: f"{v:,.1f}".replace(",", "\u202f")
    )


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
) -> str:
    """The report's HTML: key figures, map, distribution, most fragile IRIS, people at risk."""
    scored = int(iris["score_global"].notna().sum())
    kpis = [
        ("IRIS", f"{len(iris)}"),
        ("IRIS notés", f"{scored}"),
        ("Population", f"{iris['P_POP'].sum():,.0f}".replace(",", "\u202f") if "P_POP" in iris else "—"),
    ]
    if opale:
        kpis.append(("IRIS exposés (Opale)", f"{opale['iris_exposes']}"))
    vintages = vintages_line(context.vintages)
    kpi_html = "".join(f'<div class="kpi"><b>{escape(v)}</b>{escape(k)}</div>' for k, v in kpis)
    return f"""<!DOCTYPE html>
<html lang="fr"><head><meta charset="utf-8"><title>Fragilité numérique — {escape(context.territory)}</title>
<style>{CSS}</style></head>
<body><main>
<h1>Indice de fragilité numérique — {escape(context.territory)}</h1>
<p class="meta">Méthode {escape(context.methode)}, référence {escape(context.reference)} · recensement {context.millesime_rp}
 · {escape(vintages)} · calcul du {escape(context.run_date)}</p>
<div class="kpis">{kpi_html}</div>
<h2>Carte du score global</h2>
{_img(map_png, "Carte du score global par IRIS")}
<p class="note">100 = aussi fragile que la référence ; au-dessus, plus fragile. Gris : IRIS non noté (sans habitants).</p>
<h2>Distribution des scores</h2>
{_img(histogram, "Histogramme du score global")}
<h2>Les {top_n} IRIS les plus fragiles</h2>
{_table(most_fragile(iris, catalogue, top_n))}
<h2>Personnes à risque (estimations)</h2>
{_table(people_at_risk(iris, tic))}
<p class="note">Taux nationaux de l'enquête TIC ménages 2019 de l'INSEE appliqués aux effectifs locaux. Les groupes se
recouvrent (une personne peut être âgée, seule et peu diplômée) : ne pas additionner les lignes.</p>
<h2>Sources</h2>
<p class="note">INSEE (recensement, bases infracommunales ; Filosofi), ARCEP (Ma connexion internet), IGN (CONTOURS-IRIS),
La MedNum (méthode 2019). Licence Ouverte. Produit par fragilite-numerique.</p>
</main></body></html>
"""

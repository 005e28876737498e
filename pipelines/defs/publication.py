"""What each publication asset writes, from the layers in memory (see `outputs.py`, which
materializes them together so their work overlaps on two cores).

Each function writes its files under the run's output folder atomically (`write_all`; the
caller holds the output lock) and returns the asset's metadata.
"""

import base64
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import geopandas as gpd
import pandas as pd

from config.settings import Classification, PublicationConfig
from outputs.dictionary import vintages_line
from outputs.files import write_all
from outputs.geoclip import write_pack
from outputs.layers import write_geojson
from outputs.maps import choropleth_png, histogram_png
from outputs.report import ReportContext, render_report
from outputs.styles import classify, qgis_project, qml
from outputs.tables import json_rows
from outputs.web import WebOutlines, level_name, simplify_iris, web_outlines

DISPLAY = {"iris": "IRIS", "communes": "Communes", "epci": "EPCI", "departements": "Départements"}


def sizes_metadata(sizes: dict[Path, int]) -> dg.MetadataValue:
    return dg.MetadataValue.json({str(p): s for p, s in sizes.items()})


def _sources_line(info: dict) -> str:
    vintages = vintages_line(info.get("millesimes", {}))
    return (
        f"Sources : INSEE RP {info['millesime_rp']} (bases infracommunales) ; {vintages} ; IGN CONTOURS-IRIS. "
        f"Méthode {info['methode']}, référence {info['reference']}. "
        f"Calcul fragilite-numerique du {info['date_calcul'][:10]}."
    )


def contours_web(layers: dict[str, gpd.GeoDataFrame], publication: PublicationConfig) -> WebOutlines:
    """Simplified outlines of every maille at every tolerance: one coverage simplification of
    the IRIS per tolerance, the coarser mailles as unions of the simplified IRIS."""
    levels = simplify_iris(layers["iris"], publication.web_tolerances_m)
    return web_outlines(levels, layers)


def web_metadata(web: WebOutlines) -> dict:
    return {
        "simplification": dg.MetadataValue.json(
            {
                name: {
                    "tolerance_m": s.tolerance_m,
                    "sommets_avant": s.vertices_before,
                    "sommets_apres": s.vertices_after,
                    "couverture_valide_avant": s.valid_before,
                    "couverture_valide_apres": s.valid_after,
                }
                for name, s in web.stats.items()
            }
        )
    }


def web_check(web: WebOutlines) -> dg.AssetCheckResult:
    """Every simplified level is a valid coverage with fewer vertices than its layer."""
    problems = []
    for name, s in web.stats.items():
        if not s.valid_after:
            problems.append(f"{name}: couverture invalide")
        if s.vertices_after >= s.vertices_before:
            problems.append(f"{name}: pas moins de sommets que la source")
    return dg.AssetCheckResult(
        asset_key="contours_web",
        check_name="couverture_web_valide",
        passed=bool(web.stats) and not problems,
        metadata={
            "sommets": {n: [s.vertices_before, s.vertices_after] for n, s in web.stats.items()},
            "problemes": problems,
        },
    )


def couches_web(
    out: Path, layers: dict[str, gpd.GeoDataFrame], web: WebOutlines, publication: PublicationConfig
) -> dict:
    """`web/<maille>_<tolérance>m.geojson`: the layer's display columns on its simplified outlines."""
    targets = {}
    for maille, layer in layers.items():
        attributes = layer[publication.web_selection(list(layer.columns))]
        properties = json_rows(attributes, decimals=publication.web_decimals)  # shared by the tolerances
        for (m, tolerance), outlines in web.outlines.items():
            if m == maille:
                targets[out / "web" / f"{level_name(m, tolerance)}.geojson"] = (
                    lambda tmp, g=outlines, p=properties, m=m, t=tolerance: write_geojson(
                        gpd.GeoDataFrame(geometry=g), tmp, properties=p, geometries=web.geojson(m, t)
                    )
                )
    sizes = write_all(targets)
    return {"fichiers": sizes_metadata(sizes), "dossier": dg.MetadataValue.path(str(out / "web"))}


def pack_geoclip(
    out: Path,
    layers: dict[str, gpd.GeoDataFrame],
    dictionary: pd.DataFrame,
    caf: list[str],
    info: dict,
    publication: PublicationConfig,
    web: Future,
) -> dict:
    """`geoclip/`; its GeoJSON outlines wait for the web outlines (computed meanwhile)."""
    tolerance = min(publication.web_tolerances_m)
    readme = PACK_README.format(
        territoire=info["territoire"],
        methode=info["methode"],
        reference=info["reference"],
        millesime=info["millesime_rp"],
        date=info["date_calcul"],
        seuil=publication.secret_threshold,
        tolerance=f"{tolerance:g}",
    )
    sizes = write_pack(
        layers,
        dictionary,
        out / "geoclip",
        caf,
        readme,
        web_outlines=lambda maille: (
            web.result().outlines[(maille, tolerance)],
            web.result().geojson(maille, tolerance),
        ),
        secret_threshold=publication.secret_threshold,
    )
    return {"fichiers": sizes_metadata(sizes), "dossier": dg.MetadataValue.path(str(out / "geoclip"))}


def styles_qgis(out: Path, layers: dict[str, gpd.GeoDataFrame], spec: Classification, info: dict) -> dict:
    """A `.qml` per layer beside its GeoPackage, and the `fragilite.qgs` project."""
    targets, project_layers = {}, []
    for maille, layer in layers.items():
        classes = classify(layer[spec.field], spec)
        targets[out / "layers" / f"{maille}.qml"] = lambda tmp, c=classes: Path(tmp).write_text(
            qml(c), encoding="utf-8"
        )
        project_layers.append((DISPLAY[maille], f"./layers/{maille}.gpkg", maille, classes))
    title = f"Fragilité numérique — {info['territoire']}"
    epsg = layers["iris"].crs.to_epsg()  # the layers' CRS: Lambert-93, or an overseas UTM
    targets[out / "fragilite.qgs"] = lambda tmp: Path(tmp).write_text(
        qgis_project(title, project_layers, epsg), encoding="utf-8"
    )
    sizes = write_all(targets)
    return {"projet": dg.MetadataValue.path(str(out / "fragilite.qgs")), "fichiers": sizes_metadata(sizes)}


def cartes(out: Path, layers: dict[str, gpd.GeoDataFrame], spec: Classification, info: dict) -> dict:
    """`cartes/<maille>.png`, and the IRIS map as a thumbnail for the UI."""
    pngs, thumbnail = {}, b""
    for maille, layer in layers.items():
        title = f"Fragilité numérique — {spec.field.replace('_', ' ')} ({DISPLAY[maille]})\n{info['territoire']}"
        pngs[maille], small = choropleth_png(
            layer,
            classify(layer[spec.field], spec),
            title=title,
            sources=_sources_line(info),
            thumbnail_dpi=40 if maille == "iris" else None,
        )
        thumbnail = small or thumbnail
    sizes = write_all(
        {out / "cartes" / f"{m}.png": (lambda tmp, d=data: Path(tmp).write_bytes(d)) for m, data in pngs.items()}
    )
    return {
        "carte_iris": dg.MetadataValue.md(f"![carte](data:image/png;base64,{base64.b64encode(thumbnail).decode()})"),
        "fichiers": sizes_metadata(sizes),
    }


def rapport(out: Path, iris: pd.DataFrame, info: dict, catalogue, tic, publication: PublicationConfig) -> dict:
    """`rapport.html`, self-contained (images inlined); after `cartes` (it embeds the IRIS map)."""
    html = render_report(
        pd.DataFrame(iris.drop(columns="geometry", errors="ignore")),
        ReportContext(
            territory=info["territoire"],
            methode=info["methode"],
            reference=info["reference"],
            millesime_rp=info["millesime_rp"],
            vintages=info.get("millesimes", {}),
            run_date=info["date_calcul"][:10],
        ),
        catalogue,
        tic,
        map_png=(out / "cartes" / "iris.png").read_bytes(),
        histogram=histogram_png(iris["score_global"], title="Score global des IRIS"),
        top_n=publication.report_top_iris,
        opale=info.get("details_methodes", {}).get("opale_resume"),
    )
    path = out / "rapport.html"
    sizes = write_all({path: lambda tmp: Path(tmp).write_text(html, encoding="utf-8")})
    return {
        "rapport": dg.MetadataValue.path(str(path)),
        "octets": sizes[path],
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


PACK_README = """Paquet de publication — indice de fragilité numérique
=====================================================

Territoire : {territoire}
Méthode : {methode} (référence : {reference}) ; recensement {millesime} ; calcul du {date}.

Fichiers
- iris.csv / .xlsx, communes.*, epci.*, departements.* : une table par maille, clé = code officiel
  en texte (CODE_IRIS, CODGEO, EPCI, DEP), puis le libellé, puis pour chaque indicateur le
  numérateur (_num), le dénominateur (_den), le taux (_taux) et le score (_score), les scores
  d'axes et globaux, les notes IFN 2023, le score Opale et les estimations de personnes à risque
  (est_*). CSV en UTF-8, séparateur « ; », décimales « . ».
- dictionnaire_indicateurs.csv / .xlsx : définition, unité, source, millésime, maille de la source,
  méthode et référence de chaque colonne.
- contours/<maille>_<EPSG>.shp (projection des couches : Lambert-93, EPSG:2154, en métropole ; UTM en outre-mer ; tracé complet) et contours/<maille>_4326.geojson
  (WGS84, tracé allégé pour le web : simplification de couverture à {tolerance} m, les voisins
  gardent leur frontière commune) : contours, clé et libellé, à joindre aux tables par la clé.

Mises en garde
- Les colonnes <id>_source valent « commune » quand la valeur d'un IRIS vient de sa commune.
- Secret statistique : aucun effectif issu de données CAF inférieur à {seuil} n'est publié ; la
  cellule est vide et la colonne <id>_secret vaut vrai.
- Les groupes d'estimations (est_*) se recouvrent : ne jamais les additionner.
"""

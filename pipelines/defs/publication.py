"""Group `outputs`, publication: Geoclip pack, web layers, QGIS styles, maps and report.

These assets read the published layers back from disk (so they publish exactly what GIS users
get) and write under the run's output folder, atomically.
"""

import base64
import json
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import geopandas as gpd
import pandas as pd

from config.settings import load_publication
from outputs.dictionary import vintages_line
from outputs.files import output_lock, write_all
from outputs.geoclip import write_pack
from outputs.layers import write_geojson
from outputs.maps import choropleth_png, histogram_png
from outputs.report import ReportContext, render_report
from outputs.styles import classify, qgis_project, qml
from outputs.web import simplify_layer
from pipelines.reporting import report
from pipelines.resources import FragiliteConfig

GROUP = "outputs"
OWNERS = ["team:fragilite-numerique"]
MAILLES = ("iris", "communes", "epci", "departements")
LAYER_ASSETS = [f"couche_{m}" for m in MAILLES]
DISPLAY = {"iris": "IRIS", "communes": "Communes", "epci": "EPCI", "departements": "Départements"}


def _layers(fragilite: FragiliteConfig, mailles: tuple[str, ...] = MAILLES) -> dict[str, gpd.GeoDataFrame]:
    layers = fragilite.output_folder / "layers"
    return {m: gpd.read_parquet(layers / f"{m}.parquet").drop(columns="bbox", errors="ignore") for m in mailles}


def _run_info(fragilite: FragiliteConfig) -> dict:
    return json.loads((fragilite.output_folder / "layers" / "iris.metadata.json").read_text(encoding="utf-8"))


def _sources_line(info: dict) -> str:
    vintages = vintages_line(info.get("millesimes", {}))
    return (f"Sources : INSEE RP {info['millesime_rp']} (bases infracommunales) ; {vintages} ; IGN CONTOURS-IRIS. "
            f"Méthode {info['methode']}, référence {info['reference']}. "
            f"Calcul fragilite-numerique du {info['date_calcul'][:10]}.")


def _sizes(sizes: dict[Path, int]) -> dg.MetadataValue:
    return dg.MetadataValue.json({str(p): s for p, s in sizes.items()})


@dg.asset(group_name=GROUP, kinds={"csv", "excel", "shapefile", "geojson"}, owners=OWNERS,
          deps=[*LAYER_ASSETS, "dictionnaire"], tags={"maille": "iris-commune-epci-departement"})
def pack_geoclip(context: dg.AssetExecutionContext, fragilite: FragiliteConfig) -> dg.MaterializeResult:
    """Paquet de type Geoclip (`geoclip/`) : une table par maille en CSV (UTF-8, `;`) et XLSX,
    clé = code officiel en texte (CODE_IRIS, CODGEO, EPCI, DEP), puis libellé et indicateurs ;
    dictionnaire des indicateurs (CSV, XLSX) ; contours en shapefile Lambert-93 et GeoJSON WGS84 ;
    LISEZMOI. Secret statistique : aucun effectif issu de la CAF inférieur à 5 n'est publié."""
    out = fragilite.output_folder
    publication = load_publication()
    dictionary = pd.read_csv(out / "layers" / "dictionnaire.csv", sep=";", dtype=str, keep_default_na=False)
    caf = [i.id for i in fragilite.catalogue.indicators if i.source == "caf_non_connectes"]
    info = _run_info(fragilite)
    readme = PACK_README.format(territoire=info["territoire"], methode=info["methode"], reference=info["reference"],
                                millesime=info["millesime_rp"], date=info["date_calcul"],
                                seuil=publication.secret_threshold)
    with output_lock(out):
        sizes = write_pack(_layers(fragilite), dictionary, out / "geoclip", caf, readme)
    report(context, f"pack_geoclip: {len(sizes)} fichiers dans {out / 'geoclip'}")
    return dg.MaterializeResult(metadata={"fichiers": _sizes(sizes), "dossier": dg.MetadataValue.path(str(out / "geoclip"))})


@dg.asset(group_name=GROUP, kinds={"geojson"}, owners=OWNERS, deps=LAYER_ASSETS,
          tags={"maille": "iris-commune-epci-departement"})
def couches_web(context: dg.AssetExecutionContext, fragilite: FragiliteConfig) -> dg.MaterializeResult:
    """Couches web allégées (`web/<maille>_<tolérance>m.geojson`, WGS84) : simplification de
    couverture qui préserve la topologie (les IRIS voisins gardent une frontière commune),
    validité de la couverture vérifiée avant et après ; nombre de sommets et tailles en métadonnées."""
    out = fragilite.output_folder
    tolerances = load_publication().web_tolerances_m
    stats, targets = {}, {}
    for maille, layer in _layers(fragilite).items():
        for tolerance in tolerances:
            simplified, s = simplify_layer(layer, tolerance)
            name = f"{maille}_{tolerance:g}m"
            stats[name] = {"tolerance_m": tolerance, "sommets_avant": s.vertices_before,
                           "sommets_apres": s.vertices_after, "couverture_valide_avant": s.valid_before,
                           "couverture_valide_apres": s.valid_after}
            targets[out / "web" / f"{name}.geojson"] = lambda tmp, g=simplified: write_geojson(g, tmp)
    with output_lock(out):
        sizes = write_all(targets)
    for path, size in sizes.items():
        stats[path.stem]["octets"] = size
    report(context, f"couches_web: {len(sizes)} GeoJSON simplifiés")
    return dg.MaterializeResult(metadata={"simplification": dg.MetadataValue.json(stats), "fichiers": _sizes(sizes)})


@dg.asset(group_name=GROUP, kinds={"qgis"}, owners=OWNERS, deps=LAYER_ASSETS,
          tags={"maille": "iris-commune-epci-departement"})
def styles_qgis(context: dg.AssetExecutionContext, fragilite: FragiliteConfig) -> dg.MaterializeResult:
    """Styles QGIS : un `.qml` par couche à côté de son GeoPackage (QGIS le charge seul), classes
    graduées sur le score global avec légende en français, et le projet `fragilite.qgs` qui ouvre
    les quatre couches d'un clic."""
    out = fragilite.output_folder
    spec = load_publication().classification
    targets, project_layers = {}, []
    for maille, layer in _layers(fragilite).items():
        classes = classify(layer[spec.field], spec)
        targets[out / "layers" / f"{maille}.qml"] = lambda tmp, c=classes: Path(tmp).write_text(qml(c), encoding="utf-8")
        project_layers.append((DISPLAY[maille], f"./layers/{maille}.gpkg", maille, classes))
    info = _run_info(fragilite)
    title = f"Fragilité numérique — {info['territoire']}"
    targets[out / "fragilite.qgs"] = lambda tmp: Path(tmp).write_text(qgis_project(title, project_layers), encoding="utf-8")
    with output_lock(out):
        sizes = write_all(targets)
    report(context, f"styles_qgis: projet {out / 'fragilite.qgs'}")
    return dg.MaterializeResult(metadata={"projet": dg.MetadataValue.path(str(out / "fragilite.qgs")),
                                          "fichiers": _sizes(sizes)})


@dg.asset(group_name=GROUP, kinds={"png"}, owners=OWNERS, deps=LAYER_ASSETS,
          tags={"maille": "iris-commune-epci-departement"})
def cartes(context: dg.AssetExecutionContext, fragilite: FragiliteConfig) -> dg.MaterializeResult:
    """Cartes PNG du score global par maille (`cartes/<maille>.png`) : classes mapclassify, légende,
    titre, sources et millésimes, nord en haut, barre d'échelle. La carte des IRIS s'affiche ici."""
    out = fragilite.output_folder
    spec = load_publication().classification
    info = _run_info(fragilite)
    layers = _layers(fragilite)
    classes = {maille: classify(layer[spec.field], spec) for maille, layer in layers.items()}
    pngs = {}
    for maille, layer in layers.items():
        title = f"Fragilité numérique — {spec.field.replace('_', ' ')} ({DISPLAY[maille]})\n{info['territoire']}"
        pngs[maille] = choropleth_png(layer, classes[maille], title=title, sources=_sources_line(info))
    targets = {out / "cartes" / f"{m}.png": (lambda tmp, d=data: Path(tmp).write_bytes(d)) for m, data in pngs.items()}
    with output_lock(out):
        sizes = write_all(targets)
    thumbnail = choropleth_png(layers["iris"], classes["iris"], title=DISPLAY["iris"], sources="", dpi=40)
    report(context, f"cartes: {len(pngs)} cartes dans {out / 'cartes'}")
    return dg.MaterializeResult(metadata={
        "carte_iris": dg.MetadataValue.md(f"![carte](data:image/png;base64,{base64.b64encode(thumbnail).decode()})"),
        "fichiers": _sizes(sizes),
    })


@dg.asset(group_name=GROUP, kinds={"html"}, owners=OWNERS, deps=["couche_iris", "cartes"], tags={"maille": "iris"})
def rapport(context: dg.AssetExecutionContext, fragilite: FragiliteConfig) -> dg.MaterializeResult:
    """Rapport territorial autonome (`rapport.html`, images intégrées, sans réseau) : chiffres clés,
    carte, distribution des scores, les IRIS les plus fragiles et leurs indicateurs moteurs,
    personnes à risque estimées."""
    out = fragilite.output_folder
    publication = load_publication()
    info = _run_info(fragilite)
    iris = pd.DataFrame(_layers(fragilite, ("iris",))["iris"].drop(columns="geometry"))
    html = render_report(
        iris,
        ReportContext(territory=info["territoire"], methode=info["methode"], reference=info["reference"],
                      millesime_rp=info["millesime_rp"], vintages=info.get("millesimes", {}),
                      run_date=info["date_calcul"][:10]),
        fragilite.catalogue,
        fragilite.tic,
        map_png=(out / "cartes" / "iris.png").read_bytes(),
        histogram=histogram_png(iris["score_global"], title="Score global des IRIS"),
        top_n=publication.report_top_iris,
        opale=info.get("details_methodes", {}).get("opale_resume"),
    )
    path = out / "rapport.html"
    with output_lock(out):
        sizes = write_all({path: lambda tmp: Path(tmp).write_text(html, encoding="utf-8")})
    report(context, f"rapport: {path}")
    return dg.MaterializeResult(metadata={"rapport": dg.MetadataValue.path(str(path)), "octets": sizes[path],
                                          "date": datetime.now(timezone.utc).isoformat(timespec="seconds")})


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
- contours/<maille>_2154.shp (Lambert-93) et contours/<maille>_4326.geojson (WGS84) : contours,
  clé et libellé, à joindre aux tables par la clé.

Mises en garde
- Les colonnes <id>_source valent « commune » quand la valeur d'un IRIS vient de sa commune.
- Secret statistique : aucun effectif issu de données CAF inférieur à {seuil} n'est publié ; la
  cellule est vide et la colonne <id>_secret vaut vrai.
- Les groupes d'estimations (est_*) se recouvrent : ne jamais les additionner.
"""

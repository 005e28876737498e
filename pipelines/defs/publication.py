"""What each publication asset writes, from the layers in memory (see `outputs.py`, which
materializes them together so their work overlaps on two cores).

Each function writes its files under the run's output folder atomically (`write_all`; the
caller holds the output lock) and returns the asset's metadata.
"""

import base64
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import geopandas as gpd
import pandas as pd

from config.settings import Classification, PublicationConfig
from outputs.dictionary import PLACES_SOURCE, cog_year, vintages_line
from outputs.files import write_all
from outputs.geoclip import csv_names, write_pack
from outputs.layers import geojson_properties, write_features
from outputs.report import ReportContext, fr_number, method_display, reference_display, render_report
from outputs.styles import ProjectLayer, classify, places_renderer, priority_renderer, qgis_project, qml
from outputs.web import WebOutlines, level_name, levels_from_frame, web_outlines
from transforms.geo_codes import CITY_ARRONDISSEMENTS

DISPLAY = {"iris": "IRIS", "communes": "Communes", "epci": "EPCI", "departements": "Départements"}
PLACES_LAYER = "lieux_mediation"
PLACES_DISPLAY = "Lieux de médiation"
PRIORITY_DISPLAY = "IRIS — priorité"
OFFER_ABSENT = "offre de médiation absente"


def sizes_metadata(sizes: dict[Path, int]) -> dg.MetadataValue:
    return dg.MetadataValue.json({str(p): s for p, s in sizes.items()})


def display_labels(fragilite, iris: pd.DataFrame, info: dict) -> dict:
    """The method and reference as readers see them (« MedNum 2019 », « département du Rhône
    (69) »), for the report, the maps and the pack's LISEZMOI."""
    settings = fragilite.settings
    return {
        "methode_libelle": method_display(info["methode"], fragilite.methods.weightings),
        "reference_libelle": reference_display(
            info["reference"],
            sorted(iris["DEP"].dropna().astype(str).unique()),
            fragilite.departement_names,
            settings.run.territory_label,
            settings.reference_values,
        ),
    }


def _sources_line(info: dict) -> str:
    vintages = vintages_line(info.get("millesimes", {}))
    return (
        f"Sources : INSEE RP {info['millesime_rp']} (bases infracommunales) ; {vintages} ; IGN CONTOURS-IRIS. "
        f"Méthode {info['methode_libelle']}, référence : {info['reference_libelle']}. "
        f"Calcul fragilite-numerique du {info['date_calcul'][:10]}."
    )


def contours_web(layers: dict[str, gpd.GeoDataFrame], simplified: gpd.GeoDataFrame) -> WebOutlines:
    """Simplified outlines of every maille at every tolerance, row-aligned with the layers: the
    IRIS coverage simplified once per tolerance and its unions per coarser maille, made by the
    asset `contours_simplifies` while the indicators were scored."""
    return web_outlines(levels_from_frame(simplified), layers)


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
    """`web/<maille>_<tolérance>m.geojson`: the layer's display columns on its simplified outlines.

    A maille at a time: its properties, shared by its tolerances, are the largest text held.
    The outlines' text (GEOS, kept for the pack) is made meanwhile on another thread."""
    levels = {m: list(web.levels(m)) for m in layers}
    sizes: dict[Path, int] = {}
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="fragilite-web") as ahead:
        outlines = ahead.submit(lambda: [web.geojson(m, t) for m in levels for t in levels[m]])
        for maille, tolerances in levels.items():
            if not tolerances:
                continue
            attributes = layers[maille][publication.web_selection(list(layers[maille].columns))]
            properties = geojson_properties(attributes, publication.web_decimals)  # shared by the tolerances
            sizes |= write_all(
                {
                    out / "web" / f"{level_name(maille, t)}.geojson": (
                        lambda tmp, m=maille, t=t, p=properties: write_features(tmp, p, web.geojson(m, t))
                    )
                    for t in tolerances
                }
            )
        outlines.result()
    return {"fichiers": sizes_metadata(sizes), "dossier": dg.MetadataValue.path(str(out / "web"))}


def pack_geoclip(
    out: Path,
    layers: dict[str, gpd.GeoDataFrame],
    tables: dict[str, pd.DataFrame],
    dictionary: pd.DataFrame,
    caf: list[str],
    info: dict,
    publication: PublicationConfig,
    web: Future,
) -> dict:
    """`geoclip/`; its GeoJSON outlines wait for the web outlines (computed meanwhile)."""
    tolerance = min(publication.web_tolerances_m)
    communes = tables.get("communes", pd.DataFrame(columns=["CODGEO", "NOM_COM"]))
    cities = communes[communes["CODGEO"].isin(list(CITY_ARRONDISSEMENTS))]
    readme = PACK_README.format(
        territoire=info["territoire"],
        methode=info["methode_libelle"],
        reference=info["reference_libelle"],
        millesime=info["millesime_rp"],
        cog=cog_year(info["millesime_rp"]),
        date=info["date_calcul"][:10],
        seuil=fr_number(publication.secret_threshold, 0),
        tolerance=f"{tolerance:g}".replace(".", ","),
        villes=", ".join(f"{c} {n}" for c, n in zip(cities["CODGEO"], cities["NOM_COM"])) or "aucune ici",
        machine=csv_names("<maille>")[0],
        excel=csv_names("<maille>")[1],
        offre=PACK_OFFER
        if "priorite" in layers["iris"]
        else "- Offre de médiation absente : pas de colonnes offre_* ni priorite.\n",
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
        tables=tables,
    )
    return {"fichiers": sizes_metadata(sizes), "dossier": dg.MetadataValue.path(str(out / "geoclip"))}


def styles_qgis(
    out: Path, layers: dict[str, gpd.GeoDataFrame], spec: Classification, info: dict, places: bool = False
) -> dict:
    """A `.qml` per layer beside its GeoPackage, and the `fragilite.qgs` project; with the offer
    of mediation (`places`), the places on top (shown) and the IRIS by priority (hidden)."""
    targets, project_layers = {}, []
    for maille, layer in layers.items():
        classes = classify(layer[spec.field], spec)
        targets[out / "layers" / f"{maille}.qml"] = lambda tmp, c=classes: Path(tmp).write_text(
            qml(c), encoding="utf-8"
        )
        project_layers.append((DISPLAY[maille], f"./layers/{maille}.gpkg", maille, classes))
    above = []
    if places:
        above.append(
            ProjectLayer(
                PLACES_DISPLAY,
                f"./layers/{PLACES_LAYER}.gpkg",
                PLACES_LAYER,
                f"{PLACES_LAYER}_fragilite",
                places_renderer(),
                geometry="Point",
                checked=True,
            )
        )
    if "priorite" in layers["iris"]:
        above.append(
            ProjectLayer(PRIORITY_DISPLAY, "./layers/iris.gpkg", "iris", "iris_priorite_fragilite", priority_renderer())
        )
    title = f"Fragilité numérique — {info['territoire']}"
    epsg = layers["iris"].crs.to_epsg()  # the layers' CRS: Lambert-93, or an overseas UTM
    targets[out / "fragilite.qgs"] = lambda tmp: Path(tmp).write_text(
        qgis_project(title, project_layers, epsg, tuple(layers["iris"].total_bounds), above=above), encoding="utf-8"
    )
    sizes = write_all(targets)
    return {
        "projet": dg.MetadataValue.path(str(out / "fragilite.qgs")),
        "couches_offre": [layer.name for layer in above] or OFFER_ABSENT,
        "fichiers": sizes_metadata(sizes),
    }


def cartes(
    out: Path,
    layers: dict[str, gpd.GeoDataFrame],
    spec: Classification,
    info: dict,
    places: gpd.GeoDataFrame | None = None,
    web: Future | None = None,
) -> dict:
    """`cartes/<maille>.png`, the IRIS map as a thumbnail for the UI, and with the offer of
    mediation `cartes/priorite.png` (IRIS by priority class, places on top). Each maille's
    outlines are prepared once, from its web outlines (`web`: a future of them) when they are
    finer than the map's pixel."""
    # matplotlib (a fifth of a second to import) is loaded by the maps' part of the outputs'
    # step, beside the other writers, rather than by every process that loads the definitions.
    from outputs.maps import choropleth_png, map_outlines, priority_png

    pngs, thumbnail = {}, b""
    simplified = web.result() if web is not None else None
    prepared = {
        maille: map_outlines(layer, simplified=simplified.levels(maille) if simplified is not None else None)
        for maille, layer in layers.items()
    }
    for maille, layer in layers.items():
        title = f"Fragilité numérique — {spec.field.replace('_', ' ')} ({DISPLAY[maille]})\n{info['territoire']}"
        pngs[maille], small = choropleth_png(
            layer,
            classify(layer[spec.field], spec),
            title=title,
            sources=_sources_line(info),
            thumbnail_dpi=40 if maille == "iris" else None,
            outlines=prepared[maille],
        )
        thumbnail = small or thumbnail
    if "priorite" in layers["iris"]:
        pngs["priorite"] = priority_png(
            layers["iris"],
            places,
            title=f"IRIS fragiles éloignés de l'offre de médiation numérique\n{info['territoire']}",
            sources=_sources_line(info) + " Lieux : " + PLACES_SOURCE + ".",
            outlines=prepared["iris"],
        )
    sizes = write_all(
        {out / "cartes" / f"{m}.png": (lambda tmp, d=data: Path(tmp).write_bytes(d)) for m, data in pngs.items()}
    )
    return {
        "carte_iris": dg.MetadataValue.md(f"![carte](data:image/png;base64,{base64.b64encode(thumbnail).decode()})"),
        "carte_priorite": str(out / "cartes" / "priorite.png") if "priorite" in pngs else OFFER_ABSENT,
        "fichiers": sizes_metadata(sizes),
    }


def rapport(out: Path, iris: pd.DataFrame, info: dict, fragilite, publication: PublicationConfig) -> dict:
    """`rapport.html`, self-contained (images inlined); after `cartes` (it embeds the IRIS map)."""
    from outputs.maps import histogram_png  # as in `cartes`

    html = render_report(
        pd.DataFrame(iris.drop(columns="geometry", errors="ignore")),
        ReportContext(
            territory=info["territoire"],
            methode=info["methode_libelle"],
            reference=info["reference_libelle"],
            millesime_rp=info["millesime_rp"],
            vintages=info.get("millesimes", {}),
            run_date=info["date_calcul"][:10],
        ),
        fragilite.catalogue,
        fragilite.tic,
        map_png=(out / "cartes" / "iris.png").read_bytes(),
        histogram=histogram_png(iris["score_global"], title="Score global des IRIS"),
        top_n=publication.report_top_iris,
        opale=info.get("details_methodes", {}).get("opale_resume"),
        priority_map=(out / "cartes" / "priorite.png").read_bytes() if "priorite" in iris else None,
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
Géographie : codes des communes et des IRIS au 1er janvier {cog} (code officiel géographique
{cog} de l'INSEE, celui du recensement {millesime}).

Fichiers
- iris, communes, epci, departements : une table par maille, clé = code officiel en texte
  (CODE_IRIS, CODGEO, EPCI, DEP), puis le libellé, puis pour chaque indicateur le numérateur
  (_num), le dénominateur (_den), le taux (_taux) et le score (_score), les scores d'axes et
  globaux, les notes IFN 2023, le score Opale et les estimations de personnes à risque (est_*).
  Chaque table existe en trois fichiers :
  - {excel} : pour Excel en français (double-clic) : UTF-8 avec BOM, séparateur « ; »,
    décimales « , », VRAI/FAUX ; un texte qui commencerait par =, +, -, @ est précédé d'une
    apostrophe pour ne jamais être exécuté comme une formule ;
  - {machine} : pour les logiciels et scripts (R, Python, SIG, import en base) : UTF-8 sans
    BOM, séparateur « ; », décimales « . », true/false, valeurs telles quelles ;
  - <maille>.xlsx : classeur, codes en texte (zéros en tête, 2A/2B conservés).
- Table des communes : comme dans le code officiel géographique, la colonne TYPECOM vaut COM
  pour une commune et ARM pour un arrondissement municipal, dont COMPARENT donne la ville.
  Paris, Lyon et Marseille ont une ligne COM (villes présentes : {villes}) : effectifs sommés
  sur leurs arrondissements, taux recalculés sur ces sommes, scores par la même méthode que
  toute commune. Ne jamais additionner une ville et ses arrondissements (ne garder que COM, ou
  que les lignes sans les villes à arrondissements). Les contours (contours/) n'ont que les
  arrondissements : le contour d'une ville est leur réunion.
- dictionnaire_indicateurs (mêmes trois formats) : libellé, définition, unité, source,
  millésime (COG {cog} pour les codes), maille de la source, méthode, référence et tables de
  chaque colonne de chaque table.
- contours/<maille>_<EPSG>.shp (projection des couches : Lambert-93, EPSG:2154, en métropole ; UTM en outre-mer ; tracé complet) et contours/<maille>_4326.geojson
  (WGS84, tracé allégé pour le web : simplification de couverture à {tolerance} m, les voisins
  gardent leur frontière commune) : contours, clé et libellé, à joindre aux tables par la clé.

Mises en garde
- Les colonnes <id>_source valent « commune » quand la valeur d'un IRIS vient de sa commune.
- Secret statistique : aucun effectif issu de données CAF inférieur à {seuil} n'est publié ; la
  cellule est vide et la colonne <id>_secret vaut vrai.
- Les groupes d'estimations (est_*) se recouvrent : ne jamais les additionner.
{offre}"""

PACK_OFFER = """
Offre de médiation numérique (docs/offre.md du projet)
- Table des IRIS : offre_demande (personnes à risque), offre_dist_km (distance à vol d'oiseau au
  lieu le plus proche), offre_n_<r>km (lieux à moins de r km), offre_2sfca (accessibilité à deux
  étapes, lieux pour 10 000 personnes à risque ; _<filtre> : lieux d'un filtre de services ou de
  publics), classe_fragilite, classe_accessibilite et priorite (forte = fragile et éloigné).
- Tables des communes et EPCI : personnes à risque et IRIS de chaque classe de priorité
  (personnes_priorite_forte, iris_priorite_forte…, part_personnes_priorite_forte).
- Les lieux eux-mêmes sont dans la couche layers/lieux_mediation (GeoParquet, GeoPackage).
"""

"""Quality gates. Blocking checks stop the run before a bad layer is published."""

import json
import re

import dagster as dg
import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import shapely

from indice.methods import Scored
from outputs.report import fr_number
from pipelines.resources import FragiliteConfig
from sources.common import COMMUNE_PATTERN, DEPARTEMENT_PATTERN, EPCI_PATTERN, IRIS_PATTERN
from sources.ign_iris import EXPECTED_CRS
from transforms.chain import study_rows
from transforms.indicators import IndicatorResult
from transforms.mailles import MAILLE_KEYS


def _input_name(fragilite: FragiliteConfig, key: str) -> str:
    """The file a blocking check's message names (the configured or downloaded input)."""
    path, _ = fragilite.input_file(key)
    return str(path) if path else f"inputs.{key}"


@dg.asset_check(asset="iris_base", blocking=True, description="Codes IRIS et communes au bon format, IRIS uniques.")
def codes_valides(fragilite: FragiliteConfig, iris_base: gpd.GeoDataFrame) -> dg.AssetCheckResult:
    bad_iris = ~iris_base["CODE_IRIS"].str.fullmatch(IRIS_PATTERN.pattern)
    bad_com = ~iris_base["INSEE_COM"].str.fullmatch(COMMUNE_PATTERN.pattern)
    dupes = iris_base["CODE_IRIS"].duplicated()
    found = {
        "code(s) IRIS invalide(s)": iris_base.loc[bad_iris, "CODE_IRIS"],
        "code(s) commune invalide(s)": iris_base.loc[bad_com, "INSEE_COM"],
        "IRIS en double": iris_base.loc[dupes, "CODE_IRIS"],
    }
    problems = [
        f"{len(codes)} {what} ({', '.join(map(repr, codes.head(5)))})" for what, codes in found.items() if len(codes)
    ]
    return dg.AssetCheckResult(
        passed=not problems,
        description=None
        if not problems
        else f"{_input_name(fragilite, 'contours_iris')} : {' ; '.join(problems)}. Correction : vérifiez que les "
        "contours et le recensement sont les fichiers publiés par l'IGN et l'INSEE (codes IRIS sur 9 caractères, "
        "communes sur 5, 2A/2B pour la Corse), puis `fragilite validate`.",
        metadata={
            "iris_invalides": iris_base.loc[bad_iris, "CODE_IRIS"].head(20).tolist(),
            "communes_invalides": iris_base.loc[bad_com, "INSEE_COM"].head(20).tolist(),
            "iris_en_double": iris_base.loc[dupes, "CODE_IRIS"].head(20).tolist(),
        },
    )


@dg.asset_check(
    asset="iris_base", blocking=True, description="Contours dans la projection attendue (Lambert-93 en métropole)."
)
def crs_attendu(fragilite: FragiliteConfig, iris_base: gpd.GeoDataFrame) -> dg.AssetCheckResult:
    epsg = iris_base.crs.to_epsg() if iris_base.crs else None
    passed = epsg in set(EXPECTED_CRS.values())
    return dg.AssetCheckResult(
        passed=passed,
        description=None
        if passed
        else f"{_input_name(fragilite, 'contours_iris')} : projection EPSG:{epsg}, attendue "
        f"{', '.join(f'EPSG:{c}' for c in sorted(set(EXPECTED_CRS.values())))} selon la partie de la France. "
        "Correction : utilisez les contours CONTOURS-IRIS de l'IGN tels que publiés (Lambert-93 en métropole), "
        "sans les réenregistrer dans une autre projection.",
        metadata={"epsg": str(epsg)},
    )


@dg.asset_check(asset="iris_base", description="Chaque IRIS du territoire a ses effectifs du recensement.")
def recensement_complet(iris_base: gpd.GeoDataFrame) -> dg.AssetCheckResult:
    missing = iris_base.loc[iris_base["P_POP"].isna(), "CODE_IRIS"] if "P_POP" in iris_base else iris_base["CODE_IRIS"]
    return dg.AssetCheckResult(
        passed=missing.empty,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"iris_sans_recensement": len(missing), "codes": missing.head(50).tolist()},
    )


@dg.asset_check(
    asset="iris_scores",
    blocking=True,
    additional_ins={"iris_indicateurs": dg.AssetIn("iris_indicateurs")},
    description="Scores finis, positifs et plausibles (< 10 000).",
)
def scores_plausibles(iris_scores: Scored, iris_indicateurs: IndicatorResult) -> dg.AssetCheckResult:
    scores = iris_scores.table.filter(like="score").to_numpy(dtype="float64")
    present = scores[~np.isnan(scores)]
    bad = (~np.isfinite(present)) | (present < 0) | (present > 10_000)
    passed = not bad.any() and present.size > 0
    table = iris_scores.table.filter(like="score")
    offending = table.apply(lambda c: ~np.isfinite(c) | (c < 0) | (c > 10_000)) & table.notna()
    codes = iris_indicateurs.frame["CODE_IRIS"]
    first = [
        f"{column} = {fr_number(float(table.at[row, column]), 1)} (IRIS {codes.at[row]})"
        for column in offending.columns
        for row in offending.index[offending[column]][:2]
    ][:5]
    return dg.AssetCheckResult(
        passed=passed,
        description=None
        if passed
        else (
            "aucun score calculé : les fichiers d'entrée ne donnent aucun indicateur (voir `fragilite validate`)"
            if present.size == 0
            else f"{int(bad.sum())} score(s) infini(s), négatif(s) ou au-delà de 10 000 : {', '.join(first)}. "
            "Cause probable : une référence presque nulle (un indicateur presque absent du territoire de "
            "référence) ou un effectif aberrant dans un fichier d'entrée. Correction : `fragilite validate`, "
            "puis retirez l'indicateur (run.indicators) ou choisissez une autre référence (--reference)."
        ),
        metadata={
            "valeurs_hors_bornes": int(bad.sum()),
            "valeurs": int(present.size),
            "max": float(present[np.isfinite(present)].max()) if present.size else 0.0,
        },
    )


@dg.asset_check(
    asset="iris_scores",
    description="Les scores des IRIS reposent sur le même ensemble d'indicateurs (avertissement sinon : deux "
    "scores égaux peuvent reposer sur 6 et sur 9 indicateurs ; colonnes nb_indicateurs_notes et "
    "indicateurs_manquants, règle `completeness` de config/methods.yaml).",
)
def scores_sur_memes_indicateurs(iris_scores: Scored) -> dg.AssetCheckResult:
    table = iris_scores.table
    if "indicateurs_manquants" not in table:
        return dg.AssetCheckResult(passed=True, severity=dg.AssetCheckSeverity.WARN, metadata={"mednum": "non retenue"})
    scored = table[table["score_global"].notna()]
    sets = scored["indicateurs_manquants"].replace("", "(aucun)").value_counts()
    return dg.AssetCheckResult(
        passed=len(sets) <= 1,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "ensembles_d_indicateurs": len(sets),
            "iris_par_indicateurs_manquants": dg.MetadataValue.json({str(k): int(v) for k, v in sets.items()}),
            "iris_par_nombre_d_indicateurs": dg.MetadataValue.json(
                {str(k): int(v) for k, v in scored["nb_indicateurs_notes"].value_counts().sort_index().items()}
            ),
        },
    )


CODE_PATTERNS = {
    "iris": IRIS_PATTERN,
    "communes": COMMUNE_PATTERN,
    "epci": EPCI_PATTERN,
    "departements": DEPARTEMENT_PATTERN,
}
LAYER_KEYS = {maille: (key, CODE_PATTERNS[maille]) for maille, key in MAILLE_KEYS.items()}


def _layer_check(maille: str) -> dg.AssetChecksDefinition:
    key, pattern = LAYER_KEYS[maille]

    @dg.asset_check(
        asset=f"couche_{maille}",
        name="couche_relisible",
        description=f"La couche {maille} écrite se relit : GeoParquet 1.1, projection de la partie de France "
        "(EPSG:2154 en métropole), "
        f"{key} en texte au bon format et unique.",
    )
    def _check(fragilite: FragiliteConfig) -> dg.AssetCheckResult:
        path = fragilite.output_folder / "layers" / f"{maille}.parquet"
        table = pq.read_table(path, columns=[key])
        geo = json.loads(table.schema.metadata[b"geo"])
        codes = table.column(key).to_pylist()
        crs = geo["columns"]["geometry"].get("crs", {}).get("id", {})
        bad = [c for c in codes if not (isinstance(c, str) and pattern.fullmatch(c))]
        ok = geo.get("version") == "1.1.0" and not bad and len(set(codes)) == len(codes)
        return dg.AssetCheckResult(
            passed=ok,
            metadata={
                "lignes": len(codes),
                "geoparquet": geo.get("version"),
                "crs": str(crs),
                "codes_invalides": bad[:20],
            },
        )

    return _check


couche_iris_relisible = _layer_check("iris")
couche_communes_relisible = _layer_check("communes")
couche_epci_relisible = _layer_check("epci")
couche_departements_relisible = _layer_check("departements")


@dg.asset_check(
    asset="mailles",
    blocking=True,
    additional_ins={"iris_base": dg.AssetIn("iris_base")},
    description="Population cohérente entre mailles : somme des IRIS = communes = EPCI = départements "
    "(les communes sans EPCI, code INSEE ZZZZZZZZZ, n'entrent pas dans la couche EPCI).",
)
def populations_coherentes(iris_base: gpd.GeoDataFrame, mailles: dict) -> dg.AssetCheckResult:
    iris_base = study_rows(iris_base)  # the reference units' other IRIS are not published
    population = iris_base["P_POP"].fillna(0)
    expected = {
        "iris": float(population.sum()),
        "communes_sans_epci": float(population[iris_base["EPCI"].isna()].sum()),
    }
    totals = {name: float(t["P_POP"].sum()) for name, t in mailles.items()}
    gaps = {
        name: total - expected["iris"] + (expected["communes_sans_epci"] if name == "epci" else 0.0)
        for name, total in totals.items()
    }
    passed = all(abs(gap) <= 1e-6 * max(1.0, expected["iris"]) for gap in gaps.values())
    wrong = {name: gap for name, gap in gaps.items() if abs(gap) > 1e-6 * max(1.0, expected["iris"])}
    return dg.AssetCheckResult(
        passed=passed,
        description=None
        if passed
        else "population différente entre mailles : "
        + ", ".join(f"{name} {totals[name]:,.0f} (écart {gap:+,.0f})" for name, gap in wrong.items())
        + f" pour {expected['iris']:,.0f} habitants dans les IRIS. Cause probable : des communes du recensement "
        "absentes du fichier des EPCI, ou des codes communes qui ne se joignent pas. Correction : "
        "`fragilite validate` (jointures non abouties) et le fichier des EPCI du même millésime.",
        metadata={**expected, **totals},
    )


@dg.asset_check(asset="dictionnaire", description="Le dictionnaire décrit chaque colonne de la couche IRIS publiée.")
def dictionnaire_complet(fragilite: FragiliteConfig) -> dg.AssetCheckResult:
    layers = fragilite.output_folder / "layers"
    columns = [c for c in pq.read_schema(layers / "iris.parquet").names if c not in ("geometry", "bbox")]
    described = pd.read_csv(layers / "dictionnaire.csv", sep=";", dtype=str, keep_default_na=False)
    missing = sorted(set(columns) - set(described["code"]))
    unlabelled = described.loc[described["libelle"] == "", "code"].tolist()
    return dg.AssetCheckResult(
        passed=not missing and not unlabelled, metadata={"colonnes_non_decrites": missing, "sans_libelle": unlabelled}
    )


@dg.asset_check(
    asset="pack_geoclip",
    description="Chaque table du paquet se relit avec sa clé en texte unique, "
    "le dictionnaire couvre chaque colonne d'indicateur, aucun effectif CAF < 5 n'est publié.",
)
def pack_complet(fragilite: FragiliteConfig) -> dg.AssetCheckResult:
    from outputs.geoclip import PACK_KEYS

    pack = fragilite.output_folder / "geoclip"
    described = set(pd.read_csv(pack / "dictionnaire_indicateurs.csv", sep=";", dtype=str)["code"])
    caf = [i.id for i in fragilite.catalogue.indicators if i.source == "caf_non_connectes"]
    problems = []
    for maille, (_, key, _) in PACK_KEYS.items():
        path = pack / f"{maille}.csv"
        header = pd.read_csv(path, sep=";", nrows=0).columns
        counts = [c for ind_id in caf for c in (f"{ind_id}_num", f"{ind_id}_den") if c in header]
        # Only the key and the CAF counts are read (multithreaded Arrow reader): national tables
        # have ~100 columns.
        table = pd.read_csv(path, sep=";", usecols=[key, *counts], dtype={key: str}, engine="pyarrow")
        if not table[key].is_unique:
            problems.append(f"{maille}: clé {key} non unique")
        columns = [c for c in header if c.endswith(("_num", "_den", "_taux", "_score"))]
        problems += [f"{maille}: {c} absent du dictionnaire" for c in columns if c not in described]
        problems += [f"{maille}: {c} < 5 publié" for c in counts if (table[c] < 5).any()]
    return dg.AssetCheckResult(passed=not problems, metadata={"problemes": problems[:50]})


@dg.asset_check(
    asset="couches_web",
    description="Chaque couche web (maille × tolérance) est une FeatureCollection "
    "complète : autant d'entités que la couche publiée, fichier terminé.",
)
def couches_web_completes(fragilite: FragiliteConfig) -> dg.AssetCheckResult:
    from config.settings import load_publication

    out, problems, counts = fragilite.output_folder, [], {}
    for maille in LAYER_KEYS:
        rows = pq.ParquetFile(out / "layers" / f"{maille}.parquet").metadata.num_rows
        for tolerance in load_publication().web_tolerances_m:
            name = f"{maille}_{tolerance:g}m"
            path = out / "web" / f"{name}.geojson"
            if not path.is_file():
                problems.append(f"{name}: absent")
                continue
            with open(path, encoding="utf-8") as fh:
                head = fh.readline()
                features = sum(1 for line in fh if line.startswith('{"type":"Feature"'))
            counts[name] = features
            if not head.startswith('{"type":"FeatureCollection"') or features != rows:
                problems.append(f"{name}: {features} entités pour {rows} lignes dans la couche")
            else:
                with open(path, "rb") as fh:
                    fh.seek(max(0, path.stat().st_size - 16))
                    if not fh.read().rstrip().endswith(b"]}"):
                        problems.append(f"{name}: fichier tronqué")
    return dg.AssetCheckResult(passed=not problems, metadata={"entites": counts, "problemes": problems})


@dg.asset_check(asset="styles_qgis", description="Le projet QGIS se lit et chaque couche qu'il cite existe.")
def projet_qgis_valide(fragilite: FragiliteConfig) -> dg.AssetCheckResult:
    import xml.etree.ElementTree as ET

    out = fragilite.output_folder
    root = ET.parse(out / "fragilite.qgs").getroot()
    sources = [m.findtext("datasource") for m in root.iter("maplayer")]
    missing = [s for s in sources if not (out / s.split("|")[0]).exists()]
    return dg.AssetCheckResult(passed=bool(sources) and not missing, metadata={"couches": sources, "absentes": missing})


@dg.asset_check(
    asset="cartes",
    description="Une carte PNG par maille, et la carte des zones prioritaires (`priorite.png`) avec un fichier "
    "de lieux de médiation.",
)
def cartes_ecrites(fragilite: FragiliteConfig) -> dg.AssetCheckResult:
    pngs = {
        p.name: p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        for p in sorted((fragilite.output_folder / "cartes").glob("*.png"))
    }
    mailles = {"iris.png", "communes.png", "epci.png", "departements.png"}
    passed = mailles <= set(pngs) <= mailles | {"priorite.png"} and all(pngs.values())
    return dg.AssetCheckResult(
        passed=passed,
        metadata={
            "cartes": list(pngs),
            "manquantes": sorted(mailles - set(pngs)),
            "illisibles": [n for n, ok in pngs.items() if not ok],
        },
    )


@dg.asset_check(asset="rapport", description="Le rapport est autonome : images intégrées, aucune ressource réseau.")
def rapport_autonome(fragilite: FragiliteConfig) -> dg.AssetCheckResult:
    html = (fragilite.output_folder / "rapport.html").read_text(encoding="utf-8")
    external = re.findall(r"""(?:src|href)=["'](https?://[^"']+)""", html)
    images = html.count("data:image/png;base64,")
    return dg.AssetCheckResult(
        passed=not external and images >= 2, metadata={"ressources_externes": external, "images": images}
    )


@dg.asset_check(
    asset="iris_indicateurs",
    description="Taux entre 0 et 1 (numérateur ≤ dénominateur) : un "
    "dépassement est gardé tel que publié et signalé ici.",
)
def taux_dans_les_bornes(iris_indicateurs) -> dg.AssetCheckResult:
    table = iris_indicateurs.table
    over = {}
    for column in [c for c in table.columns if c.endswith("_taux") and not c.startswith("revenu_median")]:
        bad = table.loc[table[column] > 1 + 1e-9, "CODE_IRIS"].tolist()
        if bad:
            over[column] = bad[:20]
    return dg.AssetCheckResult(
        passed=not over,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"taux_superieurs_a_1": dg.MetadataValue.json(over)},
    )


@dg.asset_check(
    asset="iris_indicateurs",
    description="Part des IRIS sans valeur Filosofi (revenu médian) sous le seuil d'alerte (50 %).",
)
def couverture_filosofi(iris_indicateurs) -> dg.AssetCheckResult:
    table = iris_indicateurs.table
    if "revenu_median_source" not in table:
        return dg.AssetCheckResult(passed=True, severity=dg.AssetCheckSeverity.WARN, metadata={"filosofi": "absent"})
    share_iris = float((table["revenu_median_source"] == "iris").mean())
    share_none = float((table["revenu_median_source"] == "").mean())
    return dg.AssetCheckResult(
        passed=share_none <= 0.5,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "part_valeur_iris": round(share_iris, 4),
            "part_valeur_commune": round(1 - share_iris - share_none, 4),
            "part_sans_valeur": round(share_none, 4),
        },
    )


@dg.asset_check(
    asset="iris_base",
    description="Chaque contour d'IRIS est une géométrie valide (les géométries "
    "réparées à la lecture sont listées par `contours_iris`). La couverture (ni chevauchement ni trou "
    "entre voisins) est vérifiée par `contours_simplifies`.",
)
def geometries_valides(iris_base: gpd.GeoDataFrame) -> dg.AssetCheckResult:
    invalid = iris_base.loc[~iris_base.geometry.is_valid, "CODE_IRIS"].tolist()
    return dg.AssetCheckResult(
        passed=not invalid, severity=dg.AssetCheckSeverity.WARN, metadata={"invalides": invalid[:50]}
    )


@dg.asset_check(
    asset="contours_simplifies",
    description="Les contours des IRIS forment une couverture valide (ni chevauchement ni trou entre voisins), "
    "chaque tolérance garde une ligne par IRIS, les mêmes IRIS, et ne compte pas plus de sommets que la "
    "précédente, plus fine ; la couverture la plus simplifiée est encore valide.",
)
def couverture_simplifiee(contours_simplifies: gpd.GeoDataFrame) -> dg.AssetCheckResult:
    iris = contours_simplifies[contours_simplifies["maille"].to_numpy() == "iris"]
    levels = {t: level for t, level in iris.groupby("tolerance_m", sort=True)}
    codes = [sorted(level["code"]) for level in levels.values()]
    vertices = {
        f"{t:g}m": int(shapely.get_num_coordinates(level.geometry.to_numpy()).sum()) for t, level in levels.items()
    }
    counts = list(vertices.values())
    problems = []
    if not contours_simplifies.attrs.get("couverture_valide_avant", False):
        problems.append("couverture des IRIS invalide : rien n'est simplifié ni publié sur le web")
    elif contours_simplifies.attrs.get("couverture_valide_apres") is False:
        problems.append("couverture simplifiée invalide")
    if any(c != codes[0] for c in codes[1:]) or any(len(set(c)) != len(c) for c in codes):
        problems.append("les niveaux n'ont pas les mêmes IRIS, une fois chacun")
    if any(coarse > fine for fine, coarse in zip(counts, counts[1:])):
        problems.append("un niveau plus simplifié a plus de sommets que le précédent")
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={
            "iris": len(codes[0]) if codes else 0,
            "sommets": dg.MetadataValue.json(vertices),
            "problemes": problems,
        },
    )


def _repairs(frame, attr: str) -> dg.AssetCheckResult:
    repaired = frame.attrs.get(attr) if frame is not None else None
    count = repaired if isinstance(repaired, int) else len(repaired or [])
    detail = repaired[:50] if isinstance(repaired, list) else []
    return dg.AssetCheckResult(
        passed=count == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"nombre": count, "codes": dg.MetadataValue.json(detail)},
    )


REPAIR_NOTE = " (règle documentée dans docs/robustesse.md) : avertissement si la lecture a dû réparer des valeurs."


@dg.asset_check(asset="filosofi_iris", description="Codes IRIS complétés de leur zéro initial" + REPAIR_NOTE)
def codes_completes_filosofi(filosofi_iris) -> dg.AssetCheckResult:
    return _repairs(filosofi_iris, "codes_completes")


@dg.asset_check(asset="rp_evol_struct_pop", description="Codes IRIS complétés de leur zéro initial" + REPAIR_NOTE)
def codes_completes_recensement(rp_evol_struct_pop) -> dg.AssetCheckResult:
    return _repairs(rp_evol_struct_pop, "codes_completes")


@dg.asset_check(asset="contours_iris", description="Géométries invalides réparées" + REPAIR_NOTE)
def geometries_reparees(contours_iris) -> dg.AssetCheckResult:
    return _repairs(contours_iris, "geometries_reparees")

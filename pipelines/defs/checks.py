"""Quality gates. Blocking checks stop the run before a bad layer is published."""


import json
from pathlib import Path

import dagster as dg
import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from indice.methods import Scored
from pipelines.resources import FragiliteConfig
from sources.common import COMMUNE_PATTERN, DEPARTEMENT_PATTERN, EPCI_PATTERN, IRIS_PATTERN
from sources.ign_iris import EXPECTED_CRS


@dg.asset_check(asset="iris_base", blocking=True, description="Codes IRIS et communes au bon format, IRIS uniques.")
def codes_valides(iris_base: gpd.GeoDataFrame) -> dg.AssetCheckResult:
    bad_iris = ~iris_base["CODE_IRIS"].str.fullmatch(IRIS_PATTERN.pattern)
    bad_com = ~iris_base["INSEE_COM"].str.fullmatch(COMMUNE_PATTERN.pattern)
    dupes = iris_base["CODE_IRIS"].duplicated()
    return dg.AssetCheckResult(
        passed=not (bad_iris.any() or bad_com.any() or dupes.any()),
        metadata={
            "iris_invalides": iris_base.loc[bad_iris, "CODE_IRIS"].head(20).tolist(),
            "communes_invalides": iris_base.loc[bad_com, "INSEE_COM"].head(20).tolist(),
            "iris_en_double": iris_base.loc[dupes, "CODE_IRIS"].head(20).tolist(),
        },
    )


@dg.asset_check(asset="iris_base", blocking=True, description="Contours dans la projection attendue (Lambert-93 en métropole).")
def crs_attendu(iris_base: gpd.GeoDataFrame) -> dg.AssetCheckResult:
    epsg = iris_base.crs.to_epsg() if iris_base.crs else None
    return dg.AssetCheckResult(passed=epsg in set(EXPECTED_CRS.values()), metadata={"epsg": str(epsg)})


@dg.asset_check(asset="iris_base", description="Chaque IRIS du territoire a ses effectifs du recensement.")
def recensement_complet(iris_base: gpd.GeoDataFrame) -> dg.AssetCheckResult:
    missing = iris_base.loc[iris_base["P_POP"].isna(), "CODE_IRIS"] if "P_POP" in iris_base else iris_base["CODE_IRIS"]
    return dg.AssetCheckResult(
        passed=missing.empty,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"iris_sans_recensement": len(missing), "codes": missing.head(50).tolist()},
    )


@dg.asset_check(asset="iris_scores", blocking=True, description="Scores finis, positifs et plausibles (< 10 000).")
def scores_plausibles(iris_scores: Scored) -> dg.AssetCheckResult:
    scores = iris_scores.table.filter(like="score").to_numpy(dtype="float64")
    present = scores[~np.isnan(scores)]
    bad = (~np.isfinite(present)) | (present < 0) | (present > 10_000)
    return dg.AssetCheckResult(
        passed=not bad.any() and present.size > 0,
        metadata={"valeurs_hors_bornes": int(bad.sum()), "valeurs": int(present.size),
                  "max": float(present[np.isfinite(present)].max()) if present.size else 0.0},
    )


LAYER_KEYS = {"iris": ("CODE_IRIS", IRIS_PATTERN), "communes": ("INSEE_COM", COMMUNE_PATTERN),
              "epci": ("EPCI", EPCI_PATTERN), "departements": ("DEP", DEPARTEMENT_PATTERN)}


def _layer_check(maille: str) -> dg.AssetChecksDefinition:
    key, pattern = LAYER_KEYS[maille]

    @dg.asset_check(asset=f"couche_{maille}", name="couche_relisible",
                    description=f"La couche {maille} écrite se relit : GeoParquet 1.1, EPSG:2154, "
                    f"{key} en texte au bon format et unique.")
    def _check(fragilite: FragiliteConfig) -> dg.AssetCheckResult:
        path = Path(fragilite.settings.run.out_dir) / "layers" / f"{maille}.parquet"
        table = pq.read_table(path, columns=[key])
        geo = json.loads(table.schema.metadata[b"geo"])
        codes = table.column(key).to_pylist()
        crs = geo["columns"]["geometry"].get("crs", {}).get("id", {})
        bad = [c for c in codes if not (isinstance(c, str) and pattern.fullmatch(c))]
        ok = geo.get("version") == "1.1.0" and not bad and len(set(codes)) == len(codes)
        return dg.AssetCheckResult(passed=ok, metadata={
            "lignes": len(codes), "geoparquet": geo.get("version"), "crs": str(crs), "codes_invalides": bad[:20]})

    return _check


couche_iris_relisible = _layer_check("iris")
couche_communes_relisible = _layer_check("communes")
couche_epci_relisible = _layer_check("epci")
couche_departements_relisible = _layer_check("departements")


@dg.asset_check(asset="mailles", blocking=True, additional_ins={"iris_base": dg.AssetIn("iris_base")},
                description="Population cohérente entre mailles : somme des IRIS = communes = EPCI = départements.")
def populations_coherentes(iris_base: gpd.GeoDataFrame, mailles: dict) -> dg.AssetCheckResult:
    totals = {"iris": float(iris_base["P_POP"].sum())}
    totals.update({name: float(t["P_POP"].sum()) for name, t in mailles.items()})
    spread = max(totals.values()) - min(totals.values())
    return dg.AssetCheckResult(passed=spread <= 1e-6 * max(1.0, totals["iris"]), metadata=totals)


@dg.asset_check(asset="dictionnaire", description="Le dictionnaire décrit chaque colonne de la couche IRIS publiée.")
def dictionnaire_complet(fragilite: FragiliteConfig) -> dg.AssetCheckResult:
    layers = Path(fragilite.settings.run.out_dir) / "layers"
    columns = [c for c in pq.read_schema(layers / "iris.parquet").names if c not in ("geometry", "bbox")]
    described = pd.read_csv(layers / "dictionnaire.csv", sep=";", dtype=str, keep_default_na=False)
    missing = sorted(set(columns) - set(described["code"]))
    unlabelled = described.loc[described["libelle"] == "", "code"].tolist()
    return dg.AssetCheckResult(passed=not missing and not unlabelled,
                               metadata={"colonnes_non_decrites": missing, "sans_libelle": unlabelled})

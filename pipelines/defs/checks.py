"""Quality gates. Blocking checks stop the run before a bad layer is published."""


import json
from pathlib import Path

import dagster as dg
import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from pipelines.resources import FragiliteConfig
from sources.common import COMMUNE_PATTERN, IRIS_PATTERN
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
def scores_plausibles(iris_scores: pd.DataFrame) -> dg.AssetCheckResult:
    scores = iris_scores.filter(like="score").to_numpy(dtype="float64")
    present = scores[~np.isnan(scores)]
    bad = (~np.isfinite(present)) | (present < 0) | (present > 10_000)
    return dg.AssetCheckResult(
        passed=not bad.any() and present.size > 0,
        metadata={"valeurs_hors_bornes": int(bad.sum()), "valeurs": int(present.size),
                  "max": float(present[np.isfinite(present)].max()) if present.size else 0.0},
    )


@dg.asset_check(asset="couche_iris", description="La couche GeoParquet écrite se relit : GeoParquet 1.1, CODE_IRIS texte de 9 caractères.")
def couche_relisible(fragilite: FragiliteConfig) -> dg.AssetCheckResult:
    path = Path(fragilite.settings.run.out_dir) / "layers" / "iris.parquet"
    table = pq.read_table(path, columns=["CODE_IRIS"])
    geo = json.loads(table.schema.metadata[b"geo"])
    codes = table.column("CODE_IRIS").to_pylist()
    ok = geo.get("version") == "1.1.0" and all(isinstance(c, str) and len(c) == 9 for c in codes)
    return dg.AssetCheckResult(passed=ok, metadata={"lignes": len(codes), "geoparquet": geo.get("version")})

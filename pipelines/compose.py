"""The whole IRIS chain for one territory, in one call: what a département partition computes.

The granular assets (sources → transforms → indice → outputs) run the same functions step by
step for lineage; a partition runs them in a row, on the partition's département only.
"""

from __future__ import annotations

import geopandas as gpd
import pandas as pd

from config.settings import load_publication
from indice.methods import score_all
from outputs.disclosure import apply_secret
from outputs.layers import build_layer
from pipelines.defs.indice import method_label, method_params, scored_indicators
from pipelines.resources import FragiliteConfig
from sources.registry import CENSUS_THEMES, PARSERS
from transforms.indicators import IndicatorInputs, compute_indicators
from transforms.iris_base import build_iris_base, census_vintage, join_census
from transforms.territory import Territory, select_territory


def iris_layer_for(fragilite: FragiliteConfig, territory: Territory) -> gpd.GeoDataFrame:
    """The published IRIS layer of `territory` (same columns as `couche_iris`)."""
    settings = fragilite.settings
    tables: dict[str, pd.DataFrame] = {}
    for key in PARSERS:
        path, _ = fragilite.input_file(key)
        if path is not None:
            tables[key] = PARSERS[key](path)
    themes = {k: tables[k] for k in CENSUS_THEMES if k in tables}
    vintage = census_vintage(themes)
    census, _ = join_census(themes)
    base, _ = build_iris_base(tables["contours_iris"], census, tables["communes_epci"])
    base = base[select_territory(base, territory)].reset_index(drop=True)
    base["millesime_rp"] = vintage
    result = compute_indicators(
        base,
        [i for i in fragilite.catalogue.indicators if not settings.run.indicators or i.id in settings.run.indicators],
        IndicatorInputs(
            **{
                k: tables.get(k)
                for k in ("filosofi_iris", "filosofi_communes", "arcep_debit", "caf_non_connectes", "cog_passage")
            },
            geography_year=vintage + 2,
        ),
        legacy_2020=settings.run.legacy_2020,
        commune_fallback=settings.run.filosofi_commune_fallback,
    ).join_to(base)
    frame = pd.DataFrame(result.frame.drop(columns="geometry"))
    scored = score_all(frame, scored_indicators(fragilite, frame), method_params(fragilite, frame))
    indicator_ids = [c[: -len("_num")] for c in result.table.columns if c.endswith("_num")]
    layer = build_layer(
        "iris",
        result.frame,
        scored.table,
        indicator_ids,
        methode=method_label(settings),
        reference=settings.run.reference,
        millesime_rp=vintage,
    )
    return apply_secret(
        layer,
        [i.id for i in fragilite.catalogue.indicators if i.source == "caf_non_connectes"],
        load_publication().secret_threshold,
    )

"""`fragilite validate`: check every input of a run without computing, report all problems at once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import shapely

from config.settings import REQUIRED_INPUTS, IndicatorCatalogue, TicConfig
from sources.archives import ArchiveError
from sources.common import InputError
from sources.download import DownloadError
from sources.registry import CENSUS_THEMES, PARSERS, read_input


@dataclass(frozen=True)
class Problem:
    level: str  # "erreur" (the run would stop) or "avertissement" (repaired or reported)
    input: str
    message: str

    def __str__(self) -> str:
        return f"[{self.level}] {self.input}: {self.message}"


def validate_inputs(
    paths: dict[str, Path | None],
    expected_vintage: int | None = None,
    catalogue: IndicatorCatalogue | None = None,
    tic: TicConfig | None = None,
    wanted: Sequence[str] = (),
) -> list[Problem]:
    """Parse each input, then check vintages, code joins and geometries across them."""
    from transforms.iris_base import VintageError, build_iris_base, census_vintage, join_census

    problems: list[Problem] = []
    tables: dict[str, pd.DataFrame] = {}
    for key in REQUIRED_INPUTS:
        if paths.get(key) is None:
            problems.append(Problem("erreur", key, f"entrée obligatoire non renseignée (inputs.{key})"))
    for key, path in paths.items():
        if path is None or key not in PARSERS:
            continue
        try:
            tables[key] = read_input(key, Path(path), catalogue, tic, wanted)
        except (InputError, ArchiveError, DownloadError) as exc:
            problems.append(Problem("erreur", key, str(exc)))
            continue
        completed = tables[key].attrs.get("codes_completes")
        if completed:
            problems.append(
                Problem("avertissement", key, f"{completed} code(s) completed with their lost leading zero")
            )
        repaired = tables[key].attrs.get("geometries_reparees")
        if repaired:
            problems.append(
                Problem("avertissement", key, f"{len(repaired)} invalid geometrie(s) repaired: {repaired[:10]}")
            )
    themes = {k: tables[k] for k in CENSUS_THEMES if k in tables}
    if themes:
        try:
            vintage = census_vintage(themes)
            if expected_vintage is not None and vintage != expected_vintage:
                problems.append(
                    Problem("erreur", "recensement", f"files are RP {vintage}, the run asks for RP {expected_vintage}")
                )
            filosofi = tables.get("filosofi_iris")
            if filosofi is not None and filosofi.attrs.get("annee") not in (vintage, vintage + 1):
                problems.append(
                    Problem(
                        "avertissement",
                        "filosofi_iris",
                        f"income year {filosofi.attrs.get('annee')} for census RP {vintage} (mixed vintages)",
                    )
                )
        except VintageError as exc:
            problems.append(Problem("erreur", "recensement", str(exc)))
        if "contours_iris" in tables and "communes_epci" in tables:
            census, reports = join_census(themes)
            base, more = build_iris_base(tables["contours_iris"], census, tables["communes_epci"])
            for report in reports + more:
                for side, codes in (("left", report.unmatched_left), ("right", report.unmatched_right)):
                    if codes:
                        problems.append(
                            Problem(
                                "avertissement",
                                report.join,
                                f"{len(codes)} code(s) without a match ({side}): {codes[:10]}",
                            )
                        )
            # One coverage per part of France (each in its own CRS).
            parts = base.groupby("EPSG") if "EPSG" in base.columns else [(None, base)]
            if not all(shapely.coverage_is_valid(part.geometry.to_numpy()) for _, part in parts):
                problems.append(
                    Problem(
                        "avertissement",
                        "contours_iris",
                        "des contours se chevauchent ou laissent des trous entre voisins",
                    )
                )
    return problems

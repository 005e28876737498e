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
        return f"[{self.level}] {self.input} : {self.message}"


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
                Problem(
                    "avertissement",
                    key,
                    f"{completed} code(s) complété(s) par le zéro initial qu'un tableur avait supprimé",
                )
            )
        repaired = tables[key].attrs.get("geometries_reparees")
        if repaired:
            problems.append(
                Problem(
                    "avertissement",
                    key,
                    f"{len(repaired)} géométrie(s) invalide(s) réparée(s) (IRIS {', '.join(map(str, repaired[:10]))}"
                    f"{' …' if len(repaired) > 10 else ''})",
                )
            )
    themes = {k: tables[k] for k in CENSUS_THEMES if k in tables}
    if themes:
        try:
            vintage = census_vintage(themes)
            if expected_vintage is not None and vintage != expected_vintage:
                problems.append(
                    Problem(
                        "erreur",
                        "recensement",
                        f"les fichiers du recensement sont du RP {vintage}, le calcul demande le RP {expected_vintage} : "
                        f"donnez les fichiers du RP {expected_vintage} (entrées rp_* de la configuration), ou demandez "
                        f"le millésime {vintage} (--vintage {vintage} ou run.vintage)",
                    )
                )
            filosofi = tables.get("filosofi_iris")
            if filosofi is not None and filosofi.attrs.get("annee") not in (vintage, vintage + 1):
                problems.append(
                    Problem(
                        "avertissement",
                        "filosofi_iris",
                        f"revenus {filosofi.attrs.get('annee')} pour le recensement RP {vintage} (millésimes mêlés) : "
                        f"prenez le Filosofi IRIS des revenus {vintage} ou {vintage + 1}",
                    )
                )
        except VintageError as exc:
            problems.append(Problem("erreur", "recensement", str(exc)))
        if "contours_iris" in tables and "communes_epci" in tables:
            census, reports = join_census(themes)
            base, more = build_iris_base(tables["contours_iris"], census, tables["communes_epci"])
            for report in reports + more:
                for side, codes in zip(_sides(report.join), (report.unmatched_left, report.unmatched_right)):
                    if codes:
                        problems.append(
                            Problem(
                                "avertissement",
                                report.join,
                                f"{len(codes)} code(s) présent(s) seulement du côté {side}, sans correspondance : "
                                f"{', '.join(codes[:10])}{' …' if len(codes) > 10 else ''}",
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


def _sides(join: str) -> tuple[str, str]:
    """The two sides of a join named `left ↔ right`, to say where unmatched codes come from."""
    if "↔" not in join:
        return "gauche", "droit"
    left, right = join.split("↔", 1)
    return left.strip(), right.strip()

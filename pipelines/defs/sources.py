"""Group `sources`: one asset per public file, parsed into a typed table."""


from pathlib import Path
from typing import Callable

import dagster as dg
import pandas as pd

from pipelines.reporting import file_metadata, report, table_metadata
from pipelines.resources import FragiliteConfig
from sources.arcep import read_arcep_debit
from sources.caf import read_caf_non_connectes
from sources.cog import read_cog_passage, read_communes_epci
from sources.filosofi import read_filosofi_communes, read_filosofi_iris
from sources.ign_iris import read_contours_iris
from sources.insee_rp import read_base_ic

GROUP = "sources"
OWNERS = ["team:fragilite-numerique"]


def _source_asset(
    key: str,
    *,
    description: str,
    publisher: str,
    kinds: set[str],
    parse: Callable[[Path], pd.DataFrame],
    vintage_attr: str | None,
) -> dg.AssetsDefinition:
    @dg.asset(
        name=key,
        group_name=GROUP,
        description=description,
        kinds=kinds,
        owners=OWNERS,
        tags={"publisher": publisher},
    )
    def _asset(context: dg.AssetExecutionContext, fragilite: FragiliteConfig) -> dg.Output:
        path, provenance = fragilite.input_file(key)
        if path is None:
            report(context, f"{key}: non fourni (optionnel), indicateurs correspondants absents")
            return dg.Output(None, metadata={"fourni": False})
        frame = parse(path)
        meta = {"fourni": True, **file_metadata(Path(path)), **table_metadata(frame)}
        if "url" in provenance:
            meta.update({"url_source": dg.MetadataValue.url(provenance["url"]),
                         "url_verifiee": provenance["url_verified"],
                         "millesime_catalogue": provenance["vintage"],
                         "sha256_telechargement": provenance["sha256"]})
        if vintage_attr:
            meta["millesime"] = int(frame.attrs[vintage_attr])
        report(context, f"{key}: {len(frame)} lignes lues ({Path(path).name})")
        return dg.Output(frame, metadata=meta)

    return _asset


def _census(theme: str, label: str) -> dg.AssetsDefinition:
    key = f"rp_{theme.replace('-', '_')}"
    return _source_asset(
        key,
        description=f"Recensement (RP) de l'INSEE, base infracommunale « {label} » : effectifs par IRIS. "
        "Le millésime est lu dans le préfixe des variables (P16_, C16_…).",
        publisher="INSEE",
        kinds={"csv", "pandas"},
        parse=lambda path: read_base_ic(path, theme),
        vintage_attr="millesime",
    )


rp_evol_struct_pop = _census("evol-struct-pop", "évolution et structure de la population")
rp_diplomes_formation = _census("diplomes-formation", "diplômes – formation")
rp_couples_familles_menages = _census("couples-familles-menages", "couples – familles – ménages")
rp_activite_residents = _census("activite-residents", "activité des résidents")

filosofi_iris = _source_asset(
    "filosofi_iris",
    description="Filosofi (INSEE) à l'IRIS : taux de pauvreté, revenu disponible médian par unité de "
    "consommation, part des minima sociaux. Les IRIS sous le seuil de diffusion sont absents.",
    publisher="INSEE",
    kinds={"excel", "pandas"},
    parse=read_filosofi_iris,
    vintage_attr="annee",
)
filosofi_communes = _source_asset(
    "filosofi_communes",
    description="Filosofi (INSEE) à la commune : revenu médian, utilisé pour les IRIS que Filosofi "
    "IRIS ne publie pas (valeur signalée « commune »).",
    publisher="INSEE",
    kinds={"csv", "pandas"},
    parse=read_filosofi_communes,
    vintage_attr="annee",
)
contours_iris = _source_asset(
    "contours_iris",
    description="Contours des IRIS (IGN CONTOURS-IRIS), en Lambert-93 : la géométrie des couches.",
    publisher="IGN",
    kinds={"geopackage", "geopandas"},
    parse=read_contours_iris,
    vintage_attr=None,
)
communes_epci = _source_asset(
    "communes_epci",
    description="Appartenance des communes aux EPCI (INSEE), pour la référence « epci ».",
    publisher="INSEE",
    kinds={"csv", "pandas"},
    parse=read_communes_epci,
    vintage_attr=None,
)
arcep_debit = _source_asset(
    "arcep_debit",
    description="ARCEP « Ma connexion internet » : locaux par meilleur débit disponible, par commune "
    "(Lyon, Paris et Marseille en une ligne).",
    publisher="ARCEP",
    kinds={"csv", "pandas"},
    parse=read_arcep_debit,
    vintage_attr=None,
)
caf_non_connectes = _source_asset(
    "caf_non_connectes",
    description="Allocataires CAF non connectés à leur compte (fichier fourni par la CAF du département, "
    "au format documenté : code_geo, niveau, millesime, allocataires, non_connectes). Vide = secret, jamais 0.",
    publisher="CAF",
    kinds={"csv", "pandas"},
    parse=read_caf_non_connectes,
    vintage_attr=None,
)
cog_passage = _source_asset(
    "cog_passage",
    description="Table de passage annuelle des codes communes (INSEE) : rattache les sources communales "
    "d'un autre millésime (fusions de communes) à la géographie du recensement.",
    publisher="INSEE",
    kinds={"excel", "pandas"},
    parse=read_cog_passage,
    vintage_attr=None,
)

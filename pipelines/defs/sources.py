"""Group `sources`: one asset per public file, parsed into a typed table."""

from pathlib import Path

import dagster as dg

from pipelines.reporting import file_metadata, report, table_metadata
from pipelines.resources import FragiliteConfig
from sources.archives import ArchiveError
from sources.catalogue import is_optional
from sources.common import InputError
from sources.download import DownloadError
from sources.registry import read_input

# What a source may fail with: a file that cannot be had, unpacked or read.
SOURCE_FAILURES = (InputError, DownloadError, ArchiveError)

GROUP = "sources"
OWNERS = ["team:fragilite-numerique"]


def _source_asset(
    key: str,
    *,
    description: str,
    publisher: str,
    kinds: set[str],
    vintage_attr: str | None,
    preview: bool = True,
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
        try:
            path, provenance = fragilite.input_file(key)
            if path is None:
                report(context, f"{key}: non fourni (optionnel), indicateurs correspondants absents")
                return dg.Output(None, metadata={"fourni": False})
            frame = read_input(key, path, fragilite.catalogue, fragilite.tic, fragilite.settings.run.indicators)
        except SOURCE_FAILURES as exc:
            if not is_optional(fragilite.source_catalogue, key):
                raise
            # An optional source (Filosofi communes, ARCEP, table de passage) that cannot be
            # obtained or read costs its indicators, never the run.
            first_line = str(exc).splitlines()[0]
            context.log.warning(f"{key}: source facultative écartée : {exc}")
            report(context, f"{key}: source facultative écartée ({first_line}) ; indicateurs correspondants absents")
            return dg.Output(None, metadata={"fourni": False, "erreur": str(exc)})
        # The year of the file's commune and IRIS codes (catalogue), for the mapping onto the
        # census geography; unknown for a file given by path.
        frame.attrs["geographie"] = provenance.get("geography")
        # No preview of CAF rows: they may hold counts under the secret threshold.
        meta = {"fourni": True, **file_metadata(Path(path)), **table_metadata(frame, 5 if preview else 0)}
        if "url" in provenance:
            meta.update(
                {
                    "url_source": dg.MetadataValue.url(provenance["url"]),
                    "url_verifiee": provenance["url_verified"],
                    "millesime_catalogue": provenance["vintage"],
                    "geographie": provenance["geography"] or "non précisée",
                    "sha256_telechargement": provenance["sha256"],
                }
            )
        if vintage_attr:
            meta["millesime"] = int(frame.attrs[vintage_attr])
        repairs = {k: frame.attrs[k] for k in ("codes_completes", "geometries_reparees") if frame.attrs.get(k)}
        for name, value in repairs.items():
            count = value if isinstance(value, int) else len(value)
            context.log.warning(f"{key}: {count} {name.replace('_', ' ')} (règle documentée, docs/robustesse.md)")
            meta[name] = value if isinstance(value, int) else dg.MetadataValue.json(value[:200])
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
    vintage_attr="annee",
)
filosofi_communes = _source_asset(
    "filosofi_communes",
    description="Filosofi (INSEE) à la commune : revenu médian, utilisé pour les IRIS que Filosofi "
    "IRIS ne publie pas (valeur signalée « commune »).",
    publisher="INSEE",
    kinds={"csv", "pandas"},
    vintage_attr="annee",
)
contours_iris = _source_asset(
    "contours_iris",
    description="Contours des IRIS (IGN CONTOURS-IRIS), en Lambert-93 : la géométrie des couches.",
    publisher="IGN",
    kinds={"geopackage", "geopandas"},
    vintage_attr=None,
)
communes_epci = _source_asset(
    "communes_epci",
    description="Appartenance des communes aux EPCI (INSEE), pour la référence « epci ».",
    publisher="INSEE",
    kinds={"csv", "pandas"},
    vintage_attr=None,
)
arcep_debit = _source_asset(
    "arcep_debit",
    description="ARCEP « Ma connexion internet » : locaux par meilleur débit disponible, par commune "
    "(Lyon, Paris et Marseille en une ligne).",
    publisher="ARCEP",
    kinds={"csv", "pandas"},
    vintage_attr=None,
)
caf_non_connectes = _source_asset(
    "caf_non_connectes",
    description="Allocataires CAF non connectés à leur compte (fichier fourni par la CAF du département, "
    "au format documenté : code_geo, niveau, millesime, allocataires, non_connectes). Vide = secret, jamais 0.",
    publisher="CAF",
    kinds={"csv", "pandas"},
    vintage_attr=None,
    preview=False,
)
cog_passage = _source_asset(
    "cog_passage",
    description="Table de passage annuelle des codes communes (INSEE) : rattache les sources communales "
    "d'un autre millésime (fusions de communes) à la géographie du recensement.",
    publisher="INSEE",
    kinds={"excel", "pandas"},
    vintage_attr=None,
)

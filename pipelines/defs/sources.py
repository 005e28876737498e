"""Group `sources`: one asset per public file, parsed into a typed table.

The assets are made from the input registry (config/inputs.yaml): every input whose role has a
source asset gets one, named after the input, with the description, kinds and publisher declared
there. Adding an input there (and its parser in sources/registry.py) adds its asset here.
"""

from pathlib import Path

import dagster as dg

from config.settings import INPUT_SPECS, SourceAssetSpec
from pipelines.reporting import file_metadata, report, table_metadata
from pipelines.resources import FragiliteConfig
from sources.archives import ArchiveError
from sources.catalogue import is_optional
from sources.common import InputError
from sources.download import DownloadError
from sources.registry import read_input
from transforms.chain import CENSUS_INPUTS

# What a source may fail with: a file that cannot be had, unpacked or read.
SOURCE_FAILURES = (InputError, DownloadError, ArchiveError)

GROUP = "sources"
OWNERS = ["team:fragilite-numerique"]
# Read first, two at a time (pipelines/executor.py): `iris_base`, the first step of the run's
# longest chain, waits for these; the other sources are read beside it. The outlines, the
# longest read, first of all.
PRIORITY = {"contours_iris": 3, "communes_epci": 2, **dict.fromkeys(CENSUS_INPUTS, 2)}


def _source_asset(key: str, publisher: str, spec: SourceAssetSpec) -> dg.AssetsDefinition:
    """The asset that reads one input with its parser and says what it read."""
    vintage_attr, preview = spec.vintage_attr, spec.preview

    @dg.asset(
        name=key,
        group_name=GROUP,
        description=spec.description,
        kinds=set(spec.kinds),
        owners=OWNERS,
        tags={"publisher": publisher},
        op_tags={"dagster/priority": str(PRIORITY.get(key, 0))},
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


# One asset per input read into a table (roles census, spine, indicator), in the registry's order.
SOURCE_ASSETS: list[dg.AssetsDefinition] = [
    _source_asset(key, spec.publisher, spec.asset) for key, spec in INPUT_SPECS.items() if spec.asset is not None
]

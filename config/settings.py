"""Typed configuration: the YAML files of this folder, validated by pydantic.

Configuration is data. Code reads it only through these models, so a wrong key or value in a
user's file is reported with its path in the file, before anything is computed.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

CONFIG_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = CONFIG_DIR.parent
DEFAULTS_FILE = CONFIG_DIR / "defaults.yaml"
INDICATORS_FILE = CONFIG_DIR / "indicators.yaml"

ReferenceLevel = Literal["departement", "epci", "territoire", "region", "france"]
Computation = Literal["census_ratio", "filosofi_share", "filosofi_level", "arcep_non_thd", "arcep_non_4g", "caf_ratio"]
# ARCEP publishes quarterly: `last`, or a quarter such as 2025_T2.
QUARTER_PATTERN = r"^(last|\d{4}_T[1-4])$"
AxisId = Literal["information", "interfaces", "administratif", "numerique"]

# The run's inputs are declared once, in inputs.yaml: INPUT_SPECS, INPUT_KEYS, REQUIRED_INPUTS,
# CENSUS_THEMES and the `Inputs` model are derived from it (section « inputs » below).
INPUTS_FILE = CONFIG_DIR / "inputs.yaml"


class ConfigError(Exception):
    """A configuration file is missing, unreadable or does not validate."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- indicator catalogue -------------------------------------------------------------------


class Axis(_Strict):
    label: str
    global_: Literal["acces", "competences"] = Field(alias="global")


class Indicator(_Strict):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    label: str
    axis: AxisId
    computation: Computation
    source: str
    numerator: str | None = None
    denominator: str | None = None
    variable: str | None = None
    higher_is_better: bool = False
    unit: Literal["part", "euros"]

    @model_validator(mode="after")
    def _fields_of_computation(self) -> Indicator:
        if self.computation == "census_ratio" and not (self.numerator and self.denominator):
            raise ValueError(f"{self.id} : census_ratio demande numerator et denominator")
        if self.computation.startswith("filosofi") and not self.variable:
            raise ValueError(f"{self.id} : {self.computation} demande variable")
        if self.source not in INPUT_KEYS:
            raise ValueError(
                f"{self.id} : source inconnue {self.source!r} ; attendu une entrée de {INPUTS_FILE.name} : "
                f"{', '.join(INPUT_KEYS)}"
            )
        return self


class IndicatorCatalogue(_Strict):
    axes: dict[AxisId, Axis]
    indicators: list[Indicator]

    @field_validator("indicators")
    @classmethod
    def _unique_ids(cls, v: list[Indicator]) -> list[Indicator]:
        ids = [i.id for i in v]
        dupes = {i for i in ids if ids.count(i) > 1}
        if dupes:
            raise ValueError(f"identifiants d'indicateurs en double : {sorted(dupes)}")
        return v

    def by_id(self) -> dict[str, Indicator]:
        return {i.id: i for i in self.indicators}


# --- methods -------------------------------------------------------------------------------

# The scoring methods are declared once, in methods.yaml (`methods:`): ALL_METHODS and
# METHOD_DESCRIPTIONS are derived from it (section « methods » below).
METHODS_FILE = CONFIG_DIR / "methods.yaml"
TIC_FILE = CONFIG_DIR / "tic_ratios.yaml"


class Weighting(_Strict):
    label: str
    scheme: Literal["pooled", "axis_means"]
    reference: Literal["departement", "epci", "territoire"] | None = None
    threshold: float | None = None
    axis_weights: dict[AxisId, float] = {}
    indicator_weights: dict[str, float] = {}

    @field_validator("axis_weights", "indicator_weights")
    @classmethod
    def _non_negative(cls, v: dict[str, float]) -> dict[str, float]:
        bad = {k: w for k, w in v.items() if w < 0}
        if bad:
            raise ValueError(f"les poids sont positifs ou nuls : {bad}")
        return v


class IfnConfig(_Strict):
    mapping: Literal["decile", "minmax"] = "decile"
    universe: Literal["territoire", "france"] = "territoire"
    indicator_sets: dict[str, list[str]]
    # Coarser mailles (communes, EPCI, départements) are ranked among the units of the same maille
    # of the run; with fewer units than this the notes are not published for that maille.
    min_units: int = Field(10, ge=2)

    @field_validator("indicator_sets")
    @classmethod
    def _general_first(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        if "general" not in v:
            raise ValueError("indicator_sets demande un ensemble 'general' (l'indice national)")
        return v


class CompletenessRule(_Strict):
    """When an axis or a composite score is computed from the indicator scores an IRIS has.

    The MedNum 2019 default (1, false) is a mean over whatever is available."""

    min_indicators_per_axis: int = Field(1, ge=1)
    global_requires_all_axes: bool = False


class ReliabilityRule(_Strict):
    """`fiabilite = faible` under a population or for some IRIS types; such IRIS stay published but
    are left out of the "exposed" lists when `exclude_from_exposed`."""

    min_population: float = Field(200, ge=0)
    weak_types: list[str] = ["A", "D"]
    exclude_from_exposed: bool = True


class MethodSpec(_Strict):
    """One scoring method: what it computes (its asset's description in Dagster, in French)."""

    description: str = Field(min_length=1)


# A name that is also a Python identifier, a Dagster asset name and a YAML key (inputs, methods).
Identifier = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$")]
# Method id → declaration, in the order the methods' columns are published.
MethodTable = dict[Identifier, MethodSpec]


class MethodsConfig(_Strict):
    methods: MethodTable = Field(min_length=1)
    weightings: dict[str, Weighting]
    ifn_2023: IfnConfig
    completeness: CompletenessRule = CompletenessRule()
    reliability: ReliabilityRule = ReliabilityRule()

    @model_validator(mode="after")
    def _presets(self) -> MethodsConfig:
        missing = {"mednum_2019", "opale_2022"} - set(self.weightings)
        if missing:
            raise ValueError(f"weightings : préréglages manquants {sorted(missing)}")
        if self.weightings["opale_2022"].threshold is None:
            raise ValueError("weightings.opale_2022 demande un seuil (threshold)")
        return self


class TicGroup(_Strict):
    label: str
    count: str | None
    alternative_counts: list[str] = []
    rates: dict[str, float]
    source: str
    verified: bool
    # The publication (and where in it) that gives the rates: required when `verified`.
    citation: str | None = None
    # Rates of a verified group that the citation does not give (kept, flagged not verified).
    unverified_rates: list[str] = []
    # What a reader must know when using the estimates (e.g. a census group broader than the survey's).
    caveat: str | None = None

    @field_validator("rates")
    @classmethod
    def _shares(cls, v: dict[str, float]) -> dict[str, float]:
        bad = {k: r for k, r in v.items() if not 0 <= r <= 1}
        if bad:
            raise ValueError(f"les taux sont des parts entre 0 et 1 : {bad}")
        return v

    @model_validator(mode="after")
    def _verified_needs_citation(self) -> TicGroup:
        if self.verified and not (self.citation or "").strip():
            raise ValueError("verified: true demande une citation (publication et tableau qui donnent les taux)")
        unknown = set(self.unverified_rates) - set(self.rates)
        if unknown:
            raise ValueError(f"unverified_rates : {sorted(unknown)} ne sont pas dans rates")
        return self

    def rate_verified(self, outcome: str) -> bool:
        return self.verified and outcome not in self.unverified_rates


class AgeBand(_Strict):
    label: str
    counts: list[str]
    rate: float = Field(ge=0, le=1)


class AgeBands(_Strict):
    outcome: str
    source: str
    verified: bool
    bands: list[AgeBand]


class TicConfig(_Strict):
    outcomes: dict[str, str]
    groups: dict[str, TicGroup]
    age_bands: AgeBands | None = None

    @model_validator(mode="after")
    def _known_outcomes(self) -> TicConfig:
        for name, group in self.groups.items():
            unknown = set(group.rates) - set(self.outcomes)
            if unknown:
                raise ValueError(f"groups.{name} : résultat(s) inconnu(s) {sorted(unknown)}")
        if self.age_bands and self.age_bands.outcome not in self.outcomes:
            raise ValueError(f"age_bands.outcome {self.age_bands.outcome!r} n'est pas un résultat (outcomes)")
        return self


# --- run settings --------------------------------------------------------------------------


class RunOptions(_Strict):
    territory_label: str = "Territoire"
    reference: ReferenceLevel = "departement"
    # A reference unit (département, EPCI) only partly present in the inputs: `refuse` stops the
    # run and lists the missing communes; a level here replaces the reference, named in the outputs.
    reference_fallback: Literal["refuse", "departement", "territoire", "region", "france"] = "refuse"
    legacy_2020: bool = False
    indicators: list[str] = []
    filosofi_commune_fallback: bool = True
    methods: list[str] = Field(default_factory=lambda: list(ALL_METHODS))
    # Census vintage to download (catalogue of sources.yaml); None = the files of `inputs`.
    vintage: int | None = None
    # Study territory: a preset of territories.yaml, or département / commune / EPCI codes.
    # Empty = every IRIS of the inputs.
    territory: list[str] = []
    out_dir: Path

    @field_validator("methods")
    @classmethod
    def _declared_methods(cls, v: list[str]) -> list[str]:
        unknown = [m for m in v if m not in ALL_METHODS]
        if unknown:
            raise ValueError(
                f"méthode(s) inconnue(s) {unknown} ; déclarées dans {METHODS_FILE.name} : {', '.join(ALL_METHODS)}"
            )
        return v


class InputFiles(_Strict):
    """What `Inputs` checks: its fields, one optional file per input, are made from inputs.yaml
    (section « inputs » below), so a configuration names exactly the inputs declared there."""

    @model_validator(mode="after")
    def _required_present(self) -> InputFiles:
        missing = [k for k in REQUIRED_INPUTS if getattr(self, k) is None]
        if missing:
            raise ValueError(f"entrées obligatoires absentes {missing} : donnez un chemin de fichier pour chacune")
        return self


class ReferenceValues(_Strict):
    level: Literal["region", "france"]
    code: str = "FR"
    label: str
    millesime_rp: int
    source: str
    values: dict[str, float]
    values_legacy_2020: dict[str, float] = {}

    def for_mode(self, legacy_2020: bool) -> dict[str, float]:
        return {**self.values, **self.values_legacy_2020} if legacy_2020 else dict(self.values)


class SourceOptions(_Strict):
    """Where downloads come from and go (used when `run.vintage` is set)."""

    catalogue: Path
    cache_dir: Path | None = None  # default: $XDG_CACHE_HOME/fragilite-numerique
    mirror: Path | None = None  # folder of files the user already holds, matched by name
    offline: bool = False
    accept_changed: bool = False
    timeout_s: float = Field(60, gt=0)
    retries: int = Field(4, ge=0, le=10)
    max_extract_mb: int = Field(4096, gt=0)
    caf_drop_folder: Path | None = None
    # ARCEP's quarter (`last`, or YYYY_Tn such as 2025_T2) when run.vintage is set.
    arcep_trimestre: str = Field("last", pattern=QUARTER_PATTERN)

    def resolved_cache_dir(self) -> Path:
        import os

        if self.cache_dir is not None:
            return Path(self.cache_dir)
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(base) / "fragilite-numerique"


class Settings(_Strict):
    run: RunOptions
    inputs: Inputs
    sources: SourceOptions
    reference_values: list[ReferenceValues] = []

    def input_paths(self) -> dict[str, Path]:
        """The declared input files, by source key (absent sources left out)."""
        return {k: getattr(self.inputs, k) for k in INPUT_KEYS if getattr(self.inputs, k) is not None}


# --- loading -------------------------------------------------------------------------------


class _UniqueKeyLoader(yaml.SafeLoader):
    """Safe YAML loader that refuses a key written twice in one mapping: PyYAML keeps the last
    value silently, so a duplicated `weights:` or `inputs:` would change a run without a word."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"clé « {key} » en double (déjà écrite ligne {seen[key]}) : gardez-en une seule",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> dict[str, Any]:
    """Load one YAML mapping safely, with an error that names the file: text in UTF-8 only (a
    binary file is refused before parsing) and no key written twice."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path} : fichier de configuration illisible ({exc.strerror})") from exc
    if b"\x00" in raw:
        raise ConfigError(f"{path} : fichier binaire, pas un texte YAML ; donnez le fichier .yaml de configuration")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path} : octet {exc.start} non UTF-8 ; enregistrez le fichier en UTF-8 (éditeur : « Enregistrer sous », UTF-8)"
        ) from exc
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} : YAML invalide : {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path} : une liste de clés (« clé: valeur ») est attendue au premier niveau, trouvé {type(data).__name__}"
        )
    return data


def _resolve_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """Make the relative file paths of one YAML document absolute from its own folder."""
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for key, value in (data.get("inputs") or {}).items():
        if isinstance(value, str) and value:
            data["inputs"][key] = str((base / value).expanduser().resolve())
    run = data.get("run") or {}
    if isinstance(run.get("out_dir"), str):
        run["out_dir"] = str((base / run["out_dir"]).expanduser().resolve())
    sources = data.get("sources") or {}
    for key in ("catalogue", "cache_dir", "mirror", "caf_drop_folder"):
        if isinstance(sources.get(key), str) and sources[key]:
            sources[key] = str((base / sources[key]).expanduser().resolve())
    return data


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


# Pydantic's messages are in English: the common ones, said in French (the others as they are).
VALIDATION_FR = {
    "missing": "valeur obligatoire absente",
    "extra_forbidden": "clé inconnue (faute de frappe ? voir `fragilite config` pour les clés admises)",
    "literal_error": "valeur non admise, attendu : {expected}",
    "enum": "valeur non admise, attendu : {expected}",
    "int_parsing": "nombre entier attendu",
    "int_type": "nombre entier attendu",
    "float_parsing": "nombre attendu",
    "float_type": "nombre attendu",
    "finite_number": "nombre fini attendu (pas inf ni nan)",
    "bool_parsing": "vrai/faux attendu (true ou false)",
    "string_type": "texte attendu",
    "list_type": "liste attendue",
    "dict_type": "liste de clés (« clé: valeur ») attendue",
    "model_type": "liste de clés (« clé: valeur ») attendue",
    "path_type": "chemin de fichier attendu",
    "greater_than": "doit être > {gt}",
    "greater_than_equal": "doit être ≥ {ge}",
    "less_than": "doit être < {lt}",
    "less_than_equal": "doit être ≤ {le}",
    "string_pattern_mismatch": "forme non admise (motif attendu : {pattern})",
    "string_too_short": "texte vide : au moins {min_length} caractère(s)",
    "too_short": "au moins {min_length} élément(s) attendu(s)",
}


def _format_validation(exc: ValidationError, source: str) -> str:
    lines = [f"{source} : configuration invalide"]
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(premier niveau)"
        template = VALIDATION_FR.get(err["type"])
        if template is not None:
            context = {"expected": "?", **(err.get("ctx") or {})}
            context["expected"] = str(context["expected"]).replace(" or ", " ou ")
            message = template.format(**context)
        else:
            message = str(err["msg"]).removeprefix("Value error, ")
        value = err.get("input")
        shown = f" (lu : {value!r})" if err["type"] != "missing" and not isinstance(value, dict | list) else ""
        lines.append(f"  - {where} : {message}{shown}")
    return "\n".join(lines)


def load_settings(config_file: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Defaults, then the user's file, then command-line overrides; validated once."""
    data = _resolve_paths(read_yaml(DEFAULTS_FILE), CONFIG_DIR)
    sources = [str(DEFAULTS_FILE)]
    if config_file:
        path = Path(config_file).resolve()
        data = _deep_merge(data, _resolve_paths(read_yaml(path), path.parent))
        sources.append(str(path))
    if overrides:
        data = _deep_merge(data, overrides)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation(exc, " + ".join(sources))) from exc


M = TypeVar("M", bound=BaseModel)


def _load(model: type[M], path: Path) -> M:
    """The file's model; a file already read with the same content is not parsed again (a run
    asks for the indicator catalogue dozens of times). Each caller gets its own copy."""
    try:
        digest = hashlib.sha1(Path(path).read_bytes()).hexdigest()
    except OSError:
        digest = ""  # read_yaml says what is wrong
    return _validated(model, str(path), digest).model_copy(deep=True)


@functools.lru_cache(maxsize=32)
def _validated(model: type[M], path: str, digest: str) -> M:
    try:
        return model.model_validate(read_yaml(Path(path)))
    except ValidationError as exc:
        raise ConfigError(_format_validation(exc, path)) from exc


def load_catalogue(path: Path = INDICATORS_FILE) -> IndicatorCatalogue:
    return _load(IndicatorCatalogue, path)


def load_methods(path: Path = METHODS_FILE) -> MethodsConfig:
    return _load(MethodsConfig, path)


def load_tic(path: Path = TIC_FILE) -> TicConfig:
    return _load(TicConfig, path)


# --- inputs: declared once, in inputs.yaml ------------------------------------------------

InputRole = Literal["census", "spine", "indicator", "connectivity", "offer"]
# Roles whose inputs each have a source asset (group `sources`) that parses them into a table;
# the others are read by the asset named in `read_by`.
SOURCE_ASSET_ROLES: tuple[str, ...] = ("census", "spine", "indicator")


class SourceAssetSpec(_Strict):
    """The source asset of an input, as Dagster shows it."""

    description: str = Field(min_length=1)
    kinds: list[str] = Field(min_length=1)
    vintage_attr: str | None = None
    preview: bool = True


class InputSpec(_Strict):
    """One input of a run: what it is, who publishes it, how the outputs name it, what reads it."""

    role: InputRole
    publisher: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,63}$")  # a Dagster tag value
    required: bool = False
    census_theme: str | None = Field(None, pattern=r"^[a-z]+(-[a-z]+)*$")
    label: str = Field(min_length=1)
    vintage_label: str | None = None
    asset: SourceAssetSpec | None = None
    read_by: Identifier | None = None

    @model_validator(mode="after")
    def _fields_of_role(self) -> InputSpec:
        if (self.role == "census") != (self.census_theme is not None):
            raise ValueError(
                "census_theme se donne pour les entrées du recensement (role: census), et pour elles seules"
            )
        if (self.role in SOURCE_ASSET_ROLES) != (self.asset is not None):
            raise ValueError(f"asset se donne pour les rôles {', '.join(SOURCE_ASSET_ROLES)}, et pour eux seuls")
        if (self.asset is None) == (self.read_by is None):
            raise ValueError(
                "donnez asset (l'entrée a son asset source) ou read_by (l'asset qui la lit) : l'un des deux, pas les deux"
            )
        return self


class InputRegistry(_Strict):
    inputs: dict[Identifier, InputSpec] = Field(min_length=1)

    @field_validator("inputs")
    @classmethod
    def _one_input_per_theme(cls, v: dict[str, InputSpec]) -> dict[str, InputSpec]:
        themes = [s.census_theme for s in v.values() if s.census_theme]
        dupes = sorted({t for t in themes if themes.count(t) > 1})
        if dupes:
            raise ValueError(f"census_theme en double : {dupes}")
        return v


INPUT_SPECS: dict[str, InputSpec] = _load(InputRegistry, INPUTS_FILE).inputs
INPUT_KEYS: tuple[str, ...] = tuple(INPUT_SPECS)
REQUIRED_INPUTS: tuple[str, ...] = tuple(k for k, s in INPUT_SPECS.items() if s.required)
# Input key → theme of INSEE's base infracommunale files (base-ic-<theme>-<year>.csv).
CENSUS_THEMES: dict[str, str] = {k: s.census_theme for k, s in INPUT_SPECS.items() if s.census_theme}


def inputs_of(*roles: InputRole) -> tuple[str, ...]:
    """The inputs of these roles, in the order of inputs.yaml."""
    return tuple(k for k, s in INPUT_SPECS.items() if s.role in roles)


# The `inputs:` section of a configuration: one optional file per declared input.
Inputs = create_model(
    "Inputs",
    __base__=InputFiles,
    __module__=__name__,
    **{key: (Path | None, None) for key in INPUT_KEYS},
)
Settings.model_rebuild()


# --- methods: declared once, in methods.yaml ------------------------------------------------


class MethodRegistry(BaseModel):
    """The `methods:` section of methods.yaml alone, read at import (`run.methods` is checked
    against it); the rest of the file, the methods' settings, is checked by `load_methods`."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    methods: MethodTable = Field(min_length=1)


METHOD_DESCRIPTIONS: dict[str, str] = {
    method: spec.description for method, spec in _load(MethodRegistry, METHODS_FILE).methods.items()
}
ALL_METHODS: tuple[str, ...] = tuple(METHOD_DESCRIPTIONS)


class TerritoryPreset(_Strict):
    label: str
    codes: list[str]


class TerritoryPresets(_Strict):
    presets: dict[str, TerritoryPreset]


def load_territories(path: Path = CONFIG_DIR / "territories.yaml") -> dict[str, TerritoryPreset]:
    return _load(TerritoryPresets, path).presets


class Classification(_Strict):
    field: str = "score_global"
    scheme: str = "Quantiles"
    k: int = Field(5, ge=2, le=9)
    colormap: str = "YlOrRd"


def census_variables(catalogue: IndicatorCatalogue, tic: TicConfig) -> frozenset[str]:
    """The census counts a run uses, named `P_<VAR>` / `C_<VAR>`: indicator numerators and
    denominators, TIC group counts, and the population and households every run weighs with.
    The base-ic readers parse only these."""
    names = {"P_POP", "C_MEN"}
    for indicator in catalogue.indicators:
        names |= {v for v in (indicator.numerator, indicator.denominator) if v}
    for group in tic.groups.values():
        names |= {v for v in (group.count, *group.alternative_counts) if v}
    for band in tic.age_bands.bands if tic.age_bands else []:
        names |= set(band.counts)
    return frozenset(n for n in names if n.startswith(("P_", "C_")))


def required_census_variables(catalogue: IndicatorCatalogue, theme: str, wanted: list[str] = ()) -> frozenset[str]:
    """The census counts an input file must hold (`P_<VAR>` / `C_<VAR>`): the numerators and
    denominators of the indicators drawn from it (those of `run.indicators` when it is set). A
    renamed or missing column is then refused, instead of silently dropping an indicator."""
    names = set()
    for indicator in catalogue.indicators:
        if indicator.source == theme and (not wanted or indicator.id in wanted):
            names |= {v for v in (indicator.numerator, indicator.denominator) if v}
    return frozenset(n for n in names if n.startswith(("P_", "C_")))


class PublicationConfig(_Strict):
    classification: Classification
    web_tolerances_m: list[float] = Field(min_length=1)
    web_columns: list[str] = Field(min_length=1)
    web_decimals: int = Field(default=4, ge=0, le=15)
    secret_threshold: float = 5
    report_top_iris: int = 20

    @field_validator("web_tolerances_m")
    @classmethod
    def _positive(cls, v: list[float]) -> list[float]:
        if any(t <= 0 for t in v):
            raise ValueError("les tolérances sont des distances positives en mètres")
        return v

    def web_selection(self, columns: list[str]) -> list[str]:
        """The layer's columns that go to the web layers, in the layer's order."""
        return [c for c in columns if any(fnmatch.fnmatchcase(c, p) for p in self.web_columns)]


def load_publication(path: Path = CONFIG_DIR / "publication.yaml") -> PublicationConfig:
    return _load(PublicationConfig, path)


FileFormat = Literal["zip", "7z", "xlsx", "xls", "csv", "gpkg", "gz"]
# Placeholders a catalogue address may hold: `{dep}` (per-département datasets), `{quarter}`
# (quarterly datasets: `last` or YYYY_Tn) and `{part}` (datasets published in `parts`).
URL_PLACEHOLDERS = ("{dep}", "{quarter}", "{part}")


class SourceFile(_Strict):
    """One published file of one vintage."""

    url: str
    member: str | None = None  # regex of the archive member(s) to extract: exactly one file
    filename: str | None = None  # name in the cache when the URL does not end with one
    format: FileFormat | None = None  # what is downloaded (dataset's by default); checked before caching
    geography: int | None = None  # year (1 January) of the commune and IRIS codes of the file
    size: int | None = None
    # Approximate size in bytes (a per-quarter file whose exact size changes): shown in the
    # download plan with « ≈ », never checked.
    size_hint: int | None = None
    md5: str | None = None
    sha256: str | None = None
    url_verified: bool = False
    note: str = ""
    # Per-département datasets: the national file, used instead of the départements' files when
    # the territory is all of France.
    national: SourceFile | None = None

    @field_validator("url")
    @classmethod
    def _http(cls, v: str) -> str:
        if not v.startswith(("https://", "http://")):
            raise ValueError(f"only http(s) URLs are allowed, not {v!r}")
        import re

        unknown = [p for p in re.findall(r"\{[^}]*\}", v) if p not in URL_PLACEHOLDERS]
        if unknown:
            raise ValueError(f"marque(s) inconnue(s) {unknown} dans {v!r} ; admises : {list(URL_PLACEHOLDERS)}")
        return v

    @field_validator("filename")
    @classmethod
    def _plain_name(cls, v: str | None) -> str | None:
        """The name a file gets in the cache: a bare file name, so that it can never be written
        outside the cache folder (`../`, an absolute path, a hidden name)."""
        if v is not None and (not v or v in (".", "..") or v.startswith(".") or any(c in v for c in "/\\\0:")):
            raise ValueError(
                f"filename {v!r} : un simple nom de fichier est attendu (ni dossier, ni « .. », ni nom caché)"
            )
        return v

    def placeholders(self) -> set[str]:
        """The placeholders of the address (and file name) of this file."""
        text = self.url + (self.filename or "")
        return {p for p in URL_PLACEHOLDERS if p in text}

    def with_values(self, **values: str) -> SourceFile:
        """This file with its placeholders filled (`dep="69"`, `quarter="2025_T2"`)."""
        update: dict = {}
        for attr in ("url", "filename"):
            text = getattr(self, attr)
            if text:
                for name, value in values.items():
                    text = text.replace("{" + name + "}", value)
                update[attr] = text
        if self.national is not None and "quarter" in values:
            update["national"] = self.national.with_values(quarter=values["quarter"])
        return self.model_copy(update=update)

    def for_departement(self, dep: str) -> SourceFile:
        """The file of one département (a per-département dataset's entry, `{dep}` filled)."""
        return self.with_values(dep=dep).model_copy(update={"national": None})

    def national_file(self) -> SourceFile:
        """The national file of a per-département entry, with the entry's format."""
        if self.national is None:
            raise ValueError(f"{self.url} : pas de fichier national au catalogue")
        national = self.national
        return national if national.format else national.model_copy(update={"format": self.format})

    @property
    def cache_name(self) -> str:
        from urllib.parse import urlparse

        return self.filename or Path(urlparse(self.url).path).name


class Dataset(_Strict):
    label: str
    publisher: str
    input: str | None  # the run input it feeds (None: listed, not read by this version)
    vintage_rule: Literal["rp", "geography", "latest", "quarter"]
    format: FileFormat
    # A failure to get or read an optional input is a warning and a missing indicator.
    optional: bool = False
    # One file per département of the study territory: every address holds `{dep}` (and may
    # name a `national` file, used when the territory is all of France).
    per_departement: bool = False
    # Several files per vintage, one per part (« Mon réseau mobile »: one per operator): code in
    # the address (`{part}`) → label.
    parts: dict[str, str] = {}
    files: dict[str, SourceFile]

    @field_validator("input")
    @classmethod
    def _declared_input(cls, v: str | None) -> str | None:
        if v is not None and v not in INPUT_KEYS:
            raise ValueError(f"entrée {v!r} non déclarée dans {INPUTS_FILE.name} ; connues : {', '.join(INPUT_KEYS)}")
        return v

    @model_validator(mode="after")
    def _placeholders(self) -> Dataset:
        for vintage, entry in self.files.items():
            where = f"files.{vintage}"
            found = entry.placeholders()
            if self.per_departement and "{dep}" not in found:
                raise ValueError(f"{where}: per_departement needs {{dep}} in the url ({entry.url})")
            if not self.per_departement and "{dep}" in found:
                raise ValueError(f"{where}: {{dep}} in the url needs per_departement: true ({entry.url})")
            if bool(self.parts) != ("{part}" in found):
                raise ValueError(f"{where}: `parts` and {{part}} in the url go together ({entry.url})")
            if "{quarter}" in found and self.vintage_rule != "quarter":
                raise ValueError(f"{where}: {{quarter}} in the url needs vintage_rule: quarter ({entry.url})")
            if entry.national is not None:
                if not self.per_departement:
                    raise ValueError(f"{where}: a national file is only for per_departement datasets")
                if "{dep}" in entry.national.placeholders() or entry.national.national is not None:
                    raise ValueError(f"{where}.national: a national file has no {{dep}} and no national file")
        return self

    def listed_quarters(self) -> list[str]:
        """The dated quarters (YYYY_Tn) the catalogue lists, oldest first."""
        import re

        return sorted(k for k in self.files if re.fullmatch(r"\d{4}_T[1-4]", k))

    def vintage_for(self, rp: int, quarter: str = "last") -> str:
        """The file vintage a census vintage needs (methodology §1: geography = RP + 2). A
        quarterly dataset that lists dated quarters only takes its newest for `last`."""
        if self.vintage_rule == "quarter" and quarter == "last" and "last" not in self.files and self.listed_quarters():
            return self.listed_quarters()[-1]
        return {"rp": str(rp), "geography": str(rp + 2), "latest": "latest", "quarter": quarter}[self.vintage_rule]

    def has_vintage(self, key: str) -> bool:
        return key in self.files or (self.vintage_rule == "quarter" and bool(self._quarter_template()))

    def _quarter_template(self) -> SourceFile | None:
        """The entry a dated quarter not listed is derived from: `last`, else the newest listed
        quarter whose address holds `{quarter}`."""
        if "last" in self.files:
            return self.files["last"]
        templated = [k for k in self.listed_quarters() if "{quarter}" in self.files[k].placeholders()]
        return self.files[templated[-1]] if templated else None

    def file(self, vintage: str) -> SourceFile:
        """The entry of a vintage, the dataset's format filled in. A quarterly dataset lists its
        `last` file (or dated quarters); another quarter (2025_T2) is the same address with the
        quarter in its path (`{quarter}`, or the `/last/` folder replaced)."""
        if self.vintage_rule == "quarter" and vintage not in self.files:
            import re

            if not re.fullmatch(QUARTER_PATTERN, vintage):
                raise ValueError(f"trimestre {vintage!r} : attendu 'last' ou AAAA_Tn (par exemple 2025_T2)")
            template = self._quarter_template()
            if template is None:
                raise ValueError(f"trimestre {vintage!r} : absent du catalogue ({', '.join(sorted(self.files))})")
            if "{quarter}" not in template.placeholders():
                template = template.model_copy(update={"url": template.url.replace("/last/", "/{quarter}/")})
            entry = template.with_values(quarter=vintage).model_copy(
                update={"geography": int(vintage[:4]), "url_verified": False}
            )
        else:
            entry = self.files[vintage].with_values(quarter=vintage)
        return entry if entry.format else entry.model_copy(update={"format": self.format})


class Catalogue(_Strict):
    hosts: list[str]
    datasets: dict[str, Dataset]

    @model_validator(mode="after")
    def _declared_hosts(self) -> Catalogue:
        from urllib.parse import urlparse

        for name, dataset in self.datasets.items():
            for vintage, entry in dataset.files.items():
                for url in (entry.url, entry.national.url if entry.national else None):
                    host = urlparse(url).hostname if url else None
                    if url and host not in self.hosts:
                        raise ValueError(f"datasets.{name}.files.{vintage}: host {host!r} is not in hosts {self.hosts}")
        return self


def load_sources(path: Path = CONFIG_DIR / "sources.yaml") -> Catalogue:
    return _load(Catalogue, Path(path))


class DepartementNames(_Strict):
    departements: dict[str, str]


def load_departement_names(path: Path = CONFIG_DIR / "departements.yaml") -> dict[str, str]:
    return _load(DepartementNames, path).departements


def settings_as_yaml(settings: Settings) -> str:
    """The effective configuration, as a YAML document a user can save and edit."""
    data = settings.model_dump(mode="json", by_alias=True)
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)

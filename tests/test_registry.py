"""The inputs and the methods are declared once (config/inputs.yaml, config/methods.yaml) and every
other list of them is derived: these tests fail when an input or a method is declared twice, or
declared without the code that reads or computes it."""

from __future__ import annotations

import ast
import dataclasses
from collections import Counter
from functools import cache
from pathlib import Path

import pytest

from config.settings import (
    ALL_METHODS,
    CENSUS_THEMES,
    INPUT_KEYS,
    INPUT_SPECS,
    INPUTS_FILE,
    METHOD_DESCRIPTIONS,
    REQUIRED_INPUTS,
    ConfigError,
    InputRegistry,
    Inputs,
    MethodRegistry,
    RunOptions,
    _load,
    load_catalogue,
    load_methods,
    load_settings,
    load_sources,
)
from tests.conftest import ROOT, write

# Folders of the project's code (tests spell inputs out on purpose: fixtures per publisher file).
CODE_FOLDERS = ("config", "sources", "transforms", "indice", "outputs", "pipelines", "benchmarks")
# A literal naming more declared inputs (or methods) than this is a second declaration of them.
AT_MOST = 2
# The code half of the input registry: input key → parser.
REGISTRY_MODULES = {"sources/registry.py"}
# Lists still written out in modules this change could not edit, how many of each, and what
# replaces them. The count must stay exact: one fixed elsewhere fails until it leaves this list.
PENDING: dict[tuple[str, str], int] = {}


@cache
def definitions():
    """Every asset of the project, as a run loads them."""
    from pipelines.definitions import build_definitions

    return build_definitions()


@cache
def asset_nodes() -> dict:
    graph = definitions().resolve_asset_graph()
    return {key.to_user_string(): graph.get(key) for key in graph.get_all_asset_keys()}


# --- every declared input is read, once --------------------------------------------------


def test_every_input_has_a_parser_or_the_asset_that_reads_it():
    from sources.registry import PARSERS, registry_problems

    assert registry_problems() == []
    nodes = asset_nodes()
    for key, spec in INPUT_SPECS.items():
        if spec.asset is not None:
            assert key in PARSERS, key
            assert nodes[key].group_name == "sources", key
        else:
            assert spec.read_by in nodes, f"{key} : read_by {spec.read_by!r} n'est pas un asset"
    assert set(PARSERS) <= set(INPUT_KEYS)


def test_a_parser_missing_or_undeclared_is_named(monkeypatch):
    import sources.registry

    parsers = {k: v for k, v in sources.registry.PARSERS.items() if k != "cog_passage"}
    monkeypatch.setattr(sources.registry, "PARSERS", {**parsers, "cog_pasage": parsers["communes_epci"]})
    problems = sources.registry.registry_problems()
    assert len(problems) == 2
    assert problems[0].startswith("cog_passage : déclarée avec un asset source dans inputs.yaml mais sans lecteur")
    assert problems[1].startswith("cog_pasage : lecteur dans sources/registry.py pour une entrée absente")


def test_source_assets_are_those_the_registry_declares():
    """One asset per input with a source asset, with the description, kinds and publisher of
    inputs.yaml; the `sources` group holds declared inputs only; an input's own asset (even one
    written by hand) carries the publisher declared for it."""
    nodes = asset_nodes()
    for key, spec in INPUT_SPECS.items():
        if spec.asset is not None:
            node = nodes[key]
            assert node.description == spec.asset.description
            kinds = {t.removeprefix("dagster/kind/") for t in node.tags if t.startswith("dagster/kind/")}
            assert kinds == set(spec.asset.kinds)
        if key in nodes:
            assert nodes[key].tags.get("publisher") == spec.publisher, key
    sources = {key for key, node in nodes.items() if node.group_name == "sources"}
    assert sources - set(INPUT_KEYS) == set()


def test_the_inputs_model_is_the_registry():
    assert tuple(Inputs.model_fields) == INPUT_KEYS
    assert set(REQUIRED_INPUTS) == {"contours_iris", "communes_epci", "rp_evol_struct_pop"}
    settings = load_settings()
    for key in REQUIRED_INPUTS:
        with pytest.raises(ConfigError, match=rf"entrées obligatoires absentes \['{key}'\]"):
            load_settings(overrides={"inputs": {**settings.input_paths(), key: None}})
    with pytest.raises(ConfigError, match=r"inputs\.filosofi_iri : clé inconnue"):
        load_settings(overrides={"inputs": {"filosofi_iri": "x.xlsx"}})


def test_the_chain_reads_the_registry():
    from pipelines.defs.national import iris_departement
    from transforms.chain import CENSUS_INPUTS, CHAIN_INPUTS, INDICATOR_INPUTS
    from transforms.indicators import IndicatorInputs

    assert CENSUS_INPUTS == tuple(CENSUS_THEMES)
    assert set(CHAIN_INPUTS) == {key for key, spec in INPUT_SPECS.items() if spec.asset is not None}
    assert set(INDICATOR_INPUTS) <= {f.name for f in dataclasses.fields(IndicatorInputs)}
    assert set(CHAIN_INPUTS) <= {k.to_user_string() for k in iris_departement.asset_deps[iris_departement.key]}


def test_the_dictionary_names_every_indicator_source():
    from outputs.dictionary import PLACES_SOURCE, SOURCE_LABELS, VINTAGE_LABELS

    for indicator in load_catalogue().indicators:
        assert SOURCE_LABELS[indicator.source] == INPUT_SPECS[indicator.source].label
    assert set(VINTAGE_LABELS) <= set(INPUT_KEYS)
    assert PLACES_SOURCE == INPUT_SPECS["lieux_mediation"].label


def test_the_catalogue_feeds_declared_inputs_only(tmp_path):
    assert {d.input for d in load_sources().datasets.values()} - {None} <= set(INPUT_KEYS)
    text = (ROOT / "config" / "sources.yaml").read_text(encoding="utf-8")
    wrong = write(tmp_path / "sources.yaml", text.replace("input: cog_passage", "input: cog_pasage", 1))
    with pytest.raises(
        ConfigError, match=r"datasets\.cog_passage\.input : entrée 'cog_pasage' non déclarée dans inputs\.yaml"
    ):
        load_sources(wrong)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("role: indicator\n    census_theme: filosofi", "census_theme se donne pour les entrées du recensement"),
        ("role: indicator\n    read_by: iris_base", r"ou read_by \(l'asset qui la lit\) : l'un des deux, pas les deux"),
        ("role: offer", "asset se donne pour les rôles census, spine, indicator"),
    ],
)
def test_a_wrong_declaration_is_refused_in_french(tmp_path, change, message):
    text = INPUTS_FILE.read_text(encoding="utf-8").replace("role: indicator", change, 1)
    with pytest.raises(ConfigError, match=message) as error:
        _load(InputRegistry, write(tmp_path / "inputs.yaml", text))
    assert "inputs.filosofi_iris" in str(error.value)


# --- every declared method is computed, once ----------------------------------------------


def test_methods_are_declared_once_and_computed():
    import indice.methods

    assert tuple(load_methods().methods) == ALL_METHODS
    assert RunOptions(out_dir=Path("x")).methods == list(ALL_METHODS)
    with pytest.raises(ValueError, match=r"méthode\(s\) inconnue\(s\) \['ifn_2024'\]"):
        RunOptions(out_dir=Path("x"), methods=["ifn_2024"])
    # score_method has one branch per declared method, and none for another id.
    tree = ast.parse(Path(indice.methods.__file__).read_text(encoding="utf-8"))
    handled = {
        node.comparators[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Compare)
        and isinstance(node.left, ast.Name)
        and node.left.id == "method"
        and isinstance(node.comparators[0], ast.Constant)
    }
    assert handled == set(ALL_METHODS)
    nodes = asset_nodes()
    for method in ALL_METHODS:
        assert nodes[f"iris_{method}"].description == METHOD_DESCRIPTIONS[method]


def test_a_method_declaration_without_description_is_refused(tmp_path):
    text = (ROOT / "config" / "methods.yaml").read_text(encoding="utf-8")
    wrong = write(
        tmp_path / "methods.yaml", text.replace("  tic_2019:\n    description:", "  tic_2019:\n    label:", 1)
    )
    with pytest.raises(ConfigError, match=r"methods\.tic_2019\.description : valeur obligatoire absente"):
        _load(MethodRegistry, wrong)


# --- no second list in the code -----------------------------------------------------------


def _declarations(tree: ast.AST, names: frozenset[str]):
    """(kind, line, names) of each literal or signature naming more than AT_MOST of `names`:
    tuple, list and set literals, dict keys, function parameters."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            items, kind = node.elts, "literal"
        elif isinstance(node, ast.Dict):
            items, kind = [k for k in node.keys if k is not None], "dict"
        elif isinstance(node, ast.FunctionDef):
            found = {a.arg for a in node.args.args + node.args.kwonlyargs} & names
            if len(found) > AT_MOST:
                yield f"def {node.name}", node.lineno, found
            continue
        else:
            continue
        found = {i.value for i in items if isinstance(i, ast.Constant) and isinstance(i.value, str)} & names
        if len(found) > AT_MOST:
            yield kind, node.lineno, found


def test_no_module_writes_the_inputs_or_the_methods_out_again():
    names = frozenset(INPUT_KEYS) | frozenset(ALL_METHODS)
    found: Counter = Counter()
    lines: dict = {}
    for folder in CODE_FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            module = path.relative_to(ROOT).as_posix()
            if module in REGISTRY_MODULES:
                continue
            for kind, line, which in _declarations(ast.parse(path.read_text(encoding="utf-8")), names):
                found[(module, kind)] += 1
                lines.setdefault((module, kind), []).append((line, sorted(which)))
    unexpected = {where: lines[where] for where in found if found[where] > PENDING.get(where, 0)}
    assert not unexpected, f"déclarés à nouveau (lisez config/inputs.yaml ou config/methods.yaml) : {unexpected}"
    fixed = {where: n - found[where] for where, n in PENDING.items() if found[where] < n}
    assert not fixed, f"corrigés ailleurs : retirez-les de PENDING : {fixed}"


def test_the_scan_finds_a_second_list():
    """The scan above sees a tuple of input keys, a dict keyed by methods and a signature."""
    source = (
        "A = ('filosofi_iris', 'arcep_debit', 'cog_passage')\n"
        "B = {'mednum_2019': 1, 'ifn_2023': 2, 'opale_2022': 3}\n"
        "def f(contours_iris, communes_epci, rp_evol_struct_pop): pass\n"
        "C = ('filosofi_iris', 'arcep_debit')\n"
    )
    found = list(_declarations(ast.parse(source), frozenset(INPUT_KEYS) | frozenset(ALL_METHODS)))
    assert sorted((line, kind) for kind, line, _ in found) == [(1, "literal"), (2, "dict"), (3, "def f")]


def test_configuration_files_are_parsed_once_per_content(tmp_path):
    """The catalogue is asked for dozens of times a run: parsed once, but an edited file is read
    again, and callers never share (and so never alter) each other's copy."""
    from config.settings import INDICATORS_FILE, _validated, load_catalogue

    path = tmp_path / "indicators.yaml"
    text = INDICATORS_FILE.read_text(encoding="utf-8")
    path.write_text(text, encoding="utf-8")
    first, second = load_catalogue(path), load_catalogue(path)
    assert first == second and first is not second
    hits = _validated.cache_info().hits
    load_catalogue(path)
    assert _validated.cache_info().hits == hits + 1
    label = first.indicators[0].label
    first.indicators.pop(0)
    assert load_catalogue(path).indicators[0].label == label
    path.write_text(text.replace(f'label: "{label}"', 'label: "Libellé changé"', 1), encoding="utf-8")
    assert load_catalogue(path).indicators[0].label == "Libellé changé"

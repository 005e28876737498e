"""The benchmark's France-scale generator, at a tiny scale: real layouts, valid coverage, determinism."""

from __future__ import annotations

import hashlib

import shapely

from benchmarks.generate import generate
from config import load_settings
from sources.registry import PARSERS


def test_generator_writes_readable_real_layouts(tmp_path):
    g = generate(tmp_path / "a", scale=0.005, seed=7)
    assert g.iris == 243 and g.communes == 174
    settings = load_settings(g.config)
    tables = {key: PARSERS[key](path) for key, path in settings.input_paths().items()}
    outlines = tables["contours_iris"]
    assert len(outlines) == g.iris and outlines["CODE_IRIS"].is_unique
    # one part of France per CRS, as IGN ships them; each a valid coverage
    assert set(outlines["EPSG"]) == {2154, 5490, 2972, 2975, 4471}
    for _, part in outlines.groupby("EPSG"):
        assert shapely.coverage_is_valid(part.geometry.to_numpy())
    assert tables["rp_evol_struct_pop"].attrs["millesime"] == 2021
    census = tables["rp_evol_struct_pop"]
    assert (census["P_POP65P"] <= census["P_POP"]).all()
    assert tables["filosofi_iris"].attrs["codes_completes"] > 0  # Ain's codes lost their zero, as in 2019
    assert set(tables["communes_epci"]["INSEE_COM"]) == set(outlines["INSEE_COM"])
    assert {"2A", "2B", "971", "976"} <= {c[:2] if not c.startswith("97") else c[:3] for c in outlines["INSEE_COM"]}


def test_generator_is_deterministic(tmp_path):
    def digest(folder):
        return {
            p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.iterdir())
            if p.suffix.lower() == ".csv"
        }

    a = generate(tmp_path / "a", scale=0.005, seed=3)
    b = generate(tmp_path / "b", scale=0.005, seed=3)
    assert digest(a.folder) == digest(b.folder)

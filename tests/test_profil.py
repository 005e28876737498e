"""The profile command of the benchmarks, at the generator's smallest size (200 IRIS, ~20 s)."""

from __future__ import annotations

import pstats

from benchmarks.profil import main


def test_profile_of_one_step_lists_its_own_functions(tmp_path, capsys):
    assert main(["--scale", "0.001", "--etape", "iris_accessibilite", "--top", "40", "--sortie", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    whole = pstats.Stats(str(tmp_path / "profil-0.001.prof"))
    step = pstats.Stats(str(tmp_path / "profil-0.001-iris_accessibilite.prof"))
    names = {func[2] for func in step.stats}
    # the step's profile holds the asset's own work, and no other asset's
    assert {"iris_accessibilite", "access_table", "accessibility"} <= names
    assert "iris_indicateurs" not in names
    # the whole run's profile includes the step's
    assert "accessibility" in {func[2] for func in whole.stats}
    assert "étape iris_accessibilite" in printed and "transforms/accessibilite.py" in printed

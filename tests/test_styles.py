"""Map classes computed without mapclassify for the default scheme: the same bounds."""

from __future__ import annotations

import subprocess
import sys

import mapclassify
import numpy as np
import pandas as pd
import pytest

from config.settings import Classification
from outputs.styles import classify, quantile_bins, scheme_bins


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("k", [2, 3, 4, 5, 6, 7, 9])
def test_quantiles_equal_mapclassify_bit_for_bit(seed, k):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 3000))
    values = rng.normal(100, 30, n)
    values[rng.random(n) < 0.3] = np.round(values[rng.random(n) < 0.3].mean(), 1)  # ties
    if seed % 2:
        values = np.round(values, 1)  # many repeated scores, as published notes are
    mine = quantile_bins(values, k)
    theirs = mapclassify.Quantiles(values, k=k).bins
    assert mine.tobytes() == np.asarray(theirs, dtype="float64").tobytes()


def test_quantiles_by_hand():
    """Ten values 1…10, quartiles: positions 2.25, 4.5, 6.75, 9 of the sorted values."""
    assert quantile_bins(np.arange(10, 0, -1, dtype=float), 4).tolist() == [3.25, 5.5, 7.75, 10.0]
    assert quantile_bins(np.array([5.0, 5.0, 5.0, 9.0]), 4).tolist() == [5.0, 6.0, 9.0]  # repeated bounds merged


def test_other_schemes_still_come_from_mapclassify():
    values = np.array([1.0, 2.0, 4.0, 8.0, 16.0, 32.0])
    assert scheme_bins("EqualInterval", values, 3).tolist() == mapclassify.EqualInterval(values, k=3).bins.tolist()
    spec = Classification(field="score_global", k=3, scheme="FisherJenks", colormap="OrRd")
    classes = classify(pd.Series(values), spec)
    assert classes.breaks[-1] == 32.0 and len(classes.breaks) == 3


def test_default_classification_does_not_import_mapclassify():
    """Half a second of scipy and scikit-learn imports saved at every start of a run."""
    code = (
        "import sys, numpy as np, pandas as pd\n"
        "from config.settings import Classification\n"
        "from outputs.styles import classify\n"
        "classify(pd.Series(np.arange(50.0)), Classification(field='x', k=5, scheme='Quantiles', colormap='OrRd'))\n"
        "print('mapclassify' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"

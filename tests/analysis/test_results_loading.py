"""Loading results folders (analysis/results.py): level strings, factors, the baseline, the data
set searched as a data set, one-line errors."""

from __future__ import annotations

import numpy as np
import pytest

from analysis import sensitivity, tables
from analysis.results import ResultsError, level_str, load
from tests.analysis.studies import write_study


def test_level_strings_agree_between_yaml_and_csv():
    assert level_str(False) == level_str(np.bool_(False)) == "False"
    assert level_str(0) == level_str(0.0) == level_str(np.int64(0)) == "0"
    assert level_str(0.25) == "0.25" and level_str("svd") == "svd"
    assert level_str(float("nan")) == level_str(None) == "NA"


def test_load_reads_factors_baseline_and_percent(planted):
    res = load([planted])
    assert [f.key for f in res.factors] == ["rollingq.beta", "rollingq.rho",
                                            "rollingq.max_rotations"]
    assert res.factor("rollingq.max_rotations").baseline == "1"  # no vanilla level: the first
    assert res.baseline == "0 / 0.5 / 1"
    assert res.datasets == ["synthetic"]  # data.name absent from fixed
    assert len(res.trials) == 81 and len(res.finished) == 78
    assert res.finished["acc"].between(50, 80).all()  # fractions became percent


def test_vanilla_level_is_the_baseline_even_when_not_first(tmp_path):
    search = {"rollingq.enabled": {"role": "scientific", "type": "choice",
                                   "values": [True, False]}}
    d = write_study(tmp_path, search=search, effect=lambda p: 0.5, seeds=(0, 1))
    res = load([d])
    assert res.baseline == "False"
    table = tables.main_table(res)
    assert table.loc[table["baseline"], "variant"].tolist() == ["False"]


def test_missing_folder_and_missing_trials_raise_one_line(tmp_path):
    with pytest.raises(ResultsError, match="does not exist"):
        load([tmp_path / "nope"])
    with pytest.raises(ResultsError, match="no trials.csv"):
        load([tmp_path])


def test_searched_data_set_is_the_data_set_not_a_variant(tmp_path):
    search = {"data.name": {"role": "scientific", "type": "choice",
                            "values": ["synthetic", "features"]},
              "rollingq.enabled": {"role": "scientific", "type": "choice",
                                   "values": [False, True]}}
    d = write_study(tmp_path, search=search, effect=lambda p: 0.6 + 0.05 * p["rollingq.enabled"]
                    + (0.2 if p["data.name"] == "features" else 0.0))
    res = load([d])
    assert res.datasets == ["synthetic", "features"] and res.variants == ["False", "True"]
    table = tables.main_table(res)
    assert table["dataset"].tolist() == ["synthetic", "synthetic", "features", "features"]
    assert (table.loc[~table["baseline"], "delta"] > 4).all()
    a = sensitivity.analyse(res).anova.set_index("term")
    assert a.loc["data set", "p"] < 1e-6 and "data.name" not in a.index

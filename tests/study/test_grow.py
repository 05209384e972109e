"""A grid study grows by seeds: ``--resume DIR --set seeds=[...]`` trains only the new seeds'
trials (a further Ray experiment of the same study) and the results and report are one study;
any other change to the spec on resume is bad input, refused before Ray starts."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from study import growth, run
from study.specfile import load_spec
from tests.study.test_study_ray import result_rows, run_cli, the_study

pytestmark = pytest.mark.integration  # make test-fast leaves it out (docs/testing.md)


def planted_study(tmp_path: Path, space: str = "smoke", *sets: str) -> Path:
    """A study folder as a new study writes it (its space.yaml), before any trial ran."""
    spec = load_spec(space, list(sets) or ["seeds=[0, 1]"])
    folder = tmp_path / space / "planted"
    folder.mkdir(parents=True)
    (folder / "space.yaml").write_text("# question\n" + yaml.safe_dump(spec.to_dict()))
    return folder


@pytest.mark.parametrize("sets, says", [
    (["rollingq.beta=0.5"], "rollingq.beta is not a fixed value in the study's space.yaml but "
                            "0.5 on the command line; only the seed list may grow"),
    (["tune.max_failures=3"], "tune.max_failures is 1 in the study's space.yaml but 3"),
    (["seeds=[1, 2]"], "seeds=[1, 2] drops the trained seed(s) [0]; a study grows by new "
                       "seeds after its own [0, 1], e.g. seeds=[0, 1, 2]"),
    (["seeds=[0, 1, 1]"], "repeats the seed(s) [1]"),
    (["seeds=[1, 0]"], "reorders the seeds"),
])
def test_a_resume_that_changes_the_spec_is_refused(tmp_path, capsys, sets, says):
    folder = planted_study(tmp_path)
    before = (folder / "space.yaml").read_text()
    argv = ["--space", "smoke", "--resume", str(folder)]
    for s in sets:
        argv += ["--set", s]
    assert run.main(argv) == run.EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"error: --resume {folder}: "), err
    assert says in err
    assert (folder / "space.yaml").read_text() == before  # nothing written
    assert not (folder / growth.EXPERIMENTS).exists()


def test_an_optuna_study_cannot_grow_by_seeds(tmp_path, capsys):
    folder = planted_study(tmp_path, "hpo", "seeds=[0]", "tune.scheduler=fifo")
    assert run.main(["--space", "hpo", "--resume", str(folder), "--set", "seeds=[0, 1]"]) == 2
    err = capsys.readouterr().err
    assert "an Optuna study cannot grow by seeds" in err and "seeds=[0, 1]" in err


def test_a_two_seed_study_grows_to_three(tmp_path):
    """The smoke study at seeds 0 and 1 (4 trials), then grown to 0, 1, 2: exactly the 2 new
    trials train, in a second Ray experiment; the 4 old trials are untouched; trials.csv and
    the report are one study of 3 seeds."""
    r = run_cli("--space", "smoke", "--storage", str(tmp_path), "--set", "seeds=[0,1]",
                "--no-report")  # the grown study's report is the one read
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    study = the_study(tmp_path, "smoke")
    old = pd.read_csv(study / "trials.csv")
    assert len(old) == 4
    old_rows = result_rows(study)
    old_files = {p: p.read_bytes() for p in (study / "ray").glob("*/result.json")}
    assert len(old_files) == 4

    r = run_cli("--space", "smoke", "--resume", str(study), "--set", "seeds=[0,1,2]")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "grows by seed(s) [2]: 2 new trials in ray-2/ (the trials of seeds [0, 1] are kept)" \
        in r.stdout
    # the old experiment trained nothing more; the new one trained exactly the 2 new trials
    assert {p: p.read_bytes() for p in (study / "ray").glob("*/result.json")} == old_files
    assert result_rows(study) == old_rows
    new_results = sorted((study / "ray-2").glob("*/result.json"))
    assert len(new_results) == 2
    new_seeds = [json.loads(p.read_text().splitlines()[0])["config"]["train.seed"]
                 for p in new_results]
    assert new_seeds == [2, 2]
    assert json.loads((study / growth.EXPERIMENTS).read_text()) == [
        {"ray": "ray", "seeds": [0, 1]}, {"ray": "ray-2", "seeds": [2]}]
    assert yaml.safe_load((study / "space.yaml").read_text())["seeds"] == [0, 1, 2]

    trials = pd.read_csv(study / "trials.csv")
    assert len(trials) == 6 and trials["trial_id"].is_unique
    assert (trials["status"] == "finished").all()
    assert set(old["trial_id"]) < set(trials["trial_id"])
    assert sorted(trials["train.seed"]) == [0, 0, 1, 1, 2, 2]
    kept = trials.set_index("trial_id").loc[old["trial_id"], "test_acc_at_best_val"]
    assert kept.tolist() == old["test_acc_at_best_val"].tolist()
    meta = json.loads((study / "meta.json").read_text())
    assert meta["expected_trials"] == 6 and meta["trials"]["finished"] == 6
    assert meta["resumed"] is True
    report = (study / "report.md").read_text()
    assert "on 3 of 3; off 3 of 3" in report  # each claim's trials used per arm

    # a plain resume of the grown study trains nothing and keeps its 6 trials
    r = run_cli("--space", "smoke", "--resume", str(study), "--no-report")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "trials: 6 finished (expected 6)" in r.stdout
    assert len(sorted((study / "ray-2").glob("*/result.json"))) == 2

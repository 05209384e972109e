"""A sequential study: the ``sequential:`` block checked before Ray starts, ``--plan`` (trains
nothing, starts no Ray), ``looks.json`` appended and never rewritten, and a real study on local
Ray that judges two looks and resumes after a SIGKILL between them with each look once."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from analysis import looks
from analysis.results import ResultsError
from study import run, sequential
from study.space import SpecError, parse_spec
from study.specfile import load_spec
from tests.study.test_study_ray import (
    kill_processes,
    run_cli,
    session_processes,
    start_cli,
    write_spec,
)

DATA = Path(__file__).resolve().parents[1] / "analysis" / "data"
TINY = """# Does RollingQ do what the paper claims? (two looks, tiny budget)
fixed:
  model.fusion: attn
  train.epochs: 2
  data.train_size: 600
  data.test_size: 200
search:
  rollingq.enabled: {role: scientific, type: choice, values: [false, true]}
seeds: [0]
tune: {mode: grid, metric: val_acc, scheduler: fifo, resources: {cpu: 1, gpu: 0}, max_failures: 1}
sequential: {budget: 3, looks: [2, 3]}
"""


def tree(**block) -> dict:
    return {"fixed": {"model.fusion": "attn"},
            "search": {"rollingq.enabled": {"role": "scientific", "type": "choice",
                                            "values": [False, True]}},
            "seeds": [0], "sequential": block}


def test_a_sequential_block_is_read_with_its_looks_spelled_out():
    spec = parse_spec(tree(budget=10, every=3), "s", "s.yaml")
    assert spec.sequential == {"budget": 10, "looks": [3, 6, 9, 10], "hours": None,
                               "spending": "obrien_fleming"}
    spec = parse_spec(tree(budget=6, every=2, first=2, hours=1.5, spending="pocock"), "s", "s.yaml")
    assert spec.sequential == {"budget": 6, "looks": [2, 4, 6], "hours": 1.5, "spending": "pocock"}
    assert sequential.seed_order(spec) == [0, 1, 2, 3, 4, 5]
    spec.seeds = [7, 3]  # the spec's seeds in order, then the integers after the largest
    assert sequential.seed_order(spec) == [7, 3, 8, 9, 10, 11]
    assert parse_spec(tree(budget=4, looks=[2, 4]), "s", "s.yaml").to_dict()["sequential"][
        "looks"] == [2, 4]
    assert "sequential" not in load_spec("smoke").to_dict()  # a fixed study's space.yaml as before


@pytest.mark.parametrize("block, says", [
    ({"budget": 1, "looks": [1]}, "`sequential.budget >= 2` must hold"),
    ({"budget": 10}, "give the looks as sequential.looks"),
    ({"budget": 10, "looks": [3, 10], "every": 2}, "one of the two"),
    ({"budget": 10, "looks": [3, 5]}, "must end at the budget, 10 seeds"),
    ({"budget": 10, "looks": [5, 3, 10]}, "must be increasing seed counts"),
    ({"budget": 10, "looks": [1, 10]}, "the first look needs at least 2 seeds"),
    ({"budget": 10, "looks": [3, 10], "hours": 0}, "`sequential.hours > 0` must hold"),
    ({"budget": 10, "looks": [3, 10], "spending": "haybittle"},
     "sequential.spending='haybittle' is not valid (s.yaml: sequential); valid: obrien_fleming, "
     "pocock"),
    ({"budget": 10, "looks": [3, 10], "alpha": 0.1}, "unknown field sequential.alpha"),
    ({"budget": 10, "looks": [3, 10], "first": 2}, "sequential.first goes with sequential.every"),
])
def test_a_bad_sequential_block_is_one_line_naming_the_rule(block, says):
    with pytest.raises(SpecError) as e:
        parse_spec(tree(**block), "s", "s.yaml")
    assert says in str(e.value) and "\n" not in str(e.value)


def test_a_sequential_study_is_a_grid_with_a_claim_to_judge():
    t = {**tree(budget=4, looks=[2, 4]), "tune": {"mode": "optuna"}}
    with pytest.raises(SpecError, match="set tune.mode: grid"):
        parse_spec(t, "s", "s.yaml")
    t = {**tree(budget=4, looks=[2, 4]), "search": {}, "fixed": {"rollingq.enabled": True}}
    with pytest.raises(SpecError, match="a sequential study judges the paper's claims: no trial "
                                        "of s.yaml pairs RollingQ on with off"):
        parse_spec(t, "s", "s.yaml")
    with pytest.raises(SpecError, match="must be distinct and at most the budget's 2"):
        parse_spec({**tree(budget=2, looks=[2]), "seeds": [0, 1, 2]}, "s", "s.yaml")


def test_the_plan_prints_the_hours_and_trains_nothing(tmp_path, capsys):
    """The shipped sequential space planned from a pilot (the smoke study's real output): the
    looks' trials and hours at the pilot's trial time, each claim's margin and seeds; no Ray,
    no results folder."""
    import ray

    pilot = DATA / "smoke_finished"
    code = run.main(["--space", "sequential_rollingq", "--plan", "--pilot", str(pilot),
                     "--storage", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    seconds = pd.read_csv(pilot / "trials.csv")["time_total_s"].mean()
    assert f"trial hours: at the pilot's mean trial time, {seconds:.1f} s" in out
    hours = seconds / 3600
    assert f"   1      3           6       6  {6 * hours:>9.2f}  {6 * hours:>7.2f}" in out
    assert f"   3     12          12      24  {12 * hours:>9.2f}  {24 * hours:>7.2f}" in out
    assert "synthetic (6) RollingQ improves accuracy (Table 1): margin 0.5" in out
    assert f"budget: 12 seeds per data set = 24 trials, {24 * hours:.2f} trial hours" in out
    assert not ray.is_initialized()
    assert not any(tmp_path.iterdir())

    assert run.main(["--space", "sequential_rollingq", "--plan", "--storage",
                     str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "trial hours: not estimated: no pilot" in out
    assert "no pilot: at an assumed seed sd of 1 … 2 margins" in out


def test_a_plan_without_a_claim_to_judge_exits_2_with_one_line(tmp_path, capsys):
    one_arm = yaml.safe_load((run.ROOT / "searchspaces" / "smoke.yaml").read_text())
    one_arm["search"], one_arm["fixed"]["rollingq.enabled"] = {}, True
    (tmp_path / "one_arm.yaml").write_text(yaml.safe_dump(one_arm))
    assert run.main(["--space", str(tmp_path / "one_arm.yaml"), "--plan"]) == run.EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: --plan: no trial of "), err


def test_a_time_budget_below_the_first_look_exits_2_with_one_line(capsys):
    assert run.main(["--space", "sequential_rollingq", "--plan", "--pilot",
                     str(DATA / "smoke_finished"), "--set", "sequential.hours=0.0001"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: --plan: the first look (6 trials) takes 0.01 trial hours at "
                          "the pilot's trial time, more than sequential.hours=0.0001"), err


def test_pilot_goes_with_plan_and_a_sequential_study_grows_by_its_looks(tmp_path, capsys):
    assert run.main(["--space", "smoke", "--pilot", str(tmp_path)]) == 2
    assert "--pilot" in capsys.readouterr().err
    spec = load_spec("sequential_rollingq")
    folder = tmp_path / "sequential_rollingq" / "s"
    folder.mkdir(parents=True)
    (folder / "space.yaml").write_text(yaml.safe_dump(spec.to_dict()))
    assert run.main(["--space", "sequential_rollingq", "--resume", str(folder), "--set",
                     "seeds=[0, 1]"]) == 2
    err = capsys.readouterr().err
    assert "a sequential study grows by its own looks ([3, 6, 12] seeds)" in err


def test_looks_are_appended_and_never_rewritten(tmp_path):
    looks.append(tmp_path, {"look": 1, "seeds": [0, 1], "families": [], "p": float("nan")})
    first = (tmp_path / looks.LOOKS).read_text()
    looks.append(tmp_path, {"look": 2, "seeds": [0, 1, 2], "families": []})
    text = (tmp_path / looks.LOOKS).read_text()
    assert text.startswith(first.removesuffix("\n]\n"))
    assert [e["look"] for e in looks.read(tmp_path)] == [1, 2]
    assert json.loads(text)[0]["p"] is None  # strict JSON: NaN is null
    (tmp_path / looks.LOOKS).write_text('[{"look": 2}]')
    with pytest.raises(ResultsError, match="not a sequential study's looks"):
        looks.read(tmp_path)


@pytest.mark.parametrize("text, says", [
    ("[\n{\"look\": 2}\n]\n", "looks.json: not a sequential study's looks"),
    ("[\n{\"look\": 1, \"seeds\": [0, 1]}\n]\n", "look 1 of looks.json judged seeds [0, 1], "
                                                    "but the design's look 1 has [0, 1, 2]"),
])
def test_a_resume_with_looks_of_another_design_exits_2_before_ray(tmp_path, capsys, text, says):
    spec = load_spec("sequential_rollingq")
    folder = tmp_path / "sequential_rollingq" / "s"
    folder.mkdir(parents=True)
    (folder / "space.yaml").write_text(yaml.safe_dump({**spec.to_dict(), "seeds": [0, 1, 2]}))
    (folder / looks.LOOKS).write_text(text)
    assert run.main(["--space", "sequential_rollingq", "--resume", str(folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and says in err, err
    assert (folder / looks.LOOKS).read_text() == text  # nothing written


def entry(undecided: int, claims: int = 6) -> dict:
    return {"undecided": undecided, "families": [{"name": "synthetic",
                                                  "claims": [{}] * claims}]}


@pytest.mark.parametrize("look, undecided, hours, stop", [
    (0, 2, None, None),  # undecided claims, no time budget: grow
    (0, 0, None, "all decided"),
    (2, 2, None, "seed budget"),  # the last look
    (0, 2, 2.0, None),  # 1 hour so far (6 trials), the next look 1 more: within 2 hours
    (0, 2, 1.9, "time budget"),
    (1, 2, 3.9, "time budget"),  # 2 hours so far, the next look 2 more
])
def test_the_study_grows_while_a_claim_is_undecided_and_the_budget_allows(tmp_path, look,
                                                                          undecided, hours, stop):
    """``sequential_rollingq`` (looks at 3, 6, 12 seeds of 2 grid points) after trials of 10
    minutes each: the next look is estimated at the measured trial time."""
    spec = load_spec("sequential_rollingq")
    spec.sequential["hours"] = hours
    trained = 2 * spec.sequential["looks"][look]
    pd.DataFrame({"time_total_s": [600.0] * trained}).to_csv(tmp_path / "trials.csv")
    got = sequential._budget(spec, tmp_path, entry(undecided), [{}] * look)
    assert got["trial_hours"] == pytest.approx(trained / 6)
    if look < 2:
        more = spec.sequential["looks"][look + 1] - spec.sequential["looks"][look]
        assert got["next_look_hours"] == pytest.approx(2 * more / 6)
    assert got["stop"] == stop
    assert sequential._budget(spec, tmp_path, entry(0, 0), [])["stop"] == (
        "no claim testable at the first look")


# ----------------------------------------------------------------------------- on real Ray


@pytest.mark.integration
def test_a_sequential_study_runs_two_looks_and_resumes_after_a_sigkill(tmp_path):
    """Look 1 (seeds 0, 1) judged and recorded; the driver SIGKILLed before look 2 is; the resume
    trains seed 2 only and judges look 2 once; a further resume has nothing to run."""
    spec = write_spec(tmp_path, "tiny_seq", TINY)
    storage, log = tmp_path / "out", tmp_path / "driver.log"
    study = storage / "tiny_seq" / "s"
    driver = start_cli(["study/run.py", "--space", str(spec), "--storage", str(storage),
                        "--name", "s"], log)
    deadline = time.monotonic() + 240
    while not (study / looks.LOOKS).is_file():
        assert driver.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.05)
    driver.kill()
    driver.wait(timeout=30)
    kill_processes(session_processes(driver.pid))
    first = (study / looks.LOOKS).read_text()
    assert [e["look"] for e in json.loads(first)] == [1]
    assert json.loads(first)[0]["seeds"] == [0, 1]

    r = run_cli("--space", str(spec), "--storage", str(storage), "--resume", str(study))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    recorded = looks.read(study)
    assert [e["look"] for e in recorded] == [1, 2]  # each look once
    assert (study / looks.LOOKS).read_text().startswith(first.removesuffix("\n]\n"))
    assert recorded[1]["seeds"] == [0, 1, 2]
    assert recorded[1]["stop"] in ("seed budget", "all decided")
    assert "look 2 of 2: 3 seeds" in r.stdout
    trials = pd.read_csv(study / "trials.csv")
    assert sorted(trials["train.seed"]) == [0, 0, 1, 1, 2, 2] and trials["trial_id"].is_unique
    assert json.loads((study / "experiments.json").read_text()) == [
        {"ray": "ray", "seeds": [0, 1]}, {"ray": "ray-2", "seeds": [2]}]
    for k in (1, 2):
        assert "## Sequential design" in (study / "looks" / str(k) / "report.md").read_text()
    report = (study / "report.md").read_text()
    assert "The study stopped after look 2 (3 seeds per data set" in report
    assert "no error guarantee: rereading" not in report  # not a grown fixed study

    r = run_cli("--space", str(spec), "--storage", str(storage), "--resume", str(study))
    assert r.returncode == 0 and "nothing to run" in r.stdout, r.stdout[-2000:]
    assert looks.read(study) == recorded

"""The report as data (``analysis.report.sections``): each section's numbers on studies whose
outcome the test knows, the sections present in their order, a failing section recorded in
place. The words these numbers are printed in: ``test_report_words.py``."""

from __future__ import annotations

import math

import pytest

from analysis import plots
from analysis.report import sections
from analysis.report.blocks import Figure, render_markdown

ORDER = ["provenance", "trials", "main_table", "claims", "sensitivity", "figures", "paper",
         "artifacts"]


def figures(section) -> list[str]:
    return [b.path.stem for b in section.blocks if isinstance(b, Figure)]


@pytest.fixture(scope="module")
def paper_sections(paper_studies, tmp_path_factory):
    return sections(paper_studies, out=tmp_path_factory.mktemp("paper_sections")).by_key()


def test_a_partial_study_counts_what_it_excludes(planted_sections):
    planted_sections = planted_sections.by_key()
    trials = planted_sections["trials"].data
    assert list(planted_sections) == ORDER
    assert [s.key for s in planted_sections.values() if s.error] == []
    assert (trials["finished"], trials["total"], trials["no_metric"]) == (78, 81, 0)
    assert trials["excluded"] == {"diverged": 1, "stopped": 0, "errored": 1, "incomplete": 1}
    assert trials["counts"].to_dict("records") == [
        {"study": "20260101-000000", "finished": 78, "diverged": 1, "stopped": 0, "errored": 1,
         "incomplete": 1, "retried": 1, "trials": 81, "expected": 81}]
    errored = trials["excluded_trials"].set_index("trial_id").loc["abcde_00000"]
    assert [str(errored[c]) for c in ("dataset", "variant", "seed", "status", "epochs")] \
        == ["synthetic", "0 / 0.5 / 1", "0", "errored", "2"]
    assert errored["error"] == "RuntimeError: CUDA error: out of memory"
    assert "beta_rho" in figures(planted_sections["figures"])


def test_an_interrupted_study_has_no_results_sections(interrupted_sections):
    got = interrupted_sections.by_key()
    assert list(got) == ["provenance", "trials", "results", "artifacts"]
    trials = got["trials"].data
    assert (trials["finished"], trials["total"]) == (0, 2)
    assert trials["excluded"]["incomplete"] == 2
    assert got["results"].summary == ["There is nothing to analyse yet."]


def test_a_real_smoke_study_with_one_seed(smoke_sections):
    got = smoke_sections.by_key()
    table = got["main_table"].data["table"].set_index("variant")
    off, on = table.loc["False"], table.loc["True"]
    assert (off["n"], off["baseline"], off["best"]) == (1, True, False)
    assert (on["n"], on["baseline"], on["best"]) == (1, False, True)
    assert off["mean"] == pytest.approx(94.5, abs=5e-3)
    assert on["mean"] == pytest.approx(95.0, abs=5e-3)
    assert off["paper_mean"] == pytest.approx(94.5, abs=5e-3)
    assert on["paper_mean"] == pytest.approx(95.0, abs=5e-3)
    assert on["delta"] == pytest.approx(0.5, abs=5e-3) and math.isnan(on["delta_low"])
    assert math.isnan(off["sd"]) and math.isnan(on["low"])  # one seed: no sd, no interval
    notes = got["sensitivity"].data["fits"]["acc"].notes
    assert any("no residual degrees of freedom" in n for n in notes)
    assert "air" in figures(got["figures"])
    assert [s.key for s in got.values() if s.error] == []


def test_an_optuna_study_has_importance_and_no_anova(optuna_sections):
    got = optuna_sections.by_key()
    (imp,) = got["sensitivity"].data["importance"]
    assert imp.evaluator.startswith("PED-ANOVA (optuna.importance.PedAnovaImportanceEvaluator")
    assert (imp.stopped, imp.other_excluded) == (6, 1)
    assert next(iter(imp.values)) == "rollingq.beta"
    assert "fits" not in got["sensitivity"].data  # the sampler was adaptive: no p-values
    assert got["trials"].data["excluded"]["stopped"] == 6
    assert {"importance", "history"} <= set(figures(got["sensitivity"]))


def test_a_failing_section_is_recorded_and_the_rest_still_built(ablation, tmp_path,
                                                                monkeypatch):
    def broken(res):
        raise RuntimeError("boom")

    monkeypatch.setattr(plots, "air_curves", broken)
    ctx = sections([ablation], out=tmp_path)
    got = ctx.by_key()
    assert [(k, str(s.error)) for k, s in got.items() if s.error] == [("figures", "boom")]
    assert list(got) == ORDER
    md = render_markdown(ctx.blocks(), ctx.out)
    assert "This section could not be generated (RuntimeError: boom)." in md
    assert "## Comparison with the paper" in md and "## Artifacts" in md


def test_the_paper_comparison_tables(paper_sections):
    data = paper_sections["paper"].data
    t1 = data["table1"].set_index(["data set", "rollingq.enabled / model.fusion_layers"])
    assert t1.loc[("cremad", "True / 1"), "paper's row"] == "Vanilla MT + RollingQ"
    assert t1.loc[("cremad", "True / 1"), "paper (%, 1 seed, best test epoch)"] == "51.9"
    assert t1.loc[("kinetics_sounds", "False / 2"), "paper's row"] == "Vanilla MT*"
    assert t1.loc[("kinetics_sounds", "False / 2"), "paper (%, 1 seed, best test epoch)"] \
        == "69.1"
    t3 = data["table3"].set_index("source")
    assert list(t3.loc["paper: Vanilla MT"]) == ["67.0", "62.7", "52.9", "43.2", "34.7"]
    assert "ours: True / 1" in t3.index
    # Table 2 in claim 4's sign: the planted pooled r 0.5 reads -r -0.50 and |r| 0.50; the
    # planted per-modality r -0.2 reads -r 0.20
    t2 = data["table2"].set_index(["data set", "rollingq.enabled / model.fusion_layers"])
    row = t2.loc[("cremad", "False / 1")]
    assert (row["paper's row"], row["paper r"]) == ("Vanilla MT", "0.52")
    assert (row["ours, pooled −r"], row["ours, pooled |r|"]) == ("-0.50 ± 0.00", "0.50 ± 0.00")
    assert row["ours, −r per modality (claim 4)"] == "0.20 ± 0.00"
    fit = paper_sections["sensitivity"].data["fits"]["acc"]
    assert fit.blocked and fit.formula.endswith("+ seed within data set (block)")
    assert list(fit.anova["term"])[-2:] == ["seed within data set (block)", "Residual"]
    assert any(n.startswith("The data set enters as a fixed factor") and "(HC3)" in n
               for n in fit.notes)


def test_the_ablation_main_table_and_models(ablation_sections):
    """The rotation ablation: vanilla once (the rotation kind does nothing at 0 rotations), the
    factorial fitted on the RollingQ trials, the vanilla arm through contrasts."""
    got = ablation_sections.by_key()
    table = got["main_table"].data["table"]
    base = table[table["baseline"]].iloc[0]
    assert (base["rollingq.max_rotations"], base["rollingq.rotation"], base["n"]) == ("0", "NA", 3)
    assert base["sd"] > 0 and base["low"] < base["mean"] < base["high"]
    fit = got["sensitivity"].data["fits"]["acc"]
    assert fit.formula == ("test_acc_at_best_val ~ rollingq.max_rotations + rollingq.rotation + "
                           "rollingq.max_rotations × rollingq.rotation + seed (block)")
    anova = fit.anova.set_index("term")
    assert anova.loc["rollingq.max_rotations × rollingq.rotation", "df"] == 1
    every = fit.vanilla[fit.vanilla["contrast"] == "RollingQ (every cell) − vanilla"].iloc[0]
    assert (every["dataset"], every["cells"], every["n"], every["n_vanilla"]) \
        == ("synthetic", 4, 12, 3)
    assert every["delta"] > 0  # the planted +2 points of any rotation
    tests = got["sensitivity"].data["tests"].set_index(["metric", "term"])
    assert tests.loc[("acc", "synthetic: RollingQ (every cell) − vanilla"), "q"] < 0.001
    assert any(s.startswith("ANOVA of the headline accuracy: RollingQ vs vanilla on synthetic (+")
               for s in got["sensitivity"].summary)
    assert got["paper"].data == {}  # synthetic: not one of the paper's data sets
    assert not len(fit.tukey)  # two levels a factor: the F test is the pairwise test

"""The report's words: every caption and methodology paragraph comes from
``analysis/report/text.md`` (each text used, each one asked for present, each call filling in
exactly the text's fields), and golden texts keep the wording of the lines readers quote. The
numbers behind them: ``test_report_sections.py``."""

from __future__ import annotations

import ast
import string
from pathlib import Path

import pytest

from analysis.report import captions
from analysis.report.blocks import render_markdown

REPORT = Path(captions.__file__).parent


def asked_for() -> dict[str, set[frozenset[str]]]:
    """Each text id the report's code asks for, with the field names of each call."""
    out: dict[str, set[frozenset[str]]] = {}
    for path in REPORT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id == "text" and node.args):
                continue
            key = node.args[0]
            keys = [key.body, key.orelse] if isinstance(key, ast.IfExp) else [key]
            fields = frozenset(k.arg for k in node.keywords)
            for k in keys:
                assert isinstance(k, ast.Constant), f"{path}: a text id must be a literal"
                out.setdefault(k.value, set()).add(fields)
    return out


def fields(template: str) -> frozenset[str]:
    return frozenset(name for _, name, _, _ in string.Formatter().parse(template) if name)


def test_every_text_is_used_and_every_call_fills_in_its_fields():
    texts, used = captions.texts(), asked_for()
    assert len(texts) >= 60
    assert sorted(set(used) - set(texts)) == []  # asked for, not written
    assert sorted(set(texts) - set(used)) == []  # written, never printed
    wrong = {key: (sorted(fields(texts[key])), [sorted(c) for c in calls])
             for key, calls in used.items() if any(c != fields(texts[key]) for c in calls)}
    assert wrong == {}


def test_a_text_is_one_paragraph_and_a_wrong_id_or_field_is_an_error():
    method = captions.text("claims.method", family="dataset", family_text="the claims",
                           ucl=80.0)
    assert "\n" not in method and "  " not in method
    assert "(`claims.family: dataset`: the claims)" in method
    assert "at its 80 % upper confidence limit" in method
    with pytest.raises(KeyError, match="no text 'claims.lost_trials' in text.md"):
        captions.text("claims.lost_trials")
    with pytest.raises(KeyError, match="ucl"):
        captions.text("claims.method", family="dataset", family_text="the claims")


def markdown(ctx) -> str:
    return render_markdown(ctx.blocks(), ctx.out)


def test_golden_trials_lines_of_a_partial_study(planted_sections):
    md = markdown(planted_sections)
    assert "The statistics use the 78 finished experiments of 81; excluded: 1 diverged, " \
           "1 errored, 1 incomplete." in md
    assert "| 20260101-000000 | 78 | 1 | 0 | 1 | 1 | 1 | 81 | 81 |" in md
    assert "| abcde_00000 | synthetic | 0 / 0.5 / 1 | 0 | errored | 2 | RuntimeError: CUDA " \
           "error: out of memory |" in md
    assert "figures/beta_rho.png" in md and "could not be generated" not in md
    assert "*Trials by status (retried: trials restarted after a failure).*" in md


def test_golden_an_interrupted_study(interrupted_sections):
    md = markdown(interrupted_sections)
    assert "There is nothing to analyse: none of the 2 trials finished" in md
    assert "No trial of 2 has finished (2 incomplete)." in md
    assert "## Main table" not in md and "## Provenance" in md


def test_golden_main_table_of_a_real_smoke_study(smoke_sections):
    md = markdown(smoke_sections)
    assert "| False | 1 | 94.50 | - | - | - | baseline | 94.50 |" in md  # one seed: no group
    assert "| True | 1 | **95.00** | - | - | - | +0.50 (no interval: one seed) | 95.00 |" in md
    assert ("*Per data set × variant (rollingq.enabled); mean ± sd over seeds (n seeds), 95 % "
            "t-interval, the difference to the baseline `False` with its 95 % interval "
            "(paired by seed where the seeds match, else Welch). Which variants are best") in md
    assert "the bold marks the highest mean alone.*" in md
    assert "no residual degrees of freedom" in md
    assert "figures/air.png" in md and "could not be generated" not in md


def test_golden_an_optuna_study(optuna_sections):
    md = markdown(optuna_sections)
    assert "evaluator PED-ANOVA (optuna.importance.PedAnovaImportanceEvaluator" in md
    assert "excluded: 6 stopped early by ASHA, 1 errored, diverged, timed out or incomplete" in md
    assert "The 6 trials stopped early by ASHA ran a shorter budget" in md
    assert "the most important parameter is `rollingq.beta`" in md
    assert "`optuna.journal` (study `hpo`) holds 47 complete" in md
    assert "figures/importance.png" in md and "figures/history.png" in md
    assert "No ANOVA and no p-values: the Optuna sampler chose each configuration" in md
    assert "| term | df |" not in md


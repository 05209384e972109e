"""A sequential study's looks judged on results files whose per-seed claim differences are
planted exactly (``analysis/looks.py``), and the report of such a study: its section "Sequential
design", and a claims section that leaves the verdicts to it."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from scipy import stats

from analysis import claims, looks
from analysis import declarations as declarations_
from analysis.report import captions, sections
from analysis.report.blocks import Para, Table
from analysis.results import load
from analysis.sequential import boundaries, nominal_p
from tests.analysis.test_verdict_engine import plant_claims

DESIGN = {"budget": 10, "looks": [3, 5, 10], "hours": None, "spending": "obrien_fleming"}


def planted(tmp_path, mean: float, spread: float):
    """A sequential study of 10 seeds whose six claims' differences are ``mean`` margins on the
    claimed side with ``spread`` margins of seed noise; its design.json declares ``DESIGN``."""
    z = np.random.default_rng(4).normal(0.0, 1.0, 10)
    diffs = {c.number: c.sign * declarations_.MARGINS[c.number] * (mean + spread * z)
             for c in claims.CLAIMS}
    folder = plant_claims(tmp_path, diffs)
    design = json.loads((folder / "design.json").read_text())
    (folder / "design.json").write_text(json.dumps({**design, "sequential": DESIGN}))
    return folder, diffs


def look_all(folder) -> list[dict]:
    """Each look judged on the seeds it had (the first 3, 5, 10) and appended."""
    res = load([folder])
    for n in DESIGN["looks"]:
        seen = dataclasses.replace(res, trials=res.trials[res.trials["train.seed"] < n])
        looks.append(folder, looks.judge(seen, DESIGN, looks.read(folder), list(range(n))))
    return looks.read(folder)


def test_a_planted_large_effect_is_decided_at_the_first_look_its_boundary_allows(tmp_path):
    """Six large effects: every claim is reproduced at the first look where scipy's t-test p
    reaches the nominal p of the boundary at α/6 (the first rejection's level, after which
    Holm's recycling only raises the others'), and is undecided before it."""
    folder, diffs = planted(tmp_path, mean=3.0, spread=0.3)
    got = look_all(folder)
    fractions = [n / DESIGN["budget"] for n in DESIGN["looks"]]
    c = boundaries(0.05 / 6, fractions)
    p = [min(stats.ttest_1samp(x[:n], 0.0).pvalue for x in diffs.values())
         for n in DESIGN["looks"]]
    first = next(k for k in range(3) if p[k] <= nominal_p(c[k]))
    assert first == 1  # O'Brien–Fleming: 3 seeds are not enough, 5 are
    for k, entry in enumerate(got):
        verdicts = {x["verdict"] for f in entry["families"] for x in f["claims"]}
        assert verdicts == ({claims.INCONCLUSIVE} if k < first else {claims.REPRODUCED})
        assert entry["undecided"] == (6 if k < first else 0)
    decided = got[first]["families"][0]["claims"]
    assert {x["decided_at"] for x in decided} == {first + 1}
    assert all(x["interval"][0] * np.sign(x["effect"]) > 0 for x in decided)  # excludes 0
    for x in decided:  # stopped early at a boundary: the naive mean overstates
        assert abs(x["median_unbiased"]) <= abs(x["effect"])


def test_a_sequential_studys_report_takes_its_verdicts_from_its_looks(tmp_path):
    """The section "Sequential design": the plan, the looks table (a row per claim and look),
    the verdicts at their looks; "What the study says" gives those verdicts, the claims section
    says so and prints no command that grows the study."""
    folder, _ = planted(tmp_path, mean=0.0, spread=3.0)  # nothing decided: runs to the budget
    got = look_all(folder)
    by = sections([folder], out=tmp_path / "report").by_key()
    section = by["sequential"]
    assert section.error is None
    assert section.data["looks_0"] == got
    said = [b.text for b in section.blocks if isinstance(b, Para)]
    assert said[0] == captions.text("sequential.plan", plan=looks.describe(DESIGN))
    tables = [b.frame for b in section.blocks if isinstance(b, Table)]
    assert len(tables[0]) == 6 * 3 and list(tables[0]["look"].unique()) == [1, 2, 3]
    assert set(tables[1]["verdict"]) == {claims.INCONCLUSIVE}
    assert section.summary == [f"Sequential design (`{folder}`): after look 3 of 3 (going on): "
                               + ", ".join(f"({n}) inconclusive" for n in range(1, 7)) + "."]
    claims_said = [b.text for b in by["claims"].blocks if isinstance(b, Para)]
    assert captions.text("claims.sequential", folder=folder) in claims_said
    assert not any("--resume" in p for p in claims_said)  # no grow command for it
    assert not any(line.startswith("The paper's claims") for line in by["claims"].summary)


def test_a_look_of_no_testable_claim_keeps_it_out_of_the_family(tmp_path):
    """A claim whose seeds all give one difference at the first look is outside the family
    for good, listed with its reason; the others are judged at α/5."""
    z = np.linspace(-1.0, 1.0, 10)
    diffs = {c.number: c.sign * declarations_.MARGINS[c.number] * (0.5 + z)
             for c in claims.CLAIMS}
    diffs[6] = np.full(10, 0.25)
    folder = plant_claims(tmp_path, diffs)
    entry = looks.judge(load([folder]), DESIGN, [], list(range(3)))
    assert [x["claim"] for x in entry["families"][0]["claims"]] == [1, 2, 3, 4, 5]
    assert entry["excluded"][0]["claim"] == 6
    assert entry["excluded"][0]["verdict"] == claims.DETERMINISTIC
    assert [x["level"] for x in entry["families"][0]["claims"]] == pytest.approx([0.01] * 5)

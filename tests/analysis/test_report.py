"""The report end to end: files written, sections and figures present, the main table's and the
ANOVA's rows, the paper comparison and the CLI. Each section's numbers:
``test_report_sections.py``; the words: ``test_report_words.py``; the import boundary:
``test_layering.py``."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from analysis.report import generate, main, write
from tests.analysis.studies import write_study

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parent / "data"
SECTIONS = ["## What the study says", "## Provenance", "## Trials", "## Main table",
            "## The paper's claims on this study", "## Sensitivity", "## Figures",
            "## Comparison with the paper", "## Artifacts"]


def cli(*args):
    return subprocess.run([sys.executable, "-m", "analysis.report", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def ablation_report(ablation_sections):
    return write(ablation_sections)


def test_report_files_sections_and_figures(ablation_report):
    out = ablation_report.parent
    md = (out / "report.md").read_text()
    assert [s for s in SECTIONS if s not in md] == []
    assert md.index("## Provenance") < md.index("## Main table") < md.index("## Sensitivity")
    assert "could not be generated" not in md
    figures = re.findall(r"!\[[^\]]*\]\((figures/[^)]+\.png)\)", md)
    assert figures == ["figures/claims_forest.png", "figures/air_convergence.png",
                       "figures/km_rollingq_max_rotations.png", "figures/km_rollingq_rotation.png",
                       "figures/air.png",
                       "figures/attention_shares.png", "figures/noise.png",
                       "figures/parallel_coordinates.png",
                       "figures/points_rollingq_max_rotations.png",
                       "figures/points_rollingq_rotation.png"]
    assert all((out / f).is_file() for f in figures)
    html = ablation_report.read_text()
    assert html.count('<img src="data:image/png;base64,') == len(figures)
    assert "figures/" not in html.split("<body>")[1].split("Artifacts")[0]  # self-contained
    assert html.count("<table>") >= 6


def test_report_main_table_and_anova_rows(ablation_report):
    """The wording of the main table's and the ANOVA's rows (their numbers:
    test_report_sections.py)."""
    md = ablation_report.with_suffix(".md").read_text()
    assert ("| rollingq.max_rotations | rollingq.rotation | n | test acc at best val (%) | "
            "group | P(rank 1) [rank 95%] | 95% CI | Δ vs baseline [95% CI] | "
            "best test epoch, paper-style (%) |") in md
    # vanilla once (the rotation kind does nothing at 0 rotations), the factorial on RollingQ
    assert re.search(r"\| 0 \| NA \| 3 \| (\*\*)?\d+\.\d\d ± \d\.\d\d(\*\*)? \| [a-e]+ \| "
                     r"0\.\d\d \[\d, \d\] "
                     r"\| \[.*\] \| baseline \|", md)
    assert ("| term | df | sum of squares | F | p | q (BH) | η² | partial η² | ω² | q < 0.05 |"
            in md)
    assert "`test_acc_at_best_val ~ rollingq.max_rotations + rollingq.rotation + " \
           "rollingq.max_rotations × rollingq.rotation + seed (block)`" in md
    assert "| rollingq.max_rotations × rollingq.rotation | 1 |" in md
    assert re.search(r"\| synthetic \| RollingQ \(every cell\) − vanilla \| 4 \| 12 / 3 \| "
                     r"\+\d\.\d+ \[", md)
    assert re.search(r"ANOVA of the headline accuracy: RollingQ vs vanilla on synthetic "
                     r"\(\+\d\.\d*; q < 0\.001\) significant at q < 0\.05 \(BH\)\.", md)
    assert "Tukey HSD" in md and "test_acc_at_best_val" in md and "paper-style" in md
    assert "is not one of the paper's" in md  # synthetic


def test_single_level_factor_sentence_in_report(tmp_path):
    search = {"rollingq.beta": {"role": "scientific", "type": "choice", "values": [0.0, 0.2]},
              "rollingq.rotation": {"role": "scientific", "type": "choice", "values": ["svd"]}}
    d = write_study(tmp_path, search=search, effect=lambda p: 0.6 + 0.1 * p["rollingq.beta"])
    md = generate([d]).with_suffix(".md").read_text()
    assert "`rollingq.rotation` has a single level (svd) among the finished trials, so it is " \
           "not a factor here and is skipped." in md
    assert "could not be generated" not in md


def test_paper_comparison_on_the_papers_data_sets(paper_report):
    md = paper_report.with_suffix(".md").read_text()
    assert "| data set | rollingq.enabled / model.fusion_layers | paper's row |" in md
    assert re.search(r"\| cremad \| True / 1 \| Vanilla MT \+ RollingQ \| 51\.9 \|", md)
    assert re.search(r"\| kinetics_sounds \| False / 2 \| Vanilla MT\* \| 69\.1 \|", md)
    assert "| paper: Vanilla MT | 67.0 | 62.7 | 52.9 | 43.2 | 34.7 |" in md  # Table 3
    assert re.search(r"\| ours: True / 1 \|", md)
    # Table 2 in claim 4's sign: the planted pooled r 0.5 reads -r -0.50 and |r| 0.50; the
    # planted per-modality r -0.2 reads -r 0.20
    assert re.search(r"\| cremad \| False / 1 \| Vanilla MT \| 0\.52 \| -0\.50 ± 0\.00 \| "
                     r"0\.50 ± 0\.00 \| 0\.20 ± 0\.00 \|", md)
    assert "| ours, −r per modality (claim 4) |" in md
    assert "single seed" in md  # the protocol difference is stated
    assert "The data set enters as a fixed factor, with each parameter's interaction with " \
           "it; the F tests use heteroscedasticity-robust (HC3) covariance" in md
    assert "seed within data set (block)" in md
    assert "| data set | rollingq.enabled | model.fusion_layers | n |" in md


@pytest.mark.integration
def test_cli_writes_the_report(tmp_path):
    p = cli(DATA / "smoke_finished", "--out", tmp_path / "out")
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "out" / "report.html").is_file() and "report:" in p.stdout


def test_cli_errors_exit_2_with_one_line(tmp_path, capsys):
    assert main([str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: results folder") and "does not exist" in err
    assert err.count("\n") == 1
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert "no trials.csv" in err and err.count("\n") == 1


def test_paper_rows_follow_fusion_rollingq_and_balance():
    from analysis.paper import PAPER_TABLE1, paper_name

    cases = [
        ({"model.fusion": "concat", "rollingq.enabled": False}, "Concat"),
        ({"model.fusion": "concat", "rollingq.enabled": False, "balance.method": "ogm_ge"}, "OGM"),
        ({"model.fusion": "concat", "rollingq.enabled": False, "balance.method": "pmr"}, "PMR"),
        # a balancing method on attention fusion, or with RollingQ, is no row of the paper's
        ({"model.fusion": "attn", "rollingq.enabled": True, "balance.method": "ogm_ge"}, None),
        ({"model.fusion": "attn", "rollingq.enabled": False, "balance.method": "pmr"}, None),
        ({"model.fusion": "audio", "rollingq.enabled": False}, "Audio only"),
        ({"model.fusion": "text", "rollingq.enabled": False}, "Text only"),
        ({"model.fusion": "attn", "rollingq.enabled": True, "balance.method": "none"},
         "Vanilla MT + RollingQ"),
        ({"model.fusion": "attn", "model.fusion_layers": 2, "rollingq.enabled": False},
         "Vanilla MT*"),
        ({"model.fusion": "mmml", "rollingq.enabled": False}, "MMML"),
        ({"model.fusion": "mmml", "model.readout": "attn", "rollingq.enabled": True},
         "MMML + RollingQ"),
        ({"model.fusion": "mmml", "model.readout": "attn", "rollingq.enabled": False}, None),
        ({"model.fusion": "jmt", "rollingq.enabled": False}, "JMT"),
        # Table 1's MBT has 2 bottleneck layers: a 1-layer MBT is not its row
        ({"model.fusion": "mbt", "model.fusion_layers": 2, "rollingq.enabled": False}, "MBT"),
        ({"model.fusion": "mbt", "model.fusion_layers": 1, "rollingq.enabled": False}, None),
        ({"model.fusion": "mult", "rollingq.enabled": False}, "MulT"),
        ({"model.fusion": "mult", "model.readout": "attn", "rollingq.enabled": True},
         "MulT + RollingQ"),
    ]
    for values, row in cases:
        assert paper_name(values) == row, values
    assert PAPER_TABLE1["cremad"]["OGM"] == 51.2 and PAPER_TABLE1["mosei"]["PMR"] == 63.0
    assert "Audio only" not in PAPER_TABLE1["mosei"]  # the paper's MOSEI setting is V+T


def test_a_space_with_named_variants_reports_each_variant_beside_its_paper_row(tmp_path):
    """paper_table1-style: the `variant` column is the factor, the baseline is the vanilla
    variant, and each variant's own config values pick its paper row."""
    variants = {
        "concat": {"model.fusion": "concat", "rollingq.enabled": False},
        "ogm": {"model.fusion": "concat", "rollingq.enabled": False, "balance.method": "ogm_ge"},
        "attn": {"model.fusion": "attn", "rollingq.enabled": False},
        "attn_rollingq": {"model.fusion": "attn", "rollingq.enabled": True},
    }
    means = {"concat": 0.50, "ogm": 0.52, "attn": 0.49, "attn_rollingq": 0.53}
    d = write_study(tmp_path, name="table1", search={}, variants=variants,
                    fixed={"data.name": "cremad"}, effect=lambda p: means[p["variant"]])
    md = generate([d], out=tmp_path / "out").with_suffix(".md").read_text()
    assert "the difference to the baseline `attn`" in md
    for name in variants:
        assert re.search(rf"\| {name} \| 3 \| ", md), name
    assert "could not be generated" not in md
    assert re.search(r"\| ogm \| OGM \| 51\.2 \|", md)
    assert re.search(r"\| attn_rollingq \| Vanilla MT \+ RollingQ \| 51\.9 \|", md)
    assert re.search(r"\| concat \| Concat \| 49\.3 \|", md)


def test_across_data_sets_is_descriptive_with_demsars_critical_difference(paper_report):
    """Two data sets × 3 seeds, 4 variants: the section says what 2 data sets can support, the
    critical difference is Demšar's (q_0.05 = 2.569 for 4 variants, 6 blocks), and its figures
    are written."""
    md = paper_report.with_suffix(".md").read_text()
    section = md.split("## Across data sets")[1].split("\n## ")[0]
    assert "descriptive and labelled so" in section and "do not generalise to others" in section
    cd = 2.569 * math.sqrt(4 * 5 / (6 * 6))
    assert f"CD = {cd:.2f} ranks" in section
    for name in ("critical_difference", "performance_profiles"):
        assert f"figures/{name}.png" in section
        assert (paper_report.parent / "figures" / f"{name}.png").is_file()
    assert "Across the 2 data sets (descriptive): highest IQM" in md.split("## Provenance")[0]

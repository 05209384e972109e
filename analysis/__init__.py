"""The analysis stage: a study's results folder -> tables, statistics, figures and a report.

Reads only the files the study driver writes (``trials.csv``, ``curves.csv``, ``design.json``,
``meta.json``, optionally ``optuna.journal`` and ``predictions/``); never imports Ray, torch,
the training core or the study driver, at import or at call time
(``tests/analysis/test_layering.py``), so any study can be re-reported without rerunning it.

    design.py        design.json: what the study was asked (searched keys, variants, seeds)
    migrate.py       folders of older drivers -> today's files, one step on load
    results.py       results folder(s) -> one typed in-memory record (factors, levels, baseline)
    outcomes.py      per-trial outcomes the claims are about (|AIR| growth, noise drop, ...)
    declarations.py  what a study declares about its claims: the Holm family, the margins
    claims.py        the paper's claims on the study: tests, Holm, verdicts (numbers only)
    power.py         the seeds a claim needs: power, and its range at the sd's upper limit
    per_sample.py    claim (6) from the test set's per-sample predictions; chance accuracy
    worst_case.py    the verdicts with the lost trials at their worst and their best
    architectures.py RollingQ per architecture: one on/off pair at a time
    stats.py         the shared statistics: Holm, t-intervals, paired/Welch differences, ALPHA
    tables.py        main table (mean ± sd, t-interval, Δ to baseline), noise table, provenance
    paper.py         the paper's Tables 1-3, which of its rows a configuration is, comparisons
    sensitivity.py   OLS + Type II ANOVA (η², partial η², ω²), EMMs, Tukey HSD, dose responses
    survival.py      censored times: Kaplan–Meier and the log-rank test
    family.py        the exploratory family: BH-FDR over every outcome's tests
    importance.py    an Optuna study's PED-ANOVA parameter importance
    pareto.py        the Pareto front of a multi-objective study
    plots.py         AIR and attention curves, noise curves, β × ρ heatmaps, point plots
    remote.py        study folders on s3:// and gs:// storage, read through pyarrow
    format.py        how the report writes p, q, intervals and numbers
    report/          report.md + self-contained report.html; ``python -m analysis.report DIR``:
                     blocks.py (the blocks and their Markdown and HTML renderers), context.py,
                     sections/ (one module a section, each ``build(ctx)``), claims_text.py
    export.py        the old name of ``python -m study.export`` (an alias for one release)
"""

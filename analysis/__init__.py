"""The analysis stage: a study's results folder -> tables, statistics, figures and a report.

Reads only the files the study driver writes (``trials.csv``, ``curves.csv``, ``space.yaml``,
``meta.json``, optionally ``optuna.journal``); never imports Ray, torch or the training core, so
any study can be re-reported without rerunning it.

    results.py      results folder(s) -> one typed in-memory record (factors, levels, baseline)
    tables.py       main table (mean ± sd, t-interval, Δ to baseline), noise table, provenance
    sensitivity.py  OLS + Type II ANOVA (η², partial η²), Tukey HSD, PED-ANOVA importance
    plots.py        AIR and attention curves, noise curves, β × ρ heatmaps, point plots
    report.py       report.md + self-contained report.html; ``python -m analysis.report DIR``
"""

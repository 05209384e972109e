"""Claim (6) from the test set's per-sample predictions (``predictions/<trial_id>.npz``), beside
the seed-level test: per on/off pair, each test sample's accuracy difference, a paired BCa
bootstrap over test samples and McNemar's test per seed; and a data set's chance accuracy."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar

from analysis.claims import frame
from analysis.results import SEED, Results
from analysis.stats import ALPHA, holm

BOOTSTRAP_RESAMPLES = 4999


def _predictions(res: Results, row: dict[str, Any]) -> tuple[np.ndarray, np.ndarray] | None:
    """A trial's saved test predictions as (labels, predicted), or None when it saved none."""
    name = row.get("predictions")
    if not isinstance(name, str) or not name:
        return None
    path = res.dirs[int(row["study"])] / name
    if not path.is_file():
        return None
    with np.load(path) as f:
        return np.asarray(f["label"]).ravel(), np.asarray(f["pred"]).ravel()


def _correct(res: Results, row: dict[str, Any]) -> tuple[np.ndarray, np.ndarray] | None:
    """A trial's saved test predictions as (labels, correct), or None when it has none or
    they disagree with its recorded headline accuracy."""
    saved = _predictions(res, row)
    if saved is None:
        return None
    label, pred = saved
    correct = pred == label
    if not len(label) or abs(100 * correct.mean() - float(row["acc"])) > 1e-3:
        return None
    return label, correct


def test_set(res: Results, alpha: float = ALPHA) -> pd.DataFrame:
    """Claim 6 (accuracy) from the test set's per-sample predictions, per data set: the same
    pairs as the seed-level test (on and off trials of one configuration and seed), each test
    sample's accuracy difference averaged as the claim averages (over configurations, then
    seeds), so its mean is the claim's effect; a paired bootstrap over test samples (scipy
    ``bootstrap``, BCa, 95 %) of that mean, and per pair McNemar's test (statsmodels
    ``mcnemar``: exact binomial under 25 discordant samples) with Holm over the data set's
    pairs. Given the trained models, this is the test set's sampling uncertainty only.

    Columns: ``dataset, pairs, samples, effect, low, high, mcnemar`` (per pair: seed, the
    discordant counts on-only / off-only correct, p, Holm p), ``significant`` (pairs with Holm
    p < alpha, by direction), ``reason`` (why a data set has no row's figures)."""
    df = frame(res)
    return pd.DataFrame([{"dataset": ds, **test_set_row(res, df[df["dataset"] == ds], alpha)}
                         for ds in res.datasets])


def test_set_row(res: Results, d: pd.DataFrame, alpha: float = ALPHA) -> dict[str, Any]:
    """``test_set``'s figures for the on and off trials ``d`` (a ``frame``) of one data set."""
    row: dict[str, Any] = {"pairs": 0, "samples": 0, "effect": np.nan, "low": np.nan,
                           "high": np.nan, "mcnemar": [], "significant": "", "reason": ""}
    cells: dict[tuple[str, Any], dict[bool, list[np.ndarray]]] = {}
    labels = None
    missing = 0
    for r in d.to_dict("records"):
        got = _correct(res, r)
        if got is None:
            missing += 1
            continue
        if labels is not None and not np.array_equal(labels, got[0]):
            row["reason"] = "the trials' test labels differ (not the same test set)"
            return row
        labels = got[0]
        cells.setdefault((r["context"], r[SEED]), {True: [], False: []})[
            bool(r["on"])].append(got[1])
    pairs = {k: v for k, v in cells.items() if v[True] and v[False]}
    if not pairs:
        row["reason"] = ("no RollingQ trial and vanilla trial of the same configuration and "
                         "seed both have saved predictions" + (
                             f" ({missing} trial(s) have none)" if missing else ""))
        return row
    per_seed: dict[Any, list[np.ndarray]] = {}
    tests = []
    for (_, seed), arm in pairs.items():
        on, off = np.mean(arm[True], axis=0), np.mean(arm[False], axis=0)
        per_seed.setdefault(seed, []).append(on - off)
        if len(arm[True]) == len(arm[False]) == 1:  # one model per arm: McNemar's table
            a, b = arm[True][0], arm[False][0]
            table = [[int((a & b).sum()), int((a & ~b).sum())],
                     [int((~a & b).sum()), int((~a & ~b).sum())]]
            discordant = table[0][1] + table[1][0]
            p = float(mcnemar(table, exact=discordant < 25, correction=True).pvalue)
            tests.append({"seed": seed, "on_only": table[0][1], "off_only": table[1][0],
                          "p": p})
    x = 100 * np.mean([np.mean(v, axis=0) for v in per_seed.values()], axis=0)
    row.update(pairs=len(pairs), samples=len(x), effect=float(x.mean()))
    if np.ptp(x) > 0:
        ci = stats.bootstrap((x,), np.mean, method="BCa", confidence_level=1 - alpha,
                             n_resamples=BOOTSTRAP_RESAMPLES,
                             rng=np.random.default_rng(0)).confidence_interval
        row.update(low=float(ci.low), high=float(ci.high))
    else:
        row.update(low=float(x.mean()), high=float(x.mean()))
    if tests:
        adjusted = holm([t["p"] for t in tests], alpha)
        for t, q in zip(tests, adjusted, strict=True):
            t["p_holm"] = float(q)
        better = sum(t["p_holm"] < alpha and t["on_only"] > t["off_only"] for t in tests)
        worse = sum(t["p_holm"] < alpha and t["on_only"] < t["off_only"] for t in tests)
        row["significant"] = (f"RollingQ better in {better}, worse in {worse} of "
                              f"{len(tests)} pairs")
    row["mcnemar"] = tests
    return row


def chance_accuracy(res: Results, dataset: str) -> float:
    """The accuracy (%) at chance on a data set's test set: the most frequent test label's
    share, from a trial's saved predictions; else 100 / the class count its study's design
    records; NaN when neither is known."""
    t = res.trials[(res.trials["dataset"] == dataset)]
    for row in t.to_dict("records"):
        saved = _predictions(res, row)
        if saved is not None and len(saved[0]):
            labels = saved[0].astype(int)
            return float(100 * np.bincount(labels).max() / len(labels))
    classes = next((d.classes[dataset] for d in res.designs if dataset in d.classes), None)
    return 100.0 / classes if classes else np.nan

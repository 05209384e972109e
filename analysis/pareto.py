"""The Pareto front of a multi-objective study (``tune.metric: [val_acc, val_abs_air]``).

Each objective is read where the sampler read it: the trial's final report, i.e. the metric at
its last epoch (``curves.csv``). Only finished trials count (a diverged trial has no values; an
errored or stopped one did not run its budget), and they are counted, not dropped silently.
Seeds are repeats, not configurations: trials that differ only in ``train.seed`` are one
configuration, placed at the mean of its seeds (with the sd and the seed count beside it), and
the front is a set of configurations. A configuration is on the front when no other is at
least as good in every objective and better in one (``non_dominated``; the test suite pins it
to Optuna's own ``Study.best_trials``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

SEED = "train.seed"


@dataclass
class Front:
    """Every finished configuration with its objectives (``points``; ``front`` True on the
    Pareto front), the objectives and their directions, and how many trials were left out."""

    points: pd.DataFrame
    objectives: list[str]
    modes: list[str]
    params: list[str]
    excluded: dict[str, int]

    @property
    def front(self) -> pd.DataFrame:
        return self.points[self.points["front"]].sort_values(self.objectives[0],
                                                            ascending=self.modes[0] == "min")


def objectives(tune: dict) -> tuple[list[str], list[str]] | None:
    """(metrics, modes) of a multi-objective spec's tune section, else None."""
    metric, mode = tune.get("metric"), tune.get("metric_mode")
    if not isinstance(metric, list):
        return None
    modes = mode if isinstance(mode, list) else [mode or "max"] * len(metric)
    return list(metric), list(modes)


def non_dominated(values: np.ndarray, modes: list[str]) -> np.ndarray:
    """Which rows of ``values`` (n x k) no other row dominates, the k objectives maximised or
    minimised as ``modes`` say. Equal rows do not dominate each other."""
    v = np.asarray(values, dtype=float) * np.array([1.0 if m == "min" else -1.0 for m in modes])
    keep = np.ones(len(v), dtype=bool)
    for i in range(len(v)):
        no_worse = (v <= v[i]).all(axis=1)
        better = (v < v[i]).any(axis=1)
        keep[i] = not (no_worse & better).any()
    return keep


def front(trials: pd.DataFrame, curves: pd.DataFrame, tune: dict,
          params: list[str]) -> Front | None:
    """The study's configurations and its Pareto front (None for a single-objective study)."""
    objs = objectives(tune)
    if objs is None:
        return None
    metrics, modes = objs
    status = trials["status"].astype(str)
    excluded = {s: int((status == s).sum()) for s in sorted(set(status)) if s != "finished"}
    done = trials[status == "finished"]
    last = (curves[curves["trial_id"].isin(done["trial_id"])].sort_values("epoch", kind="stable")
            .drop_duplicates("trial_id", keep="last").set_index("trial_id"))  # the last epoch
    rows = done[["trial_id", *[p for p in params if p in done], *(
        [SEED] if SEED in done else [])]].copy()
    for m in metrics:
        rows[m] = rows["trial_id"].map(last[m]) if m in last else np.nan
    missing = rows[metrics].isna().any(axis=1)
    if missing.any():
        excluded["finished without every objective"] = int(missing.sum())
    rows = rows[~missing]
    keys = [p for p in params if p in rows]
    if keys:
        # a parameter that does nothing in a trial (β with no rotation) is blank: "inactive"
        labels = {k: rows[k].map(lambda v: "inactive" if pd.isna(v) else f"{v:.4g}"
                                 if isinstance(v, float) else str(v)) for k in keys}
        grouped = rows.assign(**labels).groupby(keys, sort=False, dropna=False)
        points = grouped.agg(**{"trials": ("trial_id", lambda s: ", ".join(s)),
                                "seeds": ("trial_id", "size"),
                                **{m: (m, "mean") for m in metrics},
                                **{f"{m}_sd": (m, "std") for m in metrics}}).reset_index()
    else:
        points = rows.rename(columns={"trial_id": "trials"}).assign(seeds=1)
    points["front"] = non_dominated(points[metrics].to_numpy(), modes) if len(points) else []
    return Front(points, metrics, modes, keys, excluded)


def figure(f: Front):
    """The configurations on the first two objectives, the front drawn as a step line through
    its points (error bars: the seeds' sd where a configuration has several)."""
    from matplotlib.figure import Figure

    x, y = f.objectives[:2]
    fig = Figure(figsize=(5.6, 4.2), layout="constrained")
    ax = fig.subplots()
    rest, best = f.points[~f.points["front"]], f.points[f.points["front"]].sort_values(x)
    for part, style in ((rest, {"color": "0.6", "label": "dominated"}),
                        (best, {"color": "C3", "label": "Pareto front"})):
        if len(part):
            ax.errorbar(part[x], part[y], xerr=part.get(f"{x}_sd"), yerr=part.get(f"{y}_sd"),
                        fmt="o", ms=6, capsize=2, **style)
    if len(best) > 1:
        ax.step(best[x], best[y], where="post" if (f.modes[0] == "max") == (f.modes[1] == "max")
                else "pre", color="C3", lw=1, alpha=0.6)
    ax.set_xlabel(f"{x} ({'higher' if f.modes[0] == 'max' else 'lower'} is better)")
    ax.set_ylabel(f"{y} ({'higher' if f.modes[1] == 'max' else 'lower'} is better)")
    ax.legend(loc="best", frameon=True)
    return fig

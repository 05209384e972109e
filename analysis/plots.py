"""Figures of a study: each function takes the loaded results and returns a matplotlib Figure
(or None when the study has nothing to show), so tests can inspect axes and series directly.

    air_curves          AIR over epochs per variant, 95 % t-bands over seeds, rotation events ▼
    air_convergence     validation |AIR| over epochs, RollingQ on vs off, beta marked (claims)
    attention_shares    validation attention share per modality over epochs, per variant
    noise_curves        test accuracy vs noise level per variant, one panel per noised modality
    beta_rho_heatmaps   mean and seed sd of the headline over β × ρ
    convergence_km      Kaplan–Meier curves of the time to |AIR| <= β, a line per level
    claims_forest       each claim's effect per data set in margin units, simultaneous
                        interval, coloured by verdict
    factor_points       one factor's levels as a point plot with 95 % t-intervals
    importance_bars     PED-ANOVA importance of an Optuna study
    optimization_history the Optuna study's trials and running best

Every figure is faceted by data set when there are several (columns, or rows where the columns
are already modalities). Figures are built on ``matplotlib.figure.Figure`` without pyplot, so
nothing global is left open; ``save`` writes a PNG of exactly ``figsize × dpi`` pixels.
Bands and error bars are t-intervals over seeds, the same as in the tables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from analysis.importance import Importance
from analysis.outcomes import BETA, ON
from analysis.results import Results, level_str
from analysis.stats import t_interval
from analysis.survival import Survival
from analysis.tables import noise_long, noise_recipe

DPI = 100
PANEL = (4.6, 3.3)  # inches per panel
LEGEND_WIDTH = 2.6
HEADLINE_LABEL = "test_acc_at_best_val (%)"
MAX_SERIES = 10  # lines per panel before curves are grouped by one factor
PREFERRED_SERIES = ("rollingq.enabled", "rollingq.max_rotations", "rollingq.rotation",
                    "model.fusion_layers", "rollingq.beta", "rollingq.rho")
sns.set_theme(style="whitegrid", context="notebook", font_scale=0.85)


def save(fig: Figure, path: Path, dpi: int = DPI) -> Path:
    """Writes the figure as a PNG of ``figsize × dpi`` pixels and returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png")
    return path


def _figure(nrows: int, ncols: int, legend: int = 0) -> tuple[Figure, np.ndarray]:
    """A figure of panels; ``legend`` entries get a column on the right and enough height."""
    width = PANEL[0] * ncols + (LEGEND_WIDTH if legend else 0)
    height = max(PANEL[1] * nrows, 0.24 * legend + 0.9)
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def series(res: Results, df: pd.DataFrame) -> tuple[str, list[str], str]:
    """What one line of a curve plot is: ``(column, levels, legend title)``.

    A line per variant; with more than ``MAX_SERIES`` variants, a line per level of the most
    telling factor (the method switch, then the rotation count, ...), other factors pooled.
    """
    order = [v for v in res.variants if (df["variant"].astype(str) == v).any()]
    if len(order) <= MAX_SERIES or not res.factors:
        return "variant", order, res.variant_title
    keys = [f.key for f in res.factors if f.key in df and 2 <= df[f.key].nunique() <= MAX_SERIES]
    if not keys:
        return "variant", order, res.variant_title
    key = next((k for k in PREFERRED_SERIES if k in keys), keys[0])
    seen = set(df[key].map(level_str))
    levels = [lv for lv in res.factor(key).levels if lv in seen]
    return key, levels, f"{key} (other parameters pooled)"


def _palette(labels: list[str]) -> dict[str, Any]:
    colours = sns.color_palette("tab10" if len(labels) <= 10 else "husl", len(labels))
    return dict(zip(labels, colours, strict=True))


def _t_ci(values: Any) -> tuple[float, float]:
    """seaborn ``errorbar`` callable: the 95 % t-interval (the point itself when n < 2)."""
    mean, _, lo, hi, _ = t_interval(values)
    return (mean, mean) if np.isnan(lo) else (lo, hi)


def _bands(ax: Any, df: pd.DataFrame, x: str, y: str, hue: str, order: list[str],
           palette: dict[str, Any]) -> None:
    """One line per hue level (mean over seeds) with its 95 % t-band."""
    labels = df[hue].map(level_str)
    for level in order:
        d = df[labels == level]
        if not len(d):
            continue
        g = d.groupby(x)[y].apply(lambda s: pd.Series(t_interval(s)[:4],
                                                      index=["mean", "sd", "lo", "hi"]))
        g = g.unstack().sort_index()
        ax.plot(g.index, g["mean"], color=palette[level], label=level, lw=1.6)
        if g["lo"].notna().any():
            ax.fill_between(g.index, g["lo"], g["hi"], color=palette[level], alpha=0.18,
                            lw=0, label=f"_band {level}")


def _legend(fig: Figure, palette: dict[str, Any], title: str, extra: list[Any] = ()) -> None:
    handles = [Line2D([], [], color=c, lw=2, label=lv) for lv, c in palette.items()]
    handles += list(extra)
    fig.legend(handles=handles, loc="outside right upper", title=title, fontsize="small",
               title_fontsize="small", frameon=False)


def _finished_curves(res: Results, column: str) -> pd.DataFrame:
    c = res.curves
    if not len(c) or column not in c or "epoch" not in c:
        return pd.DataFrame()
    c = c[(c["trial_status"] == "finished") & c[column].notna()].copy()
    c["variant"] = c["variant"].astype(str)
    return c


def air_curves(res: Results) -> Figure | None:
    """AIR over epochs, a line per variant with its 95 % band; ▼ marks each rotation event."""
    c = _finished_curves(res, "air")
    if not len(c):
        return None
    datasets = [d for d in res.datasets if (c["dataset"] == d).any()]
    hue, order, title = series(res, c)
    palette = _palette(order)
    fig, axes = _figure(1, len(datasets), legend=len(order) + 2)
    for ax, ds in zip(axes[0], datasets, strict=True):
        d = c[c["dataset"] == ds]
        ax.axhline(0, color="0.6", lw=0.8, label="_zero")
        _bands(ax, d, "epoch", "air", hue, order, palette)
        if "rotated" in d:
            events = d[pd.to_numeric(d["rotated"], errors="coerce") > 0]
            for v, e in events.groupby(events[hue].map(level_str)):
                ax.scatter(e["epoch"], e["air"], marker="v", s=36, color=palette[v],
                           edgecolor="black", linewidth=0.5, zorder=3, label=f"_rotation {v}")
        ax.set_xlabel("epoch")
        ax.set_ylabel("air")
        ax.set_title(ds)
    marker = Line2D([], [], marker="v", color="0.3", ls="", markeredgecolor="black",
                    label="rotation event")
    _legend(fig, palette, title, [marker])
    return fig


def air_convergence(res: Results) -> Figure | None:
    """Validation |AIR| over epochs, vanilla trials against RollingQ trials, beta dashed: the
    claims' AIR growth and convergence, a column per data set. Each arm is averaged within a
    seed first (its configurations), then the 95 % t-band is over seeds (structural copies
    are not counted: ``Results.curves`` marks them)."""
    c = _finished_curves(res, "val_air")
    if not len(c):
        return None
    arm = res.trials.set_index(["study", "trial_id"])[ON]
    c["arm"] = ["RollingQ on" if arm.get(k, False) else "RollingQ off"
                for k in zip(c["study"], c["trial_id"], strict=True)]
    c["abs_air"] = pd.to_numeric(c["val_air"], errors="coerce").abs()
    # one value a seed and epoch (the arm's configurations averaged), then the band over seeds
    c = c.groupby(["dataset", "arm", "seed", "epoch"], as_index=False)["abs_air"].mean()
    datasets = [d for d in res.datasets if (c["dataset"] == d).any()]
    order = [a for a in ("RollingQ off", "RollingQ on") if (c["arm"] == a).any()]
    palette = _palette(order)
    fig, axes = _figure(1, len(datasets), legend=len(order) + 1)
    betas = res.trials.groupby("dataset")[BETA].median()
    for ax, ds in zip(axes[0], datasets, strict=True):
        _bands(ax, c[c["dataset"] == ds], "epoch", "abs_air", "arm", order, palette)
        beta = betas.get(ds, np.nan)
        if np.isfinite(beta):
            ax.axhline(beta, color="0.3", ls="--", lw=0.9, label="_beta")
        ax.set_xlabel("epoch")
        ax.set_ylabel("|AIR| (validation)")
        ax.set_title(ds)
    extra = [Line2D([], [], color="0.3", ls="--", label="β (median)")]
    _legend(fig, palette, "arm", extra)
    return fig


def attention_shares(res: Results) -> Figure | None:
    """Validation attention share of each modality over epochs (rows: data sets)."""
    cols = sorted(c for c in res.curves.columns if c.startswith("val_share_"))
    if not cols:
        return None
    c = _finished_curves(res, cols[0])
    if not len(c):
        return None
    datasets = [d for d in res.datasets if (c["dataset"] == d).any()]
    hue, order, title = series(res, c)
    palette = _palette(order)
    fig, axes = _figure(len(datasets), len(cols), legend=len(order) + 1)
    for r, ds in enumerate(datasets):
        d = c[c["dataset"] == ds]
        for k, col in enumerate(cols):
            ax = axes[r, k]
            _bands(ax, d.dropna(subset=[col]), "epoch", col, hue, order, palette)
            ax.set_xlabel("epoch")
            ax.set_ylabel(col)
            modality = col.removeprefix("val_share_")
            ax.set_title(modality if len(datasets) == 1 else f"{ds}: {modality}")
    _legend(fig, palette, title)
    return fig


def noise_curves(res: Results) -> Figure | None:
    """Test accuracy vs Gaussian noise level on one modality at a time (rows: data sets)."""
    long = noise_long(res)
    if not len(long):
        return None
    datasets = [d for d in res.datasets if (long["dataset"] == d).any()]
    modalities = sorted(long["modality"].unique())
    hue, order, title = series(res, long)
    palette = _palette(order)
    fig, axes = _figure(len(datasets), len(modalities), legend=len(order) + 1)
    recipe = noise_recipe(res)
    for r, ds in enumerate(datasets):
        for k, m in enumerate(modalities):
            ax = axes[r, k]
            d = long[(long["dataset"] == ds) & (long["modality"] == m)]
            _bands(ax, d, "level", "acc", hue, order, palette)
            for line in ax.get_lines():
                line.set_marker("o")
                line.set_markersize(3.5)
            ax.set_xlabel(f"noise level λ on {m} ({recipe})")
            ax.set_ylabel("test accuracy (%)")
            ax.set_title(f"noise on {m}" if len(datasets) == 1 else f"{ds}: noise on {m}")
    _legend(fig, palette, title)
    return fig


def beta_rho_heatmaps(res: Results, beta: str = "rollingq.beta",
                      rho: str = "rollingq.rho") -> Figure | None:
    """Mean and seed sd of the headline over β × ρ, averaged over the other factors."""
    fb, fr = res.factor(beta), res.factor(rho)
    if fb is None or fr is None:
        return None
    df = res.frame()
    if not len(df) or not all(2 <= df[k].nunique() <= MAX_SERIES for k in (beta, rho)):
        return None  # one level, or a continuous Optuna range: no grid to show
    datasets = [d for d in res.datasets if (df["dataset"] == d).any()]
    fig, axes = _figure(len(datasets), 2)
    for r, ds in enumerate(datasets):
        d = df[df["dataset"] == ds]
        mean = d.pivot_table(index=beta, columns=rho, values="acc", aggfunc="mean",
                             observed=True)
        # sd over seeds within each variant, pooled over the other factors (root mean variance)
        var_cell = d.groupby(["variant", beta, rho], observed=True)["acc"].var(ddof=1)
        sd = np.sqrt(var_cell.groupby(level=[1, 2], observed=True).mean()).unstack(rho)
        for k, (table, what, cmap) in enumerate(((mean, "mean", "viridis"),
                                                 (sd, "seed sd", "magma_r"))):
            ax = axes[r, k]
            table = table.reindex(index=[lv for lv in fb.levels if lv in table.index],
                                  columns=[lv for lv in fr.levels if lv in table.columns])
            sns.heatmap(table.astype(float), annot=True, fmt=".2f", cmap=cmap, ax=ax,
                        cbar_kws={"label": f"{what} (%)"})
            ax.set_xlabel(rho)
            ax.set_ylabel(beta)
            name = f"{what} of {HEADLINE_LABEL}"
            ax.set_title(name if len(datasets) == 1 else f"{ds}: {name}")
    fig.suptitle(f"{beta} × {rho} (other factors averaged)")
    return fig


def factor_points(res: Results, key: str, hue: str | None = None) -> Figure | None:
    """The headline per level of ``key`` with 95 % t-intervals; one series per ``hue`` level."""
    f = res.factor(key)
    df = res.frame()
    if f is None or not len(df) or df[key].nunique() < 2:
        return None
    datasets = [d for d in res.datasets if (df["dataset"] == d).any()]
    order = [lv for lv in f.levels if (df[key] == lv).any()]
    hue_order = None
    palette = None
    if hue is not None:
        hue_order = [lv for lv in res.factor(hue).levels if (df[hue] == lv).any()]
        palette = _palette(hue_order)
    fig, axes = _figure(1, len(datasets), legend=len(hue_order) + 1 if hue_order else 0)
    for ax, ds in zip(axes[0], datasets, strict=True):
        d = df[df["dataset"] == ds].copy()
        d[key] = d[key].astype(str)
        if hue is not None:
            d[hue] = d[hue].astype(str)
        sns.pointplot(data=d, x=key, y="acc", hue=hue, order=order, hue_order=hue_order,
                      palette=palette, errorbar=_t_ci, dodge=0.3 if hue else False,
                      capsize=0.08, linewidth=1.4, markersize=5, ax=ax, legend=False,
                      color=None if hue else "C0")
        ax.set_xlabel(key)
        ax.set_ylabel(HEADLINE_LABEL)
        ax.set_title(ds)
    if palette is not None:
        _legend(fig, palette, hue)
    return fig


def importance_bars(importances: list[Importance]) -> Figure | None:
    """PED-ANOVA importance per data set, most important on top."""
    if not importances:
        return None
    fig, axes = _figure(1, len(importances))
    for ax, imp in zip(axes[0], importances, strict=True):
        names = list(imp.values)[::-1]
        ax.barh(names, [imp.values[n] for n in names], color="C0")
        ax.set_xlabel("importance (PED-ANOVA)")
        ax.set_ylabel("parameter")
        ax.set_title(imp.dataset)
    return fig


def optimization_history(res: Results) -> Figure | None:
    """Validation accuracy of each finished trial in order, with the running best."""
    df = res.finished
    if not len(df):
        return None
    datasets = [d for d in res.datasets if (df["dataset"] == d).any()]
    fig, axes = _figure(1, len(datasets))
    for ax, ds in zip(axes[0], datasets, strict=True):
        d = df[df["dataset"] == ds].sort_values(["study", "trial_id"])
        x = np.arange(1, len(d) + 1)
        ax.scatter(x, d["acc_val"], s=14, color="C0", label="trial")
        ax.plot(x, d["acc_val"].cummax(), color="C3", lw=1.6, label="running best")
        ax.set_xlabel("finished trial (in trial-id order)")
        ax.set_ylabel("best_val_acc (%)")
        ax.set_title(ds)
        ax.legend(loc="lower right", fontsize="small")
    return fig


def convergence_km(surv: Survival, key: str) -> Figure | None:
    """Kaplan–Meier estimate of "|AIR| still above β" against epochs since the first rotation,
    a step line per level of ``key`` (censored trials keep a line above 0)."""
    if not len(surv.levels):
        return None
    rows = surv.levels[surv.levels["factor"] == key]
    if len(rows) < 2:
        return None
    palette = _palette([str(lv) for lv in rows["level"]])
    fig, axes = _figure(1, 1, legend=len(rows) + 1)
    ax = axes[0, 0]
    for r in rows.to_dict("records"):
        times = [0.0, *r["times"]]
        probs = [1.0, *r["survival"]]
        end = max(times[-1], 1.0)
        ax.step([*times, end + 1], [*probs, probs[-1]], where="post",
                color=palette[str(r["level"])], lw=1.6, label=str(r["level"]))
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("epochs since the first rotation")
    ax.set_ylabel("share with |AIR| still above β")
    ax.set_title("time to |AIR| <= β (Kaplan–Meier)")
    _legend(fig, palette, key)
    return fig


VERDICT_COLOURS = {"reproduced": "#1a9641", "contradicted": "#d7191c", "no effect": "#2b83ba",
                   "inconclusive": "#7f7f7f", "cannot judge": "#bdbdbd"}


def claims_forest(judgements: list[Any]) -> Figure | None:
    """The claims at a glance: per claim and data set the effect and its interval at its Holm
    level (the one the verdict reads) divided by the claim's equivalence margin and multiplied
    by its claimed sign (the claimed direction to the right, the margin at ±1), coloured by
    verdict."""
    rows = [j for j in judgements if j.n and not np.isnan(j.margin) and j.margin > 0]
    if not rows:
        return None
    fig, axes = _figure(1, 1, legend=len(VERDICT_COLOURS))
    fig.set_figheight(max(2.2, 0.32 * len(rows) + 1.0))
    ax = axes[0, 0]
    labels = []
    for i, j in enumerate(reversed(rows)):
        scale = j.claim.sign / j.margin
        lo, hi = sorted((j.holm_low * scale, j.holm_high * scale)) if not np.isnan(
            j.holm_low) else (np.nan, np.nan)
        colour = VERDICT_COLOURS.get(j.verdict, "#7f7f7f")
        if not np.isnan(lo):
            ax.plot([lo, hi], [i, i], color=colour, lw=2)
        ax.plot(j.effect * scale, i, "o", color=colour, ms=6)
        labels.append(f"({j.claim.number}) {j.dataset}")
    ax.axvline(0, color="black", lw=1)
    for edge in (-1, 1):
        ax.axvline(edge, color="black", lw=1, ls="--")
    ax.set_yticks(range(len(rows)), labels)
    ax.set_xlabel("effect / margin (claimed direction →)")
    ax.set_title("the paper's claims: intervals at the Holm level")
    _legend(fig, dict(VERDICT_COLOURS), "verdict")
    return fig


def sequential_paths(looks: list[dict[str, Any]]) -> Figure | None:
    """A sequential study's difference tests look by look (``analysis.looks``): per claim its
    statistic as a z against the ± boundaries of the level it was tested at, the look it was
    decided at ringed (a ``no effect`` is decided by the equivalence test, in the table)."""
    rows: dict[str, list[tuple[int, float, float, str, int | None]]] = {}
    for entry in looks:
        for family in entry["families"]:
            for c in family["claims"]:
                rows.setdefault(f"({c['claim']}) {c['dataset']}", []).append(
                    (len(entry["seeds"]), c["z"], c["boundary"], c["verdict"], c["decided_at"]))
    if not rows:
        return None
    cols = min(3, len(rows))
    fig, axes = _figure(-(-len(rows) // cols), cols, legend=len(VERDICT_COLOURS))
    for ax, (label, path) in zip(axes.flat, rows.items(), strict=False):
        n = [r[0] for r in path]
        bound = [r[2] if np.isfinite(r[2]) else np.nan for r in path]
        ax.plot(n, bound, "k--", lw=1)
        ax.plot(n, [-b for b in bound], "k--", lw=1)
        ax.axhline(0, color="grey", lw=0.5)
        ax.plot(n, [r[1] for r in path], "-", color="#555555", lw=1)
        for k, (seeds, z, _, verdict, decided) in enumerate(path):
            ax.plot(seeds, z, "o", color=VERDICT_COLOURS.get(verdict, "#7f7f7f"), ms=6,
                    mec="black" if decided == k + 1 else "none")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("seeds")
        ax.set_ylabel("z (t-test p as a z)")
    for ax in list(axes.flat)[len(rows):]:
        ax.set_visible(False)
    _legend(fig, dict(VERDICT_COLOURS), "verdict")
    return fig


def cd_diagram(average: pd.Series, cd: float, bars: list[list[str]]) -> Figure | None:
    """A critical-difference diagram (Demšar 2006): each variant at its average rank (1, the
    best, on the left), the critical difference drawn above, and a bar under each run of
    variants whose ranks lie within it."""
    if len(average) < 2:
        return None
    order = average.sort_values()
    fig, axes = _figure(1, 1)
    fig.set_size_inches(max(6.0, 0.55 * len(order) + 2), 3.2 + 0.18 * len(bars))
    ax = axes[0, 0]
    k = len(order)
    ax.set_xlim(0.5, k + 0.5)
    ax.scatter(order.to_numpy(), np.zeros(k), color="black", zorder=3)
    for i, (name, r) in enumerate(order.items()):  # staggered, so equal ranks stay readable
        ax.annotate(name, (r, 0), xytext=(0, 10 + 16 * (i % 4)), textcoords="offset points",
                    rotation=45, ha="left", va="bottom", fontsize=8,
                    arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "grey"})
    ax.plot([1, 1 + cd], [1.6, 1.6], color="black", lw=2)
    ax.annotate(f"CD = {cd:.2f}", (1 + cd / 2, 1.6), xytext=(0, 4), textcoords="offset points",
                ha="center", va="bottom", fontsize=8)
    for j, run in enumerate(bars):
        y = -0.25 - 0.18 * j
        ax.plot([order[run[0]] - 0.05, order[run[-1]] + 0.05], [y, y], color="#d7191c", lw=3)
    ax.set_ylim(-0.45 - 0.18 * len(bars), 2.0)
    ax.set_yticks([])
    ax.set_xlabel("average rank over data set × seed blocks (1 = highest accuracy)")
    return fig


def performance_profiles(scores: dict[str, np.ndarray]) -> Figure | None:
    """Each variant's performance profile: the share of its runs (every data set and seed) whose
    chance-normalised score exceeds τ."""
    from analysis.ranking import profile

    if not scores:
        return None
    fig, axes = _figure(1, 1, legend=len(scores))
    ax = axes[0, 0]
    taus = np.linspace(0.0, 1.0, 201)
    palette = _palette(list(scores))
    for name, x in scores.items():
        ax.plot(taus, profile(x, taus), color=palette[name], lw=1.5)
    ax.set_xlabel("τ (chance-normalised accuracy)")
    ax.set_ylabel("share of runs with score > τ")
    _legend(fig, palette, "variant")
    return fig


def parallel_coordinates(res: Results) -> Figure | None:
    """Every configuration (its searched values, seeds averaged) as a line across one axis per
    searched key, coloured by its mean headline accuracy; a panel per data set. A key's levels
    sit evenly spaced in their order (numbers by value: a log scale where they span a factor of
    100 or more), an Optuna range's drawn values by value."""
    factors = [f for f in [*res.factors, *res.nuisance] if f.key in res.finished]
    if len(factors) < 2 or not len(res.finished):
        return None
    df = res.finished
    positions = {f.key: _axis_positions(f, df[f.key]) for f in factors}
    lines = df.groupby([df["dataset"], *(df[f.key].map(level_str) for f in factors)],
                       sort=False)["acc"].mean().reset_index()
    cmap = sns.color_palette("viridis", as_cmap=True)
    low, high = float(lines["acc"].min()), float(lines["acc"].max())
    fig, axes = _figure(1, len(res.datasets))
    fig.set_figwidth(max(6.0, 1.6 * len(factors)) * len(res.datasets) + 1.0)
    for ax, ds in zip(axes.flat, res.datasets, strict=False):
        for row in lines[lines["dataset"] == ds].itertuples(index=False):
            ys = [positions[f.key].get(v, np.nan) for f, v in zip(factors, row[1:-1],
                                                                    strict=True)]
            shade = 0.5 if high == low else (row[-1] - low) / (high - low)
            ax.plot(range(len(factors)), ys, color=cmap(shade), alpha=0.8, lw=1.2)
        for i, f in enumerate(factors):
            ax.axvline(i, color="black", lw=0.8)
            for level, y in positions[f.key].items():
                if len(positions[f.key]) <= 12 or y in (0.0, 1.0):
                    ax.annotate(level, (i, y), xytext=(3, 0), textcoords="offset points",
                                fontsize=7, va="center")
        ax.set_xticks(range(len(factors)), [f.key for f in factors], rotation=20, ha="right")
        ax.set_yticks([])
        ax.set_title(ds, fontsize=9)
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    fig.colorbar(ScalarMappable(Normalize(low, high), cmap), ax=list(axes.flat),
                 label="test acc at best val (%), mean over seeds")
    return fig


def _axis_positions(factor: Any, values: pd.Series) -> dict[str, float]:
    """A key's level strings -> their place on its axis in [0, 1]."""
    seen = [lv for lv in dict.fromkeys(values.map(level_str)) if lv != "NA"]
    levels = [lv for lv in factor.levels if lv in seen] + [lv for lv in seen
                                                          if lv not in factor.levels]
    try:
        numbers = {lv: float(lv) for lv in levels}
    except ValueError:
        numbers = None
    if numbers is None or len(numbers) < 2:
        return {lv: (k / (len(levels) - 1) if len(levels) > 1 else 0.5)
                for k, lv in enumerate(levels)}
    x = np.array(list(numbers.values()))
    if x.min() > 0 and x.max() / x.min() >= 100:
        x = np.log10(x)
    span = x.max() - x.min()
    return {lv: (float(v - x.min()) / span if span else 0.5) for lv, v in zip(numbers, x,
                                                                              strict=True)}

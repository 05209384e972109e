"""Tables of a study: provenance, trial counts, the main table, noise robustness, the paper's.

Every accuracy is in percent. The headline is the test accuracy at the best validation epoch
(``test_acc_at_best_val``); the paper-style number (``best_test_acc``: the best test epoch, i.e.
model selection on the test set, as the paper reports it) is shown beside it, labelled.

Intervals are 95 % t-intervals over seeds: ``mean ± t(.975, n-1) · sd / √n``. A variant's
difference to the baseline is paired by seed when both have at least two seeds in common
(the seeds are the same data order and initialisation), else Welch's interval.

The paper's numbers and the tables beside them: ``analysis/paper.py``; the shared statistics
(Holm, intervals): ``analysis/stats.py``. The tables as a report's reader sees them:
docs/report.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from analysis import ranking
from analysis.format import bracket, mean_sd
from analysis.outcomes import NOISE_COLUMN
from analysis.results import SEED, VARIANT, Results, level_str, shown_statuses
from analysis.stats import difference, t_interval

TOP_CONFIGS = 10  # rows of the main table of an Optuna study



# -- counts and provenance -------------------------------------------------------------------

def status_counts(res: Results) -> pd.DataFrame:
    """Trials by status per results folder (and in total when there are several)."""
    rows = []
    shown = shown_statuses(res.trials)
    for i, d in enumerate(res.dirs):
        t = res.trials[res.trials["study"] == i]
        meta = res.metas[i]
        row: dict[str, Any] = {"study": d.name if len(res.dirs) == 1 else f"{i}: {d.name}"}
        row.update({s: int((t["status"] == s).sum()) for s in shown})
        retries = pd.to_numeric(t.get("retries", pd.Series(dtype=float)), errors="coerce")
        row["retried"] = int((retries > 0).sum())
        row["trials"] = len(t)
        row["expected"] = meta.get("expected_trials", "?")
        rows.append(row)
    out = pd.DataFrame(rows)
    if len(rows) > 1:
        total = {c: out[c].sum() for c in [*shown, "retried", "trials"]}
        expected = out["expected"]
        total["expected"] = expected.sum() if all(isinstance(e, int) for e in expected) else "?"
        out = pd.concat([out, pd.DataFrame([{"study": "total", **total}])], ignore_index=True)
    return out


def excluded_trials(res: Results, limit: int = 30) -> pd.DataFrame:
    """The trials the statistics leave out, with their status and error line (structural copies
    are listed by ``duplicate_trials``)."""
    t = res.trials
    t = t[~t.index.isin(res.finished.index) & (t["duplicate_of"] == "")]
    cols = ["trial_id", "dataset", "variant", SEED, "status", "epochs", "error"]
    out = t[[c for c in cols if c in t]].head(limit).copy()
    out["variant"] = out["variant"].astype(str)
    if "epochs" in out:
        out["epochs"] = out["epochs"].map(lambda v: level_str(v))
    out["error"] = out["error"].map(lambda e: e if len(e) <= 160 else e[:157] + "...")
    return out.rename(columns={SEED: "seed"})


def duplicate_trials(res: Results) -> pd.DataFrame:
    """The structural copies: each trial, the trial that stands for its experiment, the data
    set, variant and seed."""
    d = res.duplicates.copy()
    d["variant"] = d["variant"].astype(str)
    return d.drop(columns="study").rename(columns={"duplicate_of": "copy of", SEED: "seed"})


def realised_rotations(res: Results, cap: str = "rollingq.max_rotations") -> pd.DataFrame:
    """Per data set and rotation cap: the trials and the rotations that fired (mean, min,
    max), from ``out_rotations``; empty when the cap is not a factor."""
    d = res.finished
    if cap not in d or "out_rotations" not in d:
        return pd.DataFrame()
    rows = []
    for (ds, lv), g in d.groupby(["dataset", cap], observed=True, sort=False):
        fired = pd.to_numeric(g["out_rotations"], errors="coerce").dropna()
        rows.append({"data set": ds, "cap": str(lv), "trials": len(g),
                     "rotations fired (mean)": f"{fired.mean():.2f}" if len(fired) else "",
                     "min": f"{fired.min():.0f}" if len(fired) else "",
                     "max": f"{fired.max():.0f}" if len(fired) else "",
                     "trials below the cap": int((fired < pd.to_numeric(lv, errors="coerce"))
                                                 .sum()) if str(lv) != "NA" else 0})
    return pd.DataFrame(rows)


def provenance(res: Results, i: int) -> list[tuple[str, str]]:
    """(field, value) rows describing how one results folder was produced."""
    design, meta = res.designs[i], res.metas[i]
    git = meta.get("git") or {}
    commit = git.get("commit") or "unknown"
    if git.get("patch"):
        commit += (f" with uncommitted changes: {git['patch']} ({git.get('patch_bytes', '?')} "
                   f"bytes, sha256 {str(git.get('patch_sha256', '?'))[:12]}, "
                   + ("applies to the commit" if git.get("patch_applies") else
                      "does NOT apply to the commit (git apply --check)") + ")")
    elif git.get("dirty"):
        commit += " (uncommitted changes, not recorded)"
    versions = ", ".join(f"{k} {v}" for k, v in (meta.get("versions") or {}).items())
    cluster = meta.get("cluster") or {}
    resources = {k: v for k, v in (cluster.get("resources") or {}).items() if "_group_" not in k
                 and not k.startswith("bundle_group")}
    hardware = ", ".join(f"{k} {level_str(v)}" for k, v in resources.items())
    metric = ([m for m, _ in design.objectives] if len(design.objectives) > 1
              else design.objectives[0][0])
    tuning = [f"mode {design.mode}", f"metric {metric}", f"scheduler {design.scheduler}",
              f"num_samples {design.num_samples}"]
    rows = [
        ("folder", str(res.dirs[i])),
        ("space", str(meta.get("space") or design.space)),
        ("question", str(design.question or meta.get("question") or "-")),
        ("source", str(meta.get("source") or "-")),
        ("command", str(meta.get("command") or "-")),
        ("git commit", commit),
        ("versions", versions or "-"),
        ("installed", f"{len(meta['distributions'])} distributions (meta.json: distributions)"
         if meta.get("distributions") else "not recorded"),
        ("platform", str(meta.get("platform") or "-")),
        ("hardware", f"{cluster.get('nodes', '?')} node(s); {hardware or '-'}"),
        ("devices", devices_line(meta.get("devices"))),
        ("deterministic algorithms", str(meta.get("deterministic") or "not recorded")),
        ("data fingerprint", data_line(meta.get("data"))),
        ("tuning", ", ".join(tuning)),
        ("seeds", ", ".join(str(s) for s in design.seeds)),
        ("data set", ", ".join(dict.fromkeys(res.trials.loc[res.trials["study"] == i,
                                                             "dataset"]))),
        ("started / finished", f"{meta.get('started', '?')} / {meta.get('finished', '?')}"
                               + (" (resumed)" if meta.get("resumed") else "")),
        ("hours", _hours(meta)),
    ]
    return rows


def devices_line(devices: list[dict[str, Any]] | None) -> str:
    """The devices the trials trained on, as one phrase."""
    if not devices:
        return "not recorded"
    parts = []
    for d in devices:
        if d.get("device") == "cuda":
            what = (f"{d.get('gpu', 'GPU')} ({d.get('gpu_gib', '?')} GiB), driver "
                    f"{d.get('driver') or '?'}, CUDA {d.get('cuda') or '?'}, cuDNN "
                    f"{d.get('cudnn') or '?'}")
        else:
            what = str(d.get("device", "?"))
        parts.append(f"{d.get('trials', '?')} trial(s) on {what}"
                     + (f" at {d['host']}" if d.get("host") else ""))
    return "; ".join(parts)


def data_line(data: list[dict[str, Any]] | None) -> str:
    """Each data setting's fingerprint, as one phrase (its cache entry or its files' hashes)."""
    if not data:
        return "not recorded"
    parts = []
    for d in data:
        if d.get("cache_key"):
            what = f"cache entry {d['cache_key']}"
            if d.get("lists"):
                what += ", lists " + ", ".join(f"{s} sha256 {v['sha256'][:12]}"
                                               for s, v in d["lists"].items())
        elif d.get("files"):
            what = ", ".join(f"{s}.npz sha256 {v['sha256'][:12]}" for s, v in d["files"].items())
        else:
            what = f"generator settings key {d.get('key', '?')}"
        parts.append(f"{d.get('dataset', '?')}: {what}")
    return "; ".join(parts)


def _hours(meta: dict[str, Any]) -> str:
    parts = []
    for key, name in (("wall_hours", "wall"), ("trial_hours", "trial"), ("gpu_hours", "GPU")):
        if meta.get(key) is not None:
            parts.append(f"{name} {float(meta[key]):.3f} h")
    return ", ".join(parts) or "-"


# -- the main table --------------------------------------------------------------------------

def main_table(res: Results) -> pd.DataFrame:
    """Per data set × variant: n, mean, sd, t-interval, Δ to the baseline, paper-style, best.

    Grid studies have one row per variant (the combination of scientific levels). With
    nuisance factors, each variant keeps the nuisance setting with the best mean validation
    accuracy (the setting is in column ``setting``). Optuna studies list their top
    configurations by mean validation accuracy instead; they have no baseline.

    A grid's variants on a data set are also compared with each other (``analysis.ranking``):
    P(rank 1) and the rank's 95 % interval, the letters of the compact letter display, and
    ``top``, the group not separable from the highest mean (with fewer than two seeds common to
    the variants there is no test: no letters, and ``top`` is the highest mean alone).

    Returns:
        Numeric columns ``dataset, variant, <factor keys>, n, seeds, mean, sd, low, high,
        delta, delta_low, delta_high, delta_method, paper_mean, paper_sd, val_mean, setting,
        baseline, best, p_rank1, rank_low, rank_high, letters, top``.
    """
    df = res.finished
    if not len(df):
        return pd.DataFrame()
    if res.mode == "optuna":
        return _optuna_table(res, df)
    rows, wides = [], {}
    for ds in res.datasets:
        d = df[df["dataset"] == ds]
        cells: dict[str, pd.DataFrame] = {}
        settings: dict[str, str] = {}
        for v in res.variants:
            cell = d[d["variant"] == v]
            if not len(cell):
                continue
            cell, settings[v] = _best_nuisance(res, cell)
            cells[v] = cell.set_index(SEED)
        if not cells:
            continue
        base = res.baseline if res.baseline in cells else next(iter(cells))
        wides[ds] = pd.DataFrame({v: c["acc"].groupby(level=0).mean() for v, c in cells.items()})
        for v, cell in cells.items():
            mean, sd, lo, hi, n = t_interval(cell["acc"])
            pm, psd, *_, pn = t_interval(cell["acc_paper"])
            delta = difference(cell["acc"], cells[base]["acc"]) if v != base else (
                np.nan, np.nan, np.nan, "")
            levels = v.split(" / ") if res.factors else []
            rows.append({
                "dataset": ds, "variant": v,
                **{f.key: lv for f, lv in zip(res.factors, levels, strict=True)},
                "n": n, "seeds": ",".join(level_str(s) for s in cell.index),
                "mean": mean, "sd": sd, "low": lo, "high": hi,
                "delta": delta[0], "delta_low": delta[1], "delta_high": delta[2],
                "delta_method": delta[3], "paper_mean": pm, "paper_sd": psd, "paper_n": pn,
                "val_mean": cell["acc_val"].mean(), "setting": settings[v],
                "baseline": v == base,
            })
    out = pd.DataFrame(rows)
    out["best"] = out["mean"] == out.groupby("dataset")["mean"].transform("max")
    return _ranked(out, wides)


def _ranked(out: pd.DataFrame, wides: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The main table with each data set's variants compared (``main_table``'s docstring);
    ``wides``: each data set's seeds × variants headline."""
    out = out.assign(p_rank1=np.nan, rank_low=np.nan, rank_high=np.nan, letters="",
                     top=out["best"])
    for ds, rows in out.groupby("dataset", sort=False):
        wide = wides[ds]
        if len(rows) < 2 or len(wide.dropna()) < 2:
            continue
        ranks = ranking.ranks(wide).set_index("variant")
        pairs = ranking.pairwise(wide)
        order = list(ranks.index)
        letters = ranking.letters(order, ranking.separated(pairs))
        group = set(ranking.top_group(wide.mean(), pairs))
        for i, r in rows.iterrows():
            out.loc[i, ["p_rank1", "rank_low", "rank_high"]] = ranks.loc[
                r["variant"], ["p_rank1", "rank_low", "rank_high"]].to_numpy(dtype=float)
            out.loc[i, "letters"] = letters[r["variant"]]
            out.loc[i, "top"] = r["variant"] in group
    return out


def per_seed(res: Results, df: pd.DataFrame, ds: str, variant: str) -> pd.Series:
    """A variant's headline per seed on a data set (its chosen nuisance setting's trials)."""
    cell = df[(df["dataset"] == ds) & (df["variant"] == variant)]
    cell, _ = _best_nuisance(res, cell)
    return cell.groupby(SEED)["acc"].mean()


def _best_nuisance(res: Results, cell: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    if not res.nuisance:
        return cell, ""
    keys = [f.key for f in res.nuisance]
    key = cell[keys].map(level_str).apply(tuple, axis=1)
    best = cell.groupby(key)["acc_val"].mean().idxmax()
    chosen = cell[key == best]
    return chosen, ", ".join(f"{k}={v}" for k, v in zip(keys, best, strict=True))


def _optuna_table(res: Results, df: pd.DataFrame) -> pd.DataFrame:
    keys = [f.key for f in res.factors + res.nuisance]
    rows = []
    for ds in res.datasets:
        d = df[df["dataset"] == ds]
        if not len(d):
            continue
        config = (d[keys].map(level_str).apply(lambda r: " / ".join(r), axis=1) if keys
                  else pd.Series("all", index=d.index))
        block = []
        for label, cell in d.groupby(config, sort=False):
            mean, sd, lo, hi, n = t_interval(cell["acc"])
            pm, psd, *_, pn = t_interval(cell["acc_paper"])
            block.append({
                "dataset": ds, "variant": label,
                **{k: level_str(cell[k].iloc[0]) for k in keys},
                "n": n, "seeds": ",".join(level_str(s) for s in cell[SEED]),
                "mean": mean, "sd": sd, "low": lo, "high": hi, "delta": np.nan,
                "delta_low": np.nan, "delta_high": np.nan, "delta_method": "",
                "paper_mean": pm, "paper_sd": psd, "paper_n": pn,
                "val_mean": cell["acc_val"].mean(), "setting": "", "baseline": False,
            })
        block.sort(key=lambda r: -r["val_mean"])
        rows += block[:TOP_CONFIGS]
    out = pd.DataFrame(rows)
    out["best"] = out["val_mean"] == out.groupby("dataset")["val_mean"].transform("max")
    return out.assign(top=out["best"])


def format_main(table: pd.DataFrame, res: Results) -> pd.DataFrame:
    """The main table as strings for the report; per data set the group not separable from
    the best mean in bold (an Optuna study: the best by validation accuracy)."""
    keys = [f.key for f in res.factors] + ([f.key for f in res.nuisance]
                                           if res.mode == "optuna" else [])
    rows = []
    for r in table.to_dict("records"):
        head = mean_sd(r["mean"], r["sd"])
        if r["top"]:
            head = f"**{head}**"
        if r["baseline"]:
            delta = "baseline"
        elif pd.isna(r["delta"]):
            delta = "-"
        elif pd.isna(r["delta_low"]):
            delta = f"{r['delta']:+.2f} (no interval: one seed)"
        else:
            ci = bracket(r["delta_low"], r["delta_high"])
            delta = f"{r['delta']:+.2f} {ci} ({r['delta_method']})"
        row = {"data set": r["dataset"]} if len(res.datasets) > 1 else {}
        row.update({k: r.get(k, "") for k in keys} if keys else {"variant": r["variant"]})
        if res.nuisance and res.mode != "optuna":
            row["nuisance setting (best val)"] = r["setting"]
        row.update({
            "n": str(r["n"]),
            "test acc at best val (%)": head,
            **({} if res.mode == "optuna" else {
                "group": r["letters"] or "-",
                "P(rank 1) [rank 95%]": "-" if pd.isna(r["p_rank1"]) else
                f"{r['p_rank1']:.2f} [{r['rank_low']:g}, {r['rank_high']:g}]"}),
            "95% CI": bracket(r["low"], r["high"]),
            "Δ vs baseline [95% CI]": delta,
            "best test epoch, paper-style (%)": mean_sd(r["paper_mean"], r["paper_sd"]),
        })
        if res.mode == "optuna":
            row["val acc (%)"] = f"{r['val_mean']:.2f}"
        rows.append(row)
    return pd.DataFrame(rows)


# -- noise robustness ------------------------------------------------------------------------

def noise_long(res: Results) -> pd.DataFrame:
    """Accuracy under noise, one row a finished trial × noised modality × level (percent),
    with the trial's data set, variant, seed and factor levels."""
    df = res.finished
    cols = {c: NOISE_COLUMN.match(c) for c in df.columns}
    cols = {c: m for c, m in cols.items() if m}
    if not cols or not len(df):
        return pd.DataFrame(columns=["dataset", "variant", SEED, "modality", "level", "acc"])
    keys = [f.key for f in res.factors if f.key in df and f.key != VARIANT]
    long = df.melt(id_vars=["dataset", "variant", SEED, *keys], value_vars=list(cols),
                   var_name="column", value_name="value")
    long["modality"] = long["column"].map(lambda c: cols[c]["modality"])
    long["level"] = long["column"].map(lambda c: float(cols[c]["level"]))
    long["acc"] = pd.to_numeric(long.pop("value"), errors="coerce") * res.scale
    long["variant"] = long["variant"].astype(str)
    return long.dropna(subset=["acc"]).drop(columns="column")


def noise_recipe(res: Results) -> str:
    """The noise recipe(s) the trials used, as one phrase."""
    if "noise_recipe" not in res.finished:
        return "unknown"
    recipes = [str(r) for r in res.finished["noise_recipe"].dropna().unique()]
    return ", ".join(recipes) or "unknown"


def noise_table(res: Results) -> pd.DataFrame:
    """The paper's Table 3 layout: a row per data set × variant × noised modality, a column a
    noise level, cells ``mean ± sd`` over seeds (percent)."""
    long = noise_long(res)
    if not len(long):
        return pd.DataFrame()
    levels = sorted(long["level"].unique())
    rows = []
    order = {v: i for i, v in enumerate(res.variants)}
    groups = long.groupby(["dataset", "variant", "modality"], sort=False)
    for (ds, v, m), g in sorted(groups, key=lambda kv: (res.datasets.index(kv[0][0]),
                                                        order.get(kv[0][1], 0), kv[0][2])):
        row = {"data set": ds} if len(res.datasets) > 1 else {}
        row.update({res.variant_title: v, "noised modality": m})
        for lv in levels:
            mean, sd, *_ = t_interval(g.loc[g["level"] == lv, "acc"])
            row[f"λ={level_str(lv)}"] = mean_sd(mean, sd, 1)
        rows.append(row)
    return pd.DataFrame(rows)


# -- the paper -------------------------------------------------------------------------------

def attention_protocol(res: Results) -> str:
    """How the trials measured Table 2, as one phrase (older folders: the pooled variant only,
    at the settings of the time)."""
    d = res.finished
    if "attn_noise_recipe" not in d:
        return ("each test sample noised on one modality chosen at random (mixing, λ = 1); the "
                "pooled r only (a folder written before the protocol was recorded)")
    parts = []
    for key in ("recipe", "level", "split", "draws", "evaluations"):
        values = [level_str(v) for v in d[f"attn_noise_{key}"].dropna().unique()]
        parts.append(f"{key} {', '.join(values) or 'unknown'}")
    return ("each sample of the split evaluated clean and with each modality noised; "
            + "; ".join(parts))


def attention_noise_table(res: Results) -> pd.DataFrame:
    """Table 2 per data set × variant × modality: the point-biserial r between the modality's
    attention share and "it is noised" (clean vs noised evaluations of the same samples), the
    mean share shift (noised − clean, share units), and the pooled r, each ``mean ± sd`` over
    seeds."""
    d = res.finished
    mods = sorted({c.removeprefix("attn_noise_r_") for c in d.columns
                   if c.startswith("attn_noise_r_")})
    if not mods or not len(d):
        return pd.DataFrame()
    rows = []
    order = {v: i for i, v in enumerate(res.variants)}
    groups = d.groupby(["dataset", "variant"], sort=False, observed=True)
    for (ds, v), g in sorted(groups, key=lambda kv: (res.datasets.index(kv[0][0]),
                                                     order.get(str(kv[0][1]), 0))):
        pooled = t_interval(pd.to_numeric(g.get("attn_noise_pooled_r", pd.Series(dtype=float)),
                                          errors="coerce"))
        for m in mods:
            r = t_interval(pd.to_numeric(g[f"attn_noise_r_{m}"], errors="coerce"))
            shift = t_interval(pd.to_numeric(g[f"attn_noise_shift_{m}"], errors="coerce"))
            if r[4] == 0:
                continue
            row = {"data set": ds} if len(res.datasets) > 1 else {}
            row.update({res.variant_title: str(v), "noised modality": m,
                        "r (clean vs noised)": mean_sd(r[0], r[1]),
                        "share shift": mean_sd(shift[0], shift[1], 3),
                        "pooled r": mean_sd(pooled[0], pooled[1]), "n": str(r[4])})
            rows.append(row)
    return pd.DataFrame(rows)



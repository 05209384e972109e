"""The paper's numbers (Tables 1-3), how its protocol differs from ours, which of its rows a
configuration is (``paper_name``), and the tables that set a study beside them."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from analysis.format import mean_sd
from analysis.results import VARIANT, Results, level_str
from analysis.stats import prediction_interval, t_interval
from analysis.tables import noise_long

# The paper's Table 1: top-1 accuracy (%), the best test epoch of one seed.
PAPER_TABLE1: dict[str, dict[str, float]] = {
    "cremad": {"Audio only": 47.6, "Visual only": 36.3, "Concat": 49.3, "OGM": 51.2,
               "PMR": 50.1, "Vanilla MT": 48.8, "Vanilla MT*": 51.5, "MBT": 51.5, "JMT": 50.7,
               "MMML": 52.0,
               "Vanilla MT + RollingQ": 51.9, "Vanilla MT* + RollingQ": 52.2,
               "MMML + RollingQ": 52.7},
    "kinetics_sounds": {"Audio only": 53.9, "Visual only": 57.0, "Concat": 68.0, "OGM": 68.2,
                        "PMR": 68.2, "Vanilla MT": 67.0, "Vanilla MT*": 69.1, "MBT": 72.2,
                        "JMT": 67.7, "MMML": 69.8, "Vanilla MT + RollingQ": 69.3,
                        "Vanilla MT* + RollingQ": 70.1, "MMML + RollingQ": 70.7},
    "mosei": {"Visual only": 47.1, "Text only": 60.9, "Concat": 62.8, "OGM": 62.7, "PMR": 63.0,
              "Vanilla MT": 62.7, "Vanilla MT*": 62.2, "MulT": 62.4, "MBT": 63.0, "JMT": 62.6,
              "MMML": 62.8, "Vanilla MT + RollingQ": 63.2, "Vanilla MT* + RollingQ": 62.9,
              "MulT + RollingQ": 62.5, "MMML + RollingQ": 63.2},
}
# Table 2: Pearson r between attention share and "input is noise" (vanilla, RollingQ).
PAPER_TABLE2: dict[str, tuple[float, float]] = {"cremad": (0.52, 0.76),
                                                "kinetics_sounds": (0.44, 0.78)}
# Table 3: Kinetics-Sounds, Gaussian noise on the audio modality at test time (recipe unpublished).
PAPER_TABLE3_LEVELS = (0.0, 0.25, 0.5, 0.75, 1.0)
PAPER_TABLE3: dict[str, tuple[float, ...]] = {
    "Vanilla MT": (67.0, 62.7, 52.9, 43.2, 34.7),
    "Vanilla MT + RollingQ": (69.3, 67.2, 58.2, 47.5, 40.6),
}


def paper_name(values: dict[str, Any]) -> str | None:
    """The paper's Table 1 row a configuration corresponds to (``Vanilla MT + RollingQ``)."""
    fusion = str(values.get("model.fusion", "attn"))
    try:
        layers = int(float(values.get("model.fusion_layers", 1)))
    except (TypeError, ValueError):
        layers = 1
    enabled = level_str(values.get("rollingq.enabled", True)) == "True"
    rotates = level_str(values.get("rollingq.max_rotations", 1)) != "0"
    on = enabled and rotates
    balance = str(values.get("balance.method", "none"))
    if balance != "none":  # the paper runs OGM(-GE) and PMR on concat fusion only
        rows = {"ogm": "OGM", "ogm_ge": "OGM", "pmr": "PMR"}
        return rows.get(balance) if fusion == "concat" and not on else None
    if fusion in ("audio", "visual", "text"):
        return f"{fusion.capitalize()} only"
    if fusion == "concat":  # no attention: RollingQ does not apply
        return "Concat"
    if fusion == "mbt":  # Table 1's MBT has 2 bottleneck layers; another depth is not its row
        return None if on or layers != 2 else "MBT"
    if fusion == "jmt":
        return None if on else "JMT"
    if fusion in ("mmml", "mult"):  # "+ RollingQ": our reading, the attention read-out
        name = {"mmml": "MMML", "mult": "MulT"}[fusion]
        if str(values.get("model.readout", "own")) == "own":
            return None if on else name
        return f"{name} + RollingQ" if on else None
    if fusion != "attn" or layers not in (1, 2):
        return None
    name = "Vanilla MT" if layers == 1 else "Vanilla MT*"
    return f"{name} + RollingQ" if on else name


def variant_values(res: Results, study: int, variant: str) -> dict[str, Any]:
    """A variant's configuration: the folder's fixed values overridden by the variant's levels."""
    design = res.designs[study]
    values = dict(design.fixed)
    if res.factors:
        values.update(dict(zip([f.key for f in res.factors], variant.split(" / "), strict=True)))
    if VARIANT in values:  # a named variant: its own config values
        values.update(design.variants.get(values.pop(VARIANT), {}))
    return values


def paper_comparison(res: Results, table: pd.DataFrame) -> pd.DataFrame:
    """Our variants beside the paper's Table 1 row they correspond to, on the paper's data sets:
    the paper's single-seed number against the 95 % prediction interval of one seed of ours
    (paper-style: the best test epoch, as the paper selects): could one run of ours give it?"""
    rows = []
    if not len(table):
        return pd.DataFrame()
    for r in table.to_dict("records"):
        paper = PAPER_TABLE1.get(r["dataset"])
        if paper is None:
            continue
        study = int(res.trials.loc[res.trials["dataset"] == r["dataset"], "study"].iloc[0])
        name = paper_name(variant_values(res, study, r["variant"]))
        if name is None or name not in paper:
            continue
        low, high = prediction_interval(r["paper_mean"], r["paper_sd"],
                                        int(r.get("paper_n", r["n"])))
        inside = "-" if pd.isna(low) else ("yes" if low <= paper[name] <= high else "**no**")
        rows.append({
            "data set": r["dataset"], res.variant_title: r["variant"], "paper's row": name,
            "paper (%, 1 seed, best test epoch)": f"{paper[name]:.1f}",
            "ours, paper-style (%)": mean_sd(r["paper_mean"], r["paper_sd"]),
            "ours − paper": "-" if pd.isna(r["paper_mean"])
            else f"{r['paper_mean'] - paper[name]:+.1f}",
            "one seed of ours, paper-style [95% PI]": "-" if pd.isna(low)
            else f"[{low:.1f}, {high:.1f}]",
            "paper's number inside": inside,
            "ours, test at best val (%)": mean_sd(r["mean"], r["sd"]),
            "n": str(r["n"]),
        })
    return pd.DataFrame(rows)


def paper_noise_comparison(res: Results) -> pd.DataFrame:
    """Table 3 (Kinetics-Sounds, audio noise) beside ours at the same levels."""
    long = noise_long(res)
    long = long[(long["dataset"] == "kinetics_sounds") & (long["modality"] == "audio")]
    if not len(long):
        return pd.DataFrame()
    study = int(res.trials.loc[res.trials["dataset"] == "kinetics_sounds", "study"].iloc[0])
    rows = []
    for name, accs in PAPER_TABLE3.items():
        rows.append({"source": f"paper: {name}",
                     **{f"λ={level_str(lv)}": f"{a:.1f}" for lv, a in
                        zip(PAPER_TABLE3_LEVELS, accs, strict=True)}})
    for v, g in long.groupby("variant", sort=False):
        if paper_name(variant_values(res, study, v)) not in PAPER_TABLE3:
            continue
        row = {"source": f"ours: {v}"}
        for lv in PAPER_TABLE3_LEVELS:
            mean, sd, *_ = t_interval(g.loc[np.isclose(g["level"], lv), "acc"])
            row[f"λ={level_str(lv)}"] = mean_sd(mean, sd, 1)
        rows.append(row)
    return pd.DataFrame(rows)


def paper_attention_comparison(res: Results) -> pd.DataFrame:
    """Table 2 (attention share vs "input is noise" Pearson r, reported positive) beside ours in
    claim 4's sign, −r (> 0: attention moves away from the noised input), and |r| (the paper's
    reading of strength): the pooled variant (comparable with the paper's single number), and
    where recorded the per-modality −r averaged over the modalities (claim 4's quantity) and the
    favoured modality's own −r and share shift."""
    if "attn_noise_pooled_r" not in res.finished:
        return pd.DataFrame()
    rows = []
    for ds, (vanilla, rolling) in PAPER_TABLE2.items():
        d = res.finished[res.finished["dataset"] == ds]
        if not len(d):
            continue
        study = int(d["study"].iloc[0])
        for v, g in d.groupby("variant", sort=False, observed=True):
            name = paper_name(variant_values(res, study, str(v)))
            if name not in ("Vanilla MT", "Vanilla MT + RollingQ"):
                continue
            pooled = pd.to_numeric(g["attn_noise_pooled_r"], errors="coerce")
            row = {"data set": ds, res.variant_title: str(v), "paper's row": name,
                   "paper r": f"{vanilla if name == 'Vanilla MT' else rolling:.2f}",
                   "ours, pooled −r": mean_sd(*t_interval(-pooled)[:2]),
                   "ours, pooled |r|": mean_sd(*t_interval(pooled.abs())[:2])}
            if "out_adaptivity" in g and g["out_adaptivity"].notna().any():
                row["ours, −r per modality (claim 4)"] = mean_sd(
                    *t_interval(pd.to_numeric(g["out_adaptivity"], errors="coerce"))[:2])
            m = g["favoured"].dropna().iloc[0] if "favoured" in g and g["favoured"].notna().any() \
                else None
            if m is not None and f"attn_noise_r_{m}" in g:
                r = t_interval(-pd.to_numeric(g[f"attn_noise_r_{m}"], errors="coerce"))
                shift = t_interval(pd.to_numeric(g[f"attn_noise_shift_{m}"], errors="coerce"))
                row[f"ours, −r of {m}"] = mean_sd(r[0], r[1])
                row[f"ours, {m} share shift"] = mean_sd(shift[0], shift[1], 3)
            rows.append(row)
    return pd.DataFrame(rows)

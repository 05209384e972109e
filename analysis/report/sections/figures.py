"""The figures: AIR and attention over training, noise curves, heatmaps and point plots."""

from __future__ import annotations

import logging
import re

from analysis import (
    plots,
    tables,
)
from analysis.report.blocks import Para, Table
from analysis.report.context import Context

log = logging.getLogger(__name__)


MAX_POINT_PLOTS = 6  # point plots at most, one a parameter


def build(ctx: Context) -> None:
    res = ctx.res
    _, _, lines = plots.series(res, res.finished)
    per = f"one line per {lines}, mean and 95 % t-band over seeds"
    if not ctx.figure("air", plots.air_curves(res),
                      f"AIR over epochs ({per}); ▼ marks a rotation event of a trial."):
        ctx.add(Para("No AIR was recorded (no attention fusion, or no curves.csv)."))
    ctx.figure("attention_shares", plots.attention_shares(res),
               f"Attention share of each modality over epochs, validation split ({per}).")
    if ctx.figure("noise", plots.noise_curves(res),
                  f"Test accuracy under Gaussian noise on one modality at a time ({per})."):
        ctx.add(Table(tables.noise_table(res),
                      f"Accuracy (%) under noise, the paper's Table 3 layout; recipe: "
                      f"{tables.noise_recipe(res)}."))
    else:
        ctx.add(Para("No noise-robustness diagnostics in trials.csv."))
    attn = tables.attention_noise_table(res)
    if len(attn):
        ctx.add(Table(attn, "Does attention follow input quality? (Table 2.) Per noised "
                            "modality: r between its attention share and \"it is noised\" "
                            "over clean and noised evaluations of the same samples (< 0: "
                            "attention moves away from the noise), and the mean share "
                            "shift (noised − clean); the pooled r mixes the modalities' "
                            "share gap into its variance and is kept for the paper's "
                            f"number. Protocol: {tables.attention_protocol(res)}."))
    ctx.figure("beta_rho", plots.beta_rho_heatmaps(res),
               "β × ρ: mean of the headline and its seed sd (other parameters averaged).")
    for key, hue in _point_plots(ctx):
        name = "points_" + re.sub(r"[^A-Za-z0-9]+", "_", key)
        ctx.figure(name, plots.factor_points(res, key, hue),
                   f"Effect of `{key}`" + (f" per `{hue}`" if hue else "")
                   + ": mean and 95 % t-interval over seeds.")


def _point_plots(ctx: Context) -> list[tuple[str, str | None]]:
    res = ctx.res
    df = res.finished
    active = [f for f in res.factors
              if 2 <= df[f.key].nunique() <= 12]
    first = ("rollingq.max_rotations", "model.fusion_layers")
    active.sort(key=lambda f: (f.key not in first, res.factors.index(f)))
    out = []
    for f in active[:MAX_POINT_PLOTS]:
        hues = [g for g in active if g.key != f.key and df[g.key].nunique() <= 4]
        hue = min(hues, key=lambda g: df[g.key].nunique()).key if hues else None
        out.append((f.key, hue))
    return out

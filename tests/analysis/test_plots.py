"""Figures: the returned Figure has the expected axes and series, and the saved PNG decodes to
the expected size."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from matplotlib.collections import PathCollection, QuadMesh

from analysis import plots
from analysis.importance import importance
from analysis.results import load


def series(ax):
    """The labelled data lines of an axis (bands, markers and reference lines are unlabelled)."""
    return [ln.get_label() for ln in ax.get_lines() if not ln.get_label().startswith("_")]


def legend_texts(fig):
    return [t.get_text() for t in fig.legends[0].get_texts()]


def check_png(fig, path):
    """Saves the figure and reads the file back: a real PNG of figsize × dpi pixels."""
    plots.save(fig, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = matplotlib.image.imread(path)
    w, h = fig.get_size_inches() * plots.DPI
    assert img.shape[:2] == (round(h), round(w))
    assert img[..., :3].std() > 0.01  # not a blank canvas
    return img


def test_air_curves_one_line_per_variant_and_rotation_events(ablation, tmp_path):
    res = load([ablation])
    fig = plots.air_curves(res)
    (ax,) = fig.axes
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("epoch", "air", "synthetic")
    # vanilla once: the rotation kind does nothing at 0 rotations (its copies are not drawn)
    assert series(ax) == res.variants == ["0 / NA", "1 / svd", "1 / plane", "2 / svd",
                                          "2 / plane"]
    bands = [c for c in ax.collections if c.get_label().startswith("_band")]
    assert len(bands) == 5
    events = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(events) == 4  # the four rotating variants, one event at epoch 1 per seed
    assert all(len(c.get_offsets()) == 3 and (c.get_offsets()[:, 0] == 1).all() for c in events)
    assert legend_texts(fig) == res.variants + ["rotation event"]
    assert fig.legends[0].get_title().get_text() == "rollingq.max_rotations / rollingq.rotation"
    check_png(fig, tmp_path / "air.png")


def test_curves_are_grouped_by_one_factor_when_there_are_many_variants(planted, tmp_path):
    res = load([planted])
    assert len(res.variants) == 27
    fig = plots.air_curves(res)
    assert series(fig.axes[0]) == ["1", "2", "3"]
    assert fig.legends[0].get_title().get_text() == (
        "rollingq.max_rotations (other parameters pooled)")
    check_png(fig, tmp_path / "air.png")


def test_attention_shares_one_panel_per_modality(ablation, tmp_path):
    res = load([ablation])
    fig = plots.attention_shares(res)
    assert [ax.get_ylabel() for ax in fig.axes] == ["val_share_audio", "val_share_visual"]
    assert [ax.get_title() for ax in fig.axes] == ["audio", "visual"]
    assert all(len(series(ax)) == 5 and ax.get_xlabel() == "epoch" for ax in fig.axes)
    check_png(fig, tmp_path / "shares.png")


def test_noise_curves_per_modality_with_the_five_levels(ablation, tmp_path):
    res = load([ablation])
    fig = plots.noise_curves(res)
    assert [ax.get_xlabel() for ax in fig.axes] == ["noise level λ on audio (additive)",
                                                    "noise level λ on visual (additive)"]
    for ax in fig.axes:
        assert ax.get_ylabel() == "test accuracy (%)" and len(series(ax)) == 5
        line = next(ln for ln in ax.get_lines() if ln.get_label() == "0 / NA")
        assert list(line.get_xdata()) == [0.0, 0.25, 0.5, 0.75, 1.0]
        assert line.get_ydata()[0] > line.get_ydata()[-1]  # noise hurts
    check_png(fig, tmp_path / "noise.png")


def test_beta_rho_heatmaps_mean_and_sd(planted, tmp_path):
    res = load([planted])
    fig = plots.beta_rho_heatmaps(res)
    mean_ax, sd_ax = (ax for ax in fig.axes if ax.get_title())
    assert (mean_ax.get_xlabel(), mean_ax.get_ylabel()) == ("rollingq.rho", "rollingq.beta")
    assert mean_ax.get_title() == "mean of test_acc_at_best_val (%)"
    assert sd_ax.get_title() == "seed sd of test_acc_at_best_val (%)"
    grid = next(c for c in mean_ax.collections if isinstance(c, QuadMesh)).get_array()
    grid = np.asarray(grid).reshape(3, 3)  # rows β 0, 0.1, 0.3; columns ρ 0.5, 1, 2
    assert grid[0].mean() - grid[2].mean() == pytest.approx(10.0, abs=0.6)
    sd = np.asarray(next(c for c in sd_ax.collections if isinstance(c, QuadMesh)).get_array())
    assert (sd > 0).all() and (sd < 2).all()
    assert [t.get_text() for t in mean_ax.get_yticklabels()] == ["0", "0.1", "0.3"]
    check_png(fig, tmp_path / "heat.png")


def test_heatmaps_need_both_beta_and_rho(ablation):
    assert plots.beta_rho_heatmaps(load([ablation])) is None


def test_point_plot_of_the_rotation_count_per_hue_level(planted, tmp_path):
    res = load([planted])
    fig = plots.factor_points(res, "rollingq.max_rotations", hue="rollingq.beta")
    (ax,) = fig.axes
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("rollingq.max_rotations",
                                                  "test_acc_at_best_val (%)")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "3"]
    assert legend_texts(fig) == ["0", "0.1", "0.3"]
    check_png(fig, tmp_path / "points.png")


def test_figures_are_faceted_by_data_set(paper_studies, tmp_path):
    res = load(paper_studies)
    fig = plots.air_curves(res)
    assert [ax.get_title() for ax in fig.axes] == ["cremad", "kinetics_sounds"]
    assert all(len(series(ax)) == 4 for ax in fig.axes)
    shares = plots.attention_shares(res)
    assert [ax.get_title() for ax in shares.axes] == [
        "cremad: audio", "cremad: visual", "kinetics_sounds: audio", "kinetics_sounds: visual"]
    points = plots.factor_points(res, "model.fusion_layers", hue="rollingq.enabled")
    assert [ax.get_title() for ax in points.axes] == ["cremad", "kinetics_sounds"]
    check_png(shares, tmp_path / "shares.png")


def test_importance_bars_and_history(optuna_study, tmp_path):
    res = load([optuna_study])
    fig = plots.importance_bars(importance(res))
    (ax,) = fig.axes
    assert ax.get_xlabel() == "importance (PED-ANOVA)" and len(ax.patches) == 4
    assert ax.get_yticklabels()[-1].get_text() == "rollingq.beta"  # the top bar
    check_png(fig, tmp_path / "importance.png")
    hist = plots.optimization_history(res)
    assert hist.axes[0].get_ylabel() == "best_val_acc (%)"
    assert len(hist.axes[0].collections[0].get_offsets()) == 41
    check_png(hist, tmp_path / "history.png")


def test_no_curves_no_figure(tmp_path):
    from tests.analysis.studies import write_study

    search = {"rollingq.enabled": {"role": "scientific", "type": "choice",
                                   "values": [False, True]}}
    d = write_study(tmp_path, search=search, effect=lambda p: 0.6, seeds=(0,),
                    statuses={0: "incomplete", 1: "incomplete"})
    (d / "curves.csv").write_text("\n")  # what the driver writes when no epoch was reported
    res = load([d])
    assert plots.air_curves(res) is None and plots.attention_shares(res) is None
    assert plots.noise_curves(res) is None


def test_parallel_coordinates_draw_a_line_per_configuration(ablation, tmp_path):
    """The rotation ablation's 5 configurations (vanilla once: its rotation kind is NA, no
    point on that axis), each a line across the two searched keys; one key is no figure."""
    res = load([ablation])
    fig = plots.parallel_coordinates(res)
    lines = [line for line in fig.axes[0].get_lines() if list(line.get_xdata()) == [0, 1]]
    assert len(lines) == 5
    vanilla = [line for line in lines if np.isnan(line.get_ydata()[1])]
    assert len(vanilla) == 1 and vanilla[0].get_ydata()[0] == 0.0  # 0 rotations: the lowest
    check_png(fig, tmp_path / "parallel.png")
    smoke = load([Path(__file__).parent / "data" / "smoke_finished"])  # one key searched
    assert plots.parallel_coordinates(smoke) is None

"""The real-data loaders plug into training: one epoch on a tiny CREMA-D-format set."""

import math

import pytest
import torch

from rollingq.train import fit
from tests.rollingq.data.fakes import config, make_cremad, make_ks, make_mosei


def test_one_epoch_on_cremad_format(tmp_path):
    make_cremad(tmp_path, n_train=24, n_test=6)
    cfg = config("cremad", tmp_path, **{"train.epochs": 1, "train.batch_size": 4,
                                        "train.device": "cpu"})
    assert cfg.data.frame_size == 224 and cfg.model.dim == 32
    epochs = []
    result = fit(cfg, epochs.append)
    assert result.status == "finished" and [e["epoch"] for e in epochs] == [-1, 0]
    m = epochs[1]
    assert math.isfinite(m["train_loss"]) and 0 <= m["test_acc"] <= 1
    assert {"train_probe_acc_audio", "train_probe_acc_visual", "air"} <= set(m)
    assert result.model.modalities == ["audio", "visual"]
    # the fusion sequence of the published shapes: 177 audio + 589 visual tokens + [cls]
    enc = result.model.encoders
    with torch.no_grad():
        b = result.data.test.take(torch.arange(2)).batch()
        assert enc["audio"](b["audio"]).shape[1] == 177
        assert enc["visual"](b["visual"]).shape[1] == 589


def test_one_epoch_on_kinetics_and_mosei_formats(tmp_path):
    make_ks(tmp_path / "ks", train_counts=(10, 7, 8, 9) * 2)
    for name, root, extra in (("kinetics_sounds", tmp_path / "ks", {"data.frame_size": 32}),
                              ("mosei", tmp_path / "m", {})):
        if name == "mosei":
            make_mosei(root)
        cfg = config(name, root, **{"train.epochs": 1, "train.batch_size": 4,
                                    "train.device": "cpu", **extra})
        result = fit(cfg)
        assert result.status == "finished"
        if name == "mosei":  # MulT's binary F1: the support-weighted F1 of the two classes
            from rollingq.diagnostics import confusion_matrix, f1_scores, predict

            logits, _ = predict(result.selected(), result.data.test, 256)
            weighted = f1_scores(confusion_matrix(logits.argmax(1), result.data.test.labels, 2))
            assert result.summary["test_binary_f1_at_best_val"] == pytest.approx(
                weighted["weighted"].item(), abs=1e-12)
        else:
            assert "test_binary_f1_at_best_val" not in result.summary


def test_the_training_cli_runs_on_cremad_with_diagnostics(tmp_path):
    import json

    from rollingq.train import main

    make_cremad(tmp_path / "data", n_train=24, n_test=6)
    sets = {"data.name": "cremad", "data.root": tmp_path / "data", "model.dim": 32,
            "model.heads": 2, "model.depth": 1, "train.epochs": 2, "train.batch_size": 4,
            "data.frame_size": 32}
    argv = [x for k, v in sets.items() for x in ("--set", f"{k}={v}")]
    assert main([*argv, "--out", str(tmp_path / "run"), "--quiet"]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert set(summary["diagnostics"]["noise"]["curves"]) == {"audio", "visual"}
    assert summary["diagnostics"]["noise"]["recipe"] == "absolute"  # the cited recipe
    assert summary["config"]["data"]["name"] == "cremad"

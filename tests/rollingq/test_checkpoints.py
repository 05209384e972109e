"""What a run's checkpoints cost (issue 38, finding 2): a checkpoint every
``train.checkpoint_every`` epochs at least ``train.checkpoint_minutes`` apart (auto: 10 minutes
on CUDA, every epoch on the CPU), and the selected model kept once, in best.pt, which a resumed
run whose best epoch lies behind takes it from."""

from __future__ import annotations

import pytest
import torch

from rollingq.checkpoints import BEST, CHECKPOINT, load_checkpoint
from rollingq.config import build_config
from rollingq.train import checkpoint_minutes, fit

TINY = {"data.train_size": 300, "data.test_size": 100, "train.epochs": 4,
        "train.batch_size": 64}


def test_auto_checkpoints_every_ten_minutes_on_cuda_and_every_epoch_on_the_cpu():
    cfg = build_config()
    assert cfg.train.checkpoint_minutes == -1
    assert checkpoint_minutes(cfg, torch.device("cuda", 0)) == 10
    assert checkpoint_minutes(cfg, torch.device("cpu")) == 0
    set_ = build_config(overrides={"train.checkpoint_minutes": 2.5})
    assert checkpoint_minutes(set_, torch.device("cuda", 0)) == 2.5


def test_a_run_shorter_than_the_interval_writes_its_checkpoint_at_the_last_epoch(tmp_path):
    seen = []

    def saved(m):
        path = tmp_path / CHECKPOINT
        seen.append(load_checkpoint(path)["epoch"] if path.exists() else None)

    fit(build_config(overrides={**TINY, "train.checkpoint_minutes": 60.0}), saved,
        checkpoint_dir=tmp_path)
    assert seen == [None, None, None, None, 3]  # epoch -1, then 0-3


@pytest.mark.parametrize("keep_best", [True, False])
def test_the_selected_model_is_kept_once_and_a_resume_behind_it_is_exact(tmp_path, keep_best):
    """A learning rate of 1e-12 keeps validation accuracy where epoch 0 put it, so the selected
    model stays epoch 0's while the run goes on; killed at epoch 2, the checkpoint does not carry
    that model again when best.pt holds it, and the resumed run selects it exactly."""
    over = {**TINY, "optim.lr": 1e-12, "train.keep_best": keep_best}
    whole = fit(build_config(overrides=over), checkpoint_dir=tmp_path / "a")
    assert whole.summary["best_val_epoch"] == 0

    class Stop(Exception):
        pass

    def crash(m):
        if m["epoch"] == 2:
            raise Stop

    with pytest.raises(Stop):
        fit(build_config(overrides=over), crash, checkpoint_dir=tmp_path / "b")
    state = load_checkpoint(tmp_path / "b" / CHECKPOINT)
    assert state["epoch"] == 2 and state["best"]["epoch"] == 0
    if keep_best:
        assert state["best_model"] is None
        assert load_checkpoint(tmp_path / "b" / BEST)["epoch"] == 0
    else:
        assert state["best_model"] is not None and not (tmp_path / "b" / BEST).exists()
    resumed = fit(build_config(overrides=over), checkpoint_dir=tmp_path / "b", resume=True)
    assert all(torch.equal(whole.best_state[k], resumed.best_state[k]) for k in whole.best_state)

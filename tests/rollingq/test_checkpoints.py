"""What a run's checkpoints cost (issue 38, finding 2): a checkpoint every
``train.checkpoint_every`` epochs at least ``train.checkpoint_minutes`` apart (auto: 10 minutes
on CUDA, every epoch on the CPU), and the selected model kept once, in best.pt, which a resumed
run whose best epoch lies behind takes it from."""

from __future__ import annotations

import pytest
import torch

from rollingq.checkpoints import BEST, CHECKPOINT, PREVIOUS_BEST, load_checkpoint
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


def test_a_run_killed_between_best_pt_and_its_checkpoint_still_resumes(tmp_path, monkeypatch):
    """best.pt is written before the checkpoint that selects it; killed in between, the older
    checkpoint selects the model best.pt held before, which was renamed (not copied) aside and
    is found there. Seed 0's selection moves at epochs 0, 1 and 3, so the checkpoint of epoch 2
    selects epoch 1, and the run is killed as it writes epoch 3's."""
    from rollingq import train

    over = {**TINY, "train.epochs": 5}
    whole = fit(build_config(overrides=over), checkpoint_dir=tmp_path / "a")
    changed = [h["epoch"] for h in whole.history[1:] if h["best_val_epoch"] == h["epoch"]]
    assert changed[:3] == [0, 1, 3], changed
    real = train.save_checkpoint

    class Stop(Exception):
        pass

    def killed_as_epoch_3s_checkpoint_is_written(path, state):
        if path.name == CHECKPOINT and state["epoch"] == 3:
            raise Stop
        real(path, state)

    monkeypatch.setattr(train, "save_checkpoint", killed_as_epoch_3s_checkpoint_is_written)
    with pytest.raises(Stop):
        fit(build_config(overrides=over), checkpoint_dir=tmp_path / "b")
    monkeypatch.setattr(train, "save_checkpoint", real)
    assert load_checkpoint(tmp_path / "b" / BEST)["epoch"] == 3
    state = load_checkpoint(tmp_path / "b" / CHECKPOINT)
    assert (state["epoch"], state["best"]["epoch"], state["best_model"]) == (2, 1, None)
    assert load_checkpoint(tmp_path / "b" / PREVIOUS_BEST)["epoch"] == 1
    resumed = fit(build_config(overrides=over), checkpoint_dir=tmp_path / "b", resume=True)
    assert all(torch.equal(whole.best_state[k], resumed.best_state[k]) for k in whole.best_state)
    assert not (tmp_path / "b" / PREVIOUS_BEST).exists()  # gone with the next checkpoint

"""Training: the rotation at an epoch end, resume equals uninterrupted, divergence, selection."""

import math

import numpy as np
import pytest
import torch

from rollingq.config import RollingQConfig, build_config
from rollingq.data import load_data
from rollingq.data.base import stratified_split
from rollingq.device import compiled_or_eager
from rollingq.evaluate import run_diagnostics
from rollingq.model import MultimodalTransformer
from rollingq.rolling import EpochStats, rotate_if_needed
from rollingq.train import fit, lr_factor

TINY = {"data.train_size": 400, "data.test_size": 200, "train.epochs": 4, "train.batch_size": 64}


def tiny(**kw):
    return build_config(overrides={**TINY, **kw})


def numpy_anchor(mu_keys, mu_q, rho, cos):
    """q_b from METHOD.md §2 steps 3-4, written independently in numpy (two modalities)."""
    air = cos[0] - cos[1]
    alpha = 0.5 * (1 + math.tanh(-rho * air))
    u = alpha * mu_keys[0] / np.linalg.norm(mu_keys[0]) + (1 - alpha) * mu_keys[1] / np.linalg.norm(
        mu_keys[1]
    )
    return u * np.linalg.norm(mu_q) / np.linalg.norm(u), alpha


@pytest.mark.parametrize("method", ["svd", "plane"])
def test_a_rotation_moves_the_cls_query_onto_the_anchor(method):
    cfg = tiny()
    data = load_data(cfg.data)
    model = MultimodalTransformer(data.specs, data.num_classes, cfg.model).eval()
    stats = EpochStats(model.modalities, 1)
    with torch.no_grad():
        out = model(data.train.inputs)
    stats.add(out.fusion)
    mu_q, mu_keys = (t.double().numpy() for t in stats.layers[0].means())
    cos = stats.layers[0].cosines("epoch").double().numpy()
    q_b, alpha = numpy_anchor(mu_keys, mu_q, 2.0, cos)

    rq = RollingQConfig(beta=0.0, rho=2.0, max_rotations=1, rotation=method, anchor_stat="running")
    (event,) = rotate_if_needed(rq, model.rotations, stats, full_pass=None)
    assert event.rotated and event.rotations == 1 and event.residual < 1e-9
    assert event.alpha == pytest.approx(alpha, abs=1e-9)
    assert event.air == pytest.approx(cos[0] - cos[1], abs=1e-9)
    with torch.no_grad():
        q_new = model(data.test.take(torch.arange(5)).inputs).q_cls
    # The fusion [cls] query is input-independent, so every sample's query is now q_b.
    np.testing.assert_allclose(
        q_new.double().numpy(), np.broadcast_to(q_b, (5, len(q_b))), atol=1e-4
    )
    # The trigger respects max_rotations.
    (again,) = rotate_if_needed(rq, model.rotations, stats, full_pass=None)
    assert not again.rotated and again.rotations == 1


def test_trigger_respects_beta():
    cfg = tiny()
    data = load_data(cfg.data)
    model = MultimodalTransformer(data.specs, data.num_classes, cfg.model)
    stats = EpochStats(model.modalities, 1)
    with torch.no_grad():
        stats.add(model(data.train.inputs).fusion)
    spread = abs(float(stats.layers[0].cosines("epoch").diff()))
    high = RollingQConfig(beta=spread + 0.01, anchor_stat="running", air_stat="epoch")
    assert not rotate_if_needed(high, model.rotations, stats, None)[0].rotated
    low = RollingQConfig(beta=spread - 0.01, anchor_stat="running", air_stat="epoch")
    assert rotate_if_needed(low, model.rotations, stats, None)[0].rotated


def _strip(history):
    return [
        {k: v for k, v in h.items() if k not in ("epoch_seconds", "samples_per_s")} for h in history
    ]


@pytest.mark.parametrize("anchor_stat,balance", [("full_pass", "none"), ("running", "none"),
                                                 ("full_pass", "ogm_ge"), ("running", "pmr")])
def test_resume_equals_uninterrupted(tmp_path, anchor_stat, balance):
    over = {
        "rollingq.beta": 0.0,
        "rollingq.max_rotations": 3,
        "model.fusion_dropout": 0.2,
        "rollingq.anchor_stat": anchor_stat,
        "balance.method": balance,
    }
    whole = fit(tiny(**over), checkpoint_dir=tmp_path / "a")

    class Stop(Exception):
        pass

    def crash(m):
        if m["epoch"] == 1:
            raise Stop

    with pytest.raises(Stop):
        fit(tiny(**over), on_epoch_end=crash, checkpoint_dir=tmp_path / "b")
    resumed = fit(tiny(**over), checkpoint_dir=tmp_path / "b", resume=True)
    assert _strip(resumed.history) == _strip(whole.history)
    assert all(torch.equal(whole.best_state[k], resumed.best_state[k]) for k in whole.best_state)
    assert whole.summary["rotations"] == resumed.summary["rotations"] == [3]
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # bit-exact on CPU


def test_metrics_record_every_epoch():
    seen = []
    result = fit(
        tiny(**{"rollingq.beta": 0.0, "rollingq.max_rotations": 1}), on_epoch_end=seen.append
    )
    assert [m["epoch"] for m in seen] == [-1, 0, 1, 2, 3] and result.status == "finished"
    seen = seen[1:]  # epoch -1 (the untrained model) has its own test
    first = seen[0]
    for key in (
        "train_loss",
        "val_acc",
        "test_acc",
        "val_probe_acc_audio",
        "test_probe_acc_visual",
        "air",
        "alpha",
        "cos_audio",
        "cos_visual",
        "val_share_audio",
        "val_share_visual",
        "rotations",
        "rotation_residual",
        "lr",
        "epoch_seconds",
        "samples_per_s",
        "test_acc_at_best_val",
        "test_f1_at_best_val",
        "val_f1",
        "test_f1",
        "best_test_acc",
    ):
        assert key in first, key
    assert first["rotated"] == 1 and first["rotation_residual"] < 1e-6
    assert seen[1]["rotated"] == 0 and seen[1]["rotation_residual"] is None
    best = max(range(4), key=lambda i: (seen[i]["val_acc"], -i))
    assert result.summary["best_val_epoch"] == best
    assert result.summary["test_acc_at_best_val"] == seen[best]["test_acc"]
    assert result.summary["test_f1_at_best_val"] == seen[best]["test_f1"]
    assert result.summary["best_test_acc_paper_style"] == max(m["test_acc"] for m in seen)
    assert result.summary["epochs"] == 4


def test_epoch_minus_one_is_an_evaluation_of_the_untrained_model():
    from rollingq.device import autocast_for
    from rollingq.evaluate import evaluate

    cfg = tiny(**{"train.epochs": 1})
    result = fit(cfg)
    before = result.history[0]
    assert before["epoch"] == -1 and "train_loss" not in before and "best_val_acc" not in before
    torch.manual_seed(cfg.train.seed)  # what fit builds its model from
    untrained = MultimodalTransformer(result.data.specs, result.data.num_classes, cfg.model)
    autocast = autocast_for(cfg, torch.device("cpu"))
    for name, split in (("val", result.data.val), ("test", result.data.test)):
        expected = evaluate(untrained, split, 256, autocast)
        assert {k: before[f"{name}_{k}"] for k in expected} == expected
    assert abs(before["val_air"]) < abs(result.history[-1]["val_air"]) + 1.0  # recorded, finite
    assert {"val_air", "val_cos_audio", "val_share_visual"} <= set(before)


def test_diagnostics_run_on_the_selected_model(tmp_path):
    """The best validation epoch's model (rotation included) is kept, written to best.pt, and
    its clean test accuracy (and every noise curve at λ = 0) is the headline."""
    from rollingq.checkpoints import BEST, load_checkpoint

    # validation accuracy peaks at epoch 3 of 0-5 here (ties keep the earlier epoch)
    cfg = tiny(**{"train.epochs": 6, "optim.lr": 0.1, "rollingq.beta": 0.0})
    r = fit(cfg, checkpoint_dir=tmp_path)
    best_epoch = r.summary["best_val_epoch"]
    saved = load_checkpoint(tmp_path / BEST)
    assert saved["epoch"] == best_epoch
    assert all(torch.equal(saved["model"][k], r.best_state[k]) for k in r.best_state)
    selected = r.selected()
    assert int(selected.rotations[0].count) == r.history[best_epoch + 1]["rotations"]
    diag, predictions = run_diagnostics(cfg, selected, r.data, best_epoch)
    head = r.summary["test_acc_at_best_val"]
    assert diag["test"]["acc"] == head and diag["epoch"] == best_epoch
    assert diag["test"]["f1"] == pytest.approx(r.summary["test_f1_at_best_val"], abs=1e-12)
    assert {m: c["0.0"]["acc"] for m, c in diag["noise"]["curves"].items()} == {
        m: head for m in r.model.modalities}
    assert len(predictions["label"]) == len(r.data.test)
    assert np.array_equal(predictions["label"], r.data.test.labels.numpy())
    assert (predictions["pred"] == predictions["label"]).mean() == pytest.approx(head, abs=1e-6)
    assert ((predictions["p_true"] > 0) & (predictions["p_true"] <= 1)).all()
    assert best_epoch < 5  # so the last epoch's model is another model
    last, _ = run_diagnostics(cfg, r.model, r.data)
    assert last["test"]["acc"] == r.history[-1]["test_acc"]
    assert any(not torch.equal(r.best_state[k], v) for k, v in r.model.state_dict().items())


def test_zeroing_the_only_modality_a_model_uses_drops_it_to_chance():
    from rollingq.diagnostics import missing_modality, predict

    r = fit(tiny(**{"model.fusion": "audio", "rollingq.enabled": False, "train.epochs": 2}))
    model, test = r.selected(), r.data.test
    assert r.summary["test_acc_at_best_val"] > 0.5  # chance is 0.25
    zeroed = missing_modality(model, test, "audio")
    logits, _ = predict(model, test, 256, lambda x, i: {**x, "audio": torch.zeros_like(
        x["audio"])})
    pred = logits.argmax(1)
    assert bool((pred == pred[0]).all())  # one class for every sample: no information left
    assert zeroed["acc"] == pytest.approx((test.labels == pred[0]).float().mean().item())
    assert zeroed["acc"] < 0.35 and zeroed["share"] is None
    other = missing_modality(model, test, "visual")  # a modality it does not use
    assert other["acc"] == pytest.approx(r.summary["test_acc_at_best_val"])


def test_a_nan_loss_stops_as_diverged():
    result = fit(tiny(**{"optim.name": "sgd", "optim.lr": 1e30, "optim.warmup_epochs": 0.0}))
    assert result.status == "diverged" and result.summary["status"] == "diverged"
    assert result.history[-1]["status"] == "diverged" and len(result.history) < 4


def test_baselines_train():
    for fusion in ("concat", "sum", "mbt", "audio"):
        r = fit(tiny(**{"model.fusion": fusion, "rollingq.enabled": False, "train.epochs": 1}))
        assert r.status == "finished" and "air" not in r.history[-1]


def test_validation_split_is_stratified_and_seeded():
    labels = torch.arange(4).repeat_interleave(torch.tensor([50, 30, 15, 5]))
    keep, held = stratified_split(labels, 0.2, seed=0)
    assert torch.bincount(labels[held]).tolist() == [10, 6, 3, 1]
    assert len(set(keep.tolist()) & set(held.tolist())) == 0 and len(keep) + len(held) == 100
    assert torch.equal(held, stratified_split(labels, 0.2, seed=0)[1])
    assert not torch.equal(held, stratified_split(labels, 0.2, seed=1)[1])


def test_plain_schedule_warmup_then_cosine():
    assert lr_factor(0, 10, 100, 0.0, "plain") == pytest.approx(0.1)
    assert lr_factor(9, 10, 100, 0.0, "plain") == pytest.approx(1.0)
    assert lr_factor(100, 10, 100, 0.1, "plain") == pytest.approx(0.1)
    assert lr_factor(55, 10, 100, 0.0, "plain") == pytest.approx(0.5)
    assert lr_factor(110, 10, 100, 0.0, "plain") == 0.0  # clamped past the end
    assert lr_factor(2, 2.5, 100, 0.0, "plain") == pytest.approx(3 / 2.5)  # fractional warm-up


def test_published_schedule_at_chosen_steps():
    # 10 steps an epoch, warm-up int(2.5 * 10) = 25 steps, 30 epochs = 300 steps
    W, T = 25.0, 300
    f = lambda step: lr_factor(step, W, T, 0.0, "published")
    assert f(0) == 0.0  # the first step runs at lr 0
    assert f(10) == pytest.approx(10 / 25) and f(24) == pytest.approx(24 / 25)
    assert f(25) == pytest.approx(1.0)
    assert f(162) == pytest.approx(0.5 * (1 + math.cos(math.pi * 137 / 275)))
    assert f(300) == pytest.approx(0.0, abs=1e-12)
    # past the end (the extra epoch-end steps get there 30 steps early) the rate rises again
    assert f(330) == pytest.approx(0.5 * (1 + math.cos(math.pi * 305 / 275)))
    assert f(330) > f(310) > 0
    assert lr_factor(3, 25.9, T, 0.0, "published") == pytest.approx(3 / 25)  # whole steps only


def test_fit_follows_the_published_schedule_with_its_epoch_end_steps():
    lr = 0.05
    cfg = tiny(**{"optim.lr": lr, "optim.warmup_epochs": 2.5, "train.epochs": 5})
    assert cfg.optim.schedule == "published"
    r = fit(cfg)
    spe = math.ceil(len(r.data.train) / 64)  # 360 training samples: 6 steps an epoch
    assert spe == 6
    W, T = int(2.5 * spe), 5 * spe  # 15, 30
    for e, h in enumerate(r.history[1:]):  # after epoch -1 (the untrained model)
        step = e * (spe + 1) + spe  # the lr after the epoch's last batch, before the extra step
        want = step / W if step < W else 0.5 * (1 + math.cos(math.pi * (step - W) / (T - W)))
        assert h["lr"] == pytest.approx(lr * max(0.0, want)), e
    plain = fit(tiny(**{"optim.lr": lr, "optim.warmup_epochs": 2.5, "train.epochs": 5,
                        "optim.schedule": "plain"}))
    assert plain.history[1]["lr"] == pytest.approx(lr * spe / 15 + lr / 15)  # (step + 1) / W
    assert plain.history[-1]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_every_fusion_layer_can_rotate():
    r = fit(tiny(**{"model.fusion_layers": 2, "rollingq.layers": "all", "rollingq.beta": 0.0,
                    "rollingq.max_rotations": 1, "train.epochs": 2}))
    assert r.summary["rotations"] == [1, 1]
    assert r.history[1]["rotations_layer0"] == 1 and r.history[1]["rotations"] == 1
    last = fit(tiny(**{"model.fusion_layers": 2, "rollingq.beta": 0.0, "train.epochs": 2,
                       "rollingq.max_rotations": 1}))
    assert last.summary["rotations"] == [0, 1]


def _grads_of(forward, model, x):
    model.zero_grad()
    forward(x).square().sum().backward()
    return [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("fails", [None, "forward", "backward"])
def test_the_compile_fallback_catches_a_failure_in_either_graph(fails, caplog):
    """A compiler failure, even in the backward graph (which AOTAutograd compiles lazily, at
    ``backward()``, unless told otherwise), trains on eagerly with a warning."""
    from functorch.compile import make_boxed_func
    from torch._dynamo.backends.common import aot_autograd

    def compiler(graph):
        def compile_graph(gm, example_inputs):
            if graph == fails:
                raise RuntimeError(f"{graph} lowering failed")
            return make_boxed_func(gm.forward)
        return compile_graph

    torch._dynamo.reset()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.GELU(), torch.nn.Linear(8, 2))
    x = torch.randn(5, 4)
    expected = _grads_of(model, model, x)
    forward = compiled_or_eager(model, aot_autograd(fw_compiler=compiler("forward"),
                                                   bw_compiler=compiler("backward")))
    for _ in range(2):  # the second step runs the compiled graph, or eager after a fallback
        got = _grads_of(forward, model, x)
        assert all(torch.allclose(g, e, atol=1e-6) for g, e in zip(got, expected, strict=True))
    warned = [r.getMessage() for r in caplog.records if "torch.compile failed" in r.getMessage()]
    assert len(warned) == (fails is not None)
    if fails:
        assert f"{fails} lowering failed" in warned[0]


def test_the_compile_fallback_lets_out_of_memory_and_data_errors_through(caplog):
    """Only the compiler's own failures fall back to eager: an out-of-memory error (even one a
    compiler error wraps) and an error the eager model raises too propagate."""
    from torch._dynamo.backends.common import aot_autograd

    def oom(gm, example_inputs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    torch._dynamo.reset()
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.GELU(), torch.nn.Linear(8, 2))
    with pytest.raises(Exception) as e:
        compiled_or_eager(model, aot_autograd(fw_compiler=oom))(torch.randn(5, 4))
    assert "out of memory" in str(e.value)
    torch._dynamo.reset()
    with pytest.raises(RuntimeError, match="same reduction dim"):
        compiled_or_eager(model, "eager")(torch.randn(5, 3))  # bad data: 3 features, not 4
    assert "torch.compile failed" not in caplog.text


@pytest.mark.slow  # inductor compiles fwd + bwd on CPU for a minute or more
def test_compiled_training_matches_the_eager_path_or_falls_back():
    over = {"train.epochs": 1, "data.train_size": 200}
    eager = fit(tiny(**over))
    compiled = fit(tiny(**over, **{"train.compile": True}))
    assert compiled.status == "finished"
    expected = eager.history[-1]["train_loss"]
    assert compiled.history[-1]["train_loss"] == pytest.approx(expected, rel=1e-3)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_diagnostics_evaluate_in_the_runs_precision(precision):
    """Noise level 0 is the clean test set: its accuracy is the last epoch's test accuracy,
    also when the run trains (and evaluates) under bf16 autocast."""
    cfg = tiny(**{"train.epochs": 2, "data.test_size": 400, "train.precision": precision})
    r = fit(cfg)
    noise = {"train.noise_levels": [0.0, 0.5]}
    diag, _ = run_diagnostics(tiny(**{**noise, "train.precision": precision}), r.model, r.data)
    clean = {m: curve["0.0"]["acc"] for m, curve in diag["noise"]["curves"].items()}
    assert clean == {m: r.history[-1]["test_acc"] for m in r.model.modalities}


def test_the_full_pass_weights_batches_equally_as_published():
    from rollingq.fusions.attention import FusionStats
    from rollingq.rolling import LayerStats

    torch.manual_seed(0)
    batches = [(torch.randn(n, 8), torch.randn(n, 8), torch.randn(n, 8)) for n in (4, 2)]
    by_batch, by_sample = LayerStats(["a", "v"], per_batch=True), LayerStats(["a", "v"])
    for q, ka, kv in batches:
        s = FusionStats(q, {"a": ka, "v": kv}, torch.zeros(len(q), 3), {})
        by_batch.add(s)
        by_sample.add(s)
    mu_q, mu_k = by_batch.means()
    torch.testing.assert_close(mu_q, (batches[0][0].mean(0) + batches[1][0].mean(0)) / 2)
    torch.testing.assert_close(mu_k[1], (batches[0][2].mean(0) + batches[1][2].mean(0)) / 2)
    all_q = torch.cat([b[0] for b in batches])
    torch.testing.assert_close(by_sample.means()[0], all_q.mean(0))
    assert not torch.allclose(mu_q, all_q.mean(0))  # a partial batch makes them differ


@pytest.mark.parametrize("fusion", ["mmml", "mult"])
def test_rollingq_rotates_mmml_and_mult_through_their_attention_readout(fusion):
    names = "text,visual" if fusion == "mult" else ""  # MulT's rows of the paper have text
    r = fit(tiny(**{"model.fusion": fusion, "model.readout": "attn", "rollingq.beta": 0.0,
                    "rollingq.max_rotations": 1, "train.epochs": 2, "data.modalities": names}))
    assert list(r.model.modalities) == (["text", "visual"] if names else ["audio", "visual"])
    assert r.status == "finished" and r.summary["rotations"] == [1]
    assert r.history[1]["rotated"] == 1 and "val_air" in r.history[-1]
    plain = fit(tiny(**{"model.fusion": fusion, "rollingq.enabled": False, "train.epochs": 1}))
    assert plain.status == "finished" and "air" not in plain.history[-1]


@pytest.mark.parametrize("fusion,method", [("jmt", "ogm_ge"), ("jmt", "pmr"), ("mmml", "ogm_ge"),
                                           ("mult", "pmr")])
def test_the_comparison_fusions_train_with_a_balancing_method(fusion, method):
    r = fit(tiny(**{"model.fusion": fusion, "model.fusion_layers": 2, "rollingq.enabled": False,
                    "balance.method": method, "train.epochs": 2}))
    assert r.status == "finished" and math.isfinite(r.history[-1]["train_loss"])
    assert math.isfinite(r.history[-1]["balance_ratio_audio"])
    assert math.isfinite(r.history[-1]["balance_coef_visual"])


def test_rollingq_needs_a_joint_cls_attention():
    from rollingq.config import ConfigError

    with pytest.raises(ConfigError, match="model.fusion=mmml or mult with model.readout=attn"):
        tiny(**{"model.fusion": "mmml"})  # RollingQ on by default; MMML's MLP read-out
    with pytest.raises(ConfigError, match="only those fusions have a choice of read-out"):
        tiny(**{"model.readout": "attn"})


@pytest.mark.parametrize("clip", [0.0, 0.05])
def test_grad_clip_bounds_the_steps_gradient_norm(clip):
    """optim.grad_clip clips the total L2 norm of every parameter's gradient before the step
    (MulT's reference clips at 0.8); 0 leaves it alone (here above 0.05)."""
    import contextlib

    from rollingq.config import ModelConfig
    from rollingq.data.base import ModalitySpec
    from rollingq.train import train_step

    torch.manual_seed(0)
    specs = {"audio": ModalitySpec("sequence", (5, 6)), "visual": ModalitySpec("sequence", (4, 6))}
    model = MultimodalTransformer(specs, 3, ModelConfig(dim=16, depth=1, heads=2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    x = {m: torch.randn(8, *s.shape) for m, s in specs.items()}
    train_step(model, optimizer, x, torch.arange(8) % 3, contextlib.nullcontext, None, clip)
    norm = torch.linalg.vector_norm(torch.stack([
        torch.linalg.vector_norm(p.grad) for p in model.parameters() if p.grad is not None]))
    if clip:
        assert float(norm) <= clip * (1 + 1e-5)
    else:
        assert float(norm) > 0.05
    assert build_config().optim.grad_clip == 0.0  # off, as the published code

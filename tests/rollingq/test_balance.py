"""The balancing baselines: each formula against BASELINES.md's definitions written out
independently here, and the training glue (which gradients move, and which never)."""

import contextlib
import math

import pytest
import torch

from rollingq import balance as bal
from rollingq.balancing import Balancer
from rollingq.config import BalanceConfig, ModelConfig, build_config
from rollingq.data.base import ModalitySpec
from rollingq.model import MultimodalTransformer
from rollingq.train import fit

A = 0.8


def reference_ogm(s_a: float, s_v: float, alpha: float) -> tuple[float, float]:
    """The reference's two-modality branch, as BASELINES.md §1 quotes it."""
    ratio_v = s_v / s_a
    ratio_a = 1 / ratio_v
    if ratio_v > 1:
        return 1.0, 1 - math.tanh(alpha * max(0.0, ratio_v))
    return 1 - math.tanh(alpha * max(0.0, ratio_a)), 1.0


@pytest.mark.parametrize("s_a,s_v", [(6.0, 3.0), (3.0, 6.0), (4.0, 4.0), (0.5, 7.5)])
def test_ogm_coefficients_are_the_references(s_a, s_v):
    k = bal.ogm_coefficients(torch.tensor([s_a, s_v]), A)
    assert k.tolist() == pytest.approx(reference_ogm(s_a, s_v, A), abs=1e-6)


def test_ogm_at_a_ratio_of_exactly_one():
    # a tie: the reference's else-branch modulates audio with 1 - tanh(alpha * 1)
    k = bal.ogm_coefficients(torch.tensor([5.0, 5.0]), A)
    assert k.tolist() == pytest.approx([1 - math.tanh(A), 1.0])
    # the labelled variant relu(rho - 1) is continuous there: nothing is modulated
    k = bal.ogm_coefficients(torch.tensor([5.0, 5.0]), A, variant="minus_one")
    assert k.tolist() == pytest.approx([1.0, 1.0])
    k = bal.ogm_coefficients(torch.tensor([6.0, 3.0]), A, variant="minus_one")
    assert k.tolist() == pytest.approx([1 - math.tanh(A * (2 - 1)), 1.0])


def test_ogm_with_three_modalities_modulates_the_one_with_the_largest_ratio():
    s = [2.0, 5.0, 1.0]
    rho_v = 5.0 / (2.0 + 1.0)
    k = bal.ogm_coefficients(torch.tensor(s), A)
    assert k.tolist() == pytest.approx([1.0, 1 - math.tanh(A * rho_v), 1.0])


def test_modality_scores_sum_the_true_class_probability():
    torch.manual_seed(0)
    logits = [torch.randn(7, 4), torch.randn(7, 4)]
    y = torch.randint(0, 4, (7,))
    want = [sum(float(torch.softmax(x[i], 0)[y[i]]) for i in range(7)) for x in logits]
    assert bal.modality_scores(logits, y).tolist() == pytest.approx(want, abs=1e-5)


def test_ge_noise_has_each_gradients_own_std():
    torch.manual_seed(0)
    grads = [torch.randn(400, 300) * 0.3, torch.randn(200, 50) * 5.0, torch.randn(1, 1, 8)]
    k = torch.tensor(0.25)
    out = bal.ogm_ge_gradients(grads, k, generalised=True)
    for g, o in zip(grads[:2], out[:2], strict=True):
        noise = o - 0.25 * g
        assert noise.std().item() == pytest.approx(g.std().item() + 1e-8, rel=0.02)
        assert abs(noise.mean().item()) < 0.02 * g.std().item()
    assert [o.shape for o in out] == [g.shape for g in grads]
    plain = bal.ogm_ge_gradients(grads, k, generalised=False)
    assert all(torch.equal(o, 0.25 * g) for o, g in zip(plain, grads, strict=True))


def test_prototype_logits_are_minus_euclidean_distances():
    torch.manual_seed(0)
    z, c = torch.randn(5, 8), torch.randn(3, 8)
    want = [[-math.sqrt(sum((z[i, d] - c[k, d]).item() ** 2 for d in range(8))) for k in range(3)]
            for i in range(5)]
    got = bal.prototype_logits(z, c)
    assert got.shape == (5, 3)
    torch.testing.assert_close(got, torch.tensor(want), rtol=1e-5, atol=1e-5)


def test_pmr_weights_go_to_the_weaker_modality():
    # p_a / p_v < 1: audio is weaker, its prototype loss gets alpha (the reference's beta)
    assert bal.pmr_weights(torch.tensor([2.0, 3.0]), 1.5).tolist() == [1.5, 0.0]
    assert bal.pmr_weights(torch.tensor([3.0, 2.0]), 1.5).tolist() == [0.0, 1.5]
    assert bal.pmr_weights(torch.tensor([2.0, 2.0]), 1.5).tolist() == [0.0, 0.0]  # a tie


def test_a_class_absent_from_the_prototype_batches_gives_no_nan():
    z = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]])
    y = torch.tensor([0, 0, 2])  # class 1 absent
    means, present = bal.class_means(z, y, 3)
    assert present.tolist() == [True, False, True]
    first = bal.smooth_prototypes(None, means, present, 0.2)
    assert first.tolist() == [[2.0, 0.0], [0.0, 0.0], [0.0, 2.0]]
    second_means, second_present = bal.class_means(torch.tensor([[0.0, 4.0]]),
                                                   torch.tensor([1]), 3)
    second = bal.smooth_prototypes(first, second_means, second_present, 0.2)
    # classes 0 and 2 absent now: kept; class 1 mixed with its earlier (zero) prototype
    torch.testing.assert_close(second, torch.tensor([[2.0, 0.0], [0.0, 0.8 * 4.0], [0.0, 2.0]]))
    assert torch.isfinite(bal.prototype_logits(z, second)).all()


# --- the training glue ----------------------------------------------------------------------

SPECS = {"audio": ModalitySpec("sequence", (5, 6)), "visual": ModalitySpec("sequence", (4, 6))}


def grads_after(method: str, fusion: str, seed: int = 0) -> tuple[dict, dict, torch.Tensor]:
    """One backward of the fusion CE, then the balancer's modulation: (before, after, k)."""
    torch.manual_seed(seed)
    model = MultimodalTransformer(SPECS, 3, ModelConfig(dim=16, depth=1, heads=2,
                                                        fusion=fusion))
    x = {m: torch.randn(8, *s.shape) for m, s in SPECS.items()}
    y = torch.randint(0, 3, (8,))
    balancer = Balancer(BalanceConfig(method=method, ogm_alpha=A), model, 3)
    balancer.active = True
    out = model(x)
    torch.nn.functional.cross_entropy(out.logits, y).backward()
    before = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    torch.manual_seed(1)
    balancer.modulate(out, y)
    after = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    branch = model.branch_logits(out)
    k = bal.ogm_coefficients(bal.modality_scores([branch["audio"], branch["visual"]], y), A)
    return before, after, k


@pytest.mark.parametrize("fusion", ["concat", "sum", "attn"])
def test_ogm_scales_exactly_the_strongest_modalitys_encoder_weights(fusion):
    before, after, k = grads_after("ogm", fusion)
    strong = ["audio", "visual"][int(torch.argmin(k))]
    assert k.min() < 1
    for name, g in before.items():
        param_dim = g.dim()
        if name.startswith(f"encoders.{strong}.") and param_dim > 1:
            torch.testing.assert_close(after[name], g * k.min(), rtol=0, atol=0)
        else:  # the other encoder, biases and norms, fusion, heads, probes: bit-identical
            assert torch.equal(after[name], g), name


@pytest.mark.parametrize("fusion", ["concat", "attn"])
def test_ogm_ge_adds_noise_to_both_encoders_and_nothing_else(fusion):
    before, after, _ = grads_after("ogm_ge", fusion)
    for name, g in before.items():
        moved = not torch.equal(after[name], g)
        is_encoder_weight = name.startswith("encoders.") and g.dim() > 1
        assert moved == is_encoder_weight, name


def test_concat_branch_logits_split_the_head():
    torch.manual_seed(0)
    model = MultimodalTransformer(SPECS, 3, ModelConfig(dim=16, depth=1, heads=2,
                                                        fusion="concat"))
    out = model({m: torch.randn(4, *s.shape) for m, s in SPECS.items()})
    branch = model.branch_logits(out)
    torch.testing.assert_close(branch["audio"] + branch["visual"], out.logits)


@pytest.mark.parametrize("method", ["ogm", "ogm_ge", "pmr"])
def test_rollingq_trains_beside_every_balancing_method(method):
    window = "balance.pmr_window" if method == "pmr" else "balance.ogm_window"
    cfg = build_config(overrides={"data.train_size": 400, "data.test_size": 200,
                                  "train.epochs": 3, "balance.method": method,
                                  window: [0.3, 1.0], "rollingq.beta": 0.0})
    result = fit(cfg)
    assert result.status == "finished" and result.summary["rotations"] == [3]
    first, *rest = result.history[1:]  # after epoch -1 (the untrained model)
    assert not any(k.startswith("balance_") for k in first)  # before the window (0.3 x 3)
    for h in rest:
        for m in ("audio", "visual"):
            assert math.isfinite(h[f"balance_ratio_{m}"])
            assert 0 <= h[f"balance_coef_{m}"] <= (cfg.balance.pmr_alpha if method == "pmr"
                                                   else 1) + 1e-6


def test_each_method_acts_only_in_its_window_of_the_run():
    """The references' `starts <= epoch <= ends`, as fractions of the run: OGM-GE's 0-50 of
    100 epochs and PMR's 0-70 of 130 by default, scaled to any run length."""
    ogm, pmr = BalanceConfig(method="ogm_ge"), BalanceConfig(method="pmr")
    assert [e for e in range(100) if ogm.acts(e, 100)] == list(range(51))
    assert [e for e in range(130) if pmr.acts(e, 130)] == list(range(71))
    assert [e for e in range(12) if ogm.acts(e, 12)] == list(range(7))
    late = BalanceConfig(method="ogm", ogm_window=[0.07, 0.57])  # 7 and 57 of 100, exactly
    assert [e for e in range(100) if late.acts(e, 100)] == list(range(7, 58))
    assert not any(BalanceConfig().acts(e, 10) for e in range(10))  # method none


def test_outside_its_window_ogm_ge_leaves_the_step_unmodulated():
    """An epoch outside OGM-GE's window: after ``start_epoch`` and ``modulate`` every gradient
    is bit-identical to the plain backward's (inside it they move: the test can fail)."""
    def run(epoch: int) -> tuple[dict, dict]:
        torch.manual_seed(0)
        model = MultimodalTransformer(SPECS, 3, ModelConfig(dim=16, depth=1, heads=2,
                                                            fusion="concat"))
        x = {m: torch.randn(8, *s.shape) for m, s in SPECS.items()}
        y = torch.randint(0, 3, (8,))
        balancer = Balancer(BalanceConfig(method="ogm_ge"), model, 3)
        balancer.start_epoch(epoch, lambda: iter(()), 1, contextlib.nullcontext, 10)
        out = model(x)
        torch.nn.functional.cross_entropy(out.logits, y).backward()
        before = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        balancer.modulate(out, y)
        return before, {n: p.grad for n, p in model.named_parameters() if p.grad is not None}

    before, after = run(6)  # the window is epochs 0-5 of 10
    assert all(torch.equal(after[n], g) for n, g in before.items())
    before, after = run(5)
    assert not all(torch.equal(after[n], g) for n, g in before.items())


def test_pmr_weighs_its_prototype_loss_by_its_own_alpha():
    """PMR's extra loss is pmr_alpha x the weaker modality's prototype CE; OGM's alpha plays
    no part in it."""
    torch.manual_seed(0)
    model = MultimodalTransformer(SPECS, 3, ModelConfig(dim=16, depth=1, heads=2,
                                                        fusion="concat"))
    x = {m: torch.randn(8, *s.shape) for m, s in SPECS.items()}
    y = torch.arange(8) % 3
    batch = type("B", (), {"batch": lambda self: x, "labels": y})()
    losses = {}
    for pmr_alpha, ogm_alpha in ((2.0, 0.8), (2.0, 0.1), (0.5, 0.8)):
        balancer = Balancer(BalanceConfig(method="pmr", pmr_alpha=pmr_alpha, ogm_alpha=ogm_alpha),
                            model, 3)
        balancer.start_epoch(0, lambda: iter([batch]), 1, contextlib.nullcontext, 10)
        with torch.no_grad():
            out = model(x)
            loss = balancer.extra_loss(out, y)
        logits = [bal.prototype_logits(out.features[m], balancer.prototypes[m])
                  for m in ("audio", "visual")]
        scores = bal.modality_scores(logits, y)
        weak = int(torch.argmin(scores))
        want = pmr_alpha * torch.nn.functional.cross_entropy(logits[weak], y)
        torch.testing.assert_close(loss, want)
        losses[(pmr_alpha, ogm_alpha)] = loss
    assert torch.equal(losses[(2.0, 0.8)], losses[(2.0, 0.1)])
    assert BalanceConfig().pmr_alpha == 2.0 and BalanceConfig().ogm_alpha == 0.8


def test_pmr_on_concat_learns_finite_prototypes():
    cfg = build_config(overrides={"data.train_size": 400, "data.test_size": 200,
                                  "train.epochs": 2, "balance.method": "pmr",
                                  "model.fusion": "concat", "rollingq.enabled": False})
    epochs = []
    result = fit(cfg, epochs.append)
    assert result.status == "finished"
    assert {"balance_coef_audio", "balance_coef_visual"} <= set(epochs[-1])


def test_a_class_seen_once_in_the_prototype_batches_gives_a_finite_gradient():
    """Issue 38, finding 7: a class seen once has that sample's feature as its prototype, and
    the plain √d² had a NaN gradient there (the run diverged at its first PMR step)."""
    z = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]], requires_grad=True)
    y = torch.tensor([0, 0, 2])
    means, present = bal.class_means(z.detach(), y, 3)  # class 2: z[2] alone
    prototypes = bal.smooth_prototypes(None, means, present, 0.0)
    torch.nn.functional.cross_entropy(bal.prototype_logits(z, prototypes), y).backward()
    assert torch.isfinite(z.grad).all()
    torch.testing.assert_close(bal.prototype_logits(z.detach(), prototypes)[2, 2],
                               torch.tensor(0.0), atol=2e-6, rtol=0)


def test_pmr_prototypes_loaded_from_a_checkpoint_go_to_the_models_device():
    """Issue 38, finding 1: a checkpoint loads onto the CPU; the prototypes must follow the
    model to its device (here ``meta``, standing in for CUDA), or the next epoch's smoothing
    mixes devices."""
    model = MultimodalTransformer(SPECS, 3, ModelConfig(dim=16, depth=1, heads=2)).to("meta")
    balancer = Balancer(BalanceConfig(method="pmr"), model, 3)
    balancer.load_state_dict({"prototypes": {"audio": torch.zeros(3, 16), "visual": None}})
    assert balancer.prototypes["audio"].device.type == "meta"
    assert balancer.prototypes["visual"] is None

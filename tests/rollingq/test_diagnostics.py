"""rollingq.diagnostics: noise recipes, evaluation helpers, and the paper's Table 4 counts.

The parameter counts are checked against METHOD.md §5 (Table 4: 59.87 M -> 60.46 M at CREMA-D
shapes). The exact integers were computed by hand from the layer shapes of METHOD.md §3:
8 ViT blocks of 7,087,872, two final LayerNorms, Conv2d 197,376, Conv3d 590,592, four fusion
Linears 590,592 each, head and two probes 4,614 each -> 59,870,226; plus 768² = 589,824.
"""

import math

import numpy as np
import pytest
import torch

from rollingq.config import DataConfig, ModelConfig
from rollingq.data.base import ModalitySpec, Split
from rollingq.data.synthetic import load_synthetic
from rollingq.diagnostics import (
    add_noise,
    attention_noise,
    confusion_matrix,
    count_parameters,
    cremad_shapes,
    curve_summary,
    f1_scores,
    flops_per_sample,
    noise_robustness,
    predict,
    scores,
)
from rollingq.model import MultimodalTransformer


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# add_noise ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("recipe", ["absolute", "additive", "mixing"])
def test_level_zero_returns_the_input(recipe):
    x = torch.randn(4, 3, 5)
    assert add_noise(x, 0.0, recipe, gen()) is x


def test_mixing_at_one_is_pure_unit_noise():
    x = torch.full((8, 64, 64), 100.0)
    out = add_noise(x, 1.0, "mixing", gen(3))
    assert torch.equal(out, torch.randn(x.shape, generator=gen(3)))
    assert abs(out.std().item() - 1.0) < 0.02 and abs(out.mean().item()) < 0.02


def test_mixing_interpolates():
    x = torch.randn(4, 10)
    noise = torch.randn(x.shape, generator=gen(1))
    torch.testing.assert_close(add_noise(x, 0.25, "mixing", gen(1)), 0.75 * x + 0.25 * noise)


def test_additive_noise_scales_with_each_samples_std():
    x = torch.randn(3, 50, 40) * torch.tensor([1.0, 10.0, 0.1]).view(3, 1, 1)
    level = 0.5
    delta = add_noise(x, level, "additive", gen(2)) - x
    noise = torch.randn(x.shape, generator=gen(2))
    std = x.reshape(3, -1).std(1, correction=0).view(3, 1, 1)
    torch.testing.assert_close(delta, level * std * noise, rtol=1e-4, atol=1e-5)
    ratio = delta.reshape(3, -1).std(1) / x.reshape(3, -1).std(1)  # ≈ level for every sample
    assert torch.allclose(ratio, torch.full((3,), level), rtol=0.05)
    # Scaling the input scales the noise: the recipe is relative to the input.
    torch.testing.assert_close(
        add_noise(10 * x, level, "additive", gen(2)) - 10 * x, 10 * delta, rtol=1e-4, atol=1e-4
    )


@pytest.mark.parametrize("level", [0.1, 0.5, 2.0])
def test_absolute_noise_has_std_level_whatever_the_input(level):
    """MultiBench's white noise: x + λ N(0, 1), the same on a constant input of any scale."""
    for value in (0.0, 1000.0):
        x = torch.full((16, 64, 64), value)
        delta = add_noise(x, level, "absolute", gen(4)) - x
        assert delta.std().item() == pytest.approx(level, rel=0.01)
        assert abs(delta.mean().item()) < 0.01 * level + 1e-3 * value * 1e-3
    torch.testing.assert_close(add_noise(x, 0.5, "absolute", gen(4)),
                               x + 0.5 * torch.randn(x.shape, generator=gen(4)))


@pytest.mark.parametrize("recipe", ["absolute", "additive", "mixing"])
def test_noise_is_deterministic_given_the_generator(recipe):
    x = torch.randn(4, 6, 7)
    a, b = add_noise(x, 0.7, recipe, gen(5)), add_noise(x, 0.7, recipe, gen(5))
    assert torch.equal(a, b)
    assert not torch.equal(a, add_noise(x, 0.7, recipe, gen(6)))


def test_unknown_recipe_and_negative_level_are_errors():
    with pytest.raises(ValueError, match="absolute, additive, mixing"):
        add_noise(torch.ones(2, 3), 0.5, "salt")
    with pytest.raises(ValueError, match="level >= 0"):
        add_noise(torch.ones(2, 3), -0.1, "mixing")


# parameter and FLOP counts -----------------------------------------------------------------------
def cremad_model(**kw):
    with torch.device("meta"):  # shapes only: no memory, no init cost
        return MultimodalTransformer(cremad_shapes(), 6, ModelConfig(**kw))


def test_cremad_shapes_give_the_published_token_counts():
    model = cremad_model()
    assert model.encoders["audio"].num_tokens == 177
    assert model.encoders["visual"].num_tokens == 589


def test_parameter_count_matches_table_4():
    counts = count_parameters(cremad_model())
    assert counts["paper"] == 59_870_226
    assert counts["paper_with_rotation"] == 60_460_050
    assert round(counts["paper"] / 1e6, 2) == 59.87
    assert round(counts["paper_with_rotation"] / 1e6, 2) == 60.46
    # all_tensors adds tokens, positional embeddings, the rotation matrix and its count.
    tokens = 3 * 768 + (177 + 589) * 768  # two encoder [cls], the fusion [cls], positions
    assert counts["all_tensors"] == counts["paper_with_rotation"] + tokens + 1
    assert counts["trainable"] == counts["paper"] + tokens


def test_mbt_parameter_count_matches_table_4():
    # Table 4: MBT 114.21 M = 4 unimodal + 4 bottleneck blocks a stream (BASELINES.md); by hand
    # from Vanilla MT's 59,870,226: minus the four fusion Linears and head (2,366,982), plus 8
    # one-head blocks (7,087,872 each) and the concat head 2 * 768 * 6 + 6 = 9,222.
    by_hand = 59_870_226 - 4 * 590_592 - 4_614 + 8 * 7_087_872 + 9_222
    counts = count_parameters(cremad_model(fusion="mbt", fusion_layers=4))
    assert counts["paper"] == by_hand == 114_215_442
    assert math.floor(counts["paper"] / 1e4) / 100 == 114.21  # the paper truncates
    # the published default of 2 bottleneck layers: 85.86 M
    assert count_parameters(cremad_model(fusion="mbt", fusion_layers=2))["paper"] == (
        by_hand - 4 * 7_087_872)


def test_mbt_runs_its_bottleneck_before_each_streams_final_norm():
    model = small_model("mbt", fusion_layers=2).eval()
    x = {"audio": torch.randn(3, 8, 16), "visual": torch.randn(3, 8, 16)}
    with torch.no_grad():
        out = model(x)
        raw = {m: model.encoders[m](x[m], norm=False) for m in x}
        fused = model.bottleneck(raw)
        for m in x:
            torch.testing.assert_close(out.features[m], model.encoders[m].norm(fused[m])[:, 0])
            torch.testing.assert_close(out.probe_logits[m],
                                       model.probes[m](model.encoders[m].norm(fused[m])[:, 0]))
    assert not any(name.startswith("bottleneck.norm") for name, _ in model.named_parameters())


def test_mmml_parameter_count_matches_table_4():
    # Table 4: MMML 77.88 M. By hand: Vanilla MT without its fusion attention and head
    # (59,870,226 - 4 * 590,592 - 4,614 = 57,498,630, the two probes included); one cross-modal
    # layer, per modality a cross- and a self-attention (4 Linears + LayerNorm: 2,363,904 each)
    # and a feed-forward (768 -> 3072 -> 768 + LayerNorm: 4,723,968); the read-out MLP
    # 1536 -> 768 -> 384 -> 6.
    cme = 2 * (2 * (4 * 590_592 + 1_536) + (768 * 3072 + 3072) + (3072 * 768 + 768) + 1_536)
    mlp = (1536 * 768 + 768) + (768 * 384 + 384) + (384 * 6 + 6)
    by_hand = 59_870_226 - 4 * 590_592 - 4_614 + cme + mlp
    counts = count_parameters(cremad_model(fusion="mmml", fusion_layers=1))
    assert cme == 18_903_552 and counts["paper"] == by_hand == 77_884_818
    assert round(counts["paper"] / 1e6, 2) == 77.88


def test_jmt_parameter_count_under_the_papers_counter():
    # Table 4: JMT 62.23 M. thop, the paper's counter, has no rule for nn.MultiheadAttention
    # (nor for its out_proj, a Linear subclass), so JMT's three cross-attentions count nothing.
    # By hand from Vanilla MT without its fusion attention and head (57,498,630, the probes
    # included): the joint map 1536 -> 768, the read-out 4608 -> 768, the head 768 -> 6.
    by_hand = 59_870_226 - 4 * 590_592 - 4_614 + (1536 * 768 + 768) + (4608 * 768 + 768) + 4_614
    counts = count_parameters(cremad_model(fusion="jmt", fusion_layers=1))
    assert counts["paper"] == by_hand == 62_227_986
    assert round(counts["paper"] / 1e6, 2) == 62.23  # (truncated, as MBT's 114.21 is: 62.22)
    mha = 4 * 768 * 768 + 4 * 768  # in_proj and out_proj weights and biases
    tokens = 2 * 768 + (177 + 589) * 768  # the encoders' [cls] and positional embeddings
    assert counts["trainable"] == counts["paper"] + 3 * mha + tokens  # what really trains
    # the published default, one encoder layer each for a, b and the joint sequence (its
    # attention uncounted again): feed-forward 768 -> 48 -> 768 and two LayerNorms a layer
    layer = (768 * 48 + 48) + (48 * 768 + 768) + 2 * 1_536
    counts2 = count_parameters(cremad_model(fusion="jmt", fusion_layers=2))
    assert counts2["paper"] == by_hand + 3 * layer == 62_460_834


def test_concat_has_no_rotation():
    counts = count_parameters(cremad_model(fusion="concat"))
    assert counts["paper_with_rotation"] == counts["paper"]


def small_model(fusion="attn", seed=0, fusion_layers=1):
    torch.manual_seed(seed)
    spec = ModalitySpec("sequence", (8, 16))
    cfg = ModelConfig(
        dim=32, depth=1, heads=4, fusion=fusion, fusion_layers=fusion_layers, fusion_dropout=0.0
    )
    return MultimodalTransformer({"audio": spec, "visual": spec}, 4, cfg)


def test_flops_are_positive_and_a_train_step_costs_more():
    model = small_model()
    inputs = {"audio": torch.randn(3, 8, 16), "visual": torch.randn(3, 8, 16)}
    forward = flops_per_sample(model, inputs)
    step = flops_per_sample(model, inputs, train_step=True)
    assert forward > 0 and step > forward
    assert all(p.grad is None for p in model.parameters())
    # Per sample: a batch of 6 costs the same per sample as a batch of 3.
    double = {m: torch.cat([x, x]) for m, x in inputs.items()}
    assert flops_per_sample(model, double) == pytest.approx(forward, rel=0.05)


# evaluation --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained():
    """A small attention model trained for a second on the synthetic data set.

    One thread: a model this small gains nothing from more, and on a loaded machine OpenMP
    threads waiting on each other make every step up to 100x slower.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = load_synthetic(DataConfig(train_size=800, test_size=300))
        model = small_model()
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        g = torch.Generator().manual_seed(0)
        for _ in range(60):
            idx = torch.randint(len(data.train), (64,), generator=g)
            batch = data.train.take(idx)
            loss = torch.nn.functional.cross_entropy(model(batch.inputs).logits, batch.labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    return model, data.test


def test_predict_shapes_flag_and_transform(trained):
    model, split = trained
    model.train()
    seen = []

    def transform(inputs, index):
        seen.append(index.clone())
        return inputs

    logits, shares = predict(model, split, 128, transform)
    assert model.training  # restored
    assert logits.shape == (len(split), 4) and logits.dtype == torch.float32
    assert set(shares) == {"audio", "visual"} and shares["audio"].shape == (len(split),)
    total = shares["audio"] + shares["visual"]  # the fusion [cls] takes the rest
    assert bool(((total > 0) & (total <= 1 + 1e-5)).all())
    assert torch.equal(torch.cat(seen), torch.arange(len(split)))
    again, _ = predict(model, split, 64)  # batch size does not change eval results
    torch.testing.assert_close(again, logits)


def test_predict_without_attention_has_no_shares():
    model = small_model("concat")
    split = Split(
        {"audio": torch.randn(5, 8, 16), "visual": torch.randn(5, 8, 16)},
        torch.zeros(5, dtype=torch.long),
    )
    logits, shares = predict(model, split, 2)
    assert logits.shape == (5, 4) and shares is None


def test_noise_robustness(trained):
    model, split = trained
    logits, _ = predict(model, split, 256)
    clean = scores(logits, split.labels)
    assert clean["acc"] > 0.4  # well above chance (0.25): the model learned something
    levels = [0.0, 0.5, 3.0]
    for recipe in ("absolute", "additive", "mixing"):
        curve = noise_robustness(model, split, "audio", levels, recipe=recipe)
        assert list(curve) == levels and all(0 <= v["acc"] <= 1 for v in curve.values())
        assert curve[0.0] == clean
        assert noise_robustness(model, split, "audio", levels, recipe=recipe) == curve
        assert noise_robustness(model, split, "audio", levels, recipe=recipe,
                                clean=logits) == curve  # the clean pass reused at λ = 0
    assert curve[3.0]["acc"] < curve[0.0]["acc"]  # mixing at λ = 3 all but erases audio
    with pytest.raises(ValueError, match="audio, visual"):
        noise_robustness(model, split, "text", levels)


def test_curve_summary_area_and_drops():
    out = curve_summary([0.0, 1.0, 0.5], [0.9, 0.5, 0.8])  # any order of levels
    assert out["auc"] == pytest.approx(0.5 * (0.9 + 0.8) / 2 + 0.5 * (0.8 + 0.5) / 2)
    assert out["drop"] == pytest.approx(0.4) and out["rel_drop"] == pytest.approx(0.4 / 0.9)
    assert curve_summary([0.5, 1.0], [0.8, 0.5])["drop"] is None  # no clean level


def test_macro_f1_against_a_confusion_matrix_counted_by_hand():
    g = torch.Generator().manual_seed(7)
    labels = torch.randint(0, 4, (300,), generator=g)
    pred = torch.where(torch.rand(300, generator=g) < 0.6, labels,
                       torch.randint(0, 5, (300,), generator=g))  # class 4: predicted, never true
    counts = [[0] * 5 for _ in range(5)]
    for t, p_ in zip(labels.tolist(), pred.tolist(), strict=True):
        counts[t][p_] += 1
    f1 = []
    for c in range(5):
        tp = counts[c][c]
        fp = sum(counts[r][c] for r in range(5)) - tp
        fn = sum(counts[c]) - tp
        f1.append(2 * tp / (2 * tp + fp + fn))
    support = [sum(row) for row in counts]
    conf = confusion_matrix(pred, labels, 5)
    assert conf.tolist() == counts
    got = f1_scores(conf)
    assert got["macro"].item() == pytest.approx(sum(f1) / 5)  # class 4 counts (it is predicted)
    assert got["weighted"].item() == pytest.approx(
        sum(f * n for f, n in zip(f1, support, strict=True)) / 300)
    logits = torch.nn.functional.one_hot(pred, 5).float()
    assert scores(logits, labels)["f1"] == pytest.approx(sum(f1) / 5)
    absent = f1_scores(confusion_matrix(labels, labels, 6))  # class 5 nowhere: left out
    assert absent["macro"].item() == 1.0


class KnownAttention(torch.nn.Module):
    """A stand-in fusion whose [cls] attention is a known function of its inputs: audio's share
    is 0.1 + 0.8 sigmoid(mean audio input), visual gets the rest but 0.05."""

    modalities = ["audio", "visual"]

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, inputs):
        from types import SimpleNamespace

        audio = 0.1 + 0.8 * torch.sigmoid(inputs["audio"].mean((1, 2)))
        share = {"audio": audio, "visual": 0.95 - audio}
        return SimpleNamespace(logits=torch.stack([audio, 1 - audio], 1), share=share)


def test_attention_noise_per_modality_on_a_model_whose_attention_is_known():
    from scipy import stats

    n = 200
    g = torch.Generator().manual_seed(3)
    audio = torch.randn(n, 4, 5, generator=g) * 0.5 + 1.0
    visual = torch.randn(n, 4, 5, generator=g)
    split = Split({"audio": audio, "visual": visual}, torch.zeros(n, dtype=torch.long))
    model = KnownAttention()
    result = attention_noise(model, split, level=1.0, recipe="mixing", batch_size=n, seed=2)

    def audio_share(x):
        return 0.1 + 0.8 * torch.sigmoid(x.mean((1, 2))).double()

    clean = audio_share(audio)
    # mixing at λ = 1 replaces a modality by N(0, 1) drawn from the seeded generator of its
    # condition (seed * 1000 + its position), one batch of the whole split
    noise = {j: torch.randn(audio.shape, generator=torch.Generator().manual_seed(2000 + j))
             for j in (0, 1)}
    expected = {
        "audio": (clean, audio_share(noise[0])),  # audio noised
        "visual": (0.95 - clean, 0.95 - clean),  # noising visual leaves every share alone
    }
    for m, (before, after) in expected.items():
        got = result["per_modality"][m]
        shift = after - before
        assert got["shift"] == pytest.approx(shift.mean().item(), abs=1e-6)
        if m == "audio":
            r = stats.pointbiserialr(np.r_[np.zeros(n), np.ones(n)],
                                     torch.cat([before, after]).numpy()).statistic
            assert got["r"] == pytest.approx(r, abs=1e-6)
            half = stats.t.ppf(0.975, n - 1) * shift.std().item() / math.sqrt(n)
            assert got["shift_low"] == pytest.approx(shift.mean().item() - half, abs=1e-6)
            assert got["shift_high"] == pytest.approx(shift.mean().item() + half, abs=1e-6)
            assert got["r"] < -0.5 and got["shift"] < -0.1  # attention leaves noised audio
        else:
            assert abs(got["shift"]) < 1e-6 and got["shift_low"] is None  # no spread
    assert (result["samples"], result["evaluations"]) == (n, 3 * n)
    # the pooled variant: each sample noised on one modality, chosen with the seed
    choice = torch.randint(2, (n,), generator=torch.Generator().manual_seed(2))
    a = torch.where(choice == 0, audio_share(noise[0]), clean)
    shares = torch.cat([a, 0.95 - a]).numpy()
    flags = torch.cat([choice == 0, choice == 1]).double().numpy()
    assert result["pooled"]["r"] == pytest.approx(np.corrcoef(shares, flags)[0, 1], abs=1e-6)
    assert result["pooled"]["adaptivity"] == -result["pooled"]["r"]
    assert result["pooled"]["pairs"] == 2 * n


def test_attention_noise_is_seeded_and_counts_draws(trained):
    model, split = trained
    result = attention_noise(model, split, level=1.0, recipe="mixing", draws=2)
    assert result == attention_noise(model, split, level=1.0, recipe="mixing", draws=2)
    assert result["evaluations"] == len(split) * (1 + 2 * 2)
    for v in result["per_modality"].values():
        assert -1 <= v["r"] <= 1 and v["shift_low"] <= v["shift"] <= v["shift_high"]


def test_attention_noise_is_none_without_attention():
    model = small_model("concat")
    split = Split(
        {"audio": torch.randn(6, 8, 16), "visual": torch.randn(6, 8, 16)},
        torch.zeros(6, dtype=torch.long),
    )
    assert attention_noise(model, split) is None


@pytest.mark.parametrize("space", ["paper_table1", "paper_table1_text"])
def test_the_table_1_spaces_run_mbt_with_its_2_bottleneck_layers(space):
    """Table 1's MBT row (2 fusion layers, the published default), not a 1-layer MBT: its
    model at CREMA-D shapes has 85,863,954 parameters under the paper's counter."""
    from study.specfile import load_spec

    values = load_spec(space).variants["mbt"]
    model = {k.removeprefix("model."): v for k, v in values.items() if k.startswith("model.")}
    assert count_parameters(cremad_model(**model))["paper"] == 85_863_954

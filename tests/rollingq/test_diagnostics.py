"""rollingq.diagnostics: noise recipes, evaluation helpers, and the paper's Table 4 counts.

The parameter counts are checked against METHOD.md §5 (Table 4: 59.87 M -> 60.46 M at CREMA-D
shapes). The exact integers were computed by hand from the layer shapes of METHOD.md §3:
8 ViT blocks of 7,087,872, two final LayerNorms, Conv2d 197,376, Conv3d 590,592, four fusion
Linears 590,592 each, head and two probes 4,614 each -> 59,870,226; plus 768² = 589,824.
"""

import math

import pytest
import torch

from rollingq.config import DataConfig, ModelConfig
from rollingq.data.base import ModalitySpec, Split
from rollingq.data.synthetic import load_synthetic
from rollingq.diagnostics import (
    add_noise,
    attention_noise_correlation,
    count_parameters,
    cremad_shapes,
    flops_per_sample,
    noise_robustness,
    predict,
)
from rollingq.model import MultimodalTransformer


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# add_noise ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("recipe", ["additive", "mixing"])
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


@pytest.mark.parametrize("recipe", ["additive", "mixing"])
def test_noise_is_deterministic_given_the_generator(recipe):
    x = torch.randn(4, 6, 7)
    a, b = add_noise(x, 0.7, recipe, gen(5)), add_noise(x, 0.7, recipe, gen(5))
    assert torch.equal(a, b)
    assert not torch.equal(a, add_noise(x, 0.7, recipe, gen(6)))


def test_unknown_recipe_and_negative_level_are_errors():
    with pytest.raises(ValueError, match="additive, mixing"):
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
    clean = (logits.argmax(1) == split.labels).float().mean().item()
    assert clean > 0.4  # well above chance (0.25): the model learned something
    levels = [0.0, 0.5, 3.0]
    for recipe in ("additive", "mixing"):
        acc = noise_robustness(model, split, "audio", levels, recipe=recipe)
        assert list(acc) == levels and all(0 <= a <= 1 for a in acc.values())
        assert acc[0.0] == clean
        assert noise_robustness(model, split, "audio", levels, recipe=recipe) == acc
    assert acc[3.0] < acc[0.0]  # mixing at λ = 3 all but erases the easy modality
    with pytest.raises(ValueError, match="audio, visual"):
        noise_robustness(model, split, "text", levels)


def test_attention_noise_correlation(trained):
    model, split = trained
    result = attention_noise_correlation(model, split, level=1.0, recipe="mixing")
    assert math.isfinite(result["r"]) and -1 <= result["r"] <= 1
    assert result["adaptivity"] == -result["r"]
    assert result["pairs"] == 2 * len(split)
    assert (result["level"], result["recipe"]) == (1.0, "mixing")
    assert attention_noise_correlation(model, split, level=1.0, recipe="mixing") == result


def test_attention_noise_correlation_is_none_without_attention():
    model = small_model("concat")
    split = Split(
        {"audio": torch.randn(6, 8, 16), "visual": torch.randn(6, 8, 16)},
        torch.zeros(6, dtype=torch.long),
    )
    assert attention_noise_correlation(model, split) is None

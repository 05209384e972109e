"""The device rules a CPU can check for the CUDA paths (issue 38): which precision ``auto``
picks on a card of a given compute capability, and torch.compile's graphs and fallback."""

from __future__ import annotations

import pytest
import torch

from rollingq.config import build_config
from rollingq.device import uses_bf16

CUDA = torch.device("cuda", 0)


@pytest.mark.parametrize(("card", "capability", "bf16"), [
    ("T4", (7, 5), False), ("V100", (7, 0), False), ("A10G", (8, 6), True),
    ("A100", (8, 0), True), ("H100", (9, 0), True)])
def test_precision_auto_picks_bf16_only_from_ampere_on(card, capability, bf16):
    """Finding 8: bf16 is emulated before Ampere, and attention falls back to its math kernel;
    ``auto`` was bf16 on any CUDA card."""
    assert uses_bf16(build_config(), CUDA, capability) is bf16, card


def test_an_explicit_precision_is_kept_on_any_card():
    assert uses_bf16(build_config(overrides={"train.precision": "bf16"}), CUDA, (7, 0))
    assert not uses_bf16(build_config(overrides={"train.precision": "fp32"}), CUDA, (9, 0))
    assert not uses_bf16(build_config(), torch.device("cpu"))


def _counting(graphs: list[int]):
    """A Dynamo backend that runs each graph as traced and records its batch size."""
    def backend(gm, example_inputs):
        graphs.append(next(int(x.shape[0]) for x in example_inputs
                           if isinstance(x, torch.Tensor) and x.dim() > 1))
        return gm.forward
    return backend


def _compiled_fit(monkeypatch, graphs: list[int], **over):
    from rollingq import device, train

    monkeypatch.setattr(train, "compiled_or_eager",
                        lambda m: device.compiled_or_eager(m, _counting(graphs)))
    cfg = build_config(overrides={"data.train_size": 90, "data.test_size": 40, "train.epochs": 2,
                                  "train.batch_size": 32, "train.compile": True, **over})
    return train.fit(cfg)


def test_a_compiled_fit_compiles_one_graph_whatever_its_last_batch(monkeypatch):
    """Finding 5: 90 training samples in batches of 32 end with a partial batch, which made
    Dynamo compile a second graph every run; it now runs eagerly."""
    graphs: list[int] = []
    result = _compiled_fit(monkeypatch, graphs)
    assert result.status == "finished"
    assert graphs and set(graphs) == {32}, graphs


def test_compiled_fits_in_one_process_do_not_pile_up_graphs(monkeypatch):
    """Finding 5: a reused Ray worker fits trial after trial; each model's graphs stayed cached
    on ``forward`` until Dynamo's recompile limit (8), after which it ran eagerly unannounced."""
    from torch._dynamo.eval_frame import _debug_get_cache_entry_list

    from rollingq.model import MultimodalTransformer

    code = MultimodalTransformer.forward.__code__
    graphs: list[int] = []
    _compiled_fit(monkeypatch, graphs, **{"train.epochs": 1})
    after_one = len(_debug_get_cache_entry_list(code))
    for seed in (1, 2):
        _compiled_fit(monkeypatch, graphs, **{"train.epochs": 1, "train.seed": seed})
    assert after_one >= 1
    assert len(_debug_get_cache_entry_list(code)) == after_one

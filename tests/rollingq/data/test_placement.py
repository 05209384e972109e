"""Where the data live while training: resident on the device, or streamed from the host."""

import pytest
import torch

from rollingq.config import ConfigError, build_config
from rollingq.data import base, load_data
from rollingq.data.base import Split, carve_val
from rollingq.device import place
from rollingq.train import fit
from tests.rollingq.data.fakes import config, make_cremad


def numbered(n: int = 23) -> Split:
    """A split whose rows say which row they are: input row i is filled with i."""
    x = torch.arange(n, dtype=torch.float32)[:, None, None].expand(n, 2, 3).contiguous()
    return Split({"a": x, "a_meta": torch.arange(n)[:, None]}, torch.arange(n) % 5)


def untimed(result) -> list[dict]:
    """A run's history without its timings, which differ between any two runs."""
    return [{k: v for k, v in h.items() if k not in ("epoch_seconds", "samples_per_s")}
            for h in result.history]


def test_subset_is_lazy_and_composes():
    split = numbered()
    sub = split.subset(torch.tensor([3, 5, 7, 11, 13]))
    assert sub.inputs["a"] is split.inputs["a"]  # nothing read or copied
    subsub = sub.subset(torch.tensor([4, 0]))
    assert subsub.rows.tolist() == [13, 3]
    b = subsub.take(torch.tensor([0, 1]))
    assert b.inputs["a"][:, 0, 0].tolist() == [13.0, 3.0]
    assert b.labels.tolist() == [13 % 5, 3 % 5]
    keep, held = carve_val(split, 0.2)
    assert keep.inputs["a"] is split.inputs["a"] and held.inputs["a"] is split.inputs["a"]
    assert sorted(keep.rows.tolist() + held.rows.tolist()) == list(range(23))


@pytest.mark.parametrize("lazy", [False, True])
def test_streamed_batches_equal_resident_ones_in_order(lazy):
    split = numbered(50)
    if lazy:
        split = split.subset(torch.randperm(50, generator=torch.Generator().manual_seed(1))[:41])
    streamed = split.stream_to("cpu")
    assert streamed.device == torch.device("cpu")
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(0))
    # 41 or 50 samples in batches of 4: more batches than the prefetch depth, a short last one
    want = [(b.inputs["a"], b.inputs["a_meta"], b.labels) for b in split.batches(4, order)]
    got = [(b.inputs["a"], b.inputs["a_meta"], b.labels) for b in streamed.batches(4, order)]
    assert len(got) == len(want) == -(-len(split) // 4) > base.PREFETCH
    for (wa, wm, wl), (ga, gm, gl) in zip(want, got, strict=True):
        assert torch.equal(wa, ga) and torch.equal(wm, gm) and torch.equal(wl, gl)
    stops = streamed.batches(4, order)  # a consumer that stops early leaves nothing running
    next(stops)
    stops.close()


def test_to_materialises_only_the_split_rows_in_chunks(monkeypatch):
    monkeypatch.setattr(base, "COPY_ROWS", 3)
    split = numbered(20).subset(torch.tensor([19, 2, 7, 7, 0, 11, 4]))
    resident = split.stream_to("cpu").to("cpu")  # a streamed split is gathered once
    assert resident.rows is None and resident.device is None
    assert resident.inputs["a"][:, 0, 0].tolist() == [19.0, 2.0, 7.0, 7.0, 0.0, 11.0, 4.0]
    assert resident.nbytes == 7 * (2 * 3 * 4 + 8)
    assert split.to("cpu") is split  # on the inputs' own device: stays as it is


def test_a_carved_training_split_stays_memory_mapped(tmp_path):
    make_cremad(tmp_path, n_train=24, n_test=6)
    data = load_data(config("cremad", tmp_path).data)
    assert len(data.train) == 18 and data.train.rows is not None and len(data.train.rows) == 18
    whole = load_data(config("cremad", tmp_path, **{"data.val_fraction": 0.0}).data)
    for m in ("audio", "visual"):  # all 24 stored cache rows, not a copy of the 18 used
        assert data.train.inputs[m].shape[0] == 24
        assert torch.equal(data.train.inputs[m], whole.train.inputs[m])
    assert data.train.labels.tolist() == whole.train.labels[data.train.rows].tolist()
    torch.manual_seed(0)
    b = data.train.take(torch.arange(18)).batch()
    assert b["visual"].shape == (18, 3, 3, 224, 224)


def test_place_resident_on_cpu_and_streamed_when_asked():
    data = load_data(build_config(overrides={"data.train_size": 40}).data)
    auto = place(data, torch.device("cpu"), "auto")
    assert auto.train.device is None and auto.train.inputs["audio"] is data.train.inputs["audio"]
    never = place(data, torch.device("cpu"), "never")
    assert all(s.device == torch.device("cpu") for s in (never.train, never.val, never.test))


def test_streamed_training_is_bit_identical_to_resident():
    over = {"data.train_size": 300, "data.test_size": 100, "train.epochs": 3,
            "rollingq.beta": 0.0, "rollingq.anchor_stat": "full_pass"}
    runs = [fit(build_config(overrides={**over, "train.data_on_device": where}))
            for where in ("always", "never")]
    assert untimed(runs[0]) == untimed(runs[1]) and runs[0].summary["epochs"] == 3
    assert runs[0].summary["rotations"] == runs[1].summary["rotations"] != [0]


def test_data_on_device_is_validated():
    with pytest.raises(ConfigError, match=r"data_on_device='gpu'.*valid: auto, always, never"):
        build_config(overrides={"train.data_on_device": "gpu"})


@pytest.mark.gpu
def test_on_cuda_auto_decides_by_budget_and_streamed_batches_match(monkeypatch):
    from rollingq import device as placement

    device = torch.device("cuda")  # no index, as users write it: the budget must cope
    data = load_data(build_config(overrides={"data.train_size": 300}).data)
    assert place(data, device, "auto").train.device is None  # tiny: resident
    monkeypatch.setattr(placement, "DEVICE_DATA_SHARE", 1e-12)
    streamed = place(data, device, "auto")
    assert streamed.train.device == device
    resident = place(data, device, "always")
    order = torch.randperm(len(data.train), device=device)
    for a, b in zip(resident.train.batches(64, order), streamed.train.batches(64, order),
                    strict=True):
        assert all(x.is_cuda for x in b.inputs.values())
        assert all(torch.equal(a.inputs[m], b.inputs[m]) for m in a.inputs)
        assert torch.equal(a.labels, b.labels)


def test_streamed_real_data_trains_exactly_like_resident(tmp_path):
    """CREMA-D format, a carved (lazy) training split, the train transform's random crops: the
    prefetching threads change nothing, the same seed gives the same run."""
    make_cremad(tmp_path, n_train=24, n_test=6)
    over = {"train.epochs": 2, "train.batch_size": 4, "train.device": "cpu",
            "data.frame_size": 32}
    runs = [fit(config("cremad", tmp_path, **over, **{"train.data_on_device": where}))
            for where in ("always", "never")]
    assert runs[1].data.train.device == torch.device("cpu") and runs[0].data.train.device is None
    assert untimed(runs[0]) == untimed(runs[1]) and runs[0].summary["epochs"] == 2


def test_streamed_batches_are_copied_on_one_stream_per_device(monkeypatch):
    """Issue 38, finding 10: a new CUDA stream at every ``batches`` call stranded each epoch's
    batch buffers in the allocator's cache of that stream; the copy stream is made once per
    device (a stand-in for ``torch.cuda.Stream`` counts them: no CUDA here)."""
    made = []
    monkeypatch.setattr(torch.cuda, "Stream", lambda device: made.append(device) or object())
    base.copy_stream.cache_clear()
    cuda = torch.device("cuda", 0)
    assert base.copy_stream(cuda) is base.copy_stream(cuda)
    assert made == [cuda]
    base.copy_stream.cache_clear()

"""Opt-in CUDA checks (``pytest -m gpu``; ``bash bench/gpu.sh OUT`` runs them on the GPU machine):
the paths that only run on a GPU (bf16 autocast, fused optimizers, the one-kernel crop, pinned
streaming) train and agree with the CPU where they should."""

import pytest
import torch

from rollingq.config import build_config
from rollingq.data.frames import AVTransform
from rollingq.train import fit
from tests.rollingq.data.fakes import config, make_cremad

pytestmark = pytest.mark.gpu


def test_synthetic_training_on_cuda_rotates_and_learns():
    result = fit(build_config(overrides={"train.device": "cuda"}))
    assert result.status == "finished"
    last = result.history[-1]
    assert last["rotations"] >= 1 and last["test_acc_at_best_val"] > 0.9
    assert abs(last["val_air"]) < 0.3


def test_the_cuda_crop_matches_the_cpu_path_in_distribution():
    torch.manual_seed(0)
    smooth = torch.rand(64 * 3, 3, 6, 6) * 255  # smooth images: antialiasing (CPU) is moot
    x = torch.nn.functional.interpolate(smooth, size=(48, 48), mode="bilinear")
    x = x.round().to(torch.uint8).view(64, 3, 3, 48, 48)
    meta = torch.tensor([3, 360, 480], dtype=torch.int32).expand(64, 3).contiguous()
    batch = {"visual": x, "visual_meta": meta}
    cpu = AVTransform(True, 32)(batch)["visual"]
    gpu = AVTransform(True, 32)({k: v.cuda() for k, v in batch.items()})["visual"]
    assert gpu.shape == cpu.shape == (64, 3, 3, 32, 32) and gpu.dtype == torch.float32
    assert torch.isfinite(gpu).all()
    # the same pixels, other random crops: the statistics of the normalised values agree
    assert abs(gpu.mean().item() - cpu.mean().item()) < 0.05
    assert abs(gpu.std().item() / cpu.std().item() - 1) < 0.2
    evaluated = AVTransform(False, 48)({"visual": x.cuda()})["visual"].cpu()
    torch.testing.assert_close(evaluated, AVTransform(False, 48)({"visual": x})["visual"])


@pytest.mark.parametrize("where", ["always", "never"])
def test_real_data_trains_on_cuda_resident_and_streamed(tmp_path, where):
    make_cremad(tmp_path, n_train=24, n_test=6)
    cfg = config("cremad", tmp_path, **{"train.epochs": 2, "train.batch_size": 4,
                                        "train.device": "cuda", "data.frame_size": 32,
                                        "train.data_on_device": where})
    result = fit(cfg)
    assert result.status == "finished" and result.summary["epochs"] == 2
    assert (result.data.train.device is None) == (where == "always")


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_the_memory_estimate_is_within_15_percent_of_the_measured_peak(precision):
    """``python -m rollingq.memory`` against ``torch.cuda.max_memory_allocated`` of a real
    CREMA-D training step at batch 16 and the evaluation forward after it
    (``rollingq.memory.measure``; the full table: ``bench/memory.py --device cuda``)."""
    from rollingq.diagnostics import cremad_shapes
    from rollingq.memory import estimate, measure

    cfg = build_config(overrides={"data.name": "cremad", "data.root": "/nowhere",
                                  "train.batch_size": 16, "train.precision": precision,
                                  "train.device": "cuda", "train.data_on_device": "never"})
    est = estimate(cfg, specs=(cremad_shapes(), 6)).total
    peak = measure(cfg, cremad_shapes(), 6).peak
    assert abs(est / peak - 1) < 0.15, (est, peak)


def test_deterministic_gpu_runs_repeat_bit_for_bit_and_record_their_device():
    """``train.deterministic``: two GPU runs of one config end with identical weights (the pmr
    balancer included: its prototypes use index_add_), and the trial's device record names the
    GPU, the driver, CUDA and cuDNN."""
    from study.provenance import device_info

    over = {"train.device": "cuda", "train.deterministic": True, "train.epochs": 3,
            "balance.method": "pmr"}
    try:
        a, b = (fit(build_config(overrides=over)) for _ in range(2))
        for (name, x), y in zip(a.best_state.items(), b.best_state.values(), strict=True):
            assert torch.equal(x, y), name
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False
    info = device_info(torch.device("cuda", 0))
    assert info["device"] == "cuda" and info["gpu"] == torch.cuda.get_device_name(0)
    assert info["cuda"] == torch.version.cuda and info["cudnn"] and info["driver"]
    assert info["gpu_gib"] > 1

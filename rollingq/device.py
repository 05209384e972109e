"""Where and how a run computes: the device (``train.device``), bf16 autocast
(``train.precision``), the data resident on the device or streamed to it
(``train.data_on_device``), PyTorch's deterministic algorithms (``train.deterministic``), and
``torch.compile`` with its eager fallback (``train.compile``)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import torch

from rollingq.config import Config, ConfigError
from rollingq.data import DataBundle

log = logging.getLogger(__name__)

DEVICE_DATA_SHARE = 0.25  # train.data_on_device=auto: resident when the data fit in this share
CUBLAS_WORKSPACE = ":4096:8"  # the cuBLAS setting deterministic matrix products need


def resolve_device(name: str) -> torch.device:
    """``train.device`` as a device; CUDA with its index (the current device), which
    ``torch.cuda``'s per-device queries such as the memory fraction require."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError("train.device='cuda' but no CUDA device is available; use auto or cpu")
    return torch.device("cuda", torch.cuda.current_device())


BF16_CAPABILITY = (8, 0)  # Ampere: native bf16, and the flash / memory-efficient attention


def uses_bf16(cfg: Config, device: torch.device,
              capability: tuple[int, int] | None = None) -> bool:
    """bf16 autocast with ``precision: bf16``, or ``auto`` on a CUDA device of compute capability
    8.0 or more (``capability``: the device's, asked when not given); fp32 otherwise. Before
    Ampere (T4, V100) bf16 is emulated and attention falls back to its math kernel, which keeps
    the whole attention map: slower than fp32, and more memory than estimated."""
    p = cfg.train.precision
    if p != "auto" or device.type != "cuda":
        return p == "bf16"
    if capability is None:
        capability = torch.cuda.get_device_capability(device)
    return tuple(capability) >= BF16_CAPABILITY


def autocast_for(cfg: Config, device: torch.device):
    """A context factory: bf16 autocast where ``uses_bf16``, else nothing (fp32)."""
    if uses_bf16(cfg, device):
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext


def device_memory_budget(device: torch.device) -> int:
    """Bytes of ``device`` memory this process may use: the card's total times the process's
    memory fraction (a fractional-GPU trial's cap, see study/trainable.py)."""
    index = torch.cuda.current_device() if device.index is None else device.index
    total = torch.cuda.get_device_properties(index).total_memory
    fraction = torch.cuda.get_per_process_memory_fraction(index)  # needs an index
    return int(total * fraction)


def place(bundle: DataBundle, device: torch.device, on_device: str) -> DataBundle:
    """The bundle with its splits resident on ``device`` or streamed to it from the host.

    ``on_device``: ``always``, ``never``, or ``auto``: resident when the three splits take at most
    ``DEVICE_DATA_SHARE`` of the device memory the process may use (CREMA-D's ~4 GB on a whole or
    a quarter H100), otherwise streamed (Kinetics-Sounds' ~22 GB; several trials sharing a GPU).
    On CPU ``auto`` keeps the host arrays as they are (memory-mapped), which is resident.
    """
    if on_device == "auto":
        if device.type == "cpu":
            on_device = "always"
        else:
            budget = device_memory_budget(device)
            on_device = "always" if bundle.nbytes <= DEVICE_DATA_SHARE * budget else "never"
            log.info("data: %.2f GB, device budget %.2f GB -> %s", bundle.nbytes / 1e9,
                     budget / 1e9, "resident on the device" if on_device == "always"
                     else "streamed from the host, a batch at a time")
    move = (lambda s: s.to(device)) if on_device == "always" else (lambda s: s.stream_to(device))
    return DataBundle(bundle.specs, bundle.num_classes, move(bundle.train), move(bundle.val),
                      move(bundle.test), bundle.favoured)


def set_deterministic(on: bool) -> None:
    """PyTorch's deterministic algorithms on or off for this process (``train.deterministic``;
    set at every run: a Ray worker trains trial after trial in one process). On, an op without
    a deterministic kernel raises a RuntimeError naming it; cuBLAS needs its workspace setting
    before its first use in the process, which ``CUBLAS_WORKSPACE_CONFIG`` gives (set here when
    unset, and by the study driver for its workers)."""
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(on)
    torch.backends.cudnn.deterministic = on


class CompiledOrEager:
    """``torch.compile(model)``, falling back to eager (with a warning) if compiling fails;
    ``fell_back`` says why it did (None while compiled), so a figure is labelled by what ran.

    Compilation happens lazily at the first call (and again for a new input shape), so the
    fallback wraps the call, not ``torch.compile`` itself. The backward graph is compiled within
    that call too (by default AOTAutograd compiles it at the first ``backward()``, where a
    failure would escape the fallback). Dynamo's caches are reset when one is made: a Ray worker
    trains trial after trial in one process, and the graphs of every earlier model would pile up
    on the model's ``forward`` until Dynamo's recompile limit, after which it runs eagerly
    without a word.
    """

    def __init__(self, model: torch.nn.Module, backend: str | Callable = "inductor"):
        torch._dynamo.reset()
        self.model, self.fell_back = model, None
        self.fn: Callable = torch.compile(model, backend=backend)

    def __call__(self, *args: Any) -> Any:
        if self.fell_back is not None:
            return self.model(*args)
        try:
            with torch._functorch.config.patch(force_non_lazy_backward_lowering=True):
                return self.fn(*args)
        except Exception as e:
            if not compiler_error(e):
                raise  # out of memory, bad data, a bug in the model: not the compiler's
            log.warning("torch.compile failed (%s: %s); training eagerly", type(e).__name__, e)
            self.fell_back = f"{type(e).__name__}: {e}"
            return self.model(*args)


def compiled_or_eager(model: torch.nn.Module,
                      backend: str | Callable = "inductor") -> CompiledOrEager:
    """The model compiled, with the eager fallback (``CompiledOrEager``)."""
    return CompiledOrEager(model, backend)


def compiler_error(e: BaseException) -> bool:
    """Whether ``torch.compile`` itself failed (Dynamo could not trace, a backend could not
    compile), as opposed to an error the eager model would raise too: a runtime error found
    while tracing (``TorchRuntimeError``: wrong shapes, bad data) or an out-of-memory error,
    also when a compiler error wraps it."""
    from torch._dynamo.exc import TorchDynamoException, TorchRuntimeError

    chain, cause = [], e
    while cause is not None and len(chain) < 20:
        chain.append(cause)
        cause = cause.__cause__ or getattr(cause, "inner_exception", None)
    if any(isinstance(c, torch.OutOfMemoryError | TorchRuntimeError) for c in chain):
        return False
    return isinstance(e, TorchDynamoException)

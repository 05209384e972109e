"""The CUDA paths in one prepared run of under 8 minutes, one line per check.

    bash bench/gpu.sh OUT                          # on a GPU node (what the first lent GPU runs)
    python bench/gpu_checks.py --out OUT [--only train_bf16 resume] [--budget 440]

Each check runs in a process of its own (a fresh CUDA context, clean memory statistics) under a
time limit, writes its whole output to ``OUT/<check>.log`` and prints its result lines:

    PASS   the path works and meets its goal     WARN  it works but misses its goal
    FAIL   it crashed, hung or gave a wrong result
    SKIP   not run here (no CUDA device, no time left)   INFO  a figure without a goal

No check starts after ``--budget`` seconds (default 440) and a running one is cut at its own
limit or at the budget plus 30 s, whichever comes first, so the run ends within 8 minutes. The
exit status is the number of FAIL lines. Without a CUDA device (``--device cpu``, or none seen)
the checks that can run on a CPU run at small shapes, checking the code paths and not the
speed, and the CUDA-only ones print SKIP; ``tests/bench/test_gpu_checks.py`` runs that
fallback in the suite. The figures' goals are docs/performance.md's and docs/memory.md's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "bench"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

GIB = 2**30
GOAL_RATE = {"cremad": 2400}  # samples/s of a training step on one H100 (docs/performance.md)
SHARED_CARD = 24 * GIB  # the card whose quarter the share check emulates
MEMORY_TOLERANCE = 0.15  # the estimate against the measured peak (docs/memory.md)
STATUSES = ("PASS", "WARN", "FAIL", "SKIP", "INFO")
BALANCERS = ("none", "ogm", "ogm_ge", "pmr")
MARK = "RESULT "  # a child's result line, on stdout; everything else goes to its log

Result = tuple[str, str, str]  # (status, name, text)


# -- the checks (each runs in its own process; device is "cuda" or "cpu") --------------------

def env(device: str) -> list[Result]:
    import torch

    text = f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
    if device == "cuda":
        p = torch.cuda.get_device_properties(0)
        text += (f", {p.name}, compute capability {p.major}.{p.minor}, "
                 f"{p.total_memory / GIB:.1f} GiB, CUDA {torch.version.cuda}, cuDNN "
                 f"{torch.backends.cudnn.version()}, bf16 {torch.cuda.is_bf16_supported()}, "
                 f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}")
    return [("INFO", "env", text)]


def _config(device: str, **over):
    from rollingq.config import build_config

    small = {} if device == "cuda" else {"model.dim": 64, "model.depth": 1, "model.heads": 4}
    return build_config(overrides={
        "train.device": device, "data.train_size": 1024 if device == "cuda" else 256,
        "data.test_size": 256 if device == "cuda" else 64, "train.epochs": 3,
        "train.batch_size": 64, "rollingq.beta": 0.0,  # any imbalance rotates: the path runs
        **small, **over})


def _trained(name: str, cfg, extra: str = "") -> Result:
    """A synthetic run's line: it finished, rotated, its loss is finite and its model is on the
    device it was asked for."""
    from rollingq.train import fit

    began = time.perf_counter()
    result = fit(cfg)
    seconds = time.perf_counter() - began
    last = result.history[-1]
    where = {p.device.type for p in result.model.parameters()}
    rate = max(h.get("samples_per_s", 0.0) for h in result.history)
    text = (f"{result.status}, {last['rotations']} rotation(s), train loss "
            f"{last['train_loss']:.3f}, test acc {last['test_acc_at_best_val']:.3f}, "
            f"{rate:,.0f} samples/s in its fastest epoch, {seconds:.1f} s{extra} (goal: finished, "
            f"at least one rotation, finite loss, model on {cfg.train.device})")
    ok = (result.status == "finished" and last["rotations"] >= 1
          and math.isfinite(last["train_loss"]) and where == {cfg.train.device})
    return ("PASS" if ok else "FAIL", name, text)


def train_fp32(device: str) -> list[Result]:
    return [_trained("train_fp32", _config(device, **{"train.precision": "fp32"}))]


def train_bf16(device: str) -> list[Result]:
    return [_trained("train_bf16", _config(device, **{"train.precision": "bf16"}))]


def train_compiled(device: str) -> list[Result]:
    """``train.compile``: no fallback, and one graph over three epochs whose last batch is
    partial (it runs eagerly, so no second graph is compiled for its shape)."""
    import logging

    import torch

    fell_back: list[str] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "torch.compile failed" in record.getMessage():
                fell_back.append(record.getMessage())

    logging.getLogger("rollingq.device").addHandler(Catch())
    cfg = _config(device, **{"train.compile": True, "data.train_size": 1000})  # a partial batch
    status, name, text = _trained("train_compiled", cfg)
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    text = text.replace(" (goal:", f", {graphs} graph(s) compiled (goal: no fallback, one "
                        "graph over every epoch,")
    if fell_back:
        return [("FAIL", name, f"compile fell back to eager: {fell_back[0]}; {text}")]
    return [("WARN" if status == "PASS" and graphs != 1 else status, name, text)]


def rotation(device: str) -> list[Result]:
    """``rotation_matrix`` on the device, both methods and dtypes, under bf16 autocast where
    the device has it: R x̂ = ŷ, RᵀR = I, det R = +1, R stays on the device in its dtype."""
    import torch

    from rollingq.rotation import rotation_matrix

    worst, parts = 0.0, []
    dev = torch.device(device)
    autocast = (torch.autocast(device, dtype=torch.bfloat16) if device == "cuda"
                else contextlib.nullcontext())
    g = torch.Generator().manual_seed(0)
    for method in ("svd", "plane"):
        for dtype in (torch.float64, torch.float32):
            x, y = (torch.randn(768, generator=g, dtype=dtype).to(dev) for _ in range(2))
            with autocast:
                r = rotation_matrix(x, y, method)
            tol = 1e-9 if dtype == torch.float64 else 2e-4
            errors = (((r @ (x / x.norm())) - y / y.norm()).abs().max().item(),
                      (r.T @ r - torch.eye(768, dtype=dtype, device=dev)).abs().max().item(),
                      abs(torch.linalg.det(r.double()).item() - 1))
            ok = r.device.type == device and r.dtype == dtype and max(errors) < tol
            worst = max(worst, max(errors) / tol)
            parts.append(f"{method} {str(dtype).removeprefix('torch.')} "
                         f"{'ok' if ok else 'WRONG'} ({max(errors):.1e})")
    status = "PASS" if worst < 1 else "FAIL"
    return [(status, "rotation", f"{', '.join(parts)} (goal: R x̂ = ŷ, orthogonal, det +1, "
                                 f"on {device} in its dtype, within 1e-9 float64, 2e-4 float32)")]


class _Interrupted(Exception):
    """Stands for a run killed after its second epoch."""


def resume(device: str) -> list[Result]:
    """Checkpoint save and reload with every balancer: a run stopped after its second epoch
    resumes from its checkpoint on the same device (a PMR run's prototypes included) and trains
    the third; the selected model's best.pt loads and moves to the device."""
    import torch

    from rollingq.checkpoints import BEST, CHECKPOINT, load_checkpoint
    from rollingq.model import MultimodalTransformer
    from rollingq.train import fit

    out = []
    for method in BALANCERS:
        cfg = _config(device, **{"balance.method": method, "train.checkpoint_minutes": 0,
                                 "rollingq.enabled": method == "none"})

        def stop(m: dict) -> None:
            if m["epoch"] == 1:
                raise _Interrupted

        with tempfile.TemporaryDirectory() as d:
            try:
                fit(cfg, stop, checkpoint_dir=d)
            except _Interrupted:
                pass
            saved = load_checkpoint(Path(d) / CHECKPOINT)["epoch"]
            epochs: list[int] = []
            result = fit(cfg, lambda m, seen=epochs: seen.append(m["epoch"]), checkpoint_dir=d,
                         resume=True)
            best = load_checkpoint(Path(d) / BEST) if (Path(d) / BEST).exists() else None
            if best is not None:
                model = MultimodalTransformer(result.data.specs, result.data.num_classes,
                                              cfg.model).to(torch.device(device))
                model.load_state_dict(best["model"])
        trained = [e for e in epochs if e >= 0]
        ok = (saved == 1 and trained == [2] and result.status == "finished"
              and math.isfinite(result.history[-1]["train_loss"]))
        out.append(("PASS" if ok else "FAIL", f"resume_{method}",
                    f"checkpoint at epoch {saved}, resumed and trained epoch(s) {trained}, "
                    f"{result.status}, best.pt {'loaded' if best is not None else 'absent'} "
                    f"(goal: checkpoint at epoch 1, epoch 2 trained after the reload, finished)"))
    return out


def _cremad(batch: int, precision: str, **over):
    from rollingq.config import build_config

    return build_config(overrides={"data.name": "cremad", "data.root": "/nowhere",
                                   "train.batch_size": batch, "train.precision": precision,
                                   "train.device": "cuda", "train.data_on_device": "never",
                                   **over})


def memory(device: str) -> list[Result]:
    """``rollingq.memory.estimate`` against ``torch.cuda.max_memory_allocated`` over a training
    step and the evaluation forward (``rollingq.memory.measure``; CREMA-D shapes, batch 16, bf16
    and fp32, the eval batch the estimate assumes)."""
    from rollingq.diagnostics import cremad_shapes
    from rollingq.memory import estimate, measure

    out = []
    for precision in ("bf16", "fp32"):
        cfg = _cremad(16, precision)
        est = estimate(cfg, specs=(cremad_shapes(), 6))
        real = measure(cfg, cremad_shapes(), 6)
        ratio = est.total / real.peak
        ok = abs(ratio - 1) <= MEMORY_TOLERANCE
        out.append(("PASS" if ok else "WARN", f"memory_{precision}",
                    f"estimate {est.total / GIB:.2f} GiB, measured peak {real.peak / GIB:.2f} "
                    f"GiB (training step {real.step / GIB:.2f}, evaluation at batch "
                    f"{est.eval_batch} {real.evaluation / GIB:.2f}), reserved "
                    f"{real.reserved / GIB:.2f} GiB, ratio {ratio:.2f} (goal: within "
                    f"{MEMORY_TOLERANCE:.0%})"))
    return out


def share(device: str) -> list[Result]:
    """A quarter of a 24 GiB card (an A10G- or L4-class GPU shared by four trials, where the
    margins are tight; this card's own memory if it has less), capped as a trial with
    ``resources.gpu: 0.25`` caps itself (``share_cap``): a checkpointed bf16 CREMA-D step at
    batch 64 and its evaluation (``rollingq.memory.measure``) run under the cap when the
    estimate says they fit (an out-of-memory error is then the estimate's fault), and the
    estimate refuses them when they would not."""
    import torch

    from rollingq.diagnostics import cremad_shapes
    from rollingq.memory import RESERVED_FACTOR, estimate, measure, share_cap

    total = torch.cuda.get_device_properties(0).total_memory
    card = min(total, SHARED_CARD)
    cap = share_cap(0.25, card)
    torch.cuda.set_per_process_memory_fraction(cap / total)
    cfg = _cremad(64, "bf16", **{"train.activation_checkpointing": True})
    need = RESERVED_FACTOR * estimate(cfg, specs=(cremad_shapes(), 6)).total
    fits = need <= cap
    text = (f"cap {cap / GIB:.2f} GiB (a quarter of {card / GIB:.1f}), the estimate with the "
            f"allocator's margin {need / GIB:.2f} GiB ({'fits' if fits else 'does not fit'})")
    try:
        ran = f"ran, peak reserved {measure(cfg, cremad_shapes(), 6).reserved / GIB:.2f} GiB"
        status = "PASS" if fits else "WARN"  # it ran although the estimate said no: too safe
    except torch.OutOfMemoryError:
        ran, status = "out of memory", "FAIL" if fits else "PASS"
    return [(status, "share_quarter", f"{text}; {ran} (goal: runs under the cap when the "
                                      f"estimate says it fits, and only then)")]


def throughput(device: str) -> list[Result]:
    """The model-only training step at CREMA-D shapes, batch 64, bf16, eager and compiled, as
    ``bench/train_throughput.py`` times it, against the 2,400 samples/s goal."""
    from train_throughput import measure

    out = []
    for compiled in (False, True):
        args = argparse.Namespace(device="cuda", precision="bf16", compile=compiled, batch=64,
                                  steps=10, warmup=3, rollingq_cost=False,
                                  deterministic_cost=False, balance_cost=False, end_to_end=0,
                                  work=None)
        line = measure("cremad", args)[0]
        rate = float(line.split(": ", 1)[1].split(" samples/s")[0].replace(",", ""))
        name = "throughput_compiled" if compiled else "throughput_eager"
        if compiled and "fell back" in line:
            out.append(("FAIL", name, line))
            continue
        ok = rate >= GOAL_RATE["cremad"]
        out.append(("PASS" if ok else ("WARN" if compiled else "INFO"), name,
                    f"{line} (goal: {GOAL_RATE['cremad']:,} samples/s compiled)"))
    return out


def syncs(device: str) -> list[Result]:
    """Host synchronisations inside an epoch: ``torch.cuda.set_sync_debug_mode('warn')`` over a
    synthetic run with its data on the device; the epoch's end reads its metrics once."""
    import torch

    from rollingq.train import fit

    cfg = _config(device, **{"train.epochs": 2, "train.data_on_device": "always",
                             "data.train_size": 2048})
    steps = 2 * math.ceil(2048 * 0.9 / 64)  # about: the validation split comes out of train
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        fit(cfg)
        torch.cuda.set_sync_debug_mode(0)
    found = [w for w in caught if "synchroniz" in str(w.message)]
    where: dict[str, int] = {}
    for w in found:
        key = f"{Path(w.filename).name}:{w.lineno}"
        where[key] = where.get(key, 0) + 1
    top = ", ".join(f"{k} x{n}" for k, n in sorted(where.items(), key=lambda kv: -kv[1])[:5])
    ok = len(found) < steps  # fewer than one a step: none inside the step loop
    return [("PASS" if ok else "WARN", "syncs",
             f"{len(found)} synchronisations over 2 epochs of about {steps} steps"
             f"{': ' + top if top else ''} (goal: fewer than one a step)")]


def gpu_tests(device: str) -> list[Result]:
    """The opt-in CUDA tests (``pytest -m gpu``), where pytest is installed."""
    import importlib.util

    if importlib.util.find_spec("pytest") is None:
        return [("SKIP", "gpu_tests", "pytest is not installed here")]
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p",
                        "no:cacheprovider", "tests/rollingq/test_gpu.py"], cwd=ROOT,
                       capture_output=True, text=True)
    print(r.stdout[-5000:], r.stderr[-3000:])
    tail = (r.stdout.strip().splitlines() or ["no output"])[-1]
    return [("PASS" if r.returncode == 0 else "FAIL", "gpu_tests", tail)]


# name -> (function, needs CUDA, the most seconds it may take)
CHECKS: dict[str, tuple[Callable[[str], list[Result]], bool, float]] = {
    "env": (env, False, 60),
    "train_fp32": (train_fp32, False, 120),
    "train_bf16": (train_bf16, False, 120),
    "rotation": (rotation, False, 60),
    "resume": (resume, False, 180),
    "memory": (memory, True, 120),
    "share_quarter": (share, True, 120),
    "syncs": (syncs, True, 120),
    "train_compiled": (train_compiled, True, 240),
    "throughput": (throughput, True, 240),
    "gpu_tests": (gpu_tests, True, 240),
}


# -- the runner ----------------------------------------------------------------------------

def run_one(name: str, device: str) -> int:
    """In the child: one check's result lines on stdout (``MARK`` first)."""
    try:
        results = CHECKS[name][0](device)
    except Exception as e:  # noqa: BLE001 - the line says what crashed; the log has the trace
        traceback.print_exc()
        results = [("FAIL", name, f"crashed: {type(e).__name__}: {str(e).splitlines()[0]}"
                    if str(e) else f"crashed: {type(e).__name__}")]
    for r in results:
        print(MARK + json.dumps(r), flush=True)
    return 0


def run_all(out: Path, device: str, only: list[str], budget: float) -> list[Result]:
    """Each check in a child process, its output to ``out/<check>.log``; the lines printed as
    they come."""
    out.mkdir(parents=True, exist_ok=True)
    began, results = time.monotonic(), []
    env_vars = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]), "PYTHONUNBUFFERED": "1"}
    for name in only or list(CHECKS):
        _, needs_cuda, limit = CHECKS[name]
        left = budget - (time.monotonic() - began)
        if needs_cuda and device != "cuda":
            lines = [("SKIP", name, "needs a CUDA device")]
        elif left <= 0:
            lines = [("SKIP", name, f"no time left of the {budget:.0f} s budget")]
        else:
            lines = _child(name, device, out / f"{name}.log", min(limit, left + 30), env_vars)
        for status, check, text in lines:
            print(f"{status:<4} {check}: {text}", flush=True)
        results += lines
    took = time.monotonic() - began
    counts = {s: sum(r[0] == s for r in results) for s in STATUSES}
    print(f"{device}: {', '.join(f'{n} {s}' for s, n in counts.items() if n)} in {took:.0f} s",
          flush=True)
    return results


def _child(name: str, device: str, log: Path, limit: float, env_vars: dict) -> list[Result]:
    with log.open("w") as f:
        try:
            r = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--one", name,
                                "--device", device], cwd=ROOT, env=env_vars, stdout=subprocess.PIPE,
                               stderr=f, text=True, timeout=limit)
        except subprocess.TimeoutExpired as e:
            f.write(e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes)
                    else e.stdout or "")
            return [("FAIL", name, f"cut after {limit:.0f} s (hung or too slow; {log})")]
        f.write(r.stdout)
    lines = [tuple(json.loads(ln[len(MARK):])) for ln in r.stdout.splitlines()
             if ln.startswith(MARK)]
    if not lines:
        tail = (log.read_text().strip().splitlines() or ["no output"])[-1]
        return [("FAIL", name, f"exit {r.returncode} without a result: {tail[:300]} ({log})")]
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, help="the folder for each check's log")
    ap.add_argument("--only", nargs="+", default=[], choices=list(CHECKS), metavar="CHECK",
                    help=f"run only these checks, of: {', '.join(CHECKS)}")
    ap.add_argument("--device", choices=["cuda", "cpu"], default=None,
                    help="default: cuda when torch sees one")
    ap.add_argument("--budget", type=float, default=440.0,
                    help="seconds after which no check starts (default 440)")
    ap.add_argument("--one", choices=list(CHECKS), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: torch sees no CUDA device")
    if args.one:
        return run_one(args.one, device)
    out = args.out or Path(tempfile.mkdtemp(prefix="rollingq-gpu-checks-"))
    results = run_all(out, device, args.only, args.budget)
    return sum(r[0] == "FAIL" for r in results)


if __name__ == "__main__":
    sys.exit(main())

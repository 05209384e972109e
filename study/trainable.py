"""One trial: a Ray Tune config dict -> ``rollingq.train.fit`` -> ``tune.report`` per epoch.

The config holds dotted config keys (``rollingq.beta``), plus, in Optuna mode, Ray's
``__trial_index__`` (the repeat of a sampled point) and ``_seeds`` (the seeds it indexes), in a
grid with conditional parameters ``_point`` (the searched values of one grid point), and, when
the space has variants, ``variant`` (a name) and ``_variants`` (name -> config values).

Every epoch is reported with the checkpoint ``fit`` wrote, so a retried trial (``FailureConfig``)
or a restored study resumes from its last epoch. The last epoch's report also carries the
diagnostics on the test split (noise robustness per modality, attention-noise correlation) and
``final: True``. A diverged run is reported with ``status: diverged`` and the worst value of the
study metric (of each metric, in a Pareto study; never NaN, which Optuna cannot record), and
the trial ends normally.

A trial never trains twice once it has ended: just before its final report it writes that
report to ``final.json`` in its folder of the study storage (the ledger). Ray's experiment
snapshot can lag behind (it is written every few seconds), so a study resumed after its driver
was killed can start again a trial that had in fact ended; such a trial finds its ledger and
re-reports it (``replayed: True``) without training. A trial the driver cut for reporting no
epoch within ``tune.stall_minutes`` (``study.stall``) finds the ledger the driver wrote for it
(``status: timed_out``) the same way. Beside it, ``history.json`` holds every
epoch's metrics as ``fit`` kept them: Ray's ``result.json`` of a trial is copied to the storage
with the snapshot and can miss an epoch the snapshot has (a driver killed mid-copy), and the
study's curves take such an epoch from there (``study.results``), and ``predictions.npz`` the
selected model's clean test predictions per sample (the study copies it into its results).
The diagnostics run on the selected model (the best validation epoch's), kept in memory; with
``train.keep_best`` its ``best.pt`` also travels with every checkpoint to the storage.

A trial trains in a working folder of its own under the machine's temporary folder
(``rollingq-trial-<pid>-*``, the checkpoint ``fit`` writes: hundreds of MB at the paper's
shapes), removed when the trial ends. A worker killed mid-trial cannot remove its folder, so
every trial first removes the folders of processes that no longer run on this machine.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pyarrow.fs
import torch
from ray import tune

from rollingq.checkpoints import BEST, CHECKPOINT, PREVIOUS_BEST, load_checkpoint
from rollingq.config import build_config
from rollingq.device import resolve_device
from rollingq.evaluate import PREDICTIONS, predictions_npz, run_diagnostics
from rollingq.memory import share_cap
from rollingq.train import fit, resumed_best
from study.provenance import device_info
from study.resume import write_atomic

log = logging.getLogger(__name__)

WORK_PREFIX = "rollingq-trial-"  # + "<pid>-": a trial's working folder
STATE = "trial.json"  # restarts so far, saved beside the checkpoint
LEDGER = "final.json"  # the final report of an ended trial, in its folder of the study storage
CHECKPOINT_NOTE = "checkpoint_note"  # in a trial's reports: a broken checkpoint and what was done
HISTORY = "history.json"  # every epoch's metrics of an ended trial, beside the ledger


def trial_config(config: dict[str, Any]) -> dict[str, Any]:
    """The dotted config overrides of one trial (seed resolved in Optuna mode; a ``variant``
    name replaced by its config values from ``_variants``)."""
    over = {k: v for k, v in config.items() if not k.startswith("_")}
    over.update(config.get("_point") or {})  # a conditional grid's point (study.space)
    if "__trial_index__" in config and "_seeds" in config:
        over["train.seed"] = config["_seeds"][config["__trial_index__"]]
    if "variant" in over:
        over.update((config.get("_variants") or {})[over.pop("variant")])
    return over


def flatten_diagnostics(diag: dict[str, Any]) -> dict[str, Any]:
    """Diagnostics (``rollingq.evaluate.run_diagnostics``) as flat metrics, named by what they are:

    - ``diagnostics_epoch``: the epoch of the model they ran on (the best validation epoch);
    - Table 3 on the test split: ``noise_recipe``, ``noise_seed``; ``noise_<m>_<λ>`` accuracy and
      ``noise_f1_<m>_<λ>`` macro-F1 with noise on modality m; ``noise_auc_<m>`` (trapezoid over
      λ), ``noise_drop_<m>`` (clean - largest level) and ``noise_rel_drop_<m>`` (drop / clean);
    - ``missing_<m>_acc``, ``missing_<m>_f1``, ``missing_<m>_share``: m zeroed at test time;
    - Table 2 (attention fusions): the protocol ``attn_noise_recipe``, ``_level``, ``_split``,
      ``_draws``, ``_evaluations``; per modality ``attn_noise_r_<m>`` and the share shift
      ``attn_noise_shift_<m>`` with ``_low``/``_high`` (95 %); the pooled variant
      ``attn_noise_pooled_r`` and ``attn_noise_pooled_adaptivity`` (-r);
    - ``params_paper``, ``params_all``, ``favoured_modality``.
    """
    noise = diag["noise"]
    flat: dict[str, Any] = {"diagnostics_epoch": diag["epoch"], "noise_recipe": noise["recipe"],
                            "noise_seed": noise["seed"]}
    for m, curve in noise["curves"].items():
        for level, v in curve.items():
            flat[f"noise_{m}_{level}"] = v["acc"]
            flat[f"noise_f1_{m}_{level}"] = v["f1"]
        flat.update({f"noise_{k}_{m}": v for k, v in noise["summary"][m].items()})
    for m, v in diag["missing"].items():
        flat.update({f"missing_{m}_{k}": x for k, x in v.items()})
    attn = diag.get("attention_noise")
    if attn:
        flat.update({f"attn_noise_{k}": attn[k]
                     for k in ("recipe", "level", "split", "draws", "evaluations")})
        for m, v in attn["per_modality"].items():
            flat[f"attn_noise_r_{m}"] = v["r"]
            flat[f"attn_noise_shift_{m}"] = v["shift"]
            flat[f"attn_noise_shift_{m}_low"] = v["shift_low"]
            flat[f"attn_noise_shift_{m}_high"] = v["shift_high"]
        flat["attn_noise_pooled_r"] = attn["pooled"]["r"]
        flat["attn_noise_pooled_adaptivity"] = attn["pooled"]["adaptivity"]
    flat["params_paper"] = diag["parameters"]["paper"]
    flat["params_all"] = diag["parameters"]["all_tensors"]
    flat["favoured_modality"] = diag.get("favoured_modality")  # None unless the data declares it
    return flat


def arm(cfg: Any) -> dict[str, Any]:
    """The config facts the claims need of a trial: ``rollingq_on`` (RollingQ enabled with a
    rotation allowed) and ``rollingq_beta``."""
    return {"rollingq_on": cfg.rollingq.enabled and cfg.rollingq.max_rotations > 0,
            "rollingq_beta": cfg.rollingq.beta}


def device_record(cfg: Any) -> dict[str, Any]:
    """What the trial trained on, for the study's provenance: ``device`` (cpu or cuda) and, on a
    GPU, ``device_gpu``, ``device_gpu_gib``, ``device_driver``, ``device_cuda``,
    ``device_cudnn``."""
    info = device_info(resolve_device(cfg.train.device))
    return {"device": info.pop("device"), **{f"device_{k}": v for k, v in info.items()}}


def _limit_resources() -> None:
    """Threads to the trial's CPUs; a fractional GPU also caps the trial's GPU memory at its
    share less a CUDA context (``rollingq.memory.share_cap``: the context lies outside it)."""
    resources = tune.get_context().get_trial_resources().required_resources
    torch.set_num_threads(max(1, int(resources.get("CPU", 1))))
    gpu = resources.get("GPU", 0)
    if 0 < gpu < 1 and torch.cuda.is_available():
        total = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
        torch.cuda.set_per_process_memory_fraction(share_cap(gpu, total) / total)


def _trial_storage() -> tuple[pyarrow.fs.FileSystem, str]:
    """(filesystem, folder) of this trial in the study storage: local, NFS or s3://.

    Not ``tune.get_context().get_trial_dir()``: that is the trial's working directory under the
    Ray session's temporary folder, which a resumed study (a new Ray session) does not see. Ray
    2.60 exposes the storage folder only through the session's StorageContext (private API;
    ``ray`` is pinned to 2.60.*, and tests/study/test_study_ray.py exercises it).
    """
    from ray.train._internal.session import get_session

    storage = get_session().storage
    return storage.storage_filesystem, storage.trial_fs_path


def read_json(fs: pyarrow.fs.FileSystem, folder: str, name: str) -> Any:
    """A JSON file of this trial's folder in the study storage (the ledger, the history), or
    None when it is not there."""
    path = f"{folder}/{name}"
    if fs.get_file_info(path).type == pyarrow.fs.FileType.NotFound:
        return None
    with fs.open_input_stream(path) as f:
        return json.loads(f.read().decode())


def write_json(fs: pyarrow.fs.FileSystem, folder: str, name: str, value: Any) -> None:
    """Writes through a temporary file and a move (never half-written)."""
    fs.create_dir(folder, recursive=True)
    write_atomic(fs, f"{folder}/{name}", json.dumps(value).encode())


def remove_orphaned_work(tmp: str | None = None) -> list[Path]:
    """Removes the trial working folders (in ``tmp``, the temporary folder by default) whose
    process no longer runs on this machine, as a killed worker leaves them; returns them.
    Another user's folders, and folders of live processes, are left alone."""
    removed = []
    for path in Path(tmp or tempfile.gettempdir()).glob(f"{WORK_PREFIX}*-*"):
        pid = path.name[len(WORK_PREFIX):].split("-", 1)[0]
        try:
            mine = path.stat().st_uid == os.getuid()
        except FileNotFoundError:  # removed meanwhile by another trial
            continue
        if not pid.isdigit() or not mine or alive(int(pid)):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def train_trial(config: dict[str, Any]) -> None:
    """The Ray Tune function trainable."""
    try:
        _train(config)
    finally:  # after _train's frame is gone, so its model and data can be collected
        release_device_memory()


def _train(config: dict[str, Any]) -> None:
    fs, folder = _trial_storage()
    ended = read_json(fs, folder, LEDGER)
    if ended is not None:  # started again from a stale experiment snapshot: do not train
        tune.report({**ended, "replayed": True})
        return
    _limit_resources()
    cfg = build_config(overrides=trial_config(config))
    objectives = config.get("_objectives") or [[config.get("_metric", "val_acc"),
                                                 config.get("_metric_mode", "max")]]
    worst = {m: 0.0 if mode == "max" else 1e9 for m, mode in objectives}
    remove_orphaned_work()
    work = Path(tempfile.mkdtemp(prefix=f"{WORK_PREFIX}{os.getpid()}-"))
    restarts = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            if (Path(d) / STATE).exists():
                restarts = json.loads((Path(d) / STATE).read_text())["restarts"] + 1
        resumable, note = restore(checkpoint, fs, folder, work)
    else:
        resumable, note = False, None
    (work / STATE).write_text(json.dumps({"restarts": restarts}))
    last_epoch = cfg.train.epochs - 1
    held: list[dict[str, Any]] = []
    stamp = [_stamp(work)]  # the checkpoint's stamp at the last report

    def on_epoch_end(m: dict[str, Any]) -> None:
        m = {k: v for k, v in m.items() if v is not None}
        m["restarts"] = restarts
        if note:
            m[CHECKPOINT_NOTE] = note
        if m["epoch"] < 0:  # the untrained model: it reaches curves.csv through history.json
            return  # (not a Ray result: it has no training loss, no best epoch, no clock tick)
        if m.get("status") == "diverged":
            m.update(worst)
            held.append(m)  # reported after fit returns, with final: True
            return
        if m["epoch"] == last_epoch:
            held.append(m)  # reported with the diagnostics
            return
        now = _stamp(work)
        saved, stamp[0] = now != stamp[0], now  # fit wrote a checkpoint at this epoch's end
        tune.report(m, checkpoint=tune.Checkpoint.from_directory(str(work)) if saved else None)

    try:
        result = fit(cfg, on_epoch_end, checkpoint_dir=work, resume=resumable)
        if held:
            final = held[-1]
        else:
            final = dict(result.history[-1]) if result.history else dict(worst)
        final.update(final=True, status=result.status, **arm(cfg),  # what the outcomes need
                     deterministic=cfg.train.deterministic, **device_record(cfg))
        if result.status == "finished":
            diag, predictions = run_diagnostics(cfg, result.selected(), result.data,
                                                final["best_val_epoch"])
            final.update(flatten_diagnostics(diag))
            fs.create_dir(folder, recursive=True)
            write_atomic(fs, f"{folder}/{PREDICTIONS}",
                         predictions_npz(predictions, final["best_val_epoch"]))
        final = {k: v for k, v in final.items() if v is not None}
        write_json(fs, folder, HISTORY, [{k: v for k, v in h.items() if v is not None}
                                         for h in result.history])
        write_json(fs, folder, LEDGER, final)
        tune.report(final, checkpoint=tune.Checkpoint.from_directory(str(work)))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _stamp(work: Path) -> int | None:
    """When ``fit`` last wrote the trial's checkpoint (None: not yet)."""
    path = work / CHECKPOINT
    return path.stat().st_mtime_ns if path.exists() else None


def restore(checkpoint: tune.Checkpoint, fs: pyarrow.fs.FileSystem, folder: str,
            work: Path) -> tuple[bool, str | None]:
    """The trial's newest readable checkpoint copied into ``work`` (the checkpoint and the
    selected model beside it): whether there is one to resume from, and what was done
    instead of the checkpoint Ray gave, if anything. An unreadable ``checkpoint.pt`` (cut short
    by a full disk or a killed copy) is reported, naming the file, and the trial falls back to
    its newest readable other checkpoint in the study storage (Ray keeps two), or else starts
    again from its first epoch: a broken file never fails the study (a readable one Ray's
    snapshot had not seen yet, written just before a driver was killed, is as good). The note
    goes with the trial's reports (``checkpoint_note``), which the driver prints
    (``study.progress``) and trials.csv keeps."""
    with checkpoint.as_directory() as d:
        if _copy_readable(Path(d), work):
            return True, None
        broken = Path(checkpoint.path).name
    said = f"checkpoint {folder}/{broken}/{CHECKPOINT} is unreadable"
    log.warning("trial %s", said)
    for name in sorted((i.base_name for i in fs.get_file_info(
            pyarrow.fs.FileSelector(folder, allow_not_found=True))
            if i.type == pyarrow.fs.FileType.Directory and i.base_name.startswith("checkpoint_")
            and i.base_name != broken), reverse=True):
        with tempfile.TemporaryDirectory(prefix="rollingq-restore-") as tmp:
            pyarrow.fs.copy_files(f"{folder}/{name}", tmp, source_filesystem=fs)
            if _copy_readable(Path(tmp), work):
                note = f"{said}: the trial resumes from its checkpoint {name}"
                log.warning("%s", note)
                return True, note
    note = f"{said}, and no readable one is left: the trial starts again from its first epoch"
    log.warning("%s", note)
    return False, note


def _copy_readable(source: Path, work: Path) -> bool:
    """Copies a checkpoint folder's ``checkpoint.pt`` and selected models into ``work`` when the
    checkpoint and the selected model it needs load; whether they did."""
    if not (source / CHECKPOINT).exists():
        return False
    try:
        resumed_best(load_checkpoint(source / CHECKPOINT), source / CHECKPOINT)
    except ValueError as e:
        log.warning("%s", e)
        return False
    for name in (CHECKPOINT, BEST, PREVIOUS_BEST):
        if (source / name).exists():
            shutil.copy(source / name, work / name)
    return True


def release_device_memory() -> None:
    """What a trial held on its GPU, given back before the worker's next trial (Ray reuses the
    process): the model, data and optimizer state are collected and the allocator's cached
    blocks returned, so the next trial under the same memory cap starts from an empty cache
    instead of the last trial's fragments."""
    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()

"""Faults a long study meets (issue 38), on real local Ray: a second driver on the same study
is refused while the first runs (and a killed driver's lock is gone with it), a study resumed
from its folder alone, a trial checkpoint cut to half its size before ``--resume`` (the study
completes and the log names the file), and the fallback to a trial's previous checkpoint."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.fs
import pytest
import torch

from rollingq.checkpoints import BEST, CHECKPOINT, save_checkpoint
from study.lock import LOCK
from tests.study.test_study_ray import (
    ROOT,
    cli_env,
    kill_processes,
    mid_run,
    result_rows,
    session_processes,
    start_cli,
    wait_until,
    write_spec,
)

SLOW = """\
# Two trials of 12 epochs, one at a time: long enough to be caught mid-run.
fixed:
  model.fusion: attn
  rollingq.enabled: true
  train.epochs: 12
  data.train_size: 600
  data.test_size: 100
search:
  rollingq.max_rotations: {role: scientific, type: choice, values: [0, 1]}
seeds: [0]
tune: {mode: grid, metric: val_acc, scheduler: fifo, resources: {cpu: 1, gpu: 0},
       max_failures: 1, max_concurrent: 1}
"""


@pytest.mark.integration
def test_a_second_driver_is_refused_and_a_cut_checkpoint_is_named_on_resume(tmp_path):
    """While a driver runs the study, ``--resume STUDY_DIR`` (no ``--space``: the study names
    it) exits 2 with one line in under 10 s. The first driver is then SIGKILLed mid-trial (its
    lock goes with it) and the running trial's checkpoint files in the storage (Ray keeps two)
    are cut to half their size: the same command resumes and completes the study, every trial
    once, and the log and trials.csv name the file Ray gave the trial and what it did instead
    (both cut: it starts again; the fallback to a whole other checkpoint is the next test)."""
    spec = write_spec(tmp_path, "slow", SLOW)
    log = tmp_path / "driver.log"
    study = tmp_path / "out" / "slow" / "s"
    killed = None
    try:
        driver = start_cli(["study/run.py", "--space", str(spec), "--storage",
                            str(tmp_path / "out"), "--name", "s", "--no-report"], log)
        # the study's folder is written once its driver holds the lock
        wait_until(driver, log, lambda: (study / "space.yaml").exists())
        began = time.monotonic()
        second = subprocess.run([sys.executable, "study/run.py", "--resume", str(study)],
                                cwd=ROOT, env=cli_env(), capture_output=True, text=True,
                                timeout=60)
        took = time.monotonic() - began
        # then killed mid-trial, with two checkpoints reported
        wait_until(driver, log, lambda: bool(mid_run(result_rows(study), 3)))
        driver.kill()
        driver.wait(timeout=30)
        killed = driver.pid
    finally:
        if killed is not None:
            kill_processes(session_processes(killed))
    assert second.returncode == 2, second.stdout[-2000:] + second.stderr[-2000:]
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and "is being run by another driver" in lines[0], lines
    assert f"pid {driver.pid}" in lines[0] and took < 10, (lines, took)
    assert (study / LOCK).exists()  # the file stays; its lock went with the process

    running = mid_run(result_rows(study), 3)
    assert running
    folder = next((study / "ray").glob(f"*{running[0]}*"))
    assert not (folder / "final.json").exists(), "the trial ended before the kill"
    cut = sorted(folder.glob(f"checkpoint_*/{CHECKPOINT}"))
    for path in cut:
        whole = path.read_bytes()
        path.write_bytes(whole[: len(whole) // 2])
    r = subprocess.run([sys.executable, "study/run.py", "--resume", str(study), "--no-report"],
                       cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert any(f"{p.parent.name}/{CHECKPOINT} is unreadable" in out for p in cut), out[-3000:]
    said = re.search(rf"^trial {running[0]}: checkpoint .+ is unreadable(.+)$", out, re.M)
    assert said, out[-3000:]
    # both cut: a fresh start, unless the worker wrote one more whole checkpoint as it died
    assert (said[1] == ", and no readable one is left: the trial starts again from its first "
            "epoch" or re.fullmatch(r": the trial resumes from its checkpoint checkpoint_\d+",
                                    said[1])), said[0]
    trials = pd.read_csv(study / "trials.csv").set_index("trial_id")
    assert len(trials) == 2 and (trials["status"] == "finished").all()
    assert (trials["epochs"] == 12).all()
    assert trials.loc[running[0], "checkpoint_note"] == said[0].split(": ", 1)[1]


STALLED = """\
# Three trials of 20 epochs, two at a time: one is frozen mid-run and cut by its stall limit.
fixed:
  model.fusion: attn
  rollingq.enabled: true
  train.epochs: 20
  data.train_size: 600
  data.test_size: 100
search:
  rollingq.max_rotations: {role: scientific, type: choice, values: [0, 1, 2]}
seeds: [0]
tune: {mode: grid, metric: val_acc, scheduler: fifo, resources: {cpu: 1, gpu: 0},
       max_failures: 1, max_concurrent: 2, stall_minutes: %s}
"""
STALL_MINUTES = 0.35  # 21 s: three times a worker's start and first epoch on a busy 2-core CI


@pytest.mark.integration
def test_a_hung_trial_is_cut_by_its_stall_limit_while_the_others_finish(tmp_path):
    """A trial's worker frozen mid-run (SIGSTOP: the process lives and holds its resources but
    reports nothing, as a read from a stuck mount would) is cut once its stall limit passes
    without an epoch: the driver's line names it within a few seconds of the limit, its worker
    is gone, trials.csv records it as timed out with the epochs it reported, and the other two
    trials finish every epoch; the study exits 0 and lists the timed-out trial."""
    spec = write_spec(tmp_path, "stalled", STALLED % STALL_MINUTES)
    log = tmp_path / "driver.log"
    study = tmp_path / "out" / "stalled" / "s"
    victim, pid = None, None
    driver = start_cli(["study/run.py", "--space", str(spec), "--storage", str(tmp_path / "out"),
                        "--name", "s", "--no-report"], log)
    try:
        wait_until(driver, log, lambda: bool(mid_run(result_rows(study), 2)))
        rows = result_rows(study)
        victim = mid_run(rows, 2)[0]
        pid = rows[victim][-1]["pid"]
        os.kill(pid, signal.SIGSTOP)
        frozen = time.monotonic()
        line = re.compile(rf"^trial {victim} timed out: no epoch reported for (\d+) s "
                          rf"\(tune.stall_minutes: {STALL_MINUTES:g}\)", re.M)
        wait_until(driver, log, lambda: line.search(log.read_text()), timeout=120)
        cut_after = time.monotonic() - frozen
        deadline = time.monotonic() + 10
        while not gone(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        killed_by_the_cut = gone(pid) and driver.poll() is None  # not by Ray's shutdown
        driver.wait(timeout=240)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait(timeout=30)
            kill_processes(session_processes(driver.pid))
        if pid is not None:
            kill_processes([pid])
    out = log.read_text()
    assert driver.returncode == 0, out[-3000:]
    limit = STALL_MINUTES * 60
    idle = int(line.search(out)[1])
    assert limit <= idle <= limit + 5 and cut_after <= limit + 5, (idle, cut_after)
    assert killed_by_the_cut, f"the frozen worker {pid} outlived the cut by 10 s"
    assert (f"trial {victim} timed out: no epoch reported for {idle} s (tune.stall_minutes: "
            f"{STALL_MINUTES:g}); it is not run again") in out
    # Ray's traceback of the killed actor is left out; the retry says what it is for
    assert f"Trial task failed for trial train_trial_{victim}" not in out, out[-3000:]
    assert f"trial {victim} starts again to record its time-out (no training)" in out
    # the epochs Ray recorded of it (a result sent just before the freeze may have reached the
    # driver after it); its replayed ledger repeats the last one
    reported = len({r["epoch"] for r in result_rows(study)[victim]})
    trials = pd.read_csv(study / "trials.csv").set_index("trial_id")
    assert trials.loc[victim, "status"] == "timed_out"
    assert 2 <= trials.loc[victim, "epochs"] == reported < 20
    assert trials.loc[victim, "error"] == f"timed out: no epoch reported for {idle} s"
    others = trials.drop(index=victim)
    assert len(others) == 2 and (others["status"] == "finished").all()
    assert (others["epochs"] == 20).all()
    curves = pd.read_csv(study / "curves.csv")
    # the epochs it reported (the untrained model's epoch -1 reaches curves.csv only through
    # the history.json of a trial that ends by itself)
    assert curves[curves["trial_id"] == victim]["epoch"].tolist() == list(range(reported))
    print(f"cut after {cut_after:.1f} s frozen, {idle} s without an epoch")


def gone(pid: int) -> bool:
    """The process has exited (a zombie its parent has not reaped yet counts)."""
    try:
        status = (Path("/proc") / str(pid) / "status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status


def test_an_unreadable_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog):
    """``study.trainable.restore`` on a trial folder of the storage in Ray's layout: the newest
    checkpoint cut short, the one before whole -> the whole one (and its best.pt) is copied to
    the trial's working folder, each step logged; none whole -> a fresh start."""
    from ray import tune

    from study.trainable import restore

    trial = tmp_path / "storage" / "trial_0"
    for k, epoch in ((0, 2), (1, 4)):
        folder = trial / f"checkpoint_00000{k}"
        save_checkpoint(folder / CHECKPOINT, {"model": {"w": torch.ones(2)}, "epoch": epoch,
                                              "best": {"epoch": 1}})  # best.pt holds it
        save_checkpoint(folder / BEST, {"model": {"w": torch.zeros(2)}, "epoch": 1})
    cut = trial / "checkpoint_000001" / CHECKPOINT
    cut.write_bytes(cut.read_bytes()[:40])
    work = tmp_path / "work"
    work.mkdir()
    fs = pyarrow.fs.LocalFileSystem()
    with caplog.at_level(logging.WARNING, logger="study.trainable"):
        resumable, note = restore(tune.Checkpoint.from_directory(str(cut.parent)), fs,
                                  str(trial), work)
    assert resumable and note.endswith("the trial resumes from its checkpoint checkpoint_000000")
    assert torch.load(work / CHECKPOINT)["epoch"] == 2 and (work / BEST).exists()
    said = caplog.text
    assert "checkpoint_000001/checkpoint.pt is unreadable" in said
    assert note in said

    older = trial / "checkpoint_000000" / CHECKPOINT
    older.write_bytes(older.read_bytes()[:40])
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="study.trainable"):
        resumable, note = restore(tune.Checkpoint.from_directory(str(cut.parent)), fs,
                                  str(trial), fresh)
    assert not resumable and "starts again from its first epoch" in note
    assert note in caplog.text
    assert not (fresh / CHECKPOINT).exists()


def test_resume_with_a_folder_alone_says_what_is_missing(tmp_path, capsys):
    """``--resume DIR`` without ``--space``: a folder that is no study, and a bare ``--resume``
    (the latest study of a space, which it cannot know), exit 2 with one line before Ray."""
    from study import run

    assert run.main(["--resume", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (f"error: --resume {tmp_path}: not a study "
                                               f"folder (no space.yaml)")
    assert run.main(["--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --space NAME is required (or --resume STUDY_DIR); available:")
    assert not (tmp_path / LOCK).exists()


def test_the_study_names_its_space(tmp_path):
    """What ``--resume`` alone reads the space from: ``space.yaml``'s name, else its parent
    folder; a bucket URI's ``.../<space>/<name>``; nothing for a folder that is no study."""
    from study.storage import study_space

    study = tmp_path / "rotation_ablation" / "20261207-120000"
    study.mkdir(parents=True)
    assert study_space(str(study)) is None
    (study / "space.yaml").write_text("name: hpo\nseeds: [0]\n")
    assert study_space(str(study)) == "hpo"
    (study / "space.yaml").write_text("seeds: [0]\n")
    assert study_space(str(study)) == "rotation_ablation"
    assert study_space("s3://bucket/studies/smoke/s1") == "smoke"
    assert study_space("s3://bucket/s1") is None

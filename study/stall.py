"""The per-trial stall limit, ``tune.stall_minutes``: a trial that reports no epoch for that
long is cut, recorded as timed out, and the study goes on.

A hung trial (a read from a stuck network mount, a deadlocked loader, a frozen worker) reports
nothing, so nothing on the trial's side can be trusted to notice; the driver does. At every
step of Ray's loop ``StallLimit`` looks at each running trial's clock, started when its worker
starts it and again at each epoch it reports (so the first epoch's clock also covers the
worker's start, the data loading and the untrained model's evaluation). Past the limit it
writes the trial's ledger (``study.trainable.LEDGER``: the last epoch it reported, with
``status: timed_out`` and ``final: True``) and kills the trial's Ray actor. Ray counts a
failure: with retries left it starts the trial again, which finds its ledger and replays it
without training (``study.trainable``); with none, Ray records an error, and ``study.results``
reads the same ledger. Either way trials.csv says ``timed_out``, the analysis counts the trial
as lost by its arm (like a diverged one), and a later ``--resume`` does not train it again.

A trial that wrote its own ledger (it ended as the limit passed) keeps it: it is killed, and
its restart replays what it wrote. Ray's error log of the killed actor (a traceback) is left
out of the driver's output for a cut trial: the driver's own line says what happened.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ray import tune

TIMED_OUT = "timed_out"  # the status of a trial cut by the limit
AFTER = "timed_out_after_s"  # in the ledger: the seconds the trial went without an epoch
RAY_TRIAL_ERRORS = "ray.tune.execution.tune_controller"  # logs "Trial task failed for trial ..."


class CutTrials(logging.Filter):
    """The trials this driver cut (by id), and the filter that drops Ray's error log of their
    killed actors."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith("Trial task failed for trial")
                    and any(i in message for i in self.ids))


CUT = CutTrials()  # this process's


class StallLimit(tune.Callback):
    """Cuts a running trial once ``minutes`` pass without a reported epoch.

    Pickled into the experiment state with the Tuner (plain values only); a resumed driver
    starts every trial's clock afresh (a trial cut before it was killed replays its ledger as
    soon as it starts, and reports at once).
    """

    def __init__(self, minutes: float):
        self.minutes = float(minutes)
        self._clock: dict[str, float] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_clock": {}}  # monotonic times mean nothing to a new driver

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._clock[trial.trial_id] = time.monotonic()

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                        **info: Any) -> None:
        self._clock[trial.trial_id] = time.monotonic()

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        now = time.monotonic()
        for trial in trials:
            if trial.status != "RUNNING" or trial.trial_id in CUT.ids:
                continue
            idle = now - self._clock.setdefault(trial.trial_id, now)
            if idle > self.minutes * 60:
                self._cut(trial, idle)

    def _cut(self, trial: Any, idle: float) -> None:
        import ray

        from study.trainable import LEDGER, read_json, write_json

        fs, folder = trial.storage.storage_filesystem, trial.path
        CUT.ids.add(trial.trial_id)
        logging.getLogger(RAY_TRIAL_ERRORS).addFilter(CUT)
        if read_json(fs, folder, LEDGER) is None:
            write_json(fs, folder, LEDGER, timed_out_record(trial.last_result or {}, idle))
            print(f"trial {trial.trial_id} timed out: no epoch reported for {idle:.0f} s "
                  f"(tune.stall_minutes: {self.minutes:g}); its worker is killed (Ray reports "
                  f"it as a failure, and a retry only replays the timed-out record) and the "
                  f"study goes on", flush=True)
        actor = trial.temporary_state.ray_actor
        if actor is not None:
            ray.kill(actor, no_restart=True)


def timed_out_record(last: dict[str, Any], idle: float) -> dict[str, Any]:
    """The ledger of a trial cut by the limit: its last reported epoch's metrics (nothing of
    Ray's own bookkeeping; none at all when it reported no epoch, which Optuna records as a
    pruned trial), ``final``, ``status: timed_out`` and the seconds it went without an epoch."""
    from study.results import RAY_COLUMNS

    kept = {k: v for k, v in last.items() if k not in RAY_COLUMNS and k != "status"}
    return {**kept, "final": True, "status": TIMED_OUT, AFTER: round(idle, 1)}

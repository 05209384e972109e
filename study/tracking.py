"""Logs a study's trials to its tracker (MLflow or W&B) as Ray Tune reports them.

``python study/run.py --tracker mlflow[:URI]|wandb[:PROJECT]`` adds ``Tracking`` to the study's
callbacks; the runs, their tags and what happens on resume are ``study/trackers.py``'s (the
same backends log a finished study after the fact: ``python -m study.export``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ray import tune

from study.trackers import describe, log_metrics, metrics_and_text, open_backend


class Tracking(tune.Callback):
    """Logs each trial's results to the study's tracker as Ray Tune reports them.

    Holds plain values only (Ray pickles callbacks into the experiment state); the tracker's
    client is made at the first
    event, in the driver.
    """

    def __init__(self, folder: Path, tracker: dict[str, Any], space: str):
        self.folder, self.tracker, self.space = str(folder), tracker, space
        self.backend: Any = None
        self.failed = False

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "backend": None, "failed": False}

    def _do(self, what: str, fn, *args: Any) -> None:
        if self.failed:
            return
        try:
            if self.backend is None:
                self.backend = open_backend(Path(self.folder), self.tracker, self.space,
                                            live=True)
            fn(*args)
        except Exception as e:  # noqa: BLE001 - the study must not fail with its tracker
            self.failed = True
            print(f"warning: {describe(self.tracker)} failed while {what} "
                  f"({type(e).__name__}: {str(e)[:300]}); the study goes on without it, and "
                  f"`python -m study.export {self.tracker['kind']} {self.folder}` logs what "
                  f"is missing afterwards", file=sys.stderr, flush=True)

    def _start(self, trial: Any) -> None:
        from study.trainable import trial_config

        params = trial_config(trial.config)
        if trial.config.get("variant") is not None:
            params["variant"] = trial.config["variant"]
        self.backend.trial(trial.trial_id, params)
        self.backend.running(trial.trial_id)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """A trial starts, is retried or is restored: its run, found or made."""
        self._do(f"starting the run of trial {trial.trial_id}", self._start, trial)

    def _result(self, trial: Any, result: dict[str, Any]) -> None:
        if not self.backend.has_trial(trial.trial_id):
            self._start(trial)
        if result.get("epoch") is None:
            return
        metrics, text = metrics_and_text(result)
        log_metrics(self.backend, trial.trial_id, int(result["epoch"]), metrics, text)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                        **info: Any) -> None:
        self._do(f"logging trial {trial.trial_id}", self._result, trial, result)

    def _end(self, trial: Any, status: str) -> None:
        if not self.backend.has_trial(trial.trial_id):
            self._start(trial)
        self.backend.end_trial(trial.trial_id, status)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        last = trial.last_result or {}
        status = last.get("status", "finished") if last.get("final") else "stopped"
        self._do(f"ending trial {trial.trial_id}", self._end, trial, status)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._do(f"ending trial {trial.trial_id}", self._end, trial, "errored")

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        if self.backend is not None and not self.failed:
            try:
                self.backend.close()
            except Exception:  # noqa: BLE001, S110 - the end-of-study sync fills any gap
                pass

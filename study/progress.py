"""One console line per ended trial, beside Ray Tune's status table."""

from __future__ import annotations

import time
from typing import Any

from ray import tune

ENDED = ("TERMINATED", "ERROR")


class TrialLines(tune.Callback):
    """Prints ``[k/N] trial <id> <status>: <metric> ... air ... rotations ...`` as trials end.

    Module-level and holding only plain values, so Ray can pickle it into the experiment state.
    ``k`` counts the trials that have ended so far, those of an earlier run of a resumed study
    included.
    """

    def __init__(self, expected: int, metric: str | list[str]):
        self.expected = expected
        self.metrics = [metric] if isinstance(metric, str) else list(metric)
        self.ended: set[str] = set()
        self.last_status = time.monotonic()

    def _count(self, trials: list, trial: Any | None = None) -> int:
        self.ended |= {t.trial_id for t in trials if t.status in ENDED}
        if trial is not None:
            self.ended.add(trial.trial_id)
        return len(self.ended)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        """A status line every 30 s: how many trials run, wait and ended."""
        if time.monotonic() - self.last_status < 30:
            return
        self.last_status = time.monotonic()
        states = [t.status for t in trials]
        running, pending = states.count("RUNNING"), states.count("PENDING")
        ended = self._count(trials)
        print(f"... {running} running, {pending} pending, {ended}/{self.expected} ended",
              flush=True)

    def _line(self, trials: list, trial: Any, status: str) -> None:
        r = trial.last_result or {}
        parts = [f"[{self._count(trials, trial)}/{self.expected}] trial {trial.trial_id} {status}"]
        # a study begun before Pareto studies was pickled with one `metric`
        keys = self.metrics if hasattr(self, "metrics") else [self.metric]
        for key in dict.fromkeys([*keys, "test_acc_at_best_val", "air", "rotations"]):
            value = r.get(key)
            if value is not None:
                parts.append(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}")
        print(" ".join(parts), flush=True)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        last = trial.last_result or {}
        # Without its final report a trial that completes was stopped by the scheduler (ASHA).
        self._line(trials, trial, last.get("status", "ended") if last.get("final") else "stopped")

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                        **info: Any) -> None:
        """A trial's checkpoint note (``study.trainable.restore``), once a trial."""
        note = result.get("checkpoint_note")
        said = self.__dict__.setdefault("noted", set())  # a callback pickled before notes
        if note and trial.trial_id not in said:
            said.add(trial.trial_id)
            print(f"trial {trial.trial_id}: {note}", flush=True)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        from study.stall import CUT

        if trial.trial_id in CUT.ids:  # killed by the stall limit: the retry records that
            print(f"trial {trial.trial_id} starts again to record its time-out (no training)",
                  flush=True)
            return
        print(f"trial {trial.trial_id} failed ({trial.num_failures} so far); retrying from its "
              f"last checkpoint", flush=True)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._line(trials, trial, "errored")

"""One console line per ended trial, beside Ray Tune's status table."""

from __future__ import annotations

import time
from typing import Any

from ray import tune


class TrialLines(tune.Callback):
    """Prints ``[k/N] trial <id> <status>: <metric> ... air ... rotations ...`` as trials end.

    Module-level and holding only plain values, so Ray can pickle it into the experiment state.
    """

    def __init__(self, expected: int, metric: str):
        self.expected = expected
        self.metric = metric
        self.ended = 0
        self.last_status = time.monotonic()

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        """A status line every 30 s: how many trials run, wait and ended."""
        if time.monotonic() - self.last_status < 30:
            return
        self.last_status = time.monotonic()
        states = [t.status for t in trials]
        running, pending = states.count("RUNNING"), states.count("PENDING")
        print(f"... {running} running, {pending} pending, {self.ended}/{self.expected} ended", flush=True)

    def _line(self, trial: Any, status: str) -> None:
        self.ended += 1
        r = trial.last_result or {}
        parts = [f"[{self.ended}/{self.expected}] trial {trial.trial_id} {status}"]
        for key in (self.metric, "test_acc_at_best_val", "air", "rotations"):
            value = r.get(key)
            if value is not None:
                parts.append(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}")
        print(" ".join(parts), flush=True)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._line(trial, (trial.last_result or {}).get("status", "ended"))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._line(trial, "errored")

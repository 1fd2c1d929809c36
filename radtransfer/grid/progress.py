"""Progress of a grid: a line per run started or finished, and an ETA that weighs the runs left by their kind."""

from __future__ import annotations

import sys
import time

import numpy as np

from ..utils.progress import format_seconds
from .plan import expected_cost


class GridProgress:
    """Progress lines and the ETA of a grid, for one worker or many.

    The ETA sums the expected time of every run not yet finished and divides it by the number of runs
    that train at once. A run's expected time is the mean time of finished runs of its backbone and
    strategy, else its prior cost (``expected_cost``) times the seconds per cost unit of the runs
    finished so far.
    """

    def __init__(self, task: str, runs, done_before: int, total: int, parallel: int = 1, log=None, verbose: int = 1):
        self.task, self.total, self.parallel = task, total, max(1, parallel)
        self.left = {run.id: run for run in runs}
        self.done = done_before
        self.log, self.verbose = log or sys.stderr, verbose
        self.seconds: dict[tuple, list] = {}
        self._units = [0.0, 0.0]  # seconds, cost units of the finished runs
        self._reported_held: set = set()

    @staticmethod
    def _kind(run) -> tuple:
        return run.scenario.backbone, run.scenario.strategy

    def eta(self) -> float:
        if not self._units[1]:
            return float("nan")
        per_unit = self._units[0] / self._units[1]
        expected = [
            float(np.mean(self.seconds[self._kind(run)]))
            if self._kind(run) in self.seconds
            else expected_cost(run) * per_unit
            for run in self.left.values()
        ]
        running_at_once = min(self.parallel, len(expected)) or 1
        return sum(expected) / running_at_once

    def say(self, text: str) -> None:
        if self.verbose:
            print(f"[grid {self.task}] {text}", file=self.log, flush=True)

    def starting(self, run) -> None:
        self.say(
            f"done {self.done}/{self.total}, running {run.id}, left {len(self.left)}, ETA {format_seconds(self.eta())}"
        )

    def finished(self, outcome, running: int | None = None) -> None:
        """Reports what became of a run. A held or lost run stays among the runs left (the grid waits for it)."""
        if outcome.state in ("held", "lost"):
            if outcome.run_id in self._reported_held:
                return
            self._reported_held.add(outcome.run_id)
        run = (
            self.left.get(outcome.run_id) if outcome.state in ("held", "lost") else self.left.pop(outcome.run_id, None)
        )
        if outcome.state in ("recorded", "already_recorded"):
            self.done += 1
        if outcome.state == "recorded" and run is not None:
            self.seconds.setdefault(self._kind(run), []).append(outcome.seconds)
            self._units[0] += outcome.seconds
            self._units[1] += expected_cost(run)
        if running is not None:  # many workers: one line per finished run
            what = {
                "recorded": f"finished {outcome.run_id} in {format_seconds(outcome.seconds)} on {outcome.worker}; "
                f"{_test_auc(outcome)}",
                "already_recorded": f"{outcome.run_id} was already recorded",
                "held": f"{outcome.run_id} is held by {describe_holder(outcome.holder)}",
                "lost": f"{outcome.run_id}: its claim was taken over; left to the new holder",
            }[outcome.state]
            self.say(
                f"done {self.done}/{self.total}; {what}; running {running}, left {len(self.left)}, "
                f"ETA {format_seconds(self.eta())}"
            )
        elif outcome.state == "recorded":  # one worker: the run's line, as it ends
            self.say(
                f"finished {outcome.run_id} in {format_seconds(outcome.seconds)}: {_test_auc(outcome)}; "
                f"done {self.done}/{self.total}, left {len(self.left)}, ETA {format_seconds(self.eta())}"
            )
        elif outcome.state == "held":
            self.say(f"skipping {outcome.run_id}: held by {describe_holder(outcome.holder)}")
        if outcome.state == "recorded" and outcome.status not in (None, "finished"):
            self.say(
                f"{outcome.run_id} {outcome.status} (loss NaN at epoch {outcome.diverged_epoch}); recorded, "
                "continuing with the other runs"
            )


def _test_auc(outcome) -> str:
    if outcome.status == "failed":
        return "failed, no test AUC"
    auc = outcome.auc
    return f"test AUC {auc:.3f}" if auc is not None and np.isfinite(auc) else "test AUC not defined"


def summary(records) -> str:
    """The test AUC of a grid's recorded runs (``load_records``) per weight source: mean, range and number of runs
    (failed runs, and runs whose test part lacks a class, have none), e.g. "test AUC by source (mean, min–max over
    runs): radimagenet 0.812 (0.700–0.900, 4 runs); random 0.650 (2 runs, 1 without one)"."""
    if records.empty:
        return "no run recorded yet"
    parts = []
    for source, group in records.groupby("source", sort=False):
        auc = group["auc"].astype(float)
        auc = auc[np.isfinite(auc)]
        missing = len(group) - len(auc)
        runs = f"{len(group)} run" + ("s" if len(group) != 1 else "") + (f", {missing} without one" if missing else "")
        if auc.empty:
            parts.append(f"{source} no test AUC ({runs})")
        elif len(auc) == 1:
            parts.append(f"{source} {auc.iloc[0]:.3f} ({runs})")
        else:
            parts.append(f"{source} {auc.mean():.3f} ({auc.min():.3f}–{auc.max():.3f}, {runs})")
    return "test AUC by source (mean, min–max over runs): " + "; ".join(parts)


def describe_holder(holder: dict | None) -> str:
    if not holder:
        return "another process"
    since = holder.get("claimed_at")
    age = f", since {format_seconds(time.time() - since)} ago" if isinstance(since, (int, float)) else ""
    return f"pid {holder.get('pid')} on {holder.get('host')}{age}"

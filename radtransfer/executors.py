"""Where a grid's runs execute: one after another in this process, or as Ray tasks on a cluster.

Both go through ``grid_runs.execute_claimed``, so they train, record and claim runs the same way and
may share one results folder with each other and with other shards.
"""

from __future__ import annotations

from .backbones import did_you_mean
from .grid_runs import GridJob, GridProgress, RunOutcome, execute_claimed

EXECUTORS = ("sequential", "ray")


class SequentialExecutor:
    """Runs the grid's runs one after another in this process. Several such processes (one per GPU, or
    job-array tasks) may share one out_dir: each skips the runs another one has claimed."""

    name = "sequential"

    def parallelism(self) -> int:
        return 1

    def run(self, job: GridJob, runs, progress: GridProgress, token: str) -> list[RunOutcome]:
        outcomes = []
        for run in runs:
            outcome = execute_claimed(job, run, token, on_start=progress.starting)
            progress.finished(outcome)
            outcomes.append(outcome)
        return outcomes

    def close(self) -> None:
        pass


def resolve_executor(executor):
    """An executor from run_grid's ``executor`` argument: "sequential", "ray", or an executor object
    (e.g. ``RayExecutor(address="auto", gpus_per_run=1)``)."""
    if executor is None or executor == "sequential":
        return SequentialExecutor()
    if executor == "ray":
        from .ray_executor import RayExecutor

        return RayExecutor()
    if hasattr(executor, "run") and hasattr(executor, "parallelism"):
        return executor
    raise ValueError(f"Unknown executor {executor!r}; expected one of {', '.join(EXECUTORS)}, or a RayExecutor."
                     f"{did_you_mean(str(executor), EXECUTORS)}")

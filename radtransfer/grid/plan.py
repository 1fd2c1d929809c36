"""The plan of a grid: which runs (source × scenario × fold × repeat), each run's seed, its expected cost, and
which share of the runs a shard ("k/n", or "auto" from a SLURM job array or a Kubernetes Indexed Job) takes."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..models.backbones import get_backbone
from ..utils.seeding import derive_seed
from .arms import arm_name, parse_arm
from .paper import Scenario
from .records import fold_name

# Time of a run relative to unfreeze_all on the same backbone: a frozen backbone needs no backward pass
# (measured 0.46-0.68 for freeze_all and 0.50-0.66 for unfreeze_top10 across the four; docs/performance.md).
STRATEGY_COST = {"unfreeze_all": 1.0, "unfreeze_top10": 0.6, "freeze_all": 0.6}


def runs_source(source: str, scenario: Scenario) -> bool:
    """Whether a grid trains this arm on this scenario: random initialisation trains every layer only
    (freezing random weights is meaningless), so its runs are those of the unfreeze_all scenarios."""
    return not parse_arm(source).is_random or scenario.strategy == "unfreeze_all"


def expected_cost(run) -> float:
    """A run's expected time in ResNet50-unfreeze_all units: a prior for ordering runs and for the ETA."""
    backbone = parse_arm(run.source).encoder or run.scenario.backbone  # a foundation arm trains its encoder
    return get_backbone(backbone).relative_cost * STRATEGY_COST.get(run.scenario.strategy, 1.0)


def longest_first(runs) -> list:
    """Runs by expected cost, longest first (ties keep their order): with many workers the long
    InceptionResNetV2 runs then start early instead of finishing last on a few GPUs while the rest idle
    (benchmarks/grid_scheduling.py)."""
    return sorted(runs, key=lambda run: -expected_cost(run))


@dataclass(frozen=True)
class Run:
    """One run of a grid: a weight source's training of one scenario on one fold, repeat ``repeat`` (0-based)
    of it. Repeat 0 is the run of a grid without repeats (same seed, same folder)."""

    source: str
    scenario: Scenario
    fold: int
    repeat: int = 0

    @property
    def id(self) -> str:
        return f"{self.source}/{self.scenario.id}/{fold_name(self.fold, self.repeat)}"


def check_repeats(repeats) -> int:
    """``repeats`` as an int ≥ 1, or a ValueError naming it."""
    if isinstance(repeats, bool) or not isinstance(repeats, (int, np.integer)) or repeats < 1:
        raise ValueError(f"Expected repeats to be an integer ≥ 1. Received: repeats={repeats!r}")
    return int(repeats)


def plan_runs(sources, scenarios, n_folds: int, shard=None, repeats: int = 1) -> list[Run]:
    """Every run of the grid in a fixed order (repeat, fold, scenario, source): all of repeat 0 (the grid
    without repeats, in its order) before repeat 1. A shard "k/n" takes a stable share of them, balanced by
    expected cost (an InceptionResNetV2 run costs about two ResNet50 runs, a frozen backbone about 0.6 of a
    full fine-tune), so n shards partition the grid, repeats included, and finish close together. Sources are
    arms (``grid.arms``: "imagenet", "imagenet@faithful"); random initialisation (``arms.RANDOM``; None or
    "none" name it too) has runs on the unfreeze_all scenarios only."""
    runs = [
        Run(source, scenario, fold, repeat)
        for repeat in range(check_repeats(repeats))
        for fold in range(n_folds)
        for scenario in scenarios
        for source in map(arm_name, sources)
        if runs_source(source, scenario)
    ]
    parsed = parse_shard(shard)
    if parsed is None:
        return runs
    k, n = parsed
    return [runs[i] for i in balanced_share([expected_cost(run) for run in runs], k, n)]


def run_seed(grid_seed: int, scenario: Scenario, fold: int, repeat: int = 0) -> int:
    """The seed of one run: a function of (grid seed, scenario, fold, repeat) only. The weight source is
    left out on purpose, so that a scenario's RadImageNet and ImageNet runs of one repeat are paired: same
    split, same batch order, same augmentation draws, same dropout masks, same head initialisation.

    Repeat 0 has the seed of a grid without repeats; repeat r ≥ 1 a seed of its own, so repeats differ in
    everything the seed draws (head initialisation, dropout, augmentation, data order) but not in the split,
    which is the fold's.

    The scenario's image size is left out too (its ``base``), so a scenario's runs at two sizes are paired as well.
    """
    name = scenario.base.id
    if repeat == 0:
        return derive_seed(grid_seed, "run", name, fold)
    return derive_seed(grid_seed, "run", name, fold, "repeat", repeat)


SLURM_ID, SLURM_MIN, SLURM_MAX = "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_MAX"
SLURM_COUNT, SLURM_STEP = "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_STEP"
K8S_INDEX = "JOB_COMPLETION_INDEX"


def parse_shard(shard) -> tuple[int, int] | None:
    """ "k/n" → (k, n) with 1 ≤ k ≤ n."""
    if shard is None:
        return None
    try:
        k, n = (int(part) for part in str(shard).split("/"))
    except ValueError:
        raise ValueError(f"Expected shard='k/n' (e.g. '1/4') or 'auto'. Received: shard={shard!r}") from None
    if not 1 <= k <= n:
        raise ValueError(f"Expected 1 ≤ k ≤ n in shard='k/n'. Received: shard={shard!r}")
    return k, n


def balanced_share(costs, k: int, n: int) -> list[int]:
    """The indices of shard k of n, in their original order, when items of the given costs are split into n
    shares of about equal total cost: each item, longest first (ties in order), goes to the share with the
    least cost so far (ties to the lower share). Deterministic, so n processes agree without talking."""
    loads = [0.0] * n
    share = []
    for index in sorted(range(len(costs)), key=lambda i: -costs[i]):
        target = min(range(n), key=lambda j: (loads[j], j))
        loads[target] += costs[index]
        if target == k - 1:
            share.append(index)
    return sorted(share)


def _int(environ, name):
    value = environ.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"${name}={value!r} is not an integer.") from None


def _from_slurm(environ) -> str:
    task = _int(environ, SLURM_ID)
    low, high = _int(environ, SLURM_MIN), _int(environ, SLURM_MAX)
    count, step = _int(environ, SLURM_COUNT), _int(environ, SLURM_STEP)
    if low is None or high is None:
        raise ValueError(
            f"shard='auto' found ${SLURM_ID}={task} but not ${SLURM_MIN} and ${SLURM_MAX}; is this a job "
            "array (sbatch --array)? Pass shard='k/n' instead."
        )
    step = step or 1
    if count is None:
        count = (high - low) // step + 1
    if (high - low) // step + 1 != count or (task - low) % step:
        raise ValueError(
            f"shard='auto' cannot place array task {task} in array {low}-{high} with {count} tasks "
            "(a list such as --array=1,4,9 has no arithmetic order). Use a range (--array=0-9 or "
            "0-18:2), or pass shard='k/n'."
        )
    return f"{(task - low) // step + 1}/{count}"


def _from_kubernetes(environ, count) -> str:
    index = _int(environ, K8S_INDEX)
    if count is None:
        raise ValueError(
            f"shard='auto' found ${K8S_INDEX}={index} (a Kubernetes Indexed Job) but not the number of "
            "completions, which the pod cannot see: pass shard_count= (CLI: --shard-count), equal to the "
            "Job's spec.completions."
        )
    if not 0 <= index < count:
        raise ValueError(f"${K8S_INDEX}={index} is outside 0..{count - 1} (shard_count={count}).")
    return f"{index + 1}/{count}"


def resolve_shard(shard, shard_count: int | None = None, environ=None) -> str | None:
    """The shard "k/n" this process runs.

    Args:
        shard: None (everything), "k/n", or "auto": from a SLURM job array (``$SLURM_ARRAY_TASK_ID`` and
            the array's ``_MIN``/``_MAX``, ``_COUNT`` and ``_STEP``: task ids 0-9, 1-10 or 0-18:2 all give
            shards 1/10 … 10/10), or from a Kubernetes Indexed Job (``$JOB_COMPLETION_INDEX``, 0-based,
            with ``shard_count``).
        shard_count: the number of shards, where the environment does not say it (Kubernetes).
        environ: the environment to read (default ``os.environ``).

    Returns:
        "k/n", or None for the whole grid.
    """
    if shard != "auto":
        if shard_count is not None and shard is not None:
            raise ValueError(f"shard_count={shard_count} applies only to shard='auto'. Received: shard={shard!r}")
        parse_shard(shard)
        return shard
    environ = os.environ if environ is None else environ
    if environ.get(SLURM_ID) not in (None, ""):
        resolved = _from_slurm(environ)
        if shard_count is not None and int(resolved.split("/")[1]) != shard_count:
            raise ValueError(
                f"shard_count={shard_count} disagrees with the SLURM array, which has {resolved.split('/')[1]} tasks."
            )
        return resolved
    if environ.get(K8S_INDEX) not in (None, ""):
        return _from_kubernetes(environ, shard_count)
    raise ValueError(
        f"shard='auto' found neither ${SLURM_ID} (a SLURM job array: sbatch --array=0-9) nor ${K8S_INDEX} "
        "(a Kubernetes Indexed Job). Outside those, pass shard='k/n', or leave shard out: processes "
        "sharing one out_dir also split the runs between them, each claiming the next free run."
    )

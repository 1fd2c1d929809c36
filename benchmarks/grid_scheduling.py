"""Idle time of the paper's grid on W GPUs: static shards ("k/n") against dynamic scheduling, by simulation.

The grid is radtransfer's own plan (24 scenarios × 2 weight sources × 5 folds = 240 runs, in
``plan_runs`` order). Run durations are simulated from the relative costs radtransfer uses as its prior
(``grid_runs.expected_cost``), with per-run noise:

- backbone (unfreeze_all; the registry's ``relative_cost``): ResNet50 1.0, DenseNet121 1.15,
  InceptionV3 1.0, InceptionResNetV2 2.0 (training steps measured on an H100, docs/performance.md);
- strategy: unfreeze_all 1.0, unfreeze_top10 0.6, freeze_all 0.6 (no backward pass through the frozen
  backbone);
- noise: lognormal, sigma 0.15 (data loading, evaluation, a busy node), unknown to the schedulers.

Schedulers:

- ``static, round robin``: W shards, shard k taking every W-th run from the k-th (``--shard k/n`` before
  this benchmark);
- ``static, balanced``: W shards "k/W" as ``plan_runs`` now cuts them, balanced by expected cost (what
  ``--shard`` and ``--shard auto`` do);
- ``dynamic, plan order``: each run goes to the first free GPU, in plan order (W processes sharing one
  out_dir without shards, each claiming the next free run);
- ``dynamic, longest first``: the same, runs sorted by expected cost first (the Ray executor).

Idle time is the share of GPU time between a GPU's last run and the grid's end. Run::

    python benchmarks/grid_scheduling.py [--trials 50]
"""

from __future__ import annotations

import argparse
import heapq
import sys

import numpy as np


def static_makespan(durations, shares):
    return max(sum(durations[i] for i in share) for share in shares)


def dynamic_makespan(durations, workers, order=None):
    free = [0.0] * workers
    heapq.heapify(free)
    for index in order if order is not None else range(len(durations)):
        heapq.heappush(free, heapq.heappop(free) + durations[index])
    return max(free)


def main(argv=None) -> int:
    from radtransfer import protocol
    from radtransfer.grid.plan import expected_cost, longest_first

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 4, 8, 16, 24])
    args = parser.parse_args(argv)

    runs = protocol.plan_runs(("radimagenet", "imagenet"), protocol.radimagenet_scenarios(), 5)
    base = np.array([expected_cost(run) for run in runs])
    position = {run.id: index for index, run in enumerate(runs)}
    ray_order = [position[run.id] for run in longest_first(runs)]
    rng = np.random.default_rng(0)
    print(f"{len(runs)} runs; total work {base.sum():.0f} ResNet50-run units; longest run {base.max():.1f}")
    print(
        "| GPUs | static, round robin | static, balanced | dynamic, plan order | dynamic, longest first | "
        "wall time: round robin / balanced / longest first |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for workers in args.workers:
        round_robin = [list(range(k, len(runs), workers)) for k in range(workers)]
        balanced = [
            [
                position[run.id]
                for run in protocol.plan_runs(
                    ("radimagenet", "imagenet"), protocol.radimagenet_scenarios(), 5, f"{k}/{workers}"
                )
            ]
            for k in range(1, workers + 1)
        ]
        idle = {"round_robin": [], "balanced": [], "dynamic": [], "lpt": []}
        walls = {"round_robin": [], "balanced": [], "lpt": []}
        for _ in range(args.trials):
            durations = base * rng.lognormal(0.0, 0.15, size=len(base))
            total = durations.sum()
            spans = {
                "round_robin": static_makespan(durations, round_robin),
                "balanced": static_makespan(durations, balanced),
                "dynamic": dynamic_makespan(durations, workers),
                "lpt": dynamic_makespan(durations, workers, ray_order),
            }
            for name, span in spans.items():
                idle[name].append(1 - total / (workers * span))
            for name in walls:
                walls[name].append(spans[name] / (total / workers))  # relative to perfect balance
        cells = " | ".join(f"{100 * np.median(idle[name]):.1f}%" for name in idle)
        ratios = " / ".join(f"{np.median(walls[name]):.2f}" for name in walls)
        print(f"| {workers} | {cells} | {ratios} |")
    print(
        "idle: median share of GPU time unused before the grid ends; wall time: median, relative to the total work "
        "spread perfectly evenly over the GPUs."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

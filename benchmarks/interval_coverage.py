"""How often the 95% AUC interval of ``bootstrap_auc_ci`` covers the true AUC, by number of patients.

    python benchmarks/interval_coverage.py [--sims 500] [--resamples 1000] [--patients 5 10 15 30 50]
        [--slices 20 1] [--seed 0] [--workers 2]

Each simulation draws multi-slice data exactly as ``_clustered`` in ``tests/test_statistics.py`` does: every
patient has one label (half the patients per class), a random effect shared by its slices, and slice noise, so
the true image-level AUC is Φ(effect / √(2 (patient_sd² + slice_sd²))) = Φ(1/√2.5) ≈ 0.736. On the same data it
takes the interval that ``evaluate`` gives with patient ids (BCa over patients, stratified by class) and the one
without (groups=None: images resampled). Per row: the share of intervals covering the true AUC with its 95%
Clopper–Pearson interval (the Monte Carlo error), the mean width, and the share of BCa intervals (the rest
fell back to percentile). With one slice per patient both units are the same images.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # importing radtransfer imports TensorFlow

EFFECT, PATIENT_SD, SLICE_SD = 1.0, 1.0, 0.5
TRUE_AUC = 0.5 * math.erfc(-EFFECT / math.sqrt(2 * (PATIENT_SD**2 + SLICE_SD**2)) / math.sqrt(2))  # Φ(x)


def clustered(rng, patients, slices):
    """tests/test_statistics.py's ``_clustered``: labels, (images, 2) probabilities, patient ids."""
    labels = np.repeat(rng.permutation(np.arange(patients) % 2), slices)
    patient_effect = np.repeat(rng.normal(0, PATIENT_SD, patients), slices)
    score = EFFECT * labels + patient_effect + rng.normal(0, SLICE_SD, patients * slices)
    p = 1 / (1 + np.exp(-score))
    groups = np.repeat([f"p{i}" for i in range(patients)], slices)
    return labels, np.stack([1 - p, p], axis=1), groups


def simulate(task):
    """One simulation: (covered, width, BCa) for the patient-level and the image-level interval."""
    from radtransfer.evaluation.stats import bootstrap_auc_ci

    per_class, slices, resamples, seed = task
    rng = np.random.default_rng(seed)
    labels, probabilities, groups = clustered(rng, 2 * per_class, slices)
    out = []
    for unit_groups in (groups, None):
        ci = bootstrap_auc_ci(labels, probabilities, groups=unit_groups, n=resamples, seed=int(rng.integers(2**31)))
        out.append((ci["low"] <= TRUE_AUC <= ci["high"], ci["high"] - ci["low"], ci["method"] == "BCa"))
    return out


def summary(results, unit):
    """Coverage with its Clopper–Pearson 95% interval, mean width and BCa share of one unit's intervals."""
    from scipy.stats import binomtest

    covered, width, bca = np.array([r[unit] for r in results], dtype=np.float64).T
    ci = binomtest(int(covered.sum()), len(covered)).proportion_ci(0.95, method="exact")
    return [f"{covered.mean():.1%} ({ci.low:.1%}–{ci.high:.1%})", f"{np.nanmean(width):.3f}", f"{bca.mean():.0%}"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sims", type=int, default=500, help="simulations per row")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (evaluate uses 1000)")
    parser.add_argument("--patients", type=int, nargs="+", default=[5, 10, 15, 30, 50], help="patients per class")
    parser.add_argument("--slices", type=int, nargs="+", default=[20, 1], help="slices per patient")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="processes")
    args = parser.parse_args(argv)

    rows = [(k, s) for s in args.slices for k in args.patients]
    # One seed per (row, simulation): the numbers do not depend on the number of workers.
    tasks = [
        (k, s, args.resamples, np.random.SeedSequence([args.seed, s, k, i])) for k, s in rows for i in range(args.sims)
    ]
    start = time.perf_counter()
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
        results = list(pool.map(simulate, tasks, chunksize=4))
    wall = time.perf_counter() - start

    print(f"True AUC {TRUE_AUC:.4f}; {args.sims} simulations per row, {args.resamples} resamples, seed {args.seed}.\n")
    print(
        "| patients/class | slices | images | patient-level coverage (95% CI) | width | BCa "
        "| image-level coverage (95% CI) | width | BCa |"
    )
    print("|---:|---:|---:|---|---:|---:|---|---:|---:|")
    for j, (k, s) in enumerate(rows):
        chunk = results[j * args.sims : (j + 1) * args.sims]
        cells = [str(k), str(s), str(2 * k * s), *summary(chunk, 0), *summary(chunk, 1)]
        print("| " + " | ".join(cells) + " |")
    print(f"\nWall time {wall:.0f} s with {args.workers} worker(s).")


if __name__ == "__main__":
    main()

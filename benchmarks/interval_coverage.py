"""How often the 95% intervals that ``evaluate`` reports cover the truth, by number of patients: the AUC's
(``bootstrap_auc_ci``) and, with ``--statistic operating-point``, the sensitivity's and specificity's at a fixed
threshold (``bootstrap_operating_point_ci``, what ``evaluate(..., site=...)`` reports).

    python benchmarks/interval_coverage.py [--sims 500] [--resamples 1000] [--patients 5 10 15 30 50]
        [--slices 20 1] [--auc 0.7365] [--patient-level-only] [--seed 0] [--workers 2]
    python benchmarks/interval_coverage.py --statistic operating-point [--sensitivity 0.8 0.9 0.95] ...

Each simulation draws multi-slice data as ``clustered`` in ``tests/simulated.py`` does: every patient has
one label (half the patients per class), a random effect shared by its slices (sd 1), and slice noise (sd 0.5), on
top of ``effect`` × label. The true image-level AUC is Φ(effect / √(2 (1² + 0.5²))); ``--auc`` sets the effect that
gives each AUC asked for (the default, effect 1, is AUC 0.7365). On the same data it takes the interval that
``evaluate`` gives with patient ids (BCa over patients, stratified by class) and, unless --patient-level-only, the
one without (groups=None: images resampled).

With ``--statistic operating-point`` the same model is cut at the score effect / 2, so that the true sensitivity
and specificity are both Φ(effect / (2 √1.25)) (``--sensitivity`` sets the effect); each image's call is then a
Bernoulli draw whose probability depends on its patient (calls cluster within patients), and patients-per-class
is the number of positive (and of negative) patients, the count the small-sample note is judged on.

Per row: the share of intervals covering the truth with its 95% Clopper–Pearson interval (the Monte Carlo error),
the mean width, and the share of BCa intervals (the rest fell back to percentile); for the operating point, also
the share of sites where every positive image was called positive (the interval is then 1–1), the share whose
interval ``evaluate`` gives the small-sample note (``small_sample_note``: under 20 patients, or under 5 patients'
worth of the rarer outcome), and the coverage of the intervals without the note.
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
SCALE = math.sqrt(PATIENT_SD**2 + SLICE_SD**2)  # sd of one image's score around effect × label


def phi(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2))


def phi_inverse(p: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(p))


def true_auc(effect: float) -> float:
    return phi(effect / (math.sqrt(2) * SCALE))


TRUE_AUC = true_auc(EFFECT)


def effect_for_auc(auc: float) -> float:
    return EFFECT if auc == TRUE_AUC else phi_inverse(auc) * math.sqrt(2) * SCALE


def true_sensitivity(effect: float) -> float:
    """Sensitivity (= specificity) when the score is cut at effect / 2."""
    return phi(effect / (2 * SCALE))


def effect_for_sensitivity(sensitivity: float) -> float:
    return 2 * SCALE * phi_inverse(sensitivity)


def clustered(rng, patients, slices, effect=EFFECT):
    """tests/simulated.py's ``clustered``: labels, (images, 2) probabilities, patient ids."""
    labels = np.repeat(rng.permutation(np.arange(patients) % 2), slices)
    patient_effect = np.repeat(rng.normal(0, PATIENT_SD, patients), slices)
    score = effect * labels + patient_effect + rng.normal(0, SLICE_SD, patients * slices)
    p = 1 / (1 + np.exp(-score))
    groups = np.repeat([f"p{i}" for i in range(patients)], slices)
    return labels, np.stack([1 - p, p], axis=1), groups


def simulate(task):
    """One simulation: (covered, width, BCa) for the patient-level and (unless patient-level only) the
    image-level AUC interval."""
    from radtransfer.stats import bootstrap_auc_ci

    per_class, slices, effect, resamples, image_level, seed = task
    truth = true_auc(effect)
    rng = np.random.default_rng(seed)
    labels, probabilities, groups = clustered(rng, 2 * per_class, slices, effect)
    out = []
    for unit_groups in (groups, None) if image_level else (groups,):
        ci = bootstrap_auc_ci(labels, probabilities, groups=unit_groups, n=resamples, seed=int(rng.integers(2**31)))
        out.append((ci["low"] <= truth <= ci["high"], ci["high"] - ci["low"], ci["method"] == "BCa"))
    return out


def simulate_operating_point(task):
    """One simulation: (covered, width, BCa, all called, noted) for the sensitivity's and the specificity's
    patient-level interval at the threshold effect / 2 (noted: ``evaluate`` gives it the small-sample note)."""
    from radtransfer.stats import bootstrap_operating_point_ci, small_sample_note

    per_class, slices, effect, resamples, _, seed = task
    truth = true_sensitivity(effect)
    rng = np.random.default_rng(seed)
    labels, probabilities, groups = clustered(rng, 2 * per_class, slices, effect)
    called = probabilities[:, 1] >= 1 / (1 + math.exp(-effect / 2))  # the score cut at effect / 2
    intervals = bootstrap_operating_point_ci(
        labels, called, 1, groups=groups, n=resamples, seed=int(rng.integers(2**31))
    )
    out = []
    for name, chosen in (("sensitivity", labels == 1), ("specificity", labels == 0)):
        ci = intervals[name]
        right = called[chosen] == (name == "sensitivity")
        noted = small_sample_note(per_class, "patient", share=float(right.mean())) is not None
        out.append(
            (ci["low"] <= truth <= ci["high"], ci["high"] - ci["low"], ci["method"] == "BCa", right.all(), noted)
        )
    return out


def summary(results, unit):
    """Coverage with its Clopper–Pearson 95% interval, mean width and BCa share of one unit's intervals (and, for
    the operating point, the share of sets with every call right, the share given the small-sample note, and the
    coverage of the intervals without it)."""
    columns = np.array([r[unit] for r in results], dtype=np.float64).T
    covered, width, bca = columns[:3]
    cells = [_coverage(covered), f"{np.nanmean(width):.3f}", f"{bca.mean():.0%}"]
    if len(columns) > 3:
        noted = columns[4].astype(bool)
        plain = covered[~noted]
        cells += [f"{columns[3].mean():.0%}", f"{noted.mean():.0%}", _coverage(plain) if len(plain) else "–"]
    return cells


def _coverage(covered) -> str:
    from scipy.stats import binomtest

    ci = binomtest(int(covered.sum()), len(covered)).proportion_ci(0.95, method="exact")
    return f"{covered.mean():.1%} ({ci.low:.1%}–{ci.high:.1%})"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--statistic", choices=("auc", "operating-point"), default="auc")
    parser.add_argument("--sims", type=int, default=500, help="simulations per row")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (evaluate uses 1000)")
    parser.add_argument("--patients", type=int, nargs="+", default=[5, 10, 15, 30, 50], help="patients per class")
    parser.add_argument("--slices", type=int, nargs="+", default=[20, 1], help="slices per patient")
    parser.add_argument("--auc", type=float, nargs="+", default=[TRUE_AUC], help="true AUCs (--statistic auc)")
    parser.add_argument(
        "--sensitivity",
        type=float,
        nargs="+",
        default=[0.8, 0.9, 0.95],
        help="true sensitivities (= specificities; --statistic operating-point)",
    )
    parser.add_argument("--patient-level-only", action="store_true", help="skip the image-level AUC interval")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="processes")
    args = parser.parse_args(argv)

    auc = args.statistic == "auc"
    targets = args.auc if auc else args.sensitivity
    for value in targets:
        if not 0.5 < value < 1:
            parser.error(f"--{'auc' if auc else 'sensitivity'} takes values between 0.5 and 1; received {value}")
    effects = [effect_for_auc(v) if auc else effect_for_sensitivity(v) for v in targets]
    rows = [(e, k, s) for e in effects for s in args.slices for k in args.patients]
    image_level = auc and not args.patient_level_only
    # One seed per (slices, patients, simulation), the same at every AUC: the numbers do not depend on the number
    # of workers, and the default rows draw what the script drew before --auc existed.
    tasks = [
        (k, s, e, args.resamples, image_level, np.random.SeedSequence([args.seed, s, k, i]))
        for e, k, s in rows
        for i in range(args.sims)
    ]
    truth = true_auc if auc else true_sensitivity
    print(
        f"{'AUC' if auc else 'Sensitivity/specificity'} intervals; {args.sims} simulations per row, "
        f"{args.resamples} resamples, seed {args.seed}, {args.workers} worker(s).",
        flush=True,
    )
    if auc:
        header = "| true AUC | patients/class | slices | images | patient-level coverage (95% CI) | width | BCa |"
        rule = "|---:|---:|---:|---:|---|---:|---:|"
        if image_level:
            header += " image-level coverage (95% CI) | width | BCa |"
            rule += "---|---:|---:|"
    else:
        header = "| true sens. = spec. | patients/class | slices | images |" + "".join(
            f" {name} coverage (95% CI) | width | BCa | all called | noted | coverage without note |"
            for name in ("sensitivity", "specificity")
        )
        rule = "|---:|---:|---:|---:|" + "---|---:|---:|---:|---:|---|" * 2
    lines = [header, rule]
    start = time.perf_counter()
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
        results = pool.map(simulate if auc else simulate_operating_point, tasks, chunksize=4)
        chunk = []
        for result in results:
            chunk.append(result)
            if len(chunk) < args.sims:
                continue
            e, k, s = rows[len(lines) - 2]
            units = (0, 1) if image_level else ((0,) if auc else (0, 1))
            cells = [f"{truth(e):.3f}", str(k), str(s), str(2 * k * s)]
            for unit in units:
                cells += summary(chunk, unit)
            lines.append("| " + " | ".join(cells) + " |")
            print(f"[{time.perf_counter() - start:.0f} s] {lines[-1]}", flush=True)
            chunk = []
    print("\n" + "\n".join(lines))
    print(f"\nWall time {time.perf_counter() - start:.0f} s with {args.workers} worker(s).")


if __name__ == "__main__":
    main()

"""How often the grid's paired-effect intervals cover the true difference, and how often TOST wrongly says
"equivalent", on simulated grids with a known truth.

    python benchmarks/effects_coverage.py [--sims 400] [--resamples 400] [--folds 5 3 10 1] [--repeats 1 3 5]
        [--scenarios 4] [--patients 15] [--images 4] [--seed 0] [--workers 2] [--json FILE] [--records-only]

Each simulated grid has S scenarios × F folds × R repeats × 2 weight sources, written as runs' ``predictions.npz``
files and a records table (what ``load_records`` reads), and goes through ``grid.effects`` as the report does:
``paired_effects`` (the overall row's interval and replicates), ``mixed_model`` and TOST in both forms. F = 1 is a
single split (one 75/10/15 split: one "fold").

The model. A fold has its own test patients (``--patients`` per class, ``--images`` images each). A run's score for
image i of patient p is δ·y + u_p + v_{p,source} + e_i + w_{run,i}: u_p a patient effect shared by both sources and
every run, v a patient × source effect shared by the source's runs of the fold, e_i an image effect shared by every
run, w the run's own image noise. The run's separation δ = m_{source,scenario} + t_{fold,source} +
t_{fold,source,scenario} + η: a fold-level training effect shared by the fold's scenarios and repeats, one shared by
the fold's repeats of a scenario, and per-repeat seed noise. Given δ, a run's population AUC (images of new
patients) is Φ(δ / √(2V)), V the sum of the four score variances; over the training effects δ ~ N(m, τ²), so the
expected AUC is Φ(m / √(2V + τ²)) and the true difference, the estimand of the overall row, is
mean over scenarios of Φ(m_cand / √(2V + τ²)) − Φ(m_ref / √(2V + τ²)). With one fold the interval claims only the
test patients' error: its coverage is also given against the runs' own population AUCs (Φ(δ / √(2V)) of the
δ drawn), the conditional truth.

Per row: the coverage of the overall 95% interval (``paired_low``–``paired_high``) and of the mixed model's, with
their Clopper–Pearson 95% intervals (the Monte Carlo error) and mean widths, and the share of grids where TOST with
the margin at the true difference says "equivalent" (should be at most 5%) in the bootstrap and in the t form, with
each one-sided test at 2.5% (the report's: the 95% interval inside ±m) and at 5% (the 90% interval).
The code measured is whatever ``radtransfer`` imports: run it with ``PYTHONPATH`` at an older tree to measure that
tree (the TOST forms are then computed as that tree's report computed them).

``--records-only`` (two or more folds, this tree only) skips the predictions, the bootstrap and the mixed model and
puts many grids through one ``paired_effects`` call: the interval over folds and TOST's t form, which need only the
runs' AUCs, with thousands of grids for a small Monte Carlo error, and each tail's share of the misses.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

PATIENT_SD, PATIENT_SOURCE_SD, IMAGE_SD, RUN_IMAGE_SD = 1.0, 0.3, 0.5, 0.3
FOLD_SD, FOLD_SCENARIO_SD, SEED_SD = 0.1, 0.1, 0.1
REFERENCE_SEPARATION = (1.2, 1.6, 2.0, 1.4, 1.0, 1.8)  # m_ref per scenario (cycled)
GAIN = 0.4  # m_cand − m_ref
V = PATIENT_SD**2 + PATIENT_SOURCE_SD**2 + IMAGE_SD**2 + RUN_IMAGE_SD**2
TAU2 = FOLD_SD**2 + FOLD_SCENARIO_SD**2 + SEED_SD**2


def phi(x):
    return 0.5 * math.erfc(-x / math.sqrt(2))


def separations(scenarios):
    reference = np.array([REFERENCE_SEPARATION[s % len(REFERENCE_SEPARATION)] for s in range(scenarios)])
    return {"radimagenet": reference + GAIN, "imagenet": reference}


def true_difference(scenarios) -> float:
    m = separations(scenarios)
    scale = math.sqrt(2 * V + TAU2)
    return float(np.mean([phi(a / scale) - phi(b / scale) for a, b in zip(m["radimagenet"], m["imagenet"])]))


def simulate_grid(rng, root, scenarios, folds, repeats, per_class, images):
    """Writes one grid's predictions under ``root``; returns its records table and the conditional truth."""
    import pandas as pd

    m = separations(scenarios)
    rows, conditional = [], []
    n_patients = 2 * per_class
    patient = np.repeat(np.arange(n_patients), images)
    y = np.repeat(np.repeat([0, 1], per_class), images)
    for fold in range(folds):
        ids = np.array([f"f{fold}p{p}" for p in patient])
        shared = rng.normal(0, PATIENT_SD, n_patients)[patient] + rng.normal(0, IMAGE_SD, len(y))
        run_auc = {}
        for source in ("radimagenet", "imagenet"):
            v = rng.normal(0, PATIENT_SOURCE_SD, n_patients)[patient]
            fold_effect = rng.normal(0, FOLD_SD)
            for s in range(scenarios):
                fold_scenario = rng.normal(0, FOLD_SCENARIO_SD)
                for r in range(repeats):
                    delta = m[source][s] + fold_effect + fold_scenario + rng.normal(0, SEED_SD)
                    score = delta * y + shared + v + rng.normal(0, RUN_IMAGE_SD, len(y))
                    p = 1 / (1 + np.exp(-score))
                    folder = root / source / f"s{s}" / f"fold{fold}-r{r}"
                    folder.mkdir(parents=True)
                    np.savez(
                        folder / "predictions.npz", y_true=y, probabilities=np.stack([1 - p, p], 1), patient_ids=ids
                    )
                    run_auc[(source, s, r)] = phi(delta / math.sqrt(2 * V))
                    rows.append(
                        {
                            "grid": "sim",
                            "task": "sim",
                            "source": source,
                            "backbone": f"b{s % 2}",
                            "strategy": f"st{s // 2}",
                            "learning_rate": 1e-3,
                            "scenario": f"s{s}",
                            "fold": fold,
                            "repeat": r,
                            "status": "finished",
                            "auc": _auc(y, p),
                            "path": str(folder),
                        }
                    )
        conditional += [
            run_auc[("radimagenet", s, r)] - run_auc[("imagenet", s, r)]
            for s in range(scenarios)
            for r in range(repeats)
        ]
    return pd.DataFrame(rows), float(np.mean(conditional))


def _auc(y, p):
    from scipy.stats import rankdata

    ranks = rankdata(p)
    positives = int(y.sum())
    return float((ranks[y == 1].sum() - positives * (positives + 1) / 2) / (positives * (len(y) - positives)))


def _tost_both(effects, table, draws, margin, alpha):
    """(bootstrap, t) "equivalent" at ``alpha`` per one-sided test, as the report of the imported tree computes them
    (before: the t form on the per-scenario means)."""
    overall = table[table["scenario"] == "overall"].iloc[0]
    if hasattr(effects, "equivalence"):
        both = effects.equivalence(overall, draws[("sim", "overall")], margin, alpha=alpha)
        return both["bootstrap"]["equivalent"], both["t"]["equivalent"]
    boot = effects.tost(draws[("sim", "overall")], margin, alpha=alpha, method="bootstrap", estimate=overall["diff"])
    by_t = effects.tost(table[table["scenario"] != "overall"]["diff"], margin, alpha=alpha, method="t")
    return boot["equivalent"], by_t["equivalent"]


def _tost_module():
    """The imported tree's TOST: ``grid.equivalence``, or ``grid.effects`` in trees that held it there."""
    try:
        from radtransfer.grid import equivalence
    except ImportError:
        from radtransfer.grid import effects as equivalence
    return equivalence


def simulate(task):
    """One grid: coverage of the paired interval (population and conditional truth), of the mixed model's, and the
    two TOST forms' "equivalent" at the margin = the true difference."""
    import warnings
    from pathlib import Path

    from radtransfer.grid import effects

    scenarios, folds, repeats, per_class, images, resamples, seed = task
    rng = np.random.default_rng(seed)
    truth = true_difference(scenarios)
    root = Path(tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    try:
        records, conditional = simulate_grid(rng, root, scenarios, folds, repeats, per_class, images)
        table, draws = effects.paired_effects(records, n=resamples, seed=int(rng.integers(2**31)), return_draws=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                mixed = effects.mixed_model(records)
            except np.linalg.LinAlgError:  # the model before this change could fail so; counted as not covering
                mixed = {"low": math.nan, "high": math.nan}
    finally:
        shutil.rmtree(root, ignore_errors=True)
    overall = table[table["scenario"] == "overall"].iloc[0]
    low, high = overall["low"], overall["high"]
    boot_5, t_5 = _tost_both(_tost_module(), table, draws, truth, 0.05)
    boot_25, t_25 = _tost_both(_tost_module(), table, draws, truth, 0.025)
    return {
        "covered": bool(low <= truth <= high),
        "covered_conditional": bool(low <= conditional <= high),
        "width": float(high - low),
        "mixed_covered": bool(mixed["low"] <= truth <= mixed["high"]),
        "mixed_width": float(mixed["high"] - mixed["low"]),
        "mixed_missing": bool(not np.isfinite(mixed["high"] - mixed["low"])),
        "tost_bootstrap_5": bool(boot_5),
        "tost_t_5": bool(t_5),
        "tost_bootstrap_2.5": bool(boot_25),
        "tost_t_2.5": bool(t_25),
    }


def simulate_records(rng, scenarios, folds, repeats, per_class, images, grid):
    """The same model as ``simulate_grid`` without files: each run's AUC only (``--records-only``)."""
    import pandas as pd

    m = separations(scenarios)
    n_patients = 2 * per_class
    patient = np.repeat(np.arange(n_patients), images)
    y = np.repeat(np.repeat([0, 1], per_class), images)
    positives = int(y.sum())
    rows = []
    for fold in range(folds):
        shared = rng.normal(0, PATIENT_SD, n_patients)[patient] + rng.normal(0, IMAGE_SD, len(y))
        for source in ("radimagenet", "imagenet"):
            v = rng.normal(0, PATIENT_SOURCE_SD, n_patients)[patient]
            delta = (
                m[source][:, None]
                + rng.normal(0, FOLD_SD)
                + rng.normal(0, FOLD_SCENARIO_SD, (scenarios, 1))
                + rng.normal(0, SEED_SD, (scenarios, repeats))
            )
            score = delta[..., None] * y + shared + v + rng.normal(0, RUN_IMAGE_SD, (scenarios, repeats, len(y)))
            ranks = score.argsort(axis=-1).argsort(axis=-1) + 1.0  # continuous scores: no ties
            auc = (ranks[..., y == 1].sum(axis=-1) - positives * (positives + 1) / 2) / (
                positives * (len(y) - positives)
            )
            for s in range(scenarios):
                for r in range(repeats):
                    rows.append((grid, source, f"s{s}", fold, r, float(auc[s, r])))
    frame = pd.DataFrame(rows, columns=["grid", "source", "scenario", "fold", "repeat", "auc"])
    fixed = {"task": "sim", "status": "finished", "backbone": "b", "strategy": "st", "learning_rate": 1e-3}
    return frame.assign(path="/nonexistent", **fixed)


def records_only(args, truth):
    """``--records-only``: the overall interval's coverage and TOST's t form (both need no predictions: the
    interval over folds is the same with them) on many grids at once, one ``paired_effects`` call per row."""
    import pandas as pd

    from radtransfer.grid import effects, equivalence

    print(
        "| folds | repeats | grids | paired 95% coverage | interval below the truth | above | width "
        "| TOST t form 'equivalent' at m = truth, 2.5% per side | 5% per side |"
    )
    print("|---:|---:|---:|---|---:|---:|---:|---|---|")
    results = {}
    for folds in args.folds:
        for repeats in args.repeats:
            rng = np.random.default_rng([args.seed, folds, repeats])
            records = pd.concat(
                simulate_records(rng, args.scenarios, folds, repeats, args.patients, args.images, f"g{i:05d}")
                for i in range(args.sims)
            )
            table, draws = effects.paired_effects(records, n=2, return_draws=True)
            overall = table[table["scenario"] == "overall"]
            t_form = {
                alpha: [
                    equivalence.equivalence(row, draws[(row["grid"], "overall")], truth, alpha=alpha)["t"]["equivalent"]
                    for _, row in overall.iterrows()
                ]
                for alpha in (0.025, 0.05)
            }
            covered = (overall["low"] <= truth) & (truth <= overall["high"])
            r = {
                "covered": covered.tolist(),
                "truth_above_high": (overall["high"] < truth).tolist(),
                "truth_below_low": (overall["low"] > truth).tolist(),
                "width": (overall["high"] - overall["low"]).tolist(),
                "tost_t_2.5": t_form[0.025],
                "tost_t_5": t_form[0.05],
            }
            results[f"{folds} folds, {repeats} repeats"] = r
            cells = [
                str(folds),
                str(repeats),
                str(args.sims),
                _share(r["covered"]),
                f"{np.mean(r['truth_above_high']):.3f}",
                f"{np.mean(r['truth_below_low']):.3f}",
                f"{np.mean(r['width']):.4f}",
                _share(r["tost_t_2.5"]),
                _share(r["tost_t_5"]),
            ]
            print("| " + " | ".join(cells) + " |", flush=True)
    return results


def _share(flags) -> str:
    from scipy.stats import binomtest

    flags = np.asarray(flags, dtype=bool)
    ci = binomtest(int(flags.sum()), len(flags)).proportion_ci(0.95, method="exact")
    return f"{flags.mean():.3f} ({ci.low:.3f}–{ci.high:.3f})"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sims", type=int, default=400, help="simulated grids per row")
    parser.add_argument("--resamples", type=int, default=400, help="bootstrap replicates per grid")
    parser.add_argument("--folds", type=int, nargs="+", default=[5, 3, 10, 1], help="folds (1: a single split)")
    parser.add_argument("--repeats", type=int, nargs="+", default=[1, 3, 5])
    parser.add_argument("--scenarios", type=int, default=4)
    parser.add_argument("--patients", type=int, default=15, help="test patients per class and fold")
    parser.add_argument("--images", type=int, default=4, help="images per patient")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="processes")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument(
        "--records-only",
        action="store_true",
        help="no predictions, no bootstrap, no mixed model: the interval over folds and TOST's t form on many grids",
    )
    args = parser.parse_args(argv)

    rows = [(f, r) for f in args.folds for r in args.repeats]
    truth = true_difference(args.scenarios)
    import radtransfer

    print(f"radtransfer from {os.path.dirname(radtransfer.__file__)}")
    print(
        f"True difference {truth:.4f} (mean over {args.scenarios} scenarios); {args.sims} grids per row, "
        f"{args.resamples} bootstrap replicates, {args.patients} + {args.patients} test patients × {args.images} "
        f"images per fold, seed {args.seed}.\n"
    )
    if args.records_only:
        _write(args, truth, records_only(args, truth))
        return
    print(
        "| folds | repeats | paired 95% coverage | width | mixed model 95% coverage | width "
        "| TOST 'equivalent' at m = truth, 2.5% per side: bootstrap | t | 5% per side: bootstrap | t "
        "| coverage of the runs' own difference |"
    )
    print("|---:|---:|---|---:|---|---:|---|---|---|---|---|")
    results, start = {}, time.perf_counter()
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
        for folds, repeats in rows:
            tasks = [
                (
                    args.scenarios,
                    folds,
                    repeats,
                    args.patients,
                    args.images,
                    args.resamples,
                    np.random.SeedSequence([args.seed, folds, repeats, i]),
                )
                for i in range(args.sims)
            ]
            out = list(pool.map(simulate, tasks, chunksize=4))
            key = f"{folds} folds, {repeats} repeats"
            results[key] = {name: [o[name] for o in out] for name in out[0]}
            r = results[key]
            mixed = _share(r["mixed_covered"]) if folds > 1 else "– (one fold)"
            mixed_width = f"{np.nanmean(r['mixed_width']):.4f}" if folds > 1 else "–"
            cells = [
                "1 (single split)" if folds == 1 else str(folds),
                str(repeats),
                _share(r["covered"]),
                f"{np.nanmean(r['width']):.4f}",
                mixed,
                mixed_width,
                _share(r["tost_bootstrap_2.5"]),
                _share(r["tost_t_2.5"]),
                _share(r["tost_bootstrap_5"]),
                _share(r["tost_t_5"]),
                _share(r["covered_conditional"]),
            ]
            print("| " + " | ".join(cells) + f" |   [{time.perf_counter() - start:.0f} s]", flush=True)
    _write(args, truth, results)
    print(f"\nWall time {time.perf_counter() - start:.0f} s with {args.workers} worker(s).")


def _write(args, truth, results):
    """The figures as JSON (``--json``): the settings, the truth, and each row's means."""
    if not args.json:
        return
    from radtransfer.utils.io import write_json_atomic

    def mean(values):  # None where a row has no value (the mixed model with one fold)
        values = np.asarray(values, dtype=float)
        return float(np.mean(values[np.isfinite(values)])) if np.isfinite(values).any() else None

    rows = {key: {name: mean(values) for name, values in r.items()} for key, r in results.items()}
    write_json_atomic(args.json, {"truth": truth, "settings": vars(args), "rows": rows})


if __name__ == "__main__":
    main()

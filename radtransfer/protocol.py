"""The RadImageNet comparison protocol: its configuration as data, the 24 scenarios, and run_grid.

Mei et al. (Radiology: AI 2022) compared RadImageNet and ImageNet weights over 4 backbones × 3
strategies × 2 learning rates per task. ``run_grid`` runs that comparison on any image set: every
(source, scenario, fold) run starts from a fresh model, writes its record atomically, and can be
stopped, restarted and split across machines.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .backbones import did_you_mean, get_backbone
from .training import write_json_atomic

BACKBONE_ORDER = ("resnet50", "densenet121", "inception_v3", "inception_resnet_v2")
STRATEGY_RATES = (("unfreeze_all", (1e-3, 1e-4)), ("freeze_all", (1e-2, 1e-3)), ("unfreeze_top10", (1e-2, 1e-3)))
RECORD = "record.json"


@dataclass(frozen=True)
class ProtocolConfig:
    """Settings of a grid run. ``RADIMAGENET`` holds the reference values; copy it with changes:
    ``RADIMAGENET.replace(epochs=10, batch_size=32)``.

    Attributes:
        image_size: input height and width (256).
        batch_size: 256 in the reference.
        epochs: 30 in the reference.
        optimizer, loss: "adam" and "auto" (binary cross-entropy on the two-column softmax).
        augment: "radimagenet" (or "radimagenet_ct" for CT tasks, which dropped rotation and flip).
        dropout: 0.5.
        seed: 726.
        val, test: the 75/10/15 split by patient; with folds, ``val`` is the share of each fold's
            training patients kept for validation.
        folds: None for the split, or k for k-fold cross-validation (small datasets used 5).
        early_stopping, reduce_lr: None in the reference.
        cache: True (memory) or False; each fold's images are decoded and resized once.
        run_eagerly: train without graph tracing (only for tiny smoke-test grids).
        bootstrap: resamples for each run's AUC confidence interval.
    """

    image_size: int = 256
    batch_size: int = 256
    epochs: int = 30
    optimizer: str = "adam"
    loss: str = "auto"
    augment: str | None = "radimagenet"
    dropout: float = 0.5
    seed: int = 726
    val: float = 0.10
    test: float = 0.15
    folds: int | None = None
    early_stopping: int | None = None
    reduce_lr: int | None = None
    cache: bool = True
    run_eagerly: bool = False
    bootstrap: int = 1000

    def replace(self, **changes) -> "ProtocolConfig":
        """A copy with some values changed."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            names = [f.name for f in dataclasses.fields(self)]
            first = sorted(unknown)[0]
            raise ValueError(f"Unknown protocol setting(s) {sorted(unknown)}.{did_you_mean(first, names)}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


RADIMAGENET = ProtocolConfig()


@dataclass(frozen=True)
class Scenario:
    """One cell of the grid: a backbone, a strategy and a learning rate."""

    backbone: str
    strategy: str
    learning_rate: float

    @property
    def id(self) -> str:
        return f"{self.backbone}__{self.strategy}__lr{self.learning_rate:g}"

    def to_dict(self) -> dict:
        return {"backbone": self.backbone, "strategy": self.strategy, "learning_rate": self.learning_rate}


def radimagenet_scenarios(backbones=BACKBONE_ORDER) -> list[Scenario]:
    """The paper's 24 scenarios: 4 backbones × {unfreeze_all @ 1e-3, 1e-4; freeze_all @ 1e-2, 1e-3;
    unfreeze_top10 @ 1e-2, 1e-3}."""
    names = [get_backbone(b).name for b in backbones]
    return [Scenario(b, strategy, rate) for b in names for strategy, rates in STRATEGY_RATES for rate in rates]


@dataclass(frozen=True)
class Run:
    source: str
    scenario: Scenario
    fold: int

    @property
    def id(self) -> str:
        return f"{self.source}/{self.scenario.id}/fold{self.fold}"


def parse_shard(shard) -> tuple[int, int] | None:
    """"k/n" → (k, n) with 1 ≤ k ≤ n."""
    if shard is None:
        return None
    try:
        k, n = (int(part) for part in str(shard).split("/"))
    except ValueError:
        raise ValueError(f"Expected shard='k/n', e.g. '1/4'. Received: shard={shard!r}") from None
    if not 1 <= k <= n:
        raise ValueError(f"Expected 1 ≤ k ≤ n in shard='k/n'. Received: shard={shard!r}")
    return k, n


def plan_runs(sources, scenarios, n_folds: int, shard=None) -> list[Run]:
    """Every run of the grid in a fixed order; a shard "k/n" takes every n-th run starting at the k-th,
    so n shards partition the grid and each gets a similar mix of backbones."""
    runs = [Run(source, scenario, fold) for fold in range(n_folds) for scenario in scenarios for source in sources]
    parsed = parse_shard(shard)
    if parsed is None:
        return runs
    k, n = parsed
    return runs[k - 1::n]


def _format_seconds(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def run_grid(image_set, out_dir, *, config: ProtocolConfig = RADIMAGENET, sources=("radimagenet", "imagenet"),
             folds=None, scenarios=None, shard=None, weights_dir=None, faithful: bool = False, task: str | None = None,
             verbose: int = 1, log=None):
    """Runs (or resumes) the RadImageNet grid on an image set and records every run.

    Args:
        image_set: the task's images (an ImageSet with patient ids, ideally).
        out_dir: the grid folder; records go to ``out_dir/runs/<source>/<scenario>/fold<k>/record.json``.
        config: the protocol settings (``RADIMAGENET`` or a copy with changes).
        sources: weight sources to compare.
        folds: None (use ``config.folds``; None there means the 75/10/15 split), or k.
        scenarios: the scenarios to run (default: the 24 of ``radimagenet_scenarios()``).
        shard: "k/n" to run a disjoint, stable share of the runs (n machines can fill one out_dir).
        weights_dir: a folder searched first for weight files.
        faithful: reproduce the reference where radtransfer's defaults differ: "radimagenet"
            preprocessing also for ImageNet weights, nearest-neighbour resizing, BatchNorm following the
            layer flags. The default gives each source its own preprocessing, resizes bilinearly and
            freezes BatchNorm statistics.
        task: a task name stored with every record (the report compares it with the paper when it
            names one of the paper's tasks); default: the out_dir's name.
        verbose: 0 silent, 1 progress per run, 2 also Keras's per-epoch lines.
        log: where progress is printed (default stderr).

    Returns:
        A pandas DataFrame with one row per recorded run of this grid (all shards).
    """
    from .data import make_dataset
    from .evaluation import evaluate
    from .models import build_model
    from .report import load_records
    from .training import fine_tune
    from .weights import resolve_weights

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log = log or sys.stderr
    task = task or out.resolve().name
    scenarios = list(scenarios) if scenarios is not None else radimagenet_scenarios()
    n_folds = folds if folds is not None else config.folds
    bn = "protocol" if faithful else "frozen"
    interpolation = "nearest" if faithful else "bilinear"
    size = (config.image_size, config.image_size)
    runs = plan_runs(sources, scenarios, n_folds or 1, shard)

    # Every weight file the share needs, found before anything is trained.
    weights = {}
    missing = []
    for source, backbone in sorted({(r.source, r.scenario.backbone) for r in runs}):
        try:
            weights[(source, backbone)] = resolve_weights(backbone, source, weights_dir).path
        except FileNotFoundError as exc:
            missing.append(str(exc))
    if missing:
        from .errors import WeightsNotFoundError

        raise WeightsNotFoundError("The grid needs weight files that were not found:\n" + "\n".join(missing))
    write_json_atomic(out / "grid.json", {
        "task": task, "config": config.to_dict(), "sources": list(sources), "folds": n_folds,
        "scenarios": [s.to_dict() for s in scenarios], "faithful": faithful, "bn": bn, "interpolation": interpolation,
        "n_images": len(image_set), "class_names": list(image_set.class_names),
    })

    splits = list(image_set.kfold(n_folds, seed=config.seed, val=config.val)) if n_folds else \
        [image_set.split(val=config.val, test=config.test, seed=config.seed)]
    datasets = {}

    def fold_data(fold):
        if fold not in datasets:
            datasets.clear()  # one fold's cache in memory at a time
            train, val, test = splits[fold]
            common = dict(image_size=size, batch_size=config.batch_size, interpolation=interpolation, cache=config.cache)
            datasets[fold] = (
                make_dataset(train, augment=config.augment, shuffle=True, seed=config.seed, **common),
                make_dataset(val, shuffle=False, **common),
                make_dataset(test, shuffle=False, **common),
                train, val, test,
            )
        return datasets[fold]

    def run_dir(run):
        return out / "runs" / run.source / run.scenario.id / f"fold{run.fold}"

    todo = [r for r in runs if not (run_dir(r) / RECORD).exists()]
    done_before = len(runs) - len(todo)
    durations = []
    for index, run in enumerate(todo):
        if verbose:
            eta = np.mean(durations) * (len(todo) - index) if durations else float("nan")
            print(f"[grid {task}] done {done_before + index}/{len(runs)}, running {run.id}, "
                  f"left {len(todo) - index}, ETA {_format_seconds(eta)}", file=log, flush=True)
        start = time.perf_counter()
        train_ds, val_ds, test_ds, train, val, test = fold_data(run.fold)
        scenario = run.scenario
        preprocessing = "radimagenet" if faithful else "auto"

        def build(scenario=scenario, run=run):
            return build_model(scenario.backbone, weights=str(weights[(run.source, scenario.backbone)]),
                               num_classes=image_set.num_classes, input_shape=(*size, 3), dropout=config.dropout,
                               preprocessing=preprocessing)

        model = build()
        directory = run_dir(run)
        result = fine_tune(model, train_ds, val_ds, strategy=scenario.strategy, learning_rate=scenario.learning_rate,
                           epochs=config.epochs, bn=bn, optimizer=config.optimizer, loss=config.loss, out_dir=directory,
                           early_stopping=config.early_stopping, reduce_lr=config.reduce_lr, seed=config.seed,
                           verbose=2 if verbose > 1 else 0, run_eagerly=config.run_eagerly)
        metrics = evaluate(model, test_ds, class_names=list(image_set.class_names), seed=config.seed,
                           bootstrap=config.bootstrap)
        predictions = metrics.pop("predictions")
        np.savez_compressed(directory / "predictions.npz", y_true=np.asarray(predictions["y_true"]),
                            probabilities=np.asarray(predictions["probabilities"]))
        info = model.radtransfer_info
        record = {
            "run_id": run.id, "task": task, "source": run.source, **scenario.to_dict(), "scenario": scenario.id,
            "fold": run.fold, "metrics": metrics, "best_epoch": result.best_epoch, "best_val_loss": result.best_val_loss,
            "epochs_run": result.epochs_run, "seconds": time.perf_counter() - start, "faithful": faithful,
            "bn": bn, "preprocessing": info.preprocessing, "weights_path": info.weights_path,
            "weights_sha256": info.weights_sha256, "n_train": len(train), "n_val": len(val), "n_test": len(test),
            "config": config.to_dict(),
        }
        write_json_atomic(directory / RECORD, record)
        durations.append(record["seconds"])
        del model
    if verbose:
        print(f"[grid {task}] done {len(runs)}/{len(runs)} runs of this {'shard' if shard else 'grid'}.", file=log, flush=True)
    return load_records(out)

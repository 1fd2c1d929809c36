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
from .run_folder import write_json_atomic
from .seeding import derive_seed, set_global_seed

BACKBONE_ORDER = ("resnet50", "densenet121", "inception_v3", "inception_resnet_v2")
STRATEGY_RATES = (("unfreeze_all", (1e-3, 1e-4)), ("freeze_all", (1e-2, 1e-3)), ("unfreeze_top10", (1e-2, 1e-3)))
RECORD = "record.json"
PAPER_TASKS = ("thyroid", "breast", "acl", "meniscus", "pneumonia", "covid19", "sars_cov_2", "haemorrhage")


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
        cache: "auto" (memory when the fold's resized images fit half the available memory, else a file
            per split under $RADTRANSFER_CACHE_DIR, else none), True (memory), False, or a file path prefix
            (on disk; each split of each fold gets its own file, named by its content); each fold's images
            are decoded and resized once.
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
    cache: bool | str = "auto"
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


def run_seed(grid_seed: int, scenario: "Scenario", fold: int) -> int:
    """The seed of one run: a function of (grid seed, scenario, fold) only. The weight source is left out
    on purpose, so that a scenario's RadImageNet and ImageNet runs are paired: same split, same batch
    order, same augmentation draws, same dropout masks, same head initialisation."""
    return derive_seed(grid_seed, "run", scenario.id, fold)


def run_grid(image_set, out_dir, *, config: ProtocolConfig = RADIMAGENET, sources=("radimagenet", "imagenet"),
             folds=None, scenarios=None, shard=None, weights_dir=None, faithful: bool = False, task: str | None = None,
             paper_task="auto", verbose: int = 1, log=None):
    """Runs (or resumes) the RadImageNet grid on an image set and records every run.

    Every run is a pure function of (grid seed, scenario, fold, weight source): its record is the same
    whether the grid runs whole, in shards, or with restarts, and a scenario's runs from different weight
    sources see the same split, batches, augmentation, dropout and head initialisation.

    Args:
        image_set: the task's images (an ImageSet with patient ids, ideally).
        out_dir: the grid folder; records go to ``out_dir/runs/<source>/<scenario>/fold<k>/record.json``.
        config: the protocol settings (``RADIMAGENET`` or a copy with changes).
        sources: weight sources to compare (the first is the candidate of the paired comparisons).
        folds: None (use ``config.folds``; None there means the 75/10/15 split), or k.
        scenarios: the scenarios to run (default: the 24 of ``radimagenet_scenarios()``).
        shard: "k/n" to run a disjoint, stable share of the runs (n machines can fill one out_dir).
        weights_dir: a folder searched first for weight files.
        faithful: reproduce the reference where radtransfer's defaults differ: "radimagenet"
            preprocessing also for ImageNet weights, nearest-neighbour resizing, BatchNorm following the
            layer flags. The default gives each source its own preprocessing, resizes bilinearly and
            freezes BatchNorm statistics.
        task: a task name stored with every record; default: the out_dir's name.
        paper_task: the paper's task to compare with in the report ("thyroid", "breast", "acl", "meniscus",
            "pneumonia", "covid19", "sars_cov_2", "haemorrhage"), None for none, or "auto": the task name
            if one of its words names a paper task.
        verbose: 0 silent, 1 progress per run, 2 also each epoch's line.
        log: where progress is printed (default stderr).

    Returns:
        A pandas DataFrame with one row per recorded run of this grid (all shards).
    """
    from .records import GridSpec
    from .report import load_records, paper_task as match_paper_task
    from .weights import resolve_weights

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log = log or sys.stderr
    task = task or out.resolve().name
    if paper_task == "auto":
        paper_task = match_paper_task(task)
    elif paper_task is not None and paper_task not in PAPER_TASKS:
        raise ValueError(f"Unknown paper_task {paper_task!r}; expected one of {', '.join(PAPER_TASKS)}, None or 'auto'."
                         f"{did_you_mean(paper_task, PAPER_TASKS)}")
    scenarios = list(scenarios) if scenarios is not None else radimagenet_scenarios()
    n_folds = folds if folds is not None else config.folds
    bn = "protocol" if faithful else "frozen"
    interpolation = "nearest" if faithful else "bilinear"
    runs = plan_runs(sources, scenarios, n_folds or 1, shard)

    # Every weight file the share needs, found before anything is trained.
    weights, missing = {}, []
    for source, backbone in sorted({(r.source, r.scenario.backbone) for r in runs}):
        try:
            weights[(source, backbone)] = resolve_weights(backbone, source, weights_dir).path
        except FileNotFoundError as exc:
            missing.append(str(exc))
    if missing:
        from .errors import WeightsNotFoundError

        raise WeightsNotFoundError("The grid needs weight files that were not found:\n" + "\n".join(missing))
    spec = GridSpec(task=task, config=config.to_dict(), sources=list(sources), folds=n_folds,
                    scenarios=[s.to_dict() for s in scenarios], faithful=faithful, bn=bn, interpolation=interpolation,
                    n_images=len(image_set), class_names=list(image_set.class_names), paper_task=paper_task)
    _check_same_grid(out, spec)
    spec.write(out)

    splits = list(image_set.kfold(n_folds, seed=config.seed, val=config.val)) if n_folds else \
        [image_set.split(val=config.val, test=config.test, seed=config.seed)]
    context = _GridContext(out, spec, config, splits, weights, faithful, interpolation, bn, verbose)
    todo = [r for r in runs if not (context.run_dir(r) / RECORD).exists()]
    done_before = len(runs) - len(todo)
    durations = []
    for index, run in enumerate(todo):
        if verbose:
            eta = np.mean(durations) * (len(todo) - index) if durations else float("nan")
            print(f"[grid {task}] done {done_before + index}/{len(runs)}, running {run.id}, "
                  f"left {len(todo) - index}, ETA {_format_seconds(eta)}", file=log, flush=True)
        start = time.perf_counter()
        record = context.execute(run)
        seconds = time.perf_counter() - start
        durations.append(seconds)
        write_json_atomic(context.run_dir(run) / "timing.json", {"seconds": seconds})
        if record.status != "finished" and verbose:
            print(f"[grid {task}] {run.id} {record.status} (loss NaN at epoch {record.diverged_epoch}); recorded, "
                  "continuing with the other runs", file=log, flush=True)
        context.write_pairs(run)
    if verbose:
        print(f"[grid {task}] done {len(runs)}/{len(runs)} runs of this {'shard' if shard else 'grid'}.", file=log, flush=True)
    return load_records(out)


def _check_same_grid(out: Path, spec) -> None:
    from .records import GridSpec

    stored = GridSpec.read(out)
    if stored is None or stored.schema_version < 2:
        return
    keys = ("config", "sources", "folds", "faithful", "class_names", "n_images")
    changed = [k for k in keys if stored.to_dict()[k] != spec.to_dict()[k]]
    if changed:
        from .run_folder import RunMismatchError

        raise RunMismatchError(f"'{out}' holds a grid with other settings ({', '.join(changed)} differ); its records "
                               "would mix two grids. Use another out_dir, or delete that one.", changed)


class _GridContext:
    """What the runs of one grid share: the splits, one fold's cached datasets at a time, weight files."""

    def __init__(self, out, spec, config, splits, weights, faithful, interpolation, bn, verbose):
        self.out, self.spec, self.config, self.splits = out, spec, config, splits
        self.weights, self.faithful, self.interpolation, self.bn, self.verbose = weights, faithful, interpolation, bn, verbose
        self._fold = None
        self._datasets = None

    def run_dir(self, run) -> Path:
        return self.out / "runs" / run.source / run.scenario.id / f"fold{run.fold}"

    def datasets(self, fold):
        """The fold's (train, val, test) datasets. Their cached, resized images are shared by every run of
        the fold (a string cache is named by content, so splits and folds never share a file); each run
        draws its own epochs from them (fine_tune derives shuffling and augmentation from the run seed)."""
        from .data import make_dataset

        if self._fold != fold:
            self._datasets = None  # one fold's cache in memory at a time
            train, val, test = self.splits[fold]
            size = (self.config.image_size, self.config.image_size)
            common = dict(image_size=size, batch_size=self.config.batch_size, interpolation=self.interpolation,
                          cache=self.config.cache)
            self._datasets = (make_dataset(train, augment=self.config.augment, shuffle=True, seed=self.config.seed, **common),
                              make_dataset(val, shuffle=False, **common),
                              make_dataset(test, shuffle=False, **common))
            self._fold = fold
        return self._datasets

    def execute(self, run):
        """Trains and evaluates one run from nothing but (grid seed, scenario, fold, source); returns its record."""
        import keras

        from .evaluation import evaluate
        from .models import build_model, init_head
        from .records import RunRecord
        from .training import TrainingDivergedError, fine_tune

        config, scenario = self.config, run.scenario
        train, val, test = self.splits[run.fold]
        train_ds, val_ds, test_ds = self.datasets(run.fold)
        seed = run_seed(config.seed, scenario, run.fold)
        set_global_seed(derive_seed(seed, "build"))
        size = (config.image_size, config.image_size)
        model = build_model(scenario.backbone, weights=str(self.weights[(run.source, scenario.backbone)]),
                            num_classes=len(self.spec.class_names), input_shape=(*size, 3), dropout=config.dropout,
                            preprocessing="radimagenet" if self.faithful else "auto")
        init_head(model, derive_seed(seed, "head"))
        directory = self.run_dir(run)
        status, diverged_epoch = "finished", None
        try:
            result = fine_tune(model, train_ds, val_ds, strategy=scenario.strategy, learning_rate=scenario.learning_rate,
                               epochs=config.epochs, bn=self.bn, optimizer=config.optimizer, loss=config.loss,
                               out_dir=directory, early_stopping=config.early_stopping, reduce_lr=config.reduce_lr,
                               seed=seed, verbose=2 if self.verbose > 1 else 0, run_eagerly=config.run_eagerly,
                               class_names=list(self.spec.class_names))
        except TrainingDivergedError as exc:
            result = exc.result
            diverged_epoch = exc.diverged_epoch
            status = "diverged" if result.best_epoch >= 0 else "failed"
        metrics = None
        if status != "failed":
            metrics = evaluate(model, test_ds, class_names=list(self.spec.class_names), seed=config.seed,
                               bootstrap=config.bootstrap,
                               patient_ids=None if test.patient_ids is None else list(test.patient_ids))
            predictions = metrics.pop("predictions")
            np.savez_compressed(directory / "predictions.npz", y_true=np.asarray(predictions["y_true"]),
                                probabilities=np.asarray(predictions["probabilities"]),
                                patient_ids=np.asarray(predictions["patient_ids"] or [], dtype=str))
        info = model.radtransfer_info
        record = RunRecord(
            run_id=run.id, task=self.spec.task, source=run.source, **scenario.to_dict(), scenario=scenario.id,
            fold=run.fold, status=status, metrics=metrics, missing_classes=(metrics or {}).get("missing_classes", []),
            best_epoch=result.best_epoch, best_val_loss=_finite_or_none(result.best_val_loss),
            epochs_run=result.epochs_run, diverged_epoch=diverged_epoch, run_seed=seed,
            fingerprint=result.fingerprint, threshold=result.threshold, faithful=self.faithful, bn=self.bn,
            preprocessing=info.preprocessing, weights_path=info.weights_path, weights_sha256=info.weights_sha256,
            n_train=len(train), n_val=len(val), n_test=len(test), config=config.to_dict(),
        )
        record.write(directory)
        return record

    def write_pairs(self, run) -> None:
        """Once both runs of a (scenario, fold) pair of sources exist, compares them on the same test images."""
        from .records import RunRecord, pair_path

        sources = list(self.spec.sources)
        for other in sources:
            if other == run.source:
                continue
            candidate, reference = (run.source, other) if sources.index(run.source) < sources.index(other) else (other, run.source)
            dirs = {s: self.out / "runs" / s / run.scenario.id / f"fold{run.fold}" for s in (candidate, reference)}
            if not all((d / RECORD).exists() for d in dirs.values()):
                continue
            records = {s: RunRecord.read(d / RECORD) for s, d in dirs.items()}
            if any(r.status == "failed" for r in records.values()):
                continue
            pair = compare_runs(self.spec.task, run.scenario.id, run.fold, candidate, reference, dirs[candidate],
                                dirs[reference], seed=self.config.seed)
            path = pair_path(self.out, run.scenario.id, run.fold, candidate, reference)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(path, pair.to_dict())


def compare_runs(task, scenario_id, fold, candidate, reference, candidate_dir, reference_dir, seed=0):
    """The paired comparison of two runs' test predictions (DeLong, or a paired patient-level bootstrap)."""
    from .records import PairRecord
    from .stats import compare_aucs

    a = np.load(Path(candidate_dir) / "predictions.npz")
    b = np.load(Path(reference_dir) / "predictions.npz")
    if not np.array_equal(a["y_true"], b["y_true"]):
        raise ValueError(f"The runs in {candidate_dir} and {reference_dir} were not scored on the same test images.")
    groups = a["patient_ids"] if "patient_ids" in a.files and len(a["patient_ids"]) else None
    test = compare_aucs(a["y_true"], a["probabilities"], b["probabilities"], groups=groups, seed=seed)
    return PairRecord(task=task, scenario=scenario_id, fold=int(fold), candidate=candidate, reference=reference,
                      method=test["method"], unit=test["unit"], auc_candidate=test["auc_a"], auc_reference=test["auc_b"],
                      diff=test["diff"], p=test["p"], ci=test.get("ci"))


def _finite_or_none(value):
    return float(value) if value is not None and math.isfinite(value) else None

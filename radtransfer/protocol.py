"""The RadImageNet comparison protocol: its configuration as data, the 24 scenarios, and run_grid.

Mei et al. (Radiology: AI 2022) compared RadImageNet and ImageNet weights over 4 backbones × 3
strategies × 2 learning rates per task. ``run_grid`` runs that comparison on any image set: every
(source, scenario, fold) run starts from a fresh model, writes its record atomically, and can be
stopped, restarted and split across machines.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .backbones import did_you_mean, get_backbone
from .ray_executor import GridRunsFailedError, RayExecutor  # noqa: F401  (public here; Ray is imported only when used)
from .seeding import derive_seed
from .shards import parse_shard, resolve_shard  # noqa: F401  (parse_shard: part of this module's API)
from .train_config import TrainConfig

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

    def train_config(self, scenario: "Scenario", seed: int, bn: str) -> TrainConfig:
        """One run's fine_tune settings: the scenario's strategy and learning rate with this protocol's
        epochs, optimizer, loss, stopping rules, batch size and augmentation. The grid reads its datasets
        with this object too, so what a run records is what it ran."""
        return TrainConfig(strategy=scenario.strategy, learning_rate=scenario.learning_rate, epochs=self.epochs,
                           bn=bn, optimizer=self.optimizer, loss=self.loss, early_stopping=self.early_stopping,
                           reduce_lr=self.reduce_lr, seed=seed, batch_size=self.batch_size, augment=self.augment,
                           run_eagerly=self.run_eagerly)


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


def plan_runs(sources, scenarios, n_folds: int, shard=None) -> list[Run]:
    """Every run of the grid in a fixed order (fold, scenario, source). A shard "k/n" takes a stable share
    of them, balanced by expected cost (an InceptionResNetV2 run costs about two ResNet50 runs, a frozen
    backbone about 0.6 of a full fine-tune), so n shards partition the grid and finish close together."""
    from .grid_runs import expected_cost
    from .shards import balanced_share

    runs = [Run(source, scenario, fold) for fold in range(n_folds) for scenario in scenarios for source in sources]
    parsed = parse_shard(shard)
    if parsed is None:
        return runs
    k, n = parsed
    return [runs[i] for i in balanced_share([expected_cost(run) for run in runs], k, n)]


def run_seed(grid_seed: int, scenario: "Scenario", fold: int) -> int:
    """The seed of one run: a function of (grid seed, scenario, fold) only. The weight source is left out
    on purpose, so that a scenario's RadImageNet and ImageNet runs are paired: same split, same batch
    order, same augmentation draws, same dropout masks, same head initialisation."""
    return derive_seed(grid_seed, "run", scenario.id, fold)


def run_grid(image_set, out_dir, *, config: ProtocolConfig = RADIMAGENET, sources=("radimagenet", "imagenet"),
             folds=None, scenarios=None, shard=None, shard_count: int | None = None, executor="sequential",
             weights_dir=None, faithful: bool = False, task: str | None = None, paper_task="auto", verbose: int = 1,
             log=None, on_bad: str = "raise"):
    """Runs (or resumes) the RadImageNet grid on an image set and records every run.

    Every run is a pure function of (grid seed, scenario, fold, weight source): its record is the same
    whether the grid runs whole, in shards, on Ray, or with restarts, and a scenario's runs from different
    weight sources see the same split, batches, augmentation, dropout and head initialisation.

    Several processes may fill one out_dir at once (shards, job-array tasks, one process per GPU, Ray
    workers): a run's folder is claimed before the run is trained, so no run is trained or recorded twice,
    and a run whose process died is taken over and resumed from its last finished epoch.

    Args:
        image_set: the task's images (an ImageSet with patient ids, ideally).
        out_dir: the grid folder; records go to ``out_dir/runs/<source>/<scenario>/fold<k>/record.json``.
        config: the protocol settings (``RADIMAGENET`` or a copy with changes).
        sources: weight sources to compare (the first is the candidate of the paired comparisons).
        folds: None (use ``config.folds``; None there means the 75/10/15 split), or k.
        scenarios: the scenarios to run (default: the 24 of ``radimagenet_scenarios()``).
        shard: "k/n" to run a disjoint, stable share of the runs (n machines can fill one out_dir), or
            "auto": the share of this SLURM array task (``$SLURM_ARRAY_TASK_ID``) or Kubernetes Indexed Job
            pod (``$JOB_COMPLETION_INDEX``, with ``shard_count``).
        shard_count: the number of shards for shard="auto" where the environment does not say it (Kubernetes).
        executor: "sequential" (one run after another in this process), "ray" (each run a Ray task on the
            cluster of ``$RAY_ADDRESS``, or on this machine: one run per GPU), or a ``RayExecutor`` with
            its address and resources per run. Ray needs ``pip install 'radtransfer[ray]'``.
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
        on_bad: "raise" (default: unreadable files stop the grid before anything is trained, listed) or
            "skip" (they are left out before the data is split, listed in the progress and in grid.json).

    The grid folder is bound to its data: ``data.csv`` lists every image (path, class, patient, sha256 of
    the file) and grid.json its digest. Restarting on data that differs in any of them is refused, naming
    what changed, so records made on other data are never mixed in.

    Returns:
        A pandas DataFrame with one row per recorded run of this grid (all shards).
    """
    from .data.fingerprint import data_manifest, manifest_digest
    from .data.pipeline import check_images
    from .records import GridSpec, write_data_manifest
    from .report import load_records, paper_task as match_paper_task
    from .weights import resolve_weights

    from .claims import new_token
    from .executors import resolve_executor
    from .grid_runs import GridJob, GridProgress

    out = Path(out_dir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    task = task or out.name
    if paper_task == "auto":
        paper_task = match_paper_task(task)
    elif paper_task is not None and paper_task not in PAPER_TASKS:
        raise ValueError(f"Unknown paper_task {paper_task!r}; expected one of {', '.join(PAPER_TASKS)}, None or 'auto'."
                         f"{did_you_mean(paper_task, PAPER_TASKS)}")
    scenarios = list(scenarios) if scenarios is not None else radimagenet_scenarios()
    n_folds = folds if folds is not None else config.folds
    bn = "protocol" if faithful else "frozen"
    interpolation = "nearest" if faithful else "bilinear"
    resolved_shard = resolve_shard(shard, shard_count)
    runs = plan_runs(sources, scenarios, n_folds or 1, resolved_shard)
    runner = resolve_executor(executor)

    # Every weight file the share needs, found before anything is trained.
    weights, missing = {}, []
    for source, backbone in sorted({(r.source, r.scenario.backbone) for r in runs}):
        try:
            weights[(source, backbone)] = Path(resolve_weights(backbone, source, weights_dir).path).resolve()
        except FileNotFoundError as exc:
            missing.append(str(exc))
    if missing:
        from .errors import WeightsNotFoundError

        raise WeightsNotFoundError("The grid needs weight files that were not found:\n" + "\n".join(missing))
    image_set, skipped = check_images(image_set, on_bad)
    manifest = data_manifest(image_set)
    data = {"n_images": len(image_set), "sha256": manifest_digest(manifest),
            "skipped": [list(entry) for entry in skipped]}
    spec = GridSpec(task=task, config=config.to_dict(), sources=list(sources), folds=n_folds,
                    scenarios=[s.to_dict() for s in scenarios], faithful=faithful, bn=bn, interpolation=interpolation,
                    n_images=len(image_set), class_names=list(image_set.class_names), paper_task=paper_task, data=data)
    _check_same_grid(out, spec, manifest)
    write_data_manifest(out, manifest)
    spec.write(out)

    splits = list(image_set.kfold(n_folds, seed=config.seed, val=config.val)) if n_folds else \
        [image_set.split(val=config.val, test=config.test, seed=config.seed)]
    job = GridJob(out, spec, config, splits, weights, faithful, interpolation, bn, verbose)
    todo = [r for r in runs if not (job.run_dir(r) / RECORD).exists()]
    share = f"shard {resolved_shard}" + (f" (from {shard!r})" if shard == "auto" else "") if resolved_shard else "grid"
    token = new_token()
    try:
        progress = GridProgress(task, todo, done_before=len(runs) - len(todo), total=len(runs),
                                parallel=runner.parallelism() if todo else 1, log=log, verbose=verbose)
        outcomes = runner.run(job, todo, progress, token) if todo else []
        _wait_for_held_runs(job, runner, outcomes, {r.id: r for r in todo}, progress, token)
    finally:
        runner.close()
    progress.say(f"done {progress.done}/{len(runs)} runs of this {share}.")
    return load_records(out)


def _wait_for_held_runs(job, runner, outcomes, by_id, progress, token) -> None:
    """Runs of this share that other live processes hold: retried every ``HELD_RUN_POLL_S`` seconds until
    they are recorded (by their holder) or their holder has died (then this process takes them over), so
    the share is complete when run_grid returns."""
    from . import grid_runs

    held = [by_id[o.run_id] for o in outcomes if o.state in ("held", "lost")]
    if held:
        progress.say(f"waiting for {len(held)} run(s) held by other processes ({', '.join(r.id for r in held[:3])}"
                     f"{' …' if len(held) > 3 else ''}); checking every {grid_runs.HELD_RUN_POLL_S:g} s")
    while held:
        time.sleep(grid_runs.HELD_RUN_POLL_S)
        retried = runner.run(job, held, progress, token)
        held = [by_id[o.run_id] for o in retried if o.state in ("held", "lost")]


def _check_same_grid(out: Path, spec, manifest) -> None:
    """Refuses a grid folder that holds a grid with other settings, or one made on other data."""
    import warnings

    from .data.fingerprint import manifest_differences
    from .records import GridSpec, read_data_manifest
    from .run_folder import RunMismatchError

    stored = GridSpec.read(out)
    if stored is None or stored.schema_version < 2:
        return
    if stored.data and stored.data.get("sha256") != spec.data["sha256"]:
        lines = manifest_differences(read_data_manifest(out) or [], manifest) or ["the data's digest differs"]
        raise RunMismatchError(f"'{out}' holds a grid made on other data; its records would mix two data sets.\n  "
                               + "\n  ".join(lines) + "\nUse another out_dir for this data, or restore the data the "
                               "grid was made on.", ["data"])
    keys = ("config", "sources", "folds", "faithful", "class_names", "n_images")
    changed = [k for k in keys if stored.to_dict()[k] != spec.to_dict()[k]]
    if changed:
        raise RunMismatchError(f"'{out}' holds a grid with other settings ({', '.join(changed)} differ); its records "
                               "would mix two grids. Use another out_dir, or delete that one.", changed)
    if not stored.data:
        warnings.warn(f"'{out}' was written before grids recorded their data (radtransfer ≤ 0.1), so its records "
                      "cannot be checked against this data; from now on it is bound to this data.", stacklevel=3)


def compare_runs(task, scenario_id, fold, candidate, reference, candidate_dir, reference_dir, seed=0):
    """The paired comparison of two runs' test predictions (DeLong, or a paired patient-level bootstrap)."""
    from .records import PairRecord
    from .stats import compare_aucs

    from .grid_runs import PREDICTIONS

    a = np.load(Path(candidate_dir) / PREDICTIONS)
    b = np.load(Path(reference_dir) / PREDICTIONS)
    if not np.array_equal(a["y_true"], b["y_true"]):
        raise ValueError(f"The runs in {candidate_dir} and {reference_dir} were not scored on the same test images.")
    groups = a["patient_ids"] if "patient_ids" in a.files and len(a["patient_ids"]) else None
    test = compare_aucs(a["y_true"], a["probabilities"], b["probabilities"], groups=groups, seed=seed)
    return PairRecord(task=task, scenario=scenario_id, fold=int(fold), candidate=candidate, reference=reference,
                      method=test["method"], unit=test["unit"], auc_candidate=test["auc_a"], auc_reference=test["auc_b"],
                      diff=test["diff"], p=test["p"], ci=test.get("ci"))

"""One grid's runs as work units: the job they share (``GridJob``), one run trained and recorded under
its claim (``execute_claimed``), and the progress line with an ETA that executors print.

Every executor (in-process, Ray) calls ``execute_claimed``, so a run is trained and recorded the same
way wherever it runs, and two processes sharing a results folder never train or record the same run.
"""

from __future__ import annotations

import math
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .claims import RunClaim
from .records import RECORD_FILE, TIMING_FILE
from .run_folder import replace_atomic, write_json_atomic
from .seeding import derive_seed, set_global_seed

PREDICTIONS = "predictions.npz"
HELD_RUN_POLL_S = 30.0  # how often a grid looks again at runs other processes hold
# Time of a run relative to unfreeze_all on the same backbone: a frozen backbone needs no backward pass
# (measured 0.46-0.68 for freeze_all and 0.50-0.66 for unfreeze_top10 across the four; docs/performance.md).
STRATEGY_COST = {"unfreeze_all": 1.0, "unfreeze_top10": 0.6, "freeze_all": 0.6}


def expected_cost(run) -> float:
    """A run's expected time in ResNet50-unfreeze_all units: a prior for ordering runs and for the ETA."""
    from .backbones import get_backbone

    return get_backbone(run.scenario.backbone).relative_cost * STRATEGY_COST.get(run.scenario.strategy, 1.0)


def longest_first(runs) -> list:
    """Runs by expected cost, longest first (ties keep their order): with many workers the long
    InceptionResNetV2 runs then start early instead of finishing last on a few GPUs while the rest idle
    (benchmarks/grid_scheduling.py)."""
    return sorted(runs, key=lambda run: -expected_cost(run))


def _finite_or_none(value):
    return float(value) if value is not None and math.isfinite(value) else None


class GridJob:
    """What the runs of one grid share, and how one run is trained: the splits, the weight files, and one
    fold's cached datasets at a time. It pickles without its datasets, so executors can send it to other
    processes and machines (which must see ``out`` and the image files at the same paths)."""

    def __init__(self, out, spec, config, splits, weights, faithful, interpolation, bn, verbose):
        self.out, self.spec, self.config, self.splits = Path(out), spec, config, splits
        self.weights, self.faithful, self.interpolation, self.bn, self.verbose = weights, faithful, interpolation, bn, verbose
        self.cwd = os.getcwd()  # relative image paths are relative to the driver's working folder
        self._fold = None
        self._datasets = None

    def enter_working_folder(self) -> None:
        """In another process, moves to the driver's working folder so relative image paths (which are part
        of every run's fingerprint, so they are kept as given) name the same files."""
        if os.getcwd() == self.cwd:
            return
        try:
            os.chdir(self.cwd)
        except OSError:
            relative = any(split.paths is not None and any(not os.path.isabs(p) for p in split.paths[:1])
                           for fold in self.splits for split in fold)
            if relative:
                from .errors import RadtransferError

                raise RadtransferError(f"This worker ({socket.gethostname()}) cannot enter the driver's working folder "
                                       f"'{self.cwd}', and the image paths are relative to it. Put the images on a "
                                       "filesystem every node mounts at the same path, and load them by absolute "
                                       "path.") from None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_fold"], state["_datasets"] = None, None
        return state

    @property
    def key(self) -> str:
        """Names this grid (its folder and settings), so a worker reuses its job, and cached fold, across runs."""
        import hashlib
        import json

        text = json.dumps([str(self.out), self.spec.to_dict()], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def run_dir(self, run) -> Path:
        return self.out / "runs" / run.source / run.scenario.id / f"fold{run.fold}"

    def datasets(self, fold, train_config):
        """The fold's (train, val, test) datasets, read with ``train_config``'s batch size and augmentation
        (the object fine_tune is given, so the run's record states what ran). Their cached, resized images are
        shared by every run of the fold (a string cache is named by content, so splits and folds never share a
        file); each run draws its own epochs from them (fine_tune derives shuffling and augmentation from the
        run seed)."""
        from .data import make_dataset

        key = (fold, train_config.batch_size, repr(train_config.augment))
        if self._fold != key:
            self._datasets = None  # one fold's cache in memory at a time
            train, val, test = self.splits[fold]
            size = (self.config.image_size, self.config.image_size)
            common = dict(image_size=size, batch_size=train_config.batch_size, interpolation=self.interpolation,
                          cache=self.config.cache)
            self._datasets = (make_dataset(train, augment=train_config.augment, shuffle=True, seed=self.config.seed,
                                           **common),
                              make_dataset(val, shuffle=False, **common),
                              make_dataset(test, shuffle=False, **common))
            self._fold = key
        return self._datasets

    def train_and_evaluate(self, run):
        """Trains and evaluates one run from nothing but (grid seed, scenario, fold, source).

        Returns:
            (record, predictions): the RunRecord, and the test predictions (None for a failed run). Nothing
            is written but the run's own training files; ``execute_claimed`` commits the results.
        """
        from .evaluation import evaluate
        from .models import build_model, init_head
        from .protocol import run_seed
        from .records import RunRecord
        from .training import TrainingDivergedError, fine_tune

        config, scenario = self.config, run.scenario
        train, val, test = self.splits[run.fold]
        seed = run_seed(config.seed, scenario, run.fold)
        train_config = config.train_config(scenario, seed=seed, bn=self.bn)
        train_ds, val_ds, test_ds = self.datasets(run.fold, train_config)
        set_global_seed(derive_seed(seed, "build"))
        size = (config.image_size, config.image_size)
        model = build_model(scenario.backbone, weights=str(self.weights[(run.source, scenario.backbone)]),
                            num_classes=len(self.spec.class_names), input_shape=(*size, 3), dropout=config.dropout,
                            preprocessing="radimagenet" if self.faithful else "auto")
        init_head(model, derive_seed(seed, "head"))
        directory = self.run_dir(run)
        status, diverged_epoch = "finished", None
        try:
            result = fine_tune(model, train_ds, val_ds, train_config, out_dir=directory,
                               verbose=2 if self.verbose > 1 else 0, class_names=list(self.spec.class_names))
        except TrainingDivergedError as exc:
            result = exc.result
            diverged_epoch = exc.diverged_epoch
            status = "diverged" if result.best_epoch >= 0 else "failed"
        metrics = predictions = None
        if status != "failed":
            metrics = evaluate(model, test_ds, class_names=list(self.spec.class_names), seed=config.seed,
                               bootstrap=config.bootstrap,
                               patient_ids=None if test.patient_ids is None else list(test.patient_ids))
            predictions = metrics.pop("predictions")
        info = model.radtransfer_info
        record = RunRecord(
            run_id=run.id, task=self.spec.task, source=run.source, **scenario.to_dict(), scenario=scenario.id,
            fold=run.fold, status=status, metrics=metrics, missing_classes=(metrics or {}).get("missing_classes", []),
            best_epoch=result.best_epoch, best_val_loss=_finite_or_none(result.best_val_loss),
            epochs_run=result.epochs_run, diverged_epoch=diverged_epoch, run_seed=seed,
            fingerprint=result.fingerprint, threshold=result.threshold, faithful=self.faithful, bn=self.bn,
            preprocessing=info.preprocessing, weights_path=info.weights_path, weights_sha256=info.weights_sha256,
            n_train=len(train), n_val=len(val), n_test=len(test), config=config.to_dict(),
            train_config={k: result.settings.get(k) for k in train_config.to_dict()},
        )
        return record, predictions

    def commit(self, run, record, predictions, seconds: float) -> None:
        """Writes a run's predictions, record and timing, each atomically (the record last: it marks the run
        done), then any pair comparison the run completes."""
        directory = self.run_dir(run)
        if predictions is not None:
            replace_atomic(directory / PREDICTIONS, lambda tmp: np.savez_compressed(
                tmp, y_true=np.asarray(predictions["y_true"]), probabilities=np.asarray(predictions["probabilities"]),
                patient_ids=np.asarray(predictions["patient_ids"] or [], dtype=str)))
        record.write(directory)
        write_json_atomic(directory / TIMING_FILE, {"seconds": seconds})
        self.write_pairs(run)

    def write_pairs(self, run) -> None:
        """Once both runs of a (scenario, fold) pair of sources exist, compares them on the same test images."""
        from .protocol import compare_runs
        from .records import RunRecord, pair_path

        sources = list(self.spec.sources)
        for other in sources:
            if other == run.source:
                continue
            candidate, reference = (run.source, other) if sources.index(run.source) < sources.index(other) else (other, run.source)
            dirs = {s: self.out / "runs" / s / run.scenario.id / f"fold{run.fold}" for s in (candidate, reference)}
            if not all((d / RECORD_FILE).exists() for d in dirs.values()):
                continue
            records = {s: RunRecord.read(d / RECORD_FILE) for s, d in dirs.items()}
            if any(r.status == "failed" for r in records.values()):
                continue
            pair = compare_runs(self.spec.task, run.scenario.id, run.fold, candidate, reference, dirs[candidate],
                                dirs[reference], seed=self.config.seed)
            path = pair_path(self.out, run.scenario.id, run.fold, candidate, reference)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(path, pair.to_dict())


@dataclass(frozen=True)
class RunOutcome:
    """What became of one run an executor was given.

    ``state`` is "recorded" (trained and recorded here), "already_recorded" (a record existed), "held"
    (another live process holds its claim: ``holder`` says which) or "lost" (trained, but the claim was taken
    over meanwhile, so the record was left to the new holder).
    """

    run_id: str
    state: str
    status: str | None = None
    diverged_epoch: int | None = None
    seconds: float = 0.0
    worker: str = ""
    holder: dict | None = None


def execute_claimed(job: GridJob, run, token: str, on_start=None) -> RunOutcome:
    """Claims a run's folder, trains and evaluates the run, and records it, unless a record exists or a live
    process holds the claim. A run interrupted before (its holder died) resumes from its checkpoint.
    ``on_start(run)`` is called once the claim is held, before training."""
    directory = job.run_dir(run)
    worker = f"{socket.gethostname()}:{os.getpid()}"
    if os.environ.get("CUDA_VISIBLE_DEVICES"):
        worker += f" (GPU {os.environ['CUDA_VISIBLE_DEVICES']})"
    common = dict(run_id=run.id, worker=worker)
    if (directory / RECORD_FILE).exists():
        return RunOutcome(state="already_recorded", **common)
    with RunClaim(directory, token) as claim:
        if not claim.held:
            return RunOutcome(state="held", holder=claim.holder, **common)
        if (directory / RECORD_FILE).exists():  # recorded between the first look and the claim
            return RunOutcome(state="already_recorded", **common)
        if on_start is not None:
            on_start(run)
        start = time.perf_counter()
        record, predictions = job.train_and_evaluate(run)
        seconds = time.perf_counter() - start
        if not claim.still_held():
            return RunOutcome(state="lost", status=record.status, seconds=seconds, **common)
        job.commit(run, record, predictions, seconds)
    return RunOutcome(state="recorded", status=record.status, diverged_epoch=record.diverged_epoch, seconds=seconds,
                      **common)


def format_seconds(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class GridProgress:
    """Progress lines and the ETA of a grid, for one worker or many.

    The ETA sums the expected time of every run not yet finished and divides it by the number of runs
    that train at once. A run's expected time is the mean time of finished runs of its backbone and
    strategy, else its prior cost (``expected_cost``) times the seconds per cost unit of the runs
    finished so far.
    """

    def __init__(self, task: str, runs, done_before: int, total: int, parallel: int = 1, log=None, verbose: int = 1):
        import sys

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
        expected = [float(np.mean(self.seconds[self._kind(run)])) if self._kind(run) in self.seconds
                    else expected_cost(run) * per_unit for run in self.left.values()]
        running_at_once = min(self.parallel, len(expected)) or 1
        return sum(expected) / running_at_once

    def say(self, text: str) -> None:
        if self.verbose:
            print(f"[grid {self.task}] {text}", file=self.log, flush=True)

    def starting(self, run) -> None:
        self.say(f"done {self.done}/{self.total}, running {run.id}, left {len(self.left)}, "
                 f"ETA {format_seconds(self.eta())}")

    def finished(self, outcome: RunOutcome, running: int | None = None) -> None:
        """Reports what became of a run. A held or lost run stays among the runs left (the grid waits for it)."""
        if outcome.state in ("held", "lost"):
            if outcome.run_id in self._reported_held:
                return
            self._reported_held.add(outcome.run_id)
        run = self.left.get(outcome.run_id) if outcome.state in ("held", "lost") else self.left.pop(outcome.run_id, None)
        if outcome.state in ("recorded", "already_recorded"):
            self.done += 1
        if outcome.state == "recorded" and run is not None:
            self.seconds.setdefault(self._kind(run), []).append(outcome.seconds)
            self._units[0] += outcome.seconds
            self._units[1] += expected_cost(run)
        if running is not None:  # many workers: one line per finished run
            what = {"recorded": f"finished {outcome.run_id} in {format_seconds(outcome.seconds)} on {outcome.worker}",
                    "already_recorded": f"{outcome.run_id} was already recorded",
                    "held": f"{outcome.run_id} is held by {describe_holder(outcome.holder)}",
                    "lost": f"{outcome.run_id}: its claim was taken over; left to the new holder"}[outcome.state]
            self.say(f"done {self.done}/{self.total}; {what}; running {running}, left {len(self.left)}, "
                     f"ETA {format_seconds(self.eta())}")
        elif outcome.state == "held":
            self.say(f"skipping {outcome.run_id}: held by {describe_holder(outcome.holder)}")
        if outcome.state == "recorded" and outcome.status not in (None, "finished"):
            self.say(f"{outcome.run_id} {outcome.status} (loss NaN at epoch {outcome.diverged_epoch}); recorded, "
                     "continuing with the other runs")


def describe_holder(holder: dict | None) -> str:
    if not holder:
        return "another process"
    since = holder.get("claimed_at")
    age = f", since {format_seconds(time.time() - since)} ago" if isinstance(since, (int, float)) else ""
    return f"pid {holder.get('pid')} on {holder.get('host')}{age}"

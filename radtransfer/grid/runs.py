"""One grid's runs as work units: the job they share (``GridJob``) and one run trained and recorded under its
claim (``execute_claimed``).

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

from ..data.tf_data.pipeline import make_dataset
from ..errors import RadtransferError, TrainingDivergedError
from ..evaluation.metrics import evaluate
from ..models.classifier import build_model, init_head
from ..training.epoch_loop import RunLines
from ..training.fine_tuning import fine_tune
from ..utils.claims import claiming_as
from ..utils.io import replace_atomic, write_json_atomic
from ..utils.seeding import derive_seed, set_global_seed
from .arms import parse_arm
from .claims import RunClaim
from .pairs import write_pairs
from .plan import run_seed
from .records import PREDICTIONS, RECORD_FILE, TIMING_FILE, RunRecord, run_dir

HELD_RUN_POLL_S = 30.0  # how often a grid looks again at runs other processes hold


def _finite_or_none(value):
    return float(value) if value is not None and math.isfinite(value) else None


class GridJob:
    """What the runs of one grid share, and how one run is trained: the splits, the weight files, and one
    fold's cached datasets at a time. It pickles without its datasets, so executors can send it to other
    processes and machines (which must see ``out`` and the image files at the same paths)."""

    def __init__(self, out, spec, config, splits, weights, faithful, interpolation, bn, verbose):
        self.out, self.spec, self.config, self.splits = Path(out), spec, config, splits
        self.weights, self.faithful, self.interpolation, self.bn, self.verbose = (
            weights,
            faithful,
            interpolation,
            bn,
            verbose,
        )
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
            relative = any(
                split.paths is not None and any(not os.path.isabs(p) for p in split.paths[:1])
                for fold in self.splits
                for split in fold
            )
            if relative:
                raise RadtransferError(
                    f"This worker ({socket.gethostname()}) cannot enter the driver's working folder "
                    f"'{self.cwd}', and the image paths are relative to it. Put the images on a "
                    "filesystem every node mounts at the same path, and load them by absolute "
                    "path."
                ) from None

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
        return run_dir(self.out, run.source, run.scenario.id, run.fold, run.repeat)

    def run_config(self, scenario):
        """The protocol settings one run trains with: the grid's, at the scenario's image size where it has one."""
        if scenario.image_size is None or scenario.image_size == self.config.image_size:
            return self.config
        return self.config.replace(image_size=scenario.image_size)

    def datasets(self, fold, train_config, image_size):
        """The fold's (train, val, test) datasets at ``image_size`` (the run's), read with
        ``train_config``'s batch size and augmentation (the object fine_tune is given, so the run's record states
        what ran). Their cached, resized images are shared by every run of the fold at that size (a string cache is
        named by content and size, so splits, folds and sizes never share a file); each run draws its own epochs
        from them (fine_tune derives shuffling and augmentation from the run seed). One fold is held at a time,
        with one entry per image size its runs use."""
        key = (fold, train_config.batch_size, repr(train_config.augment))
        if self._fold != key:
            self._datasets = {}  # one fold's cache in memory at a time
            self._fold = key
        if image_size not in self._datasets:
            train, val, test = self.splits[fold]
            size = (image_size, image_size)
            common = dict(
                image_size=size,
                batch_size=train_config.batch_size,
                interpolation=self.interpolation,
                cache=self.config.cache,
            )
            self._datasets[image_size] = (
                make_dataset(train, augment=train_config.augment, shuffle=True, seed=self.config.seed, **common),
                make_dataset(val, shuffle=False, **common),
                make_dataset(test, shuffle=False, **common),
            )
        return self._datasets[image_size]

    def train_and_evaluate(self, run, say=None):
        """Trains and evaluates one run from nothing but (grid seed, scenario, fold, repeat, source).

        ``say`` (the grid's progress lines, in this process): at verbose 1 each epoch says its line, and a long
        epoch its heartbeat, through it, named by the run's id. Without it (a Ray worker, whose output goes to
        the driver) a run says nothing below verbose 2; at verbose 2 fine_tune prints its own lines.

        Returns:
            (record, predictions): the RunRecord, and the test predictions (None for a failed run). Nothing
            is written but the run's own training files; ``execute_claimed`` commits the results.
        """
        scenario = run.scenario
        config = self.run_config(scenario)  # its image_size is the run's, so the record says what ran
        train, val, test = self.splits[run.fold]
        seed = run_seed(config.seed, scenario, run.fold, run.repeat)
        train_config = config.train_config(scenario, seed=seed, bn=self.bn)
        train_ds, val_ds, test_ds = self.datasets(run.fold, train_config, config.image_size)
        arm = parse_arm(run.source)
        model = self._model(run, arm, config, seed)
        directory = self.run_dir(run)
        status, diverged_epoch = "finished", None
        lines = []
        if say is not None and self.verbose == 1:
            lines.append(RunLines(train_config.epochs, lambda text: say(f"{run.id}: {text}")))
        try:
            result = fine_tune(
                model,
                train_ds,
                val_ds,
                train_config,
                out_dir=directory,
                callbacks=lines,
                verbose=2 if self.verbose > 1 else 0,
                class_names=list(self.spec.class_names),
            )
        except TrainingDivergedError as exc:
            result = exc.result
            diverged_epoch = exc.diverged_epoch
            status = "diverged" if result.best_epoch >= 0 else "failed"
        metrics = predictions = None
        if status != "failed":
            metrics = evaluate(
                model,
                test_ds,
                class_names=list(self.spec.class_names),
                seed=config.seed,
                bootstrap=config.bootstrap,
                patient_ids=None if test.patient_ids is None else list(test.patient_ids),
            )
            predictions = metrics.pop("predictions")
        info = model.radtransfer_info
        record = RunRecord(
            run_id=run.id,
            task=self.spec.task,
            source=run.source,
            **scenario.to_dict(),
            scenario=scenario.id,
            fold=run.fold,
            repeat=run.repeat,
            status=status,
            metrics=metrics,
            missing_classes=(metrics or {}).get("missing_classes", []),
            best_epoch=result.best_epoch,
            best_val_loss=_finite_or_none(result.best_val_loss),
            epochs_run=result.epochs_run,
            diverged_epoch=diverged_epoch,
            run_seed=seed,
            fingerprint=result.fingerprint,
            threshold=result.threshold,
            faithful=self.faithful,
            bn=self.bn,
            preprocessing=info.preprocessing,
            weights_path=info.weights_path,
            weights_sha256=info.weights_sha256,
            n_train=len(train),
            n_val=len(val),
            n_test=len(test),
            config=config.to_dict(),
            train_config={k: result.settings.get(k) for k in train_config.to_dict()},
            encoder=arm.encoder,
        )
        return record, predictions

    def _model(self, run, arm, config, seed: int):
        """The run's model: its scenario's backbone (or its foundation arm's encoder, which replaces it) with the
        run's source's weights (None: random initialisation), at the run's size, the head drawn from its seed."""
        set_global_seed(derive_seed(seed, "build"))
        weights = self.weights[(run.source, None if arm.encoder else run.scenario.backbone)]
        model = build_model(
            arm.encoder or run.scenario.backbone,
            weights=None if weights is None else str(weights),
            num_classes=len(self.spec.class_names),
            input_shape=(config.image_size, config.image_size, 3),
            dropout=config.dropout,
            preprocessing=arm.preprocessing_mode(self.faithful),
        )
        init_head(model, derive_seed(seed, "head"))
        return model

    def commit(self, run, record, predictions, seconds: float) -> None:
        """Writes a run's predictions, record and timing, each atomically (the record last: it marks the run
        done), then any pair comparison the run completes."""
        directory = self.run_dir(run)
        if predictions is not None:
            replace_atomic(
                directory / PREDICTIONS,
                lambda tmp: np.savez_compressed(
                    tmp,
                    y_true=np.asarray(predictions["y_true"]),
                    probabilities=np.asarray(predictions["probabilities"]),
                    patient_ids=np.asarray(predictions["patient_ids"] or [], dtype=str),
                ),
            )
        record.write(directory)
        write_json_atomic(directory / TIMING_FILE, {"seconds": seconds})
        write_pairs(self.out, self.spec, run, self.config.seed)


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
    auc: float | None = None  # the run's test AUC (None: not trained here, or no metrics)


def execute_claimed(job: GridJob, run, token: str, on_start=None, say=None) -> RunOutcome:
    """Claims a run's folder, trains and evaluates the run, and records it, unless a record exists or a live
    process holds the claim. A run interrupted before (its holder died) resumes from its checkpoint.
    ``on_start(run)`` is called once the claim is held, before training; ``say`` writes the run's epoch lines
    (``GridJob.train_and_evaluate``)."""
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
        with claiming_as(token):  # the run folder's own claim (fine_tune's) is this claim's: a retry takes both
            record, predictions = job.train_and_evaluate(run, say=say)
        seconds = time.perf_counter() - start
        if not claim.still_held():
            return RunOutcome(state="lost", status=record.status, seconds=seconds, **common)
        job.commit(run, record, predictions, seconds)
    return RunOutcome(
        state="recorded",
        status=record.status,
        diverged_epoch=record.diverged_epoch,
        seconds=seconds,
        auc=(record.metrics or {}).get("auc"),
        **common,
    )

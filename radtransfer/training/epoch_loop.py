"""The epoch loop of fine_tune: one ``fit`` per epoch over a dataset drawn from (seed, epoch), after which the weights,
the optimizer's state and the progress are committed to the run folder (or the best weights kept in memory), so a
run stopped at any moment continues exactly; plus compiling, metrics and weight files."""

from __future__ import annotations

import math
import sys
import threading
import time
import warnings

import keras
import numpy as np

from ..backend import draw_from_generator_states
from ..data.failures import readable_pipeline_errors
from ..errors import RadtransferError
from ..utils.io import replace_atomic
from ..utils.progress import format_seconds
from ..utils.seeding import derive_seed, seed_generators, seed_layers
from .config import TrainConfig
from .run_folder import BEST_WEIGHTS, FineTuneResult, checkpoint
from .runtime import Runtime
from .state_files import BackgroundWriter, load_snapshot, snapshot, write_snapshot


def make_metrics(num_classes: int, multi_label: bool = False):
    # multi_label=True averages one AUC per column: for a two-column softmax both columns give the
    # positive class's AUC; for more classes it is the macro one-vs-rest AUC; for a multi-label model's K
    # sigmoids the macro AUC over its labels. (The reference's AUC() flattened the columns into one ranking,
    # which is not an AUC of any class.) A multi-label model's accuracy is per label, at 0.5.
    accuracy = keras.metrics.BinaryAccuracy if multi_label else keras.metrics.CategoricalAccuracy
    return [
        accuracy(name="accuracy"),
        keras.metrics.AUC(multi_label=True, num_labels=num_classes, name="auc"),
    ]


def compile_model(model, optimizer, loss, metrics, jit_compile: bool, run_eagerly: bool = False) -> bool:
    """Compiles, then reads back whether XLA is really on; warns when Keras fell back without it."""
    if run_eagerly:
        _graph_auc_updates(metrics)
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics, jit_compile=jit_compile, run_eagerly=run_eagerly)
    # The optimizer's slots made now, not inside the first traced step: TensorFlow traces a function that creates
    # variables twice (once to create them, once to run), so building them here halves the first epoch's tracing.
    model.optimizer.build(model.trainable_variables)
    resolved = bool(model.jit_compile)
    if jit_compile and not resolved:
        warnings.warn(
            "XLA was asked for (jit_compile) but Keras fell back to running without it; a layer "
            "without XLA support (e.g. a Keras random augmentation layer such as RandomRotation) is "
            "the usual cause. Augment in the data pipeline instead (radtransfer.data).",
            stacklevel=3,
        )
    return resolved


def _graph_auc_updates(metrics) -> None:
    """In an eager run on TensorFlow, each AUC's update as one traced function: Keras's multi-label update calls
    ``tf.vectorized_map``, which converts its function anew at every eager call (0.12 s a batch for the test backbone,
    more than the step itself). The same operations run, so the counts, and the AUC, are the same."""
    if keras.backend.backend() != "tensorflow":
        return
    import tensorflow as tf

    for metric in metrics:
        if isinstance(metric, keras.metrics.AUC):
            metric.update_state = tf.function(metric.update_state, reduce_retracing=True)


def save_model_weights(model, path) -> None:
    """Writes the model's weights (not the optimizer's state) to a ``.weights.h5`` file, atomically.

    Keras's ``save_weights`` also writes the optimizer's slots (Adam: two more copies of every trainable
    weight); a best-weights checkpoint does not need them, which makes it a third of the size. A
    functional view of the same layers (no optimizer attached) writes the same layer paths, so
    ``load_model_weights`` reads it back into the compiled model.
    """
    view = model
    if getattr(model, "optimizer", None) is not None:
        try:
            view = keras.Model(model.inputs, model.outputs, name=model.name)
        except (AttributeError, ValueError, TypeError):  # a subclassed model has no graph to view
            view = model

    replace_atomic(path, lambda tmp: view.save_weights(str(tmp)))


def load_model_weights(model, path) -> None:
    """Loads a ``save_model_weights`` file, or a model-only ``state_files`` snapshot (``.npz``); a compiled
    model's optimizer state is left as it is."""
    if str(path).endswith(".npz"):
        load_snapshot(model, path, optimizer=False)
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        model.load_weights(str(path))


class Throughput(keras.callbacks.Callback):
    """Seconds spent in training steps (validation excluded), over any number of fit() calls: from an epoch's
    start to its validation's start (or its end, without validation). It has no per-batch hook, so Keras keeps
    dispatching steps asynchronously (a per-batch hook makes it wait for every step's loss: on a GPU, an idle gap
    after each step)."""

    def __init__(self):
        super().__init__()
        self.train_seconds = 0.0
        self.epochs = 0
        self._start = None
        self._trained = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start, self._trained = time.perf_counter(), None

    def on_test_begin(self, logs=None):
        if self._start is not None and self._trained is None:
            self._trained = time.perf_counter() - self._start

    def on_epoch_end(self, epoch, logs=None):
        if self._start is not None:
            self.train_seconds += self._trained if self._trained is not None else time.perf_counter() - self._start
            self.epochs += 1
            self._start = None


class _Waiting:
    """A line every ``interval`` s from a daemon thread while a phase that calls no hook runs (an epoch's first step,
    which builds the training graph in the first epoch; a validation), until ``stop``: ``text(seconds so far)``."""

    def __init__(self, say, interval: float, text):
        self.say, self.interval, self.text = say, interval, text
        self._done = threading.Event()
        self._began = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True, name="radtransfer-heartbeat")
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(self.interval):
            self.say(self.text(time.monotonic() - self._began))

    def stop(self) -> None:
        self._done.set()


class Heartbeat(keras.callbacks.Callback):
    """A line now and then inside a long epoch, when the log has one line per epoch (verbose 2): which step,
    at what rate, and how long this epoch has left, so a log is never silent for more than ``interval`` s; also
    while the epoch's first step runs (building the graph) and while the validation runs, from a timer thread.
    ``say`` writes a line (default: print it on stdout). ``steps=False`` (under a progress bar, which shows the
    steps itself) keeps only the lines while the first step runs, before the bar is drawn."""

    def __init__(self, epochs: int, interval: float = 30.0, say=None, steps: bool = True):
        super().__init__()
        self.epochs, self.interval = epochs, interval
        self.say = say or _print
        self.steps = steps
        self._epoch, self._start, self._last = 0, None, 0.0
        self._waiting = None

    def _wait(self, text) -> None:
        """Lines while a phase without hooks runs (none with interval 0, which asks for a line at every step)."""
        self._stop_waiting()
        if self.interval > 0:
            self._waiting = _Waiting(self.say, self.interval, text)

    def _stop_waiting(self) -> None:
        if self._waiting is not None:
            self._waiting.stop()
            self._waiting = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch, self._start = epoch, None

    def on_test_begin(self, logs=None):
        self._stop_waiting()
        if self.steps:
            where = f"epoch {self._epoch + 1}/{self.epochs}"
            self._wait(lambda seconds: f"{where}: validating, {format_seconds(seconds)} so far")

    def on_test_end(self, logs=None):
        self._stop_waiting()

    def on_epoch_end(self, epoch, logs=None):
        self._stop_waiting()

    def on_train_end(self, logs=None):
        self._stop_waiting()

    def on_train_batch_begin(self, batch, logs=None):
        # A begin hook, which reads no loss: Keras keeps dispatching steps asynchronously (an end hook stops it).
        now = time.perf_counter()
        self._stop_waiting()  # the step before has ended
        if self._start is None:  # from the first step on: graph building is announced apart
            self._start = self._last = now
            self._last_batch, self._measuring = batch, False
            where = f"epoch {self._epoch + 1}/{self.epochs}: step {batch + 1}"
            what = "building the training graph in a run's first epoch, starting the input pipeline"
            self._wait(lambda seconds: f"{where} still running after {format_seconds(seconds)} ({what})")
            return
        if not self.steps:
            return
        steps = (self.params or {}).get("steps")
        total = f"/{steps}" if steps else ""
        if not self._measuring:
            # The first step builds the training graph (in the first epoch, minutes for a large network) and starts
            # the input pipeline: no measure of the others' rate (the demo said "about 18m14s left", then ended 9 s
            # later). The rate is measured from the second step on; the first is only reported if it was long.
            self._measuring = True
            took, self._last, self._last_batch = now - self._last, now, batch
            if took >= self.interval:
                self.say(
                    f"epoch {self._epoch + 1}/{self.epochs}: step {batch + 1}{total} begins; the first took "
                    f"{format_seconds(took)} (building the graph, starting the input pipeline), so the time left is "
                    "said from the next steps' rate"
                )
            return
        if now - self._last < self.interval:
            return
        # The rate since the last line: the epoch's first steps also read and cache the images, or wait for the
        # pipeline to fill, and a rate over the whole epoch so far put the end minutes too late.
        rate = (batch - self._last_batch) / (now - self._last)
        self._last, self._last_batch = now, batch
        left = f", about {format_seconds((steps - batch) / rate)} left in this epoch" if steps and rate else ""
        self.say(f"epoch {self._epoch + 1}/{self.epochs}: step {batch + 1}{total}, {rate:.2f} steps/s{left}")


def _print(text: str) -> None:
    print(text, flush=True)


RUN_HEARTBEAT_S = 10.0  # the heartbeat of a run inside a grid, curve or layer-wise search


class RunLines(Heartbeat):
    """The progress of one run inside a larger experiment (a grid's, a learning curve's, a layer-wise search's),
    with fine_tune itself silent (verbose 0): a line when training starts, a short line per epoch ("epoch 3/30 -
    41s - val_loss 0.520 - val_auc 0.810") and, inside an epoch, the heartbeat every ``interval`` s (default
    ``RUN_HEARTBEAT_S``); each through ``say``, which names the run and writes to the experiment's log."""

    def __init__(self, epochs: int, say, interval: float | None = None):
        super().__init__(epochs, RUN_HEARTBEAT_S if interval is None else interval, say)
        self._began = None
        self._first = True

    def on_epoch_begin(self, epoch, logs=None):
        super().on_epoch_begin(epoch, logs)
        if self._first:
            self._first = False
            self.say(f"epoch {epoch + 1}/{self.epochs}: building the training graph and reading the images")
        self._began = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        logs = logs or {}
        shown = [k for k in ("val_loss", "val_auc") if k in logs] or [k for k in ("loss",) if k in logs]
        took = time.perf_counter() - self._began if self._began is not None else 0.0
        values = "".join(f" - {k} {float(logs[k]):.3f}" for k in shown)
        self.say(f"epoch {epoch + 1}/{self.epochs} - {took:.0f}s{values}")


class EpochBar(keras.callbacks.ProgbarLogger):
    """Keras's progress bar (verbose 1) without its "Epoch k/n" line: the loop runs fit one epoch at a time, where
    Keras would print "Epoch 2/2" in epoch 2 of 30, and prints "epoch k/N" itself."""

    def set_params(self, params):
        super().set_params(params)
        self.epochs = 1


class _RetraceNote:
    """Drops TensorFlow's "triggered tf.function retracing" warning. Each epoch is one fit() over a new
    dataset, which retraces Keras's thin per-iterator wrapper; the training step inside it is traced in
    the first epoch only (checked by counting traces), so the warning would only alarm."""

    def filter(self, record) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


def _quiet_retracing() -> None:
    if keras.backend.backend() != "tensorflow":
        return
    import tensorflow as tf

    logger = tf.get_logger()
    if not any(isinstance(f, _RetraceNote) for f in logger.filters):
        logger.addFilter(_RetraceNote())


class EpochLoop:
    """Trains epoch by epoch; after each, commits weights, optimizer state and progress to the run folder
    (or keeps the best weights in memory without one)."""

    def __init__(
        self, model, config: TrainConfig, runtime: Runtime, data, folder, seed, class_weight, callbacks, verbose
    ):
        self.model = model
        self.config = config
        self.runtime = runtime
        self.data = data
        self.folder = folder
        self.seed = seed
        self.class_weight = class_weight
        self.callbacks = list(callbacks)
        self.verbose = (1 if sys.stdout.isatty() else 2) if verbose == "auto" else int(verbose)
        self.throughput = Throughput()
        self.history: dict = {}
        self.next_epoch = 0
        self.resumed_from = 0
        self.best_epoch = -1
        self.best_val_loss = math.inf
        self.best_file = None
        self.best_in_memory = None
        self.last_file = None
        self.early = {"best": math.inf, "wait": 0, "stopped": False}
        self.plateau = {"best": math.inf, "wait": 0}
        self.diverged_epoch = None
        self._stale_best = None
        self.writer = BackgroundWriter()  # per-epoch checkpoints are written while the next epoch trains

    # state ---------------------------------------------------------------------------------------

    def state(self, status="running") -> dict:
        return {
            "status": status,
            "next_epoch": self.next_epoch,
            "best_epoch": self.best_epoch,
            "best_val_loss": self.best_val_loss if math.isfinite(self.best_val_loss) else None,
            "best_file": self.best_file,
            "last_file": self.last_file,
            "early": self.early,
            "plateau": self.plateau,
            "seed": self.seed,
            "diverged_epoch": self.diverged_epoch,
            "learning_rate": float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)),
        }

    def restore(self, state: dict) -> None:
        """Continues from a committed state: model and optimizer from its last checkpoint."""
        self.next_epoch = self.resumed_from = int(state.get("next_epoch", 0))
        self.best_epoch = int(state.get("best_epoch", -1))
        value = state.get("best_val_loss")
        self.best_val_loss = math.inf if value is None else float(value)
        self.best_file = state.get("best_file")
        self.last_file = state.get("last_file")
        self.early = {**self.early, **(state.get("early") or {})}
        self.plateau = {**self.plateau, **(state.get("plateau") or {})}
        for tracker in (self.early, self.plateau):  # strict JSON writes a best not yet seen (infinite) as null
            tracker["best"] = math.inf if tracker.get("best") is None else float(tracker["best"])
        self.history = self.folder.history()
        if self.last_file and self.folder.file(self.last_file).exists():  # the optimizer was built at compile
            path = self.folder.file(self.last_file)
            if path.suffix == ".npz":
                load_snapshot(self.model, path)
            else:  # a checkpoint written before state_files
                self.model.load_weights(str(path))
        elif self.next_epoch > 0:
            raise RadtransferError(
                f"The run in '{self.folder.path}' says {self.next_epoch} epochs are done but its "
                f"checkpoint {self.last_file} is missing. Pass resume=False to start over."
            )

    def commit(self, status="running") -> None:
        if self.folder is not None:
            self.writer.wait()
            self.folder.write_history(self.history)
            self.folder.write_state(self.state(status))

    def clean_checkpoints(self) -> None:
        self.writer.wait()
        self.folder.clean_checkpoints()
        self.best_file = self.last_file = None

    # training ------------------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._run()
        except BaseException:
            self.writer.drain()  # what was committed is on disk before the error leaves (a caller may resume at once)
            raise

    def _run(self) -> None:
        _quiet_retracing()
        epochs = self.config.epochs
        if self.verbose and self.resumed_from and self.next_epoch < epochs and not self.early["stopped"]:
            where = f" ({self.folder.path})" if self.folder is not None else ""
            done = "epoch 1 was" if self.resumed_from == 1 else f"epochs 1–{self.resumed_from} were"
            print(f"resuming from epoch {self.next_epoch + 1}/{epochs}: {done} trained before{where}", flush=True)
        if self.verbose and self.next_epoch < epochs:
            print(
                f"epoch {self.next_epoch + 1}/{epochs}: building the training graph and reading the images (this "
                "epoch takes longest, a minute or more on a CPU); a line follows each epoch",
                flush=True,
            )
        while self.next_epoch < epochs and not self.early["stopped"]:
            epoch = self.next_epoch
            draw_from_generator_states(seed_generators(self.model))
            seed_layers(self.model, derive_seed(self.seed, "dropout", epoch))
            train = self.data.train_epoch(epoch, self.seed)
            if self.verbose == 1:
                print(f"epoch {epoch + 1}/{epochs}", flush=True)
            start = time.perf_counter()
            with readable_pipeline_errors(*self.data.sources), self._distribution_scope():
                fit = self.model.fit(
                    train,
                    validation_data=self.data.val if self.data.fit_val is None else self.data.fit_val,
                    initial_epoch=epoch,
                    epochs=epoch + 1,
                    callbacks=[  # none with a per-batch hook (but the bars): steps stay asynchronous
                        self.throughput,
                        *([Heartbeat(epochs)] if self.verbose == 2 else []),
                        *([Heartbeat(epochs, steps=False), EpochBar()] if self.verbose == 1 else []),
                        *self.callbacks,
                    ],
                    class_weight=self.class_weight,
                    verbose=1 if self.verbose == 1 else 0,
                    shuffle=False,
                )
            logs = {k: float(v[-1]) for k, v in fit.history.items() if v}
            logs.pop("learning_rate", None)
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            self._append(epoch, logs)
            if self.verbose == 2:
                shown = " - ".join(f"{k} {v:.4g}" for k, v in logs.items())
                print(f"epoch {epoch + 1}/{epochs} - {time.perf_counter() - start:.0f}s - {shown}", flush=True)
            # A NaN training loss, or a NaN val_loss (the model's outputs are NaN), is divergence.
            if not math.isfinite(logs.get("loss", math.nan)) or not math.isfinite(logs.get("val_loss", 0.0)):
                self.diverged_epoch = epoch + 1  # epochs count from 1, in logs and files alike
                self.next_epoch = epoch + 1
                return
            self._after_epoch(epoch, logs)

    def _distribution_scope(self):
        """Keras's own distributions (JAX DataParallel) must be in force while fit() runs; a tf.distribute
        strategy is remembered by the model it built."""
        from ..backend import is_keras_distribution
        from .runtime import null_scope

        distribution = self.runtime.distribution
        if is_keras_distribution(distribution):
            return distribution.scope()
        return null_scope()

    def _append(self, epoch, logs) -> None:
        rows = len(self.history.get("epoch", []))
        self.history.setdefault("epoch", []).append(epoch + 1)
        for key, value in logs.items():
            self.history.setdefault(key, [math.nan] * rows).append(value)
        for key in self.history:
            if len(self.history[key]) < rows + 1:
                self.history[key].append(math.nan)

    def _after_epoch(self, epoch, logs) -> None:
        value = logs.get("val_loss", math.nan)
        improved = math.isfinite(value) and value < self.best_val_loss
        if improved:
            self.best_val_loss, self.best_epoch = value, epoch + 1
            self._save_best(epoch)
        self._early_stopping(value, epoch)
        self._reduce_lr(value, epoch)
        self.next_epoch = epoch + 1
        if self.folder is not None:
            self.writer.wait()  # one state in flight at a time: memory for one copy, and FIFO order on disk
            name = checkpoint("last", epoch + 1)
            arrays = snapshot(self.model)
            previous, self.last_file = self.last_file, name
            folder, history, state = self.folder, {k: list(v) for k, v in self.history.items()}, self.state()
            stale = [f for f in (previous, self._stale_best) if f and f not in (self.last_file, self.best_file)]
            self._stale_best = None

            def commit():  # the file, then the state naming it, then the files no state names any more
                write_snapshot(folder.file(name), arrays)
                folder.write_history(history)
                folder.write_state(state)
                for old in stale:
                    if folder.file(old).exists():
                        folder.file(old).unlink()

            self.writer.submit(commit)

    def _save_best(self, epoch) -> None:
        if self.folder is None:
            self.best_in_memory = [np.array(w) for w in self.model.get_weights()]
            return
        name = checkpoint("best", epoch + 1)
        arrays, path = snapshot(self.model, optimizer=False), self.folder.file(name)
        self.writer.submit(lambda: write_snapshot(path, arrays))
        previous, self.best_file = self.best_file, name
        self._stale_best = previous

    def _early_stopping(self, value, epoch) -> None:
        if not self.config.early_stopping:
            return
        if math.isfinite(value) and value < self.early["best"]:
            self.early.update(best=value, wait=0)
        else:
            self.early["wait"] += 1
            if self.early["wait"] >= self.config.early_stopping:
                self.early["stopped"] = True
                if self.verbose:
                    print(
                        f"early stopping after epoch {epoch + 1}/{self.config.epochs}: val_loss has not improved for "
                        f"{self.early['wait']} epoch(s) (early_stopping={self.config.early_stopping}); the best "
                        f"epoch, {self.best_epoch}, is kept",
                        flush=True,
                    )

    def _reduce_lr(self, value, epoch) -> None:
        if not self.config.reduce_lr:
            return
        if math.isfinite(value) and value < self.plateau["best"] - 1e-4:
            self.plateau.update(best=value, wait=0)
            return
        self.plateau["wait"] += 1
        if self.plateau["wait"] >= self.config.reduce_lr:
            rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            self.model.optimizer.learning_rate.assign(rate * 0.1)
            if self.verbose and not self.early["stopped"]:
                print(
                    f"learning rate {rate:.3g} → {rate * 0.1:.3g} after epoch {epoch + 1}/{self.config.epochs}: "
                    f"val_loss has not improved for {self.plateau['wait']} epoch(s) "
                    f"(reduce_lr={self.config.reduce_lr})",
                    flush=True,
                )
            self.plateau["wait"] = 0

    def restore_best(self) -> None:
        """Puts the best epoch's weights into the working model."""
        self.writer.wait()
        if self.best_epoch < 0:
            return
        if self.folder is None:
            if self.best_in_memory is not None:
                self.model.set_weights(self.best_in_memory)
            return
        if self.best_file and self.folder.file(self.best_file).exists():
            load_model_weights(self.model, self.folder.file(self.best_file))
        elif self.folder.file(BEST_WEIGHTS).exists():
            load_model_weights(self.model, self.folder.file(BEST_WEIGHTS))

    def result(
        self, trainable_params, settings, run_fingerprint, thresholds, class_names, multi_label: bool = False
    ) -> FineTuneResult:
        seconds = self.throughput.train_seconds
        size = self.data.train_size
        return FineTuneResult(
            history=self.history,
            best_epoch=self.best_epoch,
            best_val_loss=self.best_val_loss if math.isfinite(self.best_val_loss) else float("nan"),
            epochs_run=len(self.history.get("epoch", [])),
            resumed_from=self.resumed_from,
            stopped_early=bool(self.early["stopped"]),
            trainable_params=trainable_params,
            images_per_second=size * self.throughput.epochs / seconds if size and seconds > 0 else None,
            paths=self.folder.paths() if self.folder is not None else {},
            settings=settings,
            status="diverged" if self.diverged_epoch is not None else "finished",
            diverged_epoch=self.diverged_epoch,
            threshold=None if thresholds is None or multi_label else thresholds[1],
            thresholds=None if thresholds is None else {str(c): t for c, t in thresholds.items()},
            class_names=class_names,
            fingerprint=run_fingerprint,
            seed=self.seed,
        )

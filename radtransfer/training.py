"""fine_tune: train a build_model model under a RadImageNet strategy, resumably, and record everything."""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from .backbones import did_you_mean
from .errors import RadtransferError
from .strategies import apply_strategy, parse_strategy

OPTIMIZERS = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD", "rmsprop": "RMSprop", "nadam": "Nadam"}
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
DISTRIBUTIONS = (None, "mirrored", "multiworker")
RESULT_FILE = "result.json"
CONFIG_FILE = "config.json"


class TrainingDivergedError(RadtransferError, RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class FineTuneResult:
    """What fine_tune did.

    Attributes:
        history: per-epoch metrics (``loss``, ``val_loss``, ``val_auc``, ...), all epochs of the run,
            resumed parts included.
        best_epoch: the epoch (0-based) with the lowest val_loss; its weights are in the model.
        best_val_loss: that val_loss.
        epochs_run: epochs trained in total.
        resumed_from: the epoch training resumed at (0 for a fresh run).
        stopped_early: whether EarlyStopping ended the run.
        trainable_params: parameters the strategy left trainable.
        images_per_second: training throughput (train images × epochs ÷ time in fit), when known.
        paths: output files (config, history, checkpoints), when out_dir was given.
        settings: every resolved setting (also in config.json).
    """

    history: dict
    best_epoch: int
    best_val_loss: float
    epochs_run: int
    resumed_from: int
    stopped_early: bool
    trainable_params: int
    images_per_second: float | None
    paths: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


# -- small helpers -----------------------------------------------------------------------------


def write_json_atomic(path, payload) -> None:
    """Writes JSON to a temporary file and renames it into place (a crash leaves the old file)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w") as handle:
        json.dump(payload, handle, indent=2, default=_json_default)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return str(value)


def gpu_compute_capability():
    """The first GPU's compute capability as (major, minor), or None without a GPU."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    details = tf.config.experimental.get_device_details(gpus[0])
    return details.get("compute_capability")


def resolve_precision(precision: str) -> str:
    """"auto" → mixed_float16 on GPUs of compute capability ≥ 7.0, else float32."""
    key = str(precision).lower()
    if key not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}."
                         f"{did_you_mean(precision, PRECISIONS)} Received: precision={precision!r}")
    if key != "auto":
        return key
    capability = gpu_compute_capability()
    return "mixed_float16" if capability and tuple(capability) >= (7, 0) else "float32"


def resolve_jit_compile(jit_compile, deterministic: bool):
    """"auto" → XLA on GPU, off on CPU; off when deterministic (TF's op determinism excludes XLA)."""
    import tensorflow as tf

    if jit_compile not in ("auto", True, False):
        raise ValueError(f"Expected jit_compile='auto', True or False. Received: jit_compile={jit_compile!r}")
    if deterministic:
        if jit_compile is True:
            warnings.warn("deterministic=True turns XLA off (TF op determinism does not cover XLA); "
                          "jit_compile=True is ignored.", stacklevel=3)
        return False
    if jit_compile == "auto":
        return bool(tf.config.list_physical_devices("GPU"))
    return jit_compile


def make_optimizer(optimizer, learning_rate):
    if isinstance(optimizer, keras.optimizers.Optimizer):
        optimizer.learning_rate = learning_rate
        return optimizer
    key = str(optimizer).lower()
    if key not in OPTIMIZERS:
        raise ValueError(f"Unknown optimizer {optimizer!r}; expected one of {', '.join(OPTIMIZERS)} or a "
                         f"keras.optimizers.Optimizer.{did_you_mean(optimizer, list(OPTIMIZERS))} "
                         f"Received: optimizer={optimizer!r}")
    return getattr(keras.optimizers, OPTIMIZERS[key])(learning_rate=learning_rate)


def make_loss(loss, num_classes: int):
    """"auto" = the reference: binary cross-entropy on the one-hot softmax for two classes; categorical
    cross-entropy for more."""
    if loss != "auto":
        return loss
    if num_classes == 2:
        return keras.losses.BinaryCrossentropy(name="binary_crossentropy")
    return keras.losses.CategoricalCrossentropy(name="categorical_crossentropy")


def make_metrics(num_classes: int):
    # multi_label=True averages one AUC per column: for a two-column softmax both columns give the
    # positive class's AUC; for more classes it is the macro one-vs-rest AUC. (The reference's AUC()
    # flattened the columns into one ranking, which is not an AUC of any class.)
    return [keras.metrics.CategoricalAccuracy(name="accuracy"),
            keras.metrics.AUC(multi_label=True, num_labels=num_classes, name="auc")]


def _check_learning_rate(learning_rate):
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float)) \
            or not math.isfinite(learning_rate) or learning_rate <= 0:
        raise ValueError(f"Expected a learning rate > 0 (e.g. 1e-3). Received: learning_rate={learning_rate!r}")
    return float(learning_rate)


def _check_out_dir(out_dir):
    if out_dir is None:
        return None
    out = Path(out_dir).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write_test{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise RadtransferError(f"Cannot write to out_dir '{out}': {exc.strerror or exc}. Choose a writable folder.") from None
    return out


def _dataset_classes(dataset):
    spec = dataset.element_spec
    if not isinstance(spec, tuple) or len(spec) < 2:
        raise ValueError("Expected a dataset of (images, one-hot labels) pairs, e.g. from radtransfer.data.make_dataset.")
    return spec[1].shape[-1]


def _check_dataset(dataset, name: str, num_classes: int):
    import tensorflow as tf

    width = _dataset_classes(dataset)
    if width is not None and width != num_classes:
        raise ValueError(f"The {name} dataset has labels for {width} classes but the model predicts {num_classes}. "
                         "Build the model with num_classes equal to the number of classes in the data.")
    cardinality = int(dataset.cardinality())
    if cardinality == 0 or (cardinality == tf.data.UNKNOWN_CARDINALITY and not any(True for _ in dataset.take(1))):
        raise ValueError(f"The {name} dataset is empty.")


def _known_size(dataset):
    """Images per epoch when the dataset can tell without being read (else None)."""
    cardinality = int(dataset.cardinality())
    batch = dataset.element_spec[0].shape[0]
    if cardinality > 0 and batch is not None:
        return cardinality * batch
    return None


def _read_history(path: Path) -> dict:
    import pandas as pd

    if not path.exists() or path.stat().st_size == 0:
        return {}
    frame = pd.read_csv(path)
    if frame.empty:
        return {}
    frame = frame.drop_duplicates(subset="epoch", keep="last").sort_values("epoch")
    return {column: frame[column].tolist() for column in frame.columns}


def _versions() -> dict:
    import tensorflow as tf

    from . import __version__

    return {"radtransfer": __version__, "tensorflow": tf.__version__, "keras": keras.__version__,
            "numpy": np.__version__, "python": platform.python_version()}


def compile_model(model, optimizer, loss, metrics, jit_compile: bool, run_eagerly: bool = False) -> bool:
    """Compiles, then reads back whether XLA is really on; warns when Keras fell back without it."""
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics, jit_compile=jit_compile, run_eagerly=run_eagerly)
    resolved = bool(model.jit_compile)
    if jit_compile and not resolved:
        warnings.warn("XLA was asked for (jit_compile) but Keras fell back to running without it; a layer "
                      "without XLA support (e.g. a Keras random augmentation layer such as RandomRotation) is "
                      "the usual cause. Augment in the data pipeline instead (radtransfer.data).",
                      stacklevel=3)
    return resolved


def save_model_weights(model, path) -> None:
    """Writes the model's weights (not the optimizer's state) to a ``.weights.h5`` file, atomically.

    Keras's ``save_weights`` also writes the optimizer's slots (Adam: two more copies of every trainable
    weight); a best-weights checkpoint does not need them, and leaving them out makes it a third of the
    size and twice as fast to write. The file loads with ``model.load_weights``.
    """
    path = Path(path)
    tmp = path.with_name(f".tmp{os.getpid()}_{path.name}")
    try:
        from keras.src.saving import saving_lib

        saving_lib.save_weights_only(model, str(tmp), objects_to_skip=[model.optimizer] if model.optimizer else None)
    except (ImportError, TypeError, AttributeError):  # a Keras without objects_to_skip
        model.save_weights(str(tmp))
    os.replace(tmp, path)


def load_model_weights(model, path) -> None:
    """Loads a ``save_model_weights`` file (a compiled model's optimizer state is left as it is)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        model.load_weights(str(path))


class _BestWeights(keras.callbacks.Callback):
    """Saves the weights whenever val_loss improves on the best so far (also across a resume)."""

    def __init__(self, path, best=None):
        super().__init__()
        self.path = path
        self.best = best if best is not None else math.inf

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get("val_loss")
        if value is not None and math.isfinite(value) and value < self.best:
            self.best = float(value)
            save_model_weights(self.model, self.path)


class _Throughput(keras.callbacks.Callback):
    """Seconds spent in training steps (validation excluded)."""

    def __init__(self):
        super().__init__()
        self.train_seconds = 0.0
        self.epochs = 0
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        self._last = self._start

    def on_train_batch_end(self, batch, logs=None):
        self._last = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if self._start is not None:
            self.train_seconds += self._last - self._start
            self.epochs += 1


# -- the public call ---------------------------------------------------------------------------


def fine_tune(model, train, val, *, strategy: str, learning_rate: float, epochs: int = 30, bn: str = "protocol",
              optimizer="adam", loss="auto", out_dir=None, early_stopping=None, reduce_lr=None, class_weight=None,
              jit_compile="auto", precision="auto", distribute=None, seed=None, deterministic: bool = False,
              verbose="auto", batch_size: int = 32, augment="radimagenet", callbacks=(), resume: bool = True,
              run_eagerly: bool = False, bn_momentum: float | None = None):
    """Fine-tunes a model made by ``build_model`` under a named strategy.

    Args:
        model: a model from ``build_model``, or a function of no arguments that builds one (needed for
            ``distribute``; a model from build_model is rebuilt automatically when the precision or the
            distribution needs it).
        train, val: ``tf.data.Dataset`` s of (images, one-hot labels), or ImageSets (read with the model's
            input size, ``batch_size``, and ``augment`` for training only).
        strategy: "freeze_all", "unfreeze_top10", "unfreeze_top:N", "unfreeze_all" or "unfreeze_blocks:K".
        learning_rate: the optimizer's learning rate.
        epochs: epochs to train (the reference: 30).
        bn: "protocol" or "frozen" (see ``apply_strategy``).
        optimizer: "adam" (the reference), "adamw", "sgd", "rmsprop", "nadam", or an optimizer.
        loss: "auto" (the reference: binary cross-entropy on the one-hot softmax for two classes;
            categorical cross-entropy for more) or any Keras loss.
        out_dir: where checkpoints, history, config and the resume backup go (None: nothing written).
        early_stopping: None, or the patience in epochs (on val_loss, best weights restored).
        reduce_lr: None, or the patience in epochs for ReduceLROnPlateau (factor 0.1, on val_loss).
        class_weight: a dict {class index: weight}, or "balanced".
        jit_compile: "auto" (XLA on GPU, off on CPU), True or False; the resolved value is read back
            from the compiled model and a fallback is reported.
        precision: "auto" (mixed_float16 on GPUs of compute capability ≥ 7.0, else float32), "float32",
            "mixed_float16" or "mixed_bfloat16". The predictions layer stays float32.
        distribute: None, "mirrored" (all local GPUs) or "multiworker" (TF_CONFIG), or a
            ``tf.distribute.Strategy``. Batch sizes are global.
        seed: seeds Python, NumPy, TensorFlow and (for ImageSets) the data pipeline.
        deterministic: TF op determinism (turns XLA off).
        verbose: "auto" (a progress bar on a terminal, one line per epoch otherwise), 0, 1 or 2.
        batch_size, augment: used only when train/val are ImageSets.
        callbacks: more Keras callbacks, run after radtransfer's own.
        resume: with an out_dir that holds a finished run, return it instead of training again; with
            an interrupted one, continue from its last finished epoch.
        bn_momentum: if given, the momentum of every BatchNormalization layer's moving statistics (Keras's
            default 0.99 needs several hundred steps to settle; 0.9 suits short runs from scratch, whose
            validation otherwise runs on half-updated statistics).
        run_eagerly: skip graph tracing (for debugging, or tiny smoke tests where tracing the training
            step takes longer than the training).

    Returns:
        A FineTuneResult; the model holds the best epoch's weights.

    Raises:
        ValueError: a bad learning rate, strategy, optimizer, precision, dataset or epochs.
        TrainingDivergedError: the loss became NaN (the best checkpoint is kept).
    """
    import tensorflow as tf

    from .data import ImageSet, make_dataset

    learning_rate = _check_learning_rate(learning_rate)
    parse_strategy(strategy)
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"Expected epochs ≥ 1. Received: epochs={epochs!r}")
    if distribute not in DISTRIBUTIONS and not isinstance(distribute, tf.distribute.Strategy):
        raise ValueError(f"Expected distribute=None, 'mirrored' or 'multiworker'."
                         f"{did_you_mean(distribute, ['mirrored', 'multiworker'])} Received: distribute={distribute!r}")
    # A multi-worker strategy must exist before TensorFlow's runtime starts (seeding starts it).
    distribution = _make_distribution(distribute)
    precision = resolve_precision(precision)
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        make_optimizer(optimizer, learning_rate)  # validates the name early
    out = _check_out_dir(out_dir)
    if out is not None and resume and (out / RESULT_FILE).exists():
        return _load_finished(model, out)

    if seed is not None:
        keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    jit = resolve_jit_compile(jit_compile, deterministic)

    model = _prepare_model(model, precision, distribution)
    num_classes = int(model.output_shape[-1])
    height, width = model.input_shape[1:3]

    class_names = None
    train_size = None
    if isinstance(train, ImageSet):
        class_names = list(train.class_names)
        train_size = len(train)
        if class_weight == "balanced":
            counts = np.bincount(train.labels, minlength=num_classes)
            class_weight = {c: float(len(train) / (num_classes * n)) for c, n in enumerate(counts) if n}
        train = make_dataset(train, image_size=(height, width), batch_size=batch_size, augment=augment,
                             shuffle=True, seed=seed)
    if isinstance(val, ImageSet):
        val = make_dataset(val, image_size=(height, width), batch_size=batch_size, shuffle=False)
    if class_weight == "balanced":
        raise ValueError("class_weight='balanced' needs train as an ImageSet (to count the classes).")
    _check_dataset(train, "training", num_classes)
    _check_dataset(val, "validation", num_classes)
    train_size = train_size or _known_size(train)

    if bn_momentum is not None:
        if not 0 < bn_momentum < 1:
            raise ValueError(f"Expected 0 < bn_momentum < 1. Received: bn_momentum={bn_momentum!r}")
        for layer in _all_layers(model):
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = float(bn_momentum)
    scope = distribution.scope() if distribution is not None else _null_scope()
    with scope:
        summary = apply_strategy(model, strategy, bn=bn)
        resolved_jit = compile_model(model, make_optimizer(optimizer, learning_rate), make_loss(loss, num_classes),
                                     make_metrics(num_classes), jit and not run_eagerly, run_eagerly=run_eagerly)

    info = getattr(model, "radtransfer_info", None)
    settings = {
        "strategy": summary.strategy, "bn": bn, "learning_rate": learning_rate, "epochs": epochs,
        "optimizer": optimizer if isinstance(optimizer, str) else type(optimizer).__name__,
        "loss": loss if isinstance(loss, str) else getattr(loss, "name", str(loss)),
        "early_stopping": early_stopping, "reduce_lr": reduce_lr, "class_weight": class_weight,
        "jit_compile_requested": jit_compile, "jit_compile": resolved_jit, "precision": precision,
        "distribute": distribute if isinstance(distribute, (str, type(None))) else type(distribute).__name__,
        "replicas": distribution.num_replicas_in_sync if distribution is not None else 1,
        "seed": seed, "deterministic": deterministic, "run_eagerly": run_eagerly, "bn_momentum": bn_momentum, "batch_size": train.element_spec[0].shape[0] or batch_size,
        "train_images": train_size, "class_names": class_names, "input_shape": list(model.input_shape[1:]),
        "num_classes": num_classes, "model": info.to_dict() if info is not None else None,
        "strategy_summary": summary.to_dict(), "versions": _versions(), "command": " ".join(sys.argv),
    }
    paths = {}
    callback_list = []
    initial_best = None
    resumed_from = 0
    if out is not None:
        paths = {"config": str(out / CONFIG_FILE), "history": str(out / "history.csv"),
                 "best_model": str(out / "best.keras"), "best_weights": str(out / "best.weights.h5"),
                 "result": str(out / RESULT_FILE)}
        previous = _read_history(out / "history.csv")
        if previous.get("val_loss"):
            finite = [v for v in previous["val_loss"] if math.isfinite(v)]
            initial_best = min(finite) if finite else None
            resumed_from = int(max(previous["epoch"])) + 1
        write_json_atomic(out / CONFIG_FILE, settings)
        callback_list += [
            _BestWeights(paths["best_weights"], initial_best),
            keras.callbacks.CSVLogger(paths["history"], append=True),
        ]
    callback_list.append(keras.callbacks.TerminateOnNaN())
    stopper = None
    if early_stopping:
        stopper = keras.callbacks.EarlyStopping(monitor="val_loss", patience=int(early_stopping), restore_best_weights=True)
        callback_list.append(stopper)
    if reduce_lr:
        callback_list.append(keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.1, patience=int(reduce_lr)))
    throughput = _Throughput()
    callback_list.append(throughput)
    if out is not None:
        callback_list.append(keras.callbacks.BackupAndRestore(str(out / "backup")))
    callback_list += list(callbacks)

    if verbose == "auto":
        verbose = 1 if sys.stdout.isatty() else 2
    history = model.fit(train, validation_data=val, epochs=epochs, callbacks=callback_list,
                        class_weight=class_weight, verbose=verbose, shuffle=False)

    if out is not None:
        full = _read_history(out / "history.csv")
    else:
        full = {"epoch": list(history.epoch), **{k: list(v) for k, v in history.history.items()}}
    losses = full.get("loss", [])
    bad_epoch = next((int(e) for e, v in zip(full.get("epoch", []), losses) if not math.isfinite(v)), None)
    if bad_epoch is None and history.history.get("loss") and not math.isfinite(history.history["loss"][-1]):
        bad_epoch = int(history.epoch[-1]) if history.epoch else resumed_from
    val_losses = full.get("val_loss", [])
    finite = [(v, int(e)) for e, v in zip(full.get("epoch", []), val_losses) if math.isfinite(v)]
    best_val_loss, best_epoch = min(finite) if finite else (float("nan"), -1)
    if out is not None and Path(paths["best_weights"]).exists():
        load_model_weights(model, paths["best_weights"])
        model.save(paths["best_model"])
    if bad_epoch is not None:
        where = f"the best checkpoint (epoch {best_epoch}, val_loss {best_val_loss:.4g}) is kept in {out}" \
            if out is not None and best_epoch >= 0 else "no checkpoint was kept (no out_dir or no good epoch)"
        raise TrainingDivergedError(
            f"The loss became NaN at epoch {bad_epoch}; training stopped and {where}. "
            f"Try a lower learning rate (e.g. {learning_rate / 10:g})."
        )
    seconds = throughput.train_seconds
    images_per_second = train_size * throughput.epochs / seconds if train_size and seconds > 0 else None
    result = FineTuneResult(
        history=full, best_epoch=best_epoch, best_val_loss=best_val_loss,
        epochs_run=len(full.get("epoch", [])), resumed_from=resumed_from,
        stopped_early=bool(stopper is not None and stopper.stopped_epoch > 0),
        trainable_params=summary.trainable_params, images_per_second=images_per_second,
        paths=paths, settings=settings,
    )
    if out is not None:
        write_json_atomic(out / RESULT_FILE, result.to_dict())
    return result


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


class _null_scope:
    def __enter__(self):
        return self

    def __exit__(self, *args):
        return False


def _make_distribution(distribute):
    import tensorflow as tf

    if distribute is None:
        return None
    if isinstance(distribute, tf.distribute.Strategy):
        return distribute
    if distribute == "mirrored":
        return tf.distribute.MirroredStrategy()
    if "TF_CONFIG" not in os.environ:
        raise ValueError("distribute='multiworker' needs the TF_CONFIG environment variable (cluster and task).")
    warnings.warn("model.fit under MultiWorkerMirroredStrategy fails in released Keras 3 (up to at least 3.15; "
                  "keras-team/keras#20585, tensorflow/tensorflow#72388). radtransfer sets it up correctly, but "
                  "training may stop with a TensorFlow error until Keras fixes it; 'mirrored' works.", stacklevel=3)
    return tf.distribute.MultiWorkerMirroredStrategy()


def _prepare_model(model, precision: str, distribution):
    """Returns a model built under the precision policy and (if any) the distribution scope."""
    from .models import build_model

    policy = keras.mixed_precision.dtype_policy().name
    needs_rebuild = distribution is not None or (
        isinstance(model, keras.Model) and _model_policy(model) != precision
    )
    if isinstance(model, keras.Model) and not needs_rebuild:
        return model
    previous = policy
    keras.mixed_precision.set_global_policy(precision)
    try:
        scope = distribution.scope() if distribution is not None else _null_scope()
        with scope:
            if callable(model) and not isinstance(model, keras.Model):
                built = model()
            else:
                info = getattr(model, "radtransfer_info", None)
                if info is None:
                    raise ValueError(
                        "This model was not made by radtransfer.build_model, so it cannot be rebuilt for "
                        f"precision={precision!r} or a distribution; pass a function that builds it instead."
                    )
                built = build_model(info.backbone, weights=None, num_classes=info.num_classes,
                                    input_shape=info.input_shape, dropout=info.dropout,
                                    preprocessing=info.preprocessing, name=model.name)
                built.set_weights(model.get_weights())
                built.radtransfer_info = info
    finally:
        keras.mixed_precision.set_global_policy(previous)
    return built


def _model_policy(model) -> str:
    return model.get_layer("backbone").dtype_policy.name if "backbone" in [l.name for l in model.layers] \
        else model.dtype_policy.name


def _load_finished(model, out: Path) -> FineTuneResult:
    with open(out / RESULT_FILE) as handle:
        stored = json.load(handle)
    weights = out / "best.weights.h5"
    if isinstance(model, keras.Model) and weights.exists():
        load_model_weights(model, weights)
    return FineTuneResult(**stored)

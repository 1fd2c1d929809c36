"""fine_tune: train a build_model model under a RadImageNet strategy, resumably, and record everything.

The work is split by job: ``TrainConfig`` (train_config.py) validates the settings and fingerprints
the ones that define the run; ``RunFolder`` (run_folder.py) holds the run's files and says whether a
folder may be resumed; ``runtime`` resolves precision, XLA and distribution and gives a working model;
this module wires them into an epoch loop whose every random stream comes from (seed, epoch).
"""

from __future__ import annotations

import math
import platform
import sys
import time
import warnings
from dataclasses import dataclass, field

import keras
import numpy as np

from ..data.pipeline import readable_pipeline_errors
from ..errors import RadtransferError, TrainingDivergedError
from ..utils.io import replace_atomic, write_json_atomic
from .run_folder import BEST_MODEL, BEST_WEIGHTS, CONFIG, RESULT, STATE, RunFolder
from .runtime import (Runtime, copy_weights, make_distribution, resolve_jit_compile, resolve_precision,
                      working_model)
from ..utils.seeding import derive_seed, fresh_seed, seed_layers, set_global_seed, walk_layers
from .strategies import apply_strategy
from .config import IMAGE_SET_BATCH_SIZE, UNKNOWN, TrainConfig, fingerprint
from ..models.trained import run_read_settings, save_trained, set_trained_info

__all__ = ["FineTuneResult", "TrainingDivergedError", "fine_tune", "write_json_atomic", "resolve_precision",
           "resolve_jit_compile", "compile_model"]


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
        stopped_early: whether early stopping ended the run.
        trainable_params: parameters the strategy left trainable.
        images_per_second: training throughput (train images × epochs ÷ time in training steps), when known.
        paths: output files (config, history, checkpoints), when out_dir was given.
        settings: every resolved setting (also in config.json).
        status: "finished" or "diverged".
        diverged_epoch: the epoch whose loss became NaN (None if none did).
        threshold: two classes: the threshold on class 1's probability chosen on the validation set
            (Youden's J) at the best epoch; ``evaluate`` applies it to test data. None for more classes, or
            when no epoch finished with a finite val_loss.
        thresholds: two classes: {class index (as a string): threshold on that class's probability}, each
            chosen on the validation set with that class as the positive one (``evaluate(...,
            positive_class=c)`` applies class c's).
        class_names: the classes, in output order (when known).
        fingerprint: the hash of the settings that define the run.
        seed: the base seed every random stream of the run was derived from.
        model: the trained model (the caller's object when a model was passed; not saved in result.json).
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
    status: str = "finished"
    diverged_epoch: int | None = None
    threshold: float | None = None
    thresholds: dict | None = None
    class_names: list | None = None
    fingerprint: str | None = None
    seed: int | None = None
    model: object = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "model"}

    @classmethod
    def from_dict(cls, values: dict, model=None) -> "FineTuneResult":
        known = {f for f in cls.__dataclass_fields__ if f != "model"}
        return cls(**{k: v for k, v in values.items() if k in known}, model=model)


# -- pieces ------------------------------------------------------------------------------------


def make_metrics(num_classes: int):
    # multi_label=True averages one AUC per column: for a two-column softmax both columns give the
    # positive class's AUC; for more classes it is the macro one-vs-rest AUC. (The reference's AUC()
    # flattened the columns into one ranking, which is not an AUC of any class.)
    return [keras.metrics.CategoricalAccuracy(name="accuracy"),
            keras.metrics.AUC(multi_label=True, num_labels=num_classes, name="auc")]


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
    """Loads a ``save_model_weights`` file (a compiled model's optimizer state is left as it is)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        model.load_weights(str(path))


def save_training_state(model, path) -> None:
    """Model and optimizer state (for resuming), atomically."""
    replace_atomic(path, lambda tmp: model.save_weights(str(tmp)))


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    from .. import backend
    from ..version import __version__

    versions = {"radtransfer": __version__, "keras": keras.__version__, "backend": backend.name(),
                "numpy": np.__version__, "python": platform.python_version()}
    for package in ("tensorflow", "jax", "torch"):
        if package == backend.name() or package == "tensorflow":
            try:
                versions[package] = version(package)
            except PackageNotFoundError:
                pass
    return versions


class _Throughput(keras.callbacks.Callback):
    """Seconds spent in training steps (validation excluded), over any number of fit() calls."""

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


# -- data --------------------------------------------------------------------------------------


@dataclass
class _Data:
    train_epoch: object          # epoch, seed -> dataset
    val: object                  # dataset
    train_size: int | None
    class_names: list | None
    signature: dict
    exact: bool                  # whether epochs are derived from (seed, epoch)
    sources: tuple = ()          # the datasets read, to name a file that fails to decode
    read_settings: dict | None = None  # how the training images were read (saved with the model)


def _dataset_width(dataset):
    spec = dataset.element_spec
    if not isinstance(spec, tuple) or len(spec) < 2:
        raise ValueError("Expected a dataset of (images, one-hot labels) pairs, e.g. from radtransfer.data.make_dataset.")
    return spec[1].shape[-1]


def _check_py_dataset(dataset, name: str, num_classes: int) -> None:
    batches = dataset.num_batches
    if batches == 0:
        raise ValueError(f"The {name} dataset is empty.")
    labels = np.asarray(dataset[0][1])
    if labels.ndim != 2 or labels.shape[-1] != num_classes:
        raise ValueError(f"The {name} PyDataset yields labels of shape {labels.shape}; expected one-hot rows of "
                         f"{num_classes} classes (the model's outputs).")


def _check_dataset(dataset, name: str, num_classes: int):
    if isinstance(dataset, keras.utils.PyDataset):
        return _check_py_dataset(dataset, name, num_classes)
    import tensorflow as tf

    width = _dataset_width(dataset)
    if width is not None and width != num_classes:
        raise ValueError(f"The {name} dataset has labels for {width} classes but the model predicts {num_classes}. "
                         "Build the model with num_classes equal to the number of classes in the data.")
    cardinality = int(dataset.cardinality())
    if cardinality == 0 or (cardinality == tf.data.UNKNOWN_CARDINALITY and not any(True for _ in dataset.take(1))):
        raise ValueError(f"The {name} dataset is empty.")


def _known_size(dataset):
    if isinstance(dataset, keras.utils.PyDataset):
        return None
    cardinality = int(dataset.cardinality())
    batch = dataset.element_spec[0].shape[0]
    if cardinality > 0 and batch is not None:
        return cardinality * batch
    return None


def _is_pair(value) -> bool:
    return isinstance(value, (tuple, list)) and len(value) == 2 and all(hasattr(v, "shape") for v in value)


def _prepare_arrays(train, val, config: TrainConfig, image_size, num_classes) -> tuple[_Data, TrainConfig]:
    """(images, labels) arrays: batches through a keras PyDataset, no TensorFlow (JAX and PyTorch users)."""
    from ..data.arrays import ArrayStream, as_arrays

    if not (_is_pair(train) and _is_pair(val)):
        raise ValueError("Pass train and val both as (images, labels) arrays, or both as ImageSets / datasets.")
    if config.augment not in (None, "auto"):
        warnings.warn(f"augment={config.augment!r} is not applied to in-memory arrays (augmentation is part of "
                      "the tf.data pipeline); pass ImageSets to augment, or augment=None to silence this.",
                      stacklevel=3)
    config = config.for_image_sets().replace(augment=None)  # what runs: arrays are never augmented
    stream = ArrayStream(*as_arrays(train, num_classes, image_size, "train"), config.batch_size, shuffle=True)
    val_stream = ArrayStream(*as_arrays(val, num_classes, image_size, "val"), config.batch_size, shuffle=False)
    signature = {"train": stream.signature, "val": val_stream.signature}
    return _Data(stream.epoch, val_stream.batches(), stream.size, None, signature, True), config


def _prepare_data(train, val, config: TrainConfig, image_size, num_classes) -> tuple[_Data, TrainConfig]:
    """The training and validation data as epochs and a dataset, and ``config`` with the batch size and
    augmentation that the training data really has (ImageSets are read with the config's)."""
    from ..data import ImageSet, make_dataset
    from ..data.pipeline import stream_of

    if _is_pair(train) or _is_pair(val):
        return _prepare_arrays(train, val, config, image_size, num_classes)
    class_names = None
    signature = {}
    if isinstance(train, ImageSet):
        config = config.for_image_sets()
        class_names = list(train.class_names)
        train = make_dataset(train, image_size=image_size, batch_size=config.batch_size, augment=config.augment,
                             shuffle=True, seed=config.seed)
    if isinstance(val, ImageSet):
        if class_names is not None and list(val.class_names) != class_names:
            from ..errors import ClassMismatchError

            raise ClassMismatchError(f"The validation set's classes {list(val.class_names)} differ from the "
                                     f"training set's {class_names}.")
        class_names = class_names or list(val.class_names)
        val = make_dataset(val, image_size=image_size, batch_size=config.batch_size or IMAGE_SET_BATCH_SIZE,
                           shuffle=False)
    _check_dataset(train, "training", num_classes)
    _check_dataset(val, "validation", num_classes)
    for name, dataset in (("train", train), ("val", val)):
        stream = stream_of(dataset)
        signature[name] = getattr(stream, "signature", None)
    stream = stream_of(train)
    if stream is not None:
        config = config.resolve_data(stream.batch_size, stream.params, "dataset")
        return _Data(stream.epoch, val, stream.size, class_names, signature, True, (train, val),
                     stream.settings.to_dict()), config
    if isinstance(train, keras.utils.PyDataset):
        config = config.resolve_data(len(np.asarray(train[0][0])), UNKNOWN, "PyDataset")
    else:
        config = config.resolve_data(train.element_spec[0].shape[0], UNKNOWN, "tf.data dataset")
    return _Data(lambda epoch, seed: train, val, _known_size(train), class_names, signature, False,
                 (train, val)), config


# -- the public call ---------------------------------------------------------------------------


def fine_tune(model, train, val, config: TrainConfig | None = None, *, out_dir=None, callbacks=(), verbose="auto",
              resume: bool = True, class_names=None, **settings) -> FineTuneResult:
    """Fine-tunes a model made by ``build_model`` under a named strategy.

    Guarantees: afterwards ``model`` (the object passed in) holds the best epoch's weights, whatever the
    precision, distribution or out_dir; a run stopped at any point and called again with the same
    out_dir continues to the same history as one never stopped (every random stream — shuffling,
    augmentation, dropout — is derived from (seed, epoch)); a folder holding a run with other settings is
    refused with the list of differences.

    Args:
        model: a model from ``build_model``, or a function of no arguments that builds one (needed for
            ``distribute`` with models not made by build_model). A model is rebuilt internally when the
            precision or the distribution needs it, and the trained weights are copied back into it.
        train, val: ImageSets (read with the model's input size, ``batch_size``, and ``augment`` for
            training only), or datasets from ``data.make_dataset``. A plain ``tf.data.Dataset`` also works,
            but then radtransfer cannot re-derive its shuffling per epoch, so a resumed run is not exact.
            Or ``(images, labels)`` NumPy arrays at the model's input size (labels as class indices or
            one-hot), fed without TensorFlow (the JAX and PyTorch path; no augmentation).
        config: the settings below as one ``TrainConfig`` (keywords given as well change it).
        out_dir: where checkpoints, history, config and the resume state go (None: nothing written; the
            best epoch is then kept in memory).
        callbacks: more Keras callbacks (each epoch is one ``fit`` call, so they see ``on_train_begin``
            once per epoch).
        verbose: "auto" (a progress bar on a terminal, one line per epoch otherwise), 0, 1 or 2.
        resume: True: continue an interrupted run in out_dir, or return a finished one; False: discard
            whatever run out_dir holds and start over.
        class_names: the classes in label order, when train is a dataset (ImageSets bring their own); saved
            with the trained model and checked by ``evaluate``.
        **settings: the ``TrainConfig`` fields:

        strategy: "freeze_all", "unfreeze_top10", "unfreeze_top:N", "unfreeze_all" or "unfreeze_blocks:K".
        learning_rate: the optimizer's learning rate.
        epochs: epochs to train (the reference: 30).
        bn: "protocol" or "frozen" (see ``apply_strategy``).
        optimizer: "adam" (the reference), "adamw", "sgd", "rmsprop", "nadam", or an optimizer.
        loss: "auto" (the reference: binary cross-entropy on the one-hot softmax for two classes;
            categorical cross-entropy for more) or any Keras loss.
        early_stopping: None, or the patience in epochs (on val_loss).
        reduce_lr: None, or the patience in epochs for reducing the learning rate ×0.1 on a val_loss plateau.
        class_weight: a dict {class index: weight}, or "balanced".
        jit_compile: "auto" (XLA on GPU, off on CPU), True or False; the resolved value is read back
            from the compiled model and a fallback is reported.
        precision: "auto" (mixed_bfloat16 on GPUs of compute capability ≥ 8.0, mixed_float16 on 7.x, else
            float32), "float32", "mixed_float16" or "mixed_bfloat16". The predictions layer stays float32.
        distribute: None, "mirrored" (all local GPUs) or "multiworker" (TF_CONFIG), or a
            ``tf.distribute.Strategy``. Batch sizes are global.
        seed: the base seed of every random stream (None: a random one, recorded so a resume stays exact).
        deterministic: TF op determinism (turns XLA off).
        batch_size: images per batch when train/val are ImageSets or arrays (None: 32). A dataset keeps
            its own (a different value given is refused); the batch size that ran is recorded.
        augment: "auto" ("radimagenet" for a training ImageSet), None, "radimagenet", "radimagenet_ct" or an
            ``Augment``; as batch_size, it applies to ImageSets and a dataset keeps (and records) its own.
        run_eagerly: skip graph tracing (debugging, or tiny smoke tests).
        bn_momentum: if given, the momentum of every BatchNormalization layer's moving statistics.

    Returns:
        A FineTuneResult; ``model`` (and ``result.model``) hold the best epoch's weights.

    Raises:
        ValueError: a bad learning rate, strategy, optimizer, precision, dataset or epochs.
        RunMismatchError: out_dir holds a run with other settings (the message lists them).
        TrainingDivergedError: the loss became NaN (the model holds the last good checkpoint).
    """
    from .. import backend

    config = TrainConfig.from_settings(config, **settings)
    distribution = make_distribution(config.distribute)  # before TensorFlow's runtime starts
    runtime = Runtime(resolve_precision(config.precision),
                      resolve_jit_compile(config.jit_compile, config.deterministic), distribution)
    folder = RunFolder(out_dir) if out_dir is not None else None
    if folder is not None and not resume:
        folder.reset()
    if config.deterministic:
        backend.enable_determinism()

    state = folder.read_json(STATE) if folder is not None else None
    run_seed = config.seed if config.seed is not None else (state or {}).get("seed") or fresh_seed()
    set_global_seed(derive_seed(run_seed, "init"))
    target = model if isinstance(model, keras.Model) else None
    working, rebuilt = working_model(model, runtime.precision, distribution)
    info = getattr(working, "radtransfer_info", None) or getattr(target, "radtransfer_info", None)
    num_classes = int(working.output_shape[-1])
    data, config = _prepare_data(train, val, config, tuple(working.input_shape[1:3]), num_classes)
    if class_names is not None:
        class_names = [str(c) for c in class_names]
        if data.class_names is not None and data.class_names != class_names:
            from ..errors import ClassMismatchError

            raise ClassMismatchError(f"class_names={class_names} differ from the training set's {data.class_names}.")
        if len(class_names) != num_classes:
            from ..errors import ClassMismatchError

            raise ClassMismatchError(f"{len(class_names)} class_names for a model with {num_classes} outputs.")
        data.class_names = class_names
    identity = {"config": config.defining(), "class_names": data.class_names, "data": data.signature,
                "model": _model_identity(info, working)}
    run_fingerprint = fingerprint(identity)
    public = target if target is not None else working

    if folder is not None and folder.status() != "new":
        folder.check_compatible(identity)
        status = folder.status()
        if status in ("finished", "diverged"):
            return _reopen(folder, public, data.class_names, status)

    class_weight = config.class_weight
    if class_weight == "balanced":
        if not isinstance(train, _image_set_type()):
            raise ValueError("class_weight='balanced' needs train as an ImageSet (to count the classes).")
        counts = np.bincount(train.labels, minlength=num_classes)
        class_weight = {c: float(len(train) / (num_classes * n)) for c, n in enumerate(counts) if n}

    if config.bn_momentum is not None:
        for layer in walk_layers(working):
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = float(config.bn_momentum)
    with runtime.scope():
        summary = apply_strategy(working, config.strategy, bn=config.bn)
        resolved_jit = compile_model(working, config.make_optimizer(), config.make_loss(num_classes),
                                     make_metrics(num_classes), runtime.jit_compile and not config.run_eagerly,
                                     run_eagerly=config.run_eagerly)
    if working is not target and target is not None:
        apply_strategy(target, config.strategy, bn=config.bn)  # the caller's model shows the same flags

    recorded = {
        **config.to_dict(), "jit_compile_requested": config.jit_compile, "jit_compile": resolved_jit,
        "backend": backend.name(), "precision_requested": config.precision, "precision": runtime.precision,
        "replicas": runtime.replicas,
        "rebuilt_for_runtime": rebuilt, "seed_used": run_seed, "train_images": data.train_size,
        "class_names": data.class_names, "input_shape": list(working.input_shape[1:]), "num_classes": num_classes,
        "model": info.to_dict() if info is not None else None, "strategy_summary": summary.to_dict(),
        "exact_resume": data.exact, "versions": _versions(), "command": " ".join(sys.argv),
    }
    loop = _EpochLoop(working, config, runtime, data, folder, run_seed, class_weight, callbacks, verbose)
    if loop.verbose:
        _print_cache_choices(data)
    if folder is not None:
        folder.write_json(CONFIG, {"identity": identity, "fingerprint": run_fingerprint, **recorded})
        if state and state.get("next_epoch", 0) > 0:
            if not data.exact:
                warnings.warn("Resuming with a plain tf.data.Dataset: radtransfer cannot re-derive its shuffling "
                              "for the remaining epochs, so the resumed run may differ from an uninterrupted one. "
                              "Pass ImageSets or datasets from radtransfer.data.make_dataset.", stacklevel=2)
            loop.restore(state)
    loop.run()

    loop.restore_best()
    if target is not None:
        copy_weights(working, target)
    # Thresholds come from a model holding a good checkpoint: a run that diverged before any epoch
    # finished has no usable predictions to choose them on.
    thresholds = _validation_thresholds(public, data.val, num_classes) if loop.best_epoch >= 0 else None
    threshold = None if thresholds is None else thresholds[1]
    for trained in {id(public): public, id(working): working}.values():
        set_trained_info(trained, data.class_names, threshold, positive_class=1 if num_classes == 2 else None,
                         read_settings=data.read_settings, thresholds=thresholds)
    result = loop.result(summary.trainable_params, recorded, run_fingerprint, thresholds, data.class_names)
    result.model = public
    if folder is not None:
        if loop.best_epoch >= 0:
            save_model_weights(public, folder.file(BEST_WEIGHTS))
            save_trained(public, folder.file(BEST_MODEL))
        folder.write_json(RESULT, result.to_dict())
        loop.commit(status=result.status)  # the commit point; the checkpoints below are no longer needed
        loop.clean_checkpoints()
    if result.status == "diverged":
        raise _diverged_error(result, folder)
    return result


def _image_set_type():
    from ..data import ImageSet

    return ImageSet


def _model_identity(info, model) -> dict:
    if info is None:
        return {"name": model.name, "input_shape": list(model.input_shape[1:]), "outputs": int(model.output_shape[-1])}
    values = info.to_dict()
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in values.items()
            if k in ("backbone", "weights_source", "weights_sha256", "preprocessing", "num_classes", "input_shape",
                     "dropout")}


def _print_cache_choices(data: _Data) -> None:
    """Where each part's resized images are kept between epochs, and why (cache="auto")."""
    from ..data.pipeline import stream_of

    for name, dataset in zip(("train", "val"), data.sources):
        stream = stream_of(dataset)
        if stream is not None:
            print(f"{name}: {stream.size} images, cache {stream.cache.mode} ({stream.cache.reason})", flush=True)


def _validation_thresholds(model, val, num_classes) -> dict | None:
    """Two classes: Youden's J threshold of each class's probability on the validation set, {class index:
    threshold}, each chosen for that class as the positive one. None for more classes, a validation set
    with one class, or predictions that are not finite."""
    if num_classes != 2:
        return None
    from ..evaluation.metrics import predict_with_labels
    from ..evaluation.stats import youden_threshold

    y_true, probabilities = predict_with_labels(model, val)
    if len(np.unique(y_true)) < 2 or not np.isfinite(probabilities).all():
        return None
    return {c: youden_threshold(y_true == c, probabilities[:, c]) for c in range(num_classes)}


def _diverged_error(result, folder):
    where = (f"the best checkpoint (epoch {result.best_epoch}, val_loss {result.best_val_loss:.4g}) is in the model"
             + (f" and in {folder.path}" if folder is not None else "")) if result.best_epoch >= 0 \
        else "no epoch finished with a finite val_loss, so there is no checkpoint"
    rate = result.settings.get("learning_rate")
    hint = f" Try a lower learning rate (e.g. {rate / 10:g})." if rate else ""
    return TrainingDivergedError(f"The loss became NaN at epoch {result.diverged_epoch}; training stopped and {where}."
                                 + hint, result, result.diverged_epoch)


def _reopen(folder: RunFolder, model, class_names, status):
    stored = folder.read_json(RESULT)
    weights = folder.file(BEST_WEIGHTS)
    if weights.exists():
        load_model_weights(model, weights)
    result = FineTuneResult.from_dict(stored, model=model)
    set_trained_info(model, result.class_names or class_names, result.threshold,
                     positive_class=1 if result.threshold is not None else None,
                     read_settings=run_read_settings(folder.path), thresholds=result.thresholds)
    if status == "diverged":
        raise _diverged_error(result, folder)
    return result


# -- the epoch loop ------------------------------------------------------------------------------


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


class _EpochLoop:
    """Trains epoch by epoch; after each, commits weights, optimizer state and progress to the run folder
    (or keeps the best weights in memory without one)."""

    def __init__(self, model, config: TrainConfig, runtime: Runtime, data: _Data, folder, seed, class_weight,
                 callbacks, verbose):
        self.model = model
        self.config = config
        self.runtime = runtime
        self.data = data
        self.folder = folder
        self.seed = seed
        self.class_weight = class_weight
        self.callbacks = list(callbacks)
        self.verbose = (1 if sys.stdout.isatty() else 2) if verbose == "auto" else int(verbose)
        self.throughput = _Throughput()
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

    # state ---------------------------------------------------------------------------------------

    def state(self, status="running") -> dict:
        return {"status": status, "next_epoch": self.next_epoch, "best_epoch": self.best_epoch,
                "best_val_loss": self.best_val_loss if math.isfinite(self.best_val_loss) else None,
                "best_file": self.best_file, "last_file": self.last_file, "early": self.early,
                "plateau": self.plateau, "seed": self.seed, "diverged_epoch": self.diverged_epoch,
                "learning_rate": float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))}

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
        self.history = self.folder.history()
        if self.last_file and self.folder.file(self.last_file).exists():
            with self.runtime.scope():
                self.model.optimizer.build(self.model.trainable_variables)
            self.model.load_weights(str(self.folder.file(self.last_file)))
        elif self.next_epoch > 0:
            raise RadtransferError(f"The run in '{self.folder.path}' says {self.next_epoch} epochs are done but its "
                                   f"checkpoint {self.last_file} is missing. Pass resume=False to start over.")

    def commit(self, status="running") -> None:
        if self.folder is not None:
            self.folder.write_history(self.history)
            self.folder.write_json(STATE, self.state(status))

    def clean_checkpoints(self) -> None:
        for path in self.folder.path.glob("*-e*.weights.h5"):
            path.unlink()
        self.best_file = self.last_file = None

    # training ------------------------------------------------------------------------------------

    def run(self) -> None:
        _quiet_retracing()
        epochs = self.config.epochs
        while self.next_epoch < epochs and not self.early["stopped"]:
            epoch = self.next_epoch
            seed_layers(self.model, derive_seed(self.seed, "dropout", epoch))
            train = self.data.train_epoch(epoch, self.seed)
            if self.verbose == 1:
                print(f"epoch {epoch + 1}/{epochs}", flush=True)
            start = time.perf_counter()
            with readable_pipeline_errors(*self.data.sources), self._distribution_scope():
                fit = self.model.fit(train, validation_data=self.data.val, initial_epoch=epoch, epochs=epoch + 1,
                                     callbacks=[keras.callbacks.TerminateOnNaN(), self.throughput, *self.callbacks],
                                     class_weight=self.class_weight, verbose=1 if self.verbose == 1 else 0,
                                     shuffle=False)
            logs = {k: float(v[-1]) for k, v in fit.history.items() if v}
            logs.pop("learning_rate", None)
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            self._append(epoch, logs)
            if self.verbose == 2:
                shown = " - ".join(f"{k} {v:.4g}" for k, v in logs.items())
                print(f"epoch {epoch + 1}/{epochs} - {time.perf_counter() - start:.0f}s - {shown}", flush=True)
            # A NaN training loss, or a NaN val_loss (the model's outputs are NaN), is divergence.
            if not math.isfinite(logs.get("loss", math.nan)) or not math.isfinite(logs.get("val_loss", 0.0)):
                self.diverged_epoch = epoch
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
        self.history.setdefault("epoch", []).append(epoch)
        for key, value in logs.items():
            self.history.setdefault(key, [math.nan] * rows).append(value)
        for key in self.history:
            if len(self.history[key]) < rows + 1:
                self.history[key].append(math.nan)

    def _after_epoch(self, epoch, logs) -> None:
        value = logs.get("val_loss", math.nan)
        improved = math.isfinite(value) and value < self.best_val_loss
        if improved:
            self.best_val_loss, self.best_epoch = value, epoch
            self._save_best(epoch)
        self._early_stopping(value)
        self._reduce_lr(value)
        self.next_epoch = epoch + 1
        if self.folder is not None:
            name = f"last-e{epoch}.weights.h5"
            save_training_state(self.model, self.folder.file(name))
            previous, self.last_file = self.last_file, name
            self.commit()
            for stale in (previous, self._stale_best):
                if stale and stale not in (self.last_file, self.best_file) and self.folder.file(stale).exists():
                    self.folder.file(stale).unlink()
            self._stale_best = None

    def _save_best(self, epoch) -> None:
        if self.folder is None:
            self.best_in_memory = [np.array(w) for w in self.model.get_weights()]
            return
        name = f"best-e{epoch}.weights.h5"
        save_model_weights(self.model, self.folder.file(name))
        previous, self.best_file = self.best_file, name
        self._stale_best = previous

    def _early_stopping(self, value) -> None:
        if not self.config.early_stopping:
            return
        if math.isfinite(value) and value < self.early["best"]:
            self.early.update(best=value, wait=0)
        else:
            self.early["wait"] += 1
            if self.early["wait"] >= self.config.early_stopping:
                self.early["stopped"] = True

    def _reduce_lr(self, value) -> None:
        if not self.config.reduce_lr:
            return
        if math.isfinite(value) and value < self.plateau["best"] - 1e-4:
            self.plateau.update(best=value, wait=0)
            return
        self.plateau["wait"] += 1
        if self.plateau["wait"] >= self.config.reduce_lr:
            rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            self.model.optimizer.learning_rate.assign(rate * 0.1)
            self.plateau["wait"] = 0

    def restore_best(self) -> None:
        """Puts the best epoch's weights into the working model."""
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

    def result(self, trainable_params, settings, run_fingerprint, thresholds, class_names) -> FineTuneResult:
        seconds = self.throughput.train_seconds
        size = self.data.train_size
        return FineTuneResult(
            history=self.history, best_epoch=self.best_epoch,
            best_val_loss=self.best_val_loss if math.isfinite(self.best_val_loss) else float("nan"),
            epochs_run=len(self.history.get("epoch", [])), resumed_from=self.resumed_from,
            stopped_early=bool(self.early["stopped"]), trainable_params=trainable_params,
            images_per_second=size * self.throughput.epochs / seconds if size and seconds > 0 else None,
            paths=self.folder.paths() if self.folder is not None else {}, settings=settings,
            status="diverged" if self.diverged_epoch is not None else "finished",
            diverged_epoch=self.diverged_epoch, threshold=None if thresholds is None else thresholds[1],
            thresholds=None if thresholds is None else {str(c): t for c, t in thresholds.items()},
            class_names=class_names,
            fingerprint=run_fingerprint, seed=self.seed,
        )

"""fine_tune: train a build_model model under a RadImageNet strategy, resumably, and record everything.

``fine_tune`` wires named steps, each owned elsewhere: the settings (``config.TrainConfig``), the runtime
(``runtime.Runtime``: precision, XLA, distribution), the run folder (``run_folder.RunFolder``: its files and
whether it may be resumed), the data (``data.adapters.for_training``), the strategy (``strategies``) and the epoch
loop (``epoch_loop.EpochLoop``), whose every random stream comes from (seed, epoch).
"""

from __future__ import annotations

import platform
import sys
import warnings

import keras
import numpy as np

from .. import backend
from ..data.adapters import TrainingData, for_training
from ..errors import ClassMismatchError, TrainingDivergedError
from ..models.classifier import is_multi_label
from ..models.trained import read_trained_info, save_trained, set_trained_info
from ..utils.io import write_json_atomic
from ..utils.seeding import derive_seed, fresh_seed, set_global_seed, walk_layers
from ..version import __version__
from .config import TrainConfig, fingerprint
from .epoch_loop import EpochLoop, compile_model, load_model_weights, make_metrics, save_model_weights
from .linear_probe import feature_data, probe_head, run_probe
from .run_folder import BEST_MODEL, BEST_WEIGHTS, RESULT, FineTuneResult, RunFolder, run_identity, run_read_settings
from .runtime import Runtime, copy_weights, resolve_jit_compile, resolve_precision, working_model
from .strategies import apply_strategy, parse_strategy, rate_factors
from .thresholds import validation_thresholds

__all__ = [
    "FineTuneResult",
    "TrainingDivergedError",
    "fine_tune",
    "write_json_atomic",
    "resolve_precision",
    "resolve_jit_compile",
    "compile_model",
    "make_metrics",
]


def fine_tune(
    model,
    train,
    val,
    config: TrainConfig | None = None,
    *,
    out_dir=None,
    callbacks=(),
    verbose="auto",
    resume: bool = True,
    class_names=None,
    **settings,
) -> FineTuneResult:
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

        strategy: "freeze_all", "unfreeze_top10", "unfreeze_top:N", "unfreeze_all", "unfreeze_blocks:K",
            "llrd:D" (every layer trains; the head at learning_rate, the backbone's block k from the top at
            learning_rate × D**k, its stem one step lower; see ``strategies.layer_factors``), "linear_probe"
            (the head alone, trained on the backbone's pooled features computed once, without augmentation; see
            ``linear_probe``) or "lp_ft" (that probe at ``PROBE_RATE_FACTOR`` × learning_rate to convergence, then
            every layer from the probed head; the probe's record is ``result.settings["probe"]``, and its files in
            out_dir are read back on a resume: an interrupted probe starts over).
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
        RunFolderInUseError: another live process is training into out_dir (the message names it).
        TrainingDivergedError: the loss became NaN (the model holds the last good checkpoint).
    """
    config = TrainConfig.from_settings(config, **settings)
    runtime = Runtime.resolve(config)
    with RunFolder.claimed(out_dir, resume) as folder:  # held until the run's files are written
        return _train(model, train, val, config, runtime, folder, callbacks, verbose, class_names)


# -- the steps ----------------------------------------------------------------------------------------------


def _train(model, train, val, config: TrainConfig, runtime: Runtime, folder, callbacks, verbose, class_names):
    """fine_tune's steps, in the run folder this process holds (None without out_dir)."""
    if config.deterministic:
        backend.enable_determinism()
    state = folder.state() if folder is not None else None
    seed = config.seed if config.seed is not None else (state or {}).get("seed") or fresh_seed()
    set_global_seed(derive_seed(seed, "init"))
    target = model if isinstance(model, keras.Model) else None
    working, rebuilt = working_model(model, runtime.precision, runtime.distribution)
    public = target if target is not None else working
    num_classes = int(working.output_shape[-1])
    _check_label_kind(train, is_multi_label(working))
    kind = parse_strategy(config.strategy)[0]

    data = for_training(
        train,
        val,
        image_size=tuple(working.input_shape[1:3]),
        num_classes=num_classes,
        batch_size=config.batch_size,
        augment=None if kind == "linear_probe" else config.augment,  # the probe's features are never augmented
        seed=config.seed,
    )
    config = config.resolve_data(data.batch_size, data.augment, data.noun)
    data.class_names = _class_names(class_names, data.class_names, num_classes)
    info = getattr(working, "radtransfer_info", None) or getattr(target, "radtransfer_info", None)
    identity = run_identity(config.defining(), data.class_names, data.signature, _model_identity(info, working))
    if folder is not None and folder.status() != "new":
        folder.check_compatible(identity)
        if folder.status() in ("finished", "diverged"):
            return _reopen(folder, public, data.class_names)

    fitted, loop_data = _fitted_model(working, data, runtime), data
    if kind == "linear_probe":  # the head alone, on the backbone's features computed once
        fitted, loop_data = probe_head(working), feature_data(working, train, val, config, seed)
    summary, resolved_jit = _prepare_model(working, fitted, target, config, runtime, num_classes)
    recorded = _recorded(config, runtime, resolved_jit, rebuilt, seed, data, working, info, summary)
    class_weight = _class_weight(config, train, num_classes)
    loop = EpochLoop(fitted, config, runtime, loop_data, folder, seed, class_weight, callbacks, verbose)
    if kind == "lp_ft":  # phase 1, the linear probe (read back from the run folder when it holds it)
        recorded["probe"] = run_probe(working, train, val, config, runtime, folder, seed, class_weight, verbose)
    if loop.verbose:
        _print_cache_choices(data)
    if folder is not None:
        folder.write_config(identity, recorded)
    if state and state.get("next_epoch", 0) > 0:
        if not data.exact:
            warnings.warn(
                "Resuming with a plain tf.data.Dataset: radtransfer cannot re-derive its shuffling for the "
                "remaining epochs, so the resumed run may differ from an uninterrupted one. Pass ImageSets "
                "or datasets from radtransfer.data.make_dataset.",
                stacklevel=2,
            )
        loop.restore(state)
    loop.run()
    loop.restore_best()
    if target is not None:
        copy_weights(working, target)
    return _finish(loop, public, working, data, num_classes, summary, recorded, fingerprint(identity), folder)


def _check_label_kind(train, multi_label: bool) -> None:
    """Refuses a multi-label ImageSet for a softmax model, and a one-class-per-image ImageSet for a sigmoid one."""
    data_multi = getattr(train, "multi_label", None)
    if data_multi is not None and data_multi != multi_label:
        raise ValueError(
            "The training set has several labels per image (from_csv(..., label_cols=)) but the model one class per "
            "image: build it with build_model(..., num_labels=K)."
            if data_multi
            else "The model has a multi-label head (num_labels=) but the training set one class per image: read it "
            "with from_csv(..., label_cols=[...]) or build the model with num_classes=."
        )


def _class_names(given, from_data, num_classes: int):
    """The run's class names: the data's (ImageSets bring them), or those given with a dataset, checked."""
    if given is None:
        return from_data
    given = [str(c) for c in given]
    if from_data is not None and from_data != given:
        raise ClassMismatchError(f"class_names={given} differ from the training set's {from_data}.")
    if len(given) != num_classes:
        raise ClassMismatchError(f"{len(given)} class_names for a model with {num_classes} outputs.")
    return given


def _fitted_model(working, data: TrainingData, runtime: Runtime):
    """The model ``fit`` trains: ``working`` itself, or on the numpy path with augmentation a wrapper that takes
    (images, transforms) and warps the images on the device before ``working`` (sharing its layers and weights,
    so training it trains ``working``)."""
    if data.device_augment is None:
        return working
    from ..data.py_dataset.device_augment import with_device_augment

    with runtime.scope():
        return with_device_augment(working, data.device_augment)


def _prepare_model(working, fitted, target, config: TrainConfig, runtime: Runtime, num_classes: int):
    """Sets BatchNorm momentum and the strategy's trainable flags, and compiles ``fitted`` (``working``, or its
    device-augmenting wrapper); returns (the strategy's summary, whether XLA is really on). The caller's model
    shows the same flags when training runs on a rebuild."""
    if config.bn_momentum is not None:
        for layer in walk_layers(working):
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = float(config.bn_momentum)
    with runtime.scope():
        summary = apply_strategy(working, config.strategy, bn=config.bn)
        resolved_jit = compile_model(
            fitted,
            config.make_optimizer(rate_factors(working, config.strategy)),
            config.make_loss(num_classes, is_multi_label(working)),
            make_metrics(num_classes, is_multi_label(working)),
            runtime.jit_compile and not config.run_eagerly,
            run_eagerly=config.run_eagerly,
        )
    if working is not target and target is not None:
        apply_strategy(target, config.strategy, bn=config.bn)
    return summary, resolved_jit


def _recorded(
    config: TrainConfig, runtime: Runtime, resolved_jit, rebuilt, seed, data: TrainingData, working, info, summary
) -> dict:
    """Every resolved setting of the run, as config.json and the result record them."""
    return {
        **config.to_dict(),
        "jit_compile_requested": config.jit_compile,
        "jit_compile": resolved_jit,
        "backend": backend.name(),
        "precision_requested": config.precision,
        "precision": runtime.precision,
        "replicas": runtime.replicas,
        "rebuilt_for_runtime": rebuilt,
        "seed_used": seed,
        "train_images": data.train_size,
        "class_names": data.class_names,
        "input_shape": list(working.input_shape[1:]),
        "num_classes": int(working.output_shape[-1]),
        "model": info.to_dict() if info is not None else None,
        "strategy_summary": summary.to_dict(),
        "exact_resume": data.exact,
        "versions": _versions(),
        "command": " ".join(sys.argv),
    }


def _class_weight(config: TrainConfig, train, num_classes: int):
    """``config.class_weight`` as Keras takes it ("balanced": inverse class frequencies of a training ImageSet)."""
    if config.class_weight != "balanced":
        return config.class_weight
    labels = getattr(train, "labels", None)
    if labels is None or not hasattr(train, "class_names"):
        raise ValueError("class_weight='balanced' needs train as an ImageSet (to count the classes).")
    if np.ndim(labels) != 1:
        raise ValueError("class_weight='balanced' weighs classes of one label per image, not a multi-label set's.")
    counts = np.bincount(labels, minlength=num_classes)
    return {c: float(len(labels) / (num_classes * n)) for c, n in enumerate(counts) if n}


def _finish(
    loop: EpochLoop, public, working, data: TrainingData, num_classes, summary, recorded, run_fingerprint, folder
):
    """Chooses the validation thresholds, attaches what the model needs to be used, writes the best model and the
    result (the commit point), and raises TrainingDivergedError for a run whose loss became NaN."""
    # Thresholds come from a model holding a good checkpoint: a run that diverged before any epoch finished
    # has no usable predictions to choose them on.
    multi = is_multi_label(working)
    thresholds = validation_thresholds(public, data.val, num_classes, multi) if loop.best_epoch >= 0 else None
    for trained in {id(public): public, id(working): working}.values():
        set_trained_info(
            trained,
            data.class_names,
            None if thresholds is None or multi else thresholds[1],
            positive_class=1 if num_classes == 2 and not multi else None,
            read_settings=data.read_settings,
            thresholds=thresholds,
        )
    result = loop.result(summary.trainable_params, recorded, run_fingerprint, thresholds, data.class_names, multi)
    result.model = public
    if folder is not None:
        if loop.best_epoch >= 0:
            save_model_weights(public, folder.file(BEST_WEIGHTS))
            save_trained(public, folder.file(BEST_MODEL))
        folder.write_json(RESULT, result.to_dict())
        loop.commit(status=result.status)  # the commit point; the per-epoch checkpoints are no longer needed
        loop.clean_checkpoints()
    if result.status == "diverged":
        raise _diverged_error(result, folder)
    return result


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    versions = {
        "radtransfer": __version__,
        "keras": keras.__version__,
        "backend": backend.name(),
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
    for package in ("tensorflow", "jax", "torch"):
        if package == backend.name() or package == "tensorflow":
            try:
                versions[package] = version(package)
            except PackageNotFoundError:
                pass
    return versions


def _model_identity(info, model) -> dict:
    if info is None:
        return {"name": model.name, "input_shape": list(model.input_shape[1:]), "outputs": int(model.output_shape[-1])}
    values = info.to_dict()
    return {
        k: (list(v) if isinstance(v, tuple) else v)
        for k, v in values.items()
        if k
        in ("backbone", "weights_source", "weights_sha256", "preprocessing", "num_classes", "input_shape", "dropout")
    }


def _print_cache_choices(data: TrainingData) -> None:
    """Where each part's resized images are kept between epochs, and why (cache="auto"), unless the data log
    (which says it as each dataset is made) is shown already, as by the command."""
    import logging

    if logging.getLogger("radtransfer.data").handlers:
        return
    for name, dataset in zip(("train", "val"), data.sources):
        stream = getattr(dataset, "radtransfer_stream", None)
        if stream is not None:
            print(f"{name}: {stream.size} images, cache {stream.cache.mode} ({stream.cache.reason})", flush=True)


def _diverged_error(result, folder):
    where = (
        (
            f"the best checkpoint (epoch {result.best_epoch}, val_loss {result.best_val_loss:.4g}) is in the model"
            + (f" and in {folder.path}" if folder is not None else "")
        )
        if result.best_epoch >= 0
        else "no epoch finished with a finite val_loss, so there is no checkpoint"
    )
    rate = result.settings.get("learning_rate")
    hint = f" Try a lower learning rate (e.g. {rate / 10:g})." if rate else ""
    return TrainingDivergedError(
        f"The loss became NaN at epoch {result.diverged_epoch}; training stopped and {where}." + hint,
        result,
        result.diverged_epoch,
    )


def _reopen(folder: RunFolder, model, class_names):
    """A finished or diverged run, returned (or raised) as it was recorded, its best weights in ``model``."""
    result = FineTuneResult.from_dict(folder.read_json(RESULT), model=model)
    if folder.file(BEST_WEIGHTS).exists():
        load_model_weights(model, folder.file(BEST_WEIGHTS))
    saved = read_trained_info(folder.file(BEST_MODEL)) if folder.file(BEST_MODEL).exists() else {}
    set_trained_info(
        model,
        result.class_names or class_names,
        result.threshold,
        positive_class=1 if result.threshold is not None else None,
        read_settings=run_read_settings(folder.path),
        thresholds=result.thresholds,
        temperature=saved.get("temperature"),  # fitted by calibrate after the run finished
        calibration=saved.get("calibration"),
    )
    if result.status == "diverged":
        raise _diverged_error(result, folder)
    return result

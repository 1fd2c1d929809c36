"""The linear probe: the head of a ``build_model`` model (its "predictions" Dense softmax layer: multinomial logistic
regression) trained on the backbone's pooled features, computed once for the training and validation images, without
augmentation. ``fine_tune`` runs it as strategy "linear_probe", and as the first phase of "lp_ft" (Kumar et al. 2022,
"Fine-Tuning can Distort Pretrained Features and Underperform Out-of-Distribution").

The probe trains a functional model from the features to the probabilities through the model's own "predictions"
layer (sharing its weights: training it trains the model's head; the backbone is never called in training, so its
weights stay bit-identical), in the ordinary ``EpochLoop`` over the features as arrays. Dropout is left out: it acts
only in training and would make the probe something else than logistic regression.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from ..data.adapters import TrainingData, for_training
from ..data.py_dataset.arrays import ArrayStream
from ..data.tf_data.stream import stream_of
from ..models.classifier import is_multi_label
from ..utils.io import write_json_atomic
from .config import TrainConfig
from .epoch_loop import EpochLoop, compile_model, make_metrics
from .run_folder import PROBE_HEAD, PROBE_HISTORY, PROBE_RESULT
from .runtime import Runtime
from .state_files import load_snapshot, snapshot, write_snapshot
from .strategies import PROBE_PATIENCE, PROBE_RATE_FACTOR


def probe_head(model: keras.Model) -> keras.Model:
    """A model from pooled features to the class probabilities through ``model``'s own "predictions" layer."""
    head = model.get_layer("predictions")
    inputs = keras.Input(shape=(int(head.kernel.shape[0]),), name="features")
    return keras.Model(inputs, head(inputs), name=f"{model.name}_probe")


def pooled_features(model: keras.Model, batches) -> tuple[np.ndarray, np.ndarray]:
    """(features, one-hot labels) of every batch: the model's "preprocess" and "backbone" layers in inference mode."""
    preprocess, backbone = model.get_layer("preprocess"), model.get_layer("backbone")
    features, labels = [], []
    for batch in _batches(batches):
        pooled = backbone(preprocess(batch[0]), training=False)
        features.append(np.asarray(keras.ops.convert_to_numpy(pooled), dtype=np.float32))
        labels.append(np.asarray(keras.ops.convert_to_numpy(batch[1]), dtype=np.float32))
    return np.concatenate(features), np.concatenate(labels)


def _batches(batches):
    if isinstance(batches, keras.utils.PyDataset):
        return (batches[index] for index in range(batches.num_batches))
    return iter(batches)


def feature_data(model: keras.Model, train, val, config: TrainConfig, seed: int) -> TrainingData:
    """The training and validation features (``pooled_features`` of the images read without augmentation) as the
    epoch loop takes them: shuffled per epoch from (seed, epoch), in batches of the run's size."""
    plain = for_training(
        train,
        val,
        image_size=tuple(model.input_shape[1:3]),
        num_classes=int(model.output_shape[-1]),
        batch_size=config.batch_size,
        augment=None,
        seed=config.seed,
    )
    stream = stream_of(plain.sources[0]) if plain.sources else None
    train_batches = stream.ordered() if stream is not None and stream.augmenting else plain.train_epoch(0, seed)
    batch_size = plain.batch_size or config.batch_size or 32
    train_stream = ArrayStream(*pooled_features(model, train_batches), batch_size, shuffle=True)
    val_stream = ArrayStream(*pooled_features(model, plain.val), batch_size, shuffle=False)
    return TrainingData(
        train_stream.epoch,
        val_stream.batches(),
        train_stream.size,
        plain.class_names,
        {"train": train_stream.signature, "val": val_stream.signature},
        True,
        batch_size=batch_size,
        augment=None,
        kind="arrays",
    )


def run_probe(model, train, val, config: TrainConfig, runtime: Runtime, folder, seed: int, class_weight, verbose):
    """lp_ft's first phase: the linear probe of ``model``'s head at ``PROBE_RATE_FACTOR`` × the run's learning rate,
    early stopping after ``PROBE_PATIENCE`` epochs without a better val_loss, up to the run's epochs; the best epoch's
    head is left in ``model``. In a run folder the probe's result (probe.json), history (probe_history.csv) and head
    (probe_head.npz) are kept, and a resumed run reads them instead of probing again; an interrupted probe starts over.

    Returns:
        The probe's record: its settings, best epoch, best val_loss, epochs run, whether it stopped early, history.
    """
    head = probe_head(model)
    if folder is not None and folder.file(PROBE_RESULT).exists() and folder.file(PROBE_HEAD).exists():
        load_snapshot(head, folder.file(PROBE_HEAD), optimizer=False)
        return folder.read_json(PROBE_RESULT)
    probe_config = config.replace(
        learning_rate=config.learning_rate * PROBE_RATE_FACTOR, early_stopping=PROBE_PATIENCE, reduce_lr=None
    )
    with runtime.scope():
        compile_model(
            head,
            _optimizer(probe_config),
            config.make_loss(int(model.output_shape[-1]), is_multi_label(model)),
            make_metrics(int(model.output_shape[-1]), is_multi_label(model)),
            runtime.jit_compile and not config.run_eagerly,
            run_eagerly=config.run_eagerly,
        )
    data = feature_data(model, train, val, config, seed)
    loop = EpochLoop(head, probe_config, runtime, data, None, seed, class_weight, (), verbose)
    if loop.verbose:
        print(
            f"lp_ft phase 1: the linear probe of the head at learning rate {probe_config.learning_rate:g}", flush=True
        )
    loop.run()
    loop.restore_best()
    record = {
        "learning_rate": probe_config.learning_rate,
        "early_stopping": PROBE_PATIENCE,
        "best_epoch": loop.best_epoch,
        "best_val_loss": loop.best_val_loss if math.isfinite(loop.best_val_loss) else None,
        "epochs_run": len(loop.history.get("epoch", [])),
        "stopped_early": bool(loop.early["stopped"]),
        "history": loop.history,
    }
    if folder is not None:  # the head first, then the history, then the record naming them (the commit point)
        write_snapshot(folder.file(PROBE_HEAD), snapshot(head, optimizer=False))
        folder.write_history(loop.history, PROBE_HISTORY)
        write_json_atomic(folder.file(PROBE_RESULT), record)
    if loop.verbose:
        print(f"lp_ft phase 2: every layer at learning rate {config.learning_rate:g}, from the probed head", flush=True)
    return record


def _optimizer(config: TrainConfig):
    """The probe's own optimizer: a given optimizer object is copied (the fine-tuning phase keeps the object)."""
    if isinstance(config.optimizer, keras.optimizers.Optimizer):
        copy = type(config.optimizer).from_config(config.optimizer.get_config())
        copy.learning_rate = config.learning_rate
        return copy
    return config.make_optimizer()

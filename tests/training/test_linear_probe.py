"""Strategies "linear_probe" (the head on the backbone's features, computed once) and "lp_ft" (Kumar et al. 2022: the
probe, then every layer), on the test backbone at 32 px."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import radtransfer as rt
from radtransfer.cli import main
from radtransfer.training import linear_probe
from radtransfer.training.config import TrainConfig

from conftest import tiny_model, train_tiny

PROBE = dict(strategy="linear_probe", learning_rate=1e-2, epochs=4, batch_size=64, run_eagerly=True)
LP_FT = dict(strategy="lp_ft", learning_rate=1e-3, epochs=2, run_eagerly=True)
HISTORY_COLUMNS = {"epoch", "accuracy", "auc", "loss", "val_accuracy", "val_auc", "val_loss", "learning_rate"}


class InterruptEpoch2(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt


class HeadAtStart(keras.callbacks.Callback):
    """The head's and the backbone's weights when the (fine-tuning) training begins."""

    def __init__(self):
        super().__init__()
        self.head = self.backbone = None

    def on_train_begin(self, logs=None):
        model = self.model  # on JAX and PyTorch, the wrapper that augments on the device holds the model as a layer
        if "predictions" not in [layer.name for layer in model.layers]:
            model = next(layer for layer in model.layers if isinstance(layer, keras.Model))
        if self.head is None:
            self.head = [np.array(w) for w in model.get_layer("predictions").get_weights()]
            self.backbone = [np.array(w) for w in model.get_layer("backbone").get_weights()]


def _hand_count(weights) -> int:
    return sum(int(np.prod(w.shape)) for w in weights)


@pytest.fixture(scope="module")
def probe_run(splits, tmp_path_factory):
    """A linear probe of four full-batch epochs: (model, result, backbone before, head before)."""
    model = tiny_model()
    backbone = [np.array(w) for w in model.get_layer("backbone").get_weights()]
    head = [np.array(w) for w in model.get_layer("predictions").get_weights()]
    result = train_tiny(model, splits, tmp_path_factory.mktemp("probe"), **PROBE)
    return model, result, backbone, head


@pytest.fixture(scope="module")
def lp_ft_run(splits, tmp_path_factory):
    """An uninterrupted two-epoch lp_ft run: (model, result, folder, weights when fine-tuning began)."""
    model, start, out = tiny_model(), HeadAtStart(), tmp_path_factory.mktemp("lp_ft")
    return model, train_tiny(model, splits, out, callbacks=[start], **LP_FT), out, start


def test_augmentation_is_refused_for_the_linear_probe_in_one_line():
    with pytest.raises(ValueError) as caught:
        TrainConfig("linear_probe", 1e-3, augment="radimagenet")
    assert "\n" not in str(caught.value) and "augment='radimagenet'" in str(caught.value)


def test_the_probe_leaves_the_backbone_bit_identical_and_trains_the_head(probe_run):
    model, result, backbone, head = probe_run
    for before, after in zip(backbone, model.get_layer("backbone").get_weights()):
        np.testing.assert_array_equal(before, after)
    assert any(not np.array_equal(b, a) for b, a in zip(head, model.get_layer("predictions").get_weights()))
    assert result.settings["augment"] is None and result.epochs_run == PROBE["epochs"]
    assert set(result.history) == HISTORY_COLUMNS


def test_the_head_is_a_plain_keras_fit_of_a_softmax_on_the_backbones_features(probe_run, splits):
    """The reference: the features by calling the model's own preprocess and backbone layers, a Dense softmax from the
    same starting head fitted by Keras (full batch, so the order of the images cannot matter), best epoch by
    val_loss."""
    model, result, _, head = probe_run
    train, val, _ = splits

    def features(image_set):
        batches = rt.data.make_dataset(image_set, image_size=(32, 32), batch_size=64, shuffle=False, augment=None)
        x, y = (np.asarray(part) for part in next(iter(batches)))
        pooled = model.get_layer("backbone")(model.get_layer("preprocess")(x), training=False)
        return keras.ops.convert_to_numpy(pooled), y

    (x, y), (vx, vy) = features(train), features(val)
    dense = keras.layers.Dense(4, activation="softmax")
    reference = keras.Sequential([keras.Input((x.shape[1],)), dense])
    dense.set_weights(head)
    reference.compile(optimizer=keras.optimizers.Adam(PROBE["learning_rate"]), loss="categorical_crossentropy")
    val_losses, weights = [], []
    for _ in range(PROBE["epochs"]):
        reference.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
        val_losses.append(reference.evaluate(vx, vy, batch_size=len(vx), verbose=0))
        weights.append(dense.get_weights())
    best = int(np.argmin(val_losses))
    assert result.best_epoch == best + 1
    # TensorFlow computes the features in the same batches either way; XLA's convolutions on JAX and PyTorch's vary in
    # the last bits with the batch, which the epochs of Adam carry to the fourth decimal
    exact = keras.backend.backend() == "tensorflow"
    np.testing.assert_allclose(result.history["val_loss"], val_losses, rtol=1e-5 if exact else 1e-3)
    for expected, got in zip(weights[best], model.get_layer("predictions").get_weights()):
        np.testing.assert_allclose(got, expected, atol=1e-6 if exact else 2e-3)


def test_trainable_counts_are_the_heads_and_every_layers(probe_run, lp_ft_run):
    model, result, _, _ = probe_run
    kernel, bias = model.get_layer("predictions").get_weights()
    assert result.trainable_params == kernel.shape[0] * kernel.shape[1] + bias.shape[0]
    assert result.settings["strategy_summary"]["phases"][0]["trainable_params"] == result.trainable_params
    model, result, _, _ = lp_ft_run
    every = _hand_count(w for w in model.weights if "moving_" not in w.path)  # BatchNorm statistics do not train
    assert result.trainable_params == every


def test_lp_ft_fine_tunes_from_the_probed_head_and_keeps_the_probes_record(lp_ft_run):
    model, result, out, start = lp_ft_run
    with np.load(out / "probe_head.npz") as saved:
        probed = [saved[f"arr_{i}"] for i in range(len(saved.files))]
    for expected, got in zip(probed, start.head):
        np.testing.assert_array_equal(expected, got)
    assert any(not np.array_equal(b, a) for b, a in zip(start.backbone, model.get_layer("backbone").get_weights()))
    probe = result.settings["probe"]
    assert probe["learning_rate"] == pytest.approx(10 * LP_FT["learning_rate"]) and probe["early_stopping"] == 3
    lines = (out / "probe_history.csv").read_text().splitlines()
    assert len(lines) == 1 + probe["epochs_run"] and probe["epochs_run"] <= LP_FT["epochs"]
    assert set(result.history) == HISTORY_COLUMNS and result.epochs_run == LP_FT["epochs"]


def test_a_resumed_lp_ft_equals_an_uninterrupted_one_and_does_not_probe_again(lp_ft_run, splits, tmp_path, monkeypatch):
    model, result, _, _ = lp_ft_run
    with pytest.raises(KeyboardInterrupt):
        train_tiny(tiny_model(), splits, tmp_path / "run", callbacks=[InterruptEpoch2()], **LP_FT)

    def no_probe(*args, **kwargs):
        raise AssertionError("the probe ran again")

    monkeypatch.setattr(linear_probe, "feature_data", no_probe)
    resumed_model = tiny_model(seed=3)
    resumed = train_tiny(resumed_model, splits, tmp_path / "run", **LP_FT)
    assert resumed.resumed_from == 1 and resumed.history == result.history
    assert resumed.settings["probe"] == result.settings["probe"]
    for x, y in zip(model.get_weights(), resumed_model.get_weights()):
        np.testing.assert_array_equal(x, y)


def test_the_command_trains_with_lp_ft_and_writes_both_histories(cli_data, tmp_path):
    """In graph mode (the other trainings here run eagerly)."""
    argv = ["train", str(cli_data), "--backbone", "test_tiny", "--weights", "none", "--image-size", "32"]
    argv += ["--epochs", "1", "--batch-size", "4", "--verbose", "0", "--strategy", "lp_ft"]
    assert main(argv + ["--out", str(tmp_path / "run")]) == 0
    for name in ("history.csv", "probe_history.csv"):
        assert len((tmp_path / "run" / name).read_text().splitlines()) == 2

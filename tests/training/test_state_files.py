"""Per-epoch checkpoints written in the background (training/state_files.py): the same values as Keras's own
save_weights/load_weights, refused when they do not fit, and errors of the writing thread reach the training one."""

from __future__ import annotations

import threading

import keras
import numpy as np
import pytest

from radtransfer.errors import RadtransferError
from radtransfer.training.state_files import BackgroundWriter, load_snapshot, snapshot, write_snapshot


def _model(units=3, seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4,))
    hidden = keras.layers.BatchNormalization()(keras.layers.Dense(5, activation="relu")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(units, activation="softmax")(hidden))
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="categorical_crossentropy")
    x = np.random.default_rng(seed).normal(size=(32, 4)).astype("float32")
    y = keras.utils.to_categorical(np.arange(32) % units, units)
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)  # optimizer slots and BatchNorm statistics are not zeros
    return model, x, y


def _values(model):
    return [keras.ops.convert_to_numpy(v) for v in model.weights + model.optimizer.variables]


def test_a_snapshot_restores_what_keras_save_weights_restores(tmp_path):
    trained, x, y = _model()
    write_snapshot(tmp_path / "last-e2.npz", snapshot(trained))
    trained.save_weights(tmp_path / "reference.weights.h5")
    by_keras, _, _ = _model(seed=1)
    by_keras.load_weights(tmp_path / "reference.weights.h5")
    mine, _, _ = _model(seed=2)
    load_snapshot(mine, tmp_path / "last-e2.npz")
    for a, b in zip(_values(mine), _values(by_keras)):
        np.testing.assert_array_equal(a, b)
    # ... and training goes on identically from either (Adam's moments and step count included).
    mine.fit(x, y, epochs=1, batch_size=8, verbose=0, shuffle=False)
    by_keras.fit(x, y, epochs=1, batch_size=8, verbose=0, shuffle=False)
    for a, b in zip(_values(mine), _values(by_keras)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_a_snapshot_is_a_copy_and_a_model_only_one_leaves_the_optimizer(tmp_path):
    model, x, y = _model()
    arrays = snapshot(model, optimizer=False)
    before = [a.copy() for a in arrays]
    model.fit(x, y, epochs=1, verbose=0)  # training after the snapshot does not change it
    assert all(np.array_equal(a, b) for a, b in zip(arrays, before))
    write_snapshot(tmp_path / "best-e1.npz", arrays)
    slots = [keras.ops.convert_to_numpy(v) for v in model.optimizer.variables]
    load_snapshot(model, tmp_path / "best-e1.npz", optimizer=False)
    assert all(np.array_equal(keras.ops.convert_to_numpy(v), a) for v, a in zip(model.weights, before))
    assert all(np.array_equal(keras.ops.convert_to_numpy(v), s) for v, s in zip(model.optimizer.variables, slots))


def test_a_checkpoint_of_another_model_is_refused_in_one_line(tmp_path):
    model, _, _ = _model(units=3)
    write_snapshot(tmp_path / "last-e1.npz", snapshot(model))
    other, _, _ = _model(units=4)
    with pytest.raises(RadtransferError, match="do not match this model") as info:
        load_snapshot(other, tmp_path / "last-e1.npz")
    assert "\n" not in str(info.value) and "resume=False" in str(info.value)


def test_the_writer_keeps_order_and_hands_its_error_to_the_training_thread():
    writer, done, names = BackgroundWriter(), [], set()
    for i in range(20):
        writer.submit(lambda i=i: (done.append(i), names.add(threading.current_thread().name)))
    writer.wait()
    assert done == list(range(20)) and names == {"radtransfer-checkpoints"}

    def full_disk():
        raise OSError(28, "No space left on device")

    writer.submit(full_disk)
    writer.submit(lambda: done.append("after"))  # not run: the first error stops the writes
    with pytest.raises(OSError, match="No space left"):
        writer.wait()
    assert done[-1] == 19
    writer.wait()  # the error is raised once

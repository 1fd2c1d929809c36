"""Which path reads ImageSets (backend.image_path) and what the numpy path gives fine_tune and evaluate: ImageSequence
batches in the order of (seed, epoch), transforms drawn from (seed, epoch, batch) alone, identity transforms for
validation. The training itself on JAX and PyTorch is tested in make test-backends (tests/test_backends.py)."""

from __future__ import annotations

import numpy as np
import pytest

from radtransfer import backend
from radtransfer.data import ReadSettings
from radtransfer.data.adapters import for_evaluation, for_training
from radtransfer.data.augment import get_augment
from radtransfer.data.py_dataset.sequence import ImageSequence, TransformSequence, epoch_order


def test_the_image_path_follows_the_backend_and_the_variable(monkeypatch):
    monkeypatch.delenv(backend.IMAGE_PATH_VARIABLE, raising=False)
    assert backend.image_path() == "tf.data"  # the tests run on TensorFlow
    monkeypatch.setattr(backend, "name", lambda: "jax")
    assert backend.image_path() == "numpy"
    monkeypatch.setenv(backend.IMAGE_PATH_VARIABLE, "tf.data")
    assert backend.image_path() == "tf.data"
    monkeypatch.setenv(backend.IMAGE_PATH_VARIABLE, "pillow")
    with pytest.raises(ValueError, match="RADTRANSFER_IMAGE_PATH") as info:
        backend.image_path()
    assert "\n" not in str(info.value)


@pytest.fixture
def numpy_path(monkeypatch):
    monkeypatch.setenv(backend.IMAGE_PATH_VARIABLE, "numpy")


def test_training_data_on_the_numpy_path(numpy_path, cli_data):
    import radtransfer as rt

    images = rt.data.from_directory(cli_data / "images")
    train, val = images.subset(np.arange(16)), images.subset(np.arange(16, len(images)))
    data = for_training(train, val, image_size=(32, 32), num_classes=images.num_classes, batch_size=4, seed=1)
    assert data.exact and data.kind == "image_set" and data.device_augment == get_augment("radimagenet")
    assert isinstance(data.val, ImageSequence) and not data.val.shuffle  # plain batches: thresholds, evaluation
    epoch3 = data.train_epoch(3, 726)
    assert isinstance(epoch3, TransformSequence)
    np.testing.assert_array_equal(epoch3.sequence.order, epoch_order(len(train), 726, 3))
    first = [epoch3[i] for i in range(len(epoch3))]
    again = data.train_epoch(3, 726)[2]
    np.testing.assert_array_equal(again[0]["transforms"], first[2][0]["transforms"])  # (seed, epoch, batch) alone
    np.testing.assert_array_equal(again[0]["images"], first[2][0]["images"])
    other = data.train_epoch(4, 726)[2][0]["transforms"]
    assert not np.array_equal(other, first[2][0]["transforms"])
    transforms = np.concatenate([batch[0]["transforms"] for batch in first])
    assert transforms.shape == (len(train), 8) and len(np.unique(transforms[:, 0])) == len(train)
    seen = np.concatenate([batch[1].argmax(1) for batch in first])
    np.testing.assert_array_equal(seen, np.asarray(train.labels)[epoch_order(len(train), 726, 3)])
    images_fit, labels_fit = data.fit_val[0]
    np.testing.assert_array_equal(images_fit["transforms"], np.tile(TransformSequence.IDENTITY, (4, 1)))
    np.testing.assert_array_equal(images_fit["images"], data.val[0][0])
    assert tuple(data.read_settings["image_size"]) == (32, 32)
    plain = for_training(train, val, image_size=(32, 32), num_classes=images.num_classes, augment=None)
    assert plain.device_augment is None and plain.fit_val is None
    assert isinstance(plain.train_epoch(0, 1), ImageSequence)


def test_evaluation_reads_in_order_on_the_numpy_path(numpy_path, cli_data):
    import radtransfer as rt

    images = rt.data.from_directory(cli_data / "images")
    data = for_evaluation(
        images, num_classes=images.num_classes, input_size=(32, 32), batch_size=5, settings=ReadSettings((32, 32))
    )
    assert isinstance(data.batches, ImageSequence) and data.batches.cache.mode == "none"
    labels = np.concatenate([batch[1].argmax(1) for batch in data.batches])
    np.testing.assert_array_equal(labels, images.labels)

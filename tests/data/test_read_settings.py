"""One ReadSettings across every seam: make_dataset's and ImageSequence's read keywords build one (checked once, an
unknown keyword refused in one line), a settings= call reads the same batches as the keyword call, and
``ReadSettings.of_model`` gives back, from a saved and loaded model, the settings it was trained with."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import radtransfer as rt
from radtransfer import data
from radtransfer.data import ReadSettings

READ = dict(image_size=(24, 20), interpolation="bicubic", antialias=False, sixteen_bit="full", frame="first")


@pytest.fixture(scope="module")
def image_set(tmp_path_factory):
    """8- and 16-bit grey PNGs (16-bit values over the whole range, so "full" and "range" differ), two classes."""
    root = tmp_path_factory.mktemp("read_settings")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(6):
        paths.append(root / f"{i}.png")
        if i % 2:
            Image.fromarray(rng.integers(1000, 60000, (30, 28)).astype(np.uint16)).save(paths[-1])
        else:
            Image.fromarray(rng.integers(0, 256, (30, 28)).astype(np.uint8)).save(paths[-1])
    return data.ImageSet(paths=np.array([str(p) for p in paths]), labels=np.arange(6) % 2, class_names=("a", "b"))


def _batches(dataset) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(np.asarray(images), np.asarray(labels)) for images, labels in dataset]


def _same(one, other):
    assert len(one) == len(other)
    for (images_a, labels_a), (images_b, labels_b) in zip(one, other):
        np.testing.assert_array_equal(images_a, images_b)
        np.testing.assert_array_equal(labels_a, labels_b)


def test_a_keyword_call_and_a_settings_call_of_make_dataset_give_the_same_batches(image_set):
    common = dict(batch_size=4, shuffle=True, augment="radimagenet", seed=3, cache=False)
    by_keywords = data.make_dataset(image_set, **READ, **common)
    settings = ReadSettings(**READ)
    by_settings = data.make_dataset(image_set, settings=settings, **common)
    overridden = data.make_dataset(image_set, settings=ReadSettings((8, 8)), **READ, **common)  # keywords win
    for epoch in (0, 1):  # each epoch drawn from (seed, epoch), as fine_tune reads them
        expected = _batches(data.stream_of(by_keywords).epoch(epoch))
        _same(expected, _batches(data.stream_of(by_settings).epoch(epoch)))
        _same(expected, _batches(data.stream_of(overridden).epoch(epoch)))
    for dataset in (by_keywords, by_settings, overridden):
        assert data.stream_of(dataset).settings == settings
        assert data.stream_of(dataset).signature == data.stream_of(by_keywords).signature  # the run fingerprint


def test_a_keyword_call_and_a_settings_call_of_image_sequence_give_the_same_batches(image_set):
    common = dict(batch_size=4, shuffle=True, seed=3, cache=False)
    by_keywords = data.ImageSequence(image_set, **READ, **common)
    by_settings = data.ImageSequence(image_set, settings=ReadSettings(**READ), **common)
    by_dict = data.ImageSequence(image_set, settings=ReadSettings(**READ).to_dict(), **common)
    _same([by_keywords[i] for i in range(len(by_keywords))], [by_settings[i] for i in range(len(by_settings))])
    _same([by_keywords[i] for i in range(len(by_keywords))], [by_dict[i] for i in range(len(by_dict))])
    assert by_keywords.settings == by_settings.settings == by_dict.settings == ReadSettings(**READ)
    assert by_keywords.signature == by_settings.signature


def test_the_settings_are_the_ones_applied(image_set):
    """A 16-bit file read at its own size with "nearest" and "full" is value / 257, rounded (computed here from
    Pillow's 16-bit read): the settings object reaches the decoder on both paths, not the defaults."""
    settings = ReadSettings((30, 28), "nearest", sixteen_bit="full")
    expected = np.round(np.asarray(Image.open(image_set.paths[1]), dtype=np.float64) / 257.0).astype(np.uint8)
    tf_images = next(iter(data.make_dataset(image_set, settings=settings, batch_size=6, shuffle=False)))[0]
    numpy_images = data.ImageSequence(image_set, settings=settings, batch_size=6, shuffle=False, cache=False)[0][0]
    for images in (np.asarray(tf_images), numpy_images):
        assert images.shape == (6, 30, 28, 3)
        np.testing.assert_array_equal(images[1, ..., 0], expected)
        np.testing.assert_array_equal(images[1, ..., 2], expected)


@pytest.mark.parametrize("read", [data.make_dataset, data.ImageSequence])
def test_an_unknown_keyword_or_a_bad_setting_is_refused_in_one_line(read, image_set):
    with pytest.raises(TypeError) as refused:
        read(image_set, interpolaton="area")
    message = str(refused.value)
    assert "\n" not in message and "'interpolaton'" in message and 'Did you mean "interpolation"' in message
    assert "Valid keywords:" in message and "dicom_window" in message and "settings" in message
    with pytest.raises(ValueError, match=r"Expected interpolation to be one of .* Received: interpolation='cubic'"):
        read(image_set, interpolation="cubic")
    with pytest.raises(ValueError, match="below InceptionV3's minimum of 75×75"):
        read(image_set, settings=ReadSettings((32, 32)), backbone="inception_v3")
    with pytest.raises(TypeError, match="Expected settings= a data.ReadSettings"):
        read(image_set, settings="nearest")


def test_read_settings_check_and_normalise_once():
    assert ReadSettings(32).image_size == (32, 32)
    assert ReadSettings.from_dict(ReadSettings(**READ).to_dict()) == ReadSettings(**READ)
    assert ReadSettings(dicom_window=[40, 400]).dicom_window == (40.0, 400.0)
    with pytest.raises(ValueError, match="frame"):
        ReadSettings(frame="centre")
    with pytest.raises(ValueError, match="positive image_size"):
        ReadSettings((0, 32))


def test_of_model_gives_back_the_settings_a_saved_and_loaded_model_was_trained_with(tmp_path):
    import keras

    images = rt.datasets.load_synthetic_brain_mri(tmp_path / "images", n_patients=6, slices_per_patient=2, seed=2)
    train, val, _ = images.split(val=0.34, test=0.0, seed=0)
    settings = ReadSettings((32, 32), "area", antialias=False, sixteen_bit="full")
    keras.utils.set_random_seed(0)
    model = rt.build_model("test_tiny", weights=None, num_classes=images.num_classes, input_shape=(32, 32, 3))
    assert ReadSettings.of_model(model) == ReadSettings((32, 32))  # untrained: its input size, the defaults
    rt.fine_tune(
        model,
        data.make_dataset(train, settings=settings, batch_size=8, seed=0),
        data.make_dataset(val, settings=settings, batch_size=8, shuffle=False),
        strategy="freeze_all",
        learning_rate=1e-3,
        epochs=1,
        seed=0,
        verbose=0,
        out_dir=tmp_path / "run",
    )
    assert ReadSettings.of_model(model) == settings
    loaded = rt.load_trained(tmp_path / "run")
    assert ReadSettings.of_model(loaded) == settings
    assert loaded.radtransfer_read_settings == settings.to_dict()

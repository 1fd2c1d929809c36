"""The backend-free image path: the pixels of make_dataset without TensorFlow, a uint8 cache published whole,
and a per-epoch order that is a function of (seed, epoch) alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from radtransfer import data
from radtransfer.data.cache import CacheChoice, is_complete
from radtransfer.data.py_dataset.array_cache import ARRAY_SUFFIX, cached_images, open_array_cache
from radtransfer.data.py_dataset.numpy_read import read_image_uint8, resize_uint8

REPO = Path(__file__).resolve().parents[2]
FORMATS = ("rgb_png", "gray_png", "jpeg", "png16", "dicom")


def _pattern(size: int, seed: int) -> np.ndarray:
    """Smooth structure plus noise, so that resizing has edges and gradients to get wrong."""
    y, x = np.mgrid[:size, :size]
    smooth = np.sin(y / 6.0) * np.cos(x / 9.0)
    noise = np.random.default_rng(seed).normal(0, 0.35, (size, size))
    return (smooth + noise - (smooth + noise).min()) / np.ptp(smooth + noise)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """One file per format: 100 px RGB and grey PNGs, a JPEG, a 16-bit grey PNG (12-bit data), a 128 px CT."""
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    root = tmp_path_factory.mktemp("numpy_path")
    rgb = np.stack([_pattern(100, k) for k in range(3)], axis=-1)
    paths = {
        "rgb_png": root / "rgb.png",
        "gray_png": root / "gray.png",
        "jpeg": root / "photo.jpg",
        "png16": root / "deep.png",
        "dicom": root / "ct.dcm",
    }
    Image.fromarray(np.round(rgb * 255).astype(np.uint8)).save(paths["rgb_png"])
    Image.fromarray(np.round(_pattern(100, 7) * 255).astype(np.uint8)).save(paths["gray_png"])
    Image.fromarray(np.round(rgb * 255).astype(np.uint8)).save(paths["jpeg"], quality=90)
    Image.fromarray((100 + np.round(_pattern(100, 9) * 3900)).astype(np.uint16)).save(paths["png16"])
    pydicom.dcmread(get_testdata_file("CT_small.dcm")).save_as(paths["dicom"])
    return {name: str(path) for name, path in paths.items()}


def _tf_images(image_set, **kwargs) -> np.ndarray:
    dataset = data.make_dataset(image_set, batch_size=len(image_set), shuffle=False, cache=False, **kwargs)
    return next(iter(dataset))[0].numpy()


def _max_diff(a, b) -> int:
    assert a.shape == b.shape and a.dtype == b.dtype == np.uint8
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


CASES = [  # 100 px → 32 px (and 128 px DICOM → 32 px), and up to 150×140, as make_dataset reads them
    {"image_size": (32, 32), "interpolation": "bilinear"},
    {"image_size": (32, 32), "interpolation": "nearest"},
    {"image_size": (150, 140), "interpolation": "bilinear"},
    {"image_size": (150, 140), "interpolation": "nearest"},
]  # bicubic, area, lanczos3 and antialias=False: against tf.image.resize in the test after this one


def _case_id(case) -> str:
    return f"{case['interpolation']}-{case['image_size'][0]}" + ("" if case.get("antialias", True) else "-noaa")


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_same_pixels_as_make_dataset_within_one_grey_level(files, case):
    names = list(FORMATS)
    rgb_set = data.ImageSet(paths=[files[n] for n in names], labels=[0, 1, 0, 1, 0], class_names=("a", "b"))
    gray_names = ["gray_png", "png16", "dicom"]  # an all-grey set is read with one channel by both paths
    gray_set = data.ImageSet(paths=[files[n] for n in gray_names], labels=[0, 1, 0], class_names=("a", "b"))
    for image_set, channels, members in ((rgb_set, 3, names), (gray_set, 1, gray_names)):
        expected = _tf_images(image_set, **case)
        sequence = data.ImageSequence(image_set, batch_size=len(image_set), shuffle=False, cache=False, **case)
        assert sequence.channels == channels
        images, labels = sequence[0]
        np.testing.assert_array_equal(labels, np.eye(2, dtype=np.float32)[image_set.labels])
        settings = data.ReadSettings(case["image_size"], case["interpolation"], case.get("antialias", True))
        for k, name in enumerate(members):
            diff = _max_diff(images[k], expected[k])
            assert diff <= 1, f"{name} ({channels} channel(s)), {case}: max |numpy - tf.data| = {diff}"
            alone = read_image_uint8(files[name], settings, channels=channels)
            np.testing.assert_array_equal(np.repeat(alone, 3 // channels, axis=-1), images[k])


def test_16bit_colour_and_grey_alpha_pngs_keep_their_range_without_tensorflow(tmp_path):
    """Pillow reads these as 8 bits; the reader inflates and unfilters them itself (Sub, Up, Average, Paeth
    rows occur)."""
    import tensorflow as tf

    paths = []
    for channels in (3, 4, 2):
        wide = np.stack([_pattern(60, 10 + k) * 50000 + 3000 for k in range(channels)], axis=-1).astype(np.uint16)
        paths.append(str(tmp_path / f"deep{channels}.png"))
        Path(paths[-1]).write_bytes(tf.io.encode_png(wide).numpy())
    image_set = data.ImageSet(paths=paths, labels=[0, 1, 0], class_names=("a", "b"))
    for sixteen_bit in ("range", "full"):
        expected = _tf_images(image_set, image_size=(32, 32), sixteen_bit=sixteen_bit)
        settings = data.ReadSettings((32, 32), sixteen_bit=sixteen_bit)
        for k, path in enumerate(paths):
            assert _max_diff(read_image_uint8(path, settings), expected[k]) <= 1, (path, sixteen_bit)


def test_resize_matches_tf_image_resize_on_random_images():
    """Noise is the hardest case for a filter; every method, both antialias settings, odd sizes both ways."""
    from radtransfer.data.decode import ReadSettings
    from radtransfer.data.tf_data.decode import resize_image

    rng = np.random.default_rng(3)
    for shape in ((37, 53, 3), (61, 29, 1)):
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        for size in ((16, 20), (90, 70)):
            for method in ("bilinear", "nearest", "bicubic", "area", "lanczos3"):
                for antialias in (True, False):
                    expected = resize_image(image, ReadSettings(size, method, antialias)).numpy()
                    got = resize_uint8(image, size, method, antialias and method != "nearest")
                    assert _max_diff(got, expected) <= 1, (shape, size, method, antialias)


# -- order --------------------------------------------------------------------------------------------------------


def _numbered(n: int = 10) -> data.ImageSet:
    """In-memory images whose pixel value is their index, so a batch says which images it holds."""
    images = [np.full((4, 4, 3), 10 * i, dtype=np.uint8) for i in range(n)]
    return data.ImageSet(paths=None, images=images, labels=[i % 3 for i in range(n)], class_names=("a", "b", "c"))


def _epoch(sequence) -> list:
    seen = []
    for b in range(len(sequence)):
        images, labels = sequence[b]
        indices = (images[:, 0, 0, 0] // 10).tolist()
        np.testing.assert_array_equal(labels.argmax(axis=1), [i % 3 for i in indices])
        seen += indices
    return seen


def test_order_is_a_function_of_seed_and_epoch_and_covers_every_image_once():
    image_set = _numbered()
    sequence = data.ImageSequence(image_set, image_size=(4, 4), batch_size=3, seed=11, cache=True)
    assert len(sequence) == 4 and sequence[3][0].shape == (1, 4, 4, 3)  # the last, smaller batch is kept
    first = _epoch(sequence)
    assert sorted(first) == list(range(10))
    sequence.on_epoch_end()  # as Keras calls it before the first epoch: no epoch has begun, nothing changes
    assert _epoch(sequence) == first
    sequence.on_epoch_begin()
    sequence.on_epoch_end()
    second = _epoch(sequence)
    assert sorted(second) == list(range(10)) and second != first
    assert first == data.epoch_order(10, 11, 0).tolist() and second == data.epoch_order(10, 11, 1).tolist()
    resumed = data.ImageSequence(image_set, image_size=(4, 4), batch_size=3, seed=11, epoch=1, cache=False)
    assert _epoch(resumed) == second  # epoch 1 without epoch 0 before it, and without a cache
    resumed.set_epoch(0)
    assert _epoch(resumed) == first
    other_seed = data.ImageSequence(image_set, image_size=(4, 4), batch_size=3, seed=12, cache=True)
    assert _epoch(other_seed) != first
    plain = data.ImageSequence(image_set, image_size=(4, 4), batch_size=3, shuffle=False, drop_remainder=True)
    assert len(plain) == 3 and _epoch(plain) == list(range(9))
    with pytest.raises(IndexError, match="out of range"):
        plain[3]
    with pytest.raises(ValueError, match="epoch="):
        plain.set_epoch(-1)


def test_keras_reads_it_with_worker_threads():
    sequence = data.ImageSequence(_numbered(), image_size=(4, 4), batch_size=4, seed=5, shuffle=True, workers=2)
    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

    adapter = PyDatasetAdapter(sequence, shuffle=False)
    for epoch in range(2):
        adapter.on_epoch_begin()
        seen = [int(v) // 10 for images, _ in adapter.get_numpy_iterator() for v in images[:, 0, 0, 0]]
        adapter.on_epoch_end()
        assert seen == data.epoch_order(10, 5, epoch).tolist()


# -- the cache ------------------------------------------------------------------------------------------------


def test_disk_cache_is_memory_mapped_published_once_and_reused(files, tmp_path, monkeypatch):
    image_set = data.ImageSet(paths=[files[n] for n in FORMATS], labels=[0, 1, 0, 1, 0], class_names=("a", "b"))
    kwargs = {"image_size": (24, 24), "batch_size": 5, "shuffle": False}
    in_memory = data.ImageSequence(image_set, cache=True, **kwargs)
    on_disk = data.ImageSequence(image_set, cache=str(tmp_path / "c"), **kwargs)
    assert on_disk.cache.mode == "disk" and is_complete(on_disk.cache.path)
    assert isinstance(on_disk._images, np.memmap) and not on_disk._images.flags.writeable
    np.testing.assert_array_equal(on_disk[0][0], in_memory[0][0])
    published = sorted(p.name for p in tmp_path.iterdir())
    assert [p for p in published if ".tmp-" in p] == []
    assert {Path(on_disk.cache.path).name + s for s in (".index", ARRAY_SUFFIX)} <= set(published)

    def no_reads(*args, **kwargs):
        raise AssertionError("a published cache is read, not the files")

    monkeypatch.setattr("radtransfer.data.py_dataset.sequence.read_image_uint8", no_reads)
    again = data.ImageSequence(image_set, cache=str(tmp_path / "c"), **kwargs)
    assert again.cache.path == on_disk.cache.path
    np.testing.assert_array_equal(again[0][0], in_memory[0][0])
    import pickle

    worker_copy = pickle.loads(pickle.dumps(again))  # what a worker process gets: the path, not the pixels
    assert worker_copy.__dict__["_images"] is None
    np.testing.assert_array_equal(worker_copy[0][0], in_memory[0][0])


def test_cache_auto_follows_the_tf_data_rule(tmp_path):
    """cache="auto": memory within the budget, else a file in cache_dir, named apart from tf.data's cache."""
    image_set = _numbered()
    small = data.ImageSequence(image_set, image_size=(4, 4), seed=4, memory_budget="1MiB", cache_dir=tmp_path)
    assert small.cache.mode == "memory" and "fits the memory budget" in small.cache.reason
    large = data.ImageSequence(image_set, image_size=(4, 4), seed=4, memory_budget=0, cache_dir=tmp_path)
    assert large.cache.mode == "disk" and Path(large.cache.path).parent == tmp_path
    assert large.cache.path.endswith("-npy") and is_complete(large.cache.path)
    np.testing.assert_array_equal(large[0][0], small[0][0])


def _choice(tmp_path) -> CacheChoice:
    return CacheChoice("disk", "test", 8 * 6 * 6 * 3, str(tmp_path / "cache"))


def _read(i):
    return np.full((6, 6, 3), i, dtype=np.uint8)


def test_a_fill_that_fails_midway_leaves_nothing_that_reads_as_a_cache(tmp_path):
    choice = _choice(tmp_path)

    def failing(i):
        if i == 5:
            raise OSError("disk went away")
        return _read(i)

    with pytest.raises(OSError, match="went away"):
        cached_images(8, (6, 6, 3), failing, choice, workers=1)
    assert not is_complete(choice.path) and list(tmp_path.iterdir()) in ([], [tmp_path / "cache.lock"])
    with pytest.raises(ValueError, match="delete"):
        open_array_cache(choice.path)
    array = cached_images(8, (6, 6, 3), _read, choice)
    np.testing.assert_array_equal(array[:, 0, 0, 0], np.arange(8))


def test_a_writer_killed_midway_is_never_read_and_is_cleaned_up(tmp_path):
    """A process dies (os._exit, no cleanup) halfway through its fill: its private files stay, no reader takes
    them for a cache, and the next fill removes them and publishes a whole one."""
    choice = _choice(tmp_path)
    script = f"""
        import os, numpy as np
        from radtransfer.data.py_dataset.array_cache import cached_images
        from radtransfer.data.cache import CacheChoice
        def read(i):
            if i == 5:
                os._exit(3)
            return np.full((6, 6, 3), i, dtype=np.uint8)
        cached_images(8, (6, 6, 3), read, CacheChoice("disk", "t", 864, {choice.path!r}), workers=1)
    """
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=REPO, timeout=60)
    assert done.returncode == 3
    left = [p.name for p in tmp_path.iterdir()]
    assert any(".tmp-" in name for name in left) and not is_complete(choice.path)
    array = cached_images(8, (6, 6, 3), _read, choice)
    np.testing.assert_array_equal(array[:, 0, 0, 0], np.arange(8))
    assert not any(".tmp-" in p.name for p in tmp_path.iterdir())
    assert json.loads(Path(choice.path + ".index").read_text())["shape"] == [8, 6, 6, 3]


# -- without TensorFlow -------------------------------------------------------------------------------------------

BLOCK_TF = """
import sys
sys.modules["tensorflow"] = None  # import tensorflow raises ImportError, importlib.util.find_spec finds nothing
"""
NO_TF_LOADED = 'assert sys.modules["tensorflow"] is None and not any(m.startswith("tensorflow.") for m in sys.modules)'


def _run_without_tensorflow(script: str, **env) -> None:
    code = BLOCK_TF + textwrap.dedent(script) + NO_TF_LOADED + "\n"
    environment = {**os.environ, "PYTHONPATH": str(REPO), **env}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=environment, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_the_read_path_runs_where_tensorflow_cannot_be_imported_and_gives_the_same_bytes(files, tmp_path):
    paths = [files[n] for n in FORMATS]
    out = tmp_path / "images.npy"
    script = f"""
        import numpy as np
        from radtransfer.data import ReadSettings, read_image_uint8
        from radtransfer.data.py_dataset.array_cache import cached_images
        from radtransfer.data.cache import CacheChoice
        settings = ReadSettings((32, 32))
        paths = {paths!r}
        read = lambda i: read_image_uint8(paths[i], settings, channels=3)
        array = cached_images(len(paths), (32, 32, 3), read, CacheChoice("disk", "t", 0, {str(tmp_path / "c")!r}))
        np.save({str(out)!r}, np.asarray(array))
    """
    _run_without_tensorflow(script)
    here = np.stack([read_image_uint8(p, data.ReadSettings((32, 32)), channels=3) for p in paths])
    assert np.load(out).tobytes() == here.tobytes()


@pytest.mark.backends  # make test-backends: JAX and PyTorch start in processes without TensorFlow
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_keras_trains_on_image_sequence_without_tensorflow(files, tmp_path, backend):
    names = list(FORMATS)
    out = tmp_path / "batch.npy"
    script = f"""
        import numpy as np
        from radtransfer import data
        image_set = data.ImageSet(paths={[files[n] for n in names]!r}, labels=[0, 1, 0, 1, 0], class_names=("a", "b"))
        train = data.ImageSequence(image_set, image_size=(32, 32), batch_size=2, seed=1, cache=True, workers=2)
        import keras
        assert keras.backend.backend() == {backend!r}
        model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(),
                                  keras.layers.Dense(2, activation="softmax")])
        model.compile("adam", "categorical_crossentropy")  # uint8 inputs are cast by Dense
        seen = []

        class Orders(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                seen.append((epoch, train.epoch, train.order.tolist()))

        callbacks = [train.epoch_callback(), Orders()]
        model.fit(train, epochs=2, shuffle=False, verbose=0, callbacks=callbacks)
        model.fit(train, epochs=4, initial_epoch=2, shuffle=False, verbose=0, callbacks=callbacks)  # resumed
        assert seen == [(e, e, data.epoch_order(5, 1, e).tolist()) for e in range(4)], seen
        plain = data.ImageSequence(image_set, image_size=(32, 32), batch_size=5, shuffle=False, cache=False)
        np.save({str(out)!r}, plain[0][0])
    """
    _run_without_tensorflow(script, KERAS_BACKEND=backend)
    here = data.ImageSequence(image_set_of(files, names), image_size=(32, 32), batch_size=5, shuffle=False)[0][0]
    assert np.load(out).tobytes() == here.tobytes()


def image_set_of(files, names) -> data.ImageSet:
    return data.ImageSet(paths=[files[n] for n in names], labels=[i % 2 for i in range(len(names))], class_names="ab")

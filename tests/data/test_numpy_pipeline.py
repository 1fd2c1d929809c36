"""The backend-free image path: the pixels of make_dataset without TensorFlow, and a uint8 cache published whole."""

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
from radtransfer.data.array_cache import cached_images, open_array_cache
from radtransfer.data.cache import CacheChoice, is_complete
from radtransfer.data.numpy_read import read_image_uint8, resize_uint8

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
    {"image_size": (32, 40), "interpolation": "bilinear", "antialias": False},
    {"image_size": (32, 32), "interpolation": "bicubic"},
    {"image_size": (32, 32), "interpolation": "area"},
    {"image_size": (48, 48), "interpolation": "lanczos3"},
]


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
        settings = data.ReadSettings(case["image_size"], case["interpolation"], case.get("antialias", True))
        for k, name in enumerate(members):
            image = np.repeat(read_image_uint8(files[name], settings, channels=channels), 3 // channels, axis=-1)
            diff = _max_diff(image, expected[k])
            assert diff <= 1, f"{name} ({channels} channel(s)), {case}: max |numpy - tf.data| = {diff}"


def test_resize_matches_tf_image_resize_on_random_images():
    """Noise is the hardest case for a filter; every method, both antialias settings, odd sizes both ways."""
    from radtransfer.data.decode import ReadSettings, resize_image

    rng = np.random.default_rng(3)
    for shape in ((37, 53, 3), (61, 29, 1)):
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        for size in ((16, 20), (90, 70)):
            for method in ("bilinear", "nearest", "bicubic", "area", "lanczos3"):
                for antialias in (True, False):
                    expected = resize_image(image, ReadSettings(size, method, antialias)).numpy()
                    got = resize_uint8(image, size, method, antialias and method != "nearest")
                    assert _max_diff(got, expected) <= 1, (shape, size, method, antialias)


# -- the cache ------------------------------------------------------------------------------------------------


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
        from radtransfer.data.array_cache import cached_images
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
        from radtransfer.data.array_cache import cached_images
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

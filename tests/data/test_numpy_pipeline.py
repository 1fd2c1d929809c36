"""The backend-free image path: the pixels of make_dataset without TensorFlow."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from radtransfer import data
from radtransfer.data.numpy_read import read_image_uint8, resize_uint8

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

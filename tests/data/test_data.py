"""The input pipeline: sources, formats, bad input, splits, augmentation."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from PIL import Image

import radtransfer as rt
from radtransfer import data, datasets
from radtransfer.data.augment import Augment
from radtransfer.data.tf_data.augment import apply_transforms, transform_matrices


def _write(path, array, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)
    return path


def _first_batch(image_set, **kwargs):
    kwargs.setdefault("image_size", (16, 16))
    kwargs.setdefault("batch_size", len(image_set))
    kwargs.setdefault("shuffle", False)
    images, labels = next(iter(data.make_dataset(image_set, **kwargs)))
    return images.numpy(), labels.numpy()


@pytest.fixture(scope="module")
def brain(tmp_path_factory):
    root = tmp_path_factory.mktemp("brain")
    datasets.synthetic_brain_mri(root, n_patients=24, slices_per_patient=3, image_size=48, seed=1)
    return root


@pytest.fixture(scope="module")
def brain_set(brain):
    return datasets.load_synthetic_brain_mri(brain)


# -- sources -----------------------------------------------------------------------------------


def test_from_directory_reads_class_folders(brain):
    image_set = data.from_directory(brain / "images")
    assert image_set.class_names == ("glioma", "meningioma", "no_tumor", "pituitary")
    assert len(image_set) == 72 and image_set.class_counts() == [18, 18, 18, 18]
    assert all(image_set.class_names[label] in p for p, label in zip(image_set.paths, image_set.labels))


def test_from_directory_errors(tmp_path):
    with pytest.raises(data.DataSourceError, match="Image folder not found"):
        data.from_directory(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(data.DataSourceError, match="no class sub-folders"):
        data.from_directory(tmp_path / "empty")
    _write(tmp_path / "set" / "a" / "1.png", np.zeros((4, 4), np.uint8))
    (tmp_path / "set" / "b").mkdir()
    with pytest.raises(data.DataSourceError, match="Class 'b' has no images"):
        data.from_directory(tmp_path / "set")


def test_from_csv_reference_layout_relative_paths_and_patients(tmp_path):
    for i in range(4):
        _write(tmp_path / "imgs" / f"{i}.png", np.full((8, 8), 40 * i, np.uint8))
    pd.DataFrame(
        {
            "filename": [f"imgs/{i}.png" for i in range(4)],
            "acl_label": ["yes", "no", "no", "yes"],
            "pid": ["a", "a", "b", "c"],
        }
    ).to_csv(tmp_path / "acl.csv", index=False)
    image_set = data.from_csv(tmp_path / "acl.csv", image_col="filename", label_col="acl_label", patient_col="pid")
    assert image_set.class_names == ("no", "yes")
    assert image_set.labels.tolist() == [1, 0, 0, 1]
    assert image_set.paths[0] == str(tmp_path / "imgs" / "0.png")
    assert image_set.patient_ids.tolist() == ["a", "a", "b", "c"]
    fixed = data.from_csv(tmp_path / "acl.csv", image_col="filename", label_col="acl_label", class_names=["yes", "no"])
    assert fixed.labels.tolist() == [0, 1, 1, 0]
    rooted = data.from_csv(
        pd.read_csv(tmp_path / "acl.csv"), image_col="filename", label_col="acl_label", root=tmp_path
    )
    assert rooted.paths[1] == str(tmp_path / "imgs" / "1.png")


def test_from_csv_errors(tmp_path):
    pd.DataFrame({"img_dir": ["a.png"], "label": ["x"]}).to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(data.DataSourceError, match=r"Column 'image' \(image_col\) not found.*None of its columns"):
        data.from_csv(tmp_path / "m.csv", image_col="image", label_col="label")  # a.png is not here: no suggestion
    Image.new("L", (4, 4)).save(tmp_path / "a.png")
    with pytest.raises(
        data.DataSourceError,
        match=r"Column 'image' \(image_col\) not found.*hold paths of files here: pass image_col='img_dir'",
    ):
        data.from_csv(tmp_path / "m.csv", image_col="image", label_col="label")
    with pytest.raises(data.DataSourceError, match="not among the training classes"):
        data.from_csv(tmp_path / "m.csv", image_col="img_dir", label_col="label", class_names=["y", "z"])
    with pytest.raises(data.DataSourceError, match="CSV manifest not found"):
        data.from_csv(tmp_path / "missing.csv")


def test_from_tfds_with_mock_data():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=6):
        image_set = data.from_tfds("mnist", split="train")
    assert len(image_set) == 6 and image_set.paths is None
    assert image_set.image_names()[:2] == ["mnist/train#0", "mnist/train#1"]
    assert image_set.subset([4]).image_names() == ["mnist/train#4"]
    assert image_set.class_names == tuple(str(i) for i in range(10))
    images, labels = _first_batch(image_set, image_size=(32, 32))
    assert images.shape == (6, 32, 32, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(images[..., 0], images[..., 2])  # grayscale → 3 identical channels
    assert labels.shape == (6, 10)


def test_from_tfds_unknown_feature():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=2):
        with pytest.raises(data.DataSourceError, match="no feature 'img'"):
            data.from_tfds("mnist", image_key="img")


# -- formats -----------------------------------------------------------------------------------


def _single(path):
    image_set = data.ImageSet(paths=[str(path)], labels=[0], class_names=("a",))
    return _first_batch(image_set, image_size=(8, 8), interpolation="nearest")[0][0]


def test_png_8bit_jpeg_bmp_grayscale_and_rgba(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    np.testing.assert_array_equal(_single(_write(tmp_path / "a.png", rgb)), rgb)
    np.testing.assert_array_equal(_single(_write(tmp_path / "a.bmp", rgb)), rgb)
    gray = rgb[..., 0]
    np.testing.assert_array_equal(_single(_write(tmp_path / "g.png", gray)), np.repeat(gray[..., None], 3, -1))
    rgba = np.concatenate([rgb, np.full((8, 8, 1), 7, np.uint8)], axis=-1)
    np.testing.assert_array_equal(_single(_write(tmp_path / "rgba.png", rgba)), rgb)
    jpeg = _single(_write(tmp_path / "a.jpg", np.full((8, 8, 3), 120, np.uint8), quality=95))
    assert np.abs(jpeg.astype(int) - 120).max() <= 2


def test_16bit_png_keeps_its_range(tmp_path):
    values = np.linspace(0, 4095, 64).reshape(8, 8).astype(np.uint16)  # 12-bit data in a 16-bit PNG
    out = _single(_write(tmp_path / "deep.png", values))[..., 0]
    expected = np.round(values / 4095 * 255).astype(np.uint8)
    np.testing.assert_array_equal(out, expected)
    assert out.max() == 255 and len(np.unique(out)) == 64  # not truncated, not saturated
    full = data.ImageSet(paths=[str(tmp_path / "deep.png")], labels=[0], class_names=("a",))
    out_full = _first_batch(full, image_size=(8, 8), interpolation="nearest", sixteen_bit="full")[0][0, ..., 0]
    np.testing.assert_array_equal(out_full, np.round(values / 257).astype(np.uint8))


def test_dicom_from_pydicom_test_files(tmp_path):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    ct_path = get_testdata_file("CT_small.dcm")
    ct = pydicom.dcmread(ct_path)
    hu = ct.pixel_array * float(ct.RescaleSlope) + float(ct.RescaleIntercept)
    image = data.read_dicom(ct_path, window=(40, 400))
    assert image.shape == (*hu.shape, 3) and image.dtype == np.uint8
    # DICOM PS3.3 C.11.2.1.2.1 (linear window): ((x - (c - 0.5)) / (w - 1) + 0.5), clipped to [0, 1].
    expected = np.round(np.clip((hu - 39.5) / 399 + 0.5, 0, 1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(image[..., 0], expected)
    np.testing.assert_array_equal(image[..., 0], image[..., 1])

    ct.PhotometricInterpretation = "MONOCHROME1"
    inverted_path = tmp_path / "mono1.dcm"
    ct.save_as(inverted_path)
    np.testing.assert_array_equal(data.read_dicom(inverted_path, window=(40, 400)), 255 - image)

    mr_path = get_testdata_file("MR_small.dcm")
    image_set = data.ImageSet(paths=[ct_path, mr_path], labels=[0, 1], class_names=("ct", "mr"))
    images, _ = _first_batch(image_set, image_size=(32, 32), dicom_window=(40, 400))
    assert images.shape == (2, 32, 32, 3) and images[1].max() > 0


# -- bad input ---------------------------------------------------------------------------------


def _bad_set(tmp_path):
    good = _write(tmp_path / "good.png", np.zeros((8, 8), np.uint8))
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(good.read_bytes()[:40])
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    paths = [good, tmp_path / "missing.png", truncated, text]
    return data.ImageSet(paths=[str(p) for p in paths], labels=[0, 0, 1, 1], class_names=("a", "b"))


def test_bad_files_are_listed_before_the_first_epoch(tmp_path):
    with pytest.raises(data.BadImagesError) as info:
        data.make_dataset(_bad_set(tmp_path), image_size=(8, 8))
    message = str(info.value)
    assert "3 of 4 image files cannot be read" in message
    assert "missing.png: file not found" in message
    assert "cut.png: " in message and "notes.png: " in message and "good.png" not in message
    assert "Traceback" not in message and len(info.value.bad) == 3


def test_bad_files_can_be_skipped(tmp_path):
    with pytest.warns(UserWarning, match="Skipping 3 unreadable"):
        dataset = data.make_dataset(_bad_set(tmp_path), image_size=(8, 8), on_bad="skip", batch_size=8)
    images, labels = next(iter(dataset))
    assert images.shape[0] == 1


def test_bad_file_list_is_capped(tmp_path):
    image_set = data.ImageSet(
        paths=[str(tmp_path / f"{i}.png") for i in range(25)], labels=[0] * 25, class_names=("a",)
    )
    with pytest.raises(data.BadImagesError, match=r"and 5 more"):
        data.make_dataset(image_set)


def test_image_size_below_backbone_minimum(brain_set):
    with pytest.raises(ValueError, match="below InceptionV3's minimum of 75×75"):
        data.make_dataset(brain_set, image_size=(64, 64), backbone="inception_v3")


def test_empty_image_set():
    with pytest.raises(ValueError, match="empty"):
        data.make_dataset(data.ImageSet(paths=[], labels=[], class_names=("a",)))


# -- splits ------------------------------------------------------------------------------------


def test_patient_split_properties(brain_set):
    train, val, test = brain_set.split(val=0.10, test=0.15, by="patient", seed=726)
    assert len(train) + len(val) + len(test) == len(brain_set)
    data.check_no_leakage(train, val, test)
    for part in (train, val, test):
        assert all(count > 0 for count in part.class_counts())  # stratified: every class in every part
    patients = lambda s: set(s.patient_ids)
    n = len(patients(brain_set))
    assert abs(len(patients(test)) - 0.15 * n) <= 4 and abs(len(patients(val)) - 0.10 * n) <= 4
    again = brain_set.split(val=0.10, test=0.15, seed=726)
    assert [list(p.paths) for p in again] == [list(p.paths) for p in (train, val, test)]
    other = brain_set.split(val=0.10, test=0.15, seed=1)
    assert set(other[2].patient_ids) != set(test.patient_ids)


def test_kfold_puts_every_patient_in_exactly_one_test_fold(brain_set):
    folds = list(brain_set.kfold(k=4, by="patient", seed=726))
    assert len(folds) == 4
    tested = [p for _, _, test in folds for p in set(test.patient_ids)]
    assert sorted(tested) == sorted(set(brain_set.patient_ids))
    for train, val, test in folds:
        data.check_no_leakage(train, val, test)
        assert len(train) + len(val) + len(test) == len(brain_set)
        assert all(c > 0 for c in test.class_counts())


def test_split_without_patients_warns_and_splits_by_image(brain_set):
    anonymous = data.ImageSet(paths=brain_set.paths, labels=brain_set.labels, class_names=brain_set.class_names)
    with pytest.warns(UserWarning, match="may leak"):
        train, val, test = anonymous.split()
    assert len(train) + len(val) + len(test) == len(anonymous)


def test_leak_check_raises(brain_set):
    with pytest.raises(data.LeakageError, match="leaks"):
        data.check_no_leakage(brain_set.subset([0, 1]), brain_set.subset([1, 2]))


# -- the pipeline and augmentation -------------------------------------------------------------


def test_dtypes_shapes_ranges_and_stable_order(brain_set):
    images, labels = _first_batch(brain_set, image_size=(40, 40))
    assert images.dtype == np.uint8 and images.shape == (len(brain_set), 40, 40, 3)
    assert labels.dtype == np.float32 and labels.shape == (len(brain_set), 4)
    np.testing.assert_array_equal(labels.argmax(1), brain_set.labels)
    assert images.max() > 200  # the 12-bit range was stretched, not truncated


def test_a_file_cache_prefix_never_serves_one_split_to_another(brain_set, tmp_path):
    """TensorFlow reuses any cache file of a prefix; the first wave passed one prefix to every split, so
    validation and test were read from the training images. Cache files are now named by content."""
    train, val, test = brain_set.split(val=0.2, test=0.2, seed=726)
    prefix = tmp_path / "cache" / "grid"
    first = [
        b[0].numpy()
        for b in rt.data.make_dataset(train, image_size=(32, 32), batch_size=64, shuffle=False, cache=prefix)
    ]
    cached = np.concatenate(
        [
            b[0].numpy()
            for b in rt.data.make_dataset(test, image_size=(32, 32), batch_size=64, shuffle=False, cache=prefix)
        ]
    )
    direct = np.concatenate(
        [
            b[0].numpy()
            for b in rt.data.make_dataset(test, image_size=(32, 32), batch_size=64, shuffle=False, cache=False)
        ]
    )
    assert cached.shape == direct.shape and np.array_equal(cached, direct)
    assert len({p.name.split(".")[0] for p in prefix.parent.glob("grid_*.index")}) == 2
    again = np.concatenate(
        [
            b[0].numpy()
            for b in rt.data.make_dataset(train, image_size=(32, 32), batch_size=64, shuffle=False, cache=prefix)
        ]
    )
    assert np.array_equal(again, np.concatenate(first))


def test_epochs_are_drawn_from_seed_and_epoch_alone(brain_set):
    """The same epoch of a stream is the same whenever it is drawn (a resumed run replays nothing of
    epoch 0), and different epochs differ."""
    stream = rt.data.stream_of(
        rt.data.make_dataset(brain_set, image_size=(32, 32), batch_size=8, augment="radimagenet", seed=3)
    )

    def draw(epoch):
        return np.concatenate([b[0].numpy() for b in stream.epoch(epoch, seed=11)])

    third = draw(2)
    assert np.array_equal(draw(2), third) and not np.array_equal(draw(1), third)
    assert np.array_equal(np.concatenate([b[0].numpy() for b in stream.epoch(2, seed=11)]), third)


def test_the_same_pixels_and_labels_are_read_in_the_same_order_from_files_under_any_name_or_memory(brain_set, tmp_path):
    """A shuffled set is read (and cached) in a fixed order drawn from its size and labels only, then shuffled per
    epoch from (seed, epoch): the same images in the same set order give the same batches whatever their names or
    format (the order used to depend on the paths, so PNG, DICOM and in-memory copies of one set trained
    differently)."""
    part = brain_set.subset(np.arange(24))
    renamed = []
    for k, path in enumerate(part.paths):
        target = tmp_path / f"other_{23 - k:02d}.png"
        target.write_bytes(Path(path).read_bytes())
        renamed.append(str(target))
    pixels = [np.asarray(Image.open(p)) for p in part.paths]
    kinds = [
        part,
        rt.data.ImageSet(paths=renamed, labels=part.labels, class_names=part.class_names),
        rt.data.ImageSet(paths=None, images=pixels, labels=part.labels, class_names=part.class_names),
    ]
    epochs = [
        np.concatenate(
            [
                b[0].numpy()
                for b in rt.data.stream_of(
                    rt.data.make_dataset(kind, image_size=(32, 32), batch_size=8, augment=None, seed=5)
                ).epoch(1, seed=5)
            ]
        )
        for kind in kinds
    ]
    assert np.array_equal(epochs[0], epochs[1]) and np.array_equal(epochs[0], epochs[2])
    assert not np.array_equal(
        epochs[0],
        np.concatenate(
            [b[0].numpy() for b in rt.data.make_dataset(part, image_size=(32, 32), batch_size=8, shuffle=False)]
        ),
    )  # it is shuffled


def test_no_augmentation_is_identity(brain_set):
    plain, _ = _first_batch(brain_set)
    off = Augment(rotation=0, width_shift=0, height_shift=0, shear=0, zoom=(1, 1), horizontal_flip=False)
    assert off.is_identity
    np.testing.assert_array_equal(_first_batch(brain_set, augment=off)[0], plain)
    # A transform with every parameter at its neutral value leaves the pixels unchanged.
    transforms = transform_matrices([0.0], [0.0], [0.0], [0.0], [1.0], [1.0], [False], [False], 16, 16)
    np.testing.assert_array_equal(apply_transforms(plain[:1], transforms, off).numpy(), plain[:1])


def test_augmentation_differs_between_epochs_despite_cache_and_is_reproducible(brain_set):
    def epochs(seed):
        dataset = data.make_dataset(
            brain_set,
            image_size=(32, 32),
            batch_size=len(brain_set),
            shuffle=False,
            augment="radimagenet",
            cache=True,
            seed=seed,
        )
        return [next(iter(dataset))[0].numpy() for _ in range(2)]

    first, second = epochs(5)
    assert not np.array_equal(first, second)
    again = epochs(5)
    np.testing.assert_array_equal(first, again[0])
    np.testing.assert_array_equal(second, again[1])


def test_augmentation_is_bounded(brain_set):
    plain, _ = _first_batch(brain_set, image_size=(32, 32))
    augmented, _ = _first_batch(brain_set, image_size=(32, 32), augment="radimagenet", seed=0)
    # fill "nearest" + bilinear: no value outside the image's own range; the image moves but stays similar.
    assert augmented.min() >= plain.min() and augmented.max() <= plain.max()
    change = np.abs(augmented.astype(float) - plain).mean()
    assert 0 < change < 40


def test_random_parameters_stay_within_the_reference_ranges():
    from radtransfer.data.tf_data.augment import random_transforms

    params = Augment(rotation=10, width_shift=0.1, height_shift=0.1, shear=0, zoom=(0.9, 1.1), horizontal_flip=False)
    t = random_transforms(2000, 100, 100, params, tf.constant([1, 2], tf.int64)).numpy()
    # Without shear, the 2x2 part of the matrix is rotation·zoom: its determinant is zx·zy.
    det = t[:, 0] * t[:, 4] - t[:, 1] * t[:, 3]
    assert det.min() >= 0.81 - 1e-3 and det.max() <= 1.21 + 1e-3
    angle = np.degrees(np.arctan2(t[:, 3], t[:, 0]))  # rotation·zoom: [[cos·zx, -sin·zy], [sin·zx, cos·zy]]
    # Beyond the centring, the translation is R·(tx, ty): its length is that of the shift, ≤ 10·√2 px.
    shift_x = t[:, 2] - (49.5 - (t[:, 0] * 49.5 + t[:, 1] * 49.5))
    shift_y = t[:, 5] - (49.5 - (t[:, 3] * 49.5 + t[:, 4] * 49.5))
    length = np.hypot(shift_x, shift_y)
    assert length.max() <= 10.0 * math.sqrt(2) + 1e-3 and length.max() > 10.0
    assert np.abs(angle).max() <= 10.0 + 1e-3 and np.abs(angle).max() > 9.0


def test_fused_transform_matches_keras2_image_data_generator():
    from tf_keras.preprocessing.image import ImageDataGenerator

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:64, 0:64]
    image = (127 + 100 * np.sin(x / 6.0) * np.cos(y / 9.0))[..., None].repeat(3, -1).astype(np.float32)
    image += rng.uniform(-5, 5, image.shape).astype(np.float32)
    generator = ImageDataGenerator(fill_mode="nearest")
    cases = [
        dict(theta=8.0, tx=3.0, ty=-5.0, shear=0.1, zx=0.93, zy=1.07, flip_horizontal=True),
        dict(theta=-10.0, tx=-6.0, ty=2.0, shear=-0.1, zx=1.1, zy=0.9, flip_horizontal=False),
    ]
    for case in cases:
        expected = generator.apply_transform(image.copy(), case)
        transforms = transform_matrices(
            [math.radians(case["theta"])],
            [case["tx"]],
            [case["ty"]],
            [math.radians(case["shear"])],
            [case["zx"]],
            [case["zy"]],
            [case["flip_horizontal"]],
            [False],
            64,
            64,
        )
        actual = apply_transforms(image[None], transforms, Augment()).numpy()[0]
        inner = (slice(4, -4), slice(4, -4))
        assert np.abs(actual[inner] - expected[inner]).mean() < 0.5


def test_unknown_augmentation_name(brain_set):
    with pytest.raises(ValueError, match='Did you mean "radimagenet"'):
        data.make_dataset(brain_set, augment="radimagenett")


def test_synthetic_set_is_reproducible_and_has_masks(tmp_path):
    first = datasets.synthetic_brain_mri(tmp_path / "a", n_patients=4, slices_per_patient=2, image_size=32, seed=3)
    second = datasets.synthetic_brain_mri(tmp_path / "b", n_patients=4, slices_per_patient=2, image_size=32, seed=3)
    frame = pd.read_csv(first)
    assert list(frame.columns) == ["path", "label", "patient_id", "slice", "mask_path"]
    for rel in frame["path"]:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
        assert Image.open(tmp_path / "a" / rel).mode.startswith("I")  # 16-bit
    masks = {row.label: np.asarray(Image.open(tmp_path / "a" / row.mask_path)).max() for row in frame.itertuples()}
    assert masks["no_tumor"] == 0 and masks["glioma"] == 255 and masks["pituitary"] == 255
    assert second.exists()


def test_mixed_gray_and_rgb_set_keeps_colour(tmp_path):
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0] = 200  # pure red
    gray = np.full((8, 8), 90, np.uint8)
    paths = [_write(tmp_path / "c.png", rgb), _write(tmp_path / "g.png", gray)]
    image_set = data.ImageSet(paths=[str(p) for p in paths], labels=[0, 0], class_names=("a",))
    images, _ = _first_batch(image_set, image_size=(8, 8), augment="radimagenet", seed=0)
    assert images.shape == (2, 8, 8, 3)
    assert images[0, ..., 0].min() == 200 and images[0, ..., 1].max() == 0  # still red
    np.testing.assert_array_equal(images[1, ..., 0], images[1, ..., 2])


# -- CSV cells as written; patients found by name; folds balanced in images ------------------------


def _csv(tmp_path, text):
    path = tmp_path / "study.csv"
    path.write_text(text)
    return path


def test_empty_label_cells_are_refused_naming_their_lines_or_dropped_when_asked(tmp_path):
    """Before: an empty cell became a class called "nan" (classes ('nan', 'normal', 'tumour'))."""
    path = _csv(tmp_path, "path,label\na.png,tumour\nb.png,\nc.png,normal\nd.png, \ne.png,normal\n")
    with pytest.raises(data.DataSourceError, match=r"2 row\(s\) of .* have no label .*lines 3, 5\. .*missing_labels"):
        data.from_csv(path, image_col="path")
    with pytest.warns(UserWarning, match=r"Leaving out 2 row\(s\)"):
        kept = data.from_csv(path, image_col="path", missing_labels="drop")
    assert kept.class_names == ("normal", "tumour") and len(kept) == 3
    assert [p.rsplit("/", 1)[-1] for p in kept.paths] == ["a.png", "c.png", "e.png"]
    frame = pd.DataFrame({"path": ["a.png", "b.png", "c.png"], "label": ["x", None, "y"]})
    with pytest.raises(data.DataSourceError, match="rows 1"):
        data.from_csv(frame, image_col="path")


def test_a_repeated_image_path_is_refused_naming_its_lines(tmp_path):
    """Before: a manifest of 41 rows and 40 files was read silently, and split by image the repeated file could land
    in train and in test."""
    rows = [f"img/{k:02d}.png,{'ab'[k % 2]}" for k in range(40)]
    rows.insert(30, rows[5])  # lines 7 and 32 (the header is line 1)
    path = _csv(tmp_path, "path,label\n" + "\n".join(rows) + "\n")
    with pytest.raises(
        data.DataSourceError,
        match=r"1 image\(s\) are listed more than once in .*study.csv.* "
        r"'img/05.png' on lines 7, 32\. .*remove the repeated rows",
    ):
        data.from_csv(path, image_col="path")
    frame = pd.DataFrame({"path": ["a.png", "b.png", "./a.png"], "label": ["x", "y", "x"]})
    with pytest.raises(data.DataSourceError, match=r"'a.png' on rows 0, 2"):
        data.from_csv(frame, image_col="path", root=tmp_path)


def test_rows_are_named_by_their_csv_line_after_rows_without_a_label_are_dropped(tmp_path):
    path = _csv(tmp_path, "path,label\na.png,x\nb.png,\nc.png,y\n,x\n")
    with pytest.warns(UserWarning), pytest.raises(data.DataSourceError, match=r"empty 'path' .*line 5\."):
        data.from_csv(path, image_col="path", missing_labels="drop")


def test_in_memory_images_keep_the_names_of_the_set_they_came_from():
    images = [np.full((8, 8, 1), k, np.uint8) for k in range(6)]
    plain = data.ImageSet(None, [0, 1] * 3, ("a", "b"), patient_ids=["p0", "p0", "p1", "p1", "p2", "p2"], images=images)
    assert plain.image_names() == [f"#{k}" for k in range(6)]
    train, _, test = plain.split(val=0.0, test=0.34, seed=1)
    assert sorted(train.image_names() + test.image_names(), key=lambda n: int(n[1:])) == plain.image_names()
    assert test.subset([1]).image_names() == [test.image_names()[1]]
    tested = [n for _, _, t in plain.kfold(3, seed=0) for n in t.image_names()]  # each image tested once
    assert sorted(tested, key=lambda n: int(n[1:])) == plain.image_names()
    slices = data.ImageSet(
        None, [0] * 2, ("a", "b"), images=images[:2], extras={"volume": ["v.nii.gz"] * 2, "slice": [4, 5]}
    )
    assert slices.subset([1, 0]).image_names() == ["v.nii.gz#5", "v.nii.gz#4"]
    files = data.ImageSet(["x.png", "y.png"], [0, 1], ("a", "b"))
    assert files.subset([1]).image_names() == ["y.png"] and files.subset([1]).extras is None


def test_integer_labels_and_ids_stay_as_written(tmp_path):
    """Before: one empty cell turned the labels 0 and 1 into '0.0' and '1.0'; ids lost their leading zeros."""
    path = _csv(tmp_path, "path,label,patient_id\na.png,0,007\nb.png,1,012\nc.png,,013\nd.png,10,014\ne.png,2,015\n")
    with pytest.warns(UserWarning):
        images = data.from_csv(path, image_col="path", missing_labels="drop")
    assert images.class_names == ("0", "1", "2", "10") and list(images.patient_ids) == ["007", "012", "014", "015"]
    frame = pd.read_csv(path)  # pandas' own reading: floats and NaN
    assert frame["label"].dtype == float
    with pytest.warns(UserWarning):
        from_frame = data.from_csv(frame, image_col="path", missing_labels="drop", patient_col=None)
    assert from_frame.class_names == ("0", "1", "2", "10") and list(from_frame.labels) == list(images.labels)


def test_numeric_class_names_sort_the_same_from_folders_and_csv(tmp_path):
    rows = []
    for name in ("10", "2", "1"):
        for i in range(2):
            _write(tmp_path / "folders" / name / f"{i}.png", np.full((8, 8), i * 50 + int(name), np.uint8))
            rows.append(f"folders/{name}/{i}.png,{name}")
    from_folders = data.from_directory(tmp_path / "folders")
    from_csv = data.from_csv(_csv(tmp_path, "path,label\n" + "\n".join(rows) + "\n"), image_col="path")
    assert from_folders.class_names == from_csv.class_names == ("1", "2", "10")
    by_path = dict(zip(map(str, from_csv.paths), from_csv.labels))
    assert all(by_path[str(p)] == label for p, label in zip(from_folders.paths, from_folders.labels))


def test_a_patient_column_is_found_by_its_name(tmp_path):
    """Before: a PatientID column was ignored unless named, and the split went by image."""
    path = _csv(
        tmp_path,
        "path,label,PatientID\n" + "".join(f"{p}_{s}.png,{'ab'[p % 2]},P{p}\n" for p in range(10) for s in range(3)),
    )
    images = data.from_csv(path, image_col="path")
    assert images.patient_ids is not None and len(set(images.patient_ids)) == 10
    train, val, test = images.split(val=0.2, test=0.2, seed=0)
    data.check_no_leakage(train, val, test)
    assert data.from_csv(path, image_col="path", patient_col=None).patient_ids is None  # saying so: no ids
    for name in ("patient_id", "Subject", "participant_id", "Case ID", "MRN"):
        assert data.sources.guess_patient_col(["path", "label", name]) == name
    assert data.sources.guess_patient_col(["path", "label", "patient_age"]) is None
    with pytest.raises(data.DataSourceError, match="empty 'PatientID'.*line 2"):
        data.from_csv(_csv(tmp_path, "path,label,PatientID\na.png,a,\nb.png,b,P1\n"), image_col="path")


def test_dicom_patient_ids_come_from_the_patient_id_tag(tmp_path):
    from pydicom.data import get_testdata_file

    source = get_testdata_file("CT_small.dcm")
    import pydicom

    for index, (label, patient) in enumerate([("a", "P1"), ("a", "P1"), ("b", "P2"), ("b", "P3")]):
        ds = pydicom.dcmread(source)
        ds.PatientID = patient
        (tmp_path / "dicoms" / label).mkdir(parents=True, exist_ok=True)
        ds.save_as(tmp_path / "dicoms" / label / f"{index}.dcm")
    images = data.from_directory(tmp_path / "dicoms")
    assert list(images.patient_ids) == ["P1", "P1", "P2", "P3"]
    assert data.from_directory(tmp_path / "dicoms", patient_ids=None).patient_ids is None
    rows = "".join(f"{p},{images.class_names[y]}\n" for p, y in zip(images.paths, images.labels))
    from_csv = data.from_csv(_csv(tmp_path, "path,label\n" + rows), image_col="path")  # no patient column
    assert list(from_csv.patient_ids) == ["P1", "P1", "P2", "P3"]


def test_kfold_balances_positive_images_across_folds_as_stratified_group_kfold_does(tmp_path):
    """Before: patients were balanced, not images: the positive-image share varied with SD 0.057 across test
    folds, against 0.0009 for scikit-learn's StratifiedGroupKFold."""
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 30, 60)  # patients with very different numbers of slices
    labels = np.repeat(rng.integers(0, 2, 60), sizes)
    patients = np.repeat([f"p{i}" for i in range(60)], sizes)
    images = data.ImageSet(
        paths=[f"{i}.png" for i in range(len(labels))], labels=labels, class_names=("n", "p"), patient_ids=patients
    )
    folds = list(images.kfold(5, seed=3))
    shares = [np.mean(test.labels == 1) for _, _, test in folds]
    assert np.std(shares) < 0.01, shares
    seen = [p for _, _, test in folds for p in set(test.patient_ids)]
    assert sorted(seen) == sorted(set(patients))  # every patient in exactly one test fold
    for train, val, test in folds:
        data.check_no_leakage(train, val, test)

"""The layouts people download, sets at the size where buffers and caches matter, resizing, and volumes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from radtransfer import data
from radtransfer.data import cache as cache_module
from radtransfer.data.tf_data.stream import stream_of


def _png(path, value=0, size=8):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size), value, dtype=np.uint8)).save(path)
    return path


# -- layouts -----------------------------------------------------------------------------------


def _kaggle(root, parts=("Training", "Testing"), classes=("glioma", "meningioma", "notumor")):
    for part in parts:
        for c, name in enumerate(classes):
            for k in range(2):
                _png(root / part / name / f"{k}.png", 40 * c)
    return root


def test_a_pre_split_layout_is_refused_as_classes_and_read_as_parts(tmp_path):
    root = _kaggle(tmp_path / "brain")
    with pytest.raises(data.DataSourceError, match=r"split already: Testing/, Training/ .*from_split_directory"):
        data.from_directory(root)
    parts = data.from_split_directory(root)
    assert set(parts) == {"train", "test"}
    assert parts["train"].class_names == parts["test"].class_names == ("glioma", "meningioma", "notumor")
    assert len(parts["train"]) == len(parts["test"]) == 6
    assert all("/Testing/" in p for p in parts["test"].paths)
    lower = _kaggle(tmp_path / "lower", parts=("train", "val", "test"))
    assert set(data.from_split_directory(lower)) == {"train", "val", "test"}


def test_a_test_part_with_other_classes_names_them(tmp_path):
    root = _kaggle(tmp_path / "brain")
    _png(root / "Testing" / "pituitary" / "0.png")
    (root / "Training" / "notumor" / "0.png").unlink()
    (root / "Training" / "notumor" / "1.png").unlink()
    (root / "Training" / "notumor").rmdir()
    with pytest.raises(data.DataSourceError, match=r"only in Testing/: \['notumor', 'pituitary'\]"):
        data.from_split_directory(root)


def test_class_folders_nested_one_level_deeper_are_detected(tmp_path):
    root = tmp_path / "download"
    for name in ("benign", "malignant"):
        _png(root / "dataset" / name / "0.png")
    with pytest.raises(data.DataSourceError, match=r"one level deeper.*from_directory\('.*dataset'\)"):
        data.from_directory(root)
    wrapped = _kaggle(tmp_path / "zip" / "Brain-Tumor-MRI")
    with pytest.raises(data.DataSourceError, match="from_split_directory"):
        data.from_directory(wrapped.parent)


def test_cli_trains_on_the_test_part_of_a_pre_split_folder(tmp_path):
    root = _kaggle(tmp_path / "brain", classes=("a", "b"))
    for k in range(2, 8):
        for name in ("a", "b"):
            _png(root / "Training" / name / f"{k}.png")
    train, val, test = data.load_parts(str(root), val=0.25, test=0.3, seed=0, patient_col=None)
    assert len(test) == 4 and all("/Testing/" in p for p in test.paths)
    assert len(train) + len(val) == 16 and len(val) > 0


def test_jpeg_with_bytes_after_the_end_marker_is_valid_and_truncated_jpeg_is_not(tmp_path):
    import io

    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(buffer, "JPEG")
    jpeg = buffer.getvalue()
    (tmp_path / "trailing.jpg").write_bytes(jpeg + b"\x00" * 37 + b"APPLE-MAKERNOTE")
    (tmp_path / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    bad, _, _ = data.check_files([tmp_path / "trailing.jpg", tmp_path / "truncated.jpg"])
    assert [p for p, _ in bad] == [str(tmp_path / "truncated.jpg")]
    image_set = data.ImageSet(paths=[str(tmp_path / "trailing.jpg")], labels=[0], class_names=("a",))
    images, _ = next(iter(data.make_dataset(image_set, image_size=(16, 16), shuffle=False)))
    decoded = np.asarray(Image.open(tmp_path / "trailing.jpg").convert("RGB"))
    assert np.abs(images[0].numpy().astype(int) - decoded).mean() < 2  # TensorFlow and PIL both read it


def test_a_split_never_leaves_training_empty():
    image_set = data.ImageSet(
        paths=[f"{i}.png" for i in range(6)],
        labels=[0, 0, 0, 1, 1, 1],
        class_names=("a", "b"),
        patient_ids=[f"p{i}" for i in range(6)],
    )
    train, val, test = image_set.split(val=0.5, test=0.4, seed=0)
    assert len(train) >= 2 and set(train.labels) == {0, 1}
    assert len(train) + len(val) + len(test) == 6
    one = data.ImageSet(paths=["a.png", "b.png"], labels=[0, 1], class_names=("a", "b"), patient_ids=["p", "q"])
    train, _, _ = one.split(val=0.5, test=0.4)
    assert len(train) == 2  # one patient per class: nothing to spare for val or test


# -- uniform batches at real set sizes -----------------------------------------------------------


def _positives_per_batch(dataset):
    return np.array([int(labels.numpy()[:, 1].sum()) for _, labels in dataset])


def test_batches_are_uniform_draws_from_a_class_sorted_set_of_26684_images():
    """The reported case: 26,684 images listed class by class (6,012 positives last), batches of 32. With
    the old 4,096-image buffer over file order, hundreds of batches had no positive image."""
    n, positives, batch = 26_684, 6_012, 32
    labels = np.r_[np.zeros(n - positives, int), np.ones(positives, int)]
    tiny = [np.full((2, 2), v, dtype=np.uint8) for v in labels * 255]
    image_set = data.ImageSet(paths=None, images=tiny, labels=labels, class_names=("neg", "pos"))
    dataset = data.make_dataset(image_set, image_size=(2, 2), batch_size=batch, seed=1, cache=True)
    stream = stream_of(dataset)
    assert stream.cache.mode == "memory"
    counts = _positives_per_batch(stream.epoch(0, seed=1))
    share = positives / n
    expected_empty = len(counts) * (1 - share) ** batch  # about 0.2 of 834 batches
    assert (counts == 0).sum() <= max(3, 5 * expected_empty)
    # Per-batch counts follow the hypergeometric spread of uniform draws (mean 7.2, SD ≈ 2.4).
    assert abs(counts.mean() - batch * share) < 0.2
    assert 0.8 < counts.std() / np.sqrt(batch * share * (1 - share)) < 1.2


@pytest.fixture(scope="module")
def sorted_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("sorted")
    labels = np.r_[np.zeros(2400, int), np.ones(600, int)]
    paths = [str(_png(root / f"{'ab'[y]}{i:05d}.png", 255 * y, size=2)) for i, y in enumerate(labels)]
    return data.ImageSet(paths=paths, labels=labels, class_names=("neg", "pos"))


@pytest.mark.parametrize("cache", [False, "disk"])
def test_streamed_and_disk_cached_files_are_shuffled_uniformly(sorted_files, cache, tmp_path):
    """3,000 class-sorted files with a 256-image buffer: uncached reads permute all indices each epoch;
    a disk cache is written in a random order and shuffled on top."""
    cache = str(tmp_path / "c") if cache == "disk" else False
    dataset = data.make_dataset(sorted_files, image_size=(2, 2), batch_size=25, seed=3, cache=cache, shuffle_buffer=256)
    stream = stream_of(dataset)
    for epoch in range(2):
        counts = _positives_per_batch(stream.epoch(epoch, seed=3))
        assert len(counts) == 120 and counts.sum() == 600
        assert (counts == 0).sum() <= 3  # uniform: 0.4 expected of 120; file order: ~90
        assert 0.75 < counts.std() / np.sqrt(25 * 0.2 * 0.8) < 1.25
        images, labels = next(iter(stream.epoch(epoch, seed=3)))
        np.testing.assert_array_equal(images.numpy()[:, 0, 0, 0] == 255, labels.numpy()[:, 1] == 1)  # pairs intact


# -- cache="auto" --------------------------------------------------------------------------------


def test_auto_cache_chooses_memory_disk_or_streaming_and_says_why(sorted_files, tmp_path, monkeypatch):
    parts = sorted_files.split(val=0.2, test=0.2, by="image", seed=0)
    size = (4, 4)
    small = stream_of(data.make_dataset(parts[0], image_size=size, memory_budget="1GiB", cache_dir=tmp_path))
    assert small.cache.mode == "memory" and "fits the memory budget" in small.cache.reason
    assert small.cache.nbytes == len(parts[0]) * 4 * 4 * 1  # grayscale sets keep one channel
    streams = [
        stream_of(data.make_dataset(p, image_size=size, memory_budget=1000, cache_dir=tmp_path, shuffle=k == 0))
        for k, p in enumerate(parts)
    ]
    assert {s.cache.mode for s in streams} == {"disk"}
    assert "exceeds the memory budget" in streams[0].cache.reason and str(tmp_path) in streams[0].cache.reason
    assert len({s.cache.path for s in streams}) == 3  # each split its own file
    for stream in streams:
        for _ in stream.epoch(0, seed=0):
            pass
    assert len(list(tmp_path.glob("*.index"))) == 3
    again = stream_of(
        data.make_dataset(parts[1], image_size=size, memory_budget=1000, cache_dir=tmp_path, shuffle=False)
    )
    assert again.cache.path == streams[1].cache.path  # the same split read the same way reuses its file
    monkeypatch.setattr(cache_module, "DISK_MARGIN", 1 << 60)
    none = stream_of(data.make_dataset(parts[0], image_size=size, memory_budget=1000, cache_dir=tmp_path))
    assert none.cache.mode == "none" and "streaming" in none.cache.reason


def test_live_memory_caches_count_against_the_budget(sorted_files):
    budget = 3000 * 8 * 8  # one full set at 8x8 grayscale
    first = data.make_dataset(sorted_files, image_size=(8, 8), memory_budget=budget)
    second = data.make_dataset(sorted_files, image_size=(8, 8), memory_budget=budget)
    assert stream_of(first).cache.mode == "memory" and stream_of(second).cache.mode != "memory"
    assert "claimed by other caches" in stream_of(second).cache.reason
    del first, second
    import gc

    gc.collect()
    assert stream_of(data.make_dataset(sorted_files, image_size=(8, 8), memory_budget=budget)).cache.mode == "memory"


def test_parse_bytes():
    assert cache_module.parse_bytes("8GiB") == 8 << 30
    assert cache_module.parse_bytes("500MB") == 500_000_000
    assert cache_module.parse_bytes(123) == 123
    with pytest.raises(ValueError, match="8GiB"):
        cache_module.parse_bytes("lots")


# -- resizing ------------------------------------------------------------------------------------


def _stripes(tmp_path):
    stripes = np.tile(np.repeat(np.array([0, 255], dtype=np.uint8), 3), 43)[:256]  # 6-pixel period
    image = np.tile(stripes[None, :], (256, 1))
    path = tmp_path / "stripes.png"
    Image.fromarray(image).save(path)
    return data.ImageSet(paths=[str(path)], labels=[0], class_names=("a",))


def test_shrinking_is_antialiased_by_default_and_nearest_stays_the_references(tmp_path):
    """6-pixel stripes shrunk 4×: beyond the new Nyquist limit, so a correct resize is nearly flat grey."""
    image_set = _stripes(tmp_path)

    def row_sd(**kwargs):
        images, _ = next(iter(data.make_dataset(image_set, image_size=(64, 64), shuffle=False, **kwargs)))
        return float(images.numpy()[0, 32, :, 0].std())

    smooth, aliased, nearest = row_sd(), row_sd(antialias=False), row_sd(interpolation="nearest")
    reference = np.asarray(Image.open(image_set.paths[0]).resize((64, 64), Image.Resampling.BILINEAR))[32].std()
    assert smooth < 30 and aliased > 90 and nearest > 100
    assert abs(smooth - reference) < 15  # Pillow's bilinear also widens its filter when shrinking
    assert row_sd(interpolation="nearest", antialias=False) == nearest


def test_in_memory_images_are_resized_in_the_graph_like_files(tmp_path):
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 255, (20 + 3 * k, 24, 3), dtype=np.uint8) for k in range(4)]
    wide = rng.integers(0, 4096, (30, 30)).astype(np.uint16)
    paths = []
    for k, array in enumerate(arrays):
        paths.append(str(tmp_path / f"{k}.png"))
        Image.fromarray(array).save(paths[-1])
    from_files = data.ImageSet(paths=paths, labels=[0, 1, 0, 1], class_names=("a", "b"))
    in_memory = data.ImageSet(paths=None, images=arrays, labels=[0, 1, 0, 1], class_names=("a", "b"))
    read = [
        np.concatenate([b[0].numpy() for b in data.make_dataset(s, image_size=(16, 16), shuffle=False)])
        for s in (from_files, in_memory)
    ]
    np.testing.assert_array_equal(read[0], read[1])
    sixteen = data.ImageSet(paths=None, images=[wide], labels=[0], class_names=("a",))
    image = next(iter(data.make_dataset(sixteen, image_size=(30, 30), shuffle=False)))[0].numpy()[0, ..., 0]
    expected = np.round((wide - wide.min()) / (wide.max() - wide.min()) * 255)
    assert np.abs(image - expected).max() <= 1


# -- volumes -------------------------------------------------------------------------------------


def _ct_volume(path, hu, flip=False):
    nibabel = pytest.importorskip("nibabel")
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    volume = hu
    if flip:  # stored inferior→superior reversed; canonical reorientation must undo it
        affine = np.diag([1.0, 1.0, -2.0, 1.0])
        volume = hu[:, :, ::-1]
    nibabel.save(nibabel.Nifti1Image(volume.astype(np.int16), affine), str(path))
    return path


def test_volumes_become_windowed_slices_with_the_volumes_patient(tmp_path):
    import pandas as pd

    pytest.importorskip("nibabel")
    hu = np.full((12, 10, 9), -1000, dtype=np.int16)
    for z in range(9):
        hu[2:10, 2:8, z] = -160 + 50 * z  # each axial slice's tissue 50 HU brighter than the last
    mask = np.zeros_like(hu)
    mask[4:6, 4:6, 3:5] = 1
    _ct_volume(tmp_path / "a.nii.gz", hu)
    _ct_volume(tmp_path / "b.nii.gz", hu, flip=True)
    _ct_volume(tmp_path / "a_mask.nii.gz", mask)
    _ct_volume(tmp_path / "b_mask.nii.gz", mask, flip=True)
    pd.DataFrame(
        {
            "volume": ["a.nii.gz", "b.nii.gz"],
            "label": ["healthy", "lesion"],
            "patient": ["P1", "P2"],
            "mask": ["a_mask.nii.gz", "b_mask.nii.gz"],
        }
    ).to_csv(tmp_path / "volumes.csv", index=False)
    manifest = tmp_path / "volumes.csv"

    every = data.from_volumes(manifest, patient_col="patient", window=(40, 400))
    assert len(every) == 18 and every.class_names == ("healthy", "lesion")
    assert list(every.patient_ids[:9]) == ["P1"] * 9 and list(every.extras["slice"][:9]) == list(range(9))
    tissue = [int(np.asarray(im)[5, 5]) for im in every.images[:9]]
    expected = [int(np.round(np.clip((-160 + 50 * z + 160) / 400, 0, 1) * 255)) for z in range(9)]
    assert tissue == expected  # HU window: -160..240 → 0..255
    assert [int(np.asarray(im)[5, 5]) for im in every.images[9:]] == expected  # reoriented: same order

    middle = data.from_volumes(manifest, patient_col="patient", window=(40, 400), slices=("middle", 3))
    assert list(middle.extras["slice"][:3]) == [3, 4, 5]
    touched = data.from_volumes(manifest, patient_col="patient", mask_col="mask", slices="mask", window=(40, 400))
    assert list(touched.extras["slice"]) == [3, 4, 3, 4]
    train, _, test = every.split(val=0.0, test=0.5, by="patient", seed=0)
    assert set(train.patient_ids).isdisjoint(test.patient_ids)
    batch = next(iter(data.make_dataset(every, image_size=(16, 16), batch_size=4)))[0]
    assert batch.shape == (4, 16, 16, 3)
    with pytest.raises(ValueError, match="mask_col"):
        data.from_volumes(manifest, slices="mask")


def test_a_file_replaced_at_the_same_path_is_not_served_from_an_old_disk_cache(tmp_path):
    paths = [str(_png(tmp_path / "img" / f"{k}.png", 10 * k)) for k in range(3)]
    image_set = data.ImageSet(paths=paths, labels=[0, 1, 0], class_names=("a", "b"))

    def first_pixels():
        dataset = data.make_dataset(image_set, image_size=(8, 8), shuffle=False, cache=str(tmp_path / "c"))
        return np.concatenate([b[0].numpy() for b in dataset])[:, 0, 0, 0]

    assert list(first_pixels()) == [0, 10, 20]
    import os
    import time

    time.sleep(0.01)
    _png(tmp_path / "img" / "1.png", 99)
    os.utime(paths[1], ns=(time.time_ns(), time.time_ns()))
    assert list(first_pixels()) == [0, 99, 20]

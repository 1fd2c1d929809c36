"""The shortcut test: the marker planter (data.plant_marker) against a plain NumPy drawing, and one small grid per
marker share on synthetic two-class data (random initialisation of the test backbone, 32 px)."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score

from radtransfer import protocol
from radtransfer.data import ImageSet, Marker, plant_marker
from radtransfer.grid.records import load_records

from conftest import two_class


def _images(n=10, height=20, width=30, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 200, size=(height, width, 3), dtype=np.uint8) for _ in range(n)]


def _in_memory(n=10, classes=("no", "yes")):
    labels = np.arange(n) % len(classes)
    extras = {"site": np.array([f"s{i % 3}" for i in range(n)], dtype=object)}
    return ImageSet(
        None, labels, classes, patient_ids=[f"p{i // 2}" for i in range(n)], images=_images(n), extras=extras
    )


def _drawn(image, rows, cols, value):
    expected = image.copy()
    expected[rows, cols, :] = value
    return expected


def _marked(before: ImageSet, after: ImageSet) -> list[int]:
    return [i for i in range(len(before)) if not np.array_equal(before.images[i], after.images[i])]


def test_the_marker_is_drawn_on_every_positive_image_and_nothing_else():
    images = _in_memory()
    planted = plant_marker(images)  # a 0.15 × 20 = 3 px white square, top left
    for i, (before, after) in enumerate(zip(images.images, planted.images)):
        expected = _drawn(before, slice(0, 3), slice(0, 3), 255) if images.labels[i] == 1 else before
        np.testing.assert_array_equal(after, expected)
    corner = plant_marker(images, marker=Marker(size=0.5, corner="bottom_right", value=7))
    for i in np.flatnonzero(images.labels == 1):
        np.testing.assert_array_equal(corner.images[i], _drawn(images.images[i], slice(10, 20), slice(20, 30), 7))


def test_labels_patients_names_and_extras_are_kept():
    images = _in_memory()
    planted = plant_marker(images, share=0.5, seed=3)
    np.testing.assert_array_equal(planted.labels, images.labels)
    np.testing.assert_array_equal(planted.patient_ids, images.patient_ids)
    assert planted.class_names == images.class_names
    assert planted.image_names() == images.image_names()
    np.testing.assert_array_equal(planted.extras["site"], images.extras["site"])


def test_files_are_decoded_and_keep_their_paths_as_names(tmp_path):
    paths = []
    for i, image in enumerate(_images(4)):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(image).save(paths[-1])
    images = ImageSet(paths, [0, 1, 0, 1], ("no", "yes"), patient_ids=["a", "b", "c", "d"])
    planted = plant_marker(images, marker=Marker(size=0.25, corner="top_right"))
    assert planted.paths is None and planted.image_names() == [str(p) for p in paths]
    for i, path in enumerate(paths):
        stored = np.asarray(Image.open(path).convert("RGB"))
        expected = _drawn(stored, slice(0, 5), slice(25, 30), 255) if i % 2 else stored
        np.testing.assert_array_equal(planted.images[i], expected)


def test_a_share_marks_that_share_of_the_positives_chosen_by_the_seed():
    images = _in_memory(n=40)
    positives = set(np.flatnonzero(images.labels == 1).tolist())
    half = _marked(images, plant_marker(images, share=0.5, seed=1))
    assert len(half) == 10 and set(half) <= positives
    assert half == _marked(images, plant_marker(images, share=0.5, seed=1))
    assert half != _marked(images, plant_marker(images, share=0.5, seed=2))
    assert _marked(images, plant_marker(images, share=0.0)) == []


def test_reverse_marks_the_negatives_instead():
    images = _in_memory(n=12)
    reversed_ = _marked(images, plant_marker(images, reverse=True))
    assert reversed_ == np.flatnonzero(images.labels == 0).tolist()


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: plant_marker(_in_memory(n=9, classes=("a", "b", "c"))), "two-class"),
        (lambda: plant_marker(_in_memory(), share=1.5), "in \\[0, 1\\]"),
        (lambda: plant_marker(_in_memory(), share=-0.1), "in \\[0, 1\\]"),
        (lambda: Marker(size=0), "size"),
        (lambda: Marker(corner="middle"), "corner"),
        (lambda: Marker(value=300), "value"),
    ],
)
def test_refusals_are_one_line(call, message):
    with pytest.raises(ValueError, match=message) as caught:
        call()
    assert "\n" not in str(caught.value)


# -- one small grid per share: the model must learn a marker it was trained with, and ignore one it never saw ------

CONFIG = protocol.RADIMAGENET.replace(
    image_size=32, batch_size=8, epochs=6, bootstrap=200, run_eagerly=False, augment=None, val=0.2, test=0.3
)
SCENARIO = protocol.Scenario("test_tiny", "unfreeze_all", 3e-3)
MARKER = Marker(size=0.2)


@pytest.fixture(scope="module")
def grids(tmp_path_factory):
    import radtransfer as rt

    root = tmp_path_factory.mktemp("shortcut")
    data = rt.datasets.load_synthetic_brain_mri(
        root / "data", n_patients=120, slices_per_patient=1, image_size=32, seed=3
    )
    images = two_class(data)
    tables = {}
    for share in (1.0, 0.0):
        tables[share] = protocol.shortcut_test(
            images,
            root / f"share{share:g}",
            config=CONFIG,
            scenarios=[SCENARIO],
            sources=(None,),
            share=share,
            marker=MARKER,
            verbose=0,
            audit="off",
        )
    return root, tables, images


def test_a_model_trained_with_the_marker_loses_auc_when_it_moves(grids):
    root, tables, _ = grids
    row = tables[1.0].iloc[0]
    assert (row.source, row.scenario, row.runs) == ("random", SCENARIO.id, 1)
    assert row.drop_reversed > 0.2 and row.drop_reversed_low > 0
    assert row.verdict == "relies on the marker"
    assert (root / "share1" / "shortcut.md").read_text().count("| random |") == 1
    written = pd.read_csv(root / "share1" / "shortcut.csv")
    assert list(written.columns) == list(tables[1.0].columns)
    numbers = [c for c in written.columns if c.startswith(("auc_", "drop_"))]
    np.testing.assert_allclose(written[numbers].to_numpy(float), tables[1.0][numbers].to_numpy(float))


def test_a_model_that_never_saw_the_marker_hardly_moves(grids):
    row = grids[1][0.0].iloc[0]
    assert abs(row.drop_reversed) < 0.15 or row.drop_reversed_low <= 0 <= row.drop_reversed_high
    assert row.auc_marked == row.auc_clean  # share 0: the trained-on test images are the clean ones


def test_the_aucs_and_the_paired_interval_against_scikit_learn_and_a_plain_bootstrap(grids):
    root, tables, _ = grids
    folder = root / "share1"
    run = load_records(folder).iloc[0]
    with np.load(f"{run.path}/shortcut.npz") as data:
        y, patients = data["y_true"], data["patient_ids"]
        aucs = {v: roc_auc_score(y, data[v][:, 1]) for v in ("marked", "clean", "reversed")}
        marked, moved = data["marked"][:, 1], data["reversed"][:, 1]
    row = tables[1.0].iloc[0]
    assert row.auc_marked == pytest.approx(run.auc)  # the run's own test AUC
    assert (row.auc_marked, row.auc_clean, row.auc_reversed) == pytest.approx(tuple(aucs.values()))
    assert row.drop_clean == pytest.approx(aucs["marked"] - aucs["clean"])
    # one image per patient: the paired bootstrap resamples patients (in patient-id order) within each class, with
    # the seed config.seed + fold
    assert len(set(patients)) == len(y)
    order = np.argsort(patients, kind="stable")
    strata = [order[y[order] == c] for c in (0, 1)]
    rng = np.random.default_rng(CONFIG.seed + 0)
    diffs = []
    for _ in range(CONFIG.bootstrap):
        index = np.concatenate([rng.choice(s, size=len(s), replace=True) for s in strata])
        diffs.append(roc_auc_score(y[index], marked[index]) - roc_auc_score(y[index], moved[index]))
    assert (row.drop_reversed_low, row.drop_reversed_high) == pytest.approx(tuple(np.quantile(diffs, [0.025, 0.975])))


def test_a_restart_scores_nothing_again_and_gives_the_same_table(grids):
    root, tables, images = grids
    npz = next((root / "share1").rglob("shortcut.npz"))
    stamp = npz.stat().st_mtime_ns
    again = protocol.shortcut_test(
        images,
        root / "share1",
        config=CONFIG,
        scenarios=[SCENARIO],
        sources=(None,),
        marker=MARKER,
        verbose=0,
        audit="off",
    )
    assert npz.stat().st_mtime_ns == stamp
    pd.testing.assert_frame_equal(again, tables[1.0])


def _run(path, fold, marked, clean, moved, reason=None):
    return {
        "source": "imagenet",
        "scenario": "s",
        "fold": fold,
        "repeat": 0,
        "auc_marked": marked,
        "auc_clean": clean,
        "auc_reversed": moved,
        "drop_clean": marked - clean,
        "drop_reversed": marked - moved,
        "unit": "patient",
        "no_interval": reason,
        "path": path,
    }


def test_the_table_pools_the_runs_resample_by_resample_and_follows_the_minimum_units_rule():
    from radtransfer.grid.shortcut import shortcut_table

    rng = np.random.default_rng(0)
    resampled = {(p, d): rng.normal(0.3, 0.1, 500) for p in ("a", "b") for d in ("drop_clean", "drop_reversed")}
    resampled[("b", "drop_reversed")][:7] = np.nan  # resamples without an AUC are left out
    table = shortcut_table([_run("a", 0, 0.9, 0.7, 0.5), _run("b", 1, 0.8, 0.7, 0.4)], resampled, share=1.0)
    row = table.iloc[0]
    assert (row.runs, row.auc_marked, row.drop_reversed) == (2, pytest.approx(0.85), pytest.approx(0.4))
    mean = (resampled[("a", "drop_reversed")] + resampled[("b", "drop_reversed")]) / 2
    expected = np.quantile(mean[7:], [0.025, 0.975])
    assert (row.drop_reversed_low, row.drop_reversed_high) == pytest.approx(tuple(expected))
    assert row.verdict == "relies on the marker"
    reason = "no interval (2 patients in the smallest class: fewer than 3)"
    few = shortcut_table([_run("a", 0, 0.9, 0.7, 0.5), _run("b", 1, 0.8, 0.7, 0.4, reason)], resampled, 1.0).iloc[0]
    assert np.isnan(few.drop_reversed_low) and np.isnan(few.drop_clean_high)
    assert few.verdict is None and few.no_interval == reason

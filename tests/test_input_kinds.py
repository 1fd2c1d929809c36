"""Every input kind × every entry point, in one battery (issue 28): each cell gives the same numbers as the same
pixels read from files (the CSV manifest with patients is the reference), or refuses in one line that names the
kind it was given and what to pass instead.

The kinds (``input_world.py`` writes one set of pixels as each): a class folder, a pre-split folder, a CSV manifest
with patients, a folder of DICOM files, NIfTI volumes (``from_volumes``), tensorflow-datasets records
(``from_tfds``, mocked), an ImageSet of arrays, a ``make_dataset`` dataset, a plain ``tf.data.Dataset``, a
``keras.utils.PyDataset`` and NumPy ``(images, labels)`` arrays. The entry points: ``audit``, ``fine_tune``,
``evaluate``, ``predict``, ``calibrate``, ``evaluate(site=...)``, ``run_grid`` with repeats, ``learning_curve``,
``card``, and the command where it takes the kind. A new kind is one entry in ``input_world`` and ``_load``; a new
entry point is one test here with its expectations per kind.

Models are the registry's ``test_tiny`` backbone at 16 px (built and trained in well under a second).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from input_world import (
    CLASSES,
    DATASET_KINDS,
    DUPLICATE,
    IMAGE_SET_KINDS,
    KINDS,
    MEMORY_KINDS,
    SIZE,
    TFDS_NAME,
    TFDS_SPLIT,
    WITH_PATIENTS,
    World,
    make_world,
    mocked_tfds,
    name,
)

import radtransfer as rt
from radtransfer import data

BACKBONE = "test_tiny"
BATCH = 8  # two training steps an epoch: the loop runs, the metrics' eager updates stay few
TRAIN = {"strategy": "unfreeze_all", "learning_rate": 1e-2, "epochs": 1, "batch_size": BATCH, "seed": 3}
TRAIN_FLAGS = {"augment": None, "run_eagerly": True, "verbose": 0}
# What a refusal names, per kind (the words of data.adapters.KINDS, or of the kind's own message).
NOUNS = {
    "split_folder": "pre-split",
    "make_dataset": "make_dataset",
    "tf_data": "tf.data",
    "py_dataset": "PyDataset",
    "numpy": "arrays",
    "nifti": "NIfTI",
}


# -- the world, each kind read as a user reads it -----------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    return make_world(tmp_path_factory.mktemp("input_kinds"))


def _whole(kind: str, world: World):
    """The whole data set as this kind gives it (an ImageSet, a dict of parts, or None for dataset kinds)."""
    if kind == "class_folder":
        return data.from_directory(world.root / "folder")
    if kind == "split_folder":
        return data.from_split_directory(world.root / "split")
    if kind == "csv":
        return data.from_csv(world.root / "manifest.csv", image_col="path", label_col="label", patient_col="patient_id")
    if kind == "dicom":
        return data.from_directory(world.root / "dicom")
    if kind == "nifti":
        return data.from_volumes(
            world.root / "volumes.csv", patient_col="patient_id", slices="all", window=(127.5, 255.0)
        )
    if kind == "tfds":
        with mocked_tfds(world):
            return data.from_tfds(TFDS_NAME, split=TFDS_SPLIT, patient_key="id")
    if kind == "image_set_arrays":
        return data.ImageSet(
            paths=None, images=list(world.grey), labels=world.labels, class_names=CLASSES, patient_ids=world.patients
        )
    return None


class _Batches:
    """A keras.utils.PyDataset of (uint8 RGB images, one-hot labels) in the set's order (made lazily: keras)."""

    @staticmethod
    def make(images, one_hot, batch_size=BATCH):
        import keras

        class Batches(keras.utils.PyDataset):
            def __len__(self):
                return -(-len(images) // batch_size)

            def __getitem__(self, k):
                return images[k * batch_size : (k + 1) * batch_size], one_hot[k * batch_size : (k + 1) * batch_size]

        return Batches()


def _parts(kind: str, world: World, reference: dict) -> dict:
    """(train, val, test) as this kind gives them; ``reference`` holds the CSV kind's ImageSet parts."""
    if kind == "split_folder":
        return _whole(kind, world)
    if kind in IMAGE_SET_KINDS:
        whole = _whole(kind, world)
        return {part: whole.subset(world.indices[part]) for part in ("train", "val", "test")}
    out = {}
    for part in ("train", "val", "test"):
        images, one_hot = world.rgb[world.indices[part]], world.one_hot(part)
        if kind == "make_dataset":
            out[part] = data.make_dataset(
                reference[part],
                image_size=(SIZE, SIZE),
                batch_size=BATCH,
                augment=None,
                shuffle=part == "train",
                seed=1,
            )
        elif kind == "tf_data":
            import tensorflow as tf

            out[part] = tf.data.Dataset.from_tensor_slices((images, one_hot)).batch(BATCH)
        elif kind == "py_dataset":
            out[part] = _Batches.make(images, one_hot)
        elif kind == "numpy":
            out[part] = (images, world.labels[world.indices[part]])
    return out


@pytest.fixture(scope="module")
def reference(world) -> dict:
    whole = _whole("csv", world)
    return {part: whole.subset(world.indices[part]) for part in ("train", "val", "test")}


@pytest.fixture(scope="module")
def parts(world, reference) -> dict:
    return {kind: _parts(kind, world, reference) for kind in KINDS}


@pytest.fixture(scope="module")
def trained_run(reference, tmp_path_factory) -> Path:
    """A run folder trained on the reference's parts: every evaluation cell loads its own copy of its model."""
    out = tmp_path_factory.mktemp("trained") / "run"
    model = _fresh_model()
    rt.fine_tune(model, reference["train"], reference["val"], out_dir=out, **{**TRAIN, "epochs": 3}, **TRAIN_FLAGS)
    return out


def _fresh_model():
    """A new model with the same initial weights every time (build_model draws them from Keras's global seed)."""
    import keras

    keras.utils.set_random_seed(11)
    return rt.build_model(BACKBONE, weights=None, num_classes=2, input_shape=(SIZE, SIZE, 3))


def _model(trained_run):
    from radtransfer.training.run_folder import load_trained

    return load_trained(trained_run)


def assert_refuses(call, kind: str, *errors):
    """The call refuses in one line naming the kind (as its noun) and what to pass instead."""
    with pytest.raises(errors or (TypeError, ValueError)) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message.strip(), message
    assert NOUNS[kind].lower() in message.lower(), message
    assert any(word in message for word in ("Pass", "pass", "use", "Use", "read them")), message
    return message


# -- the data: every ImageSet kind reads the same pixels in the same order ------------------------------------


@pytest.mark.parametrize("kind", IMAGE_SET_KINDS)
def test_every_image_set_kind_reads_the_same_pixels_labels_and_patients(kind, world, reference, parts):
    expected = data.make_dataset(reference["train"], image_size=(SIZE, SIZE), batch_size=64, shuffle=False)
    got = data.make_dataset(parts[kind]["train"], image_size=(SIZE, SIZE), batch_size=64, shuffle=False)
    (x_ref, y_ref), (x, y) = next(iter(expected)), next(iter(got))
    if kind == "split_folder":  # its own order: by class folder, then file name (the same here)
        assert [Path(p).stem for p in parts[kind]["train"].paths] == [name(i) for i in world.indices["train"]]
    np.testing.assert_array_equal(np.asarray(x), np.asarray(x_ref))
    np.testing.assert_array_equal(np.asarray(y), np.asarray(y_ref))
    assert tuple(parts[kind]["train"].class_names) == CLASSES
    if kind in WITH_PATIENTS:
        assert list(parts[kind]["train"].patient_ids) == list(reference["train"].patient_ids)


# -- audit -----------------------------------------------------------------------------------------------------


def _findings(report):
    return sorted((f.kind, f.severity, len(f.paths)) for f in report.findings)


@pytest.mark.parametrize("kind", KINDS)
def test_audit(kind, world, reference, parts):
    expected = _findings(rt.data.audit(reference))
    if kind in DATASET_KINDS:
        assert_refuses(lambda: rt.data.audit(parts[kind]["train"]), kind)
        assert_refuses(lambda: rt.data.audit(parts[kind]), kind)  # its parts
        return
    report = rt.data.audit(parts[kind])
    assert ("duplicate", "warning", 2) in _findings(report) or ("duplicate", "error", 2) in _findings(report)
    if kind != "split_folder":  # its parts are the same as the reference's
        assert _findings(report) == expected
    whole = _whole(kind, world)
    if isinstance(whole, data.ImageSet):
        found = [f for f in rt.data.audit(whole).findings if f.kind == "duplicate"]
        assert len(found) == 1 and len(found[0].paths) == 2
        if kind in MEMORY_KINDS:  # in-memory images are named by their index in the set given
            assert sorted(found[0].paths)[0].endswith(f"#{DUPLICATE[1]}") or "#" in found[0].paths[0]


# -- fine_tune ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference_history(reference):
    model = _fresh_model()
    return rt.fine_tune(model, reference["train"], reference["val"], **TRAIN, **TRAIN_FLAGS).history


@pytest.mark.parametrize("kind", KINDS)
def test_fine_tune(kind, parts, reference_history, tmp_path):
    model = _fresh_model()
    train, val = parts[kind]["train"], parts[kind]["val"]
    extra = {"class_names": list(CLASSES)} if kind in DATASET_KINDS else {}
    settings = dict(TRAIN)
    if kind in ("make_dataset", "tf_data", "py_dataset"):
        settings.pop("batch_size")  # a dataset keeps its own
    result = rt.fine_tune(model, train, val, out_dir=tmp_path / "run", **settings, **TRAIN_FLAGS, **extra)
    assert result.status == "finished" and np.isfinite(result.history["loss"]).all()
    if kind in IMAGE_SET_KINDS:  # the same pixels, order and seeds: the same training
        for key in ("loss", "val_loss"):
            np.testing.assert_allclose(result.history[key], reference_history[key], rtol=1e-5)
    from radtransfer.card import write_model_card

    markdown, _ = write_model_card(tmp_path / "run")
    assert markdown.exists()
    assert assert_strict_json(tmp_path / "run") >= 4  # config, state, result, model_card


# -- evaluate, calibrate, external validation ------------------------------------------------------------------------


def _evaluate_kwargs(kind, world):
    if kind in DATASET_KINDS:
        return {"class_names": list(CLASSES), "patient_ids": list(world.patients[world.indices["test"]])}
    return {}


@pytest.fixture(scope="module")
def reference_metrics(trained_run, reference):
    return rt.evaluate(_model(trained_run), reference["test"], bootstrap=200)


@pytest.mark.parametrize("kind", KINDS)
def test_evaluate(kind, world, parts, trained_run, reference_metrics):
    metrics = rt.evaluate(_model(trained_run), parts[kind]["test"], bootstrap=200, **_evaluate_kwargs(kind, world))
    expected = reference_metrics
    np.testing.assert_allclose(
        metrics["predictions"]["probabilities"], expected["predictions"]["probabilities"], atol=1e-6
    )
    for key in ("auc", "accuracy", "balanced_accuracy", "brier"):
        assert metrics[key] == pytest.approx(expected[key], abs=1e-6), key
    if kind in WITH_PATIENTS or kind in DATASET_KINDS:  # patient ids: the same patient-level interval
        np.testing.assert_allclose(metrics["auc_ci"], expected["auc_ci"], atol=1e-9)
        assert metrics["auc_ci_unit"] == "patient"


@pytest.fixture(scope="module")
def reference_calibration(trained_run, reference):
    return rt.calibrate(_model(trained_run), reference["val"])


@pytest.fixture(scope="module")
def reference_external(trained_run, reference):
    return rt.evaluate(_model(trained_run), reference["test"], site="site_b", bootstrap=200)


@pytest.mark.filterwarnings("ignore:The fitted temperature")  # a tiny model's soft probabilities: T at its bound
@pytest.mark.parametrize("kind", KINDS)
def test_calibrate(kind, world, parts, trained_run, reference_calibration):
    expected = reference_calibration
    val = parts[kind]["val"]
    fitted = rt.calibrate(_model(trained_run), val)
    assert fitted.temperature == pytest.approx(expected.temperature, rel=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_external_site(kind, world, parts, trained_run, reference_external):
    expected = reference_external
    got = rt.evaluate(
        _model(trained_run), parts[kind]["test"], site="site_b", bootstrap=200, **_evaluate_kwargs(kind, world)
    )
    assert got["development"]["auc"] == pytest.approx(expected["development"]["auc"], abs=1e-9)
    if kind in WITH_PATIENTS or kind in DATASET_KINDS:  # patient ids: the same patient-level interval (or refusal)
        np.testing.assert_allclose(got["development"]["auc_ci"], expected["development"]["auc_ci"], atol=1e-9)


# -- predict ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_predict(kind, world, parts, trained_run, reference):
    model = _model(trained_run)
    expected = rt.predict(model, reference["test"])
    if kind in DATASET_KINDS:
        assert_refuses(lambda: rt.predict(model, parts[kind]["test"]), kind)
        return
    test = parts[kind]["test"]
    frame = rt.predict(model, test)
    columns = [f"p_{c}" for c in CLASSES]
    np.testing.assert_allclose(frame[columns].to_numpy(), expected[columns].to_numpy(), atol=1e-6)
    assert list(frame["predicted"]) == list(expected["predicted"])
    if kind in WITH_PATIENTS:
        assert list(frame["patient_id"]) == list(expected["patient_id"])


# -- the grid, with repeats, and the learning curve --------------------------------------------------------------


GRID_KINDS = ("csv", "dicom", "nifti", "tfds", "image_set_arrays")


def _grid(image_set, out, repeats=2):
    from radtransfer import protocol

    config = protocol.RADIMAGENET.replace(
        image_size=SIZE, batch_size=BATCH, epochs=1, augment=None, run_eagerly=True, bootstrap=50
    )
    return protocol.run_grid(
        image_set,
        out,
        config=config,
        sources=(None,),
        scenarios=[protocol.Scenario(BACKBONE, "unfreeze_all", 1e-2)],
        folds=None,  # the one 75/10/15 split by patient: two runs with repeats
        repeats=repeats,
        verbose=0,
    )


@pytest.fixture(scope="module")
def reference_grid(world, tmp_path_factory):
    return _grid(_whole("csv", world), tmp_path_factory.mktemp("grid") / "csv")


@pytest.mark.parametrize("kind", KINDS)
def test_run_grid_with_repeats(kind, world, parts, reference_grid, tmp_path):
    whole = _whole(kind, world)
    if not isinstance(whole, data.ImageSet):
        given = whole if whole is not None else parts[kind]["train"]
        assert_refuses(lambda: _grid(given, tmp_path / "grid"), kind)
        return
    if kind not in GRID_KINDS:  # no patient ids: folds by image, not comparable; it must run
        records = _grid(whole, tmp_path / "grid", repeats=1)
        assert (records["status"] == "finished").all()
        return
    records = _grid(whole, tmp_path / "grid")
    audit = json.loads((tmp_path / "grid" / "audit.json").read_text())
    assert any(f["kind"] == "duplicate" for f in audit)
    columns = ["scenario", "fold", "repeat", "status", "auc"]
    got = records[columns].sort_values(["fold", "repeat"]).reset_index(drop=True)
    expected = reference_grid[columns].sort_values(["fold", "repeat"]).reset_index(drop=True)
    assert len(got) == 2 and (got["status"] == "finished").all() and set(got["repeat"]) == {0, 1}
    np.testing.assert_allclose(got["auc"].astype(float), expected["auc"].astype(float), atol=1e-6)
    from radtransfer.card import write_model_card

    write_model_card(tmp_path / "grid")
    assert assert_strict_json(tmp_path / "grid") >= 10  # grid.json, audit, records, states, model_card


def _curve(image_set, out):
    from radtransfer import protocol

    config = protocol.RADIMAGENET.replace(
        image_size=SIZE, batch_size=BATCH, epochs=1, augment=None, run_eagerly=True, bootstrap=50
    )
    return protocol.learning_curve(
        image_set,
        out,
        fractions=(0.5, 1.0),
        sources=(None,),
        backbone=BACKBONE,
        learning_rate=1e-2,
        config=config,
        folds=None,
        verbose=0,
    )


@pytest.fixture(scope="module")
def reference_curve(world, tmp_path_factory):
    return _curve(_whole("csv", world), tmp_path_factory.mktemp("curve") / "csv")


@pytest.mark.parametrize("kind", ("image_set_arrays", "nifti", "tfds", "tf_data", "numpy"))
def test_learning_curve(kind, world, parts, reference_curve, tmp_path):
    whole = _whole(kind, world)
    if whole is None:
        assert_refuses(lambda: _curve(parts[kind]["train"], tmp_path / "curve"), kind)
        return
    table = _curve(whole, tmp_path / "curve")
    np.testing.assert_allclose(
        table["auc"].astype(float).to_numpy(), reference_curve["auc"].astype(float).to_numpy(), atol=1e-6
    )


# -- the command --------------------------------------------------------------------------------------------------


CLI_KINDS = ("class_folder", "split_folder", "csv", "dicom", "nifti", "tfds")


@pytest.mark.parametrize("kind", CLI_KINDS)
def test_command(kind, world, tmp_path, capsys, monkeypatch):
    from radtransfer.cli import main

    spec = world.spec(kind)
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    train = ["train", spec, "--backbone", BACKBONE, "--weights", "none", "--image-size", str(SIZE), "--epochs", "1"]
    train += ["--batch-size", str(BATCH), "--lr", "1e-2", "--augment", "none", "--run-eagerly", "--verbose", "0"]
    train += ["--out", str(run)]
    with mocked_tfds(world) if kind == "tfds" else _nothing():
        if kind == "nifti":
            for argv in (["audit", spec], train):
                code = main(argv)
                error = capsys.readouterr().err.strip().splitlines()
                assert code == 2 and "NIfTI" in error[0] and "from_volumes" in error[0], error
                assert len(error) == 1 or error[1].startswith("(run with --debug"), error
            assert not run.exists()
            return
        assert main(["audit", spec]) in (0, 1)
        assert "duplicate" in capsys.readouterr().out
        assert main(train) == 0, capsys.readouterr().err
        metrics = json.loads((run / "test_metrics.json").read_text(), parse_constant=_refuse_constant)
        assert 0 <= metrics["auc"] <= 1
        site = spec
        if kind == "split_folder":  # evaluate, calibrate and grid read one set of images: one part
            capsys.readouterr()
            assert main(["evaluate", str(run), spec, "--site", "site_b"]) == 2
            error = capsys.readouterr().err.splitlines()[0]
            assert "split already" in error and f"{spec}/test" in error, error
            site = f"{spec}/test"
        assert main(["evaluate", str(run), site, "--site", "site_b", "--bootstrap", "50"]) == 0
        assert (run / "external-site_b.json").exists()
        if kind != "tfds":  # predict and calibrate read files (tfds:NAME is not a file)
            assert main(["predict", str(run), spec, "--out", str(tmp_path / "p.csv")]) == 0
            import pandas as pd

            assert len(pd.read_csv(tmp_path / "p.csv")) == 32
        assert main(["card", str(run)]) == 0
        assert assert_strict_json(run) >= 7  # + cli_config, test_metrics, external-site_b, audit, model_card


def _refuse_constant(token):
    raise ValueError(f"not strict JSON: {token}")


def assert_strict_json(folder: Path) -> int:
    """Every JSON file under ``folder`` parses with a strict parser (no NaN or Infinity, as JSON.parse)."""
    files = sorted(Path(folder).rglob("*.json"))
    for file in files:
        try:
            json.loads(file.read_text(), parse_constant=_refuse_constant)
        except ValueError as exc:
            raise AssertionError(f"{file}: {exc}") from None
    return len(files)


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False

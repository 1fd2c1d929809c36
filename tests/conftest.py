"""Shared fixtures. Weight files are written by tf-keras (Keras 2), the format of the published files,
with random weights at small input sizes; nothing is downloaded."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # warnings on: tests check what TensorFlow logs

import shutil
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest


class _FromRegistry(Mapping):
    """A backbone's field, read from the registry (models/backbones.py) on each look-up, so a new entry (or one a
    test registers) is served with no change here."""

    def __init__(self, field: str):
        self.field = field

    def _specs(self) -> dict:
        from radtransfer.models import backbones

        return backbones._ALL

    def __getitem__(self, name):
        from radtransfer.models.backbones import get_backbone

        try:
            spec = get_backbone(name)
        except ValueError:
            raise KeyError(name) from None
        return getattr(spec, self.field)

    def __iter__(self):
        return iter(self._specs())

    def __len__(self) -> int:
        return len(self._specs())


SMALL = _FromRegistry("min_size")  # the smallest input each backbone builds at
TF_KERAS_NAMES = _FromRegistry("constructor")  # keras.applications and tf_keras.applications spell it alike


def tf_keras_backbone(backbone: str, include_top: bool = False):
    """The backbone built by tf-keras (Keras 2, the published files' format) at its minimum size, with random
    weights: the keras.applications network, or a test backbone's builder run in tf-keras; notop and average-pooled
    unless ``include_top`` (a 1000-class top)."""
    import tf_keras

    from radtransfer.models.backbones import get_backbone

    spec = get_backbone(backbone)
    shape = (SMALL[backbone],) * 2 + (3,)
    if spec.builder is not None and not include_top:
        return spec.builder(shape, spec.name, keras_module=tf_keras)
    ctor = getattr(tf_keras.applications, TF_KERAS_NAMES[backbone])
    if include_top:
        return ctor(include_top=True, weights=None, input_shape=shape, classes=1000)
    return ctor(include_top=False, weights=None, input_shape=shape, pooling="avg")


def weight_arrays(model) -> list:
    """All arrays of the weight-bearing layers, in layer order (works for tf-keras and Keras 3)."""
    return [w for layer in model.layers if layer.weights for w in layer.get_weights()]


class Keras2Files:
    """Makes and caches Keras 2 .h5 files for every backbone of the registry, test backbones included.

    The files (and the reference's weight arrays) are kept in ``root``, which the test processes of one session
    share: the first process to need a file writes it under a lock, the others read it."""

    def __init__(self, root: Path):
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._models = {}
        self._arrays = {}

    def reference(self, backbone: str):
        """The tf-keras network the files are saved from (built in this process on first use)."""
        if backbone not in self._models:
            import tf_keras

            tf_keras.utils.set_random_seed(len(backbone))
            model = tf_keras_backbone(backbone)
            # Random BatchNorm parameters and statistics (their initial values are constants), so a load
            # that skipped or swapped them would be caught; kernels keep their random initialisation.
            rng = np.random.default_rng(len(backbone))
            for layer in model.layers:
                if isinstance(layer, tf_keras.layers.BatchNormalization):
                    layer.set_weights(
                        [
                            rng.uniform(0.8, 1.2, w.shape).astype(w.dtype)
                            if "variance" in v.name or "gamma" in v.name
                            else rng.normal(0, 0.05, w.shape).astype(w.dtype)
                            for v, w in zip(layer.weights, layer.get_weights())
                        ]
                    )
            self._models[backbone] = model
        return self._models[backbone]

    def reference_arrays(self, backbone: str) -> list:
        """``weight_arrays`` of the reference, as tf-keras held them when it wrote the files."""
        if backbone not in self._arrays:
            write = lambda path: np.savez(path, *weight_arrays(self.reference(backbone)))  # noqa: E731
            path = self._made(f"{backbone}_reference.npz", write)
            with np.load(path) as stored:
                self._arrays[backbone] = [stored[f"arr_{i}"] for i in range(len(stored.files))]
        return self._arrays[backbone]

    def _made(self, name: str, write) -> Path:
        """``root/name``, written by ``write(path)`` once per session (under a lock; atomically)."""
        import fcntl

        path = self.root / name
        if path.exists():
            return path
        with open(self.root / f"{name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not path.exists():
                partial = path.with_name(f"partial-{os.getpid()}-{name}")
                write(partial)
                partial.replace(path)
        return path

    def full_model(self, backbone: str) -> Path:
        """A full-model save (``model_weights`` group), as RadImageNet publishes."""
        return self._made(f"{backbone}_full.h5", lambda p: self.reference(backbone).save(p))

    def weights_only(self, backbone: str) -> Path:
        """A save_weights file, as Keras's ImageNet cache holds."""
        return self._made(f"{backbone}_weights.h5", lambda p: self.reference(backbone).save_weights(p))

    def with_top(self, backbone: str = "resnet50") -> Path:
        return self._made(f"{backbone}_top.h5", lambda p: tf_keras_backbone(backbone, include_top=True).save(p))

    def nested(self, backbone: str = "densenet121") -> Path:
        """The backbone nested as one layer of a model (weights stored under one entry)."""

        def write(path):
            import tf_keras

            base = self.reference(backbone)
            inputs = tf_keras.Input(base.input_shape[1:])
            tf_keras.Model(inputs, base(inputs)).save(path)

        return self._made(f"{backbone}_nested.h5", write)

    def place(self, backbone: str, folder: Path, name: str, kind: str = "full") -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        source = self.full_model(backbone) if kind == "full" else self.weights_only(backbone)
        target = folder / name
        shutil.copyfile(source, target)
        return target


@pytest.fixture(scope="session")
def keras2_files(tmp_path_factory):
    """The session's Keras 2 files, in one folder every test process of the session shares (pytest-xdist)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return Keras2Files(tmp_path_factory.getbasetemp().parent / "keras2_h5")
    return Keras2Files(tmp_path_factory.mktemp("keras2_h5"))


@pytest.fixture
def tiny_for(monkeypatch):
    """``tiny_for("densenet121", ...)``: for this test, the names (and aliases) of those real backbones look up
    the test_tiny entry, so a script or command that names a real backbone (the demo, the examples) runs its
    whole path on the test backbone; for tests where the architecture is not what is tested (the real networks
    have their own tests in tests/models)."""
    from radtransfer.models import backbones

    def alias(*names):
        for name in names:
            spec = backbones.get_backbone(name)
            for key in (spec.name, spec.display_name, *spec.aliases):
                monkeypatch.setitem(backbones._LOOKUP, key.lower(), "test_tiny")

    return alias


@pytest.fixture
def isolated_dirs(tmp_path, monkeypatch):
    """An empty working folder and Keras home, and no $RADTRANSFER_WEIGHTS_DIR."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.delenv("RADTRANSFER_WEIGHTS_DIR", raising=False)
    return tmp_path


@pytest.fixture(scope="session")
def cli_data(tmp_path_factory):
    """The command line's small data: 12 synthetic patients (4 classes), 2 slices each, 40 px."""
    import radtransfer as rt

    root = tmp_path_factory.mktemp("cli_data")
    rt.datasets.synthetic_brain_mri(root, n_patients=12, slices_per_patient=2, image_size=40, seed=5)
    return root


@pytest.fixture(scope="session")
def cli_run(cli_data, tmp_path_factory):
    """A run folder of ``radtransfer train`` on ``cli_data`` (the test_tiny backbone, 32 px, 1 epoch). Shared:
    a test that changes it works on a copy."""
    import json

    from radtransfer.cli import main

    out = tmp_path_factory.mktemp("cli_run")
    config = out / "defaults.json"
    config.write_text(
        json.dumps({"backbone": "test_tiny", "weights": "none", "image-size": 32, "epochs": 1, "batch_size": 8})
    )
    argv = ["train", str(cli_data), "--config", str(config), "--batch-size", "4", "--out", str(out / "run")]
    assert main(argv + ["--run-eagerly", "--verbose", "0"]) == 0
    return out / "run"


def two_class(image_set, negative: str = "no_tumor", positive: str = "glioma"):
    """The images of two classes of a set, relabelled (negative, positive): every task of the paper has two."""
    from radtransfer.data import ImageSet

    names = list(image_set.class_names)
    keep = np.flatnonzero(np.isin(image_set.labels, [names.index(negative), names.index(positive)]))
    part = image_set.subset(keep)
    labels = (part.labels == names.index(positive)).astype(np.int64)
    return ImageSet(
        paths=part.paths,
        labels=labels,
        class_names=(negative, positive),
        patient_ids=part.patient_ids,
        images=part.images,
        extras=part.extras,
    )


# -- the small training runs tests/training and tests/evaluation share (each module trains its own) --------------

EPOCHS = 2


def tiny_model(seed=0, classes=4, backbone="test_tiny"):
    """The test backbone at 32 px (the loop or the evaluation is tested, not the architecture; tests/models/ test
    the real ones)."""
    import keras

    import radtransfer as rt

    keras.utils.set_random_seed(seed)
    return rt.build_model(backbone, weights=None, num_classes=classes, input_shape=(32, 32, 3))


def train_tiny(model, splits, out_dir=None, **kwargs):
    """``fine_tune`` of ``model`` on ``splits``' train and val parts: unfreeze_top10, 2 epochs, batch 8, seed 0,
    unless ``kwargs`` say otherwise."""
    import radtransfer as rt

    train, val, _ = splits
    arguments = dict(
        strategy="unfreeze_top10", learning_rate=1e-3, epochs=EPOCHS, out_dir=out_dir, seed=0, batch_size=8, verbose=0
    )
    arguments.update(kwargs)
    return rt.fine_tune(model, train, val, **arguments)


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    """Four classes of synthetic brain MRI, 12 patients × 2 slices, split 60/20/20 by patient."""
    import radtransfer as rt

    root = tmp_path_factory.mktemp("brain_train")
    image_set = rt.datasets.load_synthetic_brain_mri(root, n_patients=12, slices_per_patient=2, image_size=40, seed=2)
    return image_set.split(val=0.2, test=0.2, seed=726)


@pytest.fixture(scope="module")
def first_run(splits, tmp_path_factory):
    """A four-class run of the test backbone on ``splits``, with its folder: (model, result, folder)."""
    out = tmp_path_factory.mktemp("run1")
    model = tiny_model()
    return model, train_tiny(model, splits, out), out


@pytest.fixture(scope="module")
def two_class_splits(tmp_path_factory):
    """Two classes (no tumour, glioma) of 40 patients × 2 slices, split 50/25/25 by patient."""
    import radtransfer as rt

    root = tmp_path_factory.mktemp("brain_two_class")
    images = rt.datasets.load_synthetic_brain_mri(root, n_patients=40, slices_per_patient=2, image_size=40, seed=3)
    return two_class(images).split(val=0.25, test=0.25, seed=726)

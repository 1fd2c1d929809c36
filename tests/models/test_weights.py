"""Finding, checking and loading .h5 weight files."""

from __future__ import annotations

import numpy as np
import pytest

import radtransfer as rt
from radtransfer import weights as W
from radtransfer.models.presets import get_preset

from conftest import weight_arrays


def _assert_same_weights(model, expected):
    loaded = weight_arrays(model.get_layer("backbone"))
    assert len(loaded) == len(expected)
    for a, b in zip(loaded, expected):
        np.testing.assert_array_equal(a, b)


def test_irv2_accepts_both_arch_spellings():
    names = get_preset("IRV2", "radimagenet").files
    assert "RadImageNet-IRV2_notop.h5" in names and "RadImageNet-IRV2-notop.h5" in names
    assert "RadImageNet-InceptionResNetV2_notop.h5" in names


def test_file_loads_into_a_larger_input_size(keras2_files):
    model = rt.build_model("densenet121", weights=keras2_files.full_model("densenet121"), input_shape=(64, 64, 3))
    _assert_same_weights(model, keras2_files.reference_arrays("densenet121"))


def test_nested_model_file_is_flattened_in_topological_order(keras2_files):
    model = rt.build_model("densenet121", weights=keras2_files.nested("densenet121"), input_shape=(32, 32, 3))
    _assert_same_weights(model, keras2_files.reference_arrays("densenet121"))


def test_search_order(keras2_files, isolated_dirs, monkeypatch):
    place = lambda folder: keras2_files.place("resnet50", folder, "RadImageNet-ResNet50_notop.h5")
    explicit_dir = isolated_dirs / "given"
    env_dir = isolated_dirs / "env"
    local = isolated_dirs / "work" / "weights"
    for folder in (explicit_dir, env_dir, local):
        place(folder)
    monkeypatch.setenv("RADTRANSFER_WEIGHTS_DIR", str(env_dir))

    resolved = W.resolve_weights("resnet50", "radimagenet", weights_dir=explicit_dir)
    assert resolved.path.parent == explicit_dir
    assert W.resolve_weights("resnet50", "radimagenet").path.parent == env_dir
    monkeypatch.delenv("RADTRANSFER_WEIGHTS_DIR")
    assert W.resolve_weights("resnet50", "radimagenet").path.resolve().parent == local
    # An explicit path wins over everything.
    other = keras2_files.place("resnet50", isolated_dirs / "elsewhere", "my_weights.h5")
    resolved = W.resolve_weights("resnet50", str(other), weights_dir=explicit_dir)
    assert resolved.path == other and resolved.source == "file"


def test_imagenet_search_prefers_local_folders_over_keras_cache(keras2_files, isolated_dirs):
    file = get_preset("resnet50", "imagenet").files[0]
    cache = keras2_files.place("resnet50", isolated_dirs / "keras_home" / "models", file, "weights")
    assert W.resolve_weights("resnet50", "imagenet").path == cache
    local = keras2_files.place("resnet50", isolated_dirs / "work" / "weights", file, "weights")
    assert W.resolve_weights("resnet50", "imagenet").path.resolve() == local.resolve()


def test_radimagenet_is_never_downloaded_and_error_names_everything(isolated_dirs, monkeypatch):
    monkeypatch.setattr("keras.utils.get_file", lambda *a, **k: pytest.fail("must not download"))
    with pytest.raises(rt.WeightsNotFoundError) as info:
        rt.build_model("irv2", weights="radimagenet", input_shape=(75, 75, 3), weights_dir=isolated_dirs / "mine")
    message = str(info.value)
    for expected in (
        "RadImageNet-IRV2_notop.h5",
        "RadImageNet-IRV2-notop.h5",
        "RadImageNet-InceptionResNetV2_notop.h5",
        str(isolated_dirs / "mine"),
        "weights",
        "github.com/BMEII-AI/RadImageNet",
    ):
        assert expected in message


def test_imagenet_download_uses_keras_with_md5(isolated_dirs, monkeypatch, keras2_files):
    preset = get_preset("densenet121", "imagenet")
    calls = []

    def fake_get_file(fname, origin, cache_subdir, file_hash):
        calls.append((fname, origin, cache_subdir, file_hash))
        return str(keras2_files.weights_only("densenet121"))

    monkeypatch.setattr("keras.utils.get_file", fake_get_file)
    resolved = W.resolve_weights("densenet121", "imagenet")
    assert calls == [(preset.files[0], preset.url, "models", "30ee3e1110167f948a6b9946edeeb738")]
    assert resolved.source == "imagenet"


def test_offline_imagenet_download_ends_in_our_message(isolated_dirs, monkeypatch):
    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- [Errno -3]")

    monkeypatch.setattr("keras.utils.get_file", offline)
    with pytest.raises(rt.WeightsNotFoundError, match="Could not download ImageNet weights for ResNet50.*Offline"):
        rt.build_model("resnet50", weights="imagenet", input_shape=(32, 32, 3))


def test_wrong_backbone_says_what_the_file_looks_like(keras2_files):
    with pytest.raises(
        rt.WeightsFileError, match=r"looks like ResNet50 \(106 weight layers\), not DenseNet121 \(241\)"
    ):
        rt.build_model("densenet121", weights=keras2_files.full_model("resnet50"), input_shape=(32, 32, 3))


def test_file_with_classifier_top_is_refused(keras2_files):
    with pytest.raises(rt.WeightsFileError, match=r"classifier top \(layer 'predictions', 1000 classes\)"):
        rt.build_model("resnet50", weights=keras2_files.with_top("resnet50"), input_shape=(32, 32, 3))


def test_truncated_file(keras2_files, tmp_path):
    data = keras2_files.full_model("resnet50").read_bytes()
    bad = tmp_path / "RadImageNet-ResNet50_notop.h5"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(rt.WeightsFileError, match="truncated") as info:
        rt.build_model("resnet50", weights=str(bad), input_shape=(32, 32, 3))
    assert str(bad) in str(info.value)


def test_non_hdf5_file(tmp_path):
    bad = tmp_path / "RadImageNet-ResNet50_notop.h5"
    bad.write_text("<html>403 Forbidden</html>")
    with pytest.raises(rt.WeightsFileError, match="not an HDF5 weights file"):
        rt.build_model("resnet50", weights=bad, input_shape=(32, 32, 3))


def test_hdf5_that_is_not_keras(tmp_path):
    import h5py

    bad = tmp_path / "data.h5"
    with h5py.File(bad, "w") as handle:
        handle["x"] = np.zeros(3)
    with pytest.raises(rt.WeightsFileError, match="not a Keras weights file"):
        rt.check_weight_file(bad, "resnet50")


def test_keras3_weights_file_is_explained(tmp_path):
    model = rt.build_model("resnet50", weights=None, input_shape=(32, 32, 3))
    path = tmp_path / "mine.weights.h5"
    model.get_layer("backbone").save_weights(path)
    with pytest.raises(rt.WeightsFileError, match="Keras 3 weights file"):
        rt.check_weight_file(path, "resnet50")


def test_missing_path():
    with pytest.raises(
        rt.WeightsNotFoundError, match="Weights file not found: '/no/such/RadImageNet-ResNet50_notop.h5'"
    ):
        rt.build_model("resnet50", weights="/no/such/RadImageNet-ResNet50_notop.h5", input_shape=(32, 32, 3))


def test_misspelt_weights_source():
    with pytest.raises(ValueError, match='Did you mean "radimagenet"'):
        rt.build_model("resnet50", weights="radimagenett", input_shape=(32, 32, 3))


def test_sha256_pinning(keras2_files):
    path = keras2_files.full_model("resnet50")
    digest = W.sha256sum(path)
    model = rt.build_model("resnet50", weights=path, input_shape=(32, 32, 3), weights_sha256=digest.upper())
    assert model.radtransfer_info.weights_sha256 == digest
    with pytest.raises(rt.WeightsFileError, match="has sha256"):
        rt.build_model("resnet50", weights=path, input_shape=(32, 32, 3), weights_sha256="0" * 64)


def test_find_weight_files_lists_size_hash_and_match(keras2_files, isolated_dirs):
    local = isolated_dirs / "work" / "weights"
    good = keras2_files.place("resnet50", local, "RadImageNet-ResNet50_notop.h5")
    keras2_files.place("resnet50", local, "RadImageNet-DenseNet121_notop.h5")  # wrong content
    keras2_files.place("resnet50", local, "something.h5")
    rows = {r["path"].split("/")[-1]: r for r in rt.find_weight_files()}
    assert rows["RadImageNet-ResNet50_notop.h5"]["matches"] is True
    assert rows["RadImageNet-ResNet50_notop.h5"]["sha256"] == W.sha256sum(good)
    assert rows["RadImageNet-ResNet50_notop.h5"]["size"] == good.stat().st_size
    assert rows["RadImageNet-DenseNet121_notop.h5"]["matches"] is False
    assert "looks like ResNet50" in rows["RadImageNet-DenseNet121_notop.h5"]["detail"]
    assert rows["something.h5"]["backbone"] == "resnet50" and rows["something.h5"]["matches"] is None

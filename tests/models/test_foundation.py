"""Foundation-model backbones (DINOv2, SigLIP's vision tower) through keras-hub: tiny random encoders saved in
keras-hub's preset format and in Hugging Face's (by transformers, where it is installed), loaded by build_model."""

import numpy as np
import pytest

keras_hub = pytest.importorskip("keras_hub", reason="the 'foundation' extra (keras-hub) is not installed")

from radtransfer import apply_strategy, build_model  # noqa: E402
from radtransfer.errors import WeightsFileError, WeightsNotFoundError  # noqa: E402

TINY = {"patch_size": 8, "num_layers": 2, "hidden_dim": 32, "num_heads": 2, "intermediate_dim": 64}
SHAPE = (32, 32, 3)


def _dinov2():
    return keras_hub.models.DINOV2Backbone(**TINY, image_shape=SHAPE, position_embedding_shape=(32, 32))


def _siglip():
    return keras_hub.models.SigLIPVisionEncoder(**TINY, image_shape=SHAPE)


def _hand_count_dinov2():
    """Trainable parameters of the tiny DINOv2, written out (hidden h = 32, MLP m = 64, 16 patches + class token)."""
    h, m, p = 32, 64, 8
    embeddings = p * p * 3 * h + h + h + h + 17 * h  # patch kernel and bias, class token, mask token, positions
    layer = 2 * 2 * h + 4 * (h * h + h) + 2 * h + (h * m + m) + (m * h + h)  # 2 norms, q k v o, 2 scales, MLP
    return embeddings + 2 * layer + 2 * h  # final norm


@pytest.fixture(scope="module")
def dinov2_preset(tmp_path_factory):
    encoder = _dinov2()
    folder = tmp_path_factory.mktemp("presets") / "my_dinov2"
    encoder.save_to_preset(str(folder))
    return encoder, folder


@pytest.fixture(scope="module")
def siglip_preset(tmp_path_factory):
    encoder = _siglip()
    folder = tmp_path_factory.mktemp("presets") / "my_siglip"
    encoder.save_to_preset(str(folder))
    return encoder, folder


def _images(seed=0, n=2):
    return np.random.default_rng(seed).uniform(0, 255, (n, *SHAPE)).astype("float32")


def test_dinov2_keras_hub_preset_features_match_the_original(dinov2_preset):
    encoder, folder = dinov2_preset
    model = build_model("dinov2", weights=str(folder), num_classes=3, input_shape=SHAPE)
    assert [layer.name for layer in model.layers[1:]] == ["preprocess", "backbone", "dropout", "predictions"]
    assert model.radtransfer_info.preprocessing == "torch"
    x = _images()
    normalized = (x / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    tokens = np.asarray(encoder({"images": normalized.astype("float32")}))
    expected = np.concatenate([tokens[:, 0], tokens[:, 1:].mean(axis=1)], axis=-1)  # class token ‖ patch mean
    features = np.asarray(model.get_layer("backbone")(model.get_layer("preprocess")(x)))
    np.testing.assert_allclose(features, expected, atol=1e-5)


def test_siglip_keras_hub_preset_features_match_the_original(siglip_preset):
    encoder, folder = siglip_preset
    model = build_model("SigLIP", weights=folder, num_classes=2, input_shape=SHAPE)
    assert model.radtransfer_info.preprocessing == "tf"
    x = _images(1)
    expected = np.asarray(encoder({"images": x / 127.5 - 1.0}))
    features = np.asarray(model.get_layer("backbone")(model.get_layer("preprocess")(x)))
    np.testing.assert_allclose(features, expected, atol=1e-5)


def test_other_input_sizes_are_resized_to_the_encoders(siglip_preset):
    _, folder = siglip_preset
    model = build_model("siglip", weights=folder, input_shape=(48, 40, 1))
    gray = np.random.default_rng(3).uniform(0, 255, (2, 48, 40, 1)).astype("float32")
    assert model.predict(gray, verbose=0).shape == (2, 2)
    assert "resize" in [layer.name for layer in model.get_layer("backbone").layers]


def test_trainable_counts_per_strategy(dinov2_preset):
    _, folder = dinov2_preset
    model = build_model("dinov2", weights=folder, num_classes=3, input_shape=SHAPE)
    head = 2 * 32 * 3 + 3  # Dense on class token ‖ patch mean (64 values), 3 classes
    assert apply_strategy(model, "freeze_all").trainable_params == head
    assert apply_strategy(model, "unfreeze_all").trainable_params == head + _hand_count_dinov2()
    with pytest.raises(ValueError, match="no stages"):
        apply_strategy(model, "unfreeze_blocks:1")


def test_hugging_face_dinov2_folder_matches_transformers(tmp_path):
    torch = pytest.importorskip("torch", reason="transformers' DINOv2 needs torch")
    transformers = pytest.importorskip("transformers", reason="transformers is not installed")
    config = transformers.Dinov2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, patch_size=8, image_size=32
    )
    torch.manual_seed(0)
    reference = transformers.Dinov2Model(config).eval()
    reference.save_pretrained(tmp_path)
    model = build_model("dinov2", weights=tmp_path, input_shape=SHAPE)
    x = np.random.default_rng(2).normal(size=(2, *SHAPE)).astype("float32")
    with torch.no_grad():
        tokens = reference(pixel_values=torch.from_numpy(x.transpose(0, 3, 1, 2))).last_hidden_state.numpy()
    expected = np.concatenate([tokens[:, 0], tokens[:, 1:].mean(axis=1)], axis=-1)
    np.testing.assert_allclose(np.asarray(model.get_layer("backbone")(x)), expected, atol=1e-5)


def test_hugging_face_siglip_folder_is_refused_in_one_line(tmp_path):
    pytest.importorskip("torch", reason="transformers' SigLIP needs torch")
    transformers = pytest.importorskip("transformers", reason="transformers is not installed")
    config = transformers.SiglipVisionConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, patch_size=8, image_size=32
    )
    transformers.SiglipVisionModel(config).save_pretrained(tmp_path)
    with pytest.raises(WeightsFileError, match="keras-hub preset folder") as error:
        build_model("siglip", weights=tmp_path, input_shape=SHAPE)
    assert "\n" not in str(error.value)


def test_wrong_family_and_incomplete_folder(dinov2_preset, tmp_path):
    _, folder = dinov2_preset
    with pytest.raises(WeightsFileError, match="'DINOV2Backbone'.*backbone='siglip'"):
        build_model("siglip", weights=folder, input_shape=SHAPE)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(WeightsFileError, match="model.weights.h5") as error:
        build_model("dinov2", weights=tmp_path, input_shape=SHAPE)
    assert "\n" not in str(error.value)


def test_named_preset_found_in_weights_dir(dinov2_preset, tmp_path):
    import shutil

    _, folder = dinov2_preset
    shutil.copytree(folder, tmp_path / "dinov2_small")
    model = build_model("dinov2", weights="dinov2_small", weights_dir=tmp_path, input_shape=SHAPE)
    assert model.radtransfer_info.weights_source == "dinov2_small"
    assert model.get_layer("backbone").get_layer("dinov2_backbone").image_shape[0] == 224  # the preset's crop


def test_named_preset_missing_offline_says_which_files_where(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("Failed to resolve 'api.kaggle.com'")

    monkeypatch.setattr(keras_hub.models.Backbone, "from_preset", offline)
    with pytest.raises(WeightsNotFoundError) as error:
        build_model("dinov2", weights="dinov2_small", weights_dir=tmp_path, input_shape=SHAPE)
    message = str(error.value)
    assert "\n" not in message
    assert str(tmp_path / "dinov2_small") in message
    assert "config.json + model.safetensors" in message and "facebook/dinov2-small" in message


def test_without_keras_hub_the_error_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "keras_hub", None)  # import keras_hub now raises ImportError
    with pytest.raises(ImportError) as error:
        build_model("dinov2", weights=None, input_shape=SHAPE)
    assert "pip install 'radtransfer[foundation]'" in str(error.value)
    assert "\n" not in str(error.value)


def test_a_folder_s_unknown_normalization_a_pin_and_a_damaged_file(dinov2_preset, tmp_path):
    """An unknown normalization asks for preprocessing=, and preprocessing= then loads the folder; a pin is checked
    against the weights file before loading (hashlib is the reference); a truncated weights file is one line."""
    import hashlib
    import shutil

    _, source = dinov2_preset
    folder = tmp_path / "odd_dinov2"
    shutil.copytree(source, folder)
    (folder / "preprocessor_config.json").write_text('{"image_mean": [0.1, 0.2, 0.3], "image_std": [0.4, 0.4, 0.4]}')
    with pytest.raises(WeightsFileError, match="Pass preprocessing= explicitly"):
        build_model("dinov2", weights=folder, input_shape=SHAPE)
    model = build_model("dinov2", weights=folder, input_shape=SHAPE, preprocessing="torch")
    digest = hashlib.sha256((folder / "model.weights.h5").read_bytes()).hexdigest()
    assert model.radtransfer_info.preprocessing == "torch" and model.radtransfer_info.weights_sha256 == digest
    with pytest.raises(WeightsFileError, match="was pinned") as pinned:
        build_model("dinov2", weights=folder, input_shape=SHAPE, preprocessing="torch", weights_sha256="0" * 64)
    weights = folder / "model.weights.h5"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 3])
    with pytest.raises(WeightsFileError, match="could not load") as damaged:
        build_model("dinov2", weights=folder, input_shape=SHAPE, preprocessing="torch")
    assert "\n" not in str(pinned.value) + str(damaged.value)

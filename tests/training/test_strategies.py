"""Freezing strategies: the reference's trainable counts and the extensions."""

import keras
import numpy as np
import pytest

import radtransfer as rt

from conftest import SMALL


@pytest.fixture(scope="module")
def models():
    return {}


def _model(models, backbone):
    if backbone not in models:
        size = SMALL[backbone]
        models[backbone] = rt.build_model(backbone, weights=None, num_classes=2, input_shape=(size, size, 3))
    return models[backbone]


def test_unfreeze_top10_is_the_reference_loop(models):
    """The same freezing done the reference's way on a tf-keras model."""
    import tf_keras

    base = tf_keras.applications.DenseNet121(include_top=False, weights=None, input_shape=(32, 32, 3), pooling="avg")
    for layer in base.layers[:-10]:
        layer.trainable = False
    out = tf_keras.layers.Dense(2, activation="softmax")(tf_keras.layers.Dropout(0.5)(base.output))
    reference = tf_keras.Model(base.input, out)
    expected = sum(int(np.prod(w.shape)) for w in reference.trainable_weights)
    summary = rt.apply_strategy(_model(models, "densenet121"), "unfreeze_top10")
    assert summary.trainable_params == expected
    assert summary.trainable_layers == [layer.name for layer in base.layers if layer.trainable_weights]


def test_inception_v3_top10_warns_it_is_nearly_freeze_all(models):
    with pytest.warns(UserWarning, match="nearly 'freeze_all'"):
        summary = rt.apply_strategy(_model(models, "inception_v3"), "unfreeze_top10")
    assert summary.warnings


def test_resnet_top_block_is_exactly_conv5_block3(models):
    summary = rt.apply_strategy(_model(models, "resnet50"), "unfreeze_blocks:1")
    assert summary.trainable_layers and all(n.startswith("conv5_block3_") for n in summary.trainable_layers)


# test_tiny by hand: Input, stem_conv (3·3·3·8 = 216), stem_bn (γ, β: 16; moving statistics: 16), stem_relu, pool1,
# block1_conv (3·3·8·16 = 1,152), block1_bn (32 + 32), block1_out, block2_conv (3·3·16·16 = 2,304), block2_bn
# (32 + 32), block2_out, avg_pool: 12 layers; the head a Dense(16 → 2), 34 parameters.
TINY_HEAD = 16 * 2 + 2
TINY_TRAINABLE = {
    "freeze_all": 0,
    "unfreeze_all": 216 + 16 + 1152 + 32 + 2304 + 32,
    "unfreeze_top10": 16 + 1152 + 32 + 2304 + 32,  # layers[2:]: stem_conv (layer 1) stays frozen
    "unfreeze_blocks:1": 2304 + 32,  # block2 (stage starts after pool1 and after block1_out)
    "unfreeze_blocks:2": 1152 + 32 + 2304 + 32,
}


@pytest.mark.parametrize("strategy", list(TINY_TRAINABLE))
def test_strategies_on_the_test_backbone_leave_what_a_hand_count_gives(models, strategy):
    summary = rt.apply_strategy(_model(models, "test_tiny"), strategy)
    assert summary.trainable_params == TINY_TRAINABLE[strategy] + TINY_HEAD
    assert summary.total_params == TINY_TRAINABLE["unfreeze_all"] + TINY_HEAD + 2 * (8 + 16 + 16)
    assert summary.non_trainable_params == summary.total_params - summary.trainable_params
    assert not summary.warnings
    frozen = rt.apply_strategy(_model(models, "test_tiny"), strategy, bn="frozen")
    assert (
        frozen.trainable_params
        == summary.trainable_params
        - {
            "freeze_all": 0,
            "unfreeze_all": 16 + 32 + 32,
            "unfreeze_top10": 16 + 32 + 32,
            "unfreeze_blocks:1": 32,
            "unfreeze_blocks:2": 32 + 32,
        }[strategy]
    )


def test_bn_frozen_freezes_every_batchnorm(models):
    model = _model(models, "test_tiny")
    protocol = rt.apply_strategy(model, "unfreeze_all")
    frozen = rt.apply_strategy(model, "unfreeze_all", bn="frozen")
    layers = model.get_layer("backbone").layers
    batchnorms = [layer for layer in layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert all(not layer.trainable for layer in batchnorms)
    gamma_beta = sum(int(np.prod(w.shape)) for layer in batchnorms for w in (layer.gamma, layer.beta))
    assert protocol.trainable_params - frozen.trainable_params == gamma_beta


def test_bn_frozen_keeps_moving_statistics_during_fit():
    """DESIGN.md §4: trainable=False, not training=False, keeps BN in inference mode in Keras 3."""
    x = np.random.default_rng(0).uniform(0, 255, size=(4, 32, 32, 3)).astype("float32")
    y = keras.utils.to_categorical([0, 1, 0, 1], 2)

    def moving_mean_change(bn):
        model = rt.build_model("test_tiny", weights=None, input_shape=(32, 32, 3))
        rt.apply_strategy(model, "unfreeze_all", bn=bn)
        layer = model.get_layer("backbone").get_layer("stem_bn")
        before = keras.ops.convert_to_numpy(layer.moving_mean).copy()
        model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="categorical_crossentropy")
        model.fit(x, y, epochs=1, batch_size=4, verbose=0)
        return np.abs(keras.ops.convert_to_numpy(layer.moving_mean) - before).max()

    assert moving_mean_change("frozen") == 0.0
    assert moving_mean_change("protocol") > 0.0


@pytest.mark.parametrize(
    "bad, message", [("freeze", 'Did you mean "freeze_all"'), ("unfreeze_top", "Unknown strategy")]
)
def test_unknown_strategy(bad, message, models):
    with pytest.raises(ValueError, match=message):
        rt.apply_strategy(_model(models, "test_tiny"), bad)


def test_bad_bn_mode(models):
    with pytest.raises(ValueError, match="Expected bn to be one of 'protocol', 'frozen'"):
        rt.apply_strategy(_model(models, "test_tiny"), "freeze_all", bn="inference")

"""Layer-wise learning-rate decay ("llrd:D"): the factors per block, one optimizer step against a hand Adam step,
every supported optimizer against itself at the scaled rate, decay 1 against unfreeze_all, resume, the command."""

from __future__ import annotations

import json
import re

import keras
import numpy as np
import pytest

import radtransfer as rt
from radtransfer.cli import main
from radtransfer.models.layer_rates import with_layer_rates
from radtransfer.training.config import OPTIMIZERS, TrainConfig
from radtransfer.training.strategies import layer_factors, parse_strategy, rate_factors

from conftest import tiny_model, train_tiny

D = 0.5
# test_tiny by hand (tests/training/test_strategies.py): stem = stem_conv, stem_bn (below pool1's end); block 2 from
# the top = block1_*; block 1 (the top) = block2_*; the head = predictions.
TINY_FACTORS = {"stem_conv": D**3, "stem_bn": D**3, "block1_conv": D**2, "block1_bn": D**2}
TINY_FACTORS.update({"block2_conv": D, "block2_bn": D, "predictions": 1.0})


def _layer_of(path: str) -> str:
    return path.split("/")[0]


class InterruptEpoch2(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt


@pytest.fixture(scope="module")
def llrd_run(splits, tmp_path_factory):
    """An uninterrupted two-epoch "llrd:0.5" run: (model, result)."""
    model = tiny_model()
    return model, train_tiny(model, splits, tmp_path_factory.mktemp("llrd"), strategy=f"llrd:{D}", run_eagerly=True)


@pytest.mark.parametrize("bad", ["llrd", "llrd:0", "llrd:-0.5", "llrd:1.5", "llrd:x", "llrd:nan", "llrd:inf"])
def test_a_decay_outside_zero_to_one_is_refused_in_one_line(bad):
    with pytest.raises(ValueError) as caught:
        TrainConfig(bad, 1e-3)
    message = str(caught.value)
    assert "\n" not in message and "0 < D ≤ 1" in message and repr(bad) in message


def test_the_strategy_parses_and_is_recorded_in_one_spelling():
    assert parse_strategy("llrd:0.75") == ("llrd", 0.75)
    assert TrainConfig("LLRD_0.750", 1e-3).strategy == "llrd:0.75"
    assert TrainConfig("llrd:1.0", 1e-3).strategy == "llrd:1"
    assert "llrd:D" in rt.training.strategies.STRATEGIES


def test_factors_per_layer_on_test_tiny_and_all_layers_train():
    model = tiny_model()
    summary = rt.apply_strategy(model, f"llrd:{D}")
    factors = rate_factors(model, f"llrd:{D}")
    assert {_layer_of(p) for p in factors} == set(TINY_FACTORS) - {"predictions"}  # the head is not named: 1
    assert all(factor == TINY_FACTORS[_layer_of(path)] for path, factor in factors.items())
    assert [(row["part"], row["factor"]) for row in summary.lr_factors] == [
        ("head", 1.0),
        ("block 1", D),
        ("block 2", D**2),
        ("stem", D**3),
    ]
    everything = rt.apply_strategy(tiny_model(), "unfreeze_all")
    by_hand = 216 + 16 + 1152 + 32 + 2304 + 32 + (16 * 4 + 4)  # all but the BatchNorm moving statistics
    assert summary.trainable_params == everything.trainable_params == by_hand
    assert summary.trainable_layers == everything.trainable_layers
    assert "lr_factors" not in everything.to_dict()  # the other strategies' records are unchanged


def test_factors_on_resnet50_follow_its_residual_blocks():
    """ResNet50's layer names say their block: convS_blockB_*, 16 blocks; conv1_* and pool1_* are the stem."""
    base = rt.build_model("resnet50", weights=None, num_classes=2, input_shape=(32, 32, 3)).get_layer("backbone")
    blocks = [(s, b) for s, n in ((2, 3), (3, 4), (4, 6), (5, 3)) for b in range(1, n + 1)]
    starts = rt.training.strategies.block_starts(base, rt.models.backbones.get_backbone("resnet50"))
    factors = layer_factors(len(base.layers), starts, 0.8)
    for layer, factor in zip(base.layers, factors):
        found = re.match(r"conv(\d)_block(\d+)_", layer.name)
        depth = len(blocks) - blocks.index((int(found[1]), int(found[2]))) if found else len(blocks) + 1
        if layer.name == "avg_pool":
            depth = 1
        assert factor == pytest.approx(0.8**depth), layer.name


def _tiny_gradients(model):
    """Gradients of any origin (the step is what is tested): random, of each variable's shape, on every backend."""
    rng = np.random.default_rng(1)
    return [rng.normal(0, 0.1, tuple(v.shape)).astype("float32") for v in model.trainable_variables]


def test_one_adam_step_is_the_hand_adam_step_at_each_blocks_rate():
    model = tiny_model()
    rt.apply_strategy(model, f"llrd:{D}")
    config = TrainConfig(f"llrd:{D}", 1e-3)
    optimizer = config.make_optimizer(rate_factors(model, config.strategy))
    before = [np.array(v) for v in model.trainable_variables]
    grads = [np.array(g) for g in _tiny_gradients(model)]
    optimizer.apply(grads, model.trainable_variables)
    b1, b2, eps = 0.9, 0.999, 1e-7
    for variable, w, g in zip(model.trainable_variables, before, grads):
        g = g.astype(np.float64)
        m, v = (1 - b1) * g, (1 - b2) * g**2
        lr = 1e-3 * TINY_FACTORS[_layer_of(variable.path)]
        expected = w - lr * np.sqrt(1 - b2) / (1 - b1) * m / (np.sqrt(v) + eps)
        np.testing.assert_allclose(np.array(variable), expected, rtol=1e-5, atol=1e-8, err_msg=variable.path)


@pytest.mark.parametrize("name", list(OPTIMIZERS.values()))
def test_every_optimizer_with_factors_steps_as_itself_at_the_scaled_rate(name):
    """Two steps (momenta, AdamW's weight decay): a variable of factor f moves as under the plain optimizer at
    learning rate × f."""
    rng = np.random.default_rng(0)
    start = {key: rng.normal(size=(3, 4)).astype("float32") for key in "abc"}
    grads = [[rng.normal(size=(3, 4)).astype("float32") for _ in "abc"] for _ in range(2)]
    factors = {"a": 0.5, "b": 0.25}  # c: not named, factor 1
    scaled = [keras.Variable(start[key], name=key) for key in "abc"]
    optimizer = with_layer_rates(name, 0.01, factors)
    for step in grads:
        optimizer.apply(step, scaled)
    for i, key in enumerate("abc"):
        alone = keras.Variable(start[key], name=key)
        plain = getattr(keras.optimizers, name)(learning_rate=0.01 * factors.get(key, 1.0))
        for step in grads:
            plain.apply([step[i]], [alone])
        np.testing.assert_allclose(np.array(scaled[i]), np.array(alone), rtol=1e-6, atol=1e-7, err_msg=key)


def test_decay_one_is_unfreeze_all_exactly(splits):
    """One epoch of fine_tune (the same seed): the same weights, bit for bit."""
    runs = {}
    for strategy in ("unfreeze_all", "llrd:1"):
        model = tiny_model()
        runs[strategy] = (model, train_tiny(model, splits, strategy=strategy, epochs=1, run_eagerly=True))
    (a, ra), (b, rb) = runs["unfreeze_all"], runs["llrd:1"]
    assert ra.trainable_params == rb.trainable_params and ra.history["loss"] == rb.history["loss"]
    for x, y in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(x, y)


def test_a_resumed_run_equals_the_uninterrupted_one(llrd_run, splits, tmp_path):
    model, result = llrd_run
    assert result.settings["strategy"] == f"llrd:{D}" and result.settings["strategy_summary"]["lr_factors"]
    settings = dict(strategy=f"llrd:{D}", run_eagerly=True)
    with pytest.raises(KeyboardInterrupt):
        train_tiny(tiny_model(), splits, tmp_path / "run", callbacks=[InterruptEpoch2()], **settings)
    resumed_model = tiny_model(seed=3)
    resumed = train_tiny(resumed_model, splits, tmp_path / "run", **settings)
    assert resumed.resumed_from == 1 and resumed.history == result.history
    for x, y in zip(model.get_weights(), resumed_model.get_weights()):
        np.testing.assert_array_equal(x, y)
    if keras.backend.backend() == "tensorflow":
        # On JAX and PyTorch the training images are augmented on the device by a wrapper model that holds the
        # optimizer, and best.keras keeps the model without it; on TensorFlow the model itself was compiled.
        reloaded = rt.load_trained(tmp_path / "run")
        assert type(reloaded.optimizer).__name__ == "LayerRateAdam"
        assert reloaded.optimizer.rate_factors == rate_factors(resumed_model, f"llrd:{D}")


def test_the_command_trains_with_llrd(cli_data, tmp_path, capsys):
    """In graph mode (the other trainings here run eagerly): the factors are constants of the traced step."""
    argv = ["train", str(cli_data), "--backbone", "test_tiny", "--weights", "none", "--image-size", "32"]
    argv += ["--epochs", "1", "--batch-size", "4", "--verbose", "0", "--strategy", "llrd:0.75"]
    assert main(argv + ["--out", str(tmp_path / "run")]) == 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["strategy"] == "llrd:0.75"
    assert [row["factor"] for row in config["strategy_summary"]["lr_factors"]] == [1.0, 0.75, 0.75**2, 0.75**3]
    capsys.readouterr()
    assert main(argv[:-1] + ["llrd:2", "--out", str(tmp_path / "refused")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    expected = "Expected 'llrd:D' with a decay 0 < D ≤ 1 (e.g. 'llrd:0.75'). Received: --strategy llrd:2"
    assert err[0] == f"radtransfer: error: {expected}", err
    assert not (tmp_path / "refused").exists() or not any((tmp_path / "refused").iterdir())


def test_a_grid_scenario_takes_llrd():
    """The grid builds each run's TrainConfig from its scenario; llrd costs as a full fine-tune in the shard plan."""
    from radtransfer import protocol
    from radtransfer.grid.plan import Run, expected_cost

    scenario = protocol.Scenario("resnet50", "llrd:0.75", 1e-4)
    config = protocol.RADIMAGENET.train_config(scenario, seed=1, bn="protocol")
    assert config.strategy == "llrd:0.75" and scenario.id == "resnet50__llrd:0.75__lr0.0001"
    full = protocol.Scenario("resnet50", "unfreeze_all", 1e-4)
    assert expected_cost(Run("imagenet", scenario, 0, 0)) == expected_cost(Run("imagenet", full, 0, 0))

"""fine_tune and layerwise_search on CPU at 32 px with a handful of images (evaluate and predict on the trained
models: tests/evaluation/test_evaluate.py)."""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import textwrap
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
import warm_python

import radtransfer as rt
from radtransfer import training

from conftest import EPOCHS, tiny_model, train_tiny


def test_outputs_written(first_run):
    model, result, out = first_run
    for name in ("config.json", "state.json", "history.csv", "best.keras", "best.weights.h5", "result.json"):
        assert (out / name).stat().st_size > 0, name
    assert not list(out.glob("*-e*.npz")) and not list(out.glob("*-e*.weights.h5"))  # per-epoch checkpoints removed
    config = json.loads((out / "config.json").read_text())
    assert config["strategy"] == "unfreeze_top:10" and config["learning_rate"] == 1e-3
    assert config["identity"]["config"]["strategy"] == "unfreeze_top:10" and len(config["fingerprint"]) == 16
    assert config["class_names"] == list(rt.datasets.BRAIN_MRI_CLASSES)
    assert config["versions"]["keras"] == keras.__version__ and config["versions"]["tensorflow"] == tf.__version__
    assert config["strategy_summary"]["trainable_params"] == result.trainable_params
    assert config["model"]["backbone"] == "test_tiny" and config["model"]["weights_sha256"] is None
    assert config["jit_compile"] is False and config["precision"] == "float32"
    assert result.history["epoch"] == [1, 2] and len(result.history["val_auc"]) == EPOCHS
    assert result.best_val_loss == min(result.history["val_loss"])
    assert result.images_per_second and result.images_per_second > 0


def test_model_holds_the_best_weights(first_run):
    model, result, out = first_run
    best = tiny_model(seed=9)
    best.load_weights(out / "best.weights.h5")
    for a, b in zip(model.get_weights(), best.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_finished_run_is_not_trained_again(first_run, splits):
    model, result, out = first_run
    again = train_tiny(tiny_model(seed=5), splits, out)
    assert again.history == result.history and again.best_epoch == result.best_epoch


def test_same_seed_same_history(first_run, splits):
    _, result, _ = first_run
    second = train_tiny(tiny_model(), splits)
    for key in ("loss", "val_loss", "accuracy"):
        assert second.history[key] == result.history[key], key


def test_changed_settings_in_a_finished_out_dir_are_refused_with_the_differences(first_run, splits, tmp_path):
    import shutil

    _, _, out = first_run
    with pytest.raises(rt.RunMismatchError) as caught:
        train_tiny(tiny_model(), splits, out, strategy="freeze_all", learning_rate=1e-2, run_eagerly=True)
    message = str(caught.value)
    assert "config.strategy: 'unfreeze_top:10' → 'freeze_all'" in message
    assert "config.learning_rate: 0.001 → 0.01" in message and "resume=False" in message
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    result = train_tiny(
        tiny_model(), splits, copy, strategy="freeze_all", learning_rate=1e-2, epochs=1, resume=False, run_eagerly=True
    )
    assert result.settings["strategy"] == "freeze_all" and result.epochs_run == 1


RESUME_SCRIPT = """
import json, os, signal, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import keras
import radtransfer as rt
manifest, out, kill_epoch = sys.argv[1], sys.argv[2], int(sys.argv[3])
train, val, _ = rt.data.from_csv(manifest, image_col="path", label_col="label",
                                 patient_col="patient_id").split(val=0.2, test=0.2, seed=726)

class Kill(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
    def on_train_batch_end(self, batch, logs=None):
        if self.epoch == kill_epoch:
            os.kill(os.getpid(), signal.SIGKILL)  # mid-epoch, as a preempted job dies

def run(folder, callbacks=()):
    keras.utils.set_random_seed(0)
    model = rt.build_model("test_tiny", weights=None, num_classes=4, input_shape=(32, 32, 3))
    return rt.fine_tune(model, train, val, strategy="unfreeze_top10", learning_rate=1e-3, epochs=2, out_dir=folder,
                        seed=5, batch_size=8, verbose=0, deterministic=True, augment="radimagenet", callbacks=callbacks,
                        run_eagerly=True)

if kill_epoch >= 0:
    reference = run(out + "/reference")
    json.dump(reference.history, open(out + "/reference.json", "w"))
    run(out + "/killed", [Kill()])
else:
    result = run(out + "/killed")
    print(json.dumps({"history": result.history, "resumed_from": result.resumed_from}))
"""


def test_run_killed_mid_epoch_resumes_to_the_uninterrupted_history(splits, tmp_path):
    """SIGKILL in the middle of epoch 1, then the same call again: the resumed run replays nothing of
    epoch 0's shuffle, augmentation or dropout, and its history equals an uninterrupted run's."""
    manifest = Path(splits[0].paths[0]).parents[2] / "manifest.csv"
    script = tmp_path / "resume.py"
    script.write_text(RESUME_SCRIPT)
    killed = warm_python.run([sys.executable, str(script), str(manifest), str(tmp_path), "1"], timeout=400)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    state = json.loads((tmp_path / "killed" / "state.json").read_text())
    assert state["next_epoch"] == 1 and state["status"] == "running"
    resumed = warm_python.run([sys.executable, str(script), str(manifest), str(tmp_path), "-1"], timeout=400)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    report = json.loads(resumed.stdout.strip().splitlines()[-1])
    reference = json.loads((tmp_path / "reference.json").read_text())
    assert report["resumed_from"] == 1 and report["history"]["epoch"] == [1, 2]
    for key in ("loss", "accuracy", "val_loss", "val_auc"):
        np.testing.assert_allclose(report["history"][key], reference[key], rtol=1e-6, err_msg=key)


def test_without_out_dir_the_model_keeps_the_best_epoch_not_the_last(splits):
    train, val, _ = splits

    class SpoilLastEpoch(keras.callbacks.Callback):
        """Wrecks the head during the last epoch, so its val_loss is the worst."""

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if self.epoch == 1:
                head = self.model.get_layer("predictions")
                head.kernel.assign(np.random.default_rng(0).normal(0, 50, head.kernel.shape).astype("float32"))

    model = tiny_model()
    result = train_tiny(model, splits, callbacks=[SpoilLastEpoch()], run_eagerly=True)
    assert result.best_epoch == 1 and result.history["val_loss"][1] > result.history["val_loss"][0]
    val_ds = rt.data.make_dataset(val, image_size=(32, 32), batch_size=8, shuffle=False)
    assert model.evaluate(val_ds, verbose=0, return_dict=True)["loss"] == pytest.approx(
        result.history["val_loss"][0], rel=1e-4
    )


def _nan_from_epoch(epoch_going_bad):
    flag = keras.Variable(1.0, trainable=False)

    class Switch(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            flag.assign(float("nan") if epoch >= epoch_going_bad else 1.0)

    def loss(y_true, y_pred):
        return keras.losses.categorical_crossentropy(y_true, y_pred) * flag

    return loss, Switch()


def test_divergence_keeps_the_last_good_epoch_and_is_not_retrained(splits, tmp_path):
    loss, switch = _nan_from_epoch(1)
    model = tiny_model()
    with pytest.raises(
        rt.TrainingDivergedError, match=r"NaN at epoch 2.*best checkpoint \(epoch 1.*e\.g\. 0\.0001"
    ) as caught:
        train_tiny(model, splits, tmp_path, loss=loss, callbacks=[switch], run_eagerly=True)
    result = caught.value.result
    assert result.status == "diverged" and result.diverged_epoch == 2 and result.best_epoch == 1
    assert json.loads((tmp_path / "state.json").read_text())["status"] == "diverged"
    best = tiny_model(seed=9)
    best.load_weights(tmp_path / "best.weights.h5")
    for a, b in zip(model.get_weights(), best.get_weights()):
        np.testing.assert_array_equal(a, b)  # the caller's model holds the last good checkpoint

    class MustNotTrain(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            raise AssertionError("a diverged run was trained again")

    with pytest.raises(rt.TrainingDivergedError, match="NaN at epoch 2"):
        train_tiny(tiny_model(), splits, tmp_path, loss=loss, callbacks=[MustNotTrain()], run_eagerly=True)


def test_xla_resolves_off_on_cpu_and_fallback_warns():
    from radtransfer.training import runtime

    assert runtime.resolve_jit_compile("auto", deterministic=False) is False  # no GPU here
    assert runtime.resolve_jit_compile("auto", deterministic=False, has_gpu=True) is True
    with pytest.warns(UserWarning, match="turns XLA off"):
        assert runtime.resolve_jit_compile(True, deterministic=True) is False
    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Dense(2)(keras.layers.Flatten()(keras.layers.RandomRotation(0.1)(inputs)))
    model = keras.Model(inputs, outputs)
    with pytest.warns(UserWarning, match="fell back"):
        resolved = training.compile_model(model, "adam", "mse", [], jit_compile=True)
    assert resolved is False and model.jit_compile is False


def test_precision_auto_per_gpu_generation():
    from radtransfer.training import runtime

    assert runtime.resolve_precision("auto") == "float32"  # this machine: no GPU
    assert runtime.resolve_precision("auto", capability=(9, 0)) == "mixed_bfloat16"  # H100
    assert runtime.resolve_precision("auto", capability=(8, 0)) == "mixed_bfloat16"  # A100
    assert runtime.resolve_precision("auto", capability=(7, 0)) == "mixed_float16"  # V100
    assert runtime.resolve_precision("auto", capability=(6, 1)) == "float32"


def test_mixed_precision_trains_the_callers_model(splits, tmp_path):
    """precision="mixed_bfloat16" (the GPU path, forced on CPU): the model is rebuilt under the policy,
    trained, and its best weights handed back to the object the caller holds, which then scores exactly
    what best.keras scores."""
    seen = {}

    class Inspect(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            backbone = self.model.get_layer("backbone")
            seen["compute"] = backbone.layers[2].compute_dtype
            seen["variable"] = backbone.layers[2].variable_dtype
            seen["head"] = self.model.get_layer("predictions").compute_dtype

    model = tiny_model()
    before = [w.copy() for w in model.get_weights()]
    result = train_tiny(
        model,
        splits,
        tmp_path,
        precision="mixed_bfloat16",
        strategy="unfreeze_all",
        callbacks=[Inspect()],
        run_eagerly=True,
    )
    assert seen == {"compute": "bfloat16", "variable": "float32", "head": "float32"}
    assert result.settings["precision"] == "mixed_bfloat16" and result.settings["rebuilt_for_runtime"]
    assert result.settings["jit_compile"] is False and result.model is model
    assert model.get_layer("backbone").dtype_policy.name == "float32"  # the caller's object keeps its policy
    changed = sum(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert changed > len(before) // 2
    test = splits[2]
    ours = rt.evaluate(model, test, bootstrap=0)
    saved = rt.evaluate(rt.load_trained(tmp_path), test, bootstrap=0)
    np.testing.assert_array_equal(ours["predictions"]["probabilities"], saved["predictions"]["probabilities"])


def test_mixed_precision_rebuild_keeps_weights_and_float32_head():
    from radtransfer.training import runtime

    model = tiny_model()
    mixed, rebuilt = runtime.working_model(model, "mixed_float16", None)
    assert rebuilt and keras.mixed_precision.dtype_policy().name == "float32"  # the global policy is restored
    assert mixed.get_layer("backbone").dtype_policy.name == "mixed_float16"
    assert mixed.get_layer("backbone").layers[2].compute_dtype == "float16"
    assert mixed.get_layer("predictions").dtype_policy.name == "float32"
    for a, b in zip(model.get_weights(), mixed.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert runtime.working_model(model, "float32", None) == (model, False)


def test_mirrored_strategy_on_two_logical_cpus(splits, tmp_path):
    train, val, _ = splits
    script = textwrap.dedent(f"""
        import json, os, sys
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import radtransfer as rt
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        image_set = rt.data.from_csv({str(Path(train.paths[0]).parents[2] / "manifest.csv")!r}, image_col="path",
                                     label_col="label", patient_col="patient_id")
        train, val, _ = image_set.split(val=0.2, test=0.2, seed=726)
        model = rt.build_model("test_tiny", weights=None, num_classes=4, input_shape=(32, 32, 3))
        head = model.get_layer("predictions").kernel.numpy().copy()
        result = rt.fine_tune(model, train, val, strategy="freeze_all", learning_rate=1e-3, epochs=1,
                              distribute=strategy, batch_size=8, verbose=0, seed=0)
        changed = bool((model.get_layer("predictions").kernel.numpy() != head).any())
        print(json.dumps({{"replicas": result.settings["replicas"], "loss": result.history["loss"],
                           "caller_trained": changed, "same_object": result.model is model}}))
    """)
    done = warm_python.run([sys.executable, "-c", script], timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2 and math.isfinite(report["loss"][0])
    assert report["caller_trained"] and report["same_object"]  # the caller's model got the trained weights


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [0, -1e-3, float("nan"), "0.001", None])
def test_bad_learning_rate(rate, splits):
    with pytest.raises(ValueError, match="learning rate > 0"):
        train_tiny(tiny_model(), splits, learning_rate=rate)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"strategy": "unfreze_all"}, 'Did you mean "unfreeze_all"'),
        ({"optimizer": "adm"}, 'Did you mean "adam"'),
        ({"precision": "mixed_fp16"}, 'Did you mean "mixed_float16"'),
        ({"distribute": "mirored"}, 'Did you mean "mirrored"'),
        ({"epochs": 0}, "epochs ≥ 1"),
    ],
)
def test_bad_names(kwargs, message, splits):
    with pytest.raises(ValueError, match=message):
        train_tiny(tiny_model(), splits, **kwargs)


def test_label_width_must_match_the_model(splits):
    with pytest.raises(ValueError, match="labels for 4 classes but the model predicts 2"):
        train_tiny(tiny_model(classes=2), splits)


def test_empty_dataset(splits):
    train, val, _ = splits
    empty = tf.data.Dataset.from_tensor_slices(
        (np.zeros((0, 32, 32, 3), np.uint8), np.zeros((0, 4), np.float32))
    ).batch(4)
    with pytest.raises(ValueError, match="training dataset is empty"):
        rt.fine_tune(tiny_model(), empty, val, strategy="freeze_all", learning_rate=1e-3, epochs=1, verbose=0)


def test_unwritable_out_dir(splits, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(rt.RadtransferError, match="Cannot write to out_dir"):
        train_tiny(tiny_model(), splits, out_dir=blocker / "run")


# -- layer-wise search, several workers --------------------------------------------------------------


def test_layerwise_search_table(splits):
    train, val, _ = splits
    build = lambda: tiny_model()
    table = rt.layerwise_search(
        build,
        train,
        val,
        depths=[0, 1],
        learning_rate=1e-3,
        epochs=1,
        batch_size=8,
        verbose=0,
        seed=0,
        run_eagerly=True,
    )
    assert list(table["depth"]) == [0, 1] and list(table["strategy"]) == ["freeze_all", "unfreeze_blocks:1"]
    assert table["trainable_params"].iloc[0] < table["trainable_params"].iloc[1]
    assert {"val_auc", "val_loss", "epochs", "seconds", "best"} <= set(table.columns)
    assert table["best"].sum() >= 1


@pytest.mark.slow  # two TensorFlow worker processes joined in a cluster, for a Keras bug (xfail)
@pytest.mark.xfail(
    strict=True,
    reason="Keras 3 fit() fails under MultiWorkerMirroredStrategy "
    "(keras-team/keras#20585); this test starts passing, and fails as XPASS, once Keras fixes it",
)
def test_multiworker_two_processes_on_localhost(splits, tmp_path):
    """MultiWorkerMirroredStrategy from TF_CONFIG: two worker processes on 127.0.0.1 train one model."""
    import socket

    ports = []
    for _ in range(2):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])
    manifest = Path(splits[0].paths[0]).parents[2] / "manifest.csv"
    script = textwrap.dedent(f"""
        import json, os, sys
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        import radtransfer as rt
        image_set = rt.data.from_csv({str(manifest)!r}, image_col="path", label_col="label", patient_col="patient_id")
        train, val, _ = image_set.split(val=0.2, test=0.2, seed=726)
        build = lambda: rt.build_model("test_tiny", weights=None, num_classes=4, input_shape=(32, 32, 3))
        result = rt.fine_tune(build, train, val, strategy="freeze_all", learning_rate=1e-3, epochs=1,
                              distribute="multiworker", batch_size=8, verbose=0, seed=0)
        print(json.dumps({{"replicas": result.settings["replicas"], "loss": result.history["loss"]}}))
    """)
    workers = [f"127.0.0.1:{port}" for port in ports]
    processes = []
    for index in range(2):
        env = dict(
            os.environ,
            TF_CONFIG=json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}),
        )
        processes.append(warm_python.Popen([sys.executable, "-c", script], env=env))
    outputs = [process.communicate(timeout=400) for process in processes]
    for process, (stdout, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr[-2000:]
    reports = [json.loads(stdout.strip().splitlines()[-1]) for stdout, _ in outputs]
    assert all(r["replicas"] == 2 for r in reports)
    assert reports[0]["loss"] == pytest.approx(reports[1]["loss"])  # one synchronised model


# -- two classes: the shape of every task of the paper --------------------------------------------


def test_a_two_class_run_diverging_in_its_first_epoch_raises_diverged_with_its_result(two_class_splits, tmp_path):
    """Before: scikit-learn's "Input contains NaN" from the validation threshold, so no TrainingDivergedError and a
    grid that stops at this run on every restart."""
    model = tiny_model(classes=2)
    with pytest.raises(rt.TrainingDivergedError, match="NaN at epoch 1.*no epoch finished") as caught:
        train_tiny(model, two_class_splits, tmp_path, strategy="unfreeze_all", learning_rate=1e30, run_eagerly=True)
    result = caught.value.result
    assert result.best_epoch == -1 and result.diverged_epoch == 1 and result.status == "diverged"
    assert result.threshold is None and result.thresholds is None
    assert json.loads((tmp_path / "state.json").read_text())["status"] == "diverged"
    with pytest.raises(rt.TrainingDivergedError, match="NaN at epoch 1"):  # called again: the same answer
        train_tiny(
            tiny_model(classes=2),
            two_class_splits,
            tmp_path,
            strategy="unfreeze_all",
            learning_rate=1e30,
            run_eagerly=True,
        )


def test_the_config_records_the_batch_size_and_augmentation_of_the_datasets_that_ran(two_class_splits, tmp_path):
    """Before: config.json said batch_size 32 and augment "radimagenet" for datasets of 8 images, unaugmented."""
    train, val, _ = two_class_splits
    train_ds = rt.data.make_dataset(train, image_size=(32, 32), batch_size=8, augment=None, seed=0)
    val_ds = rt.data.make_dataset(val, image_size=(32, 32), batch_size=8, shuffle=False)
    result = rt.fine_tune(
        tiny_model(classes=2),
        train_ds,
        val_ds,
        strategy="freeze_all",
        learning_rate=1e-3,
        epochs=1,
        seed=0,
        out_dir=tmp_path / "ds",
        verbose=0,
        run_eagerly=True,
    )
    config = json.loads((tmp_path / "ds" / "config.json").read_text())
    for recorded in (config, config["identity"]["config"], result.settings):
        assert recorded["batch_size"] == 8 and recorded["augment"] is None
    assert config["identity"]["data"]["train"]["batch_size"] == 8  # the dataset's own description agrees
    with pytest.raises(ValueError, match="batch_size=16 was given, but the training dataset has batches of 8"):
        rt.fine_tune(tiny_model(classes=2), train_ds, val_ds, strategy="freeze_all", learning_rate=1e-3, batch_size=16)
    with pytest.raises(ValueError, match="augment='radimagenet' was given"):
        rt.fine_tune(
            tiny_model(classes=2), train_ds, val_ds, strategy="freeze_all", learning_rate=1e-3, augment="radimagenet"
        )
    from_sets = rt.fine_tune(
        tiny_model(classes=2),
        train,
        val,
        strategy="freeze_all",
        learning_rate=1e-3,
        epochs=1,
        verbose=0,
        run_eagerly=True,
    )  # ImageSets: the defaults, recorded
    assert from_sets.settings["batch_size"] == 32 and from_sets.settings["augment"] == "radimagenet"
    with pytest.raises(TypeError, match='Did you mean "learning_rate"'):
        rt.fine_tune(tiny_model(classes=2), train, val, strategy="freeze_all", learning_rte=1e-3)
    config = rt.TrainConfig("freeze_all", 1e-3, epochs=1, seed=0, run_eagerly=True)  # one object, as the grid passes
    again = rt.fine_tune(tiny_model(classes=2), train_ds, val_ds, config, out_dir=tmp_path / "ds", verbose=0)
    assert again.fingerprint == result.fingerprint and again.history == result.history  # the same run, finished


def test_a_long_epoch_says_how_far_it_is_in_a_log(capsys):
    """verbose 2 prints a line per epoch; inside a long epoch a heartbeat says the step, rate and time left."""
    import keras

    from radtransfer.training.epoch_loop import Heartbeat

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    x, y = np.random.default_rng(0).normal(size=(40, 4)).astype("float32"), np.arange(40) % 2
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[Heartbeat(epochs=3, interval=0.0)])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch 1/3: step")]
    assert len(lines) == 9  # every step after the first (the first builds the graph)
    assert lines[-1].startswith("epoch 1/3: step 10/10,") and "steps/s, about 0m00s left in this epoch" in lines[-1]


def test_the_loop_says_when_it_resumes_stops_early_and_lowers_the_learning_rate(splits, tmp_path, capsys):
    """Before: early stopping and each learning-rate reduction happened without a word, a rerun did not say that it
    resumed, and with verbose 1 Keras printed "Epoch 2/2" under the loop's own "epoch 2/4"."""

    class InterruptEpoch2(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    class WreckFromEpoch2(keras.callbacks.Callback):
        """From epoch 2 on, the head is wrecked during the epoch: every later val_loss is worse than epoch 1's."""

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if self.epoch >= 1:
                head = self.model.get_layer("predictions")
                noise = np.random.default_rng(self.epoch).normal(0, 50, head.kernel.shape)
                head.kernel.assign(noise.astype("float32"))

    settings = dict(epochs=4, early_stopping=2, reduce_lr=1, run_eagerly=True, verbose=1)
    with pytest.raises(KeyboardInterrupt):
        train_tiny(tiny_model(), splits, tmp_path / "run", callbacks=[InterruptEpoch2()], **settings)
    capsys.readouterr()
    result = train_tiny(tiny_model(), splits, tmp_path / "run", callbacks=[WreckFromEpoch2()], **settings)
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert result.resumed_from == 1 and result.stopped_early and result.best_epoch == 1
    assert result.history["epoch"] == [1, 2, 3] and result.history["learning_rate"][-1] == pytest.approx(1e-4)
    assert f"resuming from epoch 2/4: epoch 1 was trained before ({tmp_path / 'run'})" in lines, out
    assert any(
        line.startswith("learning rate 0.001 → 0.0001 after epoch 2/4: val_loss has not improved") for line in lines
    )
    stop = [line for line in lines if line.startswith("early stopping after epoch 3/4:")]
    assert len(stop) == 1 and stop[0].endswith("the best epoch, 1, is kept"), out
    assert not [line for line in lines if line.startswith("Epoch ")], out  # Keras's own epoch lines
    assert [line for line in lines if line.startswith("epoch ")][-2:] == ["epoch 2/4", "epoch 3/4"], out


def test_the_heartbeat_speaks_while_the_first_step_and_the_validation_run():
    """The first step (building the training graph: a minute or more for a real network on a CPU) and a validation
    call no hook while they run; a timer thread says they are still running every ``interval`` s, and stops when
    they end. Under a progress bar (``steps=False``) only the first step is spoken for: the bar shows the rest."""
    from radtransfer.training import epoch_loop

    said = []
    heartbeat = epoch_loop.Heartbeat(epochs=3, interval=0.1, say=said.append)
    heartbeat.set_params({"steps": 4})
    heartbeat.on_epoch_begin(0)
    heartbeat.on_train_batch_begin(0)
    time.sleep(0.35)
    first = list(said)  # while the first step ran
    heartbeat.on_train_batch_begin(1)  # it has ended: its lines stop, and the step after says how long it took
    time.sleep(0.25)
    assert len(first) >= 2 and len(said) == len(first) + 1 and said[-1].startswith("epoch 1/3: step 2/4 begins"), said
    assert all(
        line.startswith("epoch 1/3: step 1 still running after 0m00s (building the training graph") for line in first
    )
    first = list(said)
    heartbeat.on_test_begin()
    time.sleep(0.25)
    heartbeat.on_test_end()
    validating = said[len(first) :]
    time.sleep(0.2)
    assert validating and all(line == "epoch 1/3: validating, 0m00s so far" for line in validating)
    assert said == first + validating  # stopped at the validation's end

    under_bar = []
    quiet = epoch_loop.Heartbeat(epochs=3, interval=0.1, say=under_bar.append, steps=False)
    quiet.set_params({"steps": 4})
    quiet.on_epoch_begin(1)
    quiet.on_train_batch_begin(0)
    time.sleep(0.25)
    for step in (1, 2, 3):
        quiet.on_train_batch_begin(step)
    quiet.on_test_begin()
    time.sleep(0.25)
    quiet.on_test_end()
    quiet.on_epoch_end(1)
    assert under_bar and all(line.startswith("epoch 2/3: step 1 still running after") for line in under_bar)


def test_the_heartbeat_s_time_left_follows_the_current_rate(monkeypatch, capsys):
    """An epoch whose first 10 steps take 10 s each (reading images into the cache) and the other 90 take 1 s: the
    time left said 30 s after the slow steps is the truth within 20%. Before, the rate since the epoch's start put
    it 2.5 times too late (seen: "about 7m22s left", then the epoch ended 68 s later)."""
    from radtransfer.training import epoch_loop

    clock = [0.0]
    monkeypatch.setattr(epoch_loop.time, "perf_counter", lambda: clock[0])
    heartbeat = epoch_loop.Heartbeat(epochs=1, interval=30.0)
    heartbeat.set_params({"steps": 100})
    heartbeat.on_epoch_begin(0)
    said = {}
    for step in range(100):
        heartbeat.on_train_batch_begin(step)
        line = capsys.readouterr().out.strip()
        if line:
            minutes, seconds = line.rsplit("about ", 1)[1].split(" left")[0].rstrip("s").split("m")
            said[step] = 60 * int(minutes) + int(seconds)
        clock[0] += 10.0 if step < 10 else 1.0
    truth = {step: 100 - step for step in said}  # the 1 s steps left, from a step after the slow ones
    late = [step for step in said if step >= 40]
    assert late and all(abs(said[s] - truth[s]) <= 0.2 * truth[s] for s in late), (said, truth)


def test_the_heartbeat_says_no_time_left_from_the_step_that_builds_the_graph(monkeypatch, capsys):
    """The demo's first epoch: 9 steps, the first 137 s (it builds the training graph), the others about 1 s. Before,
    the line after the first step said "about 18m14s left" (8 steps at 137 s each) and the epoch ended 9 s later;
    now that line gives no time left, and the lines after it give the truth within 20%."""
    from radtransfer.training import epoch_loop

    clock = [0.0]
    monkeypatch.setattr(epoch_loop.time, "perf_counter", lambda: clock[0])
    heartbeat = epoch_loop.Heartbeat(epochs=12, interval=30.0)
    for steps in (9, 100):
        heartbeat.set_params({"steps": steps})
        heartbeat.on_epoch_begin(0)
        said = {}
        for step in range(steps):
            heartbeat.on_train_batch_begin(step)
            said[step] = capsys.readouterr().out.strip()
            clock[0] += 137.0 if step == 0 else 1.1
        lines = {step: line for step, line in said.items() if line}
        assert lines[1] == (
            f"epoch 1/12: step 2/{steps} begins; the first took 2m17s (building the graph, starting the input "
            "pipeline), so the time left is said from the next steps' rate"
        )
        for step, line in lines.items():
            if step > 1:
                left = line.rsplit("about ", 1)[1].split(" left")[0]
                minutes, seconds = left.rstrip("s").split("m")
                truth = (steps - step) * 1.1
                assert abs(60 * int(minutes) + int(seconds) - truth) <= 0.2 * truth + 1, (line, truth)
        assert len(lines) == (1 if steps == 9 else 4), lines  # the demo's epoch: that line only; then every 30 s


def test_an_eager_run_s_traced_auc_update_counts_as_keras_s_eager_one(splits, monkeypatch):
    """run_eagerly traces each AUC update once (Keras's multi-label update converted its vectorized_map at every eager
    call): the same operations, so the same history, AUC included, to the bit."""
    from radtransfer.training import epoch_loop

    traced = train_tiny(tiny_model(), splits, epochs=1, run_eagerly=True).history
    monkeypatch.setattr(epoch_loop, "_graph_auc_updates", lambda metrics: None)
    plain = train_tiny(tiny_model(), splits, epochs=1, run_eagerly=True).history
    assert traced == plain and set(traced) >= {"auc", "val_auc"}

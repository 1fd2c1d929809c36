"""One answer per Keras backend: the same Keras 2 ``.h5`` file and input give the same predictions and the
same trainable counts under TensorFlow, JAX and PyTorch. Keras picks its backend once, at import, so each backend
runs in a process of its own: one process per backend runs every script of this file for it (the three processes
at once, one after another within each), and each test reads its script's result. A backend that is not installed
is skipped. These tests are marked ``backends`` and run by ``make test-backends`` (CI), which installs JAX and
PyTorch's CPU build."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from conftest import SMALL

BACKENDS = ("tensorflow", "jax", "torch")
MODULE = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}

SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import radtransfer as rt
    import keras
    cases = json.loads(sys.argv[1])
    out = {"backend": keras.backend.backend(), "results": {}}
    for case in cases:
        model = rt.build_model(case["backbone"], weights=case["weights"], num_classes=3,
                               input_shape=(case["size"], case["size"], 3))
        rt.models.init_head(model, seed=0)
        images = np.load(case["images"])
        # called eagerly: predict would compile each real network first (XLA on JAX: minutes on a CPU); predict
        # itself is compared across backends on the test backbone (test_image_files_train_evaluate_and_predict_...)
        probabilities = np.asarray(keras.ops.convert_to_numpy(model(images, training=False)), dtype=np.float64)
        counts = {}
        for strategy in ("freeze_all", "unfreeze_top10", "unfreeze_all"):
            counts[strategy] = rt.apply_strategy(model, strategy, bn="protocol").trainable_params
        np.save(case["images"] + f".{keras.backend.backend()}.npy", probabilities)
        from radtransfer.evaluation.gradcam import gradcam, last_conv_layer
        from radtransfer.models import get_backbone_model
        maps = {"default": gradcam(model, images)}
        if keras.backend.backend() != "jax":  # inner layers need a tape (TensorFlow) or autograd (PyTorch)
            maps["inner"] = gradcam(model, images, layer=last_conv_layer(get_backbone_model(model), min_size=4))
        np.savez(case["images"] + f".{keras.backend.backend()}.cam.npz", **maps)
        out["results"][case["backbone"]] = counts
    out["tensorflow_imported"] = "tensorflow" in sys.modules
    print("RESULT " + json.dumps(out))
""")


# Runs the jobs listed in a JSON file one after another in this process, each as ``python -c SCRIPT ARGS`` or
# ``python PATH ARGS`` would (its own ``__main__`` namespace and argv, its stdout captured), and prints one JOB line
# per job. A job that made TensorFlow unimportable (sys.modules["tensorflow"] = None) has it importable again after
# it. Jobs that check TensorFlow was never loaded run before those that may load it (the image-path, data-parallel
# and PyTorch-example scripts, which import it where it is installed, as a user's would).
RUNNER = textwrap.dedent("""
    import contextlib, io, json, os, runpy, sys, traceback
    for job in json.load(open(sys.argv[1])):
        out, status = io.StringIO(), "ok"
        sys.argv = [job.get("path") or "-c", *job["args"]]
        try:
            with contextlib.redirect_stdout(out):
                if job.get("path"):
                    os.chdir(job["cwd"])
                    runpy.run_path(job["path"], run_name="__main__")
                else:
                    exec(compile(job["script"], job["name"], "exec"), {"__name__": "__main__"})
        except SystemExit as exit:
            if exit.code not in (0, None):
                status = f"exit {exit.code}: " + traceback.format_exc()[-3000:]
        except BaseException:
            status = "error: " + traceback.format_exc()[-3000:]
        if "tensorflow" in sys.modules and sys.modules["tensorflow"] is None:
            del sys.modules["tensorflow"]
        print("JOB " + json.dumps({"name": job["name"], "status": status, "stdout": out.getvalue()}), flush=True)
""")


def _start(backend: str, jobs: list, folder, **env):
    """Starts one process for ``backend`` running ``jobs`` (dicts: name, script or path, args)."""
    listing = folder / f"jobs_{backend}.json"
    listing.write_text(json.dumps(jobs))
    environment = dict(os.environ, KERAS_BACKEND=backend, JAX_PLATFORMS="cpu", **env)
    return subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(listing)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )


def _finish(process) -> dict:
    """Each job's outcome by name: {"status", "stdout", "result" (what it printed after "RESULT ")}."""
    stdout, stderr = process.communicate(timeout=1500)
    outcomes = {}
    for line in stdout.splitlines():
        if line.startswith("JOB "):
            job = json.loads(line[len("JOB ") :])
            results = [x for x in job["stdout"].splitlines() if x.startswith("RESULT ")]
            job["result"] = json.loads(results[-1][len("RESULT ") :]) if results else None
            outcomes[job["name"]] = job
    outcomes["_stderr"] = stderr[-3000:]
    outcomes["_returncode"] = process.returncode
    return outcomes


def _installed(backend: str) -> bool:
    return importlib.util.find_spec(MODULE[backend]) is not None


def _job(runs: dict, backend: str, name: str) -> dict:
    """The outcome of script ``name`` in ``backend``'s process (skipped where the backend is not installed)."""
    if not _installed(backend):
        pytest.skip(f"{backend} is not installed (pip install 'radtransfer[{backend}]')")
    outcomes = runs[backend]
    job = outcomes.get(name)
    assert job is not None, (
        f"{backend}'s process ended before {name} (exit {outcomes['_returncode']}):\n" + (outcomes["_stderr"])
    )
    assert job["status"] == "ok", job["status"]
    return job


@pytest.fixture(scope="module")
def cases(keras2_files, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("backends")
    rng = np.random.default_rng(0)
    result = []
    for backbone in ("densenet121", "resnet50", "inception_v3"):
        size = SMALL[backbone]
        images = tmp / f"{backbone}.npy"
        np.save(images, rng.integers(0, 256, (4, size, size, 3)).astype(np.uint8))
        result.append(
            {
                "backbone": backbone,
                "size": size,
                "weights": str(keras2_files.full_model(backbone)),
                "images": str(images),
            }
        )
    return result


@pytest.mark.backends
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_same_h5_same_input_same_predictions_on_every_backend(backend, cases, runs):
    other = _job(runs, backend, "same_h5")["result"]
    reference = _job(runs, "tensorflow", "same_h5")["result"]
    assert other["backend"] == backend
    assert not other["tensorflow_imported"]  # the model side needs no TensorFlow on jax or torch
    for case in cases:
        expected = np.load(case["images"] + ".tensorflow.npy")
        got = np.load(case["images"] + f".{backend}.npy")
        np.testing.assert_allclose(got, expected, atol=1e-4, err_msg=case["backbone"])
        assert other["results"][case["backbone"]] == reference["results"][case["backbone"]]
        cams = np.load(case["images"] + f".{backend}.cam.npz")
        reference_cams = np.load(case["images"] + ".tensorflow.cam.npz")
        for key in cams.files:  # Grad-CAM: the same heatmaps (JAX: the default layer only)
            assert cams[key].max() > 0
            np.testing.assert_allclose(cams[key], reference_cams[key], atol=2e-3, err_msg=f"{case['backbone']} {key}")


@pytest.mark.parametrize(
    "backend, capability, gpu, precision, jit",
    [
        ("tensorflow", None, False, "float32", False),
        ("tensorflow", (8, 0), True, "mixed_bfloat16", True),
        ("tensorflow", (7, 5), True, "mixed_float16", True),
        ("jax", None, False, "float32", True),  # XLA is how JAX runs, GPU or not
        ("jax", (9, 0), True, "mixed_bfloat16", True),
        ("jax", (7, 0), True, "mixed_float16", True),
        ("torch", None, False, "float32", False),
        ("torch", (8, 6), True, "mixed_bfloat16", False),
    ],
)
def test_precision_and_xla_resolve_per_backend_and_gpu(backend, capability, gpu, precision, jit):
    from radtransfer.training.runtime import resolve_jit_compile, resolve_precision

    assert resolve_precision("auto", capability=capability or (0, 0), backend_name=backend) == precision
    assert resolve_jit_compile("auto", deterministic=False, has_gpu=gpu, backend_name=backend) is jit
    assert resolve_jit_compile(False, deterministic=False, has_gpu=gpu, backend_name=backend) is False
    # TensorFlow's op determinism excludes XLA; JAX keeps XLA (its CPU runs are deterministic).
    assert resolve_jit_compile("auto", deterministic=True, has_gpu=gpu, backend_name=backend) is (backend == "jax")


def test_distribution_names_per_backend():
    from radtransfer import backend

    with pytest.raises(ValueError, match="not supported on the PyTorch backend"):
        backend.check_distribute("mirrored", "torch")
    with pytest.raises(ValueError, match="data_parallel"):
        backend.check_distribute("mirored", "jax")
    assert backend.replicas(None) == 1


JAX_DATA_PARALLEL = textwrap.dedent("""
    import json, sys, tempfile
    import numpy as np
    import keras
    import radtransfer as rt
    root = tempfile.mkdtemp()
    images = rt.datasets.load_synthetic_brain_mri(root, n_patients=8, slices_per_patient=2, image_size=40, seed=2)
    train, val, _ = images.split(val=0.25, test=0.0, seed=0)
    model = rt.build_model("test_tiny", weights=None, num_classes=4, input_shape=(32, 32, 3))
    before = [np.array(w) for w in model.get_weights()]
    result = rt.fine_tune(model, train, val, strategy="unfreeze_top10", learning_rate=1e-2, epochs=1,
                          batch_size=4, seed=0, verbose=0, distribute="data_parallel", out_dir=root + "/run")
    changed = sum(not np.array_equal(a, np.array(b)) for a, b in zip(before, model.get_weights()))
    settings = result.settings
    print("RESULT " + json.dumps({"backend": keras.backend.backend(), "devices": len(keras.distribution.list_devices()),
                                  "replicas": settings["replicas"], "jit": settings["jit_compile"],
                                  "precision": settings["precision"], "recorded_backend": settings["backend"],
                                  "changed": int(changed), "loss": result.history["loss"][-1]}))
""")


@pytest.mark.backends
def test_jax_data_parallel_over_two_virtual_devices_trains_the_callers_model(runs):
    result = _job(runs, "jax", "data_parallel")["result"]
    assert result["backend"] == result["recorded_backend"] == "jax"
    assert result["devices"] == 2 and result["replicas"] == 2
    assert result["jit"] is True and result["precision"] == "float32"
    assert result["changed"] > 0 and np.isfinite(result["loss"])


ARRAYS = textwrap.dedent("""
    import json, sys
    import numpy as np
    import keras
    import radtransfer as rt
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (12, 32, 32, 3)).astype(np.uint8)
    y = np.arange(12) % 2
    x[y == 1, 8:24, 8:24] = 255
    model = rt.build_model("test_tiny", weights=None, num_classes=2, input_shape=(32, 32, 3))
    start = [np.array(w) for w in model.get_weights()]
    histories = []
    for _ in range(2):
        model.set_weights(start)
        result = rt.fine_tune(model, (x[:8], y[:8]), (x[8:], y[8:]), strategy="unfreeze_top10", learning_rate=1e-2,
                              epochs=2, batch_size=4, seed=0, verbose=0, augment=None)
        histories.append(result.history["loss"])
    changed = sum(not np.array_equal(a, np.array(b)) for a, b in zip(start, model.get_weights()))
    metrics = rt.evaluate(model, (x[8:], y[8:]), bootstrap=0)
    from radtransfer.data.py_dataset.arrays import ArrayBatches  # a user's own keras.utils.PyDataset
    onehot = np.eye(2, dtype="float32")[y]
    own = rt.fine_tune(model, ArrayBatches(x[:8], onehot[:8], 4, np.arange(8)), ArrayBatches(x[8:], onehot[8:], 4,
                       np.arange(4)), strategy="freeze_all", learning_rate=1e-3, epochs=1, seed=0, verbose=0)
    assert metrics["n"] == 4 and np.isfinite(own.history["loss"][0])
    print("RESULT " + json.dumps({"backend": keras.backend.backend(),
                                  "tensorflow_imported": "tensorflow" in sys.modules,
                                  "changed": int(changed), "histories": histories,
                                  "recorded": result.settings["backend"], "jit": result.settings["jit_compile"]}))
""")


@pytest.mark.backends
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_training_on_arrays_needs_no_tensorflow_and_repeats_exactly(backend, runs):
    result = _job(runs, backend, "arrays")["result"]
    assert result["backend"] == result["recorded"] == backend
    assert not result["tensorflow_imported"]
    assert result["changed"] > 0
    np.testing.assert_allclose(result["histories"][0], result["histories"][1], rtol=1e-5)
    assert result["jit"] is (backend == "jax")


@pytest.mark.backends
def test_radimagenet_in_a_plain_pytorch_loop_example(runs):
    stdout = _job(runs, "torch", "pytorch_example")["stdout"]
    assert "is a torch.nn.Module" in stdout and "(radimagenet)" in stdout
    assert "epoch 1/1: train loss" in stdout


IMAGE_PATH = textwrap.dedent("""
    import json, sys, tempfile
    import numpy as np
    import keras
    import radtransfer as rt
    from radtransfer.evaluation.gradcam import gradcam
    root = tempfile.mkdtemp()
    images = rt.datasets.load_synthetic_brain_mri(root, n_patients=12, slices_per_patient=1, image_size=40, seed=2)
    train, val, test = images.split(val=0.25, test=0.25, seed=0)
    model = rt.build_model("test_tiny", weights=None, num_classes=4, input_shape=(32, 32, 3))
    rt.fine_tune(model, train, val, strategy="unfreeze_top10", learning_rate=1e-3, epochs=1, batch_size=4,
                 seed=0, verbose=0, out_dir=root + "/run")
    metrics = rt.evaluate(model, test, bootstrap=0)
    frame = rt.predict(root + "/run", test)
    expected = np.asarray(metrics["predictions"]["probabilities"])
    columns = [f"p_{c}" for c in test.class_names]
    print("RESULT " + json.dumps({"backend": keras.backend.backend(), "n": metrics["n"],
                                  "predict_matches_evaluate": bool(np.allclose(frame[columns].to_numpy(), expected,
                                                                                atol=1e-5)),
                                  "cam": list(gradcam(model, np.zeros((1, 32, 32, 3), "uint8")).shape)}))
""")


@pytest.mark.backends
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_image_files_train_evaluate_and_predict_on_every_backend(backend, runs):
    """ImageSets go through the numpy path (data.py_dataset.sequence; TensorFlow installed but not used for images) into
    the JAX or PyTorch model; Grad-CAM works on it."""
    result = _job(runs, backend, "image_path")["result"]
    assert result["backend"] == backend and result["n"] > 0
    assert result["predict_matches_evaluate"] and result["cam"] == [1, 32, 32]


DEVICE_AUGMENT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import keras
    from radtransfer.data.py_dataset.device_augment import warp, with_device_augment
    cases = np.load(sys.argv[1])
    backend = keras.backend.backend()
    out = {}
    for key in ("small", "gray"):
        for fill in ("nearest", "constant"):
            step = lambda x, t: warp(x, t, {"fill_mode": fill})
            for images in (key, key + "_uint8"):
                out[f"{images}_{fill}_eager"] = keras.ops.convert_to_numpy(step(cases[images], cases[key + "_t"]))
                if backend == "jax":
                    import jax
                    out[f"{images}_{fill}_jit"] = np.asarray(jax.jit(step)(cases[images], cases[key + "_t"]))
    inputs = keras.Input((16, 16, 3))
    head = keras.layers.Dense(2, activation="softmax", name="head")
    model = keras.Model(inputs, head(keras.layers.Flatten()(keras.layers.Rescaling(1 / 255.0)(inputs))))
    before = np.array(model.get_layer("head").get_weights()[0])
    wrapper = with_device_augment(model, "radimagenet")
    wrapper.compile(optimizer=keras.optimizers.SGD(0.5), loss="categorical_crossentropy")
    rng = np.random.default_rng(0)
    batch = {"images": rng.integers(0, 256, (4, 16, 16, 3)).astype("uint8"),
             "transforms": cases["small_t"][:1].repeat(4, axis=0)}
    wrapper.train_on_batch(batch, np.eye(2, dtype="float32")[[0, 1, 0, 1]])
    np.savez(sys.argv[1] + f".{backend}.npz", **out)
    changed = not np.array_equal(model.get_layer("head").get_weights()[0], before)
    print("RESULT " + json.dumps({"backend": backend, "tensorflow_imported": "tensorflow" in sys.modules,
                                  "changed": bool(changed)}))
""")


@pytest.mark.backends
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_device_augment_equals_the_tensorflow_warp_on_other_backends(backend, runs, warp_cases):
    """Uncompiled, the warp equals TensorFlow's ImageProjectiveTransformV3 kernel to 1e-4 on every backend.
    Jitted on JAX, it differs from the tf.data path's XLA gather only by the float32 rounding of the sampling
    coordinate (the two XLA compilers fuse multiply-adds differently), and its uint8 results are the same
    except for rare near-ties one grey level apart."""
    import tensorflow as tf

    from radtransfer.data.augment import Augment
    from radtransfer.data.tf_data.augment import apply_transforms

    path, cases = warp_cases
    result = _job(runs, backend, "device_augment")["result"]
    assert result["backend"] == backend and not result["tensorflow_imported"]
    assert result["changed"]  # training the wrapper trained the caller's model
    got = np.load(str(path) + f".{backend}.npz")
    for key in ("small", "gray"):
        images, transforms = tf.constant(cases[key]), tf.constant(cases[key + "_t"])
        size = cases[key].shape[1]
        for fill in ("nearest", "constant"):
            kernel = tf.raw_ops.ImageProjectiveTransformV3(
                images=images,
                transforms=transforms,
                output_shape=tf.shape(images)[1:3],
                fill_value=0.0,
                interpolation="BILINEAR",
                fill_mode=fill.upper(),
            ).numpy()
            np.testing.assert_allclose(got[f"{key}_{fill}_eager"], kernel, rtol=0, atol=1e-4, err_msg=f"{key} {fill}")
            if backend != "jax":
                continue
            xla = apply_transforms(images, transforms, Augment(fill_mode=fill)).numpy()
            ulp = float(np.spacing(np.float32(2 * size)))
            assert np.abs(got[f"{key}_{fill}_jit"] - xla).max() <= 2 * 255 * ulp, f"{key} {fill}"
            xla = apply_transforms(tf.constant(cases[key + "_uint8"]), transforms, Augment(fill_mode=fill)).numpy()
            off = np.abs(got[f"{key}_uint8_{fill}_jit"].astype(int) - xla.astype(int))
            assert off.max() <= 1 and (off > 0).mean() < 1e-3, f"{key} {fill}"


WITHOUT_TF = 'import sys\nsys.modules["tensorflow"] = None  # import tensorflow raises ImportError\n'

FILES_WITHOUT_TF = WITHOUT_TF + textwrap.dedent("""
    import json, tempfile
    import numpy as np
    import keras
    import radtransfer as rt
    root = tempfile.mkdtemp()
    images = rt.datasets.load_synthetic_brain_mri(sys.argv[1])
    train, val, test = images.split(val=0.25, test=0.25, seed=0)
    settings = dict(strategy="unfreeze_all", learning_rate=1e-3, batch_size=4, seed=0, verbose=0)

    def trained(out, epochs, callbacks=()):
        keras.utils.set_random_seed(1)
        model = rt.build_model("test_tiny", weights=None, num_classes=4, input_shape=(32, 32, 3))
        start = [np.array(w) for w in model.get_weights()]
        result = rt.fine_tune(model, train, val, epochs=epochs, out_dir=out, callbacks=callbacks, **settings)
        changed = sum(not np.array_equal(a, np.asarray(b)) for a, b in zip(start, model.get_weights()))
        return model, result, changed

    class Stop(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    model, whole, changed = trained(root + "/whole", 2)
    try:
        trained(root + "/resumed", 2, [Stop()])  # stopped after one epoch ...
    except KeyboardInterrupt:
        pass
    _, resumed, _ = trained(root + "/resumed", 2)  # ... and continued
    metrics = rt.evaluate(model, test, bootstrap=0)
    frame = rt.predict(root + "/whole", test)
    columns = [f"p_{c}" for c in test.class_names]
    expected = np.asarray(metrics["predictions"]["probabilities"])
    print("RESULT " + json.dumps({
        "backend": keras.backend.backend(), "tensorflow_loaded": any(m.startswith("tensorflow.") for m in sys.modules),
        "augment": whole.settings["augment"], "changed": int(changed), "n": metrics["n"],
        "whole": whole.history["loss"], "resumed": resumed.history["loss"], "resumed_from": resumed.resumed_from,
        "predict_matches_evaluate": bool(np.allclose(frame[columns].to_numpy(), expected, atol=1e-5))}))
""")


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    import radtransfer as rt

    root = tmp_path_factory.mktemp("image_files")
    rt.datasets.synthetic_brain_mri(root, n_patients=12, slices_per_patient=1, image_size=40, seed=2)
    return root


@pytest.mark.backends
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_image_files_to_a_trained_model_without_tensorflow(backend, runs):
    """TensorFlow unimportable: files → fine_tune with the RadImageNet augmentation (drawn on the host, warped on
    the device) → evaluate → predict, and a run stopped after one epoch continues to the uninterrupted history."""
    result = _job(runs, backend, "files_without_tf")["result"]
    assert result["backend"] == backend and not result["tensorflow_loaded"]
    assert result["augment"] is not None and result["changed"] > 0 and result["n"] > 0
    assert result["predict_matches_evaluate"]
    assert result["resumed_from"] == 1
    np.testing.assert_allclose(result["resumed"], result["whole"], rtol=1e-5)


PREDICT_WITHOUT_TF = WITHOUT_TF + textwrap.dedent("""
    import json
    import numpy as np
    import keras
    import radtransfer as rt
    frame = rt.predict(sys.argv[1], rt.datasets.load_synthetic_brain_mri(sys.argv[2]))
    np.save(sys.argv[3], frame[[c for c in frame.columns if c.startswith("p_")]].to_numpy())
    print("RESULT " + json.dumps({"backend": keras.backend.backend(),
                                  "tensorflow_loaded": any(m.startswith("tensorflow.") for m in sys.modules)}))
""")


@pytest.fixture(scope="module")
def tensorflow_run(image_files, tmp_path_factory):
    """Trained here (TensorFlow, tf.data): its run folder and its predictions of every image."""
    import keras

    import radtransfer as rt

    folder = tmp_path_factory.mktemp("tensorflow_run")
    images = rt.datasets.load_synthetic_brain_mri(image_files)
    train, val, test = images.split(val=0.25, test=0.25, seed=0)
    keras.utils.set_random_seed(0)
    model = rt.build_model("test_tiny", weights=None, num_classes=4, input_shape=(32, 32, 3))
    settings = dict(strategy="unfreeze_top10", learning_rate=1e-3, epochs=1, batch_size=4, seed=0, verbose=0)
    rt.fine_tune(model, train, val, out_dir=folder / "run", **settings)
    frame = rt.predict(folder / "run", images)
    return folder / "run", frame[[c for c in frame.columns if c.startswith("p_")]].to_numpy()


@pytest.mark.backends
def test_a_model_trained_on_tensorflow_predicts_the_same_on_jax_from_the_same_files(runs, tensorflow_run):
    """Trained here (TensorFlow, tf.data), predicted on JAX without TensorFlow (Pillow, NumPy resizing): the same
    probabilities within 2e-3."""
    job = _job(runs, "jax", "predict_without_tf")
    assert job["result"]["backend"] == "jax" and not job["result"]["tensorflow_loaded"]
    np.testing.assert_allclose(np.load(runs["_predicted_on_jax"]), tensorflow_run[1], atol=2e-3)


@pytest.fixture(scope="module")
def warp_cases(tmp_path_factory):
    """Images and random RadImageNet-style transforms for the warp, in a file: (path, arrays)."""
    from radtransfer.data.augment import Augment
    from radtransfer.data.py_dataset.device_augment import random_transforms_np

    rng = np.random.default_rng(0)
    strong = Augment(rotation=30, width_shift=0.3, height_shift=0.3, shear=10, zoom=(0.7, 1.3), vertical_flip=True)
    cases = {}
    for key, shape in (("small", (2, 32, 32, 3)), ("gray", (2, 75, 75, 1))):
        cases[key] = rng.uniform(0, 255, shape).astype(np.float32)
        cases[key + "_uint8"] = cases[key].round().astype(np.uint8)
        cases[key + "_t"] = random_transforms_np(shape[0], shape[1], shape[2], strong, rng)
    path = tmp_path_factory.mktemp("warp") / "cases.npz"
    np.savez(path, **cases)
    return path, cases


@pytest.fixture(scope="module")
def runs(cases, image_files, tensorflow_run, warp_cases, keras2_files, tmp_path_factory):
    """Every script of this file, run once per backend: TensorFlow, JAX and PyTorch in three processes at once.

    JAX's process sees two virtual CPU devices (XLA_FLAGS), for the data-parallel script; every other script runs
    on one device, as without the flag."""
    folder = tmp_path_factory.mktemp("runs")
    weights = folder / "weights"
    keras2_files.place("densenet121", weights, "RadImageNet-DenseNet121_notop.h5")
    example = Path(__file__).resolve().parents[1] / "examples" / "radimagenet_pytorch.py"
    on_jax = folder / "jax.npy"

    def job(name, script, *args, **more):
        return {"name": name, "script": script, "args": [str(a) for a in args], **more}

    common = [  # each checks that TensorFlow was never loaded
        job("same_h5", SCRIPT, json.dumps(cases)),
        job("device_augment", DEVICE_AUGMENT, warp_cases[0]),
        job("arrays", ARRAYS),
    ]
    image_path = job("image_path", IMAGE_PATH)  # loads TensorFlow where it is installed (allowed): after the checks
    without_tf = [job("files_without_tf", FILES_WITHOUT_TF, image_files)]  # before any job that may load TensorFlow
    plans = {
        "tensorflow": ([job("same_h5", SCRIPT, json.dumps(cases))], {}),
        "jax": (
            [
                *common,
                *without_tf,
                job("predict_without_tf", PREDICT_WITHOUT_TF, tensorflow_run[0], image_files, on_jax),
                image_path,
                job("data_parallel", JAX_DATA_PARALLEL),
            ],
            {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
        ),
        "torch": (
            [
                *common,
                *without_tf,
                image_path,
                job(
                    "pytorch_example",
                    None,
                    "--quick",
                    "--weights-dir",
                    weights,
                    "--out",
                    folder / "out",
                    path=str(example),
                    cwd=str(folder),
                ),
            ],
            {},
        ),
    }
    started = {
        backend: _start(backend, jobs, folder, **env) for backend, (jobs, env) in plans.items() if _installed(backend)
    }
    outcomes = {backend: _finish(process) for backend, process in started.items()}
    outcomes["_predicted_on_jax"] = on_jax
    return outcomes

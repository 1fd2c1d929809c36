"""The worker processes of benchmarks/gpu_end_to_end.py (its docstring says what each part measures).

Each part runs as ``gpu_end_to_end.py --worker SPEC`` in a fresh process: ``worker_preflight`` (backend, devices,
radtransfer's modules imported with TensorFlow blocked), ``worker_keras`` (phase A: fine_tune, its pieces and the
two ceilings on JAX) and ``worker_torch`` (phase B: timm's model, eager and compiled). Each returns its record and
prints ``PARTIAL`` lines as it goes (``emit``); ``GpuSampler`` gives the GPU busy fraction of each timed window.
Nothing here imports JAX, PyTorch or radtransfer at module level: the orchestrator imports this module too.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from datetime import datetime

NUM_CLASSES = 4
PRECISIONS = {"bf16": "mixed_bfloat16", "float32": "float32"}
TIMM_NAMES = {"resnet50": "resnet50", "densenet121": "densenet121"}


# -- shared helpers ------------------------------------------------------------------------------------------


def block_tensorflow() -> None:
    """Makes ``import tensorflow`` fail in this process, as on an image without it."""
    sys.modules["tensorflow"] = None


def third_party_modules() -> list[str]:
    """Top-level non-standard-library modules imported so far in this process (what the path needed)."""
    names = {name.split(".")[0] for name, module in list(sys.modules.items()) if module is not None}
    return sorted(n for n in names if n not in sys.stdlib_module_names and not n.startswith("_") and n != "__main__")


def emit(tag: str, record: dict) -> None:
    """One machine-read line on stdout: ``PARTIAL {...}`` as a part progresses, ``RESULT {...}`` at its end."""
    print(f"{tag} {json.dumps(record)}", flush=True)


class GpuSampler:
    """``nvidia-smi`` utilization of GPU 0 sampled every ``period_ms`` in the background.

    Each sample is stamped with nvidia-smi's own timestamp (its arrival time where that cannot be read), and
    nvidia-smi writes to a pseudo-terminal, so that its lines are not held back in a pipe's buffer. ``busy``
    averages the samples inside given ``time.time()`` windows; None where nvidia-smi is absent.
    """

    def __init__(self, period_ms: int = 200):
        self.period_ms = period_ms
        self.samples: list[tuple[float, float]] = []
        self.reason = None
        self.stamps = {"nvidia-smi": 0, "arrival": 0}
        self._process = None

    def start(self) -> GpuSampler:
        exe = shutil.which("nvidia-smi")
        if exe is None:
            self.reason = "nvidia-smi not found"
            return self
        command = [exe, "--query-gpu=index,timestamp,utilization.gpu", "--format=csv,noheader,nounits"]
        command += ["-lms", str(self.period_ms)]
        try:
            import pty

            master, slave = pty.openpty()
            self._process = subprocess.Popen(command, stdout=slave, stderr=subprocess.DEVNULL, close_fds=True)
            os.close(slave)
            stream = os.fdopen(master, "r", errors="replace")
        except (OSError, ImportError):
            try:
                self._process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            except OSError as error:
                self.reason = f"nvidia-smi failed to start: {error}"
                return self
            stream = self._process.stdout
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()
        return self

    def _read(self, stream) -> None:
        try:
            for line in stream:
                parts = [p.strip() for p in line.split(",")]
                if len(parts) != 3 or parts[0] != "0":
                    continue
                try:
                    stamp = datetime.strptime(parts[1], "%Y/%m/%d %H:%M:%S.%f").timestamp()
                    self.stamps["nvidia-smi"] += 1
                except ValueError:
                    stamp = time.time()
                    self.stamps["arrival"] += 1
                try:
                    self.samples.append((stamp, float(parts[2]) / 100.0))
                except ValueError:
                    continue
        except OSError:  # the pseudo-terminal closes when nvidia-smi ends
            return

    def busy(self, windows) -> dict:
        """Mean busy fraction (0..1) over the samples inside any of the (start, end) windows, and their count."""
        if self._process is None:
            return {"busy": None, "samples": 0, "note": self.reason}
        last = max((b for _, b in windows), default=0.0)
        waited = time.time()
        while (not self.samples or self.samples[-1][0] < last) and time.time() - waited < 2.0:
            time.sleep(0.05)  # the samples of the window's last moments are still on their way
        inside = [u for t, u in list(self.samples) for a, b in windows if a <= t <= b]
        if not inside:
            return {"busy": None, "samples": 0, "note": "no sample inside the window"}
        return {"busy": round(sum(inside) / len(inside), 4), "samples": len(inside), "stamped_by": dict(self.stamps)}

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()


# -- preflight -----------------------------------------------------------------------------------------------


def worker_preflight(spec: dict) -> dict:
    """JAX's backend and devices, and every radtransfer module's import with TensorFlow blocked."""
    import importlib
    import pkgutil

    block_tensorflow()
    out = {"python": sys.version.split()[0], "keras_backend_env": os.environ.get("KERAS_BACKEND")}
    try:
        import jax

        out["jax_backend"] = jax.default_backend()
        out["jax_devices"] = [str(d) for d in jax.devices()]
    except Exception as error:  # noqa: BLE001 - reported, not raised: the preflight lists what is missing
        out["jax_error"] = f"{type(error).__name__}: {error}"
    try:
        import keras

        out["keras_backend"] = keras.backend.backend()
    except Exception as error:  # noqa: BLE001
        out["keras_error"] = f"{type(error).__name__}: {error}"
        return out
    failures, missing = {}, set()
    try:
        import radtransfer

        names = sorted(m.name for m in pkgutil.walk_packages(radtransfer.__path__, "radtransfer."))
        names = [n for n in names if not n.endswith("__main__")]  # importing it runs the command line
    except Exception as error:  # noqa: BLE001
        return {**out, "radtransfer_error": f"{type(error).__name__}: {error}"}
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as error:  # noqa: BLE001
            failures[name] = f"{type(error).__name__}: {error}"
            if isinstance(error, ImportError) and error.name:
                missing.add(error.name.split(".")[0])
    out["radtransfer_modules"] = len(names)
    out["radtransfer_import_failures"] = failures
    out["missing_for_radtransfer"] = sorted(missing)
    return out


# -- phase A: JAX --------------------------------------------------------------------------------------------


def worker_keras(spec: dict) -> dict:
    """One backbone × strategy × precision on JAX: fine_tune, its pieces, and the two ceilings."""
    if spec["block_tensorflow"]:
        block_tensorflow()
    import jax
    import keras

    import radtransfer as rt
    import radtransfer.data.py_dataset.device_augment  # noqa: F401 - imported, as every module the parts use, before any timer
    import radtransfer.data.py_dataset.sequence  # noqa: F401
    import radtransfer.training.epoch_loop  # noqa: F401
    from radtransfer.data.augment import get_augment
    from radtransfer.training.config import TrainConfig

    sampler = GpuSampler().start()
    precision = PRECISIONS[spec["precision"]]
    out = {
        key: spec[key] for key in ("phase", "backbone", "strategy", "precision", "batch", "size", "n_train", "n_val")
    }
    out.update(
        policy=precision,
        keras_backend=keras.backend.backend(),
        devices=[str(d) for d in jax.devices()],
        jax=jax.__version__,
        keras=keras.__version__,
        bn=spec["bn"],
    )
    keras.mixed_precision.set_global_policy(precision)  # build_model then builds under it: no rebuild in fine_tune
    config = TrainConfig.from_settings(
        None, strategy=spec["strategy"], precision=precision, jit_compile=True, bn=spec["bn"], learning_rate=1e-4
    )
    params = get_augment("radimagenet")
    train_set = rt.data.from_directory(spec["train_dir"])
    val_set = rt.data.from_directory(spec["val_dir"])
    wrapper = None

    if spec["fine_tune"]:
        out["fine_tune"], wrapper = time_fine_tune(spec, _build(spec), train_set, val_set, sampler)
        emit("PARTIAL", out)

    if wrapper is None:
        wrapper = _compiled(_build(spec), config, params, wrap=True)
    out["pieces"] = time_pieces(spec, wrapper, train_set, params, sampler)
    emit("PARTIAL", out)

    images, labels, transforms = _random_batch(spec, params)
    on_device = jax.device_put(({"images": images, "transforms": transforms}, labels))
    out["wrapper_ceiling"] = ceiling(keras, wrapper, on_device, spec, sampler)
    emit("PARTIAL", out)

    if spec["model_ceiling"]:
        bare = _compiled(_build(spec), config, params, wrap=False)
        out["model_ceiling"] = ceiling(keras, bare, jax.device_put((images, labels)), spec, sampler)
    out["third_party_modules"] = third_party_modules()
    out["tensorflow_imported"] = sys.modules.get("tensorflow") is not None
    sampler.stop()
    return out


def _build(spec: dict):
    """The backbone, untrained, under the global precision policy."""
    import radtransfer as rt

    size = spec["size"]
    return rt.build_model(spec["backbone"], weights=None, num_classes=NUM_CLASSES, input_shape=(size, size, 3))


def _compiled(model, config, params, wrap: bool):
    """``model`` (or its device-augment wrapper) with the strategy applied and compiled as fine_tune does."""
    import radtransfer as rt
    from radtransfer.data.py_dataset.device_augment import with_device_augment
    from radtransfer.training.epoch_loop import compile_model, make_metrics

    rt.apply_strategy(model, config.strategy, bn=config.bn)
    fitted = with_device_augment(model, params) if wrap else model
    compile_model(fitted, config.make_optimizer(), config.make_loss(NUM_CLASSES), make_metrics(NUM_CLASSES), True)
    return fitted


def time_fine_tune(spec: dict, model, train_set, val_set, sampler: GpuSampler) -> tuple:
    """(the record of ``rt.fine_tune`` on the PNG folders, the model it fitted: fine_tune's device-augment
    wrapper)."""
    import keras

    import radtransfer as rt

    clock = epoch_clock(keras)
    start, wall = time.perf_counter(), time.time()
    rt.fine_tune(
        model,
        train_set,
        val_set,
        strategy=spec["strategy"],
        epochs=spec["ft_epochs"],
        batch_size=spec["batch"],
        precision=PRECISIONS[spec["precision"]],
        jit_compile=True,
        bn=spec["bn"],
        learning_rate=1e-4,
        seed=0,
        verbose=0,
        callbacks=[clock],
    )
    seconds = time.perf_counter() - start
    record = {
        **clock.summary(spec["n_train"], sampler, train_end="test_begin"),
        "call_s": round(seconds, 2),
        "setup_s": round(clock.epochs[0]["begin"] - wall, 2),
        "note": "setup_s: from the call to epoch 0 (reading the files into the memory cache, strategy, "
        "compile call); epoch 0 holds XLA compilation; train_s ends at validation's start",
    }
    return record, clock.fitted


def time_pieces(spec: dict, wrapper, train_set, params, sampler: GpuSampler) -> dict:
    """fine_tune's compiled wrapper fitted on ``TransformSequence(ImageSequence(workers))``."""
    import keras

    from radtransfer.data.py_dataset.sequence import ImageSequence, TransformSequence

    size = spec["size"]
    start = time.perf_counter()
    sequence = ImageSequence(
        train_set,
        image_size=(size, size),
        batch_size=spec["batch"],
        shuffle=True,
        seed=0,
        cache=spec["cache_prefix"],
        workers=spec["workers"],
    )
    fill = time.perf_counter() - start
    fed = TransformSequence(sequence, params)
    clock = epoch_clock(keras)
    wrapper.fit(fed, epochs=spec["epochs"], shuffle=False, verbose=0, callbacks=[clock, sequence.epoch_callback()])
    return {
        **clock.summary(spec["n_train"], sampler, train_end="end"),
        "workers": spec["workers"],
        "cache": sequence.cache.mode,
        "cache_open_or_fill_s": round(fill, 2),
        "note": "fine_tune's compiled wrapper on TransformSequence(ImageSequence(workers)); disk cache shared "
        "by all parts (filled by the first, memory-mapped by the others)",
    }


def _random_batch(spec: dict, params) -> tuple:
    """(uint8 images, one-hot labels, the augmentation's transforms) of one batch, seeded."""
    import numpy as np

    from radtransfer.data.py_dataset.device_augment import random_transforms_np

    batch, size = spec["batch"], spec["size"]
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    labels = np.eye(NUM_CLASSES, dtype=np.float32)[rng.integers(0, NUM_CLASSES, batch)]
    transforms = random_transforms_np(batch, size, size, params, rng)
    return images, labels, transforms


def epoch_clock(keras):
    """A Keras callback that stamps each epoch's begin, validation's start and end (wall time), keeps the model
    fit trains (fine_tune's device-augment wrapper), and summarises the epochs after the first.

    Only epoch-level hooks: no batch-level hook, so Keras keeps dispatching steps asynchronously.
    """

    class Clock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epochs, self.fitted, self._current = {}, None, None

        def set_model(self, model):
            super().set_model(model)
            self.fitted = model

        def on_epoch_begin(self, epoch, logs=None):
            self._current = epoch
            self.epochs[epoch] = {"begin": time.time()}

        def on_test_begin(self, logs=None):
            if self._current is not None and "test_begin" not in self.epochs[self._current]:
                self.epochs[self._current]["test_begin"] = time.time()

        def on_epoch_end(self, epoch, logs=None):
            self.epochs[epoch]["end"] = time.time()  # after Keras read the logs: the device has finished

        def summary(self, images_per_epoch: int, sampler: GpuSampler, train_end: str) -> dict:
            order = sorted(self.epochs)
            first = self.epochs[order[0]]
            steady = [self.epochs[e] for e in order[1:] if train_end in self.epochs[e]]
            windows = [(e["begin"], e[train_end]) for e in steady]
            seconds = [b - a for a, b in windows]
            walls = [self.epochs[b]["begin"] - self.epochs[a]["begin"] for a, b in zip(order[1:], order[2:])]
            result = {
                "epoch0_train_s": round(first.get(train_end, first.get("end", first["begin"])) - first["begin"], 2),
                "steady_epochs": len(steady),
                "steady_train_s": [round(s, 3) for s in seconds],
                "images_per_s": round(images_per_epoch * len(seconds) / sum(seconds), 1) if seconds else None,
                "gpu": sampler.busy(windows),
            }
            if walls:
                result["images_per_s_epoch_wall"] = round(images_per_epoch * len(walls) / sum(walls), 1)
            return result

    return Clock()


def ceiling(keras, model, batch, spec: dict, sampler: GpuSampler) -> dict:
    """images/s of ``model.fit`` on one batch already on the device, served ``ceiling_steps`` times per epoch;
    the first epoch (compilation, warm-up) is excluded."""

    class OnDevice(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()

        def __len__(self):
            return spec["ceiling_steps"]

        def __getitem__(self, index):
            return batch

    clock = epoch_clock(keras)
    start = time.perf_counter()
    model.fit(OnDevice(), epochs=1 + spec["ceiling_epochs"], shuffle=False, verbose=0, callbacks=[clock])
    result = clock.summary(spec["ceiling_steps"] * spec["batch"], sampler, train_end="end")
    result["fit_s"] = round(time.perf_counter() - start, 2)
    result["steps_per_epoch"] = spec["ceiling_steps"]
    return result


# -- phase B: PyTorch anchor ---------------------------------------------------------------------------------


def worker_torch(spec: dict) -> dict:
    """timm's model trained on batches already on the device: eager, then torch.compile."""
    if spec["block_tensorflow"]:
        block_tensorflow()
    import torch

    sampler = GpuSampler().start()
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels, as a tuned run would
    out = {key: spec[key] for key in ("phase", "backbone", "batch", "size")}
    out.update(torch=torch.__version__, device=torch.cuda.get_device_name(0) if cuda else "cpu")
    network = _torch_network(spec, out)
    if network is None:
        sampler.stop()
        return {**out, "status": "skipped", "reason": "timm is not installed"}

    net = _preprocessed(network).to(device).to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4, **({"fused": True} if cuda else {}))
    batch, size = spec["batch"], spec["size"]
    generator = torch.Generator(device=device).manual_seed(0)
    x = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, device=device, generator=generator)
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, NUM_CLASSES, (batch,), device=device, generator=generator)
    steps = _TorchSteps(optimizer, x, y, spec, sampler)

    out["eager"] = steps.timed(net, "eager, channels_last, bf16 autocast")
    emit("PARTIAL", out)
    if spec["torch_compile"] == "on" or (spec["torch_compile"] == "auto" and cuda):
        out["compiled"] = steps.timed(torch.compile(net), "torch.compile, channels_last, bf16 autocast")
    out["third_party_modules"] = third_party_modules()
    out["tensorflow_imported"] = sys.modules.get("tensorflow") is not None
    sampler.stop()
    return out


def _torch_network(spec: dict, out: dict):
    """timm's model (its source and version recorded in ``out``); with --quick and no timm, a tiny stand-in;
    None when timm is absent otherwise."""
    import torch

    try:
        import timm

        network = timm.create_model(TIMM_NAMES[spec["backbone"]], pretrained=False, num_classes=NUM_CLASSES)
        out.update(source="timm", timm=timm.__version__)
    except ImportError:
        if not spec["stand_in"]:
            return None
        network = torch.nn.Sequential(  # --quick without timm: exercises the path, measures nothing of interest
            torch.nn.Conv2d(3, 16, 3, stride=2),
            torch.nn.BatchNorm2d(16),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(),
            torch.nn.Linear(16, NUM_CLASSES),
        )
        out.update(source="stand-in (timm absent; not an anchor)")
    return network


def _preprocessed(network):
    """``network`` taking uint8 NCHW, ImageNet normalisation on the device, as radtransfer's models take uint8."""
    import torch

    class Preprocessed(torch.nn.Module):
        """uint8 NCHW in, ImageNet normalisation on the device, as radtransfer's models take uint8."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner
            self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255)
            self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255)

        def forward(self, x):
            return self.inner((x.float() - self.mean) / self.std)

    return Preprocessed(network)


class _TorchSteps:
    """Training steps (bf16 autocast, cross-entropy, the optimizer) on one batch already on the device."""

    def __init__(self, optimizer, x, y, spec: dict, sampler: GpuSampler):
        import torch
        import torch.nn.functional as F

        self.torch, self.functional = torch, F
        self.optimizer, self.x, self.y, self.spec, self.sampler = optimizer, x, y, spec, sampler
        self.device = x.device
        self.cuda = x.device.type == "cuda"

    def step(self, module):
        with self.torch.autocast(self.device.type, dtype=self.torch.bfloat16):
            loss = self.functional.cross_entropy(module(self.x), self.y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()

    def timed(self, module, label: str) -> dict:
        """The first step's seconds, then images/s of ``torch_steps`` steps after ``torch_warmup`` more."""
        spec = self.spec
        start = time.perf_counter()
        self.step(module)
        self.sync()
        first = time.perf_counter() - start
        for _ in range(spec["torch_warmup"]):
            self.step(module)
        self.sync()
        wall, start = time.time(), time.perf_counter()
        for _ in range(spec["torch_steps"]):
            loss = self.step(module)
        self.sync()
        seconds = time.perf_counter() - start
        return {
            "first_step_s": round(first, 2),
            "steps": spec["torch_steps"],
            "images_per_s": round(spec["torch_steps"] * spec["batch"] / seconds, 1),
            "loss_finite": bool(self.torch.isfinite(loss).item()),
            "gpu": self.sampler.busy([(wall, time.time())]),
            "mode": label,
        }

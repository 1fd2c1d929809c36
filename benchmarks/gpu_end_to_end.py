"""Image files on disk to training steps on one GPU: radtransfer on JAX against its own ceiling and timm (issue 22).

    python3 benchmarks/gpu_end_to_end.py --out $OUT/gpu_end_to_end.json          # the GPU run (< 10 min)
    .venv/bin/python benchmarks/gpu_end_to_end.py --quick --block-tensorflow      # the whole flow on a CPU, ~2 min

What it measures, each part in a fresh process with its own time limit (a part cut off still reports what it
measured so far, and the JSON is rewritten after every part):

- preflight: backend, devices, package versions, and which radtransfer modules fail to import with TensorFlow
  blocked (a TensorFlow-free image: the missing third-party modules are listed);
- images: ``--images`` training and ``--val-images`` validation PNGs of ``--png-size`` px in 4 class folders,
  written by several processes (NumPy + Pillow), reused when already there;
- phase A (JAX, one process per backbone × strategy × precision): with the same compiled step wherever possible,

  - ``fine_tune``: ``rt.fine_tune`` on the PNG folders (ImageSequence, on-device RadImageNet augmentation),
    epoch 0 (cache fill, compilation) reported apart, then images/s of the training steps of the later epochs;
  - ``pieces``: fine_tune's own compiled wrapper (``with_device_augment``) fitted on
    ``TransformSequence(ImageSequence(workers=--workers))``, as fine_tune's data but with several workers and
    without fine_tune's per-step callbacks (which make every step wait for the device);
  - ``wrapper_ceiling``: that wrapper on batches already on the device (the warp included): the pipeline's ceiling;
  - ``model_ceiling``: the bare model, compiled as fine_tune compiles, on uint8 batches already on the device:
    the model's own ceiling;

- phase B (PyTorch anchor): timm's model, channels_last, bf16 autocast, fused Adam, on batches already on the
  device, eager and then ``torch.compile``;
- GPU busy fraction: ``nvidia-smi --query-gpu=... -lms 200`` sampled for the whole of each process, averaged over
  each timed window (null where nvidia-smi is absent).

Goal (issue 22): end to end ≥ 0.9 × the model's own ceiling, and ≥ 1.0 × timm. Needs NumPy, Pillow, Keras, JAX
and radtransfer (phase A), PyTorch and timm (phase B); never TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

SCHEMA = "radtransfer-gpu-end-to-end-1"
NUM_CLASSES = 4
PRECISIONS = {"bf16": "mixed_bfloat16", "float32": "float32"}
# In priority order: a run cut short by its budget keeps the first ones. Each backbone's anchor (phase B) runs
# right after that backbone's first configuration.
DEFAULT_CONFIGS = (
    "resnet50:unfreeze_all:bf16",
    "densenet121:unfreeze_all:bf16",
    "resnet50:freeze_all:bf16",
    "densenet121:freeze_all:bf16",
    "resnet50:unfreeze_all:float32",
)
QUICK_CONFIGS = ("resnet50:unfreeze_all:bf16",)
# Seconds a part takes on an H100/H200 (compilation dominates), for the printed estimate and the skip rule.
ESTIMATE_A = {"resnet50": 140, "densenet121": 200}
ESTIMATE_B = {"resnet50": 80, "densenet121": 120}
ESTIMATE_QUICK_A, ESTIMATE_QUICK_B = 80, 10
TIMM_NAMES = {"resnet50": "resnet50", "densenet121": "densenet121"}
VERSIONED = (
    "jax",
    "jaxlib",
    "keras",
    "torch",
    "timm",
    "numpy",
    "pillow",
    "scipy",
    "pandas",
    "h5py",
    "namex",
    "optree",
    "ml-dtypes",
    "absl-py",
    "rich",
    "tqdm",
    "matplotlib",
    "scikit-learn",
    "jinja2",
    "tensorflow",
)


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


# -- the images ----------------------------------------------------------------------------------------------


def _write_png(job) -> int:
    """Writes one smooth random PNG (low-resolution noise upscaled, plus fine noise); returns its size in bytes."""
    import numpy as np
    from PIL import Image

    path, seed, size, gray = job
    rng = np.random.default_rng(seed)
    channels = 1 if gray else 3
    coarse = rng.integers(0, 256, (16, 16, channels), dtype=np.uint8)
    image = Image.fromarray(coarse[..., 0] if gray else coarse).resize((size, size), Image.BICUBIC)
    pixels = np.asarray(image, dtype=np.int16) + rng.integers(-6, 7, (size, size) if gray else (size, size, 3))
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)
    return Path(path).stat().st_size


def make_images(root: Path, n_train: int, n_val: int, size: int, gray: bool, processes: int) -> dict:
    """``root/train/class_k/*.png`` and ``root/val/class_k/*.png`` (4 classes, round-robin), reused if present."""
    from multiprocessing import get_context

    manifest = {"n_train": n_train, "n_val": n_val, "png_size": size, "gray": gray, "classes": NUM_CLASSES}
    marker = root / "manifest.json"
    if marker.exists() and json.loads(marker.read_text()).get("settings") == manifest:
        recorded = json.loads(marker.read_text())
        return {**recorded, "reused": True, "seconds": 0.0}
    if root.exists():
        shutil.rmtree(root)
    jobs = []
    for part, count, offset in (("train", n_train, 0), ("val", n_val, n_train)):
        for k in range(NUM_CLASSES):
            (root / part / f"class_{k}").mkdir(parents=True, exist_ok=True)
        jobs += [
            (str(root / part / f"class_{i % NUM_CLASSES}" / f"img_{i:06d}.png"), offset + i, size, gray)
            for i in range(count)
        ]
    start = time.perf_counter()
    with get_context("spawn").Pool(processes) as pool:
        sizes = pool.map(_write_png, jobs, chunksize=16)
    seconds = time.perf_counter() - start
    record = {"settings": manifest, "files": len(jobs), "bytes": int(sum(sizes)), "processes": processes}
    marker.write_text(json.dumps(record))
    return {**record, "reused": False, "seconds": round(seconds, 2)}


# -- preflight -----------------------------------------------------------------------------------------------


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in VERSIONED:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


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
    import numpy as np

    import radtransfer as rt
    from radtransfer.data.augment import get_augment
    from radtransfer.data.py_dataset.device_augment import random_transforms_np, with_device_augment
    from radtransfer.data.py_dataset.sequence import ImageSequence, TransformSequence
    from radtransfer.training.config import TrainConfig
    from radtransfer.training.epoch_loop import compile_model, make_metrics

    sampler = GpuSampler().start()
    batch, size, n_train = spec["batch"], spec["size"], spec["n_train"]
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

    def build():
        return rt.build_model(spec["backbone"], weights=None, num_classes=NUM_CLASSES, input_shape=(size, size, 3))

    def compiled(model, wrap: bool):
        """``model`` (or its device-augment wrapper) with the strategy applied and compiled as fine_tune does."""
        rt.apply_strategy(model, config.strategy, bn=config.bn)
        fitted = with_device_augment(model, params) if wrap else model
        compile_model(fitted, config.make_optimizer(), config.make_loss(NUM_CLASSES), make_metrics(NUM_CLASSES), True)
        return fitted

    train_set = rt.data.from_directory(spec["train_dir"])
    val_set = rt.data.from_directory(spec["val_dir"])
    wrapper = None

    if spec["fine_tune"]:
        clock = epoch_clock(keras)
        model = build()
        start, wall = time.perf_counter(), time.time()
        rt.fine_tune(
            model,
            train_set,
            val_set,
            strategy=spec["strategy"],
            epochs=spec["ft_epochs"],
            batch_size=batch,
            precision=precision,
            jit_compile=True,
            bn=spec["bn"],
            learning_rate=1e-4,
            seed=0,
            verbose=0,
            callbacks=[clock],
        )
        seconds = time.perf_counter() - start
        wrapper = clock.fitted
        out["fine_tune"] = {
            **clock.summary(n_train, sampler, train_end="test_begin"),
            "call_s": round(seconds, 2),
            "setup_s": round(clock.epochs[0]["begin"] - wall, 2),
            "note": "setup_s: from the call to epoch 0 (reading the files into the memory cache, strategy, "
            "compile call); epoch 0 holds XLA compilation; train_s ends at validation's start",
        }
        emit("PARTIAL", out)

    if wrapper is None:
        wrapper = compiled(build(), wrap=True)
    start = time.perf_counter()
    sequence = ImageSequence(
        train_set,
        image_size=(size, size),
        batch_size=batch,
        shuffle=True,
        seed=0,
        cache=spec["cache_prefix"],
        workers=spec["workers"],
    )
    fill = time.perf_counter() - start
    fed = TransformSequence(sequence, params)
    clock = epoch_clock(keras)
    wrapper.fit(fed, epochs=spec["epochs"], shuffle=False, verbose=0, callbacks=[clock, sequence.epoch_callback()])
    out["pieces"] = {
        **clock.summary(n_train, sampler, train_end="end"),
        "workers": spec["workers"],
        "cache": sequence.cache.mode,
        "cache_open_or_fill_s": round(fill, 2),
        "note": "fine_tune's compiled wrapper on TransformSequence(ImageSequence(workers)); disk cache shared "
        "by all parts (filled by the first, memory-mapped by the others)",
    }
    emit("PARTIAL", out)

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    labels = np.eye(NUM_CLASSES, dtype=np.float32)[rng.integers(0, NUM_CLASSES, batch)]
    transforms = random_transforms_np(batch, size, size, params, rng)
    on_device = jax.device_put(({"images": images, "transforms": transforms}, labels))
    out["wrapper_ceiling"] = ceiling(keras, wrapper, on_device, spec, sampler)
    emit("PARTIAL", out)

    if spec["model_ceiling"]:
        bare = compiled(build(), wrap=False)
        out["model_ceiling"] = ceiling(keras, bare, jax.device_put((images, labels)), spec, sampler)
    out["third_party_modules"] = third_party_modules()
    out["tensorflow_imported"] = sys.modules.get("tensorflow") is not None
    sampler.stop()
    return out


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
    import torch.nn.functional as F

    sampler = GpuSampler().start()
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels, as a tuned run would
    out = {key: spec[key] for key in ("phase", "backbone", "batch", "size")}
    out.update(torch=torch.__version__, device=torch.cuda.get_device_name(0) if cuda else "cpu")
    try:
        import timm

        network = timm.create_model(TIMM_NAMES[spec["backbone"]], pretrained=False, num_classes=NUM_CLASSES)
        out.update(source="timm", timm=timm.__version__)
    except ImportError:
        if not spec["stand_in"]:
            sampler.stop()
            return {**out, "status": "skipped", "reason": "timm is not installed"}
        network = torch.nn.Sequential(  # --quick without timm: exercises the path, measures nothing of interest
            torch.nn.Conv2d(3, 16, 3, stride=2),
            torch.nn.BatchNorm2d(16),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(),
            torch.nn.Linear(16, NUM_CLASSES),
        )
        out.update(source="stand-in (timm absent; not an anchor)")

    class Preprocessed(torch.nn.Module):
        """uint8 NCHW in, ImageNet normalisation on the device, as radtransfer's models take uint8."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner
            self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255)
            self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255)

        def forward(self, x):
            return self.inner((x.float() - self.mean) / self.std)

    net = Preprocessed(network).to(device).to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4, **({"fused": True} if cuda else {}))
    batch, size = spec["batch"], spec["size"]
    generator = torch.Generator(device=device).manual_seed(0)
    x = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, device=device, generator=generator)
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, NUM_CLASSES, (batch,), device=device, generator=generator)

    def timed(module, label: str) -> dict:
        def step():
            with torch.autocast(device.type, dtype=torch.bfloat16):
                loss = F.cross_entropy(module(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            return loss

        def sync():
            if cuda:
                torch.cuda.synchronize()

        start = time.perf_counter()
        step()
        sync()
        first = time.perf_counter() - start
        for _ in range(spec["torch_warmup"]):
            step()
        sync()
        wall, start = time.time(), time.perf_counter()
        for _ in range(spec["torch_steps"]):
            loss = step()
        sync()
        seconds = time.perf_counter() - start
        return {
            "first_step_s": round(first, 2),
            "steps": spec["torch_steps"],
            "images_per_s": round(spec["torch_steps"] * batch / seconds, 1),
            "loss_finite": bool(torch.isfinite(loss).item()),
            "gpu": sampler.busy([(wall, time.time())]),
            "mode": label,
        }

    out["eager"] = timed(net, "eager, channels_last, bf16 autocast")
    emit("PARTIAL", out)
    if spec["torch_compile"] == "on" or (spec["torch_compile"] == "auto" and cuda):
        out["compiled"] = timed(torch.compile(net), "torch.compile, channels_last, bf16 autocast")
    out["third_party_modules"] = third_party_modules()
    out["tensorflow_imported"] = sys.modules.get("tensorflow") is not None
    sampler.stop()
    return out


# -- the orchestrator ----------------------------------------------------------------------------------------


def run_part(args, spec: dict, limit: float, env: dict, log_dir: Path) -> dict:
    """Runs one part in a fresh process for at most ``limit`` s; returns its RESULT, or its last PARTIAL with
    the status (timeout or error) when it did not finish."""
    name = spec["name"]
    log = log_dir / f"{name}.log"
    start = time.perf_counter()
    with open(log, "w") as err:
        process = subprocess.Popen(
            [sys.executable, __file__, "--worker", json.dumps(spec)],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=env,
            start_new_session=True,
        )
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
        reader.start()
        try:
            process.wait(timeout=max(1.0, limit))
            status = "ok" if process.returncode == 0 else "error"
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)  # the part's own process group: it and its workers, nothing else
            process.wait()
            status = "timeout"
        reader.join(timeout=5)
    record = {}
    for line in lines:
        if line.startswith(("RESULT ", "PARTIAL ")):
            record = json.loads(line.split(" ", 1)[1])
    if status == "ok" and not any(line.startswith("RESULT ") for line in lines):
        status = "error"
    record.update(name=name, status=record.get("status", status), seconds=round(time.perf_counter() - start, 1))
    if status != "ok":
        tail = log.read_text(errors="replace").strip().splitlines()[-15:]
        record.update(status=status, limit_s=round(limit, 1), log_tail=tail)
    return record


def plan(args) -> list[dict]:
    """The parts in the order they run: the phase-A configurations, each backbone's anchor after its first."""
    parts, anchored = [], set()
    for text in args.configs:
        backbone, strategy, precision = text.split(":")
        if precision not in PRECISIONS:
            raise SystemExit(f"Unknown precision {precision!r} in {text!r}: expected one of {sorted(PRECISIONS)}")
        parts.append(
            {
                "phase": "A",
                "name": f"A_{backbone}_{strategy}_{precision}",
                "backbone": backbone,
                "strategy": strategy,
                "precision": precision,
                "estimate_s": ESTIMATE_QUICK_A
                if args.quick
                else ESTIMATE_A.get(backbone, 150) * (1.3 if precision == "float32" else 1.0),
            }
        )
        if backbone in args.anchors and backbone not in anchored:
            anchored.add(backbone)
            parts.append(
                {
                    "phase": "B",
                    "name": f"B_{backbone}",
                    "backbone": backbone,
                    "estimate_s": ESTIMATE_QUICK_B if args.quick else ESTIMATE_B.get(backbone, 120),
                }
            )
    return parts


def summarise(parts: list[dict]) -> dict:
    """Per phase-A part: its images/s and the goal's ratios (to its model ceiling, to timm compiled); the anchors."""

    def rate(part, key):
        return (part.get(key) or {}).get("images_per_s")

    anchors = {
        p["backbone"]: rate(p, "compiled") or rate(p, "eager")
        for p in parts
        if p.get("phase") == "B" and p.get("source") == "timm"
    }
    float32 = {
        (p["backbone"], p["strategy"]): rate(p, "model_ceiling")
        for p in parts
        if p.get("phase") == "A" and p.get("precision") == "float32"
    }
    rows = []
    for p in parts:
        if p.get("phase") != "A":
            continue
        row = {k: p.get(k) for k in ("backbone", "strategy", "precision", "status")}
        for key in ("fine_tune", "pieces", "wrapper_ceiling", "model_ceiling"):
            row[key] = rate(p, key)
            row[f"{key}_gpu_busy"] = ((p.get(key) or {}).get("gpu") or {}).get("busy")
        ceil, timm = row["model_ceiling"], anchors.get(p.get("backbone"))
        for key in ("fine_tune", "pieces"):
            if row[key] and ceil:
                row[f"{key}_over_model_ceiling"] = round(row[key] / ceil, 3)
            if row[key] and timm and p.get("strategy") == "unfreeze_all":
                row[f"{key}_over_timm"] = round(row[key] / timm, 3)
        if row["pieces"] and row["wrapper_ceiling"]:
            row["pieces_over_wrapper_ceiling"] = round(row["pieces"] / row["wrapper_ceiling"], 3)
        if ceil and timm and p.get("strategy") == "unfreeze_all":
            row["model_ceiling_over_timm"] = round(ceil / timm, 3)
        f32 = float32.get((p.get("backbone"), p.get("strategy")))
        if p.get("precision") == "bf16" and ceil and f32:
            row["model_ceiling_bf16_over_float32"] = round(ceil / f32, 3)
        if row.get("fine_tune_over_model_ceiling") is not None:
            row["goal_end_to_end_0.9_ceiling"] = row["fine_tune_over_model_ceiling"] >= 0.9
        if row.get("fine_tune_over_timm") is not None:
            row["goal_end_to_end_1.0_timm"] = row["fine_tune_over_timm"] >= 1.0
        rows.append(row)
    table = {
        p["backbone"]: {
            "source": p.get("source"),
            "status": p.get("status"),
            "eager": rate(p, "eager"),
            "compiled": rate(p, "compiled"),
            "compiled_gpu_busy": ((p.get("compiled") or {}).get("gpu") or {}).get("busy"),
        }
        for p in parts
        if p.get("phase") == "B"
    }
    return {"phase_a": rows, "anchors": table}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu_end_to_end.json", help="the JSON file (rewritten after every part)")
    parser.add_argument("--quick", action="store_true", help="the whole flow at tiny sizes (a CPU check, ~2 min)")
    parser.add_argument("--configs", nargs="+", default=None, help="backbone:strategy:precision (bf16 or float32)")
    parser.add_argument("--anchors", nargs="*", default=None, help="backbones with a timm anchor (none: no phase B)")
    parser.add_argument("--images", type=int, default=None, help="training PNGs (default 3072 = 12 batches of 256)")
    parser.add_argument("--val-images", type=int, default=None, help="validation PNGs (default 256)")
    parser.add_argument("--png-size", type=int, default=None, help="PNG side in px (default 512)")
    parser.add_argument("--size", type=int, default=None, help="training resolution (default 256)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default 256)")
    parser.add_argument("--gray", action="store_true", help="grayscale PNGs (repeated to 3 channels on the host)")
    parser.add_argument("--workers", type=int, default=None, help="PyDataset threads of the pieces path (default 6)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs of fine_tune and of the pieces (default 4)")
    parser.add_argument("--bn", default="protocol", choices=("protocol", "frozen"), help="as fine_tune's bn")
    parser.add_argument("--no-fine-tune", action="store_true", help="measure the pieces only (no rt.fine_tune)")
    parser.add_argument("--no-model-ceiling", action="store_true", help="skip the bare model (saves a compile)")
    parser.add_argument("--torch-compile", default="auto", choices=("auto", "on", "off"), help="auto: on a GPU")
    parser.add_argument("--budget", type=float, default=None, help="seconds for everything (default 540)")
    parser.add_argument("--part-limit", type=float, default=None, help="seconds at most per part (default 240)")
    parser.add_argument("--data-dir", default=None, help="where the PNGs go (default: a folder in /tmp)")
    parser.add_argument(
        "--log-dir",
        default="/tmp/radtransfer_e2e_logs",
        help="each part's stderr (a failed part's tail is in the JSON)",
    )
    parser.add_argument(
        "--jax-cache",
        default="/tmp/radtransfer_e2e_jax_cache",
        help="JAX's persistent compilation cache: a second run on the same machine skips compiling ('' for none)",
    )
    parser.add_argument(
        "--block-tensorflow",
        action="store_true",
        default=os.environ.get("RADTRANSFER_BLOCK_TF") == "1",
        help="make `import tensorflow` fail in every process (also: RADTRANSFER_BLOCK_TF=1)",
    )
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        spec = json.loads(args.worker)
        run = {"preflight": worker_preflight, "A": worker_keras, "B": worker_torch}[spec["phase"]]
        emit("RESULT", run(spec))
        return 0

    quick = args.quick
    pick = lambda value, full, small: value if value is not None else (small if quick else full)
    args.configs = pick(args.configs, list(DEFAULT_CONFIGS), list(QUICK_CONFIGS))
    args.anchors = pick(args.anchors, ["resnet50", "densenet121"], ["resnet50"])
    n_train, n_val = pick(args.images, 3072, 32), pick(args.val_images, 256, 8)
    png, size, batch = pick(args.png_size, 512, 128), pick(args.size, 256, 64), pick(args.batch, 256, 8)
    epochs, workers = pick(args.epochs, 4, 2), pick(args.workers, 6, 2)
    budget, part_limit = pick(args.budget, 540.0, 900.0), pick(args.part_limit, 240.0, 400.0)
    data_dir = Path(args.data_dir or f"/tmp/radtransfer_e2e_png_{n_train}_{n_val}_{png}{'_gray' if args.gray else ''}")
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    log_dir = Path(args.log_dir)  # not beside --out: a device run brings back at most 8 files from $OUT
    log_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    deadline = started + budget

    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    repo = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), repo) if p)
    if args.block_tensorflow:
        env["RADTRANSFER_BLOCK_TF"] = "1"
    if args.jax_cache:
        env.update(JAX_COMPILATION_CACHE_DIR=args.jax_cache, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="2")
    common = {
        "block_tensorflow": args.block_tensorflow,
        "batch": batch,
        "size": size,
        "n_train": n_train,
        "n_val": n_val,
        "train_dir": str(data_dir / "train"),
        "val_dir": str(data_dir / "val"),
        "cache_prefix": str(data_dir / "npy_cache" / "train"),
        "workers": workers,
        "epochs": epochs,
        "ft_epochs": epochs,
        "bn": args.bn,
        "fine_tune": not args.no_fine_tune,
        "model_ceiling": not args.no_model_ceiling,
        "ceiling_steps": 2 if quick else 10,
        "ceiling_epochs": 1 if quick else 2,
        "torch_steps": 2 if quick else 20,
        "torch_warmup": 1 if quick else 3,
        "torch_compile": args.torch_compile,
        "stand_in": quick,
    }
    parts = plan(args)
    estimate = 20 + n_train / 150 + sum(p["estimate_s"] for p in parts)
    report = {
        "schema": SCHEMA,
        "quick": quick,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": {
            **{k: v for k, v in common.items() if k not in ("train_dir", "val_dir", "cache_prefix")},
            "png_size": png,
            "gray": args.gray,
            "configs": args.configs,
            "anchors": args.anchors,
            "budget_s": budget,
            "part_limit_s": part_limit,
            "data_dir": str(data_dir),
            "log_dir": str(log_dir),
            "jax_cache": args.jax_cache or None,
            "jax_cache_had_entries": bool(args.jax_cache) and any(Path(args.jax_cache).glob("*")),
        },
        "estimate_s": round(estimate),
        "parts": [],
    }

    def save():
        report["elapsed_s"] = round(time.perf_counter() - started, 1)
        report["summary"] = summarise(report["parts"])
        out_path.write_text(json.dumps(report, indent=2))

    print(
        f"estimate: about {estimate:.0f} s for {len(parts)} parts (budget {budget:.0f} s; parts that no longer "
        f"fit are skipped, in this order: {', '.join(p['name'] for p in parts)})",
        flush=True,
    )
    report["preflight"] = {
        "versions": versions(),
        "nvidia_smi": _nvidia_smi_list(),
        "cpus": os.cpu_count(),
        "tensorflow_blocked": args.block_tensorflow,
    }
    check = run_part(args, {"phase": "preflight", "name": "preflight"}, 120, env, log_dir)
    report["preflight"].update(check)
    print("preflight " + json.dumps(report["preflight"]), flush=True)
    save()

    processes = max(1, min(16, os.cpu_count() or 1))
    report["images"] = make_images(data_dir, n_train, n_val, png, args.gray, processes)
    print("images " + json.dumps(report["images"]), flush=True)
    save()

    for part in parts:
        left = deadline - time.perf_counter()
        if left < min(part["estimate_s"] * 0.6, part_limit):
            report["parts"].append({**part, "status": "skipped", "reason": f"{left:.0f} s left of the budget"})
            print(f"{part['name']}: skipped ({left:.0f} s left)", flush=True)
            save()
            continue
        spec = {**common, **part}
        record = run_part(args, spec, min(part_limit, left), env, log_dir)
        report["parts"].append({**part, **record})
        print(f"{part['name']}: " + json.dumps(record), flush=True)
        save()
    save()
    print("summary " + json.dumps(report["summary"], indent=1), flush=True)
    print(f"wrote {out_path} after {report['elapsed_s']:.0f} s", flush=True)
    return 0


def _nvidia_smi_list() -> str | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        return subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError) as error:
        return f"failed: {error}"


if __name__ == "__main__":
    sys.exit(main())

"""The RadImageNet augmentation on the CPU in tf.data against on the device in a compiled step: images/s.

    python benchmarks/device_augment.py [--images 1024] [--size 256] [--batch 32] [--channels 3] \
        [--backends tensorflow,jax]

Writes N synthetic PNGs, then times cached epochs (after one epoch that fills the cache) of
  tfdata_augment – make_dataset(augment="radimagenet"): the batch warped on the CPU by tf.data;
  tfdata_plain   – make_dataset(augment=None): what delivering the cached uint8 batches alone costs;
and, per Keras backend, the device path on the same uint8 batches held in memory:
  device_<backend> – per batch, random_transforms_np on the host, then ``warp`` inside a jitted step
                     (tf.function(jit_compile=True) on TensorFlow, jax.jit on JAX, eager on torch), which
                     reduces the warped batch to a number so that the whole warp is computed.
On a CPU-only machine the "device" is the CPU too: this measures the cost of the warp itself, not the
overlap a GPU gives (there the warp runs beside the host's batch delivery). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def device_rate(images: np.ndarray, batch: int, epochs: int) -> dict:
    """Images/s of host draws + the jitted warp over ``images`` (n, H, W, C) uint8, on this process's backend."""
    import keras

    from radtransfer.data.py_dataset.device_augment import random_transforms_np, warp

    backend = keras.backend.backend()
    params = "radimagenet"

    def step(x, t):
        return keras.ops.mean(keras.ops.cast(warp(x, t, params), "float32"))

    if backend == "tensorflow":
        import tensorflow as tf

        compiled = tf.function(step, jit_compile=True)
    elif backend == "jax":
        import jax

        compiled = jax.jit(step)
    else:
        compiled = step
    n, height, width, _ = images.shape
    rng = np.random.default_rng(726)
    batches = [images[i : i + batch] for i in range(0, n - batch + 1, batch)]
    float(compiled(batches[0], random_transforms_np(batch, height, width, params, rng)))  # compile
    start = time.perf_counter()
    count = 0
    for _ in range(epochs):
        for x in batches:
            float(compiled(x, random_transforms_np(len(x), height, width, params, rng)))  # waits for the result
            count += len(x)
    elapsed = time.perf_counter() - start
    transforms_start = time.perf_counter()
    for _ in range(epochs * len(batches)):
        random_transforms_np(batch, height, width, params, rng)
    host_s = time.perf_counter() - transforms_start
    return {"images_per_s": count / elapsed, "host_draws_images_per_s": count / max(host_s, 1e-9)}


def tfdata_rates(image_set, size, batch, epochs) -> tuple[dict, np.ndarray]:
    from radtransfer import data

    rates = {}
    images = None
    for name, augment in (("tfdata_plain", None), ("tfdata_augment", "radimagenet")):
        dataset = data.make_dataset(
            image_set, image_size=(size, size), batch_size=batch, augment=augment, seed=726, cache="memory"
        )
        first = [np.asarray(x) for x, _ in dataset]  # fills the cache
        if augment is None:
            images = np.concatenate(first)
        start = time.perf_counter()
        count = 0
        for _ in range(epochs):
            for x, _ in dataset:
                count += int(x.shape[0])
        rates[name] = count / (time.perf_counter() - start)
    return rates, images


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1024, help="fewer: the start of each epoch weighs")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=2, help="cached epochs timed")
    parser.add_argument("--channels", type=int, choices=(1, 3), default=3, help="1: grayscale PNGs (warped as one)")
    parser.add_argument("--backends", default="tensorflow", help="comma-separated Keras backends for the device path")
    parser.add_argument("--device-only", type=Path, default=None, help=argparse.SUPPRESS)  # a .npy of uint8 batches
    args = parser.parse_args(argv)

    if args.device_only is not None:  # the child process of another backend
        print("RESULT " + json.dumps(device_rate(np.load(args.device_only), args.batch, args.epochs)))
        return

    work = Path(tempfile.mkdtemp(prefix="rt_bench_augment_"))
    try:
        run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # the PNGs and a (n, size, size, 3) uint8 array


def run(args, work: Path) -> None:
    import pandas as pd
    import tensorflow as tf

    from radtransfer import data, datasets

    slices = 4
    manifest = datasets.synthetic_brain_mri(
        work,
        n_patients=max(args.images // slices, 2),
        slices_per_patient=slices,
        image_size=args.size,
        seed=0,
        bit_depth=8,
    )
    frame = pd.read_csv(manifest)
    frame["path"] = [str(work / p) for p in frame["path"]]
    if args.channels == 3:
        from PIL import Image

        for path in frame["path"]:
            Image.open(path).convert("RGB").save(path)
    image_set = data.from_csv(frame, image_col="path", label_col="label", patient_col="patient_id")
    results = {
        "images": len(image_set),
        "size": args.size,
        "batch": args.batch,
        "channels": args.channels,
        "epochs": args.epochs,
        "cpu_count": os.cpu_count(),
        "tensorflow": tf.__version__,
        "python": platform.python_version(),
    }
    rates, images = tfdata_rates(image_set, args.size, args.batch, args.epochs)
    results.update({f"{k}_images_per_s": v for k, v in rates.items()})
    if args.channels == 1:
        images = images[..., :1]  # the pipeline repeats gray to three channels after the warp; warp one here too
    path = work / "batches.npy"
    np.save(path, images)
    for backend in args.backends.split(","):
        if backend == os.environ.get("KERAS_BACKEND", "tensorflow"):
            result = device_rate(images, args.batch, args.epochs)
        else:
            env = dict(os.environ, KERAS_BACKEND=backend, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"))
            command = [sys.executable, __file__, "--device-only", str(path), "--batch", str(args.batch)]
            command += ["--epochs", str(args.epochs)]
            done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
            if done.returncode != 0:
                results[f"device_{backend}_error"] = done.stderr.strip().splitlines()[-1:]
                continue
            line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
            result = json.loads(line[len("RESULT ") :])
        results[f"device_{backend}_images_per_s"] = result["images_per_s"]
        results["host_draws_images_per_s"] = result["host_draws_images_per_s"]
    print(json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in results.items()}))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()

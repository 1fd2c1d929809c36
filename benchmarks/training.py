"""Training throughput of the four backbones on any Keras backend, with synthetic in-memory data.

    KERAS_BACKEND=jax python benchmarks/training.py --size 256 --batch 32 --out docs/bench/training_jax.json
    KERAS_BACKEND=tensorflow python benchmarks/training.py --xla off on
    KERAS_BACKEND=torch python benchmarks/training.py --backbones resnet50

For each backbone × precision (float32, and "mixed": bfloat16 on GPUs of compute capability ≥ 8.0, float16
with loss scaling on 7.x, bfloat16 on a CPU) × XLA setting (TensorFlow: off and on; JAX: always on; PyTorch:
off) × strategy (``--strategies``, default unfreeze_all), in a fresh process: build the model (random
weights), apply the strategy (BatchNorm statistics frozen, the grid's default), compile with Adam, and time
``--steps`` training steps on random uint8 images after ``--warmup`` steps. Reports images/s, peak device
memory (GPU allocator peak, or the process's peak RSS on a CPU), and the model's FLOPs per image (forward
multiply-adds × 2, counted from the layers; a training step is about 3× that), so that images/s reads as a
fraction of the device's peak (``--peak-tflops``). Needs only Keras, NumPy, radtransfer and the backend:
no TensorFlow on JAX or PyTorch.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
BACKBONES = ("densenet121", "resnet50", "inception_v3", "inception_resnet_v2")


def forward_flops(model) -> int:
    """Multiply-adds × 2 of one image's forward pass through convolutions and dense layers."""
    from radtransfer.utils.seeding import walk_layers

    total = 0
    for layer in walk_layers(model):
        kind = type(layer).__name__
        if kind not in ("Conv2D", "DepthwiseConv2D", "Dense"):
            continue
        kernel = [int(v) for v in layer.kernel.shape]
        if kind == "Dense":
            total += 2 * kernel[0] * kernel[1]
            continue
        out = layer.output.shape
        per_pixel = kernel[0] * kernel[1] * kernel[2] * (kernel[3] if kind == "Conv2D" else 1)
        total += 2 * per_pixel * int(out[1]) * int(out[2])
    return total


def peak_memory() -> tuple[int, str]:
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            if tf.config.list_physical_devices("GPU"):
                return int(tf.config.experimental.get_memory_info("GPU:0")["peak"]), "gpu allocator peak"
        elif backend == "jax":
            import jax

            device = jax.devices()[0]
            if device.platform == "gpu":
                return int(device.memory_stats()["peak_bytes_in_use"]), "gpu allocator peak"
        elif backend == "torch":
            import torch

            if torch.cuda.is_available():
                return int(torch.cuda.max_memory_allocated()), "gpu allocator peak"
    except Exception:  # a backend without memory statistics: fall back to the process's RSS
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "process peak RSS (CPU)"


def measure(backbone: str, precision: str, xla: bool, args, strategy: str = "unfreeze_all") -> dict:
    import keras
    import numpy as np

    import radtransfer as rt
    from radtransfer import backend

    capability = backend.gpu_compute_capability()
    if precision == "mixed":
        resolved = rt.training.resolve_precision("auto", capability=capability) if capability else "mixed_bfloat16"
        resolved = "mixed_bfloat16" if resolved == "float32" else resolved
    else:
        resolved = "float32"
    keras.mixed_precision.set_global_policy(resolved)
    size = args.size
    model = rt.build_model(backbone, weights=None, num_classes=2, input_shape=(size, size, 3))
    rt.apply_strategy(model, strategy, bn="frozen")
    optimizer = keras.optimizers.Adam(1e-4)
    if resolved == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    model.compile(optimizer=optimizer, loss="categorical_crossentropy", jit_compile=xla)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.batch, size, size, 3)).astype(np.uint8)
    labels = np.eye(2, dtype=np.float32)[rng.integers(0, 2, args.batch)]
    for _ in range(args.warmup):
        model.train_on_batch(images, labels)
    start = time.perf_counter()
    for _ in range(args.steps):
        loss = model.train_on_batch(images, labels)
    keras.ops.convert_to_numpy(loss)  # wait for the device
    seconds = time.perf_counter() - start
    flops = forward_flops(model)
    rate = args.steps * args.batch / seconds
    peak, memory_kind = peak_memory()
    result = {
        "backend": backend.name(),
        "backbone": backbone,
        "strategy": strategy,
        "precision": resolved,
        "jit_compile": bool(model.jit_compile),
        "image_size": size,
        "batch": args.batch,
        "steps": args.steps,
        "images_per_s": rate,
        "forward_gflops_per_image": flops / 1e9,
        "train_tflops_per_s": 3 * flops * rate / 1e12,
        "peak_memory_bytes": peak,
        "memory": memory_kind,
        "gpu_compute_capability": list(capability) if capability else None,
    }
    if args.peak_tflops:
        result["fraction_of_peak"] = result["train_tflops_per_s"] / args.peak_tflops
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=BACKBONES)
    parser.add_argument("--precisions", nargs="+", default=["float32", "mixed"], choices=("float32", "mixed"))
    parser.add_argument(
        "--xla",
        nargs="+",
        default=None,
        choices=("off", "on"),
        help="TensorFlow only (default: off and on); JAX is always XLA, PyTorch never",
    )
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        help="the device's peak TFLOP/s in the measured precision, to report a fraction of it",
    )
    parser.add_argument("--out", default=None)
    parser.add_argument(
        "--strategies", nargs="+", default=["unfreeze_all"], choices=("unfreeze_all", "unfreeze_top10", "freeze_all")
    )
    parser.add_argument("--one", nargs=4, metavar=("BACKBONE", "PRECISION", "XLA", "STRATEGY"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        backbone, precision, xla, strategy = args.one
        print("RESULT " + json.dumps(measure(backbone, precision, xla == "on", args, strategy)), flush=True)
        return 0
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    xla_settings = {"tensorflow": args.xla or ["off", "on"], "jax": ["on"], "torch": ["off"]}[backend]
    results = []
    configurations = [
        (b, p, x, s) for b in args.backbones for s in args.strategies for p in args.precisions for x in xla_settings
    ]
    for backbone, precision, xla, strategy in configurations:
        command = [
            sys.executable,
            __file__,
            "--one",
            backbone,
            precision,
            xla,
            strategy,
            "--size",
            str(args.size),
            "--batch",
            str(args.batch),
            "--steps",
            str(args.steps),
            "--warmup",
            str(args.warmup),
        ]
        if args.peak_tflops:
            command += ["--peak-tflops", str(args.peak_tflops)]
        done = subprocess.run(command, capture_output=True, text=True)
        line = next((text for text in done.stdout.splitlines() if text.startswith("RESULT ")), None)
        if line is None:
            result = {
                "backend": backend,
                "backbone": backbone,
                "strategy": strategy,
                "precision": precision,
                "xla": xla,
                "error": (done.stderr.strip().splitlines() or ["?"])[-1],
            }
        else:
            result = json.loads(line[len("RESULT ") :])
        results.append(result)
        print(json.dumps(result), flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

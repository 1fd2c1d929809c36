"""A 100,000-image set read, cached and shuffled: peak memory against the cache's own size, and the first
epoch's speed against the decode floor.

    python benchmarks/data_pipeline.py --n 100000 --size 128 --out docs/bench/data_pipeline.json

Writes N small synthetic PNGs (32×32 grayscale, two classes listed class by class, 22.5% positive, as
RSNA pneumonia), then in a fresh process per measurement:
  floor   – read + decode only (no resize, no cache);
  floor_resize – read + decode + resize (no cache, no shuffle): the fastest a first epoch can go;
  precheck – check_files over every file (before the first epoch);
  epoch0  – make_dataset(cache="auto", shuffle=True): read, decode, resize, cache, shuffle, batch;
  epoch1  – the second epoch, from the cache;
plus peak resident memory above the process's baseline, against the cache size n·h·w·channels, and the
share of batches with no positive image.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def write_files(root: Path, n: int, positive_share: float = 0.225) -> None:
    import numpy as np
    from PIL import Image

    if (root / "done").exists():
        return
    rng = np.random.default_rng(0)
    n_pos = int(round(n * positive_share))
    for name, count in (("0_negative", n - n_pos), ("1_positive", n_pos)):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(count):
            level = 200 if name.startswith("1") else 60
            pixels = np.clip(rng.normal(level, 30, (32, 32)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{k:06d}.png", compress_level=1)
    (root / "done").write_text("ok")


def rss_bytes() -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def peak_bytes() -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def measure(kind: str, root: str, size: int, batch: int) -> dict:
    import numpy as np
    import tensorflow as tf

    from radtransfer import data
    from radtransfer.data.tf_data.decode import decode_image_tf
    from radtransfer.data.tf_data.stream import stream_of

    image_set = data.from_directory(root)
    tf.constant(0)  # start the runtime before the baseline
    baseline = rss_bytes()
    result = {"kind": kind, "n": len(image_set), "image_size": size}
    start = time.perf_counter()
    if kind in ("floor", "floor_resize"):
        from radtransfer.data.decode import ReadSettings
        from radtransfer.data.tf_data.decode import resize_image

        settings = ReadSettings((size, size))

        def read(path):
            image = decode_image_tf(tf.io.read_file(path), "range", 1)
            return resize_image(image, settings) if kind == "floor_resize" else image

        paths = tf.data.Dataset.from_tensor_slices(np.asarray(image_set.paths, dtype=str))
        decoded = paths.map(read, num_parallel_calls=tf.data.AUTOTUNE).batch(batch).prefetch(tf.data.AUTOTUNE)
        for _ in decoded:
            pass
        result["seconds"] = time.perf_counter() - start
    elif kind == "precheck":
        bad, _, _ = data.check_files(image_set.paths)
        result["seconds"] = time.perf_counter() - start
        result["bad"] = len(bad)
    else:
        dataset = data.make_dataset(image_set, image_size=(size, size), batch_size=batch, seed=0, on_bad="raise")
        stream = stream_of(dataset)
        result["precheck_seconds"] = time.perf_counter() - start
        result["cache"] = {"mode": stream.cache.mode, "reason": stream.cache.reason, "bytes": stream.cache.nbytes}
        for epoch in range(2):
            start = time.perf_counter()
            empty = batches = 0
            for _, labels in stream.epoch(epoch, seed=0):
                batches += 1
                empty += int(labels.numpy()[:, 1].sum() == 0)
            result[f"epoch{epoch}_seconds"] = time.perf_counter() - start
            result[f"epoch{epoch}_batches_without_positive"] = f"{empty}/{batches}"
    result["peak_rss_above_baseline_bytes"] = peak_bytes() - baseline
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--root", default="/tmp/radtransfer-bench-100k")
    parser.add_argument("--out", default="docs/bench/data_pipeline.json")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    root = Path(args.root) / str(args.n)
    if args.measure:
        print(json.dumps(measure(args.measure, str(root), args.size, args.batch)))
        return 0
    start = time.perf_counter()
    write_files(root, args.n)
    print(f"files ready in {time.perf_counter() - start:.0f} s", flush=True)
    results = {}
    for kind in ("floor", "floor_resize", "precheck", "pipeline"):
        done = subprocess.run(
            [
                sys.executable,
                __file__,
                "--n",
                str(args.n),
                "--size",
                str(args.size),
                "--batch",
                str(args.batch),
                "--root",
                args.root,
                "--measure",
                kind,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        results[kind] = json.loads(done.stdout.strip().splitlines()[-1])
        print(json.dumps(results[kind]), flush=True)
    n = args.n
    pipeline = results["pipeline"]
    summary = {
        "n": n,
        "image_size": args.size,
        "cores": os.cpu_count(),
        "decode_floor_images_per_s": n / results["floor"]["seconds"],
        "precheck_images_per_s": n / results["precheck"]["seconds"],
        "epoch0_images_per_s": n / pipeline["epoch0_seconds"],
        "epoch1_images_per_s": n / pipeline["epoch1_seconds"],
        "decode_resize_floor_images_per_s": n / results["floor_resize"]["seconds"],
        "epoch0_vs_floor": results["floor"]["seconds"] / pipeline["epoch0_seconds"],
        "epoch0_vs_decode_resize_floor": results["floor_resize"]["seconds"] / pipeline["epoch0_seconds"],
        "cache": pipeline["cache"],
        "peak_rss_above_baseline_bytes": pipeline["peak_rss_above_baseline_bytes"],
        "peak_over_cache_size": pipeline["peak_rss_above_baseline_bytes"] / pipeline["cache"]["bytes"],
        "batches_without_positive": [
            pipeline["epoch0_batches_without_positive"],
            pipeline["epoch1_batches_without_positive"],
        ],
        "raw": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "raw"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

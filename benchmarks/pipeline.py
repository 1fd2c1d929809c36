"""Input pipeline speed and cache memory: make_dataset against the reference loader, same run.

    python benchmarks/pipeline.py [--images 500] [--size 512] [--out docs/performance.md]

Generates N synthetic 512×512 8-bit PNGs, then measures images/s of
- the reference loader: tf-keras ImageDataGenerator.flow_from_dataframe with rescale=1/255,
  preprocessing_function=imagenet_utils.preprocess_input and the reference augmentation;
- make_dataset(augment="radimagenet"): the first epoch (decode, resize, cache) and cached epochs;
- decode + resize alone (no cache, no augmentation): the floor of a first epoch;
and the bytes the cache holds (measured as a file cache, which stores the same tensors as the in-memory
one), against the uint8 RGB bytes of the resized images.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np


def images_per_second(iterable, count_of):
    start = time.perf_counter()
    n = 0
    for batch in iterable:
        n += count_of(batch)
    return n / (time.perf_counter() - start), n


def main(argv=None):
    args = _parser().parse_args(argv)

    import tensorflow as tf

    work, frame, image_set = write_images(args)
    results = {
        "color": args.color,
        "images": len(image_set),
        "source_size": args.size,
        "target_size": args.target,
        "batch": args.batch,
        "cpu_count": os.cpu_count(),
        "tensorflow": tf.__version__,
        "python": platform.python_version(),
    }
    results["reference_images_per_s"] = reference_rate(frame, args)
    results.update(time_make_dataset(image_set, work, args))
    results["first_epoch_speedup"] = results["first_epoch_images_per_s"] / results["reference_images_per_s"]
    results["cached_epoch_speedup"] = results["cached_epoch_images_per_s"] / results["reference_images_per_s"]
    results["cache_memory_ratio"] = results["cache_bytes"] / results["resized_uint8_bytes"]

    print(json.dumps(results, indent=2))
    print_summary(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--target", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--cached-epochs", type=int, default=3)
    parser.add_argument(
        "--color",
        choices=("gray", "rgb"),
        default="gray",
        help="gray: 8-bit grayscale PNGs (as most medical images); rgb: the same saved as RGB",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    parser.add_argument("--first-epochs", type=int, default=3, help="fresh pipelines timed for the first epoch")
    return parser


def write_images(args) -> tuple:
    """(the temporary folder, the manifest as a DataFrame of absolute paths, its ImageSet): ``--images``
    synthetic brain MRI slices of ``--size`` px, saved as RGB with ``--color rgb``."""
    import pandas as pd

    from radtransfer import data, datasets

    work = Path(tempfile.mkdtemp(prefix="rt_bench_"))
    slices = 4
    manifest = datasets.synthetic_brain_mri(
        work,
        n_patients=max(args.images // slices, 4),
        slices_per_patient=slices,
        image_size=args.size,
        seed=0,
        bit_depth=8,
    )
    frame = pd.read_csv(manifest)
    frame["path"] = [str(work / p) for p in frame["path"]]
    if args.color == "rgb":
        from PIL import Image

        for path in frame["path"]:
            Image.open(path).convert("RGB").save(path)
    image_set = data.from_csv(frame, image_col="path", label_col="label", patient_col="patient_id")
    return work, frame, image_set


def reference_rate(frame, args) -> float:
    """images/s of the reference loader (tf-keras ImageDataGenerator.flow_from_dataframe), one pass."""
    from tf_keras.applications import imagenet_utils
    from tf_keras.preprocessing.image import ImageDataGenerator

    generator = ImageDataGenerator(
        rescale=1 / 255,
        preprocessing_function=imagenet_utils.preprocess_input,
        rotation_range=10,
        width_shift_range=0.1,
        height_shift_range=0.1,
        shear_range=0.1,
        zoom_range=0.1,
        horizontal_flip=True,
        fill_mode="nearest",
    )
    flow = generator.flow_from_dataframe(
        frame,
        x_col="path",
        y_col="label",
        target_size=(args.target, args.target),
        batch_size=args.batch,
        class_mode="categorical",
        shuffle=True,
        seed=726,
    )
    rate, _ = images_per_second((flow[i] for i in range(len(flow))), lambda b: len(b[0]))
    return rate


def time_make_dataset(image_set, work: Path, args) -> dict:
    """make_dataset's figures: decode + resize alone, the first epoch (median of fresh pipelines), cached epochs,
    and the bytes its cache holds against the resized images as uint8 RGB."""
    from radtransfer import data

    size = (args.target, args.target)
    results = {}
    # Decode + resize alone.
    floor = data.make_dataset(image_set, image_size=size, batch_size=args.batch, shuffle=False, cache=False)
    results["decode_resize_images_per_s"], _ = images_per_second(floor, lambda b: int(b[0].shape[0]))

    def pipeline(cache=True):
        return data.make_dataset(
            image_set, image_size=size, batch_size=args.batch, augment="radimagenet", seed=726, cache=cache
        )

    # First epoch (read, decode, resize, fill the cache, augment): median of fresh pipelines.
    first_rates = []
    for _ in range(args.first_epochs):
        dataset = pipeline()
        first_rates.append(images_per_second(dataset, lambda b: int(b[0].shape[0]))[0])
    first_rate = float(np.median(first_rates))
    # What the cache holds: a file cache stores the same tensors as the in-memory one, byte for byte.
    cache_prefix = work / "tfdata_cache"
    for _ in pipeline(str(cache_prefix)):
        pass
    cache_bytes = sum(f.stat().st_size for f in work.glob("tfdata_cache*"))
    # Cached epochs: the last first-epoch pipeline, its memory cache filled.
    cached_rates = [images_per_second(dataset, lambda b: int(b[0].shape[0]))[0] for _ in range(args.cached_epochs)]
    uint8_bytes = len(image_set) * args.target * args.target * 3  # the resized images as uint8 RGB
    results.update(
        {
            "first_epoch_images_per_s": first_rate,
            "cached_epoch_images_per_s": float(np.mean(cached_rates)),
            "first_epoch_runs_images_per_s": first_rates,
            "cache_bytes": int(cache_bytes),
            "resized_uint8_bytes": int(uint8_bytes),
        }
    )
    return results


def print_summary(results: dict) -> None:
    """The figures against their targets, one line each."""
    reference_rate, first_rate = results["reference_images_per_s"], results["first_epoch_images_per_s"]
    cache_bytes, uint8_bytes = results["cache_bytes"], results["resized_uint8_bytes"]
    print(f"\nreference loader           {reference_rate:8.1f} images/s")
    print(f"decode + resize (floor)    {results['decode_resize_images_per_s']:8.1f} images/s")
    print(
        f"make_dataset, first epoch  {first_rate:8.1f} images/s  "
        f"({results['first_epoch_speedup']:.1f}× reference; target ≥ 2.5×)"
    )
    print(
        f"make_dataset, cached       {results['cached_epoch_images_per_s']:8.1f} images/s  "
        f"({results['cached_epoch_speedup']:.1f}× reference; target ≥ 8×)"
    )
    print(
        f"cache memory               {cache_bytes / 2**20:8.1f} MiB for {uint8_bytes / 2**20:.1f} MiB of uint8 images "
        f"({results['cache_memory_ratio']:.2f}×; target ≤ 1.1×)"
    )


if __name__ == "__main__":
    sys.exit(main())

"""make_dataset against the Keras 3 idiom and the decode-and-resize floor: CPU ratios measured in one process run.

    python benchmarks/keras_idiom.py [--images 500] [--repeats 5] [--json benchmarks/results_cpu_ratios.json]

The images: synthetic 8-bit 512×512 PNGs of the brain-MRI phantom (``radtransfer.datasets.synthetic_brain_mri``) in
class folders (four classes), once as grayscale files and once the same pixels saved as RGB. Everything is resized to
256×256 and batched by 32.

Three pipelines, each built afresh (a new dataset and a new, empty cache) in every repetition:

- **The Keras 3 idiom**, as the Keras guides write it ("Image classification from scratch", the tf.data performance
  guide's ``.cache()``)::

      ds = keras.utils.image_dataset_from_directory(root, image_size=(256, 256), batch_size=32,
                                                    interpolation="bilinear", shuffle=True, seed=726)
      ds = ds.cache()
      augment = [keras.layers.RandomRotation(10 / 360, fill_mode="nearest"),
                 keras.layers.RandomTranslation(0.1, 0.1, fill_mode="nearest"),
                 keras.layers.RandomZoom(0.1, fill_mode="nearest"),
                 keras.layers.RandomFlip("horizontal")]
      ds = ds.map(lambda x, y: (apply_each(augment, x), y), num_parallel_calls=tf.data.AUTOTUNE)
      ds = ds.prefetch(tf.data.AUTOTUNE)

  (float32 RGB batches, labels as integers, bilinear resize without antialiasing: the function's defaults apart
  from the arguments shown; the cache holds the float32 batches in the first epoch's order).
- **make_dataset**: ``make_dataset(data.from_directory(root), image_size=(256, 256), batch_size=32,
  augment="radimagenet", shuffle=True, cache="memory", seed=726)`` (uint8 RGB batches, one-hot labels; the
  radimagenet augmentation also shears by up to 0.1°, which the idiom has no layer for). Its header check of every
  file runs when the dataset is made and is timed separately (``make_s``), as is the idiom's file listing.
- **The floor**: decode + resize alone, as ``benchmarks/pipeline.py`` defines it: ``make_dataset(...,
  shuffle=False, cache=False)`` with no augmentation, one pass.

"First epoch" is one full pass over a fresh pipeline (read, decode, resize, fill the cache, augment); "cached" the
mean of ``--cached-epochs`` further passes. Besides images/s (wall time, what the targets are about) it records the
CPU time the process spent per image, which depends much less on what else the shared machine runs. The three run
interleaved, in a rotating order, ``--repeats`` times per colour, after one warm-up round that is not counted (it
reads the files into the page cache and compiles the augmentation); ratios are taken within each repetition and the
median is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

SEED = 726


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def timed_pass(dataset) -> tuple[float, int, float]:
    """Wall seconds for one full pass over ``dataset``, the number of images it gave, and the CPU seconds this
    process spent meanwhile (all its threads: less sensitive than wall time to what else runs on the machine)."""
    start, cpu = time.perf_counter(), time.process_time()
    n = 0
    for images, _ in dataset:
        n += int(images.shape[0])
    return time.perf_counter() - start, n, time.process_time() - cpu


def make_images(root: Path, n_images: int, size: int) -> dict[str, Path]:
    """Writes the grayscale set and an RGB copy (unless ``root`` has them); returns {"gray": folder, "rgb": folder}."""
    from PIL import Image

    from radtransfer import datasets

    done = root / "complete"
    if done.exists():
        return {"gray": root / "gray_src" / "images", "rgb": root / "rgb"}

    datasets.synthetic_brain_mri(
        root / "gray_src", n_patients=max(n_images // 4, 4), slices_per_patient=4, image_size=size, seed=0, bit_depth=8
    )
    gray = root / "gray_src" / "images"
    rgb = root / "rgb"
    for path in sorted(gray.rglob("*.png")):
        target = rgb / path.relative_to(gray)
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.open(path).convert("RGB").save(target)
    done.write_text(f"{n_images} {size}\n")
    return {"gray": gray, "rgb": rgb}


def idiom_dataset(root: Path, size: int, batch: int):
    import keras
    import tensorflow as tf

    dataset = keras.utils.image_dataset_from_directory(
        str(root),
        image_size=(size, size),
        batch_size=batch,
        interpolation="bilinear",
        shuffle=True,
        seed=SEED,
        verbose=False,
    )
    dataset = dataset.cache()
    layers = [
        keras.layers.RandomRotation(10 / 360, fill_mode="nearest"),
        keras.layers.RandomTranslation(0.1, 0.1, fill_mode="nearest"),
        keras.layers.RandomZoom(0.1, fill_mode="nearest"),
        keras.layers.RandomFlip("horizontal"),
    ]

    def augment(images):
        for layer in layers:
            images = layer(images, training=True)
        return images

    dataset = dataset.map(lambda x, y: (augment(x), y), num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def measure(kind: str, root: Path, image_set_of, size: int, batch: int, cached_epochs: int) -> dict:
    from radtransfer import data

    start = time.perf_counter()
    if kind == "idiom":
        dataset = idiom_dataset(root, size, batch)
    elif kind == "make_dataset":
        dataset = data.make_dataset(
            image_set_of(root),
            image_size=(size, size),
            batch_size=batch,
            augment="radimagenet",
            shuffle=True,
            cache="memory",
            seed=SEED,
        )
    else:  # the floor
        dataset = data.make_dataset(
            image_set_of(root), image_size=(size, size), batch_size=batch, shuffle=False, cache=False
        )
    make_s = time.perf_counter() - start
    first_s, n, first_cpu = timed_pass(dataset)
    result = {
        "load": load_average(),
        "images": n,
        "make_s": make_s,
        "first_s": first_s,
        "first": n / first_s,
        "first_cpu_ms_per_image": 1000 * first_cpu / n,
    }
    if kind != "floor":
        passes = [timed_pass(dataset) for _ in range(cached_epochs)]
        result["cached_s"] = [p[0] for p in passes]
        result["cached"] = n / float(np.mean(result["cached_s"]))
        result["cached_cpu_ms_per_image"] = 1000 * float(np.mean([p[2] for p in passes])) / n
    del dataset
    return result


KINDS = ("idiom", "make_dataset", "floor")


def main(argv=None):
    args = _parser().parse_args(argv)

    import keras
    import tensorflow as tf

    from radtransfer import data

    work = args.data or Path(tempfile.mkdtemp(prefix="rt_idiom_"))
    try:
        roots = make_images(work, args.images, args.size)
        sets = {}

        def image_set_of(root):
            if root not in sets:
                sets[root] = data.from_directory(root, patient_ids=None)
            return sets[root]

        results = {
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "load_start": load_average(),
            "cpu_count": os.cpu_count(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "python": platform.python_version(),
            "colors": {},
        }
        for color in args.colors:
            runs = measure_rounds(color, roots[color], image_set_of, args)
            ratios = ratios_of(runs)
            results["colors"][color] = {"runs": runs, "ratios": ratios, "summary": summary_of(runs, ratios)}
        results["load_end"] = load_average()
    finally:
        if args.data is None:
            shutil.rmtree(work, ignore_errors=True)

    print_summary(results, args.repeats)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--size", type=int, default=512, help="side of the synthetic PNGs")
    parser.add_argument("--target", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5, help="counted rounds per colour, after one warm-up round")
    parser.add_argument("--cached-epochs", type=int, default=3)
    parser.add_argument("--colors", nargs="+", choices=("gray", "rgb"), default=["gray", "rgb"])
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--data", type=Path, default=None, help="keep the images here and reuse them (default: temporary)"
    )
    return parser


def measure_rounds(color: str, root: Path, image_set_of, args) -> dict:
    """The three pipelines, interleaved in a rotating order, ``--repeats`` counted rounds after one warm-up round;
    {kind: [run, ...]} of the counted rounds."""
    runs = {kind: [] for kind in KINDS}
    for repeat in range(args.repeats + 1):
        order = KINDS[repeat % 3 :] + KINDS[: repeat % 3]  # rotate who goes first
        for kind in order:
            run = measure(kind, root, image_set_of, args.target, args.batch, args.cached_epochs)
            if repeat > 0:
                runs[kind].append(run)
            print(f"{color:4s} round {repeat} {kind:12s} {json.dumps(run)}", flush=True)
    return runs


def ratios_of(runs: dict) -> dict:
    """make_dataset against the idiom and the floor, one ratio per counted round (wall and CPU time)."""
    return {
        "first_vs_idiom_first": [m["first"] / i["first"] for m, i in zip(runs["make_dataset"], runs["idiom"])],
        "first_vs_floor": [m["first"] / f["first"] for m, f in zip(runs["make_dataset"], runs["floor"])],
        "cached_vs_idiom_cached": [m["cached"] / i["cached"] for m, i in zip(runs["make_dataset"], runs["idiom"])],
        "cpu_first_vs_idiom_first": [
            i["first_cpu_ms_per_image"] / m["first_cpu_ms_per_image"]
            for m, i in zip(runs["make_dataset"], runs["idiom"])
        ],
        "cpu_first_vs_floor": [
            f["first_cpu_ms_per_image"] / m["first_cpu_ms_per_image"]
            for m, f in zip(runs["make_dataset"], runs["floor"])
        ],
        "cpu_cached_vs_idiom_cached": [
            i["cached_cpu_ms_per_image"] / m["cached_cpu_ms_per_image"]
            for m, i in zip(runs["make_dataset"], runs["idiom"])
        ],
        "first_with_make_vs_idiom": [
            (i["make_s"] + i["first_s"]) / (m["make_s"] + m["first_s"])
            for m, i in zip(runs["make_dataset"], runs["idiom"])
        ],
    }


def summary_of(runs: dict, ratios: dict) -> dict:
    """Medians of each kind's figures and of each ratio, and each ratio's range."""
    summary = {
        f"{kind}_{what}": float(np.median([r[what] for r in runs[kind]]))
        for kind in KINDS
        for what in ("first", "cached", "make_s", "first_cpu_ms_per_image", "cached_cpu_ms_per_image")
        if what in runs[kind][0]
    }
    summary.update({name: float(np.median(values)) for name, values in ratios.items()})
    summary.update({f"{name}_range": [min(values), max(values)] for name, values in ratios.items()})
    return summary


def print_summary(results: dict, repeats: int) -> None:
    """Per colour: images/s, CPU ms per image and the ratios against their targets; the load average."""
    for color, entry in results["colors"].items():
        s = entry["summary"]
        print(f"\n{color}: images/s (median of {repeats}), ratios per round (median, min–max)")
        print(f"  Keras idiom    first {s['idiom_first']:8.1f}   cached {s['idiom_cached']:8.1f}")
        print(f"  floor          first {s['floor_first']:8.1f}")
        print(f"  make_dataset   first {s['make_dataset_first']:8.1f}   cached {s['make_dataset_cached']:8.1f}")
        print(
            "  CPU ms/image (first / cached): idiom {:.2f} / {:.2f}, floor {:.2f}, make_dataset {:.2f} / {:.2f}".format(
                s["idiom_first_cpu_ms_per_image"],
                s["idiom_cached_cpu_ms_per_image"],
                s["floor_first_cpu_ms_per_image"],
                s["make_dataset_first_cpu_ms_per_image"],
                s["make_dataset_cached_cpu_ms_per_image"],
            )
        )
        for name, target in (
            ("first_vs_idiom_first", "≥ 3.5"),
            ("first_vs_floor", "≥ 0.9"),
            ("cached_vs_idiom_cached", "≥ 10"),
            ("first_with_make_vs_idiom", "(header check included)"),
            ("cpu_first_vs_idiom_first", "(CPU time per image)"),
            ("cpu_first_vs_floor", "(CPU time per image)"),
            ("cpu_cached_vs_idiom_cached", "(CPU time per image)"),
        ):
            low, high = s[f"{name}_range"]
            print(f"  {name:26s} {s[name]:6.2f}×  ({low:.2f}–{high:.2f})  target {target}")
    print(f"load average: start {results['load_start']}, end {results['load_end']}")


if __name__ == "__main__":
    sys.exit(main())

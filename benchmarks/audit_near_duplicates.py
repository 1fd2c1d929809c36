"""The data audit on synthetic brain MRI: how well near duplicates separate from different patients' slices, and
the audit's throughput.

    python benchmarks/audit_near_duplicates.py separation            # thumbnail correlations, per transform
    python benchmarks/audit_near_duplicates.py throughput --images 100000 --size 256 [--keep DIR] [--plant N]

``separation`` writes 240 slices of 60 patients (96 and 256 px), and for one slice its altered copies; it prints
the largest correlation between different patients' slices (as stored, and in any of the 8 orientations the audit
compares), each copy's hash distance and correlations (in the orientation that matches best), and whether the
audit of a clean patient split finds anything. ``throughput`` writes (or reuses, with --keep) a folder of N images
and times ``data.audit`` on it, split by patient; ``--plant N`` first adds N altered copies of training images
(JPEG, resized, grey levels changed, flipped, rotated; crops are not found and not planted) to the test part and
counts how many the audit finds. Results go to benchmarks/results_audit.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

import radtransfer as rt
from radtransfer import data
from radtransfer.data.audit import (
    CONFIRM_CORRELATION,
    NEAR_CORRELATION,
    NEAR_DISTANCE,
    ORIENTATIONS,
    THUMB,
    _read,
    full_size_correlation,
    oriented,
)

RESULTS = Path(__file__).with_name("results_audit.json")


def _save(key, value):
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[key] = value
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


def _alterations(path, folder):
    image = Image.open(path).convert("L")
    pixels = np.asarray(image, dtype=np.float32)
    size = image.width
    out = {}
    for quality in (50, 75):
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality)
        out[f"jpeg q{quality}"] = Image.open(buffer)
    for factor in (0.5, 0.8, 2.0):
        out[f"resized {factor}x"] = image.resize((int(size * factor),) * 2, Image.Resampling.BILINEAR)
    out["brightness +12, contrast 1.1x"] = Image.fromarray(np.clip(pixels * 1.1 + 12, 0, 255).astype(np.uint8))
    out["gamma 0.8"] = Image.fromarray((255 * (pixels / 255) ** 0.8).astype(np.uint8))
    grey = np.asarray(image)
    for turn in range(1, len(ORIENTATIONS)):
        out[ORIENTATIONS[turn]] = Image.fromarray(np.ascontiguousarray(oriented(grey, turn)))
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(oriented(grey, 5))).save(buffer, "JPEG", quality=75)
    out["rotated 90° counterclockwise, jpeg q75"] = Image.open(buffer)
    out["rotated 10° (not found)"] = image.rotate(10, resample=Image.Resampling.BILINEAR)
    for margin in (0.02, 0.05):
        cut = int(round(size * margin))
        out[f"cropped {margin:.0%} each side"] = image.crop((cut, cut, size - cut, size - cut))
    files = {}
    folder.mkdir(parents=True, exist_ok=True)
    for name, altered in out.items():
        stem = name.replace(" ", "_").replace("%", "pc").replace("°", "deg")
        file = folder / ("".join(c for c in stem if c.isalnum() or c in "_.") + ".png")
        altered.save(file)
        files[name] = file
    return files


def separation():
    results = {}
    for size in (96, 256):
        root = Path(tempfile.mkdtemp())
        rt.datasets.synthetic_brain_mri(root, n_patients=60, slices_per_patient=4, image_size=size, seed=1, bit_depth=8)
        image_set = data.from_csv(root / "manifest.csv", image_col="path", label_col="label", patient_col="patient_id")
        facts = [_read(p) for p in image_set.paths]
        hashes = np.array([f[1] for f in facts], dtype=np.uint64)  # (n, 8): each orientation's hash
        vectors = np.stack([values * np.float32(scale) for values, scale in (f[2] for f in facts)])
        patients = np.array(image_set.patient_ids)
        different = patients[:, None] != patients[None, :]
        turned = vectors.reshape(-1, THUMB, THUMB)
        correlations = np.stack([vectors @ oriented(turned, t).reshape(len(vectors), -1).T for t in range(8)])
        bits = np.stack([np.bitwise_count(hashes[:, None, 0] ^ hashes[None, :, t]) for t in range(8)])
        row = {
            "different patients: largest correlation": round(float(correlations[0][different].max()), 4),
            "different patients: largest correlation, any orientation": round(
                float(correlations.max(axis=0)[different].max()), 4
            ),
            f"different patients: pairs within {NEAR_DISTANCE} bits": int(
                (bits[0][different] <= NEAR_DISTANCE).sum() // 2
            ),
            f"different patients: pairs within {NEAR_DISTANCE} bits, any orientation": int(
                np.triu(bits.min(axis=0) <= NEAR_DISTANCE, 1)[different].sum()
            ),
            "different patients: pairs": int(different.sum() // 2),
        }
        source = 5
        for name, file in _alterations(image_set.paths[source], root).items():
            _, phash, (values, scale), _ = _read(str(file))
            vector = values * np.float32(scale)
            distances = [int(np.bitwise_count(phash[0] ^ hashes[source, t])) for t in range(8)]
            thumbs = [float(vector @ correlations_of(vectors[source], t)) for t in range(8)]
            turn = int(np.argmax([c if d <= NEAR_DISTANCE else -1 for c, d in zip(thumbs, distances)]))
            row[name] = {
                "orientation": ORIENTATIONS[turn],
                "bits": distances[turn],
                "thumbnail correlation": round(thumbs[turn], 4),
                "full-size correlation": round(
                    full_size_correlation(str(file), image_set.paths[source], "middle", turn), 4
                ),
            }
        train, val, test = image_set.split(val=0.15, test=0.2, seed=3)
        report = data.audit({"train": train, "val": val, "test": test})
        row["clean split: findings"] = len(report.findings)
        row["clean split: candidate pairs (hash)"] = report.candidates
        row["clean split: compared at full size (thumbnails)"] = report.compared_full_size
        results[f"{size} px"] = row
        print(f"{size} px:", json.dumps(row, indent=1))
    thresholds = {
        "near_distance": NEAR_DISTANCE,
        "near_correlation": NEAR_CORRELATION,
        "confirm_correlation": CONFIRM_CORRELATION,
    }
    _save("separation", {**thresholds, **results})


def correlations_of(vector, turn):
    """A flattened thumbnail in orientation ``turn``."""
    return oriented(vector.reshape(THUMB, THUMB), turn).ravel()


def _end_slices(findings) -> str:
    """How many groups hold only first or last slices (``_s0`` / ``_s3`` of the 4 the benchmark writes)."""
    ends = sum(all(Path(p).stem.endswith(("_s0", "_s3")) for p in f.paths) for f in findings)
    return f"{ends} of {len(findings)}"


def _plant(parts, count: int, folder: Path) -> list:
    """Adds ``count`` altered copies of training images (each alteration in turn) to the test part, as new
    patients; returns their paths."""
    from radtransfer.data import ImageSet

    folder.mkdir(parents=True, exist_ok=True)
    train, test = parts["train"], parts["test"]
    rng = np.random.default_rng(0)
    chosen = rng.choice(len(train), count, replace=False)
    paths, labels = [], []
    for k, index in enumerate(chosen):
        files = _alterations(train.paths[index], folder / f"c{k}")
        names = [n for n in files if not n.startswith("cropped") and "not found" not in n]
        paths.append(str(files[names[k % len(names)]]))
        labels.append(train.labels[index])
    parts["test"] = ImageSet(
        [*test.paths, *paths],
        np.concatenate([test.labels, labels]),
        test.class_names,
        [*test.patient_ids, *(f"planted{k}" for k in range(count))],
    )
    return paths


def throughput(images: int, size: int, keep: str | None, workers: int, plant: int = 0):
    root = Path(keep) if keep else Path(tempfile.mkdtemp())
    manifest = root / "manifest.csv"
    if not manifest.exists():
        start = time.perf_counter()
        rt.datasets.synthetic_brain_mri(
            root, n_patients=images // 4, slices_per_patient=4, image_size=size, seed=2, bit_depth=8
        )
        print(f"wrote {images} images in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    image_set = data.from_csv(manifest, image_col="path", label_col="label", patient_col="patient_id")
    parts = dict(zip(("train", "val", "test"), image_set.split(val=0.1, test=0.2, seed=3)))
    planted = _plant(parts, plant, root / "planted") if plant else []
    start = time.perf_counter()
    report = data.audit(parts, workers=workers)
    seconds = time.perf_counter() - start
    row = {
        "images": report.images,
        "size": size,
        "cores": os.cpu_count(),
        "workers": workers,
        "seconds": round(seconds, 1),
        "images_per_s": round(report.images / seconds, 1),
        "candidate_pairs": report.candidates,
        "compared_full_size": report.compared_full_size,
        "findings": {kind: len(report.of_kind(kind)) for kind in {f.kind for f in report.findings}},
        "near_duplicates": [[Path(p).name for p in f.paths] for f in report.of_kind("near_duplicate")][:20],
        "near_duplicate_groups_of_end_slices_only": _end_slices(report.of_kind("near_duplicate")),
        "label_conflicts_of_end_slices_only": _end_slices(report.of_kind("label_conflict")),
        "planted_copies": len(planted),
        "planted_copies_found": sum(
            any(p in f.paths for f in report.of_kind("near_duplicate") + report.of_kind("duplicate")) for p in planted
        ),
    }
    print(json.dumps(row, indent=1))
    _save(f"throughput {images} x {size} px" + (f", {plant} planted copies" if plant else ""), row)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("separation", "throughput"))
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--keep", help="a folder to write the images into, or reuse")
    parser.add_argument("--plant", type=int, default=0, help="altered copies of training images added to the test part")
    args = parser.parse_args()
    separation() if args.what == "separation" else throughput(
        args.images, args.size, args.keep, args.workers, args.plant
    )

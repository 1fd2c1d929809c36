"""Equal records: the same small studies, run by two versions of radtransfer, must write equal records.

A restructuring must not change results (issue 29's "must not change"). ``run OUT`` runs, with the documented API
and command only, on the test backbone at 32 px and fixed seeds: a fine-tune with its evaluation, a 2-fold grid
with 2 repeats and its report, a learning curve, and the command's ``train`` and ``card``. ``compare A B`` then
compares every JSON and CSV file the two folders share (and the saved prediction arrays, exactly), leaving out what
legitimately differs between two runs (times, paths, versions, the command line); a field or file only the newer
version writes is listed as added, not as a difference.

    # the older version, from its own checkout (PYTHONPATH puts its package first); both write to the same
    # folder in turn, since a run's fingerprint hashes its images' paths
    git worktree add --detach /tmp/old 420599b
    PYTHONPATH=/tmp/old python benchmarks/equal_records.py run /tmp/rr/records && mv /tmp/rr/records /tmp/rr/old
    python benchmarks/equal_records.py run /tmp/rr/records
    python benchmarks/equal_records.py compare /tmp/rr/old /tmp/rr/records

420599b is the last commit before the second restructuring (issue 29) that runs this script's API: the first with
the test backbone, 2748f87, still drew the shuffling order from the images' paths (changed on purpose in d2c5bfe,
so PNG and DICOM copies of a set train alike), so its histories differ for that reason alone.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

# Values that differ between any two runs of one version: when, where, how fast, with which versions.
VOLATILE = {
    "command",
    "versions",
    "seconds",
    "train_seconds",
    "images_per_second",
    "elapsed_seconds",
    "started",
    "finished",
    "created",
    "date",
    "time",
    "timestamp",
    "hostname",
    "host",
    "pid",
    "paths",
    "out_dir",
    "run_dir",
    "path",
    "data",
    "data_path",
    "radtransfer_version",
    "version",
}


def run(out: Path) -> None:
    import keras
    import numpy as np

    import radtransfer as rt
    from radtransfer import protocol, report
    from radtransfer.cli import main

    print(f"radtransfer from {Path(rt.__file__).parent}", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    rt.datasets.synthetic_brain_mri(data, n_patients=16, slices_per_patient=2, image_size=40, seed=5)
    images = rt.data.from_directory(data)

    # A fine-tune and its evaluation.
    train, val, test = images.split(val=0.25, test=0.25, seed=726)
    keras.utils.set_random_seed(0)
    model = rt.build_model("test_tiny", weights=None, num_classes=len(images.class_names), input_shape=(32, 32, 3))
    rt.fine_tune(
        model,
        train,
        val,
        strategy="unfreeze_top10",
        learning_rate=1e-3,
        epochs=2,
        batch_size=8,
        seed=0,
        out_dir=out / "fine_tune",
        verbose=0,
    )
    metrics = rt.evaluate(model, test, bootstrap=200, seed=0)
    np.save(out / "fine_tune_probabilities.npy", np.asarray(metrics["predictions"]["probabilities"]))
    _write(out / "fine_tune_evaluation.json", metrics)

    # A grid: 2 folds, 2 repeats, two scenarios (random initialisation runs unfreeze_all only).
    config = protocol.RADIMAGENET.replace(image_size=32, batch_size=8, epochs=2, bootstrap=200)
    scenarios = [
        protocol.Scenario("test_tiny", "unfreeze_all", 1e-3),
        protocol.Scenario("test_tiny", "unfreeze_all", 1e-4),
    ]
    protocol.run_grid(
        images, out / "grid", config=config, sources=(None,), folds=2, scenarios=scenarios, repeats=2, verbose=0
    )
    report.summarize(out / "grid").to_csv(out / "grid_summary.csv", index=False)

    # A learning curve.
    protocol.learning_curve(
        images,
        out / "curve",
        fractions=(0.5, 1.0),
        sources=(None,),
        backbone="test_tiny",
        strategy="unfreeze_all",
        learning_rate=1e-3,
        config=config,
        verbose=0,
    )

    # The command: train, then the model card.
    run_dir = out / "cli_run"
    argv = ["train", str(data), "--backbone", "test_tiny", "--weights", "none", "--image-size", "32", "--epochs", "2"]
    assert main(argv + ["--batch-size", "8", "--out", str(run_dir), "--verbose", "0"]) == 0
    if main(["card", str(run_dir)]) != 0:  # an older version's card may refuse a degenerate run: its files are kept
        print("the card command failed on this version; its files are left out of the comparison", flush=True)


def _write(path: Path, value) -> None:
    path.write_text(json.dumps(value, indent=1, sort_keys=True, default=_plain, allow_nan=True))


def _plain(value):
    import numpy as np

    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


# -- comparing ---------------------------------------------------------------------------------------------------


def compare(old: Path, new: Path) -> int:
    differences, added, compared = [], [], 0
    old_files = {p.relative_to(old) for p in old.rglob("*") if p.is_file() and p.suffix in (".json", ".csv", ".npy")}
    new_files = {p.relative_to(new) for p in new.rglob("*") if p.is_file() and p.suffix in (".json", ".csv", ".npy")}
    for name in sorted(old_files - new_files):
        differences.append(f"{name}: only in the older version's folder")
    added += [f"{name}: file added" for name in sorted(new_files - old_files)]
    for name in sorted(old_files & new_files):
        compared += 1
        a, b = _read(old / name), _read(new / name)
        _diff(str(name), a, b, differences, added)
    for line in added:
        print("added   ", line)
    for line in differences:
        print("DIFFERS ", line)
    print(f"{compared} files compared, {len(differences)} differences, {len(added)} fields or files added")
    return 1 if differences else 0


def _read(path: Path):
    if path.suffix == ".npy":
        import numpy as np

        return np.load(path).tolist()
    if path.suffix == ".csv":
        with open(path, newline="") as handle:
            rows = list(csv.reader(handle))
        if not rows:
            return []
        header = rows[0]  # rows as {column: value}, so a column only the newer version writes is an addition
        return [{h: (row[i] if i < len(row) else "") for i, h in enumerate(header)} for row in rows[1:]]
    return json.loads(path.read_text())


def _diff(where: str, a, b, differences: list, added: list) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if key in VOLATILE:
                continue
            if key not in b:
                differences.append(f"{where}: {key} missing in the newer version")
            elif key not in a:
                added.append(f"{where}: {key}")
            else:
                _diff(f"{where}.{key}", a[key], b[key], differences, added)
        return
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            differences.append(f"{where}: {len(a)} items against {len(b)}")
            return
        for i, (x, y) in enumerate(zip(a, b)):
            _diff(f"{where}[{i}]", x, y, differences, added)
        return
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return
    if a != b and not _same_path_text(a, b):
        differences.append(f"{where}: {a!r} against {b!r}")


def _same_path_text(a, b) -> bool:
    """Two strings that differ only in the run's folder (absolute paths written into a record)."""
    return isinstance(a, str) and isinstance(b, str) and ("/" in a or "/" in b) and Path(a).name == Path(b).name


def main_(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("run").add_argument("out", type=Path)
    both = sub.add_parser("compare")
    both.add_argument("old", type=Path)
    both.add_argument("new", type=Path)
    args = parser.parse_args(argv)
    if args.what == "run":
        run(args.out)
        return 0
    return compare(args.old, args.new)


if __name__ == "__main__":
    sys.exit(main_())

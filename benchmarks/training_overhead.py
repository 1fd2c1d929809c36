"""fine_tune's overhead against a hand-written compile + fit on the same model, data and settings.

    python benchmarks/training_overhead.py [--backbone resnet50] [--size 64] [--images 128] [--epochs 4]

Each configuration runs in its own process (so each has its own peak RSS), on the same cached dataset
of synthetic brain-MRI images, with Adam, the same loss and metrics, batch 32. Epoch times are taken by
the same callback in both, from the start of epoch 1 on (epoch 0 holds the graph tracing), and include
validation and the end-of-epoch callbacks:
- fine_tune without out_dir            vs  compile + fit
- fine_tune with out_dir (best weights, vs  compile + fit with ModelCheckpoint(best weights), CSVLogger,
  history, backup, best.keras at end)      BackupAndRestore, and best.keras saved at the end
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

MODES = ("fit", "fine_tune", "fit_checkpoints", "fine_tune_out_dir")


def run_mode(args) -> dict:
    import keras
    import numpy as np

    import radtransfer as rt
    from radtransfer import training

    image_set = rt.datasets.load_synthetic_brain_mri(
        args.data, n_patients=max(args.images // 4, 4), slices_per_patient=4, image_size=args.size, seed=0
    )
    train, val, _ = image_set.split(val=0.15, test=0.0, seed=726)
    size = (args.size, args.size)
    train_ds = rt.data.make_dataset(train, image_size=size, batch_size=32, augment="radimagenet", seed=0)
    val_ds = rt.data.make_dataset(val, image_size=size, batch_size=32, shuffle=False)
    keras.utils.set_random_seed(0)
    model = rt.build_model(args.backbone, weights=None, num_classes=4, input_shape=(*size, 3))

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.starts = []

        def on_epoch_begin(self, epoch, logs=None):
            self.starts.append(time.perf_counter())

    timer = EpochTimer()
    out_dir = Path(tempfile.mkdtemp(prefix="rt_train_bench_"))
    if args.mode.startswith("fine_tune"):
        rt.fine_tune(
            model,
            train_ds,
            val_ds,
            strategy="unfreeze_all",
            learning_rate=1e-4,
            epochs=args.epochs,
            callbacks=[timer],
            verbose=0,
            seed=0,
            out_dir=out_dir if args.mode == "fine_tune_out_dir" else None,
        )
    else:
        rt.apply_strategy(model, "unfreeze_all")
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=1e-4),
            loss=rt.TrainConfig("unfreeze_all", 1e-4).make_loss(4),
            metrics=training.make_metrics(4),
            jit_compile=False,
        )
        callbacks = [timer]
        if args.mode == "fit_checkpoints":
            # What a careful user writes by hand for the same outputs: best weights, history, a resume
            # backup, and the best model as .keras at the end.
            callbacks = [
                keras.callbacks.ModelCheckpoint(
                    str(out_dir / "best.weights.h5"), save_best_only=True, save_weights_only=True
                ),
                keras.callbacks.CSVLogger(str(out_dir / "history.csv")),
                keras.callbacks.BackupAndRestore(str(out_dir / "backup")),
                timer,
            ]
        model.fit(train_ds, validation_data=val_ds, epochs=args.epochs, callbacks=callbacks, verbose=0, shuffle=False)
        if args.mode == "fit_checkpoints":
            model.load_weights(str(out_dir / "best.weights.h5"))
            model.save(str(out_dir / "best.keras"))
    # From one epoch's start to the next: training, validation, and whatever runs between epochs (fine_tune's
    # per-epoch checkpoint and commit included). Epoch 0 holds the tracing; the last epoch is not timed.
    epoch_seconds = np.diff(timer.starts)[1:]
    return {
        "mode": args.mode,
        "train_images": len(train),
        "epoch_seconds": epoch_seconds.tolist(),
        "images_per_s": float(len(train) / np.mean(epoch_seconds)),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2, help="runs per mode, interleaved")
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.mode:
        print(json.dumps(run_mode(args)))
        return 0

    data_dir = Path(tempfile.mkdtemp(prefix="rt_train_data_"))
    runs = {mode: [] for mode in MODES}
    for _ in range(args.repeats):
        for mode in MODES:
            command = [
                sys.executable,
                __file__,
                "--mode",
                mode,
                "--data",
                str(data_dir),
                "--backbone",
                args.backbone,
                "--size",
                str(args.size),
                "--images",
                str(args.images),
                "--epochs",
                str(args.epochs),
            ]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            runs[mode].append(json.loads(done.stdout.strip().splitlines()[-1]))
    summary = {
        mode: {
            "images_per_s": sum(r["images_per_s"] for r in rs) / len(rs),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in rs),
        }
        for mode, rs in runs.items()
    }
    summary["overhead_plain"] = 1 - summary["fine_tune"]["images_per_s"] / summary["fit"]["images_per_s"]
    summary["overhead_with_outputs"] = (
        1 - summary["fine_tune_out_dir"]["images_per_s"] / summary["fit_checkpoints"]["images_per_s"]
    )
    summary["settings"] = {k: v for k, v in vars(args).items() if k not in ("mode", "data", "json")}
    print(json.dumps({"runs": runs, "summary": summary}, indent=2, default=str))
    for mode in MODES:
        print(
            f"{mode:20s} {summary[mode]['images_per_s']:7.1f} images/s   "
            f"peak RSS {summary[mode]['peak_rss_mib']:7.0f} MiB"
        )
    print(
        f"fine_tune overhead: {summary['overhead_plain']:+.1%} (no outputs), "
        f"{summary['overhead_with_outputs']:+.1%} (with checkpoints, history, backup; target ≤ 3%)"
    )
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "summary": summary}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The first epoch of fine_tune with the optimizer's slots made before the first step (radtransfer) against Keras's
default (made inside the first traced step, which TensorFlow then traces a second time), paired in one run.

    python benchmarks/first_epoch.py [--backbone resnet50] [--size 64] [--pairs 3]

Each arm runs in its own fresh process (so neither inherits the other's traced graphs), on the same 8 training
images, one epoch, batch 8, graph mode; the arms alternate (A B A B ...) and the ratio is taken pair by pair. The
"keras" arm is the same fine_tune with the slot building step removed, which is how Keras's TensorFlow trainer
leaves it (it builds the optimizer inside the first trace when no distribution strategy is set). Both arms must
reach the same loss: the order of building changes no number.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def run_arm(args) -> dict:
    import keras

    import radtransfer as rt
    from radtransfer.training import epoch_loop

    if args.arm == "keras":  # the slots made inside the first traced step, as Keras leaves it
        compile_model = epoch_loop.compile_model

        def keras_default(model, optimizer, *rest, **keywords):
            build = type(optimizer).build
            type(optimizer).build = lambda self, variables: None  # skip the early build only
            try:
                return compile_model(model, optimizer, *rest, **keywords)
            finally:
                type(optimizer).build = build

        epoch_loop.compile_model = keras_default
        from radtransfer.training import fine_tuning

        fine_tuning.compile_model = keras_default
    image_set = rt.datasets.load_synthetic_brain_mri(
        args.data, n_patients=12, slices_per_patient=2, image_size=args.size, seed=2
    )
    train, val, _ = image_set.split(val=0.2, test=0.2, seed=726)
    keras.utils.set_random_seed(0)
    model = rt.build_model(args.backbone, weights=None, num_classes=4, input_shape=(args.size, args.size, 3))
    start = time.perf_counter()
    result = rt.fine_tune(
        model, train, val, strategy="unfreeze_all", learning_rate=1e-3, epochs=1, seed=0, batch_size=8, verbose=0
    )
    return {"seconds": time.perf_counter() - start, "loss": result.history["loss"][0]}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--arm", choices=("radtransfer", "keras"), help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.arm:
        print("RESULT " + json.dumps(run_arm(args)), flush=True)
        return
    data = tempfile.mkdtemp(prefix="first_epoch_")
    runs = {"radtransfer": [], "keras": []}
    for _ in range(args.pairs):
        for arm in ("radtransfer", "keras"):
            command = [sys.executable, __file__, "--arm", arm, "--data", data]
            command += ["--backbone", args.backbone, "--size", str(args.size)]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
            runs[arm].append(json.loads(line[len("RESULT ") :]))
    ratios = [k["seconds"] / r["seconds"] for r, k in zip(runs["radtransfer"], runs["keras"])]
    assert all(r["loss"] == k["loss"] for r, k in zip(runs["radtransfer"], runs["keras"])), runs
    print(f"{args.backbone} at {args.size} px, first epoch (graph building included), {args.pairs} pairs:")
    for arm, rows in runs.items():
        seconds = [r["seconds"] for r in rows]
        low, high = min(seconds), max(seconds)
        print(f"  {arm:12s} median {statistics.median(seconds):6.1f} s  (min {low:.1f}, max {high:.1f})")
    print(
        f"  keras / radtransfer, pair by pair: median {statistics.median(ratios):.2f}x "
        f"(min {min(ratios):.2f}, max {max(ratios):.2f}); losses equal: {runs['radtransfer'][0]['loss']:.6f}"
    )


if __name__ == "__main__":
    main()

"""Wall time of a small grid on this machine with 1 or 2 Ray workers (or the sequential executor).

One grid per process, so a whole-process timer can pair the settings run by run::

    python benchmarks/grid_workers.py --executor ray --workers 1 --out /tmp/gw1
    python benchmarks/grid_workers.py --executor ray --workers 2 --out /tmp/gw2
    python benchmarks/grid_workers.py --executor sequential --out /tmp/gws

The grid: ResNet50 (random-weight RadImageNet-format file), 2 scenarios × 2 folds × 1 source = 4 runs,
2 epochs each, on 80 synthetic brain-MRI slices at 64 px. Each call deletes ``--out`` first, so every call
trains all 4 runs. The printed line gives the grid's own wall time (the process adds imports and Ray's
start). Needs the dev extra (tf-keras writes the weight file) and, for --executor ray, the ray extra.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _inputs(root: Path):
    import radtransfer as rt

    data, weights = root / "data", root / "weights" / "RadImageNet-ResNet50_notop.h5"
    if not data.exists():
        rt.datasets.synthetic_brain_mri(data, n_patients=40, slices_per_patient=2, image_size=64, seed=7)
    if not weights.exists():
        import tf_keras

        tf_keras.utils.set_random_seed(1)
        weights.parent.mkdir(parents=True, exist_ok=True)
        tf_keras.applications.ResNet50(include_top=False, weights=None, input_shape=(64, 64, 3), pooling="avg").save(
            weights
        )
    return rt.datasets.load_synthetic_brain_mri(data), weights.parent


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executor", choices=("sequential", "ray"), default="ray")
    parser.add_argument("--workers", type=int, default=1, help="runs at once on Ray (each gets 2/workers CPUs)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--inputs", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "radtransfer_grid_bench"))
    args = parser.parse_args(argv)

    import radtransfer as rt
    from radtransfer import protocol

    image_set, weights_dir = _inputs(Path(args.inputs))
    shutil.rmtree(args.out, ignore_errors=True)
    scenarios = [protocol.Scenario("resnet50", "freeze_all", 1e-3), protocol.Scenario("resnet50", "unfreeze_all", 1e-4)]
    config = protocol.RADIMAGENET.replace(image_size=64, batch_size=16, epochs=2, bootstrap=100, cache=True)
    cpus = os.cpu_count() or 2
    executor = (
        "sequential"
        if args.executor == "sequential"
        else rt.RayExecutor(cpus_per_run=cpus / args.workers, init_kwargs={"num_cpus": cpus, "log_to_driver": False})
    )
    start = time.perf_counter()
    protocol.run_grid(
        image_set,
        args.out,
        config=config,
        sources=("radimagenet",),
        scenarios=scenarios,
        folds=2,
        weights_dir=weights_dir,
        task="bench",
        executor=executor,
        verbose=0,
    )
    seconds = time.perf_counter() - start
    workers = 1 if args.executor == "sequential" else args.workers
    print(f"grid_workers executor={args.executor} workers={workers} runs=4 grid_wall_s={seconds:.1f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Image files on disk to training steps on one GPU: radtransfer on JAX against its own ceiling and timm (issue 22).

    python3 benchmarks/gpu_end_to_end.py --out $OUT/gpu_end_to_end.json          # the GPU run (< 10 min)
    .venv/bin/python benchmarks/gpu_end_to_end.py --quick --block-tensorflow      # the whole flow on a CPU, ~2 min

What it measures, each part in a fresh process with its own time limit (a part cut off still reports what it
measured so far, and the JSON is rewritten after every part):

- preflight: backend, devices, package versions, and which radtransfer modules fail to import with TensorFlow
  blocked (a TensorFlow-free image: the missing third-party modules are listed);
- images: ``--images`` training and ``--val-images`` validation PNGs of ``--png-size`` px in 4 class folders,
  written by several processes (NumPy + Pillow), reused when already there;
- phase A (JAX, one process per backbone × strategy × precision): with the same compiled step wherever possible,

  - ``fine_tune``: ``rt.fine_tune`` on the PNG folders (ImageSequence, on-device RadImageNet augmentation),
    epoch 0 (cache fill, compilation) reported apart, then images/s of the training steps of the later epochs;
  - ``pieces``: fine_tune's own compiled wrapper (``with_device_augment``) fitted on
    ``TransformSequence(ImageSequence(workers=--workers))``, as fine_tune's data but with several workers and
    without fine_tune's per-step callbacks (which make every step wait for the device);
  - ``wrapper_ceiling``: that wrapper on batches already on the device (the warp included): the pipeline's ceiling;
  - ``model_ceiling``: the bare model, compiled as fine_tune compiles, on uint8 batches already on the device:
    the model's own ceiling;

- phase B (PyTorch anchor): timm's model, channels_last, bf16 autocast, fused Adam, on batches already on the
  device, eager and then ``torch.compile``;
- GPU busy fraction: ``nvidia-smi --query-gpu=... -lms 200`` sampled for the whole of each process, averaged over
  each timed window (null where nvidia-smi is absent).

Goal (issue 22): end to end ≥ 0.9 × the model's own ceiling, and ≥ 1.0 × timm. Needs NumPy, Pillow, Keras, JAX
and radtransfer (phase A), PyTorch and timm (phase B); never TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from _gpu_workers import NUM_CLASSES, PRECISIONS, emit, worker_keras, worker_preflight, worker_torch

SCHEMA = "radtransfer-gpu-end-to-end-1"
# In priority order: a run cut short by its budget keeps the first ones. Each backbone's anchor (phase B) runs
# right after that backbone's first configuration.
DEFAULT_CONFIGS = (
    "resnet50:unfreeze_all:bf16",
    "densenet121:unfreeze_all:bf16",
    "resnet50:freeze_all:bf16",
    "densenet121:freeze_all:bf16",
    "resnet50:unfreeze_all:float32",
)
QUICK_CONFIGS = ("resnet50:unfreeze_all:bf16",)
# Seconds a part takes on an H100/H200 (compilation dominates), for the printed estimate and the skip rule.
ESTIMATE_A = {"resnet50": 140, "densenet121": 200}
ESTIMATE_B = {"resnet50": 80, "densenet121": 120}
ESTIMATE_QUICK_A, ESTIMATE_QUICK_B = 80, 10
VERSIONED = (
    "jax",
    "jaxlib",
    "keras",
    "torch",
    "timm",
    "numpy",
    "pillow",
    "scipy",
    "pandas",
    "h5py",
    "namex",
    "optree",
    "ml-dtypes",
    "absl-py",
    "rich",
    "tqdm",
    "matplotlib",
    "scikit-learn",
    "jinja2",
    "tensorflow",
)


# -- the images ----------------------------------------------------------------------------------------------


def _write_png(job) -> int:
    """Writes one smooth random PNG (low-resolution noise upscaled, plus fine noise); returns its size in bytes."""
    import numpy as np
    from PIL import Image

    path, seed, size, gray = job
    rng = np.random.default_rng(seed)
    channels = 1 if gray else 3
    coarse = rng.integers(0, 256, (16, 16, channels), dtype=np.uint8)
    image = Image.fromarray(coarse[..., 0] if gray else coarse).resize((size, size), Image.BICUBIC)
    pixels = np.asarray(image, dtype=np.int16) + rng.integers(-6, 7, (size, size) if gray else (size, size, 3))
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)
    return Path(path).stat().st_size


def make_images(root: Path, n_train: int, n_val: int, size: int, gray: bool, processes: int) -> dict:
    """``root/train/class_k/*.png`` and ``root/val/class_k/*.png`` (4 classes, round-robin), reused if present."""
    from multiprocessing import get_context

    manifest = {"n_train": n_train, "n_val": n_val, "png_size": size, "gray": gray, "classes": NUM_CLASSES}
    marker = root / "manifest.json"
    if marker.exists() and json.loads(marker.read_text()).get("settings") == manifest:
        recorded = json.loads(marker.read_text())
        return {**recorded, "reused": True, "seconds": 0.0}
    if root.exists():
        shutil.rmtree(root)
    jobs = []
    for part, count, offset in (("train", n_train, 0), ("val", n_val, n_train)):
        for k in range(NUM_CLASSES):
            (root / part / f"class_{k}").mkdir(parents=True, exist_ok=True)
        jobs += [
            (str(root / part / f"class_{i % NUM_CLASSES}" / f"img_{i:06d}.png"), offset + i, size, gray)
            for i in range(count)
        ]
    start = time.perf_counter()
    with get_context("spawn").Pool(processes) as pool:
        sizes = pool.map(_write_png, jobs, chunksize=16)
    seconds = time.perf_counter() - start
    record = {"settings": manifest, "files": len(jobs), "bytes": int(sum(sizes)), "processes": processes}
    marker.write_text(json.dumps(record))
    return {**record, "reused": False, "seconds": round(seconds, 2)}


# -- preflight -----------------------------------------------------------------------------------------------


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in VERSIONED:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


# -- the orchestrator ----------------------------------------------------------------------------------------


def run_part(args, spec: dict, limit: float, env: dict, log_dir: Path) -> dict:
    """Runs one part in a fresh process for at most ``limit`` s; returns its RESULT, or its last PARTIAL with
    the status (timeout or error) when it did not finish."""
    name = spec["name"]
    log = log_dir / f"{name}.log"
    start = time.perf_counter()
    with open(log, "w") as err:
        process = subprocess.Popen(
            [sys.executable, __file__, "--worker", json.dumps(spec)],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=env,
            start_new_session=True,
        )
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
        reader.start()
        try:
            process.wait(timeout=max(1.0, limit))
            status = "ok" if process.returncode == 0 else "error"
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)  # the part's own process group: it and its workers, nothing else
            process.wait()
            status = "timeout"
        reader.join(timeout=5)
    record = {}
    for line in lines:
        if line.startswith(("RESULT ", "PARTIAL ")):
            record = json.loads(line.split(" ", 1)[1])
    if status == "ok" and not any(line.startswith("RESULT ") for line in lines):
        status = "error"
    record.update(name=name, status=record.get("status", status), seconds=round(time.perf_counter() - start, 1))
    if status != "ok":
        tail = log.read_text(errors="replace").strip().splitlines()[-15:]
        record.update(status=status, limit_s=round(limit, 1), log_tail=tail)
    return record


def plan(args) -> list[dict]:
    """The parts in the order they run: the phase-A configurations, each backbone's anchor after its first."""
    parts, anchored = [], set()
    for text in args.configs:
        backbone, strategy, precision = text.split(":")
        if precision not in PRECISIONS:
            raise SystemExit(f"Unknown precision {precision!r} in {text!r}: expected one of {sorted(PRECISIONS)}")
        parts.append(
            {
                "phase": "A",
                "name": f"A_{backbone}_{strategy}_{precision}",
                "backbone": backbone,
                "strategy": strategy,
                "precision": precision,
                "estimate_s": ESTIMATE_QUICK_A
                if args.quick
                else ESTIMATE_A.get(backbone, 150) * (1.3 if precision == "float32" else 1.0),
            }
        )
        if backbone in args.anchors and backbone not in anchored:
            anchored.add(backbone)
            parts.append(
                {
                    "phase": "B",
                    "name": f"B_{backbone}",
                    "backbone": backbone,
                    "estimate_s": ESTIMATE_QUICK_B if args.quick else ESTIMATE_B.get(backbone, 120),
                }
            )
    return parts


def summarise(parts: list[dict]) -> dict:
    """Per phase-A part: its images/s and the goal's ratios (to its model ceiling, to timm compiled); the anchors."""

    def rate(part, key):
        return (part.get(key) or {}).get("images_per_s")

    anchors = {
        p["backbone"]: rate(p, "compiled") or rate(p, "eager")
        for p in parts
        if p.get("phase") == "B" and p.get("source") == "timm"
    }
    float32 = {
        (p["backbone"], p["strategy"]): rate(p, "model_ceiling")
        for p in parts
        if p.get("phase") == "A" and p.get("precision") == "float32"
    }
    rows = []
    for p in parts:
        if p.get("phase") != "A":
            continue
        row = {k: p.get(k) for k in ("backbone", "strategy", "precision", "status")}
        for key in ("fine_tune", "pieces", "wrapper_ceiling", "model_ceiling"):
            row[key] = rate(p, key)
            row[f"{key}_gpu_busy"] = ((p.get(key) or {}).get("gpu") or {}).get("busy")
        ceil, timm = row["model_ceiling"], anchors.get(p.get("backbone"))
        for key in ("fine_tune", "pieces"):
            if row[key] and ceil:
                row[f"{key}_over_model_ceiling"] = round(row[key] / ceil, 3)
            if row[key] and timm and p.get("strategy") == "unfreeze_all":
                row[f"{key}_over_timm"] = round(row[key] / timm, 3)
        if row["pieces"] and row["wrapper_ceiling"]:
            row["pieces_over_wrapper_ceiling"] = round(row["pieces"] / row["wrapper_ceiling"], 3)
        if ceil and timm and p.get("strategy") == "unfreeze_all":
            row["model_ceiling_over_timm"] = round(ceil / timm, 3)
        f32 = float32.get((p.get("backbone"), p.get("strategy")))
        if p.get("precision") == "bf16" and ceil and f32:
            row["model_ceiling_bf16_over_float32"] = round(ceil / f32, 3)
        if row.get("fine_tune_over_model_ceiling") is not None:
            row["goal_end_to_end_0.9_ceiling"] = row["fine_tune_over_model_ceiling"] >= 0.9
        if row.get("fine_tune_over_timm") is not None:
            row["goal_end_to_end_1.0_timm"] = row["fine_tune_over_timm"] >= 1.0
        rows.append(row)
    table = {
        p["backbone"]: {
            "source": p.get("source"),
            "status": p.get("status"),
            "eager": rate(p, "eager"),
            "compiled": rate(p, "compiled"),
            "compiled_gpu_busy": ((p.get("compiled") or {}).get("gpu") or {}).get("busy"),
        }
        for p in parts
        if p.get("phase") == "B"
    }
    return {"phase_a": rows, "anchors": table}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu_end_to_end.json", help="the JSON file (rewritten after every part)")
    parser.add_argument("--quick", action="store_true", help="the whole flow at tiny sizes (a CPU check, ~2 min)")
    parser.add_argument("--configs", nargs="+", default=None, help="backbone:strategy:precision (bf16 or float32)")
    parser.add_argument("--anchors", nargs="*", default=None, help="backbones with a timm anchor (none: no phase B)")
    parser.add_argument("--images", type=int, default=None, help="training PNGs (default 3072 = 12 batches of 256)")
    parser.add_argument("--val-images", type=int, default=None, help="validation PNGs (default 256)")
    parser.add_argument("--png-size", type=int, default=None, help="PNG side in px (default 512)")
    parser.add_argument("--size", type=int, default=None, help="training resolution (default 256)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default 256)")
    parser.add_argument("--gray", action="store_true", help="grayscale PNGs (repeated to 3 channels on the host)")
    parser.add_argument("--workers", type=int, default=None, help="PyDataset threads of the pieces path (default 6)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs of fine_tune and of the pieces (default 4)")
    parser.add_argument("--bn", default="protocol", choices=("protocol", "frozen"), help="as fine_tune's bn")
    parser.add_argument("--no-fine-tune", action="store_true", help="measure the pieces only (no rt.fine_tune)")
    parser.add_argument("--no-model-ceiling", action="store_true", help="skip the bare model (saves a compile)")
    parser.add_argument("--torch-compile", default="auto", choices=("auto", "on", "off"), help="auto: on a GPU")
    parser.add_argument("--budget", type=float, default=None, help="seconds for everything (default 540)")
    parser.add_argument("--part-limit", type=float, default=None, help="seconds at most per part (default 240)")
    parser.add_argument("--data-dir", default=None, help="where the PNGs go (default: a folder in /tmp)")
    parser.add_argument(
        "--log-dir",
        default="/tmp/radtransfer_e2e_logs",
        help="each part's stderr (a failed part's tail is in the JSON)",
    )
    parser.add_argument(
        "--jax-cache",
        default="/tmp/radtransfer_e2e_jax_cache",
        help="JAX's persistent compilation cache: a second run on the same machine skips compiling ('' for none)",
    )
    parser.add_argument(
        "--block-tensorflow",
        action="store_true",
        default=os.environ.get("RADTRANSFER_BLOCK_TF") == "1",
        help="make `import tensorflow` fail in every process (also: RADTRANSFER_BLOCK_TF=1)",
    )
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return parser


def main(argv=None) -> int:
    args = _parser().parse_args(argv)

    if args.worker:
        spec = json.loads(args.worker)
        run = {"preflight": worker_preflight, "A": worker_keras, "B": worker_torch}[spec["phase"]]
        emit("RESULT", run(spec))
        return 0

    settings = _settings(args)
    started = time.perf_counter()
    env = _environment(args)
    parts = plan(args)
    estimate = 20 + settings["n_train"] / 150 + sum(p["estimate_s"] for p in parts)
    report = _report(args, settings, estimate)
    out_path = settings["out_path"]

    def save():
        report["elapsed_s"] = round(time.perf_counter() - started, 1)
        report["summary"] = summarise(report["parts"])
        out_path.write_text(json.dumps(report, indent=2))

    print(
        f"estimate: about {estimate:.0f} s for {len(parts)} parts (budget {settings['budget']:.0f} s; parts that no "
        f"longer fit are skipped, in this order: {', '.join(p['name'] for p in parts)})",
        flush=True,
    )
    report["preflight"] = {
        "versions": versions(),
        "nvidia_smi": _nvidia_smi_list(),
        "cpus": os.cpu_count(),
        "tensorflow_blocked": args.block_tensorflow,
    }
    check = run_part(args, {"phase": "preflight", "name": "preflight"}, 120, env, settings["log_dir"])
    report["preflight"].update(check)
    print("preflight " + json.dumps(report["preflight"]), flush=True)
    save()

    processes = max(1, min(16, os.cpu_count() or 1))
    common = settings["common"]
    report["images"] = make_images(
        settings["data_dir"], common["n_train"], common["n_val"], settings["png"], args.gray, processes
    )
    print("images " + json.dumps(report["images"]), flush=True)
    save()

    run_parts(args, parts, settings, env, report, save, deadline=started + settings["budget"])
    save()
    print("summary " + json.dumps(report["summary"], indent=1), flush=True)
    print(f"wrote {out_path} after {report['elapsed_s']:.0f} s", flush=True)
    return 0


def _settings(args) -> dict:
    """The sizes, budget and folders (``--quick``'s small defaults where no value is given), and the spec every
    part shares (``common``). Fills in ``args.configs`` and ``args.anchors``."""
    quick = args.quick
    pick = lambda value, full, small: value if value is not None else (small if quick else full)
    args.configs = pick(args.configs, list(DEFAULT_CONFIGS), list(QUICK_CONFIGS))
    args.anchors = pick(args.anchors, ["resnet50", "densenet121"], ["resnet50"])
    n_train, n_val = pick(args.images, 3072, 32), pick(args.val_images, 256, 8)
    png, size, batch = pick(args.png_size, 512, 128), pick(args.size, 256, 64), pick(args.batch, 256, 8)
    epochs, workers = pick(args.epochs, 4, 2), pick(args.workers, 6, 2)
    budget, part_limit = pick(args.budget, 540.0, 900.0), pick(args.part_limit, 240.0, 400.0)
    data_dir = Path(args.data_dir or f"/tmp/radtransfer_e2e_png_{n_train}_{n_val}_{png}{'_gray' if args.gray else ''}")
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    log_dir = Path(args.log_dir)  # not beside --out: a device run brings back at most 8 files from $OUT
    log_dir.mkdir(parents=True, exist_ok=True)
    common = {
        "block_tensorflow": args.block_tensorflow,
        "batch": batch,
        "size": size,
        "n_train": n_train,
        "n_val": n_val,
        "train_dir": str(data_dir / "train"),
        "val_dir": str(data_dir / "val"),
        "cache_prefix": str(data_dir / "npy_cache" / "train"),
        "workers": workers,
        "epochs": epochs,
        "ft_epochs": epochs,
        "bn": args.bn,
        "fine_tune": not args.no_fine_tune,
        "model_ceiling": not args.no_model_ceiling,
        "ceiling_steps": 2 if quick else 10,
        "ceiling_epochs": 1 if quick else 2,
        "torch_steps": 2 if quick else 20,
        "torch_warmup": 1 if quick else 3,
        "torch_compile": args.torch_compile,
        "stand_in": quick,
    }
    return {
        "n_train": n_train,
        "png": png,
        "budget": budget,
        "part_limit": part_limit,
        "data_dir": data_dir,
        "out_path": out_path,
        "log_dir": log_dir,
        "common": common,
    }


def _environment(args) -> dict:
    """The parts' environment: Keras on JAX, this checkout importable, TensorFlow blocked if asked, JAX's cache."""
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    repo = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), repo) if p)
    if args.block_tensorflow:
        env["RADTRANSFER_BLOCK_TF"] = "1"
    if args.jax_cache:
        env.update(JAX_COMPILATION_CACHE_DIR=args.jax_cache, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="2")
    return env


def _report(args, settings: dict, estimate: float) -> dict:
    """The JSON's head: the command, its settings and the estimate; ``parts`` filled as they run."""
    return {
        "schema": SCHEMA,
        "quick": args.quick,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": {
            **{k: v for k, v in settings["common"].items() if k not in ("train_dir", "val_dir", "cache_prefix")},
            "png_size": settings["png"],
            "gray": args.gray,
            "configs": args.configs,
            "anchors": args.anchors,
            "budget_s": settings["budget"],
            "part_limit_s": settings["part_limit"],
            "data_dir": str(settings["data_dir"]),
            "log_dir": str(settings["log_dir"]),
            "jax_cache": args.jax_cache or None,
            "jax_cache_had_entries": bool(args.jax_cache) and any(Path(args.jax_cache).glob("*")),
        },
        "estimate_s": round(estimate),
        "parts": [],
    }


def run_parts(args, parts: list, settings: dict, env: dict, report: dict, save, deadline: float) -> None:
    """Runs the parts in order, each in its own process, skipping those that no longer fit the budget; ``save``
    rewrites the JSON after each."""
    part_limit = settings["part_limit"]
    for part in parts:
        left = deadline - time.perf_counter()
        if left < min(part["estimate_s"] * 0.6, part_limit):
            report["parts"].append({**part, "status": "skipped", "reason": f"{left:.0f} s left of the budget"})
            print(f"{part['name']}: skipped ({left:.0f} s left)", flush=True)
            save()
            continue
        spec = {**settings["common"], **part}
        record = run_part(args, spec, min(part_limit, left), env, settings["log_dir"])
        report["parts"].append({**part, **record})
        print(f"{part['name']}: " + json.dumps(record), flush=True)
        save()


def _nvidia_smi_list() -> str | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        return subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError) as error:
        return f"failed: {error}"


if __name__ == "__main__":
    sys.exit(main())

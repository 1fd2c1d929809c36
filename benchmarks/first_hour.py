"""What a new user waits for: the command's start, its first epoch line, and its longest silence.

Runs ``radtransfer`` as a user types it, in a fresh process, reading what it prints (stdout and stderr, a
progress bar's redraws counted as lines) with the time each line arrived. With ``--baseline PATH`` (an older
checkout, e.g. ``git archive <commit> | tar -x -C PATH``) each command also runs from there, in turn, so the two
are compared on the same machine in the same run::

    python benchmarks/first_hour.py --baseline /tmp/base --patients 200 --json first_hour.json

Figures: ``--help`` and a typo (seconds to the answer), and ``train`` on synthetic brain MRI: seconds to the first
line, to the line that says epoch 1 started, and the longest gap with nothing printed before epoch 1 ended.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EPOCH_START = re.compile(rb"^(epoch 1/|Epoch 1/)")


def timed_lines(argv, pythonpath=None, timeout=3600, cwd=None):
    """(seconds, line) for every line or progress-bar redraw the command printed, and its exit code."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    if pythonpath:
        env["PYTHONPATH"] = str(pythonpath)
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "radtransfer", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=cwd or tempfile.gettempdir(),  # not a checkout's root, whose radtransfer/ would shadow PYTHONPATH
    )
    lines, pending = [], b""
    while True:
        chunk = process.stdout.read1(65536)
        if not chunk:
            break
        now = time.perf_counter() - start
        pending += chunk
        *complete, pending = re.split(rb"[\r\n]", pending)
        lines += [(now, line) for line in complete if line.strip()]
    code = process.wait(timeout=timeout)
    if pending.strip():
        lines.append((time.perf_counter() - start, pending))
    return lines, code, time.perf_counter() - start


def first_epoch_figures(lines, total):
    """Seconds to the first line, to the start of epoch 1, and the longest silence until epoch 1 ended."""
    starts = [t for t, line in lines if EPOCH_START.match(line.strip())]
    ends = [t for t, line in lines if re.search(rb"(epoch 1/\d+.*(loss|val_)|^Epoch 2/)", line.strip())]
    epoch_start = starts[0] if starts else None
    until = ends[0] if ends else total
    times = [0.0] + [t for t, _ in lines if t <= until] + [until]
    before = [0.0] + [t for t, _ in lines if epoch_start is None or t <= epoch_start]
    return {
        "first_line_s": lines[0][0] if lines else None,
        "epoch_1_line_s": epoch_start,
        "epoch_1_ended_s": ends[0] if ends else None,
        "longest_silence_before_epoch_1_started_s": max(b - a for a, b in zip(before, before[1:])),
        "longest_silence_before_epoch_1_ended_s": max(b - a for a, b in zip(times, times[1:])),
        "lines_before_epoch_1_ended": sum(1 for t, _ in lines if t <= until),
        "total_s": total,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="an older checkout to compare with (put first on PYTHONPATH)")
    parser.add_argument("--patients", type=int, default=200, help="synthetic patients (4 slices each)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="runs of --help and the typo")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    arms = {"this checkout": None, **({"baseline": args.baseline} if args.baseline else {})}
    results = {arm: {} for arm in arms}
    work = Path(tempfile.mkdtemp(prefix="first_hour_"))
    data = work / "data"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "radtransfer",
            "datasets",
            "synthetic",
            str(data),
            "--patients",
            str(args.patients),
            "--size",
            "256",
        ],
        check=True,
        capture_output=True,
    )
    quick = {"help": ["--help"], "typo": ["train", str(data), "--out", str(work / "x"), "--backbone", "densnet121"]}
    for name, argv in quick.items():
        for arm, path in arms.items():
            results[arm][name + "_s"] = []
        for _ in range(args.repeats):
            for arm, path in arms.items():  # in turn, so drift hits both
                results[arm][name + "_s"].append(timed_lines(argv, path)[2])
        for arm in arms:
            results[arm][name + "_median_s"] = statistics.median(results[arm].pop(name + "_s"))
    for arm, path in arms.items():
        out = work / f"run_{arm.replace(' ', '_')}"
        argv = ["train", str(data), "--out", str(out), "--backbone", "resnet50", "--weights", "none"]
        argv += ["--image-size", str(args.image_size), "--epochs", "1", "--batch-size", "32", "--verbose", "2"]
        lines, code, total = timed_lines(argv, path)
        if code != 0:
            print(b"\n".join(line for _, line in lines[-20:]).decode(errors="replace"), file=sys.stderr)
            raise SystemExit(f"{arm}: train exited {code}")
        results[arm]["train"] = first_epoch_figures(lines, total)
        results[arm]["train"]["first_lines"] = [
            f"{t:7.2f}s {line.decode(errors='replace')[:100]}" for t, line in lines[:12]
        ]
    results["setup"] = {"patients": args.patients, "images": args.patients * 4, "image_size": args.image_size}
    text = json.dumps(results, indent=2, ensure_ascii=False)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

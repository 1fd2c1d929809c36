"""Helpers shared by the example scripts: where the data comes from, and the notice about weights."""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

import radtransfer as rt


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", help="a class-folder directory or a CSV manifest (default: the synthetic demo data)")
    parser.add_argument("--image-col", default="path")
    parser.add_argument("--label-col", default="label")
    parser.add_argument("--patient-col", default=None)
    parser.add_argument("--out", default=None, help="output folder")
    parser.add_argument("--weights-dir", default=None, help="a folder with the pretrained .h5 files")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and one epoch (a smoke test)")
    return parser


def apply_quick(parser, args, argv, **values) -> None:
    """--quick's sizes, each set only where its flag was not given, and one line saying what --quick changed and
    what it kept (so it never swaps a backbone or a size behind the user's back)."""
    tokens = list(sys.argv[1:] if argv is None else argv)
    flags = {a.dest: a.option_strings for a in parser._actions}
    changed, kept = [], []
    for name, value in values.items():
        given = any(t == o or t.startswith(o + "=") for t in tokens for o in flags[name])
        flag = flags[name][0]
        if given:
            kept.append(f"{flag} {_shown(getattr(args, name))}")
        else:
            setattr(args, name, value)
            changed.append(f"{flag} {_shown(value)}")
    line = "--quick: " + (", ".join(changed) if changed else "nothing changed")
    print(line + (f" (given, kept: {', '.join(kept)})" if kept else ""))


def _shown(value) -> str:
    return " ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def load_images(args, quick_patients=12, patients=48):
    """The user's data, or the synthetic brain-MRI set written next to the outputs."""
    if args.data:
        return rt.data.load(args.data, image_col=args.image_col, label_col=args.label_col, patient_col=args.patient_col)
    folder = Path(args.out) / "synthetic_data"
    return rt.datasets.load_synthetic_brain_mri(
        folder,
        n_patients=quick_patients if args.quick else patients,
        slices_per_patient=2 if args.quick else 4,
        image_size=48 if args.quick else 128,
        seed=0,
    )


def pretrained(backbone: str, weights_dir):
    """(weights argument for build_model, source name), printing a notice when none is available."""
    source, path, notice = rt.weights.best_available_weights(backbone, weights_dir)
    if notice:
        print("\n" + "!" * 100 + "\n" + notice + "\n" + "!" * 100 + "\n")
        return None, "random"
    print(f"Using {source} weights: {path}")
    return str(path), source


def one_line_errors(main):
    """An example's main that ends a user's mistake (no weights, no data) in one line, not a traceback."""

    @functools.wraps(main)
    def run(argv=None):
        try:
            return main(argv)
        except rt.RadtransferError as exc:
            print(f"{Path(sys.argv[0]).name}: error: {exc}", file=sys.stderr)
            return 1

    return run

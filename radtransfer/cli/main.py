"""The process of the `radtransfer` command: parse, check, read the data, start TensorFlow where the command
needs it, run the subcommand's handler, and end every failure in one line with its exit code."""

from __future__ import annotations

import logging
import os
import sys
import traceback
from pathlib import Path

from . import commands, extras
from .commands import check_run_dir, check_site_options, read_data
from .options import (
    EXIT_FAILURE,
    EXIT_USAGE,
    UsageError,
    build_parser,
    config_defaults,
    grid_options_of,
    in_flags,
    load_config,
    train_config_of,
)

HANDLERS = {
    "audit": commands.cmd_audit,
    "train": commands.cmd_train,
    "evaluate": commands.cmd_evaluate,
    "calibrate": commands.cmd_calibrate,
    "grid": extras.cmd_grid,
    "curve": extras.cmd_curve,
    "layerwise": commands.cmd_layerwise,
    "report": commands.cmd_report,
    "gradcam": commands.cmd_gradcam,
    "predict": extras.cmd_predict,
    "weights": commands.cmd_weights,
    "datasets": commands.cmd_datasets,
    "demo": commands.cmd_demo,
    "card": commands.cmd_card,
}
"""Each subcommand's handler, by name."""


class _StderrHandler(logging.StreamHandler):
    """Writes each record to ``sys.stderr`` as it is when the record comes (not the stream of the first command:
    a later command, or a test capturing stderr, may have replaced it, and the old one may be closed)."""

    def emit(self, record):
        self.stream = sys.stderr
        super().emit(record)


def _show_data_log() -> None:
    """Prints the data pipeline's choices (e.g. where each split is cached, and why) to stderr."""
    logger = logging.getLogger("radtransfer.data")
    if not any(isinstance(handler, _StderrHandler) for handler in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("radtransfer: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def main(argv=None) -> int:
    """Runs the command; returns the exit code (0 ok, 1 failure, 2 usage)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    from ..utils.progress import show

    _show_data_log()
    _show_warnings(parser.commands[args.command])
    show(True)  # a progress bar for every long loop, in a terminal and in a log
    try:
        config = load_config(getattr(args, "config", None))
        if config:  # the second stage of the parse: the file's values as defaults, the flags over them
            subparser = parser.commands[args.command]
            subparser.set_defaults(**config_defaults(subparser, config))
            args = parser.parse_args(argv)
        try:
            _check_arguments(args)
        except ValueError as exc:  # a wrong name or choice is a usage mistake: exit code 2
            raise UsageError(str(exc)) from exc
        read_data(args)
        if args.command == "grid":
            extras.check_shortcut(args)
        if args.command not in LIGHT_COMMANDS:
            _start_tensorflow(quiet=not args.debug)
        return int(HANDLERS[args.command](args) or 0)
    except UsageError as exc:
        _report_error(exc, args, parser)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("radtransfer: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # every failure: one line, unless --debug
        _report_error(exc, args, parser)
        return EXIT_FAILURE


# Commands that need no TensorFlow: they answer without starting it.
LIGHT_COMMANDS = ("report", "datasets", "card", "audit")


def _check_arguments(args) -> None:
    """Names, choices and files, checked before TensorFlow starts, so a typo is answered at once."""
    from ..models.backbones import get_backbone

    run_dir = getattr(args, "run_dir", None)  # the arguments in the order they are typed
    if run_dir is not None:
        check_run_dir(run_dir)
    data = getattr(args, "data", None)
    if data is not None and not data.startswith("tfds:") and not Path(data).expanduser().exists():
        raise UsageError(
            f"DATA not found: '{data}'. Expected a class-folder directory, a CSV manifest, or tfds:NAME[:SPLIT]."
        )
    for image in getattr(args, "images", None) or ():
        if not Path(image).expanduser().exists():
            raise UsageError(f"Image file or folder not found: '{image}'.")
    if args.command == "evaluate":
        check_site_options(args)
    if args.command == "predict":
        extras.check_predict_level(args)
    weights_dir = getattr(args, "weights_dir", None)
    if weights_dir is not None and not Path(weights_dir).expanduser().is_dir():
        raise UsageError(f"--weights-dir '{weights_dir}' is not a folder: pass the folder that holds the .h5 files.")
    if args.command in ("train", "layerwise"):
        get_backbone(args.backbone)
        # every TrainConfig option checked here; layerwise's strategy is each depth's own (this one is replaced)
        args.train_config = train_config_of(args, **({"strategy": "freeze_all"} if args.command == "layerwise" else {}))
        if args.weights not in ("radimagenet", "imagenet", "none") and not Path(args.weights).expanduser().is_file():
            raise UsageError(f"--weights {args.weights}: expected radimagenet, imagenet, none or an existing .h5 file.")
        if args.weights == "radimagenet":  # found now, not after the audit and TensorFlow's start
            from ..models.weights import resolve_weights

            resolve_weights(args.backbone, "radimagenet", weights_dir, download=False)
    if args.command in ("grid", "curve"):
        from ..grid.arms import check_arms
        from ..models.presets import WEIGHT_SOURCES

        for backbone in getattr(args, "backbones", None) or ():
            get_backbone(backbone)
        check_arms(args.sources, WEIGHT_SOURCES)
        args.grid_options = grid_options_of(args)  # every other grid option checked here, once


def _start_tensorflow(quiet: bool) -> None:
    """Imports TensorFlow (when it is Keras's backend) with its C++ log out of sight, unless --debug: its start-up
    lines print before TensorFlow reads its log level, so only the file descriptor can hold them back, and later
    lines follow TF_CPP_MIN_LOG_LEVEL. Should the import fail, what it printed is shown."""
    import tempfile

    if not quiet or os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow" or "tensorflow" in sys.modules:
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # TensorFlow's C++ log; its real errors reach Python as exceptions
    print("radtransfer: starting TensorFlow …", file=sys.stderr, flush=True)
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            import tensorflow as tf

            tf.constant(0)  # the runtime's own start-up lines come with its first operation
        except Exception:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _show_warnings(subparser) -> None:
    """Warnings as one line each, in the command's words (flags, not keyword arguments), with no source file."""
    import warnings

    def show(message, category, filename, lineno, file=None, line=None):
        text = in_flags(str(message), subparser)
        print(f"radtransfer: warning: {text}", file=sys.stderr)

    warnings.showwarning = show


def _report_error(exc, args, parser=None) -> None:
    if getattr(args, "debug", False):
        traceback.print_exc()
    message = str(exc).strip() or type(exc).__name__
    if parser is not None and getattr(args, "command", None) in getattr(parser, "commands", {}):
        message = in_flags(message, parser.commands[args.command])
    lines = message.splitlines()
    first = lines[0]
    more = "" if len(lines) == 1 else "\n" + "\n".join(lines[1:])
    print(f"radtransfer: error: {first}{more}", file=sys.stderr)
    if not getattr(args, "debug", False):
        print("(run with --debug for the traceback)", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())

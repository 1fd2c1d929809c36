"""The command's options: the parser of every subcommand, with ``train``'s options generated from ``TrainConfig``'s
fields, and a ``--config`` file's values as defaults."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

EXIT_FAILURE = 1


EXIT_USAGE = 2


class UsageError(Exception):
    """A command-line mistake (exit code 2)."""


def load_config(path):
    if path is None:
        return {}
    path = Path(path)
    if not path.exists():
        raise UsageError(f"--config file not found: '{path}'.")
    text = path.read_text()
    if path.suffix.lower() in (".yaml", ".yml"):
        from ..utils.optional import require

        try:
            yaml = require("yaml", "yaml", "A YAML --config", package="PyYAML")
        except ImportError as exc:
            raise UsageError(f"{exc} (Or write the config as JSON.)") from None
        values = yaml.safe_load(text) or {}
    else:
        values = json.loads(text)
    if not isinstance(values, dict):
        raise UsageError(f"--config '{path}' must hold a mapping of option names to values.")
    return {str(k).replace("-", "_"): v for k, v in values.items()}


def config_defaults(subparser, config: dict) -> dict:
    """A --config file's values by option: its keys may be an option's name with or without dashes
    ("learning-rate", "lr", "batch_size")."""
    from ..utils.choices import did_you_mean

    names = {}
    for action in subparser._actions:
        for option in (action.dest, *action.option_strings):
            names.setdefault(option.lstrip("-").replace("-", "_"), action.dest)
    unknown = sorted(key for key in config if key not in names)
    if unknown:
        raise UsageError(f"Unknown option(s) {unknown} in --config.{did_you_mean(unknown[0], sorted(names))}")
    return {names[key]: value for key, value in config.items()}


_WORDS = {None: "none", True: "on", False: "off"}  # how choices that are not strings are spelled on the command line


def _train_config_options(parser, skip=()) -> None:
    """One option per TrainConfig field that has a flag (but those in ``skip``): its help, choices and default come
    from the field."""
    import dataclasses

    from ..training.config import TrainConfig

    for field in dataclasses.fields(TrainConfig):
        meta = field.metadata
        if "flag" not in meta or field.name in skip:
            continue
        default = meta["cli_default"] if meta["cli_default"] is not dataclasses.MISSING else field.default
        if field.type in ("bool", bool) and meta["choices"] is None:
            parser.add_argument(meta["flag"], dest=field.name, action="store_true", help=meta["help"])
            continue
        choices = None if meta["choices"] is None else [_WORDS.get(c, c) for c in meta["choices"]]
        parser.add_argument(
            meta["flag"],
            dest=field.name,
            type=meta["type"],
            choices=choices,
            default=_WORDS.get(default, default) if choices else default,
            help=f"{meta['help']} (default: {_WORDS.get(default, default)})",
        )


def train_config_of(args, **fixed):
    """The TrainConfig of ``radtransfer train``'s options (or ``layerwise``'s, with ``fixed`` for the fields it has
    no option for)."""
    import dataclasses

    from ..training.config import TrainConfig

    words = {word: value for value, word in _WORDS.items()}
    values = {}
    for field in dataclasses.fields(TrainConfig):
        if hasattr(args, field.name) and "flag" in field.metadata:
            value = getattr(args, field.name)
            values[field.name] = words.get(value, value) if field.metadata["choices"] is not None else value
    return TrainConfig(**{**values, **fixed})


def _data_options(parser) -> None:
    parser.add_argument("--image-col", default="path", help="CSV column of image paths (default: path)")
    parser.add_argument("--label-col", default="label", help="CSV column of labels (default: label)")
    parser.add_argument(
        "--patient-col",
        default="auto",
        help="CSV column of patient ids (splits go by patient); auto (default): a column named like "
        "PatientID, patient_id, subject, case_id, or the DICOM PatientID tag; none: no patient "
        "ids, split by image",
    )
    parser.add_argument(
        "--missing-labels",
        default="raise",
        choices=("raise", "drop"),
        help="rows of a CSV with an empty label: raise (default: an error naming them) or drop",
    )
    parser.add_argument(
        "--on-bad",
        default="raise",
        choices=("raise", "skip"),
        help="unreadable image files (every part is checked before training): raise (default) or "
        "skip (left out and listed)",
    )


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Help that says each option's default, where it has one worth saying."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "(default" in text or action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        default = " ".join(map(str, action.default)) if isinstance(action.default, list) else action.default
        return f"{text} (default: {default})"


class _Parser(argparse.ArgumentParser):
    """A subcommand's parser: its help says each option's default."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _Help)
        super().__init__(*args, **kwargs)


def _backbones() -> list:
    from ..models.backbones import list_backbones

    return list_backbones()


def _config_option(parser) -> None:
    parser.add_argument("--config", help="YAML or JSON file of defaults (keys: option names; flags override it)")


def _weights_dir_option(parser) -> None:
    parser.add_argument("--weights-dir", help="a folder searched first for weight files")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="radtransfer", description="Transfer learning on medical images with ImageNet and RadImageNet weights."
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    parser.commands = sub.choices  # name -> subparser, for the --config stage of the parse
    _add_audit(sub)
    _add_train(sub)
    _add_evaluate(sub)
    _add_calibrate(sub)
    _add_grid(sub)
    _add_curve(sub)
    _add_layerwise(sub)
    _add_report(sub)
    _add_gradcam(sub)
    _add_predict(sub)
    _add_weights(sub)
    _add_datasets(sub)
    _add_demo(sub)
    _add_card(sub)
    return parser


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="fine-tune one model on DATA, then evaluate it on the test split")
    p.add_argument("data", metavar="DATA", help="class-folder directory, CSV manifest, or tfds:NAME[:SPLIT]")
    _data_options(p)
    _config_option(p)
    _model_options(p)
    _train_config_options(p)
    _split_options(p)
    _label_cols_option(p)
    _audit_options(p, "train")
    p.add_argument(
        "--restart",
        action="store_true",
        help="discard a run already in --out and start over (otherwise it is resumed, or refused if its settings "
        "differ)",
    )
    _verbose_option(p)
    p.add_argument(
        "--json",
        action="store_true",
        help="end with the summary as JSON on stdout (out_dir, best_epoch, best_val_loss, epochs_run, stopped_early, "
        "test) instead of one line; the run folder keeps it all in result.json and test_metrics.json",
    )
    p.add_argument("--out", required=True, help="output folder")


def _label_cols_option(p) -> None:
    """--label-cols: a multi-label CSV manifest (``data.from_csv(..., label_cols=)``); absent from the parsed
    arguments unless given, so a run without it records the same options as before."""
    p.add_argument(
        "--label-cols",
        nargs="+",
        metavar="COL",
        default=argparse.SUPPRESS,
        help="multi-label: DATA's CSV columns of 0/1 labels, one per label (findings that co-occur); train builds a "
        "model of one sigmoid per label (build_model(..., num_labels=K)) instead of --label-col's classes",
    )


def _model_options(p) -> None:
    """The model a run builds: backbone, weights, input size, dropout, preprocessing (``train`` and ``layerwise``)."""
    p.add_argument("--backbone", default="densenet121", help=f"one of {', '.join(_backbones())} (or an alias)")
    p.add_argument("--weights", default="radimagenet", help="radimagenet, imagenet, none, or a .h5 file")
    _weights_dir_option(p)
    p.add_argument("--image-size", type=int, default=256, help="input height and width")
    p.add_argument("--dropout", type=float, default=0.5, help="dropout before the head")
    p.add_argument(
        "--preprocessing", default="auto", help="auto (the weight source's own), radimagenet, caffe, torch or tf"
    )


def _split_options(p) -> None:
    p.add_argument("--val", type=float, default=0.10, help="the share of patients kept for validation")
    p.add_argument("--test", type=float, default=0.15, help="the share of patients kept for the test")


def _verbose_option(p) -> None:
    p.add_argument(
        "--verbose",
        type=lambda text: text if text == "auto" else int(text),
        default="auto",
        choices=("auto", 0, 1, 2),
        help="0 quiet, 1 a progress bar per epoch, 2 a line per epoch (and a line every 30 s inside a long one), "
        "auto: 1 on a terminal, 2 in a log",
    )


def _depth(text: str):
    """A --depths value: a number of stages (0: the head only) or "all"."""
    if text == "all":
        return text
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number of stages ≥ 0 or 'all', got {text!r}")
    return value


def _add_layerwise(sub) -> None:
    p = sub.add_parser(
        "layerwise",
        help="layer-wise fine-tuning (Tajbakhsh et al. 2016): the head only, then one more stage at a time, up to "
        "the whole network, each from the pretrained weights, scored on the validation split",
    )
    p.add_argument("data", metavar="DATA", help="class-folder directory, CSV manifest, or tfds:NAME[:SPLIT]")
    _data_options(p)
    _config_option(p)
    _model_options(p)
    p.add_argument(
        "--depths",
        nargs="+",
        type=_depth,
        help="stages unfrozen from the top, e.g. 0 1 2 all (0: the head only; all: every layer); default: 0, 1, … "
        "every stage, then all",
    )
    _train_config_options(p, skip=("strategy",))
    _split_options(p)
    _audit_options(p, "search")
    _verbose_option(p)
    p.add_argument(
        "--out",
        required=True,
        help="output folder: a run folder per depth (depth_<K>/), the table (layerwise.csv, .md) and the splits",
    )


def _audit_options(parser, what: str) -> None:
    parser.add_argument(
        "--strict",
        action="store_true",
        help=f"refuse to {what} when the data audit finds an error (a patient or the same image in two parts, "
        "the same image under two classes)",
    )
    parser.add_argument("--no-audit", action="store_true", help="skip the data audit (it reads every image once more)")


def _add_audit(sub) -> None:
    p = sub.add_parser(
        "audit",
        help="check DATA before training: duplicates and near duplicates across parts, label conflicts, patient "
        "leaks, empty and unreadable images (exit 1 when an error is found)",
    )
    p.add_argument("data", metavar="DATA", help="class-folder directory, CSV manifest, or a split folder")
    _data_options(p)
    _config_option(p)
    p.add_argument("--val", type=float, default=0.10, help="the share of patients kept for validation (as train)")
    p.add_argument("--test", type=float, default=0.15, help="the share of patients kept for the test (as train)")
    p.add_argument("--seed", type=int, default=726, help="the split's seed (train's and grid's default)")
    p.add_argument("--folds", type=int, default=None, help="audit each of k folds instead (as grid --folds K)")
    p.add_argument("--json", help="write the findings here: a list of {kind, severity, paths, parts, classes, detail}")
    p.add_argument("--workers", type=int, default=4, help="decoding threads")


def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="evaluate a trained run (its best.keras) on DATA")
    p.add_argument("run_dir", metavar="RUN_DIR", help="the out folder of 'radtransfer train' (or a .keras file)")
    p.add_argument("data", metavar="DATA", help="class-folder directory, CSV manifest, or tfds:NAME[:SPLIT]")
    _data_options(p)
    _config_option(p)
    p.add_argument("--bootstrap", type=int, default=1000, help="resamples of the AUC's interval")
    p.add_argument(
        "--seed",
        type=int,
        default=726,
        help="the bootstrap's seed (train's default, so both commands "
        "print the same interval for the same model and data)",
    )
    p.add_argument(
        "--site",
        help="DATA comes from this external site: report the development operating point (and, with "
        "--recalibrate, the refit one) side by side, written to RUN_DIR/external-SITE.json unless --out",
    )
    p.add_argument(
        "--recalibrate",
        metavar="LOCAL_DATA",
        help="with --site: a small labelled local set of the site (other patients than DATA's) to refit the "
        "temperature and threshold on",
    )
    p.add_argument("--out", help="write all metrics as JSON here (and the reliability diagram beside it)")
    _label_cols_option(p)
    _level_options(p)


def _level_options(p) -> None:
    """evaluate's level of scoring: images, or patients or exams made of their images' probabilities."""
    p.add_argument(
        "--level",
        default="image",
        choices=("image", "patient", "exam"),
        help="score each image, or each patient or exam (its images' probabilities aggregated; the interval "
        "resamples patients)",
    )
    p.add_argument(
        "--aggregate",
        default="mean",
        choices=("mean", "max", "noisy_or"),
        help="with --level patient|exam: a unit's probability of the positive class is the mean, max or noisy-or "
        "(1 - prod(1 - p)) of its images' (max and noisy_or: two classes only)",
    )
    p.add_argument("--exam-col", help="CSV column of exam ids (for --level exam)")
    p.add_argument(
        "--val-data",
        metavar="VAL_DATA",
        help="with --level patient|exam: labelled validation data (e.g. RUN_DIR/split_val.csv) to choose the "
        "threshold on at that level (else the model's image-level threshold is applied, with a warning)",
    )


def _add_calibrate(sub) -> None:
    p = sub.add_parser(
        "calibrate", help="fit a trained run's temperature on held-out labelled DATA and save it with the model"
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="the out folder of 'radtransfer train' (or a .keras file)")
    p.add_argument(
        "data",
        metavar="DATA",
        help="labelled validation data (e.g. RUN_DIR/split_val.csv): class-folder directory, CSV manifest, or "
        "tfds:NAME[:SPLIT]",
    )
    _data_options(p)
    _config_option(p)
    p.add_argument("--batch-size", type=int, default=32, help="images per batch")
    p.add_argument(
        "--allow-test",
        action="store_true",
        help="fit on DATA even where it holds images of the run's test split (refused otherwise; the model card "
        "flags it)",
    )


def _field_option(parser, config_class, name: str) -> None:
    """The option of one field of ``GridOptions`` or ``CurveOptions``: its flag, help, type, choices, default and
    argparse extras (nargs, metavar, action) come from the field's metadata."""
    import dataclasses

    field = next(f for f in dataclasses.fields(config_class) if f.name == name)
    meta = dict(field.metadata)
    flag, help_text, kind, choices, cli_default = (
        meta.pop(k) for k in ("flag", "help", "type", "choices", "cli_default")
    )
    if meta.get("action") == "store_true":
        parser.add_argument(flag, dest=name, help=help_text, **meta)
        return
    default = cli_default if cli_default is not dataclasses.MISSING else field.default
    default = list(default) if isinstance(default, tuple) else default
    kind = None if kind is str else kind
    parser.add_argument(flag, dest=name, type=kind, choices=choices, default=default, help=help_text, **meta)


def grid_options_of(args):
    """The GridOptions (``grid``) or CurveOptions (``curve``) of the command's options: every field with a flag,
    and --on-bad, --strict and --no-audit; one check of them all, before TensorFlow starts."""
    import dataclasses

    from ..grid.arms import with_preprocessings
    from ..grid.options import CurveOptions, GridOptions

    config_class = GridOptions if args.command == "grid" else CurveOptions
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(config_class) if "flag" in f.metadata}
    if getattr(args, "preprocessings", None):
        values["sources"] = with_preprocessings(args.sources, args.preprocessings)
    audit = "off" if args.no_audit else "strict" if args.strict else "warn"
    return config_class(**values, on_bad=args.on_bad, audit=audit, verbose=1)


def _run_options(p, config_class, names) -> None:
    """Options of a grid's runs, in this order, from ``config_class``'s fields."""
    for name in names:
        _field_option(p, config_class, name)


def _protocol_options(p, cache_help: str, seed_help: str) -> None:
    """The ProtocolConfig settings a grid or a curve may change (the paper's by default)."""
    from ..grid.paper import RADIMAGENET

    p.add_argument("--cache", default=RADIMAGENET.cache, help=cache_help)
    p.add_argument("--epochs", type=int, default=RADIMAGENET.epochs, help="epochs per run (the paper's)")
    p.add_argument("--image-size", type=int, default=RADIMAGENET.image_size, help="input size (the paper's)")
    p.add_argument("--batch-size", type=int, default=RADIMAGENET.batch_size, help="images per batch (the paper's)")
    p.add_argument("--seed", type=int, default=RADIMAGENET.seed, help=seed_help)
    p.add_argument("--run-eagerly", action="store_true", help="no graph tracing (tiny smoke tests only)")


_EXECUTION = ("shard", "shard_count", "executor", "address", "gpus_per_run", "cpus_per_run", "faithful", "weights_dir")


def _add_grid(sub) -> None:
    from ..grid.options import GridOptions

    p = sub.add_parser("grid", help="run the paper's 24-scenario grid per weight source on DATA")
    p.add_argument("data", metavar="DATA", help="class-folder directory, CSV manifest, or tfds:NAME[:SPLIT]")
    _data_options(p)
    _config_option(p)
    p.add_argument("--out", required=True, help="grid folder")
    _field_option(p, GridOptions, "sources")
    p.add_argument(
        "--preprocessings",
        nargs="+",
        choices=("corrected", "faithful"),
        help="run every source with each of these preprocessings, as paired arms (corrected faithful: test the "
        "reference's preprocessing against the corrected one in one grid)",
    )
    p.add_argument("--backbones", nargs="+", help=f"only these backbones ({', '.join(_backbones())})")
    p.add_argument(
        "--max-scenarios", type=int, help="only the first N scenarios (of --backbones', if given): a quick look"
    )
    _run_options(p, GridOptions, ("folds", "repeats", "image_sizes"))
    p.add_argument(
        "--shortcut",
        type=float,
        metavar="SHARE",
        default=argparse.SUPPRESS,
        help="the shortcut test (protocol.shortcut_test) instead of the plain grid: a marker on SHARE (0 to 1) of "
        "the positive images; every run's best model scored on its test images marked, clean and reversed, the "
        "table in shortcut.csv and .md (two classes)",
    )
    _audit_options(p, "run the grid")
    _run_options(p, GridOptions, (*_EXECUTION, "task", "paper_task"))
    _protocol_options(
        p,
        "auto (memory if it fits, else a file per split, else none), memory, none, or a file path prefix for a disk "
        "cache",
        "the grid's seed (the paper's)",
    )


def _add_curve(sub) -> None:
    from ..grid.options import CurveOptions

    p = sub.add_parser(
        "curve", help="learning curve: test AUC against nested shares of the training patients, per weight source"
    )
    p.add_argument("data", metavar="DATA", help="class-folder directory, CSV manifest, or tfds:NAME[:SPLIT]")
    _data_options(p)
    _config_option(p)
    p.add_argument("--out", required=True, help="the curve's folder (one grid per share in fraction<f>/)")
    _run_options(p, CurveOptions, ("fractions", "sources", "backbone", "strategy", "learning_rate", "folds", "repeats"))
    _audit_options(p, "run the curve")
    _run_options(p, CurveOptions, (*_EXECUTION, "task"))
    _protocol_options(p, "as for grid", "the split's and runs' seed (the paper's)")


def _add_report(sub) -> None:
    p = sub.add_parser("report", help="tables (md, csv, tex) and figures of a grid folder")
    p.add_argument("grid_dir", metavar="GRID_DIR", help="a grid folder, or a folder of grids")
    p.add_argument(
        "--formats", nargs="+", default=["md", "csv", "tex"], choices=("md", "csv", "tex"), help="table formats"
    )
    p.add_argument(
        "--equivalence-margin",
        type=float,
        default=None,
        help="M: also test whether the paired AUC difference is equivalent to 0 within ±M (two one-sided tests)",
    )
    _config_option(p)


def _add_gradcam(sub) -> None:
    p = sub.add_parser("gradcam", help="Grad-CAM overlays of a trained run on images")
    p.add_argument("run_dir", metavar="RUN_DIR", help="the out folder of 'radtransfer train' (or a .keras file)")
    p.add_argument("images", metavar="IMAGE", nargs="+", help="image files or folders")
    p.add_argument("--out", default="gradcam", help="folder of the overlays")
    p.add_argument("--layer", help="backbone layer (default: the last convolutional activation)")
    p.add_argument("--class-index", type=int, help="class to explain (default: the predicted one)")
    _config_option(p)


def _add_predict(sub) -> None:
    p = sub.add_parser("predict", help="class probabilities of new images (read as in training) into a CSV")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder (holding best.keras) or a .keras file")
    p.add_argument(
        "images",
        metavar="PATH",
        nargs="+",
        help="image files, folders (DICOM series in instance order) or CSV manifests",
    )
    p.add_argument("--out", default="predictions.csv", help="the CSV written")
    p.add_argument("--batch-size", type=int, default=32, help="images per batch")
    p.add_argument("--image-col", default="path", help="CSV column of image paths")
    p.add_argument("--patient-col", default=None, help="CSV column of patient ids")
    p.add_argument("--gradcam", metavar="DIR", help="also write a Grad-CAM overlay per image into DIR")
    p.add_argument(
        "--on-bad",
        choices=("raise", "skip"),
        default="raise",
        help="unreadable files: raise, or skip (they keep a row, with the reason in its error column)",
    )
    p.add_argument(
        "--level",
        choices=("patient", "exam"),
        help="also write a CSV of one row per patient or exam (its images' probabilities aggregated) beside --out: "
        "OUT-patient.csv or OUT-exam.csv",
    )
    p.add_argument(
        "--aggregate",
        choices=("mean", "max", "noisy_or"),
        help="with --level: a unit's probability of the positive class is the mean (default), max or noisy-or of "
        "its images' (max and noisy_or: two classes only)",
    )
    p.add_argument("--exam-col", help="with --level exam: the column of exam ids of the PATH CSV manifests")
    _config_option(p)


def _add_weights(sub) -> None:
    p = sub.add_parser("weights", help="list the weight files found (with sha256 and match), or check one")
    p.add_argument("action", nargs="?", default="list", choices=("list", "check"), help="list, or check a file")
    p.add_argument("file", nargs="?", help="the file, for 'check'")
    p.add_argument("--backbone", help=f"the backbone, for 'check': {', '.join(_backbones())}")
    _weights_dir_option(p)
    _config_option(p)


def _add_datasets(sub) -> None:
    p = sub.add_parser("datasets", help="write the built-in demo data")
    p.add_argument("kind", choices=("synthetic",), help="synthetic: four-class brain-tumour MRI phantoms")
    p.add_argument("out", metavar="OUT", help="the folder written")
    p.add_argument("--patients", type=int, default=40, help="patients, spread over the four classes")
    p.add_argument("--slices", type=int, default=4, help="slices per patient")
    p.add_argument("--size", type=int, default=128, help="image height and width")
    p.add_argument("--seed", type=int, default=0, help="the generator's seed")
    _config_option(p)


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="the whole path on the demo data: data, training, evaluation, report")
    p.add_argument("--out", default="demo_output", help="the folder written")
    p.add_argument("--quick", action="store_true", help="a tiny run (a smoke test)")
    _weights_dir_option(p)
    _config_option(p)


def _add_card(sub) -> None:
    p = sub.add_parser("card", help="the model card (MODEL_CARD.md, model_card.json) of a run or grid folder")
    p.add_argument("folder", metavar="RUN_DIR", help="the out folder of 'radtransfer train' (or of 'radtransfer grid')")
    p.add_argument("--out", help="the folder written (default: RUN_DIR)")
    _config_option(p)


def _version() -> str:
    from ..version import __version__

    return f"radtransfer {__version__}"


def in_flags(message: str, subparser=None) -> str:
    """A library message in the command's words: "missing_labels='drop' (command line: --missing-labels drop)"
    becomes "--missing-labels drop", and a keyword argument of this command, ``weights_dir=`` or
    ``on_bad='skip'``, or ``Expected repeats to be``, becomes its flag (without a subparser, only the first)."""
    import re

    message = re.sub(r"\S+=\S+ \((?:command line|CLI): ([^)]+)\)", r"\1", message)
    message = re.sub(r"data\.from_(?:split_)?directory\(('[^']*')\)", r"DATA \1", message)
    for action in getattr(subparser, "_actions", ()):
        flags = [o for o in action.option_strings if o.startswith("--")]
        if not flags or action.dest in ("help", "config"):
            continue
        value = r"(?:'([^']*)'|\"([^\"]*)\"|(None|True|False|[\w./~-]+))"
        message = re.sub(
            rf"\b{re.escape(action.dest)}={value}",
            lambda m: f"{flags[0]} {(m.group(1) or m.group(2) or m.group(3) or '').replace('None', 'none')}",
            message,
        )
        message = re.sub(rf"\b{re.escape(action.dest)}=(?=[\s,.)]|$)", flags[0], message)
        message = re.sub(rf"\bExpected {re.escape(action.dest)} to be\b", f"Expected {flags[0]} to be", message)
        message = re.sub(rf"\({re.escape(action.dest)}\)", f"({flags[0]})", message)
    return message

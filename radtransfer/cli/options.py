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


def _train_config_options(parser) -> None:
    """One option per TrainConfig field that has a flag: its help, choices and default come from the field."""
    import dataclasses

    from ..training.config import TrainConfig

    for field in dataclasses.fields(TrainConfig):
        meta = field.metadata
        if "flag" not in meta:
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


def train_config_of(args):
    """The TrainConfig of ``radtransfer train``'s options."""
    import dataclasses

    from ..training.config import TrainConfig

    words = {word: value for value, word in _WORDS.items()}
    values = {}
    for field in dataclasses.fields(TrainConfig):
        if hasattr(args, field.name) and "flag" in field.metadata:
            value = getattr(args, field.name)
            values[field.name] = words.get(value, value) if field.metadata["choices"] is not None else value
    return TrainConfig(**values)


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
    p.add_argument("--backbone", default="densenet121", help=f"one of {', '.join(_backbones())} (or an alias)")
    p.add_argument("--weights", default="radimagenet", help="radimagenet, imagenet, none, or a .h5 file")
    _weights_dir_option(p)
    p.add_argument("--image-size", type=int, default=256, help="input height and width")
    p.add_argument("--dropout", type=float, default=0.5, help="dropout before the head")
    p.add_argument(
        "--preprocessing", default="auto", help="auto (the weight source's own), radimagenet, caffe, torch or tf"
    )
    _train_config_options(p)
    p.add_argument("--val", type=float, default=0.10, help="the share of patients kept for validation")
    p.add_argument("--test", type=float, default=0.15, help="the share of patients kept for the test")
    _audit_options(p, "train")
    p.add_argument(
        "--restart",
        action="store_true",
        help="discard a run already in --out and start over (otherwise it is resumed, or refused if its settings "
        "differ)",
    )
    p.add_argument(
        "--verbose",
        type=lambda text: text if text == "auto" else int(text),
        default="auto",
        choices=("auto", 0, 1, 2),
        help="0 quiet, 1 a progress bar per epoch, 2 a line per epoch (and a line every 30 s inside a long one), "
        "auto: 1 on a terminal, 2 in a log",
    )
    p.add_argument("--out", required=True, help="output folder")


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


def _add_grid(sub) -> None:
    p = sub.add_parser("grid", help="run the paper's 24-scenario grid per weight source on DATA")
    from ..grid.paper import RADIMAGENET

    p.add_argument("data", metavar="DATA", help="class-folder directory, CSV manifest, or tfds:NAME[:SPLIT]")
    _data_options(p)
    _config_option(p)
    p.add_argument("--out", required=True, help="grid folder")
    p.add_argument(
        "--sources",
        nargs="+",
        default=["radimagenet", "imagenet"],
        help="the weight sources to compare; SOURCE@faithful or SOURCE@corrected feeds that source the reference's or "
        "its own preprocessing, as an arm of its own",
    )
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
    p.add_argument("--folds", type=int, default=None, help="k-fold cross-validation instead of the 75/10/15 split")
    p.add_argument(
        "--repeats",
        type=int,
        default=1,
        metavar="R",
        help="runs per source, scenario and fold (default 1), each with its own seed on the fold's split; the "
        "sources share each repeat's seed, so they stay paired. Rerun with a larger R to add repeats",
    )
    _audit_options(p, "run the grid")
    p.add_argument(
        "--shard",
        help="k/n: run a disjoint share of the runs; auto: this SLURM array task's or "
        "Kubernetes Indexed Job pod's share",
    )
    p.add_argument("--shard-count", type=int, help="with --shard auto on Kubernetes: the Job's completions")
    p.add_argument(
        "--executor",
        choices=("sequential", "ray"),
        default="sequential",
        help="sequential (default): one run after another here; ray: each run a Ray task, one per GPU "
        "(needs radtransfer[ray])",
    )
    p.add_argument(
        "--address",
        help="with --executor ray: the cluster (auto, head:6379 or ray://head:10001); "
        "default $RAY_ADDRESS, else Ray started on this machine",
    )
    p.add_argument("--gpus-per-run", type=float, help="with --executor ray (default 1 where there are GPUs)")
    p.add_argument("--cpus-per-run", type=float, help="with --executor ray (default: CPUs per GPU, or a whole node)")
    p.add_argument(
        "--faithful", action="store_true", help="reproduce the reference's preprocessing, resizing, BatchNorm"
    )
    _weights_dir_option(p)
    p.add_argument("--task", help="task name for the report (default: the out folder's name)")
    p.add_argument(
        "--paper-task",
        default="auto",
        help="the paper's task to compare with (thyroid, breast, acl, meniscus, pneumonia, covid19, "
        "sars_cov_2, haemorrhage), 'none', or 'auto' (a word of the task name; default)",
    )
    p.add_argument(
        "--cache",
        default=RADIMAGENET.cache,
        help="auto (memory if it fits, else a file per split, else none), memory, none, or a file path prefix for "
        "a disk cache",
    )
    p.add_argument("--epochs", type=int, default=RADIMAGENET.epochs, help="epochs per run (the paper's)")
    p.add_argument("--image-size", type=int, default=RADIMAGENET.image_size, help="input size (the paper's)")
    p.add_argument("--batch-size", type=int, default=RADIMAGENET.batch_size, help="images per batch (the paper's)")
    p.add_argument("--seed", type=int, default=RADIMAGENET.seed, help="the grid's seed (the paper's)")
    p.add_argument("--run-eagerly", action="store_true", help="no graph tracing (tiny smoke tests only)")


def _add_curve(sub) -> None:
    p = sub.add_parser(
        "curve", help="learning curve: test AUC against nested shares of the training patients, per weight source"
    )
    from ..grid.curve import DEFAULT_FRACTIONS
    from ..grid.paper import RADIMAGENET

    p.add_argument("data", metavar="DATA", help="class-folder directory, CSV manifest, or tfds:NAME[:SPLIT]")
    _data_options(p)
    _config_option(p)
    p.add_argument("--out", required=True, help="the curve's folder (one grid per share in fraction<f>/)")
    p.add_argument(
        "--fractions",
        nargs="+",
        type=float,
        default=list(DEFAULT_FRACTIONS),
        help="shares of the training patients, increasing, each in (0, 1]; val and test stay whole",
    )
    p.add_argument(
        "--sources",
        nargs="+",
        default=["radimagenet", "imagenet", "none"],
        help="weight sources; none: random initialisation (full training)",
    )
    p.add_argument("--backbone", default="resnet50", help=f"the network ({', '.join(_backbones())})")
    p.add_argument(
        "--strategy",
        default="unfreeze_all",
        choices=("unfreeze_all", "unfreeze_top10", "freeze_all"),
        help="the pretrained sources' strategy (random initialisation always trains every layer)",
    )
    p.add_argument("--learning-rate", type=float, help="default: the paper's first rate for the strategy")
    p.add_argument("--folds", type=int, default=None, help="k-fold cross-validation instead of the 75/10/15 split")
    p.add_argument("--repeats", type=int, default=1, metavar="R", help="runs per source, share and fold")
    _audit_options(p, "run the curve")
    p.add_argument("--shard", help="k/n: a disjoint share of every grid's runs; auto: from SLURM or Kubernetes")
    p.add_argument("--shard-count", type=int, help="with --shard auto on Kubernetes: the Job's completions")
    p.add_argument("--executor", choices=("sequential", "ray"), default="sequential", help="as for grid")
    p.add_argument("--address", help="with --executor ray: the cluster")
    p.add_argument("--gpus-per-run", type=float, help="with --executor ray")
    p.add_argument("--cpus-per-run", type=float, help="with --executor ray")
    p.add_argument(
        "--faithful", action="store_true", help="reproduce the reference's preprocessing, resizing, BatchNorm"
    )
    _weights_dir_option(p)
    p.add_argument("--task", help="task name stored with the records (default: the out folder's name)")
    p.add_argument("--cache", default=RADIMAGENET.cache, help="as for grid")
    p.add_argument("--epochs", type=int, default=RADIMAGENET.epochs, help="epochs per run (the paper's)")
    p.add_argument("--image-size", type=int, default=RADIMAGENET.image_size, help="input size (the paper's)")
    p.add_argument("--batch-size", type=int, default=RADIMAGENET.batch_size, help="images per batch (the paper's)")
    p.add_argument("--seed", type=int, default=RADIMAGENET.seed, help="the split's and runs' seed (the paper's)")
    p.add_argument("--run-eagerly", action="store_true", help="no graph tracing (tiny smoke tests only)")


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
    ``on_bad='skip'``, becomes its flag (without a subparser, only the first)."""
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
        message = re.sub(rf"\({re.escape(action.dest)}\)", f"({flags[0]})", message)
    return message

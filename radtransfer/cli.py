"""The `radtransfer` command (also `python -m radtransfer`)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from pathlib import Path

EXIT_FAILURE = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """A command-line mistake (exit code 2)."""


# -- shared pieces -----------------------------------------------------------------------------


def load_data(
    spec: str, image_col="path", label_col="label", patient_col="auto", tfds_split=None, missing_labels="raise"
):
    """DATA: a class-folder directory, a CSV manifest, or tfds:NAME[:SPLIT]. Patient ids come from
    ``patient_col`` ("auto": a column named like PatientID, or the DICOM PatientID tag; "none": no ids)."""
    from . import data

    patients = None if patient_col in (None, "none") else patient_col
    if spec.startswith("tfds:"):
        parts = spec.split(":")
        name = parts[1]
        split = parts[2] if len(parts) > 2 else (tfds_split or "train")
        return data.from_tfds(name, split=split)
    path = Path(spec).expanduser()
    if path.is_dir() and data.is_split_directory(path):
        parts = sorted(p.name for p in path.iterdir() if p.is_dir())
        example = next((p for p in parts if p.lower() in ("test", "testing")), parts[-1])
        raise UsageError(
            f"DATA '{spec}' is split already ({', '.join(f'{p}/' for p in parts)}), and this command reads one set "
            f"of images: give one part (e.g. '{path / example}') or a CSV manifest listing every part's files "
            "(train takes a split folder whole)."
        )
    if path.is_dir():
        manifest = path / "manifest.csv"
        if manifest.exists():  # e.g. the demo data: images/, masks/ and manifest.csv
            return data.from_csv(
                manifest, image_col=image_col, label_col=label_col, patient_col=patients, missing_labels=missing_labels
            )
        return data.from_directory(path, patient_ids="auto" if patients else None)
    if path.suffix.lower() == ".csv":
        _refuse_volume_manifest(path)
        return data.from_csv(
            path, image_col=image_col, label_col=label_col, patient_col=patients, missing_labels=missing_labels
        )
    if not path.exists():
        raise UsageError(
            f"DATA not found: '{spec}'. Expected a class-folder directory, a CSV manifest, or tfds:NAME[:SPLIT]."
        )
    raise UsageError(f"DATA '{spec}' is neither a folder nor a .csv file (nor tfds:NAME).")


VOLUME_SUFFIXES = (".nii", ".nii.gz", ".mgz", ".mgh", ".mnc")


def _refuse_volume_manifest(path: Path) -> None:
    """A CSV listing 3D volumes is refused in one line: the command reads 2D images, the library reads volumes."""
    import pandas as pd

    try:
        frame = pd.read_csv(path, dtype=str, nrows=50)
    except Exception:  # from_csv says what is wrong with the file
        return
    for column in frame.columns:
        values = frame[column].dropna().str.strip().str.lower()
        if len(values) and values.str.endswith(VOLUME_SUFFIXES).all():
            raise UsageError(
                f"DATA '{path}' lists NIfTI volumes (column '{column}'), and the command reads 2D images: read their "
                "slices in Python with radtransfer.data.from_volumes and pass that ImageSet to fine_tune, run_grid or "
                "predict (docs/data.md, 'Volumes')."
            )


def _say_patients(image_set, args) -> None:
    """One line on what the split goes by, so a split by image is never silent."""
    if image_set.patient_ids is not None:
        print(
            f"DATA: {len(image_set)} images of {len(set(image_set.patient_ids))} patients; parts are split by patient.",
            file=sys.stderr,
        )
    elif getattr(args, "patient_col", "auto") in (None, "none"):
        print(f"DATA: {len(image_set)} images; --patient-col none: parts are split by image.", file=sys.stderr)
    else:
        print(
            f"DATA: {len(image_set)} images and no patient ids found (no column named like PatientID, no DICOM "
            "PatientID): parts are split by image, so one patient's images may fall in two parts. Name the "
            "column with --patient-col.",
            file=sys.stderr,
        )


def train_val_test(spec: str, args):
    """DATA's (train, val, test): its own parts when the folder is split already (Training/ and Testing/,
    train/val/test; --test is then ignored, and val comes from train when there is no val part), else a
    patient-level split by --val and --test."""
    from . import data

    path = Path(spec).expanduser()
    if not spec.startswith("tfds:") and data.is_split_directory(path):
        parts = data.from_split_directory(path)
        if "test" not in parts:
            raise UsageError(f"'{path}' is split already but has no test part (test/ or Testing/).")
        train = parts["train"]
        if "val" in parts:
            return train, parts["val"], parts["test"]
        train, val, _ = train.split(val=args.val, test=0.0, seed=args.seed)
        print(
            f"DATA is split already: training on {path}/…train part, validation from it ({len(val)} images), "
            f"test on its test part ({len(parts['test'])} images).",
            file=sys.stderr,
        )
        return train, val, parts["test"]
    image_set = load_data(spec, args.image_col, args.label_col, args.patient_col, missing_labels=args.missing_labels)
    _say_patients(image_set, args)
    by = "patient" if image_set.patient_ids is not None else "image"  # a split by image was said above
    return image_set.split(val=args.val, test=args.test, seed=args.seed, by=by)


def check_parts(parts: dict, on_bad: str, out=None) -> dict:
    """Checks every part's files before anything is trained; with on_bad="skip", leaves the bad ones out of
    their part (the split of the others is unchanged, so a rerun is the same run) and lists them in
    ``out/skipped_files.csv``."""
    import warnings

    from .data import check_images
    from .training.run_folder import SKIPPED_FILES

    checked, skipped = {}, []
    for name, part in parts.items():
        if len(part) == 0:
            checked[name] = part
            continue
        with warnings.catch_warnings():  # listed below, once
            warnings.simplefilter("ignore", UserWarning)
            checked[name], bad = check_images(part, on_bad, part=name)
        skipped += [(name, path, reason) for path, reason in bad]
    if skipped:
        print(
            f"radtransfer: warning: skipped {len(skipped)} unreadable file(s) (--on-bad skip)"
            + (f", listed in {Path(out) / SKIPPED_FILES}" if out is not None else "")
            + ":\n"
            + "\n".join(f"  {n}: {p}: {r}" for n, p, r in skipped[:20]),
            file=sys.stderr,
        )
        if out is not None:
            import csv

            Path(out).mkdir(parents=True, exist_ok=True)
            with open(Path(out) / SKIPPED_FILES, "w", newline="") as handle:
                csv.writer(handle).writerows([("part", "path", "reason"), *skipped])
    return checked


def _load_config(path):
    if path is None:
        return {}
    path = Path(path)
    if not path.exists():
        raise UsageError(f"--config file not found: '{path}'.")
    text = path.read_text()
    if path.suffix.lower() in (".yaml", ".yml"):
        from .utils.optional import require

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


def _config_defaults(subparser, config: dict) -> dict:
    """A --config file's values by option: its keys may be an option's name with or without dashes
    ("learning-rate", "lr", "batch_size")."""
    from .utils.choices import did_you_mean

    names = {}
    for action in subparser._actions:
        for option in (action.dest, *action.option_strings):
            names.setdefault(option.lstrip("-").replace("-", "_"), action.dest)
    unknown = sorted(key for key in config if key not in names)
    if unknown:
        raise UsageError(f"Unknown option(s) {unknown} in --config.{did_you_mean(unknown[0], sorted(names))}")
    return {names[key]: value for key, value in config.items()}


def _write_resolved(out_dir, args) -> None:
    from .training.run_folder import CLI_CONFIG
    from .utils.io import write_json_atomic

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    values = {k: v for k, v in vars(args).items() if k not in ("func", "debug")}
    write_json_atomic(out / CLI_CONFIG, values)


def _print_json(payload) -> None:
    from .utils.io import dumps_strict

    print(dumps_strict(payload, indent=2, ensure_ascii=False))  # strict: often piped into a .json file


def _summary_metrics(metrics: dict) -> dict:
    """What the command prints of evaluate's metrics: the interval with how it was made and on how many patients
    (train and evaluate print the same interval for the same model and data, since both use the same seed)."""
    from .evaluation.metrics import describe_interval

    keys = (
        "n",
        "n_patients",
        "auc",
        "auc_ci",
        "accuracy",
        "balanced_accuracy",
        "sensitivity",
        "specificity",
        "confusion_matrix",
    )
    summary = {k: metrics[k] for k in keys if k in metrics}
    if metrics:
        summary["auc_ci_is"] = describe_interval(metrics)
    return summary


# -- subcommands ------------------------------------------------------------------------------


def cmd_train(args) -> int:
    from . import build_model, evaluate, fine_tune
    from .training.run_folder import SPLIT_FILES, TEST_METRICS

    train, val, test = args.parts
    out = Path(args.out)
    _write_resolved(out, args)
    parts = check_parts({"train": train, "val": val, "test": test}, args.on_bad, out)
    train, val, test = parts["train"], parts["val"], parts["test"]
    image_set = train
    size = args.image_size
    model = build_model(
        args.backbone,
        weights=None if args.weights == "none" else args.weights,
        num_classes=image_set.num_classes,
        input_shape=(size, size, 3),
        dropout=args.dropout,
        preprocessing=args.preprocessing,
        weights_dir=args.weights_dir,
    )
    for name, part in (("train", train), ("val", val), ("test", test)):
        _write_split(out / SPLIT_FILES[name], part)
    result = fine_tune(model, train, val, args.train_config, out_dir=out, verbose=args.verbose, resume=not args.restart)
    metrics = evaluate(model, test, seed=args.seed) if len(test) else {}
    if metrics:
        from .utils.io import write_json_atomic

        write_json_atomic(out / TEST_METRICS, metrics)
    _print_json(
        {
            "out_dir": str(out),
            "best_epoch": result.best_epoch,
            "best_val_loss": result.best_val_loss,
            "test": _summary_metrics(metrics),
        }
    )
    return 0


def _audit_parts(parts: dict, out: Path, args) -> None:
    """The data audit of train's parts: its summary and errors printed, its findings in the run folder; with
    --strict, its errors refuse the run."""
    from .data.audit import AUDIT_FILE, audit

    report = audit(parts)
    report.write_json(out / AUDIT_FILE)
    print(f"radtransfer: data audit: {report.summary()} ({out / AUDIT_FILE})", file=sys.stderr)
    for line in report.finding_lines(max_rows=10):
        print(f"  {line}", file=sys.stderr)
    if args.strict:
        report.raise_if_errors(f"DATA '{args.data}'", out / AUDIT_FILE)


def cmd_audit(args) -> int:
    from .data.audit import audit_splits

    if args.folds:
        splits = list(args.image_set.kfold(args.folds, seed=args.seed, val=args.val))
    else:
        splits = [args.parts]
    report = audit_splits(splits, workers=args.workers)
    print(report.table(max_rows=50))
    if args.json:
        report.write_json(args.json)
        print(f"findings written to {args.json}")
    return EXIT_FAILURE if report.errors else 0


def _write_split(path, image_set) -> None:
    import pandas as pd

    names = image_set.image_names()  # paths; in-memory images (tfds) by their names
    frame = pd.DataFrame({"path": names, "label": [image_set.class_names[i] for i in image_set.labels]})
    if image_set.patient_ids is not None:
        frame["patient_id"] = image_set.patient_ids
    frame.to_csv(path, index=False)


# -- train's options: the fields of TrainConfig ----------------------------------------------------------------

_WORDS = {None: "none", True: "on", False: "off"}  # how choices that are not strings are spelled on the command line


def _train_config_options(parser) -> None:
    """One option per TrainConfig field that has a flag: its help, choices and default come from the field."""
    import dataclasses

    from .training.config import TrainConfig

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


def _train_config(args):
    """The TrainConfig of ``radtransfer train``'s options."""
    import dataclasses

    from .training.config import TrainConfig

    words = {word: value for value, word in _WORDS.items()}
    values = {}
    for field in dataclasses.fields(TrainConfig):
        if hasattr(args, field.name) and "flag" in field.metadata:
            value = getattr(args, field.name)
            values[field.name] = words.get(value, value) if field.metadata["choices"] is not None else value
    return TrainConfig(**values)


def _check_run_dir(run_dir) -> None:
    from .training.run_folder import BEST_MODEL

    path = Path(run_dir)
    if not (path / BEST_MODEL).exists() and not (path.is_file() and path.suffix == ".keras"):
        raise UsageError(
            f"No trained model in '{run_dir}' (expected {BEST_MODEL}); pass the out dir of 'radtransfer train'."
        )


def _load_run_model(run_dir):
    from .training.run_folder import load_trained

    _check_run_dir(run_dir)
    return load_trained(Path(run_dir))


def cmd_evaluate(args) -> int:
    from . import evaluate
    from .errors import ClassMismatchError
    from .evaluation.external import external_file, side_by_side

    parts = {"data": args.image_set}
    if args.recalibrate_set is not None:
        parts["recalibrate"] = args.recalibrate_set
    _check_data_classes(args.run_dir, parts)
    model = _load_run_model(args.run_dir)
    parts = check_parts(parts, args.on_bad)
    try:
        result = evaluate(
            model,
            parts["data"],
            bootstrap=args.bootstrap,
            seed=args.seed,
            site=args.site,
            recalibrate=parts.get("recalibrate"),
        )
    except ClassMismatchError as exc:  # the data given do not fit the model: a usage mistake
        raise UsageError(str(exc)) from None
    out = Path(args.out) if args.out else None
    if out is None and args.site is not None:
        out = _run_folder_of(args.run_dir) / external_file(args.site)
    written = _write_evaluation(out, result, args.site)
    if args.site is None:
        _print_json({**_evaluation_summary(result), **({"written": written} if written else {})})
        return 0
    print(side_by_side(result), file=sys.stderr)
    summary = {
        "site": result["site"],
        "development": _evaluation_summary(result["development"]),
        "recalibrated": _evaluation_summary(result["recalibrated"]) if result["recalibrated"] else None,
        "recalibration": result["recalibration"],
        "written": written,
    }
    _print_json(summary)
    return 0


def _check_site_options(args) -> None:
    """evaluate's --site and --recalibrate, checked before TensorFlow starts."""
    from .evaluation.external import check_site

    if args.recalibrate is not None and args.site is None:
        raise UsageError("--recalibrate needs --site (the external site DATA and the local set come from).")
    if args.site is not None:
        try:
            check_site(args.site)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    local = args.recalibrate
    if local is not None and not local.startswith("tfds:") and not Path(local).expanduser().exists():
        raise UsageError(
            f"--recalibrate LOCAL_DATA not found: '{local}'. Expected a class-folder directory, a CSV manifest, or "
            "tfds:NAME[:SPLIT]."
        )


def _read_local_data(args):
    """evaluate's --recalibrate set (None without one), read with DATA's options."""
    if args.recalibrate is None:
        return None
    local = load_data(
        args.recalibrate, args.image_col, args.label_col, args.patient_col, missing_labels=args.missing_labels
    )
    print(f"--recalibrate: {len(local)} local images to refit the temperature and threshold on.", file=sys.stderr)
    return local


def _check_data_classes(run_dir, parts: dict) -> None:
    """Refuses data whose classes differ from those the model was trained on (read from its file's metadata,
    before the model is loaded)."""
    from .evaluation.metrics import class_mismatch
    from .models.trained import read_trained_info
    from .training.run_folder import BEST_MODEL

    path = Path(run_dir)
    trained = read_trained_info(path / BEST_MODEL if path.is_dir() else path).get("class_names")
    for name, image_set in parts.items():
        mismatch = class_mismatch(trained, image_set.class_names)
        if mismatch:
            flag = "DATA" if name == "data" else "--recalibrate LOCAL_DATA"
            raise UsageError(f"{flag}: {mismatch}")


def _run_folder_of(run_dir) -> Path:
    path = Path(run_dir)
    return path if path.is_dir() else path.parent


def _write_evaluation(out, result: dict, site) -> list:
    """Writes evaluate's result as JSON at ``out`` and its reliability diagram beside it (``<name>-reliability``
    .png and .pdf; an external site's two arms side by side); returns the files written."""
    if out is None:
        return []
    from . import plots
    from .utils.io import write_json_atomic

    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, result)
    if site is None:
        panels, title = result, "Reliability diagram"
    else:
        panels = {"development": result["development"], "recalibrated on local data": result["recalibrated"]}
        title = f"Reliability diagram, site {site}"
    return [str(out), *plots.reliability_diagram(panels, out.with_name(f"{out.stem}-reliability"), title=title)]


def _evaluation_summary(metrics: dict) -> dict:
    """What evaluate and calibrate print of one set of metrics: the interval line, calibration and the operating
    point (with its intervals when they were made)."""
    summary = _summary_metrics(metrics)
    for key in ("temperature", "brier", "ece", "operating_point"):
        if key in metrics:
            summary[key] = metrics[key]
    return summary


def cmd_calibrate(args) -> int:
    from .errors import ClassMismatchError
    from .evaluation.temperature_scaling import calibrate

    _check_data_classes(args.run_dir, {"data": args.image_set})
    image_set = check_parts({"data": args.image_set}, args.on_bad)["data"]
    _warn_if_not_held_out(args.run_dir, image_set)
    try:
        fitted = calibrate(Path(args.run_dir), image_set, batch_size=args.batch_size, fitted_on=args.data)
    except ClassMismatchError as exc:
        raise UsageError(str(exc)) from None
    print(
        f"temperature {fitted.temperature:.3f}: NLL {fitted.nll_before:.4f} → {fitted.nll_after:.4f}, "
        f"ECE {fitted.ece_before:.4f} → {fitted.ece_after:.4f} on {fitted.n} images; saved with the model.",
        file=sys.stderr,
    )
    _print_json({"run_dir": str(args.run_dir), **fitted.to_dict()})
    return 0


def _warn_if_not_held_out(run_dir, image_set) -> None:
    """Warns when DATA holds images of the run's training or test split (its split_*.csv): a temperature fitted on
    them is too sharp (training images) or flatters the test's calibration (test images)."""
    import warnings

    folder = _run_folder_of(run_dir)
    paths = image_set.paths if image_set.paths is not None else ()
    given = {str(Path(p).expanduser().resolve()) for p in paths}
    for part in ("train", "test"):
        split = folder / f"split_{part}.csv"
        if not given or not split.exists():
            continue
        import pandas as pd

        listed = {str(Path(p).expanduser().resolve()) for p in pd.read_csv(split)["path"]}
        shared = len(given & listed)
        if shared:
            warnings.warn(
                f"{shared} of DATA's {len(given)} images are in the run's {part} split ({split.name}): calibrate on "
                f"held-out data, e.g. the run's validation split ({folder / 'split_val.csv'}).",
                stacklevel=2,
            )


def cmd_grid(args) -> int:
    from . import protocol

    executor = _executor(args)
    if args.repeats < 1:
        raise UsageError(f"--repeats must be 1 or more (runs per source, scenario and fold). Received: {args.repeats}.")
    image_set = args.image_set
    config = protocol.RADIMAGENET.replace(
        **{k: getattr(args, k) for k in ("image_size", "batch_size", "epochs", "seed") if getattr(args, k) is not None},
        run_eagerly=args.run_eagerly,
        **({"cache": args.cache} if args.cache else {}),
    )
    scenarios = protocol.radimagenet_scenarios(args.backbones) if args.backbones else None
    if args.max_scenarios:
        scenarios = (scenarios or protocol.radimagenet_scenarios())[: args.max_scenarios]
    _write_resolved(args.out, args)
    records = protocol.run_grid(
        image_set,
        args.out,
        config=config,
        sources=tuple(
            protocol.with_preprocessings(args.sources, args.preprocessings) if args.preprocessings else args.sources
        ),
        folds=args.folds,
        scenarios=scenarios,
        repeats=args.repeats,
        shard=args.shard,
        shard_count=args.shard_count,
        executor=executor,
        weights_dir=args.weights_dir,
        faithful=args.faithful,
        task=args.task,
        verbose=1,
        on_bad=args.on_bad,
        paper_task=None if args.paper_task == "none" else args.paper_task,
        audit="off" if args.no_audit else "strict" if args.strict else "warn",
    )
    print(f"{len(records)} runs recorded in {args.out}")
    return 0


def _executor(args):
    """The executor of ``grid``'s and ``curve``'s --executor and Ray options."""
    from . import protocol

    ray_options = {"address": args.address, "gpus_per_run": args.gpus_per_run, "cpus_per_run": args.cpus_per_run}
    if args.executor == "ray":
        return protocol.RayExecutor(**ray_options)
    if any(v is not None for v in ray_options.values()):
        raise UsageError("--address, --gpus-per-run and --cpus-per-run need --executor ray.")
    return "sequential"


def cmd_curve(args) -> int:
    from . import protocol

    config = protocol.RADIMAGENET.replace(
        **{k: getattr(args, k) for k in ("image_size", "batch_size", "epochs", "seed") if getattr(args, k) is not None},
        run_eagerly=args.run_eagerly,
        **({"cache": args.cache} if args.cache else {}),
    )
    _write_resolved(args.out, args)
    table = protocol.learning_curve(
        args.image_set,
        args.out,
        fractions=args.fractions,
        sources=tuple(args.sources),
        backbone=args.backbone,
        strategy=args.strategy,
        learning_rate=args.learning_rate,
        config=config,
        folds=args.folds,
        repeats=args.repeats,
        shard=args.shard,
        shard_count=args.shard_count,
        executor=_executor(args),
        weights_dir=args.weights_dir,
        faithful=args.faithful,
        task=args.task,
        verbose=1,
        on_bad=args.on_bad,
        audit="off" if args.no_audit else "strict" if args.strict else "warn",
    )
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"learning curve in {args.out} (learning_curve.csv, .md, .png)")
    return 0


def cmd_report(args) -> int:
    from . import plots, report

    computed = report.tables(args.grid_dir, equivalence_margin=args.equivalence_margin)
    written = report.write(
        args.grid_dir, formats=tuple(args.formats), equivalence_margin=args.equivalence_margin, computed=computed
    )
    table = computed["summary"]
    written_figures = plots.grid_figures(args.grid_dir) if not table.empty else []
    print(report.to_markdown(table))
    arms = computed["comparisons"]
    if (arms["factor"] == "preprocessing").any():
        print("\nfaithful and corrected preprocessing, paired:\n" + report.to_markdown(arms))
    print("\nwritten:\n  " + "\n  ".join(list(written.values()) + written_figures))
    return 0


def cmd_card(args) -> int:
    from .card import folder_kind, not_a_folder_message, write_model_card

    if folder_kind(args.folder) is None:
        raise UsageError(not_a_folder_message(args.folder))
    written = write_model_card(args.folder, args.out)
    print("written:\n  " + "\n  ".join(str(path) for path in written))
    return 0


def cmd_gradcam(args) -> int:
    import numpy as np

    from . import data
    from .data.adapters import for_prediction
    from .evaluation.gradcam import gradcam, save_overlays, unique_names
    from .evaluation.metrics import model_read_kwargs
    from .models.trained import probabilities_of
    from .utils.progress import progress

    model = _load_run_model(args.run_dir)
    image_set, paths = for_prediction(args.images)  # files and folders as predict reads them (DICOM series in order)
    if not paths:
        raise UsageError("No images given (files or folders of .png/.jpg/.bmp/.dcm).")
    batch_size = 16
    dataset = data.make_dataset(
        image_set, batch_size=batch_size, shuffle=False, cache=False, **model_read_kwargs(model)
    )
    images, heatmaps, probabilities = [], [], []
    batches = -(-len(paths) // batch_size)
    for batch, _ in progress(dataset, total=batches, desc="Grad-CAM", unit="batch", min_items=2):
        batch = np.asarray(batch)
        images.append(batch)
        heatmaps.append(np.asarray(gradcam(model, batch, layer=args.layer, class_index=args.class_index)))
        probabilities.append(probabilities_of(model, model.predict(batch, verbose=0)))  # its temperature, if any
    images, heatmaps, probabilities = (np.concatenate(parts) for parts in (images, heatmaps, probabilities))
    class_names = getattr(model, "radtransfer_class_names", None)
    titles = [
        f"Grad-CAM: {class_names[i] if class_names else i} ({p[i]:.2f})"
        for p, i in zip(probabilities, probabilities.argmax(1))
    ]
    written = save_overlays(images, heatmaps, args.out, names=unique_names(paths), titles=titles)
    print("\n".join(written))
    return 0


def cmd_predict(args) -> int:
    from .evaluation.prediction import predict

    model = _load_run_model(args.run_dir)
    frame = predict(
        model,
        args.images,
        batch_size=args.batch_size,
        image_col=args.image_col,
        patient_col=args.patient_col,
        gradcam_dir=args.gradcam,
        on_bad=args.on_bad,
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index=False)
    counts = frame["predicted"].value_counts()
    unread = int(frame["error"].astype(bool).sum()) if "error" in frame else 0
    print(
        f"{len(frame)} images → {out}: "
        + ", ".join(f"{name} {n}" for name, n in counts.items())
        + (f"; {unread} could not be read (see the error column)" if unread else "")
    )
    return 0


def cmd_weights(args) -> int:
    from .models.weights import check_weight_file, find_weight_files, sha256sum

    if args.action == "check":
        if not args.file or not args.backbone:
            raise UsageError("usage: radtransfer weights check FILE --backbone NAME")
        info = check_weight_file(args.file, args.backbone)
        _print_json(
            {
                "file": str(info.path),
                "backbone": args.backbone,
                "matches": True,
                "kind": info.kind,
                "weight_layers": len(info.layers),
                "keras_version": info.keras_version,
                "sha256": sha256sum(info.path),
            }
        )
        return 0
    rows = find_weight_files(args.weights_dir)
    if not rows:
        from .models.weights import search_dirs

        print("No .h5 weight files found in: " + "; ".join(str(d) for d in search_dirs(args.weights_dir, True)))
        return 0
    for row in rows:
        status = {True: "ok", False: "MISMATCH", None: "?"}[row["matches"]]
        print(
            f"{status:8s} {row['backbone'] or '-':20s} {row['source']:11s} {row['size'] / 2**20:8.1f} MiB  "
            f"{row['sha256'][:16]}…  {row['path']}"
        )
        if row["matches"] is not True and row["detail"]:
            print(f"         {row['detail']}")
    return 0


def cmd_datasets(args) -> int:
    from .data.synthetic import synthetic_brain_mri

    manifest = synthetic_brain_mri(
        args.out, n_patients=args.patients, slices_per_patient=args.slices, image_size=args.size, seed=args.seed
    )
    print(f"wrote {manifest}")
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo

    report = run_demo(args.out, quick=args.quick, weights_dir=args.weights_dir)
    print(f"\nDemo finished. Report: {report}")
    return 0


# -- the parser -------------------------------------------------------------------------------


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
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _Help)
        super().__init__(*args, **kwargs)


def _backbones() -> list:
    from .models.backbones import list_backbones

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
    p.set_defaults(func=cmd_train)


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
    p.set_defaults(func=cmd_audit)


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
    p.set_defaults(func=cmd_evaluate)


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
    p.set_defaults(func=cmd_calibrate)


def _add_grid(sub) -> None:
    p = sub.add_parser("grid", help="run the paper's 24-scenario grid per weight source on DATA")
    from .grid.paper import RADIMAGENET

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
    p.set_defaults(func=cmd_grid)


def _add_curve(sub) -> None:
    p = sub.add_parser(
        "curve", help="learning curve: test AUC against nested shares of the training patients, per weight source"
    )
    from .grid.curve import DEFAULT_FRACTIONS
    from .grid.paper import RADIMAGENET

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
    p.set_defaults(func=cmd_curve)


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
    p.set_defaults(func=cmd_report)


def _add_gradcam(sub) -> None:
    p = sub.add_parser("gradcam", help="Grad-CAM overlays of a trained run on images")
    p.add_argument("run_dir", metavar="RUN_DIR", help="the out folder of 'radtransfer train' (or a .keras file)")
    p.add_argument("images", metavar="IMAGE", nargs="+", help="image files or folders")
    p.add_argument("--out", default="gradcam", help="folder of the overlays")
    p.add_argument("--layer", help="backbone layer (default: the last convolutional activation)")
    p.add_argument("--class-index", type=int, help="class to explain (default: the predicted one)")
    _config_option(p)
    p.set_defaults(func=cmd_gradcam)


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
    p.set_defaults(func=cmd_predict)


def _add_weights(sub) -> None:
    p = sub.add_parser("weights", help="list the weight files found (with sha256 and match), or check one")
    p.add_argument("action", nargs="?", default="list", choices=("list", "check"), help="list, or check a file")
    p.add_argument("file", nargs="?", help="the file, for 'check'")
    p.add_argument("--backbone", help=f"the backbone, for 'check': {', '.join(_backbones())}")
    _weights_dir_option(p)
    _config_option(p)
    p.set_defaults(func=cmd_weights)


def _add_datasets(sub) -> None:
    p = sub.add_parser("datasets", help="write the built-in demo data")
    p.add_argument("kind", choices=("synthetic",), help="synthetic: four-class brain-tumour MRI phantoms")
    p.add_argument("out", metavar="OUT", help="the folder written")
    p.add_argument("--patients", type=int, default=40, help="patients, spread over the four classes")
    p.add_argument("--slices", type=int, default=4, help="slices per patient")
    p.add_argument("--size", type=int, default=128, help="image height and width")
    p.add_argument("--seed", type=int, default=0, help="the generator's seed")
    _config_option(p)
    p.set_defaults(func=cmd_datasets)


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="the whole path on the demo data: data, training, evaluation, report")
    p.add_argument("--out", default="demo_output", help="the folder written")
    p.add_argument("--quick", action="store_true", help="a tiny run (a smoke test)")
    _weights_dir_option(p)
    _config_option(p)
    p.set_defaults(func=cmd_demo)


def _add_card(sub) -> None:
    p = sub.add_parser("card", help="the model card (MODEL_CARD.md, model_card.json) of a run or grid folder")
    p.add_argument("folder", metavar="RUN_DIR", help="the out folder of 'radtransfer train' (or of 'radtransfer grid')")
    p.add_argument("--out", help="the folder written (default: RUN_DIR)")
    _config_option(p)
    p.set_defaults(func=cmd_card)


def _version() -> str:
    from .version import __version__

    return f"radtransfer {__version__}"


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
    from .utils.progress import show

    _show_data_log()
    _show_warnings(parser.commands[args.command])
    show(True)  # a progress bar for every long loop, in a terminal and in a log
    try:
        config = _load_config(getattr(args, "config", None))
        if config:  # the second stage of the parse: the file's values as defaults, the flags over them
            subparser = parser.commands[args.command]
            subparser.set_defaults(**_config_defaults(subparser, config))
            args = parser.parse_args(argv)
        try:
            _check_arguments(args)
        except ValueError as exc:  # a wrong name or choice is a usage mistake: exit code 2
            raise UsageError(str(exc)) from exc
        _read_data(args)
        if args.command not in LIGHT_COMMANDS:
            _start_tensorflow(quiet=not args.debug)
        return int(args.func(args) or 0)
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
    from .models.backbones import get_backbone

    run_dir = getattr(args, "run_dir", None)  # the arguments in the order they are typed
    if run_dir is not None:
        _check_run_dir(run_dir)
    data = getattr(args, "data", None)
    if data is not None and not data.startswith("tfds:") and not Path(data).expanduser().exists():
        raise UsageError(
            f"DATA not found: '{data}'. Expected a class-folder directory, a CSV manifest, or tfds:NAME[:SPLIT]."
        )
    for image in getattr(args, "images", None) or ():
        if not Path(image).expanduser().exists():
            raise UsageError(f"Image file or folder not found: '{image}'.")
    if args.command == "evaluate":
        _check_site_options(args)
    if args.command == "train":
        get_backbone(args.backbone)
        args.train_config = _train_config(args)  # every TrainConfig option checked here
        if args.weights not in ("radimagenet", "imagenet", "none") and not Path(args.weights).expanduser().is_file():
            raise UsageError(f"--weights {args.weights}: expected radimagenet, imagenet, none or an existing .h5 file.")
    if args.command == "grid":
        from .grid.arms import check_arms
        from .grid.plan import resolve_shard
        from .models.presets import WEIGHT_SOURCES

        for backbone in args.backbones or ():
            get_backbone(backbone)
        check_arms(args.sources, WEIGHT_SOURCES)
        if args.executor != "ray" and any(
            getattr(args, option) is not None for option in ("address", "gpus_per_run", "cpus_per_run")
        ):
            raise UsageError("--address, --gpus-per-run and --cpus-per-run need --executor ray.")
        resolve_shard(args.shard, args.shard_count)
    if args.command == "curve":
        from .grid.arms import check_arms
        from .grid.curve import check_fractions
        from .grid.plan import resolve_shard
        from .models.presets import WEIGHT_SOURCES

        get_backbone(args.backbone)
        check_fractions(args.fractions)
        check_arms(args.sources, WEIGHT_SOURCES)
        if args.repeats < 1:
            raise UsageError(f"--repeats must be 1 or more. Received: {args.repeats}.")
        if args.executor != "ray" and any(
            getattr(args, option) is not None for option in ("address", "gpus_per_run", "cpus_per_run")
        ):
            raise UsageError("--address, --gpus-per-run and --cpus-per-run need --executor ray.")
        resolve_shard(args.shard, args.shard_count)


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


def _read_data(args) -> None:
    """DATA's file names, labels and patients, read before TensorFlow starts, so a wrong layout or column is
    answered at once; the commands take them from ``args``."""
    if args.command == "train" or (args.command == "audit" and not args.folds):
        args.parts = train_val_test(args.data, args)
        if args.command == "train" and not args.no_audit:  # before TensorFlow starts: --strict refuses at once
            _audit_parts(dict(zip(("train", "val", "test"), args.parts)), Path(args.out), args)
    elif args.command == "audit":
        args.image_set = load_data(
            args.data, args.image_col, args.label_col, args.patient_col, missing_labels=args.missing_labels
        )
        _say_patients(args.image_set, args)
    elif args.command in ("evaluate", "calibrate", "grid", "curve"):
        args.image_set = load_data(
            args.data, args.image_col, args.label_col, args.patient_col, missing_labels=args.missing_labels
        )
        _say_patients(args.image_set, args)
    if args.command == "evaluate":
        args.recalibrate_set = _read_local_data(args)


def _show_warnings(subparser) -> None:
    """Warnings as one line each, in the command's words (flags, not keyword arguments), with no source file."""
    import warnings

    def show(message, category, filename, lineno, file=None, line=None):
        text = _in_flags(str(message), subparser)
        print(f"radtransfer: warning: {text}", file=sys.stderr)

    warnings.showwarning = show


def _in_flags(message: str, subparser) -> str:
    """A library message in the command's words: "missing_labels='drop' (command line: --missing-labels drop)"
    becomes "--missing-labels drop", and a keyword argument of this command, ``weights_dir=`` or
    ``on_bad='skip'``, becomes its flag."""
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


def _report_error(exc, args, parser=None) -> None:
    if getattr(args, "debug", False):
        traceback.print_exc()
    message = str(exc).strip() or type(exc).__name__
    if parser is not None and getattr(args, "command", None) in getattr(parser, "commands", {}):
        message = _in_flags(message, parser.commands[args.command])
    lines = message.splitlines()
    first = lines[0]
    more = "" if len(lines) == 1 else "\n" + "\n".join(lines[1:])
    print(f"radtransfer: error: {first}{more}", file=sys.stderr)
    if not getattr(args, "debug", False):
        print("(run with --debug for the traceback)", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())

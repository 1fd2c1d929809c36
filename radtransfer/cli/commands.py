"""The subcommands, one handler each (library calls and printing): those that train, check, evaluate and use one
model, and the reading of DATA that comes before TensorFlow starts (``grid``, ``curve`` and ``predict`` are in
``extras``)."""

from __future__ import annotations

import sys
from pathlib import Path

from .options import EXIT_FAILURE, UsageError, in_flags


def say(line: str) -> None:
    """Prints a note of the library (what a split goes by, a split folder's parts) in the command's words."""
    print(in_flags(line), file=sys.stderr)


def _columns(args) -> dict:
    """DATA's CSV columns by the command's options (--label-cols only where given)."""
    columns = {"image_col": args.image_col, "label_col": args.label_col, "patient_col": args.patient_col}
    if getattr(args, "label_cols", None) is not None:
        columns["label_cols"] = args.label_cols
    return columns


def load_spec(spec: str, args):
    """A data spec read with DATA's options (``data.load``); a spec that names no data is a usage mistake."""
    from .. import data
    from ..data.loading import DataSpecError

    columns = _columns(args)
    if getattr(args, "exam_col", None) is not None:
        columns["exam_col"] = args.exam_col
    try:
        return data.load(spec, **columns, missing_labels=args.missing_labels)
    except DataSpecError as exc:
        raise UsageError(str(exc)) from None


def load_parts(args) -> tuple:
    """DATA's (train, val, test) by --val, --test and --seed (``data.load_parts``: a split folder's own parts, else
    a split by patient), saying what the split goes by."""
    from .. import data
    from ..data.loading import DataSpecError

    columns = _columns(args)
    try:
        return data.load_parts(
            args.data, args.val, args.test, args.seed, **columns, missing_labels=args.missing_labels, note=say
        )
    except DataSpecError as exc:
        raise UsageError(str(exc)) from None


def check_parts(parts: dict, on_bad: str, out=None) -> dict:
    """Checks every part's files (``data.check_parts``); with --on-bad skip, lists the files left out on stderr
    (and names ``out/skipped_files.csv``, which ``train`` writes once its run starts)."""
    return _checked_parts(parts, on_bad, out)[0]


def _checked_parts(parts: dict, on_bad: str, out=None) -> tuple[dict, list]:
    from .. import data
    from ..training.run_folder import SKIPPED_FILES

    checked, skipped = data.check_parts(parts, on_bad)
    if skipped:
        print(
            f"radtransfer: warning: skipped {len(skipped)} unreadable file(s) (--on-bad skip)"
            + (f", listed in {Path(out) / SKIPPED_FILES}" if out is not None else "")
            + ":\n"
            + "\n".join(f"  {n}: {p}: {r}" for n, p, r in skipped[:20]),
            file=sys.stderr,
        )
    return checked, skipped


def _write_skipped(out: Path, skipped: list) -> None:
    import csv

    from ..training.run_folder import SKIPPED_FILES

    with open(out / SKIPPED_FILES, "w", newline="") as handle:
        csv.writer(handle).writerows([("part", "path", "reason"), *skipped])


def write_resolved(out_dir, args) -> None:
    from ..training.run_folder import CLI_CONFIG
    from ..utils.io import write_json_atomic

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    values = {k: v for k, v in vars(args).items() if k not in ("func", "debug", "grid_options")}
    write_json_atomic(out / CLI_CONFIG, values)


def print_json(payload) -> None:
    from ..utils.io import dumps_strict

    print(dumps_strict(payload, indent=2, ensure_ascii=False))  # strict: often piped into a .json file


def _summary_metrics(metrics: dict) -> dict:
    """What the command prints of evaluate's metrics: the interval with how it was made and on how many patients
    (train and evaluate print the same interval for the same model and data, since both use the same seed)."""
    from ..evaluation.metrics import describe_interval

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
        "level",
        "aggregate",
        "n_units",
        "threshold_level",
    )
    summary = {k: metrics[k] for k in keys if k in metrics}
    if metrics:
        summary["auc_ci_is"] = describe_interval(metrics)
    return summary


def _command_files(out: Path, args, parts: dict, skipped) -> callable:
    """What writes the command's own files into ``out`` (``cli_config.json``, the split CSVs, ``skipped_files.csv``,
    ``audit.json``), to be called when training begins (``_when_accepted``): a refused run leaves the folder as it
    was."""

    def write() -> None:
        from ..data.audit import AUDIT_FILE
        from ..training.run_folder import write_split

        write_resolved(out, args)
        for name, part in parts.items():
            write_split(out, name, part)
        if skipped:
            _write_skipped(out, skipped)
        if getattr(args, "audit_report", None) is not None:
            args.audit_report.write_json(out / AUDIT_FILE)

    return write


def _model_of(args, train):
    """The model the command's flags describe (backbone, weights, size, dropout, preprocessing) for the training
    part ``train``: its classes, or one sigmoid per label of a multi-label set (--label-cols)."""
    from .. import build_model

    head = {"num_labels": train.num_classes} if train.multi_label else {"num_classes": train.num_classes}
    return build_model(
        args.backbone,
        weights=None if args.weights == "none" else args.weights,
        **head,
        input_shape=(args.image_size, args.image_size, 3),
        dropout=args.dropout,
        preprocessing=args.preprocessing,
        weights_dir=args.weights_dir,
    )


def cmd_train(args) -> int:
    """Trains into ``--out``. Nothing in the folder changes until ``fine_tune`` has accepted the run (claimed the
    folder, and found it new, or an interrupted run with the same settings, or ``--restart`` given): the command's
    own files are written then, so a refused command leaves a finished run's folder as it was."""
    from .. import evaluate, fine_tune
    from ..training.run_folder import TEST_METRICS, RunFolder

    train, val, test = args.parts
    out = Path(args.out)
    parts, skipped = _checked_parts({"train": train, "val": val, "test": test}, args.on_bad, out)
    train, val, test = parts["train"], parts["val"], parts["test"]
    write_command_files = _command_files(out, args, parts, skipped)
    model = _model_of(args, train)
    with RunFolder.claimed(out):  # held from here to the test metrics; fine_tune holds it too
        result = fine_tune(
            model,
            train,
            val,
            args.train_config,
            out_dir=out,
            verbose=args.verbose,
            resume=not args.restart,
            callbacks=[_when_accepted(write_command_files)],
        )
        metrics = evaluate(model, test, seed=args.seed) if len(test) else {}
        if metrics:
            from ..utils.io import write_json_atomic

            write_json_atomic(out / TEST_METRICS, metrics)
    if args.json:
        print_json(
            {
                "out_dir": str(out),
                "best_epoch": result.best_epoch,
                "best_val_loss": result.best_val_loss,
                "epochs_run": result.epochs_run,
                "stopped_early": result.stopped_early,
                "test": _summary_metrics(metrics),
            }
        )
    else:
        print(train_summary(out, result, metrics, args.train_config.epochs))
    return 0


def train_summary(out, result, metrics: dict, epochs: int) -> str:
    """train's last line: the test AUC with its interval (or why there is none), the accuracy, the best epoch of
    the epochs run, and the run folder with the files that hold the rest."""
    import math

    from ..evaluation.metrics import describe_interval
    from ..training.run_folder import RESULT, TEST_METRICS

    if metrics:
        auc = metrics.get("auc")
        shown = f"{auc:.3f}" if auc is not None and math.isfinite(auc) else "not defined"
        test = (
            f"test AUC {shown}, {describe_interval(metrics)}; accuracy {metrics['accuracy']:.3f} on "
            f"{metrics['n']} images"
        )
        files = f"{TEST_METRICS}, {RESULT}"
    else:
        test, files = "no test part (--test 0)", RESULT
    if result.best_epoch >= 1:
        best = f"best epoch {result.best_epoch} of {result.epochs_run}"
        if result.stopped_early:
            best += f" (early stopping; {epochs} set)"
    else:
        best = f"no epoch of {result.epochs_run} kept"
    return f"{test}; {best}; run folder {out} ({files})"


def _when_accepted(write):
    """A Keras callback that calls ``write()`` once, when training begins: after fine_tune has claimed the folder
    and accepted the run, before the first epoch."""
    import keras

    class WhenAccepted(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            nonlocal write
            if write is not None:
                pending, write = write, None
                pending()

    return WhenAccepted()


def _audit_parts(parts: dict, out: Path, args) -> None:
    """The data audit of train's parts: its summary and errors printed, kept in ``args.audit_report`` for the run
    folder (written once the run is accepted); with --strict, its errors refuse the run."""
    from ..data.audit import AUDIT_FILE, audit

    report = audit(parts)
    args.audit_report = report
    print(f"radtransfer: data audit: {report.summary()} (all findings: {out / AUDIT_FILE})", file=sys.stderr)
    for line in report.finding_lines(max_rows=10):
        print(f"  {line}", file=sys.stderr)
    if args.strict:
        skipped = ("unreadable",) if args.on_bad == "skip" else ()  # left out by --on-bad skip, and listed
        report.raise_if_errors(
            f"DATA '{args.data}'", listed=f"`radtransfer audit {args.data}` lists them all", ignore=skipped
        )


def cmd_audit(args) -> int:
    from ..data.audit import audit_splits

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


def check_run_dir(run_dir) -> None:
    from ..training.run_folder import BEST_MODEL

    path = Path(run_dir)
    if not (path / BEST_MODEL).exists() and not (path.is_file() and path.suffix == ".keras"):
        raise UsageError(
            f"No trained model in '{run_dir}' (expected {BEST_MODEL}); pass the out dir of 'radtransfer train'."
        )


def _load_run_model(run_dir):
    from ..training.run_folder import load_trained

    check_run_dir(run_dir)
    return load_trained(Path(run_dir))


def cmd_evaluate(args) -> int:
    from .. import evaluate
    from ..errors import ClassMismatchError
    from ..evaluation.external import external_file, side_by_side

    parts = {"data": args.image_set}
    for name, image_set in (("recalibrate", args.recalibrate_set), ("val", args.val_set)):
        if image_set is not None:
            parts[name] = image_set
    _check_data_classes(args.run_dir, parts)
    model = _load_run_model(args.run_dir)
    parts = check_parts(parts, args.on_bad)
    level = {} if args.level == "image" else {"level": args.level, "aggregate": args.aggregate, "val": parts.get("val")}
    try:
        result = evaluate(
            model,
            parts["data"],
            bootstrap=args.bootstrap,
            seed=args.seed,
            site=args.site,
            recalibrate=parts.get("recalibrate"),
            **level,
        )
    except ClassMismatchError as exc:  # the data given do not fit the model: a usage mistake
        raise UsageError(str(exc)) from None
    out = Path(args.out) if args.out else None
    if out is None and args.site is not None:
        out = _run_folder_of(args.run_dir) / external_file(args.site)
    written = _write_evaluation(out, result, args.site)
    if args.site is None:
        print_json({**_evaluation_summary(result), **({"written": written} if written else {})})
        return 0
    print(side_by_side(result), file=sys.stderr)
    summary = {
        "site": result["site"],
        "development": _evaluation_summary(result["development"]),
        "recalibrated": _evaluation_summary(result["recalibrated"]) if result["recalibrated"] else None,
        "recalibration": result["recalibration"],
        "written": written,
    }
    print_json(summary)
    return 0


def check_site_options(args) -> None:
    """evaluate's --site and --recalibrate, checked before TensorFlow starts."""
    from ..evaluation.external import check_site

    if args.recalibrate is not None and args.site is None:
        raise UsageError("--recalibrate needs --site (the external site DATA and the local set come from).")
    if args.level != "image" and args.site is not None:
        raise UsageError(f"--level {args.level} is not available with --site yet: leave out --level there.")
    if args.level == "exam" and args.exam_col is None:
        raise UsageError("--level exam needs exam ids: give the CSV column that holds them as --exam-col.")
    if args.level == "image" and (args.val_data is not None or args.aggregate != "mean"):
        raise UsageError("--val-data and --aggregate go with --level patient or exam.")
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


def _check_level(args) -> None:
    """--level's units of DATA (and VAL_DATA) made before TensorFlow starts: ids for the level, one label per unit,
    an aggregate the classes allow."""
    import numpy as np

    from ..evaluation.levels import Aggregation, Predictions, to_units

    if args.level == "image":
        return
    aggregation = Aggregation(args.level, args.aggregate)
    for flag, image_set in (("DATA", args.image_set), ("--val-data", args.val_set)):
        if image_set is None:
            continue
        if args.level == "patient" and image_set.patient_ids is None:
            raise UsageError(
                f"{flag}: --level patient needs patient ids: give the column that holds them as --patient-col."
            )
        uniform = np.full((len(image_set), image_set.num_classes), 1 / image_set.num_classes)
        ids = Predictions(image_set.labels, uniform, image_set.patient_ids, image_set.exam_ids)
        try:
            to_units(ids, aggregation, 1, image_set.class_names)
        except ValueError as exc:
            raise UsageError(f"{flag}: {exc}") from None  # main's in_flags spells level='x' as --level x


def _read_local_data(args):
    """evaluate's --recalibrate set (None without one), read with DATA's options."""
    if args.recalibrate is None:
        return None
    local = load_spec(args.recalibrate, args)
    print(f"--recalibrate: {len(local)} local images to refit the temperature and threshold on.", file=sys.stderr)
    return local


def _check_data_classes(run_dir, parts: dict) -> None:
    """Refuses data whose classes differ from those the model was trained on (read from its file's metadata,
    before the model is loaded), pointing at data that works: the run's own test split."""
    from ..evaluation.metrics import class_mismatch
    from ..models.trained import read_trained_info
    from ..training.run_folder import BEST_MODEL, SPLIT_FILES

    path = Path(run_dir)
    trained = read_trained_info(path / BEST_MODEL if path.is_dir() else path).get("class_names")
    for name, image_set in parts.items():
        mismatch = class_mismatch(trained, image_set.class_names)
        if mismatch:
            flag = "DATA" if name == "data" else "--recalibrate LOCAL_DATA"
            split = _run_folder_of(run_dir) / SPLIT_FILES["test"]
            mismatch = mismatch.split(" Leave out")[0].split(" Read the data")[0]  # the API's advice, not a flag's
            raise UsageError(
                f"{flag}: {mismatch} Give data labelled with exactly the model's classes (class folders or CSV "
                f"labels {[str(c) for c in trained]}), such as the run's own test split '{split}'."
            )


def _run_folder_of(run_dir) -> Path:
    path = Path(run_dir)
    return path if path.is_dir() else path.parent


def _write_evaluation(out, result: dict, site) -> list:
    """Writes evaluate's result as JSON at ``out`` and its reliability diagram beside it (``<name>-reliability``
    .png and .pdf; an external site's two arms side by side); returns the files written."""
    if out is None:
        return []
    from .. import plots
    from ..utils.io import write_json_atomic

    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, result)
    if result.get("multi_label"):  # no reliability diagram of K sigmoids: the JSON only
        return [str(out)]
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
    from ..errors import ClassMismatchError
    from ..evaluation.temperature_scaling import calibrate

    _check_data_classes(args.run_dir, {"data": args.image_set})
    image_set = check_parts({"data": args.image_set}, args.on_bad)["data"]
    try:
        fitted = calibrate(
            Path(args.run_dir), image_set, batch_size=args.batch_size, fitted_on=args.data, allow_test=args.allow_test
        )
    except ClassMismatchError as exc:
        raise UsageError(str(exc)) from None
    print(
        f"temperature {fitted.temperature:.3f}: NLL {fitted.nll_before:.4f} → {fitted.nll_after:.4f}, "
        f"ECE {fitted.ece_before:.4f} → {fitted.ece_after:.4f} on {fitted.n} images; saved with the model.",
        file=sys.stderr,
    )
    print_json({"run_dir": str(args.run_dir), **fitted.to_dict()})
    return 0


def cmd_layerwise(args) -> int:
    """The layer-wise search on DATA's train and validation parts (the test part is left untouched, and written
    with the others): a run folder per depth in ``--out``, the table in ``layerwise.csv`` and ``.md``, one line
    per depth as it ends, and a summary."""
    from ..grid.layerwise import layerwise_search, summary, write_table

    out = Path(args.out)
    train, val, test = args.parts
    parts, skipped = _checked_parts({"train": train, "val": val, "test": test}, args.on_bad, out)
    table = layerwise_search(
        lambda: _model_of(args, parts["train"]),
        parts["train"],
        parts["val"],
        args.depths,
        config=args.train_config,
        out_dir=out,
        verbose=args.verbose,
        log=sys.stderr,
        callbacks=[_when_accepted(_command_files(out, args, parts, skipped))],  # once, when the first depth begins
    )
    written = write_table(table, out)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"{summary(table)}; table: {', '.join(written)}")
    return 0


def cmd_report(args) -> int:
    from .. import plots, report

    computed = report.tables(args.grid_dir, equivalence_margin=args.equivalence_margin)
    written = report.write(
        args.grid_dir, formats=tuple(args.formats), equivalence_margin=args.equivalence_margin, computed=computed
    )
    table = computed["summary"]
    written_figures = plots.grid_figures(args.grid_dir) if not table.empty else []
    print(report.terminal_summary(computed, written, written_figures))  # the wide tables: files only
    return 0


def cmd_card(args) -> int:
    from ..card import folder_kind, not_a_folder_message, write_model_card

    if folder_kind(args.folder) is None:
        raise UsageError(not_a_folder_message(args.folder))
    written = write_model_card(args.folder, args.out)
    print("written:\n  " + "\n  ".join(str(path) for path in written))
    return 0


def cmd_gradcam(args) -> int:
    import warnings

    import numpy as np

    from .. import data
    from ..data.adapters import for_prediction
    from ..evaluation.gradcam import gradcam, performance_title, run_test_metrics, save_overlays, unique_names
    from ..evaluation.metrics import model_read_kwargs
    from ..models.trained import probabilities_of
    from ..utils.progress import progress

    model = _load_run_model(args.run_dir)
    image_set, paths = for_prediction(args.images)  # files and folders as predict reads them (DICOM series in order)
    if not paths:
        raise UsageError("No images given (files or folders of .png/.jpg/.bmp/.tif/.dcm).")
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
    performance, warning = performance_title(run_test_metrics(args.run_dir))
    if warning:
        warnings.warn(warning, stacklevel=2)
    titles = [
        f"Grad-CAM: {class_names[i] if class_names else i} ({p[i]:.2f})\n{performance}"
        for p, i in zip(probabilities, probabilities.argmax(1))
    ]
    written = save_overlays(images, heatmaps, args.out, names=unique_names(paths), titles=titles)
    print("\n".join(written))
    return 0


def cmd_weights(args) -> int:
    from ..models.weights import check_weight_file, find_weight_files, sha256sum

    if args.action == "check":
        if not args.file or not args.backbone:
            raise UsageError("usage: radtransfer weights check FILE --backbone NAME")
        info = check_weight_file(args.file, args.backbone)
        print_json(
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
        from ..models.weights import search_dirs

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
    from ..data.synthetic import synthetic_brain_mri

    manifest = synthetic_brain_mri(
        args.out, n_patients=args.patients, slices_per_patient=args.slices, image_size=args.size, seed=args.seed
    )
    print(f"wrote {manifest}")
    return 0


def cmd_demo(args) -> int:
    from ..demo import run_demo

    report = run_demo(args.out, quick=args.quick, weights_dir=args.weights_dir)
    print(f"\nDemo finished. Report: {report}")
    return 0


def read_data(args) -> None:
    """DATA's file names, labels and patients, read before TensorFlow starts, so a wrong layout or column is
    answered at once; the commands take them from ``args``."""
    if args.command in ("train", "layerwise") or (args.command == "audit" and not args.folds):
        args.parts = load_parts(args)
        if args.command in ("train", "layerwise") and not args.no_audit:  # before TensorFlow: --strict refuses at once
            _audit_parts(dict(zip(("train", "val", "test"), args.parts)), Path(args.out), args)
    elif args.command in ("audit", "evaluate", "calibrate", "grid", "curve"):
        from ..data.loading import split_note

        args.image_set = load_spec(args.data, args)
        say(split_note(args.image_set, args.patient_col))
    if args.command == "evaluate":
        args.recalibrate_set = _read_local_data(args)
        args.val_set = None if args.val_data is None else load_spec(args.val_data, args)
        _check_level(args)

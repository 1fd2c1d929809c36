"""Model cards: ``MODEL_CARD.md`` and ``model_card.json`` of a run folder (``radtransfer train``, ``fine_tune``'s
out_dir) or a grid folder (``radtransfer grid``), made only from what the folder recorded.

Every number, setting and name in a card is read from the folder's files (config.json, state.json, result.json,
history.csv, best.keras's ``radtransfer.json`` member, test_metrics.json, the split CSVs, audit.json,
external-<site>.json; grid.json and the runs' record.json for a grid); what the files do not hold is said to be
"not recorded", never filled in. The only fixed text is policy: the intended use and its limits, and the names of
the CLAIM checklist's items (Mongan, Moy and Kahn, Radiology: Artificial Intelligence 2020; 42 items), each marked
as answered by the records (and where), partly answered, or to be completed by the author.

The markdown is rendered from the JSON card alone, so the two never disagree. No Keras or TensorFlow is imported:
the ``.keras`` file's metadata is read as a zip member (``models.trained.read_trained_info``).
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from pathlib import Path

from .data.audit import AUDIT_FILE
from .data.decode import READ_SETTING_FIELDS
from .errors import RadtransferError
from .evaluation.external import EXTERNAL_FILE
from .evaluation.metrics import describe_interval
from .grid.records import GRID_FILE, RECORD_FILE, RUNS_DIR, GridSpec, RunRecord, read_data_manifest
from .models.trained import read_trained_info
from .training.run_folder import (
    BEST_MODEL,
    CLI_CONFIG,
    CONFIG,
    HISTORY,
    RESULT,
    SKIPPED_FILES,
    SPLIT_FILES,
    STATE,
    TEST_METRICS,
)
from .utils.io import write_json_atomic, write_text_atomic
from .version import __version__

MODEL_CARD = "MODEL_CARD.md"
CARD_JSON = "model_card.json"
CARD_SCHEMA = 1

EXTERNAL_GLOB = EXTERNAL_FILE.format(site="*")  # evaluate(..., site=) on other sites' data

NOT_RECORDED = "not recorded"
AUTHOR = "to complete by the author"

INTENDED_USE = (
    "Decision support for trained readers of medical images: the model's class probabilities are one input to a "
    "reader's judgement, who remains responsible for the diagnosis. It is not a diagnostic device, has not been "
    "cleared or approved by any regulator, and must not be used to diagnose, triage or treat patients on its own."
)
LIMITATIONS = (
    "The figures below hold for images like the test part's: the same sites, scanners, protocols, population and "
    "label definitions. Performance on other data is unknown until measured there.",
    "The labels are those of the data as read (folder names or a CSV column); their reference standard, its "
    "errors and the annotators are not recorded here.",
    "A threshold chosen on the validation part and a temperature fitted on it are only as good as that part is "
    "representative; check them on local data before use.",
    "Nothing here measures fairness across patient groups, robustness to image artefacts, or the model's effect "
    "on readers' decisions.",
)

# CLAIM: Checklist for Artificial Intelligence in Medical Imaging (Mongan, Moy, Kahn; Radiol Artif Intell 2020).
CLAIM_ITEMS = (
    (1, "Title / Abstract", "Identification as a study of AI methodology, with the category of technology"),
    (2, "Title / Abstract", "Structured summary of study design, methods, results and conclusions"),
    (3, "Introduction", "Scientific and clinical background, intended use and clinical role of the AI approach"),
    (4, "Introduction", "Study objectives and hypotheses"),
    (5, "Methods: study design", "Prospective or retrospective study"),
    (6, "Methods: study design", "Study goal (model creation, exploratory, feasibility, non-inferiority, ...)"),
    (7, "Methods: data", "Data sources"),
    (8, "Methods: data", "Eligibility criteria: how, where and when participants or studies were identified"),
    (9, "Methods: data", "Data pre-processing steps"),
    (10, "Methods: data", "Selection of data subsets, if applicable"),
    (11, "Methods: data", "Definitions of data elements, with references to common data elements"),
    (12, "Methods: data", "De-identification methods"),
    (13, "Methods: data", "How missing data were handled"),
    (14, "Methods: ground truth", "Definition of the ground truth reference standard, in detail for replication"),
    (15, "Methods: ground truth", "Rationale for choosing the reference standard"),
    (16, "Methods: ground truth", "Source of ground-truth annotations; qualifications and preparation of annotators"),
    (17, "Methods: ground truth", "Annotation tools"),
    (18, "Methods: ground truth", "Inter- and intrarater variability; how variability and discrepancies were handled"),
    (19, "Methods: data partitions", "Intended sample size and how it was determined"),
    (20, "Methods: data partitions", "How data were assigned to partitions; proportions"),
    (21, "Methods: data partitions", "Level at which partitions are disjoint (image, study, patient, institution)"),
    (22, "Methods: model", "Detailed description of the model: inputs, outputs, intermediate layers and connections"),
    (23, "Methods: model", "Software libraries, frameworks and packages"),
    (24, "Methods: model", "Initialization of model parameters (randomization, transfer learning)"),
    (25, "Methods: training", "Training approach: data augmentation, hyperparameters, number of models trained"),
    (26, "Methods: training", "Method of selecting the final model"),
    (27, "Methods: training", "Ensembling techniques, if applicable"),
    (28, "Methods: evaluation", "Metrics of model performance"),
    (29, "Methods: evaluation", "Statistical measures of significance and uncertainty (e.g. confidence intervals)"),
    (30, "Methods: evaluation", "Robustness or sensitivity analysis"),
    (31, "Methods: evaluation", "Methods for explainability or interpretability, and how they were validated"),
    (32, "Methods: evaluation", "Validation or testing on external data"),
    (33, "Results: data", "Flow of participants or cases (a diagram of inclusion and exclusion)"),
    (34, "Results: data", "Demographic and clinical characteristics of cases in each partition"),
    (35, "Results: model performance", "Performance metrics for the optimal model(s) on all data partitions"),
    (36, "Results: model performance", "Estimates of diagnostic accuracy and their precision (e.g. 95% CIs)"),
    (37, "Results: model performance", "Failure analysis of incorrectly classified cases"),
    (38, "Discussion", "Study limitations: potential bias, statistical uncertainty, generalizability"),
    (39, "Discussion", "Implications for practice, including the intended use and clinical role"),
    (40, "Other information", "Registration number and name of registry"),
    (41, "Other information", "Where the full study protocol can be accessed"),
    (42, "Other information", "Sources of funding and other support; role of funders"),
)

# config.json keys that are not training settings (the identity, the model, what the run found, where it ran).
_NOT_SETTINGS = (
    "identity",
    "fingerprint",
    "model",
    "strategy_summary",
    "versions",
    "class_names",
    "input_shape",
    "num_classes",
    "command",
)
# evaluate()'s metrics shown in a card (the predictions and the bin table are left out; the bins go to Calibration).
_METRIC_KEYS = (
    "n",
    "n_patients",
    "class_names",
    "missing_classes",
    "positive_class",
    "auc",
    "auc_ci",
    "auc_ci_unit",
    "auc_ci_method",
    "auc_ci_units",
    "auc_ci_resamples",
    "auc_ci_seed",
    "accuracy",
    "balanced_accuracy",
    "sensitivity",
    "specificity",
    "per_class_auc",
    "confusion_matrix",
    "brier",
    "ece",
    "operating_point",
    "temperature",
)


# -- public API -------------------------------------------------------------------------------------------------


def folder_kind(path) -> str | None:
    """What a folder holds: "grid" (a ``radtransfer grid`` folder: grid.json), "run" (a training run: config.json
    or best.keras), or None.

    Args:
        path: the folder.

    Returns:
        "grid", "run" or None.
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        return None
    if (folder / GRID_FILE).exists():
        return "grid"
    if (folder / CONFIG).exists() or (folder / BEST_MODEL).exists():
        return "run"
    return None


def not_a_folder_message(path) -> str:
    """The one-line error for a path that is neither a run nor a grid folder."""
    return (
        f"No run or grid folder at '{path}': pass the out folder of 'radtransfer train' (it holds {CONFIG} and "
        f"{BEST_MODEL}) or of 'radtransfer grid' (it holds {GRID_FILE})."
    )


def model_card(run_or_grid_dir) -> dict:
    """The model card of a run or grid folder, built only from the folder's files.

    Args:
        run_or_grid_dir: the out folder of ``radtransfer train`` / ``fine_tune`` (a run), or of ``radtransfer grid``.

    Returns:
        A JSON-ready dict: ``kind`` ("run" or "grid"), ``files_read``, ``not_recorded`` (what the files do not say),
        the sections (run: ``model``, ``intended_use``, ``training``, ``data``, ``audit``, ``evaluation``,
        ``calibration``, ``threshold``, ``external``, ``software``; grid: ``audit``, ``grid``, ``weights``,
        ``runs``, ``scenario_means``, ``intended_use``, ``software``) and ``claim``, the 42 CLAIM items each with
        its ``status`` ("answered", "partly" or "author") and ``where`` the records answer it.

    Raises:
        RadtransferError: the path is neither a run nor a grid folder.
    """
    folder = Path(run_or_grid_dir).expanduser()
    kind = folder_kind(folder)
    if kind is None:
        raise RadtransferError(not_a_folder_message(run_or_grid_dir))
    return _grid_card(folder) if kind == "grid" else _run_card(folder)


def write_model_card(run_or_grid_dir, out_dir=None) -> tuple[Path, Path]:
    """Writes ``MODEL_CARD.md`` and ``model_card.json`` of a run or grid folder, each atomically.

    Args:
        run_or_grid_dir: the run or grid folder (see ``model_card``).
        out_dir: where to write them (default: the folder itself; created if missing).

    Returns:
        (path of MODEL_CARD.md, path of model_card.json).

    Raises:
        RadtransferError: the path is neither a run nor a grid folder.
    """
    card = model_card(run_or_grid_dir)
    out = Path(out_dir).expanduser() if out_dir is not None else Path(run_or_grid_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    markdown, payload = out / MODEL_CARD, out / CARD_JSON
    write_json_atomic(payload, card)
    write_text_atomic(markdown, to_markdown(card))
    return markdown, payload


def to_markdown(card: dict) -> str:
    """The markdown of a card made by ``model_card`` (from the dict alone, so both files say the same)."""
    lines = (_grid_markdown if card["kind"] == "grid" else _run_markdown)(card)
    return "\n".join(lines).rstrip() + "\n"


# -- reading ----------------------------------------------------------------------------------------------------


class _Reader:
    """Reads a folder's files, remembering which existed."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.read: list[str] = []

    def _note(self, name: str) -> None:
        if name not in self.read:
            self.read.append(name)

    def json(self, name: str):
        path = self.folder / name
        if not path.is_file():
            return None
        try:
            value = json.loads(path.read_text())
        except ValueError as exc:
            raise RadtransferError(
                f"'{path}' is not valid JSON ({exc}); the card is made only from valid records."
            ) from None
        self._note(name)
        return value

    def trained(self) -> dict | None:
        path = self.folder / BEST_MODEL
        if not path.is_file():
            return None
        self._note(f"{BEST_MODEL} (radtransfer.json)")
        return read_trained_info(path)

    def rows(self, name: str) -> list[dict] | None:
        path = self.folder / name
        if not path.is_file():
            return None
        self._note(name)
        with open(path, newline="") as handle:
            return list(csv.DictReader(handle))


def _number(value):
    """A CSV cell as a number where it is one."""
    try:
        return int(value)
    except (TypeError, ValueError):
        pass
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def _part(rows: list[dict]) -> dict:
    """Images, patients and images per class of a split CSV (path,label[,patient_id])."""
    classes = Counter(row["label"] for row in rows)
    has_patients = bool(rows) and "patient_id" in rows[0]
    patients = {row["patient_id"] for row in rows if row.get("patient_id")} if has_patients else None
    return {
        "images": len(rows),
        "patients": None if patients is None else len(patients),
        "classes": dict(sorted(classes.items())),
    }


def _audit_summary(findings) -> dict:
    if isinstance(findings, dict):  # a report object rather than a bare list
        findings = findings.get("findings", [])
    by_kind: dict = {}
    for finding in findings:
        kind, severity = finding.get("kind", "?"), finding.get("severity", "?")
        by_kind.setdefault(kind, {}).setdefault(severity, 0)
        by_kind[kind][severity] += 1
    severities = Counter(f.get("severity", "?") for f in findings)
    return {
        "recorded": True,
        "file": AUDIT_FILE,
        "findings": len(findings),
        "by_severity": dict(sorted(severities.items())),
        "by_kind": {k: dict(sorted(v.items())) for k, v in sorted(by_kind.items())},
    }


def _metrics(metrics: dict, source: str) -> dict:
    shown = {k: metrics[k] for k in _METRIC_KEYS if k in metrics}
    shown["interval"] = describe_interval(metrics)
    shown["file"] = source
    return shown


def _external(name: str, payload: dict) -> dict:
    """One external-<site>.json: ``{"site", "development", "recalibrated", "recalibration"}`` (each arm evaluate's
    metrics), or evaluate's metrics with a "site" key (one arm)."""
    site = payload.get("site") or name[len("external-") : -len(".json")]
    if "development" in payload:
        development, recalibrated = payload["development"], payload.get("recalibrated")
    else:
        development, recalibrated = payload, None
    return {
        "site": site,
        "file": name,
        "development": _metrics(development, name),
        "recalibrated": _metrics(recalibrated, name) if recalibrated else None,
        "recalibration": payload.get("recalibration"),
    }


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# -- a run ------------------------------------------------------------------------------------------------------


def _run_card(folder: Path) -> dict:
    reader = _Reader(folder)
    config = reader.json(CONFIG) or {}
    state = reader.json(STATE) or {}
    result = reader.json(RESULT) or {}
    cli = reader.json(CLI_CONFIG) or {}
    trained = reader.trained() or {}
    history = reader.rows(HISTORY)
    test = reader.json(TEST_METRICS)
    test_source = TEST_METRICS
    if test is None:  # a grid's run keeps its test metrics in its record
        record = reader.json(RECORD_FILE)
        test, test_source = (record or {}).get("metrics"), f"{RECORD_FILE} (metrics)"
    splits = {part: reader.rows(name) for part, name in SPLIT_FILES.items()}
    skipped = reader.rows(SKIPPED_FILES)
    audit = reader.json(AUDIT_FILE)
    externals = []
    for path in sorted(folder.glob(EXTERNAL_GLOB)):
        externals.append((path.name, reader.json(path.name)))
    missing: list[str] = []

    identity = config.get("identity") or {}
    card = {
        "schema_version": CARD_SCHEMA,
        "kind": "run",
        "folder": str(folder.resolve()),
        "written_by": f"radtransfer {__version__}",
        "files_read": None,  # filled below
        "model": _model_section(config, identity, trained, result, missing, (folder / BEST_MODEL).is_file()),
        "intended_use": {"use": INTENDED_USE, "limitations": list(LIMITATIONS)},
        "training": _training_section(config, identity, state, result, history, missing),
        "data": _data_section(splits, cli, skipped, config, identity, missing),
        "audit": _audit_summary(audit) if audit is not None else {"recorded": False, "file": AUDIT_FILE},
        "evaluation": _metrics(test, test_source) if test else None,
        "calibration": _calibration_section(test, test_source, trained, missing),
        "threshold": _threshold_section(test, test_source, trained, result, _card_classes(config, trained)),
        "external": [_external(name, payload) for name, payload in externals],
        "software": {"versions": config.get("versions"), "command": config.get("command")},
    }
    if audit is None:
        missing.append(f"the data audit ({AUDIT_FILE} absent)")
    if not test:
        missing.append(f"test metrics ({TEST_METRICS} absent)")
    if not externals:
        missing.append("external validation (no external-<site>.json)")
    if not config.get("versions"):
        missing.append(f"software versions ({CONFIG} has none)")
    card["not_recorded"] = missing
    card["files_read"] = list(reader.read)
    card["claim"] = _claim(_run_answers(card))
    return card


def _card_classes(config: dict, trained: dict) -> list | None:
    """The class names a run recorded (best.keras's, else config.json's)."""
    return trained.get("class_names") or config.get("class_names") or (config.get("identity") or {}).get("class_names")


def _model_section(config, identity, trained, result, missing, has_model_file: bool) -> dict:
    if config.get("model"):
        build, where = config["model"], f"{CONFIG} (model)"
    elif trained.get("build"):
        build, where = trained["build"], f"{BEST_MODEL} (radtransfer.json: build)"
    elif identity.get("model"):
        build, where = identity["model"], f"{CONFIG} (identity.model)"
    else:
        build, where = {}, None
        missing.append("how the model was built (no build info in config.json or best.keras)")
    read_settings = trained.get("read_settings")
    read_from = f"{BEST_MODEL} (radtransfer.json: read_settings)"
    if not read_settings:
        train = ((identity.get("data") or {}).get("train")) or {}
        read_settings = {k: train[k] for k in READ_SETTING_FIELDS if k in train} or None
        read_from = f"{CONFIG} (identity.data.train)" if read_settings else None
    weights_file = build.get("weights_path")
    sha = build.get("weights_sha256")
    random_init = build and build.get("weights_source") is None and not weights_file and not build.get("weights")
    if random_init:
        sha_text = "no weight file (random initialisation)"
    elif sha:
        sha_text = sha
    else:
        sha_text = NOT_RECORDED
        if build:
            missing.append("the weight file's sha256 (the build info does not hold it)")
    if build and not random_init and not weights_file:
        missing.append("the weight file's path (the build info does not hold it)")
    summary = config.get("strategy_summary") or {}
    return {
        "recorded_in": where,
        "file": BEST_MODEL if has_model_file else None,
        "backbone": build.get("backbone"),
        "weights_requested": build.get("weights"),
        "weights_source": build.get("weights_source"),
        "weights_file": weights_file,
        "weights_sha256": sha,
        "weights_sha256_text": sha_text,
        "random_init": bool(random_init),
        "preprocessing": build.get("preprocessing"),
        "input_shape": build.get("input_shape"),
        "num_classes": build.get("num_classes"),
        "dropout": build.get("dropout"),
        "class_names": _card_classes(config, trained),
        "read_settings": read_settings,
        "read_settings_from": read_from,
        "strategy": summary.get("strategy"),
        "trainable_params": summary.get("trainable_params", result.get("trainable_params")),
        "non_trainable_params": summary.get("non_trainable_params"),
        "total_params": summary.get("total_params"),
        "fingerprint": config.get("fingerprint") or result.get("fingerprint"),
    }


def _training_section(config, identity, state, result, history, missing) -> dict:
    settings = {k: v for k, v in config.items() if k not in _NOT_SETTINGS}
    if not settings:
        settings = dict(identity.get("config") or result.get("settings") or {})
    if not settings:
        missing.append(f"the training settings ({CONFIG} absent)")
    best_epoch = state.get("best_epoch", result.get("best_epoch"))
    at_best = None
    if history:
        rows = [{k: _number(v) for k, v in row.items()} for row in history]
        matching = [row for row in rows if row.get("epoch") == best_epoch]
        at_best = matching[-1] if matching else None
    seed = settings.get("seed", (identity.get("config") or {}).get("seed"))
    seed_used = settings.get("seed_used", state.get("seed", result.get("seed")))
    if seed is None and seed_used is None:
        missing.append("the seed")
    return {
        "settings": settings,
        "settings_from": f"{CONFIG} (top level)" if config else (f"{RESULT} (settings)" if settings else None),
        "defining": identity.get("config"),
        "data_pipeline": identity.get("data"),
        "seed": seed,
        "seed_used": seed_used,
        "status": state.get("status", result.get("status")),
        "best_epoch": best_epoch,
        "best_val_loss": state.get("best_val_loss", result.get("best_val_loss")),
        "epochs_run": result.get("epochs_run"),
        "stopped_early": result.get("stopped_early"),
        "resumed_from": result.get("resumed_from"),
        "diverged_epoch": state.get("diverged_epoch", result.get("diverged_epoch")),
        "history_at_best_epoch": at_best,
        "selection": "the epoch with the lowest val_loss (its weights are best.keras)",
    }


def _data_section(splits, cli, skipped, config, identity, missing) -> dict:
    parts = {name: _part(rows) for name, rows in splits.items() if rows is not None}
    if not parts:
        missing.append("the split (no split_train.csv / split_val.csv / split_test.csv)")
    patient_sets = {
        name: {row["patient_id"] for row in rows if row.get("patient_id")}
        for name, rows in splits.items()
        if rows and "patient_id" in rows[0]
    }
    path_sets = {name: {row["path"] for row in rows} for name, rows in splits.items() if rows}
    shared_patients = _overlaps(patient_sets)
    shared_images = _overlaps(path_sets)
    if len(patient_sets) == len(parts) and len(parts) > 1:
        level = "patient" if not any(shared_patients.values()) else "image"
    else:
        level = "image" if parts else None
    total = sum(p["images"] for p in parts.values())
    skipped_parts = Counter(row.get("part", "?") for row in skipped) if skipped is not None else None
    return {
        "parts": parts,
        "share_of_images": {name: p["images"] / total for name, p in parts.items()} if total else {},
        "disjoint_level": level,
        "patients_in_two_parts": {k: v for k, v in shared_patients.items() if v},
        "images_in_two_parts": {k: v for k, v in shared_images.items() if v},
        "class_names": (identity.get("class_names") or config.get("class_names")),
        "source": cli.get("data"),
        "requested_split": {k: cli[k] for k in ("val", "test", "seed") if k in cli} or None,
        "missing_labels": cli.get("missing_labels"),
        "on_bad": cli.get("on_bad"),
        "skipped_files": None if skipped_parts is None else dict(sorted(skipped_parts.items())),
    }


def _overlaps(sets: dict) -> dict:
    names = list(sets)
    return {f"{a}/{b}": len(sets[a] & sets[b]) for i, a in enumerate(names) for b in names[i + 1 :]}


def _calibration_section(test, test_source, trained, missing) -> dict:
    section = {
        "brier": (test or {}).get("brier"),
        "ece": (test or {}).get("ece"),
        "bins": [b for b in (test or {}).get("calibration_bins") or [] if b.get("count")],
        "n_bins": len((test or {}).get("calibration_bins") or []),
        "file": test_source if test else None,
        "temperature": trained.get("temperature"),
        "fit": trained.get("calibration"),
        "test_temperature": (test or {}).get("temperature"),
    }
    if test and "brier" not in test and "ece" not in test:
        missing.append(f"calibration on the test part ({test_source} has no brier/ece)")
    if section["temperature"] is None and not section["fit"]:
        missing.append("a temperature (best.keras holds none: the probabilities are the softmax's as trained)")
    return section


def _threshold_section(test, test_source, trained, result, class_names) -> dict:
    point = (test or {}).get("operating_point")
    stored = trained.get("thresholds") or result.get("thresholds")
    single = trained.get("threshold", result.get("threshold"))
    n_classes = len(class_names) if class_names else None
    section = {
        "value": None if point is None else point.get("threshold"),
        "threshold_class": None if point is None else point.get("threshold_class"),
        "chosen_on": None if point is None else (point.get("chosen_on") or point.get("source")),
        "threshold_unscaled": None if point is None else point.get("threshold_unscaled"),
        "sensitivity": None if point is None else point.get("sensitivity"),
        "specificity": None if point is None else point.get("specificity"),
        "sensitivity_ci": None if point is None else point.get("sensitivity_ci"),
        "specificity_ci": None if point is None else point.get("specificity_ci"),
        "file": test_source if point is not None else None,
        "validation_thresholds": stored,
        "validation_threshold": single,
        "positive_class": trained.get("positive_class"),
        "stored_in": f"{BEST_MODEL} (radtransfer.json)"
        if trained.get("thresholds") or trained.get("threshold")
        else (RESULT if stored or single is not None else None),
        "num_classes": n_classes,
    }
    if point is None:
        section["note"] = (
            f"no operating threshold: {n_classes} classes, each image is called its most probable class"
            if n_classes and n_classes > 2
            else NOT_RECORDED
        )
    return section


def _run_answers(card: dict) -> dict:
    model, training, data, evaluation = card["model"], card["training"], card["data"], card["evaluation"]
    answers: dict = {}
    steps = [
        f"{model['recorded_in']}: preprocessing" if model["preprocessing"] else None,
        f"{model['read_settings_from']}" if model["read_settings"] else None,
        f"{training['settings_from']}: augment" if "augment" in training["settings"] else None,
    ]
    if any(steps):
        answers[9] = ("answered" if all(steps) else "partly", "; ".join(step for step in steps if step))
    skipped = data["skipped_files"]
    if data["on_bad"] or data["missing_labels"]:
        answers[13] = (
            "partly",
            f"{CLI_CONFIG}: missing_labels, on_bad" + (f"; {SKIPPED_FILES}" if skipped is not None else ""),
        )
    if data["parts"]:
        answers[20] = (
            "answered",
            ", ".join(SPLIT_FILES[p] for p in data["parts"])
            + (f"; {CLI_CONFIG}: val, test, seed" if data["requested_split"] else ""),
        )
        answers[21] = (
            "answered",
            "split CSVs (patient_id column: no patient in two parts)"
            if data["disjoint_level"] == "patient"
            else "split CSVs (no patient ids: disjoint by image)",
        )
        answers[34] = ("partly", "split CSVs: images, patients and classes per part")
        answers[33] = (
            "partly",
            "split CSVs: images and patients per part" + ("; audit.json" if card["audit"]["recorded"] else ""),
        )
    if model["backbone"]:
        answers[22] = ("answered", f"{model['recorded_in']}: backbone, input_shape, dropout, num_classes")
        answers[24] = ("answered", f"{model['recorded_in']}: weights_source, weights_path, weights_sha256")
    if card["software"]["versions"]:
        answers[23] = ("answered", f"{CONFIG}: versions")
    if training["settings"]:
        answers[25] = ("answered", f"{training['settings_from']}; one model trained")
    if training["best_epoch"] is not None:
        answers[26] = ("answered", f"{STATE} / {RESULT}: best_epoch, best_val_loss (lowest val_loss)")
        answers[27] = ("answered", f"one model ({BEST_MODEL}); no ensembling in the run")
    if evaluation:
        answers[28] = ("answered", evaluation["file"])
        ci = evaluation.get("auc_ci") or [None, None]
        has_ci = all(_finite(v) for v in ci)
        answers[29] = ("answered" if has_ci else "partly", f"{evaluation['file']}: auc_ci ({evaluation['interval']})")
        answers[36] = (
            "partly",
            f"{evaluation['file']}: AUC with its interval; sensitivity and specificity without intervals",
        )
        answers[37] = ("partly", f"{evaluation['file']}: confusion_matrix (the cases themselves are not analysed)")
        answers[35] = (
            "partly" if training["history_at_best_epoch"] is None else "answered",
            f"{evaluation['file']} (test)"
            + (f"; {HISTORY} at the best epoch (train, val)" if training["history_at_best_epoch"] else ""),
        )
    if card["external"]:
        answers[32] = ("answered", ", ".join(e["file"] for e in card["external"]))
    if data["source"]:
        answers[7] = ("partly", f"{CLI_CONFIG}: data (the path read)")
    answers.update(_POLICY_STARTS)
    return answers


# -- a grid -----------------------------------------------------------------------------------------------------


def _grid_card(folder: Path) -> dict:
    reader = _Reader(folder)
    spec = GridSpec.from_dict(reader.json(GRID_FILE))
    manifest = read_data_manifest(folder)
    if manifest is not None:
        reader._note("data.csv")
    records = []
    for path in sorted(folder.glob(f"{RUNS_DIR}/*/*/*/{RECORD_FILE}")):
        records.append(RunRecord.read(path))
    if records:
        reader._note(f"{RUNS_DIR}/<source>/<scenario>/fold<k>/{RECORD_FILE} ({len(records)})")
    versions = []
    for path in sorted(folder.glob(f"{RUNS_DIR}/*/*/*/{CONFIG}")):
        try:
            found = json.loads(path.read_text()).get("versions")
        except ValueError:
            continue
        if found and found not in versions:
            versions.append(found)
    if versions:
        reader._note(f"{RUNS_DIR}/<source>/<scenario>/fold<k>/{CONFIG} (versions)")
    audit = reader.json(AUDIT_FILE)
    missing: list[str] = []
    if audit is None:
        missing.append(f"the data audit ({AUDIT_FILE} absent)")
    expected = len(spec.scenarios) * len(spec.sources) * spec.n_folds * spec.repeats
    statuses = Counter(r.status for r in records)
    weights: dict = {}
    for r in records:
        key = f"{r.source}/{r.backbone}"
        entry = {
            "source": r.source,
            "backbone": r.backbone,
            "weights_file": r.weights_path,
            "weights_sha256": r.weights_sha256,
            "preprocessing": r.preprocessing,
        }
        if key not in weights:
            weights[key] = entry
        elif weights[key] != entry:
            weights[key]["differs_between_runs"] = True
    runs = []
    for r in sorted(records, key=lambda r: (r.source, r.scenario, r.fold, r.repeat)):
        metrics = r.metrics or {}
        runs.append(
            {
                "source": r.source,
                "scenario": r.scenario,
                "fold": r.fold,
                "repeat": r.repeat,
                "status": r.status,
                "auc": metrics.get("auc"),
                "auc_ci": metrics.get("auc_ci"),
                "interval": describe_interval(metrics) if metrics else None,
                "accuracy": metrics.get("accuracy"),
                "n_test": r.n_test,
                "best_epoch": r.best_epoch,
                "run_seed": r.run_seed,
            }
        )
    folds_auc: dict = {}
    for run in runs:  # folds averaged per scenario, as the report does (finished or diverged runs with an AUC)
        if run["status"] in ("finished", "diverged") and _finite(run["auc"]):
            folds_auc.setdefault((run["source"], run["scenario"]), []).append(run["auc"])
    scenario_means = [
        {"source": source, "scenario": scenario, "folds": len(values), "mean_auc": sum(values) / len(values)}
        for (source, scenario), values in sorted(folds_auc.items())
    ]
    if not records:
        missing.append("runs (no record.json under runs/)")
    if not versions:
        missing.append("software versions (no run's config.json holds them)")
    if any(r.weights_sha256 is None and r.weights_path for r in records):
        missing.append("the sha256 of some runs' weight files")
    patients = None
    if manifest is not None:
        ids = [row[2] for row in manifest if len(row) > 2 and row[2]]
        patients = len(set(ids)) if ids else None
    card = {
        "schema_version": CARD_SCHEMA,
        "kind": "grid",
        "folder": str(folder.resolve()),
        "written_by": f"radtransfer {__version__}",
        "files_read": list(reader.read),
        "audit": _audit_summary(audit) if audit is not None else {"recorded": False, "file": AUDIT_FILE},
        "grid": {
            "task": spec.task,
            "paper_task": spec.paper_task,
            "class_names": list(spec.class_names),
            "n_images": spec.n_images,
            "n_patients": patients,
            "data_sha256": (spec.data or {}).get("sha256"),
            "sources": list(spec.sources),
            "scenarios": spec.scenario_ids(),
            "folds": spec.folds,
            "repeats": spec.repeats,
            "faithful": spec.faithful,
            "bn": spec.bn,
            "interpolation": spec.interpolation,
            "config": spec.config,
            "seed": spec.config.get("seed"),
            "runs_expected": expected,
            "runs_recorded": len(records),
            "statuses": dict(sorted(statuses.items())),
        },
        "weights": list(weights.values()),
        "runs": runs,
        "scenario_means": scenario_means if spec.n_folds > 1 else [],
        "intended_use": {"use": INTENDED_USE, "limitations": list(LIMITATIONS)},
        "software": {"versions": versions[0] if len(versions) == 1 else (versions or None)},
        "not_recorded": missing,
    }
    card["claim"] = _claim(_grid_answers(card))
    return card


def _grid_answers(card: dict) -> dict:
    grid, answers = card["grid"], {}
    if grid["config"]:
        answers[9] = ("answered", f"{GRID_FILE}: config.image_size, interpolation, faithful")
        answers[20] = ("answered", f"{GRID_FILE}: folds, config.val, config.test, config.seed")
        answers[25] = ("answered", f"{GRID_FILE}: config, scenarios, sources ({grid['runs_expected']} models)")
    if card["weights"]:
        answers[22] = ("partly", f"{RECORD_FILE}: backbone, preprocessing; {GRID_FILE}: class_names")
        answers[24] = ("answered", f"{RECORD_FILE}: weights_path, weights_sha256")
    if card["software"]["versions"]:
        answers[23] = ("answered", f"the runs' {CONFIG}: versions")
    if card["runs"]:
        answers[26] = ("answered", f"{RECORD_FILE}: best_epoch (lowest val_loss)")
        answers[28] = ("answered", f"{RECORD_FILE}: metrics")
        answers[29] = ("answered", f"{RECORD_FILE}: metrics.auc_ci")
    answers.update(_POLICY_STARTS)
    return answers


# Items the card's fixed policy text can start but the records do not answer: left to the author, with a pointer.
_POLICY_STARTS = {
    3: ("author", "a start: this card's intended use (fixed text: decision support, not diagnosis)"),
    38: ("author", "a start: this card's limitations (fixed text)"),
}


def _claim(answers: dict) -> list[dict]:
    items = []
    for number, section, name in CLAIM_ITEMS:
        status, where = answers.get(number, ("author", None))
        items.append({"item": number, "section": section, "name": name, "status": status, "where": where})
    return items


def _claim_mark(item: dict) -> str:
    """How a CLAIM item is marked in the markdown."""
    if item["status"] == "answered":
        return f"answered by the records: {item['where']}"
    if item["status"] == "partly":
        return f"partly answered by the records: {item['where']}; the rest {AUTHOR}"
    return f"{AUTHOR} ({item['where']})" if item.get("where") else AUTHOR


# -- markdown ---------------------------------------------------------------------------------------------------


def _fmt(value, digits: int = 3) -> str:
    """A value as the markdown shows it: floats with ``digits`` decimals, NaN as "NaN", None as "not recorded"."""
    if value is None:
        return NOT_RECORDED
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def _significant(value) -> str:
    """A logged number (history.csv) as the markdown shows it: 4 significant digits."""
    return f"{value:.4g}" if isinstance(value, float) else _fmt(value)


def _setting_text(value) -> str:
    """A setting's value as the markdown shows it: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _table(header: tuple, rows) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return lines + [""]


def _ci(ci) -> str:
    low, high = (ci or [None, None])[:2]
    return f"{_fmt(low)}–{_fmt(high)}" if _finite(low) and _finite(high) else "none"


def _noted_ci(point: dict, name: str) -> str:
    """An operating point's interval of ``name`` with its small-sample note, if it has one."""
    note = point.get(f"{name}_ci_note")
    return _ci(point[f"{name}_ci"]) + (f" ({note})" if note else "")


def _intended(card) -> list[str]:
    lines = ["## Intended use and limitations", "", card["intended_use"]["use"], ""]
    lines += [f"- {text}" for text in card["intended_use"]["limitations"]]
    return lines + [""]


def _software(card) -> list[str]:
    lines = ["## Software versions", ""]
    versions = card["software"]["versions"]
    if not versions:
        return lines + [f"{NOT_RECORDED}.", ""]
    for entry in versions if isinstance(versions, list) else [versions]:
        lines += _table(("package", "version"), sorted(entry.items()))
    if card["software"].get("command"):
        lines += [f"Command: `{card['software']['command']}`", ""]
    return lines


def _claim_lines(card) -> list[str]:
    claim = card["claim"]
    counts = Counter(item["status"] for item in claim)
    lines = [
        "## CLAIM checklist",
        "",
        "Checklist for Artificial Intelligence in Medical Imaging (Mongan, Moy, Kahn; Radiology: Artificial "
        f"Intelligence 2020). Of its {len(claim)} items the records answer {counts['answered']}, answer "
        f"{counts['partly']} in part, and leave {counts['author']} to the author.",
        "",
    ]
    return lines + _table(
        ("item", "section", "topic", "status"), ((i["item"], i["section"], i["name"], _claim_mark(i)) for i in claim)
    )


def _audit_lines(audit: dict, where: str) -> list[str]:
    lines = ["## Audit", ""]
    if not audit["recorded"]:
        return lines + [f"{NOT_RECORDED.capitalize()}: no `{audit['file']}` in the {where} folder.", ""]
    counts = ", ".join(f"{n} {severity}" for severity, n in audit["by_severity"].items())
    lines += [f"{audit['findings']} finding(s) in `{audit['file']}`" + (f": {counts}." if counts else "."), ""]
    rows = ((kind, severity, n) for kind, found in audit["by_kind"].items() for severity, n in found.items())
    return lines + (_table(("kind", "severity", "findings"), rows) if audit["by_kind"] else [])


def _not_recorded(card) -> list[str]:
    if not card["not_recorded"]:
        return []
    return ["## Not recorded", "", *(f"- {text}" for text in card["not_recorded"]), ""]


def _metric_lines(metrics: dict, full: bool = False) -> list[str]:
    """A metrics dict as tables; ``full``: with its temperature, calibration and operating point too (an external
    site's arm; the test part's have sections of their own)."""
    rows = [
        ("images", _fmt(metrics.get("n"))),
        ("patients", _fmt(metrics.get("n_patients"))),
        (
            "AUC"
            + (
                f" ({metrics['positive_class']} positive)" if metrics.get("positive_class") else " (macro, one vs rest)"
            ),
            _fmt(metrics.get("auc")),
        ),
        ("AUC 95% CI", _ci(metrics.get("auc_ci"))),
        ("accuracy", _fmt(metrics.get("accuracy"))),
        ("balanced accuracy", _fmt(metrics.get("balanced_accuracy"))),
    ]
    if full:
        if "temperature" in metrics:
            rows.append(("temperature", "none" if metrics["temperature"] is None else _fmt(metrics["temperature"], 4)))
        rows += [("Brier score", _fmt(metrics.get("brier"))), ("expected calibration error", _fmt(metrics.get("ece")))]
        point = metrics.get("operating_point")
        if point:
            rows += [
                (f"threshold on P({point.get('threshold_class')})", _fmt(point.get("threshold"), 4)),
                ("threshold chosen on", _fmt(point.get("chosen_on"))),
                ("sensitivity at the threshold", _fmt(point.get("sensitivity"))),
                *([("its 95% CI", _noted_ci(point, "sensitivity"))] if "sensitivity_ci" in point else []),
                ("specificity at the threshold", _fmt(point.get("specificity"))),
                *([("its 95% CI", _noted_ci(point, "specificity"))] if "specificity_ci" in point else []),
            ]
    lines = _table(("metric", "value"), rows)
    lines += [f"Interval: {metrics['interval']}.", ""]
    if metrics.get("missing_classes"):
        lines += [f"Classes absent from these images: {', '.join(metrics['missing_classes'])}.", ""]
    per_class = metrics.get("sensitivity") or {}
    if per_class:
        names = list(per_class)
        lines += _table(
            ("class", "sensitivity", "specificity", "AUC (one vs rest)"),
            (
                (
                    c,
                    _fmt(per_class.get(c)),
                    _fmt((metrics.get("specificity") or {}).get(c)),
                    _fmt((metrics.get("per_class_auc") or {}).get(c)),
                )
                for c in names
            ),
        )
        lines += ["Sensitivity and specificity per class are of arg-max decisions.", ""]
    matrix = metrics.get("confusion_matrix")
    if matrix and per_class:
        lines += ["Confusion matrix (rows: true class, columns: predicted class):", ""]
        lines += _table(("true \\ predicted", *per_class), ((c, *row) for c, row in zip(per_class, matrix)))
    return lines


def _run_markdown(card: dict) -> list[str]:
    model, training, data, threshold = card["model"], card["training"], card["data"], card["threshold"]
    title = model["backbone"] or "model"
    lines = [
        f"# Model card: {title}",
        "",
        f"Made by {card['written_by']} from the run folder `{card['folder']}`, from these files only: "
        + ", ".join(f"`{f}`" for f in card["files_read"])
        + ". Nothing here is hand-written but the intended use, its limitations and the CLAIM items' names.",
        "",
        "## Model details",
        "",
    ]
    weights = (
        "none (random initialisation)"
        if model["random_init"]
        else _fmt(model["weights_source"] or model["weights_requested"])
    )
    lines += _table(
        ("field", "value"),
        [
            ("model file", _fmt(model["file"])),
            ("backbone", _fmt(model["backbone"])),
            ("weights source", weights),
            ("weights file", "none" if model["random_init"] else _fmt(model["weights_file"])),
            ("weights sha256", model["weights_sha256_text"]),
            ("preprocessing", _fmt(model["preprocessing"])),
            ("input size", _setting_text(model["input_shape"]) if model["input_shape"] else NOT_RECORDED),
            ("classes", ", ".join(model["class_names"]) if model["class_names"] else NOT_RECORDED),
            ("head", f"Dropout({_setting_text(model['dropout'])}) → Dense({_fmt(model['num_classes'])}, softmax)"),
            (
                "trainable / total parameters",
                f"{model['trainable_params']} / {model['total_params']}"
                if model["trainable_params"] is not None and model["total_params"] is not None
                else NOT_RECORDED,
            ),
            ("settings fingerprint", _fmt(model["fingerprint"])),
        ],
    )
    lines += [f"Recorded in {_fmt(model['recorded_in'])}.", ""]
    if model["read_settings"]:
        lines += [f"How image files become inputs ({model['read_settings_from']}):", ""]
        lines += _table(("setting", "value"), ((k, _setting_text(v)) for k, v in model["read_settings"].items()))
    lines += _intended(card)

    lines += ["## Training", ""]
    outcome = (
        f"Status: {_fmt(training['status'])}; best epoch {training['best_epoch']} of {_fmt(training['epochs_run'])} "
        f"(best val_loss {_fmt(training['best_val_loss'])}), selected as {training['selection']}."
        if training["best_epoch"] is not None
        else f"Outcome (status, best epoch): {NOT_RECORDED} (no {STATE} or {RESULT})."
    )
    lines += [f"Seed: {_fmt(training['seed'])} (used: {_fmt(training['seed_used'])}). {outcome}", ""]
    if training["settings"]:
        lines += [f"Every setting, from {training['settings_from']}:", ""]
        lines += _table(("setting", "value"), ((k, _setting_text(v)) for k, v in training["settings"].items()))
    at_best = training["history_at_best_epoch"]
    if at_best:
        lines += [f"Metrics at the best epoch ({HISTORY}):", ""]
        lines += _table(("metric", "value"), ((k, _significant(v)) for k, v in at_best.items() if k != "epoch"))

    lines += ["## Data", ""]
    if data["parts"]:
        classes = sorted({c for p in data["parts"].values() for c in p["classes"]})
        lines += _table(
            ("part", "images", "patients", *classes),
            (
                (name, p["images"], _fmt(p["patients"]), *(p["classes"].get(c, 0) for c in classes))
                for name, p in data["parts"].items()
            ),
        )
        level = data["disjoint_level"]
        lines += [
            f"Parts disjoint by: {_fmt(level)}"
            + (" (no patient id in two parts)." if level == "patient" else ".")
            + (f" Patients in two parts: {data['patients_in_two_parts']}." if data["patients_in_two_parts"] else "")
            + (f" Images in two parts: {data['images_in_two_parts']}." if data["images_in_two_parts"] else ""),
            "",
        ]
    else:
        lines += [f"Split: {NOT_RECORDED}.", ""]
    if data["requested_split"]:
        lines += [
            "Requested split (unless DATA came split already): "
            + ", ".join(f"{k} {_setting_text(v)}" for k, v in data["requested_split"].items())
            + f". Data read from `{_fmt(data['source'])}`; missing labels: {_fmt(data['missing_labels'])}; "
            f"unreadable files: {_fmt(data['on_bad'])}"
            + (f" (skipped: {data['skipped_files']})" if data["skipped_files"] else "")
            + ".",
            "",
        ]

    lines += _audit_lines(card["audit"], "run")

    lines += ["## Evaluation", ""]
    if card["evaluation"]:
        lines += [f"On the test part ({card['evaluation']['file']}):", ""]
        lines += _metric_lines(card["evaluation"])
    else:
        lines += [f"{NOT_RECORDED.capitalize()}: no {TEST_METRICS}.", ""]

    calibration = card["calibration"]
    lines += ["## Calibration", ""]
    if calibration["file"]:
        lines += [
            f"On the test part ({calibration['file']}): Brier score {_fmt(calibration['brier'])}, expected "
            f"calibration error {_fmt(calibration['ece'])} (top-label, {calibration['n_bins']} equal-width bins)"
            + (
                f", at temperature {_fmt(calibration['test_temperature'], 4)}"
                if calibration["test_temperature"] is not None
                else ""
            )
            + ".",
            "",
        ]
        if calibration["bins"]:
            lines += _table(
                ("bin", "images", "accuracy", "mean confidence"),
                (
                    (f"{_fmt(b['lower'])}–{_fmt(b['upper'])}", b["count"], _fmt(b["accuracy"]), _fmt(b["confidence"]))
                    for b in calibration["bins"]
                ),
            )
    fit = calibration["fit"] or {}
    temperature = calibration["temperature"] if calibration["temperature"] is not None else fit.get("temperature")
    if temperature is not None:
        lines += [f"Temperature: {_fmt(temperature, 4)} ({BEST_MODEL}, radtransfer.json)."]
        if fit:
            lines += [
                f"Fitted by {_fmt(fit.get('method'))} on {_fmt(fit.get('fitted_on'))} ({_fmt(fit.get('n'))} images): "
                f"NLL {_fmt(fit.get('nll_before'), 4)} → {_fmt(fit.get('nll_after'), 4)}, "
                f"ECE {_fmt(fit.get('ece_before'), 4)} → {_fmt(fit.get('ece_after'), 4)}."
            ]
        lines += [""]
    else:
        lines += [f"Temperature: {NOT_RECORDED} (the probabilities are the softmax's as trained).", ""]

    lines += ["## Operating threshold", ""]
    if threshold["value"] is not None:
        lines += [
            f"Threshold {_fmt(threshold['value'], 4)} on the probability of {_fmt(threshold['threshold_class'])}, "
            f"chosen on: {_fmt(threshold['chosen_on'])} ({threshold['file']})"
            + (
                f"; {_fmt(threshold['threshold_unscaled'], 4)} on the unscaled probability"
                if threshold["threshold_unscaled"] not in (None, threshold["value"])
                else ""
            )
            + f". At it, on the test part: sensitivity {_fmt(threshold['sensitivity'])}"
            + (f" (95% CI {_ci(threshold['sensitivity_ci'])})" if threshold["sensitivity_ci"] else "")
            + f", specificity {_fmt(threshold['specificity'])}"
            + (f" (95% CI {_ci(threshold['specificity_ci'])})" if threshold["specificity_ci"] else "")
            + ".",
            "",
        ]
    else:
        lines += [f"{threshold['note'][0].upper()}{threshold['note'][1:]}.", ""]
    if threshold["validation_thresholds"]:
        lines += [
            f"Thresholds chosen on the validation part ({threshold['stored_in']}; class index: threshold): "
            + ", ".join(f"{k}: {_fmt(v, 4)}" for k, v in threshold["validation_thresholds"].items())
            + ".",
            "",
        ]

    lines += ["## External validation", ""]
    if card["external"]:
        for external in card["external"]:
            lines += [f"### Site: {external['site']} ({external['file']})", ""]
            lines += ["At the model's own temperature and development threshold:", ""]
            lines += _metric_lines(external["development"], full=True)
            if external["recalibrated"]:
                refit = external["recalibration"] or {}
                lines += [
                    f"Recalibrated on a local set of the site ({_fmt(refit.get('n'))} images, "
                    f"{_fmt(refit.get('n_patients'))} patients): temperature {_fmt(refit.get('temperature'), 4)}, "
                    f"threshold {_fmt(refit.get('threshold'), 4)}.",
                    "",
                ]
                lines += _metric_lines(external["recalibrated"], full=True)
    else:
        lines += [f"{NOT_RECORDED.capitalize()}: no external-<site>.json in the run folder.", ""]

    lines += _software(card)
    lines += _not_recorded(card)
    lines += _claim_lines(card)
    return lines


def _grid_markdown(card: dict) -> list[str]:
    grid = card["grid"]
    lines = [
        f"# Model card: grid {grid['task']}",
        "",
        f"Made by {card['written_by']} from the grid folder `{card['folder']}`, from these files only: "
        + ", ".join(f"`{f}`" for f in card["files_read"])
        + ". A grid compares weight sources over scenarios; the card of one of its models is made from that run's "
        f"folder ({RUNS_DIR}/<source>/<scenario>/fold<k>).",
        "",
        "## Grid",
        "",
    ]
    lines += _table(
        ("field", "value"),
        [
            ("task", _fmt(grid["task"])),
            ("paper task", grid["paper_task"] or "none"),
            ("classes", ", ".join(grid["class_names"])),
            ("images", _fmt(grid["n_images"])),
            ("patients", _fmt(grid["n_patients"])),
            ("data sha256", _fmt(grid["data_sha256"])),
            ("sources", ", ".join(grid["sources"])),
            ("scenarios", len(grid["scenarios"])),
            ("folds", _fmt(grid["folds"]) if grid["folds"] else "none (one split)"),
            ("faithful", _fmt(grid["faithful"])),
            ("BatchNorm", _fmt(grid["bn"])),
            ("interpolation", _fmt(grid["interpolation"])),
            ("seed", _fmt(grid["seed"])),
            ("runs recorded / expected", f"{grid['runs_recorded']} / {grid['runs_expected']}"),
            ("statuses", ", ".join(f"{k} {v}" for k, v in grid["statuses"].items()) or "none"),
        ],
    )
    if grid["config"]:
        lines += [f"Settings ({GRID_FILE}: config):", ""]
        lines += _table(("setting", "value"), ((k, _setting_text(v)) for k, v in grid["config"].items()))
    lines += ["## Weights", ""]
    if card["weights"]:
        lines += _table(
            ("source", "backbone", "weights file", "sha256", "preprocessing"),
            (
                (
                    w["source"],
                    w["backbone"],
                    _fmt(w["weights_file"]),
                    _fmt(w["weights_sha256"]),
                    _fmt(w["preprocessing"]),
                )
                for w in card["weights"]
            ),
        )
    else:
        lines += [f"{NOT_RECORDED.capitalize()}: no run recorded.", ""]
    lines += _intended(card)
    lines += _audit_lines(card["audit"], "grid")
    lines += ["## Evaluation: test AUC per run", ""]
    if card["runs"]:
        lines += _table(
            ("source", "scenario", "fold", "status", "AUC", "95% CI", "interval", "test images"),
            (
                (
                    r["source"],
                    r["scenario"],
                    r["fold"],
                    r["status"],
                    _fmt(r["auc"]),
                    _ci(r["auc_ci"]),
                    _fmt(r["interval"]),
                    r["n_test"],
                )
                for r in card["runs"]
            ),
        )
    else:
        lines += [f"{NOT_RECORDED.capitalize()}: no run recorded.", ""]
    if card["scenario_means"]:
        lines += ["Mean test AUC per scenario over its folds with an AUC:", ""]
        lines += _table(
            ("source", "scenario", "folds", "mean AUC"),
            ((m["source"], m["scenario"], m["folds"], _fmt(m["mean_auc"])) for m in card["scenario_means"]),
        )
    lines += _software(card)
    lines += _not_recorded(card)
    lines += _claim_lines(card)
    return lines

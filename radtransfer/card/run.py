"""The card of a run folder (``radtransfer train``, ``fine_tune``'s out_dir): its files read into the card's dict.

Every number, setting and name is read from the run's files (config.json, state.json, result.json, history.csv,
best.keras's metadata, test_metrics.json, the split CSVs, skipped_files.csv, audit.json, external-<site>.json; a
grid's run keeps its test metrics in record.json); what they do not hold is listed under ``not_recorded``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from ..data.audit import AUDIT_FILE
from ..data.decode import READ_SETTING_FIELDS
from ..evaluation.external import EXTERNAL_FILE
from ..grid.records import RECORD_FILE
from ..models.trained import METADATA
from ..training.run_folder import (
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
from ..version import __version__
from .policy import (
    CARD_SCHEMA,
    NOT_RECORDED,
    POLICY_STARTS,
    TESTED,
    UNTESTED,
    calibration_limitation,
    claim,
    intended_use,
    threshold_limitation,
)
from .reading import (
    Reader,
    audit_section,
    model_fit,
    number,
    operating_point_note,
    shown_metrics,
    threshold_note,
)

EXTERNAL_GLOB = EXTERNAL_FILE.format(site="*")  # evaluate(..., site=) on other sites' data
EXTERNAL_NAME = EXTERNAL_FILE.format(site="<site>")  # the external files' name, as the card says it
_EXTERNAL_PREFIX, _EXTERNAL_SUFFIX = EXTERNAL_FILE.split("{site}")

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


def run_card(folder: Path) -> dict:
    """The card of a run folder (see ``radtransfer.card.model_card``)."""
    reader = Reader(folder)
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
        "intended_use": None,  # filled below, from the test figures, the temperature and the threshold
        "training": _training_section(config, identity, state, result, history, missing),
        "data": _data_section(splits, cli, skipped, config, identity, missing),
        "audit": audit_section(audit),
        "evaluation": shown_metrics(test, test_source) if test else None,
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
        missing.append(f"external validation (no {EXTERNAL_NAME})")
    if not config.get("versions"):
        missing.append(f"software versions ({CONFIG} has none)")
    calibration = card["calibration"]
    card["intended_use"] = intended_use(
        model_fit(test, test_source),
        [
            TESTED if test else UNTESTED,
            calibration_limitation(calibration["model_temperature"], calibration["fit"]),
            threshold_limitation(card["threshold"]),
        ],
    )
    card["not_recorded"] = missing
    card["files_read"] = list(reader.read)
    card["claim"] = claim(_run_answers(card))
    return card


def _card_classes(config: dict, trained: dict) -> list | None:
    """The class names a run recorded (best.keras's, else config.json's)."""
    return trained.get("class_names") or config.get("class_names") or (config.get("identity") or {}).get("class_names")


def _model_section(config, identity, trained, result, missing, has_model_file: bool) -> dict:
    if config.get("model"):
        build, where = config["model"], f"{CONFIG} (model)"
    elif trained.get("build"):
        build, where = trained["build"], f"{BEST_MODEL} ({METADATA}: build)"
    elif identity.get("model"):
        build, where = identity["model"], f"{CONFIG} (identity.model)"
    else:
        build, where = {}, None
        missing.append(f"how the model was built (no build info in {CONFIG} or {BEST_MODEL})")
    read_settings = trained.get("read_settings")
    read_from = f"{BEST_MODEL} ({METADATA}: read_settings)"
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
        rows = [{k: number(v) for k, v in row.items()} for row in history]
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
        "selection": f"the epoch with the lowest val_loss (its weights are {BEST_MODEL})",
    }


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


def _data_section(splits, cli, skipped, config, identity, missing) -> dict:
    parts = {name: _part(rows) for name, rows in splits.items() if rows is not None}
    if not parts:
        missing.append(f"the split (no {' / '.join(SPLIT_FILES.values())})")
    patient_sets = {
        name: {row["patient_id"] for row in rows if row.get("patient_id")}
        for name, rows in splits.items()
        if rows and "patient_id" in rows[0]
    }
    path_sets = {name: {row["path"] for row in rows} for name, rows in splits.items() if rows}
    shared_patients = _overlaps(patient_sets)
    shared_images = _overlaps(path_sets)
    patient_disjoint = None  # unknown: a part without a patient_id column, or one part only
    if len(patient_sets) == len(parts) and len(parts) > 1:
        patient_disjoint = not any(shared_patients.values())
    if len(parts) < 2:
        level = None
    elif patient_disjoint:
        level = "patient"
    else:
        level = "image" if not any(shared_images.values()) else "none"
    total = sum(p["images"] for p in parts.values())
    skipped_parts = Counter(row.get("part", "?") for row in skipped) if skipped is not None else None
    return {
        "parts": parts,
        "share_of_images": {name: p["images"] / total for name, p in parts.items()} if total else {},
        "disjoint_level": level,
        "patient_disjoint": patient_disjoint,
        "parts_without_patient_ids": [name for name in parts if name not in patient_sets],
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
    fit = trained.get("calibration") or None
    model_temperature = trained.get("temperature")
    if model_temperature is None and fit:
        model_temperature = fit.get("temperature")
    measured_at = _measured_at(test, model_temperature)
    section = {
        "brier": (test or {}).get("brier"),
        "ece": (test or {}).get("ece"),
        "bins": [b for b in (test or {}).get("calibration_bins") or [] if b.get("count")],
        "n_bins": len((test or {}).get("calibration_bins") or []),
        "file": test_source if test else None,
        "temperature": trained.get("temperature"),
        "fit": fit,
        "model_temperature": model_temperature,
        "test_temperature": (test or {}).get("temperature"),
        "measured_at": measured_at,
    }
    if test and "brier" not in test and "ece" not in test:
        missing.append(f"calibration on the test part ({test_source} has no brier/ece)")
    if section["temperature"] is None and not section["fit"]:
        missing.append(f"a temperature ({BEST_MODEL} holds none: the probabilities are the softmax's as trained)")
    if measured_at in ("before the temperature", "at another temperature", "unknown"):
        missing.append(
            f"the calibrated model's Brier score and ECE on the test part ({test_source} was measured "
            + ("at a temperature it does not record)" if measured_at == "unknown" else f"{measured_at})")
        )
    return section


def _measured_at(test, model_temperature) -> str | None:
    """Which model the test part's Brier score and ECE are of: "no temperature" (the model has none, nor had the
    one measured), "before the temperature" (measured on the softmax as trained; the model now has one), "at the
    model's temperature", "at another temperature", or "unknown" (the file does not record its temperature)."""
    if not test or ("brier" not in test and "ece" not in test):
        return None
    if "temperature" not in test:
        return "unknown"
    at = test["temperature"]
    if at is None:
        return "no temperature" if model_temperature is None else "before the temperature"
    if model_temperature is not None and abs(at - model_temperature) <= 1e-9 * max(1.0, abs(at)):
        return "at the model's temperature"
    return "at another temperature"


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
        "stored_in": f"{BEST_MODEL} ({METADATA})"
        if trained.get("thresholds") or trained.get("threshold")
        else (RESULT if stored or single is not None else None),
        "num_classes": n_classes,
        "calls_note": None if point is None else operating_point_note(point, (test or {}).get("positive_class")),
        "validation_threshold_notes": {
            k: note
            for k, v in (stored or {}).items()
            if (note := threshold_note(v, _class_name(class_names, k))) is not None
        },
    }
    if point is None:
        section["note"] = (
            f"no operating threshold: {n_classes} classes, each image is called its most probable class"
            if n_classes and n_classes > 2
            else NOT_RECORDED
        )
    return section


def _class_name(class_names, index) -> str:
    """The name of class ``index`` (a key of best.keras's thresholds: a class index, as a string in JSON)."""
    try:
        return str(class_names[int(index)])
    except (TypeError, ValueError, IndexError):
        return f"class {index}"


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
        answers[21] = _disjoint_answer(data)
        without = data["parts_without_patient_ids"]
        patients = f"patients unknown in {', '.join(without)} (no patient_id column)" if without else "patients"
        answers[34] = ("partly", f"split CSVs: images, classes and {patients} per part")
        answers[33] = (
            "partly",
            f"split CSVs: images and {patients} per part" + (f"; {AUDIT_FILE}" if card["audit"]["recorded"] else ""),
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
        problem = evaluation.get("interval_problem")
        if problem:
            answers[29] = answers[36] = ("not answered", f"{evaluation['file']}: the AUC has {problem}")
        else:
            answers[29] = ("answered", f"{evaluation['file']}: auc_ci ({evaluation['interval']})")
            point = evaluation.get("operating_point") or {}
            with_ci = "sensitivity_ci" in point and "specificity_ci" in point
            answers[36] = (
                "answered" if with_ci else "partly",
                f"{evaluation['file']}: AUC with its interval; sensitivity and specificity "
                + ("with" if with_ci else "without")
                + " intervals",
            )
        answers[37] = ("partly", f"{evaluation['file']}: confusion_matrix (the cases themselves are not analysed)")
        answers[35] = (
            "partly" if training["history_at_best_epoch"] is None else "answered",
            f"{evaluation['file']} (test)"
            + (f"; {HISTORY} at the best epoch (train, val)" if training["history_at_best_epoch"] else ""),
        )
    if card["external"]:
        answers[32] = _external_answer(card["external"])
    if data["source"]:
        answers[7] = ("partly", f"{CLI_CONFIG}: data (the path read)")
    answers.update(POLICY_STARTS)
    return answers


def _disjoint_answer(data: dict) -> tuple[str, str]:
    """CLAIM item 21 (the level at which the parts are disjoint) from the split CSVs."""
    level, shared = data["disjoint_level"], data["patients_in_two_parts"]
    images = (
        "no image in two parts"
        if level in ("image", "patient")
        else f"images in two parts: {data['images_in_two_parts']}"
    )
    if data["patient_disjoint"]:
        return "answered", "split CSVs (patient_id column: no patient in two parts)"
    if data["patient_disjoint"] is False:
        return "answered", f"split CSVs (patient_id column: patients in two parts: {shared}; {images})"
    if level is None:
        return "not answered", "one split CSV only: no parts to compare"
    without = ", ".join(data["parts_without_patient_ids"])
    return "partly", f"split CSVs ({images}); by patient: unknown (no patient_id column in {without})"


def _external_answer(externals: list[dict]) -> tuple[str, str]:
    """CLAIM item 32 (external validation): answered by the sites whose AUC has an interval."""
    good = [e["file"] for e in externals if not e["development"].get("interval_problem")]
    bad = [
        f"{e['file']}: the AUC has {e['development']['interval_problem']}" for e in externals if e["file"] not in good
    ]
    if not bad:
        return "answered", ", ".join(good)
    if not good:
        return "not answered", "; ".join(bad)
    return "partly", ", ".join(good) + "; " + "; ".join(bad)


def _external(name: str, payload: dict) -> dict:
    """One external-<site>.json: ``{"site", "development", "recalibrated", "recalibration"}`` (each arm evaluate's
    metrics), or evaluate's metrics with a "site" key (one arm)."""
    site = payload.get("site") or name[len(_EXTERNAL_PREFIX) : -len(_EXTERNAL_SUFFIX)]
    if "development" in payload:
        development, recalibrated = payload["development"], payload.get("recalibrated")
    else:
        development, recalibrated = payload, None
    refit = payload.get("recalibration") or {}
    classes = (recalibrated or development).get("class_names")
    on = ((recalibrated or {}).get("operating_point") or {}).get("threshold_class") or _class_name(classes, 1)
    return {
        "site": site,
        "file": name,
        "development": shown_metrics(development, name),
        "recalibrated": shown_metrics(recalibrated, name) if recalibrated else None,
        "recalibration": payload.get("recalibration"),
        "recalibration_note": threshold_note(refit.get("threshold"), on),
    }

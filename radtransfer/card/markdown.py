"""A card's markdown (``MODEL_CARD.md``), rendered from the card's dict alone, so the two files never disagree.

A card is a table of sections, (title, renderer) pairs looped over (as timm's ``generate_readme`` loops over a model
card's sections): ``RUN_SECTIONS`` for a run, ``GRID_SECTIONS`` for a grid. A renderer takes the card and returns
its section's lines below the title, or None to leave the section out; the untitled first section is the card's
heading.
"""

from __future__ import annotations

import json
import math
from collections import Counter

from ..grid.records import GRID_FILE
from ..models.trained import METADATA
from ..training.run_folder import BEST_MODEL, HISTORY, RESULT, STATE, TEST_METRICS
from .grid import RUN_FOLDERS
from .policy import AUTHOR, NOT_RECORDED
from .reading import finite
from .run import EXTERNAL_NAME


def to_markdown(card: dict) -> str:
    """The markdown of a card made by ``model_card`` (from the dict alone, so both files say the same)."""
    lines = []
    for title, render in GRID_SECTIONS if card["kind"] == "grid" else RUN_SECTIONS:
        body = render(card)
        if body is not None:
            lines += ([f"## {title}", ""] if title else []) + body
    return "\n".join(lines).rstrip() + "\n"


# -- formatting -------------------------------------------------------------------------------------------------


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


def _settings_table(settings: dict) -> list[str]:
    return _table(("setting", "value"), ((k, _setting_text(v)) for k, v in settings.items()))


def _ci(ci) -> str:
    low, high = (ci or [None, None])[:2]
    if not (finite(low) and finite(high)):
        return "none"
    return f"{_fmt(low)}–{_fmt(high)}" + (" (zero width: no evidence of precision)" if high <= low else "")


def _noted_ci(point: dict, name: str) -> str:
    """An operating point's interval of ``name`` with its small-sample note, if it has one."""
    note, shown = point.get(f"{name}_ci_note"), _ci(point[f"{name}_ci"])
    if shown == "none" and note:  # the minimum-units rule's reason says it: "no interval (2 positive patients: ...)"
        return note
    return shown + (f" ({note})" if note else "")


def _not_recorded_line(what: str) -> list[str]:
    return [f"{NOT_RECORDED.capitalize()}: {what}.", ""]


def _claim_mark(item: dict) -> str:
    """How a CLAIM item is marked in the markdown."""
    if item["status"] == "answered":
        return f"answered by the records: {item['where']}"
    if item["status"] == "partly":
        return f"partly answered by the records: {item['where']}; the rest {AUTHOR}"
    if item["status"] == "not answered":
        return f"not answered: {item['where']}"
    return f"{AUTHOR} ({item['where']})" if item.get("where") else AUTHOR


def _metric_lines(metrics: dict, full: bool = False) -> list[str]:
    """A metrics dict as tables; ``full``: with its temperature, calibration and operating point too (an external
    site's arm; the test part's have sections of their own)."""
    positive = metrics.get("positive_class")
    rows = [
        ("images", _fmt(metrics.get("n"))),
        ("patients", _fmt(metrics.get("n_patients"))),
        ("AUC" + (f" ({positive} positive)" if positive else " (macro, one vs rest)"), _fmt(metrics.get("auc"))),
        ("AUC 95% CI", _ci(metrics.get("auc_ci"))),
        ("accuracy", _fmt(metrics.get("accuracy"))),
        ("balanced accuracy", _fmt(metrics.get("balanced_accuracy"))),
    ]
    if full:
        rows += _full_metric_rows(metrics)
    lines = _table(("metric", "value"), rows)
    lines += [f"Interval: {metrics['interval']}.", ""]
    if metrics.get("missing_classes"):
        lines += [f"Classes absent from these images: {', '.join(metrics['missing_classes'])}.", ""]
    per_class = metrics.get("sensitivity") or {}
    if per_class:
        specificity, auc = metrics.get("specificity") or {}, metrics.get("per_class_auc") or {}
        lines += _table(
            ("class", "sensitivity", "specificity", "AUC (one vs rest)"),
            ((c, _fmt(per_class.get(c)), _fmt(specificity.get(c)), _fmt(auc.get(c))) for c in per_class),
        )
        lines += ["Sensitivity and specificity per class are of arg-max decisions.", ""]
    matrix = metrics.get("confusion_matrix")
    if matrix and per_class:
        lines += ["Confusion matrix (rows: true class, columns: predicted class):", ""]
        lines += _table(("true \\ predicted", *per_class), ((c, *row) for c, row in zip(per_class, matrix)))
    return lines


def _full_metric_rows(metrics: dict) -> list[tuple]:
    """An external arm's temperature, calibration and operating point, as rows of its metric table."""
    rows = []
    if "temperature" in metrics:
        rows.append(("temperature", "none" if metrics["temperature"] is None else _fmt(metrics["temperature"], 4)))
    rows += [("Brier score", _fmt(metrics.get("brier"))), ("expected calibration error", _fmt(metrics.get("ece")))]
    point = metrics.get("operating_point")
    if point:
        rows += [
            (f"threshold on P({point.get('threshold_class')})", _fmt(point.get("threshold"), 4)),
            *([("what it calls", metrics["operating_point_note"])] if metrics.get("operating_point_note") else []),
            ("threshold chosen on", _fmt(point.get("chosen_on"))),
            ("sensitivity at the threshold", _fmt(point.get("sensitivity"))),
            *([("its 95% CI", _noted_ci(point, "sensitivity"))] if "sensitivity_ci" in point else []),
            ("specificity at the threshold", _fmt(point.get("specificity"))),
            *([("its 95% CI", _noted_ci(point, "specificity"))] if "specificity_ci" in point else []),
        ]
    return rows


# -- sections of both cards -------------------------------------------------------------------------------------


def _intended(card) -> list[str]:
    section = card["intended_use"]
    fit = section["fit"]
    verdict = f"{fit['text']}: " + "; ".join(fit["because"]) + "."
    return [
        f"Intended use (policy): {section['use']}",
        "",
        f"**{verdict}**" if fit["status"] == "not fit" else verdict,
        "",
        *(f"- {text}" for text in section["limitations"]),
        "",
    ]


def _audit(card) -> list[str]:
    audit = card["audit"]
    if not audit["recorded"]:
        return _not_recorded_line(f"no `{audit['file']}` in the {card['kind']} folder")
    counts = ", ".join(f"{n} {severity}" for severity, n in audit["by_severity"].items())
    lines = [f"{audit['findings']} finding(s) in `{audit['file']}`" + (f": {counts}." if counts else "."), ""]
    rows = ((kind, severity, n) for kind, found in audit["by_kind"].items() for severity, n in found.items())
    return lines + (_table(("kind", "severity", "findings"), rows) if audit["by_kind"] else [])


def _software(card) -> list[str]:
    versions = card["software"]["versions"]
    if not versions:
        return [f"{NOT_RECORDED}.", ""]
    lines = []
    for entry in versions if isinstance(versions, list) else [versions]:
        lines += _table(("package", "version"), sorted(entry.items()))
    if card["software"].get("command"):
        lines += [f"Command: `{card['software']['command']}`", ""]
    return lines


def _not_recorded(card) -> list[str] | None:
    return [f"- {text}" for text in card["not_recorded"]] + [""] if card["not_recorded"] else None


def _claim_lines(card) -> list[str]:
    claim = card["claim"]
    counts = Counter(item["status"] for item in claim)
    lines = [
        "Checklist for Artificial Intelligence in Medical Imaging (Mongan, Moy, Kahn; Radiology: Artificial "
        f"Intelligence 2020). Of its {len(claim)} items the records answer {counts['answered']}, answer "
        f"{counts['partly']} in part, "
        + (f"hold only missing or degenerate evidence for {counts['not answered']}, " if counts["not answered"] else "")
        + f"and leave {counts['author']} to the author.",
        "",
    ]
    return lines + _table(
        ("item", "section", "topic", "status"), ((i["item"], i["section"], i["name"], _claim_mark(i)) for i in claim)
    )


# -- a run's sections -------------------------------------------------------------------------------------------


def _run_heading(card) -> list[str]:
    return [
        f"# Model card: {card['model']['backbone'] or 'model'}",
        "",
        f"Made by {card['written_by']} from the run folder `{card['folder']}`, from these files only: "
        + ", ".join(f"`{f}`" for f in card["files_read"])
        + ". Nothing here is hand-written but the intended use, the fixed sentences of its limitations and the CLAIM "
        "items' names.",
        "",
    ]


def _model_details(card) -> list[str]:
    model = card["model"]
    random_init = model["random_init"]
    source = model["weights_source"] or model["weights_requested"]
    weights = "none (random initialisation)" if random_init else _fmt(source)
    trainable, total = model["trainable_params"], model["total_params"]
    lines = _table(
        ("field", "value"),
        [
            ("model file", _fmt(model["file"])),
            ("backbone", _fmt(model["backbone"])),
            ("weights source", weights),
            ("weights file", "none" if random_init else _fmt(model["weights_file"])),
            ("weights sha256", model["weights_sha256_text"]),
            ("preprocessing", _fmt(model["preprocessing"])),
            ("input size", _setting_text(model["input_shape"]) if model["input_shape"] else NOT_RECORDED),
            ("classes", ", ".join(model["class_names"]) if model["class_names"] else NOT_RECORDED),
            (
                "head",
                f"Dropout({_setting_text(model['dropout'])}) → Dense({_fmt(model['num_classes'])}, softmax)"
                if model["recorded_in"]
                else NOT_RECORDED,
            ),
            (
                "trainable / total parameters",
                f"{trainable} / {total}" if trainable is not None and total is not None else NOT_RECORDED,
            ),
            ("settings fingerprint", _fmt(model["fingerprint"])),
        ],
    )
    lines += [f"Recorded in {model['recorded_in']}." if model["recorded_in"] else f"Build info: {NOT_RECORDED}.", ""]
    if model["read_settings"]:
        lines += [f"How image files become inputs ({model['read_settings_from']}):", ""]
        lines += _settings_table(model["read_settings"])
    return lines


def _training(card) -> list[str]:
    training = card["training"]
    outcome = (
        f"Status: {_fmt(training['status'])}; best epoch {training['best_epoch']} of {_fmt(training['epochs_run'])} "
        f"(best val_loss {_fmt(training['best_val_loss'])}), selected as {training['selection']}."
        if training["best_epoch"] is not None
        else f"Outcome (status, best epoch): {NOT_RECORDED} (no {STATE} or {RESULT})."
    )
    lines = [f"Seed: {_fmt(training['seed'])} (used: {_fmt(training['seed_used'])}). {outcome}", ""]
    if training["settings"]:
        lines += [f"Every setting, from {training['settings_from']}:", ""]
        lines += _settings_table(training["settings"])
    at_best = training["history_at_best_epoch"]
    if at_best:
        lines += [f"Metrics at the best epoch ({HISTORY}):", ""]
        lines += _table(("metric", "value"), ((k, _significant(v)) for k, v in at_best.items() if k != "epoch"))
    return lines


def _data(card) -> list[str]:
    data = card["data"]
    if data["parts"]:
        classes = sorted({c for p in data["parts"].values() for c in p["classes"]})
        lines = _table(
            ("part", "images", "patients", *classes),
            (
                (name, p["images"], _fmt(p["patients"]), *(p["classes"].get(c, 0) for c in classes))
                for name, p in data["parts"].items()
            ),
        )
        level, by_patient = data["disjoint_level"], data.get("patient_disjoint")
        if by_patient is None and level is not None:
            patients = (
                "; by patient: unknown (no patient_id column in "
                + ", ".join(data.get("parts_without_patient_ids") or [])
                + ")"
            )
        elif by_patient is False:
            patients = "; not by patient"
        else:
            patients = ""
        lines += [
            f"Parts disjoint by: {_fmt(level)}"
            + (" (no patient id in two parts)." if level == "patient" else f"{patients}.")
            + (f" Patients in two parts: {data['patients_in_two_parts']}." if data["patients_in_two_parts"] else "")
            + (f" Images in two parts: {data['images_in_two_parts']}." if data["images_in_two_parts"] else ""),
            "",
        ]
    else:
        lines = [f"Split: {NOT_RECORDED}.", ""]
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
    return lines


def _evaluation(card) -> list[str]:
    if not card["evaluation"]:
        return _not_recorded_line(f"no {TEST_METRICS}")
    return [f"On the test part ({card['evaluation']['file']}):", "", *_metric_lines(card["evaluation"])]


def _calibration(card) -> list[str]:
    calibration, lines = card["calibration"], []
    if calibration["file"]:
        lines += [
            f"On the test part ({calibration['file']}), {_measured_at(calibration)}: Brier score "
            f"{_fmt(calibration['brier'])}, expected calibration error {_fmt(calibration['ece'])} (top-label, "
            f"{calibration['n_bins']} equal-width bins).",
            "",
        ]
        if calibration.get("measured_at") in ("before the temperature", "at another temperature", "unknown"):
            lines += [
                f"The calibrated model's Brier score and expected calibration error on the test part are {NOT_RECORDED}"
                f" (`radtransfer evaluate` on the test part measures them at the model's temperature).",
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
    if temperature is None:
        return lines + [f"Temperature: {NOT_RECORDED} (the probabilities are the softmax's as trained).", ""]
    lines += [f"Temperature: {_fmt(temperature, 4)} ({BEST_MODEL}, {METADATA})."]
    if fit:
        lines += [
            f"Fitted by {_fmt(fit.get('method'))} on {_fmt(fit.get('fitted_on'))} ({_fmt(fit.get('n'))} images); on "
            f"those images, before → after the temperature: NLL {_fmt(fit.get('nll_before'), 4)} → "
            f"{_fmt(fit.get('nll_after'), 4)}, ECE {_fmt(fit.get('ece_before'), 4)} → {_fmt(fit.get('ece_after'), 4)}."
        ]
        if fit.get("test_images"):
            measured_after = calibration.get("measured_at") == "at the model's temperature"
            lines += [
                f"**Fitted on {fit['test_images']} images of the run's test split** (allowed with --allow-test): "
                + (
                    "the test part's calibration above is not measured on data the temperature did not see."
                    if measured_after
                    else "calibration measured on the test part at this temperature would not be independent of it."
                )
            ]
        if fit.get("train_images"):
            lines += [
                f"Fitted on {fit['train_images']} images of the run's training split: the temperature is likely "
                "too low (the model is more confident on images it trained on)."
            ]
    return lines + [""]


def _measured_at(calibration: dict) -> str:
    """Which model the test part's Brier score and ECE are of, as the calibration section says it."""
    at, model = calibration.get("test_temperature"), calibration.get("model_temperature")
    return {
        "no temperature": "of the softmax as trained (no temperature)",
        "before the temperature": f"measured before the temperature (the softmax as trained; {TEST_METRICS}: "
        "temperature null)",
        "at the model's temperature": f"measured after the temperature (at the model's {_fmt(at, 4)})",
        "at another temperature": f"measured at temperature {_fmt(at, 4)}, not the model's {_fmt(model, 4)}",
        "unknown": "measured at a temperature the file does not record",
    }.get(calibration.get("measured_at"), "at a temperature not recorded")


def _threshold(card) -> list[str]:
    threshold = card["threshold"]
    if threshold["value"] is not None:
        unscaled = threshold["threshold_unscaled"]
        lines = [
            f"Threshold {_fmt(threshold['value'], 4)} on the probability of {_fmt(threshold['threshold_class'])}, "
            f"chosen on: {_fmt(threshold['chosen_on'])} ({threshold['file']})"
            + (
                f"; {_fmt(unscaled, 4)} on the unscaled probability"
                if unscaled not in (None, threshold["value"])
                else ""
            )
            + f". At it, on the test part: sensitivity {_fmt(threshold['sensitivity'])}"
            + (f" (95% CI {_ci(threshold['sensitivity_ci'])})" if threshold["sensitivity_ci"] else "")
            + f", specificity {_fmt(threshold['specificity'])}"
            + (f" (95% CI {_ci(threshold['specificity_ci'])})" if threshold["specificity_ci"] else "")
            + "."
            + (f" **Degenerate: {threshold['calls_note']}.**" if threshold.get("calls_note") else ""),
            "",
        ]
    else:
        lines = [f"{threshold['note'][0].upper()}{threshold['note'][1:]}.", ""]
    if threshold["validation_thresholds"]:
        lines += [
            f"Thresholds chosen on the validation part ({threshold['stored_in']}; class index: threshold): "
            + ", ".join(
                f"{k}: {_fmt(v, 4)}"
                + (f" ({note})" if (note := (threshold.get("validation_threshold_notes") or {}).get(k)) else "")
                for k, v in threshold["validation_thresholds"].items()
            )
            + ".",
            "",
        ]
    return lines


def _external(card) -> list[str]:
    if not card["external"]:
        return _not_recorded_line(f"no {EXTERNAL_NAME} in the run folder")
    lines = []
    for external in card["external"]:
        lines += [f"### Site: {external['site']} ({external['file']})", ""]
        lines += ["As developed (the temperature and threshold the model carried when evaluated, in the table):", ""]
        lines += _metric_lines(external["development"], full=True)
        if external["recalibrated"]:
            refit = external["recalibration"] or {}
            lines += [
                f"Recalibrated on a local set of the site ({_fmt(refit.get('n'))} images, "
                f"{_fmt(refit.get('n_patients'))} patients): temperature {_fmt(refit.get('temperature'), 4)}, "
                f"threshold {_fmt(refit.get('threshold'), 4)}"
                + (f" ({external['recalibration_note']})" if external.get("recalibration_note") else "")
                + ".",
                "",
            ]
            lines += _metric_lines(external["recalibrated"], full=True)
    return lines


# -- a grid's sections ------------------------------------------------------------------------------------------


def _grid_heading(card) -> list[str]:
    return [
        f"# Model card: grid {card['grid']['task']}",
        "",
        f"Made by {card['written_by']} from the grid folder `{card['folder']}`, from these files only: "
        + ", ".join(f"`{f}`" for f in card["files_read"])
        + ". A grid compares weight sources over scenarios; the card of one of its models is made from that run's "
        f"folder ({RUN_FOLDERS}).",
        "",
    ]


def _grid(card) -> list[str]:
    grid = card["grid"]
    lines = _table(
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
        lines += _settings_table(grid["config"])
    return lines


def _weights(card) -> list[str]:
    if not card["weights"]:
        return _not_recorded_line("no run recorded")
    return _table(
        ("source", "backbone", "weights file", "sha256", "preprocessing"),
        (
            (w["source"], w["backbone"], _fmt(w["weights_file"]), _fmt(w["weights_sha256"]), _fmt(w["preprocessing"]))
            for w in card["weights"]
        ),
    )


def _grid_runs(card) -> list[str]:
    repeats = any(r["repeat"] for r in card["runs"]) or (card["grid"].get("repeats") or 1) > 1
    if card["runs"]:
        lines = _table(
            ("source", "scenario", "fold", *(("repeat",) if repeats else ()), "status", "AUC", "95% CI", "interval")
            + ("test images",),
            (
                (
                    r["source"],
                    r["scenario"],
                    r["fold"],
                    *((r["repeat"],) if repeats else ()),
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
        lines = _not_recorded_line("no run recorded")
    if card["scenario_means"]:
        lines += [
            "Mean test AUC per scenario over its runs with an AUC (folds" + (" and repeats" if repeats else "") + "):",
            "",
        ]
        lines += _table(
            ("source", "scenario", "runs", "folds", "mean AUC"),
            ((m["source"], m["scenario"], m["runs"], m["folds"], _fmt(m["mean_auc"])) for m in card["scenario_means"]),
        )
    return lines


# -- the cards: (title, renderer) in the order shown; a title of None: the heading ------------------------------

RUN_SECTIONS = (
    (None, _run_heading),
    ("Model details", _model_details),
    ("Intended use and limitations", _intended),
    ("Training", _training),
    ("Data", _data),
    ("Audit", _audit),
    ("Evaluation", _evaluation),
    ("Calibration", _calibration),
    ("Operating threshold", _threshold),
    ("External validation", _external),
    ("Software versions", _software),
    ("Not recorded", _not_recorded),
    ("CLAIM checklist", _claim_lines),
)
GRID_SECTIONS = (
    (None, _grid_heading),
    ("Grid", _grid),
    ("Weights", _weights),
    ("Intended use and limitations", _intended),
    ("Audit", _audit),
    ("Evaluation: test AUC per run", _grid_runs),
    ("Software versions", _software),
    ("Not recorded", _not_recorded),
    ("CLAIM checklist", _claim_lines),
)

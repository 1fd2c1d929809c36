"""Reading a run's or a grid's records for a card: a reader that remembers which files it read, and the summaries
both cards share (the data audit, evaluate's metrics). No Keras or TensorFlow: a ``.keras`` file's metadata is read
as a zip member (``models.trained.read_trained_info``).
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from pathlib import Path

from ..data.audit import AUDIT_FILE
from ..errors import RadtransferError
from ..evaluation.metrics import describe_interval
from ..models.trained import METADATA, read_trained_info
from ..training.run_folder import BEST_MODEL

# evaluate()'s metrics shown in a card (the predictions and the bin table are left out; the bins go to Calibration).
METRIC_KEYS = (
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


class Reader:
    """Reads a folder's files, remembering which existed (``read``, in the order first read)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.read: list[str] = []

    def note(self, name: str) -> None:
        """Records ``name`` as read (once)."""
        if name not in self.read:
            self.read.append(name)

    def json(self, name: str):
        """The JSON file ``name`` of the folder, or None if it is absent."""
        path = self.folder / name
        if not path.is_file():
            return None
        try:
            value = json.loads(path.read_text())
        except ValueError as exc:
            raise RadtransferError(
                f"'{path}' is not valid JSON ({exc}); the card is made only from valid records."
            ) from None
        self.note(name)
        return value

    def trained(self) -> dict | None:
        """The metadata inside the folder's best.keras, or None if it has none."""
        path = self.folder / BEST_MODEL
        if not path.is_file():
            return None
        self.note(f"{BEST_MODEL} ({METADATA})")
        return read_trained_info(path)

    def rows(self, name: str) -> list[dict] | None:
        """The rows of the CSV file ``name`` of the folder, or None if it is absent."""
        path = self.folder / name
        if not path.is_file():
            return None
        self.note(name)
        with open(path, newline="") as handle:
            return list(csv.DictReader(handle))


def number(value):
    """A CSV cell as a number where it is one."""
    try:
        return int(value)
    except (TypeError, ValueError):
        pass
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def finite(value) -> bool:
    """Whether ``value`` is a finite number (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def audit_section(findings) -> dict:
    """The card's ``audit`` section from audit.json's findings (None: not recorded)."""
    if findings is None:
        return {"recorded": False, "file": AUDIT_FILE}
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


def shown_metrics(metrics: dict, source: str) -> dict:
    """evaluate()'s metrics as a card shows them: ``METRIC_KEYS``, the interval described (``interval``; and
    ``interval_problem``: why it is no evidence, or None), what its operating point calls (``operating_point_note``:
    None unless it calls every image, or none, one class), and the file they came from."""
    shown = {k: metrics[k] for k in METRIC_KEYS if k in metrics}
    shown["interval"] = describe_interval(metrics)
    shown["interval_problem"] = interval_problem(metrics)
    if shown.get("operating_point"):
        shown["operating_point_note"] = operating_point_note(shown["operating_point"], shown.get("positive_class"))
    shown["file"] = source
    return shown


def interval_problem(metrics: dict) -> str | None:
    """Why the AUC interval of evaluate()'s ``metrics`` is no evidence of precision, or None when it is one: absent
    (why, as ``describe_interval`` says it), or of zero width (every resample gave one value)."""
    low, high = (metrics.get("auc_ci") or [None, None])[:2]
    if not (finite(low) and finite(high)):
        return describe_interval(metrics)
    if high - low <= 0:
        units = metrics.get("auc_ci_units")
        unit = metrics.get("auc_ci_unit") or "image"
        over = f" over {units} {unit if units == 1 else unit + 's'}" if units is not None else ""
        return f"a zero-width interval {low:.3f}–{high:.3f}{over}: every resample gave the same AUC"
    return None


def operating_point_note(point: dict, positive_class=None) -> str | None:
    """What an operating point's threshold calls when it calls every image one class (or none): from the threshold
    itself (at 1 or above no probability reaches it, at 0 or below every one does) and from the test figures
    (sensitivity 0 with specificity 1: no image called positive; the reverse: every one). None otherwise."""
    threshold, on = point.get("threshold_unscaled", point.get("threshold")), point.get("threshold_class")
    positive = positive_class or on
    notes = []
    if finite(threshold) and threshold >= 1:
        notes.append(f"at {threshold:.4f} no image is called {on} (no probability exceeds 1)")
    elif finite(threshold) and threshold <= 0:
        notes.append(f"at {threshold:.4f} every image is called {on}")
    sensitivity, specificity = point.get("sensitivity"), point.get("specificity")
    if finite(sensitivity) and finite(specificity):
        if sensitivity == 0 and specificity == 1:
            notes.append(f"no test image was called {positive} (sensitivity 0.000, specificity 1.000)")
        elif sensitivity == 1 and specificity == 0:
            notes.append(f"every test image was called {positive} (sensitivity 1.000, specificity 0.000)")
    return "; ".join(notes) or None


def threshold_note(threshold, on) -> str | None:
    """What a bare threshold on the probability of class ``on`` calls when it calls every image one way, or None."""
    if finite(threshold) and threshold >= 1:
        return f"no image is called {on} at it"
    if finite(threshold) and threshold <= 0:
        return f"every image is called {on} at it"
    return None


CHANCE_AUC = 0.5


def _small(metrics: dict) -> bool:
    """Whether an interval written before ``auc_ci_note`` existed rests on few units (under 20, or unknown)."""
    units = metrics.get("auc_ci_units")
    return units is None or units < 20


def model_fit(metrics: dict | None, source: str | None) -> dict:
    """Whether a model's recorded test figures show it better than chance: ``{"status", "because"}``, status
    "not fit" (degenerate or at chance: accuracy 0, AUC at or below 0.5, decisions at chance), "not shown" (no
    test figures, an undefined AUC, or an interval that is missing, degenerate or reaches 0.5) or "above chance"
    (the AUC interval lies above 0.5); ``because`` the figures, each with its file."""
    if not metrics:
        return {"status": "not shown", "because": ["no test figures are recorded"]}
    where = f" ({source})" if source else ""
    failed = []
    accuracy, auc = metrics.get("accuracy"), metrics.get("auc")
    if finite(accuracy) and accuracy == 0:
        failed.append(f"test accuracy {accuracy:.3f}{where}: no test image classified correctly")
    if finite(auc) and auc <= CHANCE_AUC:
        failed.append(f"test AUC {auc:.3f}{where}: at or below chance ({CHANCE_AUC})")
    point = metrics.get("operating_point")
    if point and finite(point.get("sensitivity")) and finite(point.get("specificity")):
        if point["sensitivity"] + point["specificity"] <= 1:
            failed.append(
                f"at its threshold, sensitivity {point['sensitivity']:.3f} + specificity {point['specificity']:.3f} "
                f"≤ 1{where}: its decisions are no better than chance"
            )
    elif not point:
        balanced, classes = metrics.get("balanced_accuracy"), metrics.get("class_names") or []
        if finite(balanced) and len(classes) > 1 and balanced <= 1 / len(classes):
            failed.append(
                f"test balanced accuracy {balanced:.3f}{where}: at or below chance for {len(classes)} classes "
                f"(1/{len(classes)})"
            )
    if failed:
        return {"status": "not fit", "because": failed}
    if not finite(auc):
        return {"status": "not shown", "because": [f"the test AUC is undefined{where}"]}
    problem = interval_problem(metrics)
    low, high = (metrics.get("auc_ci") or [None, None])[:2]
    if problem and finite(low) and low > CHANCE_AUC and not metrics.get("auc_ci_note", _small(metrics)):
        # Zero width on enough units (by evaluate's own small-sample rule): every resample gave an AUC above chance.
        return {"status": "above chance", "because": [f"test AUC {auc:.3f} with {problem}{where}"]}
    if problem:
        return {"status": "not shown", "because": [f"test AUC {auc:.3f} with {problem}{where}"]}
    if low <= CHANCE_AUC:
        return {
            "status": "not shown",
            "because": [f"test AUC {auc:.3f}, 95% CI {low:.3f}–{high:.3f}{where}: the interval reaches chance (0.5)"],
        }
    return {"status": "above chance", "because": [f"test AUC {auc:.3f}, 95% CI {low:.3f}–{high:.3f}{where}"]}

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
    """evaluate()'s metrics as a card shows them: ``METRIC_KEYS``, the interval described, and the file they came
    from."""
    shown = {k: metrics[k] for k in METRIC_KEYS if k in metrics}
    shown["interval"] = describe_interval(metrics)
    shown["file"] = source
    return shown

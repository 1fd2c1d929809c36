"""External validation: a trained model scored at another site, at its development operating point and, when a
small labelled local set is given, with the temperature and threshold refit on it.

``evaluate(model, external, site="B", recalibrate=local)`` (evaluation/metrics.py) reads the images and calls the
pieces here: the refit on the local set (``recalibration``), the check that the local set shares no patient or
image with the external test set (``check_disjoint``: a threshold chosen on the images it is scored on flatters
it), the operating points' patient-level intervals (``operating_point_intervals``), the file the command writes
(``external_file``: ``external-<site>.json``) and the side-by-side table it prints (``side_by_side``).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass

import numpy as np

from ..stats.bootstrap import bootstrap_operating_point_ci, small_sample_note, units_per_class
from ..stats.temperature import fit_temperature
from ..stats.thresholds import youden_threshold

EXTERNAL_FILE = "external-{site}.json"  # a run folder's record of one external site's evaluation
_SITE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_site(site) -> str:
    """``site`` as a string fit for a file name (letters, digits, ``_.-``), or ValueError."""
    text = str(site)
    if not _SITE.match(text):
        raise ValueError(
            f"Expected site= to be a short name of letters, digits, '_', '.' or '-' (it names external-<site>.json). "
            f"Received: site={site!r}"
        )
    return text


def external_file(site) -> str:
    """The file name of a site's external-validation result in a run folder: ``external-<site>.json``."""
    return EXTERNAL_FILE.format(site=check_site(site))


@dataclass(frozen=True)
class Recalibration:
    """A temperature and threshold refit on a site's small labelled local set.

    Attributes:
        temperature: minimises the negative log-likelihood of the local set's scaled probabilities (fit on the
            model's raw outputs, not on top of a temperature it carries).
        threshold: two classes: Youden's J threshold on the positive class's raw probability on the local set
            (None for more classes); decisions compare the raw probability with it.
        n: local images; n_patients: local patients (None when unknown).
    """

    temperature: float
    threshold: float | None
    n: int
    n_patients: int | None

    def to_dict(self) -> dict:
        return asdict(self)


def recalibration(y_local, raw_local, positive_class=None, patient_ids=None) -> Recalibration:
    """Refits the temperature (all classes) and, for two classes, the threshold of ``positive_class`` on a local
    set's labels and raw softmax outputs."""
    y_local = np.asarray(y_local, dtype=np.int64)
    raw_local = np.asarray(raw_local, dtype=np.float64)
    if len(np.unique(y_local)) < 2:
        raise ValueError(
            f"The local set to recalibrate on has images of one class only ({len(y_local)} images): a threshold "
            "and a temperature need both outcomes. Give a local set with every class."
        )
    threshold = None
    if raw_local.shape[1] == 2:
        positive = 1 if positive_class is None else int(positive_class)
        threshold = youden_threshold(y_local == positive, raw_local[:, positive])
    return Recalibration(
        temperature=fit_temperature(y_local, raw_local),
        threshold=threshold,
        n=int(len(y_local)),
        n_patients=None if patient_ids is None else len(set(map(str, patient_ids))),
    )


def check_disjoint(local_patients, external_patients, local_paths=None, external_paths=None) -> None:
    """Raises ValueError when the local set shares patients (or, failing ids, image files) with the external test
    set: the threshold and temperature would be scored on the images they were chosen on."""
    if local_patients is not None and external_patients is not None:
        shared = sorted(set(map(str, local_patients)) & set(map(str, external_patients)))
        what = "patient(s)"
    elif local_paths is not None and external_paths is not None:
        shared = sorted(set(map(str, local_paths)) & set(map(str, external_paths)))
        what = "image file(s)"
    else:
        return
    if shared:
        listed = ", ".join(shared[:5]) + (", …" if len(shared) > 5 else "")
        raise ValueError(
            f"The local set to recalibrate on shares {len(shared)} {what} with the external test set ({listed}): "
            "the threshold would be scored on the data it was chosen on. Use separate patients for recalibrate=."
        )


def operating_point_intervals(metrics: dict, y_true, raw, patient_ids=None, n: int = 1000, seed: int = 0) -> None:
    """Adds patient-level 95% bootstrap intervals of the sensitivity and specificity at a two-class result's
    operating point to ``metrics["operating_point"]``, the decisions taken as evaluate took them (on the raw
    probabilities): ``sensitivity_ci`` and ``specificity_ci``; ``ci_unit``, ``ci_units`` (all units), ``ci_method``,
    ``ci_seed``; and per figure the units its interval rests on (``sensitivity_ci_units``: positive patients, or
    images without ids; ``specificity_ci_units``: negative ones) with the small-sample note the AUC's interval
    carries (``sensitivity_ci_note``, ``specificity_ci_note``): under 20 units, or under 5 units' worth of the rarer
    outcome (units × min(share, 1 − share)); else None. Under the minimum-units rule (``stats.too_few``: fewer than
    3 positive units for the sensitivity, negative for the specificity) there is no interval (NaN, null in the JSON)
    and the note is why ("no interval (2 positive patients: fewer than 3)")."""
    point = metrics.get("operating_point")
    if point is None or not n:
        return
    names = metrics["class_names"]
    positive = names.index(metrics["positive_class"])
    on = names.index(point["threshold_class"])
    called = np.asarray(raw, dtype=np.float64)[:, on] >= point["threshold_unscaled"]
    if on != positive:
        called = ~called
    intervals = bootstrap_operating_point_ci(y_true, called, positive, groups=patient_ids, n=n, seed=seed)
    truth = (np.asarray(y_true) == positive).astype(np.int64)
    counts = units_per_class(truth, patient_ids)
    for name, ci in intervals.items():
        units = counts.get(1 if name == "sensitivity" else 0, 0)
        point[f"{name}_ci"] = (ci["low"], ci["high"])
        point[f"{name}_ci_units"] = units
        which = "positive" if name == "sensitivity" else "negative"
        note = small_sample_note(units, ci["unit"], which, share=point[name]) if ci["method"] else None
        point[f"{name}_ci_note"] = ci["no_interval"] or note
    any_ci = intervals["sensitivity"]
    point.update(ci_unit=any_ci["unit"], ci_units=any_ci["n_units"], ci_method=any_ci["method"], ci_seed=seed)


def interval_notes(result: dict) -> list:
    """The small-sample notes of an external-site result's intervals, as ``"<figure>: <note>"`` lines (each once:
    both arms are scored on the same patients)."""
    notes = {}
    for arm in (result.get("development"), result.get("recalibrated")):
        if not arm:
            continue
        point = arm.get("operating_point") or {}
        for figure, note in (
            ("AUC", arm.get("auc_ci_note")),
            ("sensitivity", point.get("sensitivity_ci_note")),
            ("specificity", point.get("specificity_ci_note")),
        ):
            if note and not note.startswith("no interval"):  # the missing interval's reason is in its cell
                notes.setdefault(figure, note)
    return [f"{figure} interval: {note}" for figure, note in notes.items()]


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _interval(pair, note=None) -> str:
    """An interval's cell text after its estimate: " (low–high)", or the reason there is none (the minimum-units
    rule's "no interval (N patients...)")."""
    low, high = pair if pair else (None, None)
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return f", {note}" if note and note.startswith("no interval") else ""
    return f" ({low:.3f}–{high:.3f})"


def side_by_side(result: dict) -> str:
    """The two arms of an external-site result as a compact text table (rows: figures; columns: the development
    operating point, and the one refit on the local set when there is one)."""
    arms = [("development", result["development"])]
    if result.get("recalibrated") is not None:
        arms.append(("recalibrated on local", result["recalibrated"]))
    rows = [
        ("temperature", lambda m: _fmt(m.get("temperature") or 1.0)),
        ("AUC (95% CI)", lambda m: _fmt(m["auc"]) + _interval(m.get("auc_ci"), m.get("auc_ci_note"))),
        ("accuracy", lambda m: _fmt(m["accuracy"])),
        ("Brier", lambda m: _fmt(m["brier"])),
        ("ECE", lambda m: _fmt(m["ece"])),
    ]
    if "operating_point" in result["development"]:
        rows += [
            ("threshold", lambda m: _fmt(m["operating_point"]["threshold"])),
            (
                "sensitivity (95% CI)",
                lambda m: (
                    _fmt(m["operating_point"]["sensitivity"])
                    + _interval(
                        m["operating_point"].get("sensitivity_ci"), m["operating_point"].get("sensitivity_ci_note")
                    )
                ),
            ),
            (
                "specificity (95% CI)",
                lambda m: (
                    _fmt(m["operating_point"]["specificity"])
                    + _interval(
                        m["operating_point"].get("specificity_ci"), m["operating_point"].get("specificity_ci_note")
                    )
                ),
            ),
        ]
    table = [["", *[name for name, _ in arms]]] + [[label, *[cell(m) for _, m in arms]] for label, cell in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    development = result["development"]
    units = development.get("n_patients") or development.get("n")
    noun = "patients" if development.get("n_patients") else "images"
    lines = [f"site {result['site']}: {development['n']} images, {units} {noun}"]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in table]
    lines += [f"note: {note}" for note in interval_notes(result)]
    return "\n".join(lines)

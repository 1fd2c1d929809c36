"""The data audit's findings, their kinds and severities, the report that holds them and its file.

``radtransfer.data.audit`` reads the images and searches them; the functions here turn what it found (groups of
the same pixels, confirmed near-duplicate pairs, patients in two parts) into ``Finding``s.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataAuditError
from ..utils.io import write_json_atomic
from .audit_images import NEAR_CORRELATION, NEAR_DISTANCE, ORIENTATIONS

AUDIT_FILE = "audit.json"  # the audit's findings, in a run or grid folder
KINDS = ("duplicate", "near_duplicate", "label_conflict", "patient_leak", "empty_image", "unreadable")
ERROR, WARNING = "error", "warning"


@dataclass(frozen=True)
class Finding:
    """One thing the audit found, naming its files, their parts and classes."""

    kind: str
    severity: str
    paths: tuple
    parts: tuple
    classes: tuple
    detail: str

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass
class AuditReport:
    """The audit's findings and the class and patient counts of each part."""

    findings: list
    counts: dict  # part -> {"images": n, "patients": n or None, "classes": {class: n}}
    seconds: float = 0.0
    near_distance: int = NEAR_DISTANCE
    images: int = field(default=0)
    near_correlation: float = NEAR_CORRELATION
    candidates: int = 0  # (pair, orientation)s whose perceptual hashes were close enough to compare thumbnails
    compared_full_size: int = 0  # candidates whose thumbnails were close enough to compare at full size

    @property
    def errors(self) -> list:
        return [f for f in self.findings if f.severity == ERROR]

    @property
    def warnings(self) -> list:
        return [f for f in self.findings if f.severity == WARNING]

    def of_kind(self, kind: str) -> list:
        return [f for f in self.findings if f.kind == kind]

    def to_json(self) -> list:
        """The findings as a list of ``{"kind", "severity", "paths", "parts", "classes", "detail"}``."""
        return [f.to_dict() for f in self.findings]

    def write_json(self, path) -> Path:
        """Writes ``to_json()`` to ``path`` (atomically), e.g. a run folder's ``AUDIT_FILE``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, self.to_json())
        return path

    def raise_if_errors(self, where: str, written=None, listed: str | None = None, ignore=()) -> None:
        """Raises DataAuditError when the audit found errors; ``where`` names the data, ``written`` its JSON (or
        ``listed`` says where the findings are listed); errors of the kinds in ``ignore`` do not count (train's
        unreadable files under ``on_bad="skip"``, left out by the user's choice)."""
        if any(f.kind not in ignore for f in self.errors):
            listed = listed or (f"listed in {written}" if written else "listed by report.table()")
            raise DataAuditError(
                f"The data audit found {self.summary()} in {where} ({listed}): fix the data, or train without "
                "audit='strict' (command line: --strict).",
                self,
            )

    def summary(self) -> str:
        """One line: errors and warnings by kind."""

        def kinds(findings):
            tally = Counter(f.kind for f in findings)
            return ", ".join(f"{n} {kind}" for kind, n in sorted(tally.items()))

        text = f"{len(self.errors)} error(s)" + (f" ({kinds(self.errors)})" if self.errors else "")
        text += f", {len(self.warnings)} warning(s)" + (f" ({kinds(self.warnings)})" if self.warnings else "")
        return text + f" in {self.images} images"

    def table(self, max_rows: int = 50) -> str:
        """The counts per part, the summary and one line per finding, errors first, as plain text."""
        lines = ["part     images  patients  classes"]
        width = max([8, *(len(name) for name in self.counts)])
        for name, count in self.counts.items():
            patients = "-" if count["patients"] is None else str(count["patients"])
            classes = ", ".join(f"{c} {n}" for c, n in count["classes"].items())
            lines.append(f"{name:<{width}} {count['images']:>6}  {patients:>8}  {classes}")
        lines.append(f"{self.summary()} ({self.seconds:.1f} s)")
        return "\n".join(lines + self.finding_lines(max_rows))

    def finding_lines(self, max_rows: int = 50) -> list:
        """One line per finding, errors first, at most ``max_rows`` (then how many more)."""
        ordered = self.errors + self.warnings
        lines = []
        for finding in ordered[:max_rows]:
            shown = ", ".join(finding.paths[:3]) + (
                f" and {len(finding.paths) - 3} more" if len(finding.paths) > 3 else ""
            )
            lines.append(
                f"{finding.severity:<7} {finding.kind:<14} parts {'/'.join(finding.parts)}, classes "
                f"{'/'.join(finding.classes)}: {finding.detail} [{shown}]"
            )
        if len(ordered) > max_rows:
            lines.append(f"… and {len(ordered) - max_rows} more (all of them in the JSON)")
        return lines


def _union_find(n: int, pairs) -> np.ndarray:
    parent = np.arange(n)

    def root(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return np.array([root(i) for i in range(n)])


def _joins(a: frozenset, b: frozenset) -> bool:
    """Whether a pair of images spanning ``a`` and ``b`` spans more than either alone."""
    union = a | b
    return union != a and union != b


def _unique(values) -> tuple:
    return tuple(sorted({str(v) for v in values}))


def _duplicate_findings(members, keys, names, part_of, class_of) -> list:
    """One finding for entries with the same pixels (or one image listed more than once), and a label conflict
    when they are filed under two classes."""
    parts, classes = _unique(part_of[members]), _unique(class_of[members])
    files = tuple(names[i] for i in members)
    listings = Counter(keys[i] for i in members)
    noun = "file" if all(isinstance(keys[i], str) for i in members) else "image"
    if len(listings) == 1:
        what = f"one {noun if noun == 'file' else 'in-memory image'} listed {len(members)} times"
    else:
        repeated = sum(n > 1 for n in listings.values())
        what = f"{len(listings)} {noun}s with the same decoded pixels" + (
            f", {repeated} of them listed more than once" if repeated else ""
        )
    found = [
        Finding(
            "duplicate",
            ERROR if len(parts) > 1 else WARNING,
            files,
            parts,
            classes,
            what + (f", in parts {' and '.join(parts)}" if len(parts) > 1 else ""),
        )
    ]
    if len(classes) > 1:
        found.append(_label_conflict(files, parts, classes, "the same image"))
    return found


def _label_conflict(files, parts, classes, what: str) -> Finding:
    return Finding("label_conflict", ERROR, files, parts, classes, f"{what} filed under {' and '.join(classes)}")


def _near_findings(pairs, correlations, distances, turns, names, part_of, class_of) -> list:
    """One finding per group of near duplicates joined by pairs across parts or classes; ``pairs[k, 0]`` matches
    ``pairs[k, 1]`` in ``ORIENTATIONS[turns[k]]``, its hashes ``distances[k]`` bits apart."""
    involved = np.unique(pairs)
    index = {int(i): k for k, i in enumerate(involved)}
    roots = _union_find(len(involved), [(index[int(a)], index[int(b)]) for a, b in pairs])
    pair_root = roots[[index[int(a)] for a in pairs[:, 0]]]  # each pair's group, found once
    found = []
    for root in np.unique(roots):
        members = [int(i) for i in involved[roots == root]]
        inside = np.flatnonzero(pair_root == root)
        files = tuple(names[i] for i in members)
        parts, classes = _unique(part_of[members]), _unique(class_of[members])
        how = (
            f"perceptual hashes {int(distances[inside].min())}-{int(distances[inside].max())} of 64 bits apart, "
            f"correlated {float(correlations[inside].min()):.3f} or more at full size"
        )
        turned = [k for k in inside if turns[k]]
        how += "".join(
            f"; {names[pairs[k, 0]]} is a {ORIENTATIONS[turns[k]]} copy of {names[pairs[k, 1]]}" for k in turned[:3]
        ) + (f"; and {len(turned) - 3} more turned pairs" if len(turned) > 3 else "")
        if len(parts) > 1:
            found.append(
                Finding(
                    "near_duplicate",
                    ERROR,
                    files,
                    parts,
                    classes,
                    f"near-identical pictures in parts {' and '.join(parts)} (the same picture re-encoded, resized, "
                    f"flipped, rotated or with its grey levels changed, or neighbouring slices of one patient): {how}",
                )
            )
        if len(classes) > 1:
            found.append(_label_conflict(files, parts, classes, f"near duplicates ({how})"))
    return found


def _patient_leaks(names, part_of, class_of, patient_of) -> list:
    where: dict = {}
    for i, patient in enumerate(patient_of):
        if patient is not None:
            where.setdefault(patient, []).append(i)
    found = []
    for patient, members in sorted(where.items()):
        parts = _unique(part_of[members])
        if len(parts) > 1:
            found.append(
                Finding(
                    "patient_leak",
                    ERROR,
                    tuple(names[i] for i in members),
                    parts,
                    _unique(class_of[members]),
                    f"patient {patient} has images in parts {' and '.join(parts)}",
                )
            )
    return found

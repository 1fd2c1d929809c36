"""Typed, versioned records of a grid: what was asked for (GridSpec), what each run gave (RunRecord) and
how the two weight sources compare on the same test images (PairRecord). The grid writes them, the
report reads them; neither reads the other's dicts by key.

Records hold only what the run computed, so the same run gives a byte-identical record wherever and
whenever it ran (whole grid, shards, restarts); wall-clock time goes to a separate ``timing.json``.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.fingerprint import COLUMNS as DATA_COLUMNS
from ..data.fingerprint import manifest_differences
from ..errors import RunMismatchError
from ..utils.io import write_json_atomic, write_text_atomic
from .arms import parse_arm
from .paper import Scenario

# 3: GridSpec.data (the data's digest, data.csv beside it), RunRecord.train_config; 4: epochs counted from 1
SCHEMA_VERSION = 4
GRID_FILE = "grid.json"
DATA_FILE = "data.csv"  # the grid's data, image by image (data.fingerprint.data_manifest)
RECORD_FILE = "record.json"
TIMING_FILE = "timing.json"
PREDICTIONS = "predictions.npz"  # a run's test predictions (y_true, probabilities, patient_ids)
PAIRS_DIR = "pairs"
RUNS_DIR = "runs"
RUN_GLOB = f"{RUNS_DIR}/*/*/*"  # every run folder of a grid (run_dir: <source>/<scenario>/fold<k>[-r<r>])
STATUSES = ("finished", "diverged", "failed")


def _known(cls, values: dict) -> dict:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in values.items() if k in names}


@dataclass(frozen=True)
class GridSpec:
    """A grid as asked for: its settings, sources, scenarios and folds."""

    task: str
    config: dict
    sources: list
    scenarios: list  # [{"backbone", "strategy", "learning_rate"}], with "image_size" where a scenario has one
    folds: int | None
    faithful: bool
    bn: str
    interpolation: str
    n_images: int
    class_names: list
    paper_task: str | None = None
    data: dict | None = None  # {"n_images", "sha256"}: the digest of DATA_FILE's rows
    repeats: int = 1  # runs per (source, scenario, fold): the most any start of the grid asked for
    train_fraction: float = 1.0  # the share of each split's training patients the runs train on
    schema_version: int = SCHEMA_VERSION

    @property
    def n_folds(self) -> int:
        return self.folds or 1

    def scenario_ids(self) -> list[str]:
        return [Scenario(**s).id for s in self.scenarios]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "GridSpec":
        values = dict(values)
        values.setdefault("schema_version", 1)
        for name, default in (
            ("sources", []),
            ("scenarios", []),
            ("config", {}),
            ("faithful", False),
            ("bn", "frozen"),
            ("interpolation", "bilinear"),
            ("n_images", 0),
            ("class_names", []),
            ("folds", None),
        ):
            values.setdefault(name, default)
        return cls(**_known(cls, values))

    def write(self, folder) -> None:
        write_json_atomic(Path(folder) / GRID_FILE, self.to_dict())

    @classmethod
    def read(cls, folder) -> "GridSpec | None":
        path = Path(folder) / GRID_FILE
        return cls.from_dict(json.loads(path.read_text())) if path.exists() else None


@dataclass(frozen=True)
class RunRecord:
    """One (source, scenario, fold, repeat) run of a grid (``repeat`` 0 in records written before repeats).

    ``status`` is "finished", "diverged" (the loss became NaN at ``diverged_epoch``; ``metrics`` are
    those of the last good checkpoint, ``best_epoch``, as the reference's best-val_loss checkpointing
    would have kept) or "failed" (diverged before any good epoch: no metrics).
    """

    run_id: str
    task: str
    source: str
    backbone: str
    strategy: str
    learning_rate: float
    scenario: str
    fold: int
    repeat: int = 0
    status: str = "finished"
    metrics: dict | None = None
    missing_classes: list = field(default_factory=list)
    best_epoch: int = -1
    best_val_loss: float | None = None
    epochs_run: int = 0
    diverged_epoch: int | None = None
    run_seed: int | None = None
    fingerprint: str | None = None
    threshold: float | None = None
    faithful: bool = False
    bn: str = "frozen"
    preprocessing: str | None = None
    weights_path: str | None = None
    weights_sha256: str | None = None
    n_train: int = 0
    n_val: int = 0
    n_test: int = 0
    config: dict = field(default_factory=dict)
    train_config: dict = field(default_factory=dict)  # the fine_tune settings that ran (resolved TrainConfig)
    schema_version: int = SCHEMA_VERSION
    image_size: int | None = None  # the scenario's own size (a resolution grid); None: the grid's, and not written
    encoder: str | None = None  # a foundation arm's encoder ("dinov2"), built in place of the scenario's backbone

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        for name in ("image_size", "encoder"):  # records without them stay as they were
            if values[name] is None:
                del values[name]
        return values

    @classmethod
    def from_dict(cls, values: dict) -> "RunRecord":
        values = dict(values)
        values.setdefault("schema_version", 1)
        values.setdefault("status", "finished")
        if values.get("scenario") is None:
            cell = Scenario(values["backbone"], values["strategy"], values["learning_rate"], values.get("image_size"))
            values["scenario"] = cell.id
        fold = fold_name(values.get("fold", 0), values.get("repeat", 0))
        values.setdefault("run_id", f"{values['source']}/{values['scenario']}/{fold}")
        values.setdefault("task", None)
        return cls(**_known(cls, values))

    def write(self, folder) -> None:
        write_json_atomic(Path(folder) / RECORD_FILE, self.to_dict())

    @classmethod
    def read(cls, path) -> "RunRecord":
        return cls.from_dict(json.loads(Path(path).read_text()))


@dataclass(frozen=True)
class PairRecord:
    """Two weight sources' runs of one scenario, fold and repeat, compared on the same test images."""

    task: str
    scenario: str
    fold: int
    candidate: str
    reference: str
    method: str  # "delong" or "paired_bootstrap"
    unit: str  # "image" or "patient"
    auc_candidate: float
    auc_reference: float
    diff: float
    p: float  # NaN (null in the file) under the minimum-units rule: no test
    ci: list | None = None
    repeat: int = 0
    n_units: int | None = None  # the test images' resampling units (patients, or images): None in older files
    no_interval: str | None = None  # why there is no interval and no P value (stats.too_few); None: there is
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "PairRecord":
        return cls(**_known(cls, values))


def write_data_manifest(folder, rows) -> None:
    """Writes a grid's data manifest (rows of ``data.fingerprint.COLUMNS``) as CSV, atomically."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(DATA_COLUMNS)
    writer.writerows(rows)
    write_text_atomic(Path(folder) / DATA_FILE, buffer.getvalue())


def read_data_manifest(folder) -> list[tuple] | None:
    """A grid's data manifest rows, or None when the grid has none."""
    import csv

    path = Path(folder) / DATA_FILE
    if not path.exists():
        return None
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    return [tuple(row) for row in rows[1:]]


def fold_name(fold: int, repeat: int = 0) -> str:
    """The name of a run's folder (and the last part of its id): ``fold<k>`` for repeat 0, as in grids
    without repeats, ``fold<k>-r<r>`` for repeat r ≥ 1 (a sibling, so every record lies as deep)."""
    return f"fold{fold}" if not repeat else f"fold{fold}-r{repeat}"


def run_dir(grid_dir, source: str, scenario: str, fold: int, repeat: int = 0) -> Path:
    """The folder of one run of a grid: ``<grid>/runs/<source>/<scenario>/fold<k>`` (``fold<k>-r<r>`` for
    repeat r ≥ 1; see ``fold_name``)."""
    return Path(grid_dir) / RUNS_DIR / source / scenario / fold_name(fold, repeat)


def pair_path(grid_dir, scenario: str, fold: int, candidate: str, reference: str, repeat: int = 0) -> Path:
    """The PairRecord of two sources' runs of one scenario, fold and repeat:
    ``<grid>/pairs/<scenario>/fold<k>/…`` (``fold<k>-r<r>`` for repeat r ≥ 1)."""
    return Path(grid_dir) / PAIRS_DIR / scenario / fold_name(fold, repeat) / f"{candidate}__vs__{reference}.json"


# -- reading a folder of grids ----------------------------------------------------------------------------


def grid_name(grid_dir, out_dir) -> str:
    """A grid's name in tables: its folder relative to the folder the report reads ("." for that folder)."""
    relative = Path(grid_dir).resolve().relative_to(Path(out_dir).resolve())
    return relative.as_posix() if relative.parts else "."


def grid_specs(out_dir) -> dict:
    """GridSpec per grid (its name, ``grid_name``), from every grid.json under out_dir."""
    specs = {}
    for path in sorted(Path(out_dir).rglob(GRID_FILE)):
        specs[grid_name(path.parent, out_dir)] = GridSpec.from_dict(json.loads(path.read_text()))
    return specs


RECORD_COLUMNS = [
    "grid",
    "task",
    "source",
    "backbone",
    "strategy",
    "learning_rate",
    "scenario",
    "fold",
    "repeat",
    "status",
    "auc",
    "auc_low",
    "auc_high",
    "auc_ci_unit",
    "accuracy",
    "balanced_accuracy",
    "missing_classes",
    "best_epoch",
    "diverged_epoch",
    "epochs_run",
    "seconds",
    "faithful",
    "preprocessing",
    "n_test",
    "n_test_patients",
    "path",
]


def load_records(out_dir):
    """One row per recorded run under ``out_dir`` (searched recursively, so a folder of grids works).

    ``grid`` names the grid a run belongs to (its folder relative to ``out_dir``): runs of two grids are never
    pooled, even when their tasks share a name. ``repeat`` is the run's repeat of its (source, scenario, fold)
    (0 in grids without repeats). ``status`` is "finished", "diverged" (metrics of the last good
    checkpoint) or "failed" (no metrics); ``missing_classes`` names classes absent from the run's test images
    (its AUC is then NaN). ``GridResults(out_dir).records`` is the same table, read with the rest of the grid.
    """
    return _read_runs(out_dir)[1]


def _read_runs(out_dir):
    """({run folder: RunRecord}, ``load_records``'s table), every record.json and timing.json read once."""
    import pandas as pd

    runs, rows = {}, []
    for path in sorted(Path(out_dir).rglob(RECORD_FILE)):
        record = RunRecord.read(path)
        runs[str(path.parent)] = record
        rows.append(_record_row(record, path, out_dir))
    return runs, pd.DataFrame(rows, columns=RECORD_COLUMNS)


def _record_row(record: RunRecord, path: Path, out_dir) -> dict:
    """A run's row of ``load_records``'s table."""
    metrics = record.metrics or {}
    ci = metrics.get("auc_ci") or (None, None)
    timing = path.parent / TIMING_FILE
    seconds = json.loads(timing.read_text()).get("seconds") if timing.exists() else None
    return {
        "grid": grid_name(_grid_dir(path), out_dir),
        "task": record.task,
        "source": record.source,
        "backbone": record.backbone,
        "strategy": record.strategy,
        "learning_rate": record.learning_rate,
        "scenario": record.scenario,
        "fold": record.fold,
        "repeat": record.repeat,
        "status": record.status,
        "auc": _num(metrics.get("auc")),
        "auc_low": _num(ci[0]),
        "auc_high": _num(ci[1]),
        "auc_ci_unit": metrics.get("auc_ci_unit"),
        "accuracy": metrics.get("accuracy"),
        "balanced_accuracy": metrics.get("balanced_accuracy"),
        "missing_classes": ", ".join(record.missing_classes or metrics.get("missing_classes") or []),
        "best_epoch": record.best_epoch,
        "diverged_epoch": record.diverged_epoch,
        "epochs_run": record.epochs_run,
        "seconds": seconds,
        "faithful": record.faithful,
        "preprocessing": parse_arm(record.source).label(record.faithful),
        "n_test": record.n_test or metrics.get("n") or None,
        "n_test_patients": metrics.get("n_patients"),
        "path": str(path.parent),
    }


def _grid_dir(record_path) -> Path:
    """The grid folder of a record (``run_dir(...)/record.json``)."""
    return Path(record_path).parents[4]


def _num(value):
    return np.nan if value is None else float(value)


def read_predictions(run_folder) -> dict | None:
    """A run's test predictions (``y_true``, ``probabilities``, ``patient_ids`` where saved) as arrays, or None when
    the run kept none."""
    path = Path(run_folder) / PREDICTIONS
    if not path.exists():
        return None
    with np.load(path) as data:
        return {name: data[name] for name in data.files}


class GridResults:
    """A grid folder, or a folder of grids, read once: what the report's tables and figures are made from.

    Made, it holds every run's record (``runs``, and ``records``: ``load_records``'s table) and every grid's
    ``GridSpec`` (``specs``). A run's test predictions, a PairRecord and a grid's data manifest are read on first
    use, once; and what is computed from them can be kept on it (``cached``), so that each paired effect is computed
    once however many tables read it. ``grid(name)`` is one grid's view, sharing all of that.

    Args:
        folder: a grid folder, or a folder of grids (searched recursively for record.json and grid.json).

    Attributes:
        folder: the folder read.
        records: one row per run (``load_records``'s columns).
        runs: {run folder: RunRecord}, the run folder as in ``records["path"]``.
        specs: {grid name: GridSpec}, grid names as in ``records["grid"]``.
    """

    def __init__(self, folder):
        self.folder = Path(folder)
        self.runs, self.records = _read_runs(folder)
        self.specs = grid_specs(folder)
        self._predictions, self._pairs, self._manifests, self._cache = {}, {}, {}, {}

    @classmethod
    def of(cls, value) -> "GridResults":
        """``value`` itself when it is a GridResults, else the GridResults of the folder ``value``."""
        return value if isinstance(value, cls) else cls(value)

    def __repr__(self) -> str:
        return f"GridResults('{self.folder}', {len(self.records)} runs, grids {self.grids})"

    @property
    def grids(self) -> list[str]:
        """The names of the grids with records, sorted."""
        return sorted(self.records["grid"].unique())

    def grid(self, name: str) -> "GridResults":
        """One grid's view: its records (the rows of ``records`` whose grid is ``name``, index kept) and spec, with
        the predictions, pairs and cached results shared with this one."""
        view = object.__new__(type(self))
        view.__dict__.update(self.__dict__)
        view.records = self.records[self.records["grid"] == name]
        view.specs = {name: self.specs[name]} if name in self.specs else {}
        view.runs = {path: self.runs[path] for path in view.records["path"]}
        return view

    def with_val_losses(self):
        """``records`` with ``best_val_loss`` from each run's record (NaN where not recorded)."""
        losses = [self.runs[path].best_val_loss for path in self.records["path"]]
        return self.records.assign(best_val_loss=[np.nan if loss is None else float(loss) for loss in losses])

    def predictions(self, run_folder) -> dict | None:
        """A run's test predictions (``read_predictions``), read on first use, once."""
        key = str(run_folder)
        if key not in self._predictions:
            self._predictions[key] = read_predictions(run_folder)
        return self._predictions[key]

    def pair(self, path) -> PairRecord | None:
        """The PairRecord at ``path`` (``pair_path``), or None where the grid wrote none; read once."""
        key = str(path)
        if key not in self._pairs:
            exists = Path(path).exists()
            self._pairs[key] = PairRecord.from_dict(json.loads(Path(path).read_text())) if exists else None
        return self._pairs[key]

    def data_manifest(self, grid: str = ".") -> list[tuple] | None:
        """A grid's data manifest rows (``read_data_manifest``), read on first use, once."""
        if grid not in self._manifests:
            self._manifests[grid] = read_data_manifest(self.folder / grid)
        return self._manifests[grid]

    def cached(self, key, compute):
        """``compute()``, computed once per ``key`` for this folder and its grid views, then kept."""
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]


def check_same_grid(folder, spec: GridSpec, manifest) -> None:
    """Refuses a grid folder that holds a grid with other settings than ``spec``, or one made on other data (its
    data.csv rows against ``manifest``, ``data.fingerprint.data_manifest``'s rows)."""
    stored = GridSpec.read(folder)
    if stored is None or stored.schema_version < 2:
        return
    if stored.data and stored.data.get("sha256") != spec.data["sha256"]:
        lines = manifest_differences(read_data_manifest(folder) or [], manifest) or ["the data's digest differs"]
        raise RunMismatchError(
            f"'{folder}' holds a grid made on other data; its records would mix two data sets.\n  "
            + "\n  ".join(lines)
            + "\nUse another out_dir for this data, or restore the data the "
            "grid was made on.",
            ["data"],
        )
    keys = ("config", "sources", "folds", "faithful", "class_names", "n_images", "train_fraction")
    changed = [k for k in keys if stored.to_dict()[k] != spec.to_dict()[k]]
    if changed:
        raise RunMismatchError(
            f"'{folder}' holds a grid with other settings ({', '.join(changed)} differ); its records "
            "would mix two grids. Use another out_dir, or delete that one.",
            changed,
        )
    if not stored.data:
        warnings.warn(
            f"'{folder}' was written before grids recorded their data (radtransfer ≤ 0.1), so its records "
            "cannot be checked against this data; from now on it is bound to this data.",
            stacklevel=3,
        )

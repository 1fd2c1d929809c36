"""The shortcut test (Juodelyte et al. 2024, "Source Matters"): equal test AUCs can hide a model that learned a
confounder. A grid is trained on images where a marker (``data.confounders``) goes with the positive class, then
every run's best model is scored on its fold's test images in three versions: as trained (marked), without the marker
(clean), and with the marker on the negative class instead (reversed). A model that reads the marker loses AUC on the
clean images and more on the reversed ones.

``protocol.shortcut_test`` runs the grid; this module makes the test versions, scores the runs (once: each run's
three sets of probabilities are kept beside it in ``shortcut.npz``), and makes the table: per (source, scenario) the
mean AUCs and the mean drops (marked − clean, marked − reversed) over folds and repeats, with paired patient-level
bootstrap intervals (the same test patients under both versions).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.confounders import Marker, plant_marker
from ..evaluation.metrics import raw_predictions
from ..stats.auc import auc_score, resampled_auc_differences
from ..training.run_folder import BEST_MODEL, load_trained
from ..utils.io import replace_atomic, write_json_atomic, write_text_atomic
from .records import RECORD_FILE, RUN_GLOB, RunRecord, read_predictions

TABLE = "shortcut"  # shortcut.csv and .md (per source × scenario); shortcut_runs.csv (per run)
RUN_FILE = "shortcut.npz"  # in a run folder: y_true, patient_ids and the marked, clean, reversed probabilities
SETUP_FILE = "shortcut.json"  # in the grid folder: the share and the marker
VERSIONS = ("marked", "clean", "reversed")
DROPS = {"drop_clean": "clean", "drop_reversed": "reversed"}  # auc_marked − auc_<version>
LEVEL = 0.95
COLUMNS = [
    "source",
    "scenario",
    "runs",
    "share",
    "auc_marked",
    "auc_clean",
    "auc_reversed",
    "drop_clean",
    "drop_clean_low",
    "drop_clean_high",
    "drop_reversed",
    "drop_reversed_low",
    "drop_reversed_high",
    "unit",
    "no_interval",
    "verdict",
]


@dataclass(frozen=True)
class ShortcutSetup:
    """What a shortcut grid's images carry: the share of positive images marked, the marker, and the seed that
    chose them."""

    share: float
    marker: Marker
    seed: int

    def to_dict(self) -> dict:
        return {"share": self.share, "seed": self.seed, "marker": vars(self.marker)}

    def write(self, out: Path) -> None:
        write_json_atomic(Path(out) / SETUP_FILE, self.to_dict())


def marked_sets(image_set, setup: ShortcutSetup):
    """(clean, marked): the image set decoded once into memory without the marker, and with it on ``share`` of
    its positive images."""
    clean = plant_marker(image_set, 0.0, marker=setup.marker)
    return clean, plant_marker(clean, setup.share, seed=setup.seed, marker=setup.marker)


def test_versions(clean_splits, marker: Marker) -> list[dict]:
    """Per fold, the test part clean and reversed (the marker on every negative image), from the clean set's
    splits (the same patients as the marked set's: the splits depend on labels and patients only)."""
    return [
        {"clean": test, "reversed": plant_marker(test, 1.0, reverse=True, marker=marker)} for _, _, test in clean_splits
    ]


def score_runs(out: Path, versions: list[dict], batch_size: int) -> int:
    """Scores every recorded run of the grid in ``out`` that has a best model and no ``shortcut.npz`` yet on its
    fold's clean and reversed test images, keeping the three versions' probabilities in ``shortcut.npz``; returns
    how many were scored."""
    scored = 0
    for folder in sorted(Path(out).glob(RUN_GLOB)):
        if not (folder / RECORD_FILE).exists() or (folder / RUN_FILE).exists() or not (folder / BEST_MODEL).exists():
            continue
        record = RunRecord.read(folder / RECORD_FILE)
        predictions = read_predictions(folder)
        if record.status == "failed" or predictions is None:
            continue
        model = load_trained(folder)
        arrays = {"y_true": predictions["y_true"], "marked": predictions["probabilities"]}
        patients = predictions.get("patient_ids")
        arrays["patient_ids"] = np.asarray([] if patients is None else patients, dtype=str)
        for name, part in versions[record.fold].items():
            y_true, raw = raw_predictions(model, part, batch_size)[:2]
            if not np.array_equal(y_true, arrays["y_true"]):
                raise ValueError(
                    f"The {name} test images of fold {record.fold} are not the run's test images ({folder}): "
                    "the grid folder was made from other data. Use a new out_dir."
                )
            arrays[name] = raw
        replace_atomic(folder / RUN_FILE, lambda tmp, arrays=arrays: np.savez_compressed(tmp, **arrays))
        scored += 1
    return scored


def run_rows(out: Path, seed: int, bootstrap: int) -> tuple[list[dict], dict]:
    """Per scored run its AUCs and drops with their paired intervals, and per run the resampled drops
    (``{(path, drop): diffs}``) for pooling. Runs of one fold share their draws (seed ``seed + fold``)."""
    rows, resampled = [], {}
    for folder in sorted(Path(out).glob(RUN_GLOB)):
        if not (folder / RUN_FILE).exists() or not (folder / RECORD_FILE).exists():
            continue
        record = RunRecord.read(folder / RECORD_FILE)
        with np.load(folder / RUN_FILE) as data:
            arrays = {name: data[name] for name in data.files}
        y_true = arrays["y_true"]
        groups = arrays["patient_ids"] if len(arrays["patient_ids"]) else None
        row = {"source": record.source, "scenario": record.scenario, "fold": record.fold, "repeat": record.repeat}
        row.update({f"auc_{v}": auc_score(y_true, arrays[v]) for v in VERSIONS})
        for drop, version in DROPS.items():
            result = resampled_auc_differences(
                y_true, arrays["marked"], arrays[version], groups=groups, n=bootstrap, seed=seed + record.fold
            )
            resampled[(str(folder), drop)] = result["diffs"]
            low, high = _interval(result["diffs"]) if not result["no_interval"] else (math.nan, math.nan)
            row.update({drop: row["auc_marked"] - row[f"auc_{version}"], f"{drop}_low": low, f"{drop}_high": high})
            row.update({"unit": result["unit"], "n_units": result["n_units"], "no_interval": result["no_interval"]})
        row["path"] = str(folder)
        rows.append(row)
    return rows, resampled


def _interval(diffs) -> tuple[float, float]:
    """The percentile interval of the finite resampled differences (NaN when there are none)."""
    diffs = np.asarray(diffs, dtype=np.float64)
    diffs = diffs[np.isfinite(diffs)]
    if not len(diffs):
        return math.nan, math.nan
    tail = (1 - LEVEL) / 2
    return float(np.quantile(diffs, tail)), float(np.quantile(diffs, 1 - tail))


def pooled_interval(paths, resampled: dict, drop: str) -> tuple[float, float]:
    """The interval of the mean drop over runs: per resample the mean of the runs' resampled drops (the folds'
    test patients drawn independently, the repeats of a fold on the same draw), resamples with a missing AUC left
    out."""
    stacked = np.stack([resampled[(path, drop)] for path in paths])
    return _interval(stacked.mean(axis=0))


def shortcut_table(rows: list[dict], resampled: dict, share: float):
    """One row per (source, scenario): the runs' mean AUCs and drops, the pooled intervals, and the verdict (the
    marked − reversed interval above 0: "relies on the marker"; else "not shown"); no interval and no verdict where
    a run's test part is under the minimum-units rule."""
    import pandas as pd

    runs = pd.DataFrame(rows)
    table = []
    for (source, scenario), group in runs.groupby(["source", "scenario"], sort=False) if len(runs) else ():
        reasons = [r for r in group["no_interval"] if isinstance(r, str)]  # pandas may hold None as NaN
        row = {"source": source, "scenario": scenario, "runs": len(group), "share": float(share)}
        row.update({f"auc_{v}": float(group[f"auc_{v}"].mean()) for v in VERSIONS})
        for drop in DROPS:
            low, high = (math.nan, math.nan) if reasons else pooled_interval(list(group["path"]), resampled, drop)
            row.update({drop: float(group[drop].mean()), f"{drop}_low": low, f"{drop}_high": high})
        row["unit"] = group["unit"].iloc[0]
        row["no_interval"] = reasons[0] if reasons else None
        low = row["drop_reversed_low"]
        row["verdict"] = (
            None if reasons or not np.isfinite(low) else ("relies on the marker" if low > 0 else "not shown")
        )
        table.append(row)
    return pd.DataFrame(table, columns=COLUMNS)


def write_table(table, runs: list[dict], out: Path, setup: ShortcutSetup) -> list[str]:
    """Writes ``shortcut.csv``, ``shortcut.md`` and ``shortcut_runs.csv`` in ``out``; returns their paths."""
    import pandas as pd

    out = Path(out)
    paths = [out / f"{TABLE}.csv", out / f"{TABLE}.md", out / f"{TABLE}_runs.csv"]
    write_text_atomic(paths[0], table.to_csv(index=False))
    write_text_atomic(paths[2], pd.DataFrame(runs).to_csv(index=False))
    marker = setup.marker
    lines = [
        f"Shortcut test: a {marker.size:g} × shorter-side square of grey level {marker.value} in the "
        f"{marker.corner.replace('_', ' ')} corner on {setup.share:g} of the positive images of every part. Each "
        "run's best model is scored on its test images as trained (marked), without the marker (clean) and with it "
        "on the negative images instead (reversed). Drops are AUC(marked) − AUC(version), means over folds and "
        f"repeats, with {LEVEL:.0%} paired bootstrap intervals of the test patients.",
        "",
        "| source | scenario | runs | AUC marked | AUC clean | AUC reversed | drop clean | drop reversed | verdict |",
        "|---|---|---:|---:|---:|---:|---|---|---|",
    ]
    for row in table.itertuples():
        drops = [_with_interval(getattr(row, d), getattr(row, f"{d}_low"), getattr(row, f"{d}_high")) for d in DROPS]
        verdict = row.verdict or (row.no_interval or "")
        lines.append(
            f"| {row.source} | {row.scenario} | {row.runs} | {row.auc_marked:.3f} | {row.auc_clean:.3f} | "
            f"{row.auc_reversed:.3f} | {drops[0]} | {drops[1]} | {verdict} |"
        )
    write_text_atomic(paths[1], "\n".join(lines) + "\n")
    return [str(p) for p in paths]


def _with_interval(value, low, high) -> str:
    return f"{value:.3f} ({low:.3f} to {high:.3f})" if np.isfinite(low) else f"{value:.3f}"

"""The card of a grid folder (``radtransfer grid``): grid.json, data.csv, audit.json and every run's record.json and
config.json read into the card's dict. The card of one of the grid's models is a run card, made from its run
folder.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import NamedTuple

from ..data.audit import AUDIT_FILE
from ..evaluation.metrics import describe_interval
from ..grid.records import (
    DATA_FILE,
    GRID_FILE,
    RECORD_FILE,
    RUN_GLOB,
    RUNS_DIR,
    GridSpec,
    RunRecord,
    read_data_manifest,
)
from ..training.run_folder import CONFIG
from ..version import __version__
from .policy import CARD_SCHEMA, POLICY_STARTS, claim, grid_limitations, intended_use
from .reading import Reader, audit_section, finite, interval_problem, model_fit, operating_point_note

RUN_FOLDERS = f"{RUNS_DIR}/<source>/<scenario>/fold<k>"  # a grid's run folders, as the card names them


class GridFiles(NamedTuple):
    """What a grid card reads from a grid folder (``_read_grid``)."""

    spec: GridSpec
    manifest: list | None  # data.csv's rows, or None
    records: list  # every run's RunRecord, in path order
    versions: list  # the distinct software versions of the runs' config.json, in path order
    audit: list | dict | None  # audit.json's findings, or None
    files_read: list


def _read_grid(folder: Path) -> GridFiles:
    """Every file of a grid folder the card reads, read here and only here."""
    reader = Reader(folder)
    spec = GridSpec.from_dict(reader.json(GRID_FILE))
    manifest = read_data_manifest(folder)
    if manifest is not None:
        reader.note(DATA_FILE)
    records = [RunRecord.read(path) for path in sorted(folder.glob(f"{RUN_GLOB}/{RECORD_FILE}"))]
    if records:
        reader.note(f"{RUN_FOLDERS}/{RECORD_FILE} ({len(records)})")
    versions = []
    for path in sorted(folder.glob(f"{RUN_GLOB}/{CONFIG}")):
        try:
            found = json.loads(path.read_text()).get("versions")
        except ValueError:
            continue
        if found and found not in versions:
            versions.append(found)
    if versions:
        reader.note(f"{RUN_FOLDERS}/{CONFIG} (versions)")
    audit = reader.json(AUDIT_FILE)
    return GridFiles(spec, manifest, records, versions, audit, list(reader.read))


def grid_card(folder: Path) -> dict:
    """The card of a grid folder (see ``radtransfer.card.model_card``)."""
    files = _read_grid(folder)
    spec, records, versions = files.spec, files.records, files.versions
    missing: list[str] = []
    if files.audit is None:
        missing.append(f"the data audit ({AUDIT_FILE} absent)")
    if not records:
        missing.append(f"runs (no {RECORD_FILE} under {RUNS_DIR}/)")
    if not versions:
        missing.append(f"software versions (no run's {CONFIG} holds them)")
    if any(r.weights_sha256 is None and r.weights_path for r in records):
        missing.append("the sha256 of some runs' weight files")
    runs = _runs(records)
    card = {
        "schema_version": CARD_SCHEMA,
        "kind": "grid",
        "folder": str(folder.resolve()),
        "written_by": f"radtransfer {__version__}",
        "files_read": files.files_read,
        "audit": audit_section(files.audit),
        "grid": _grid_section(spec, records, files.manifest),
        "weights": _weights(records),
        "runs": runs,
        "scenario_means": _scenario_means(runs) if spec.n_folds > 1 or _has_repeats(runs) else [],
        "intended_use": _grid_intended_use(records),
        "software": {"versions": versions[0] if len(versions) == 1 else (versions or None)},
        "not_recorded": missing,
    }
    card["claim"] = claim(_grid_answers(card))
    return card


def _grid_section(spec: GridSpec, records: list, manifest) -> dict:
    patients = None
    if manifest is not None:
        ids = [row[2] for row in manifest if len(row) > 2 and row[2]]
        patients = len(set(ids)) if ids else None
    return {
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
        "runs_expected": len(spec.scenarios) * len(spec.sources) * spec.n_folds * spec.repeats,
        "runs_recorded": len(records),
        "statuses": dict(sorted(Counter(r.status for r in records).items())),
    }


def _weights(records: list) -> list[dict]:
    """The weight file of each (source, backbone), flagged where runs of it differ."""
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
    return list(weights.values())


def _runs(records: list) -> list[dict]:
    runs = []
    for r in sorted(records, key=lambda r: (r.source, r.scenario, r.fold, r.repeat)):
        metrics = r.metrics or {}
        runs.append(
            {
                "source": r.source,
                "scenario": r.scenario,
                "fold": r.fold,
                "repeat": r.repeat,
                "run_id": r.run_id,
                "status": r.status,
                "auc": metrics.get("auc"),
                "auc_ci": metrics.get("auc_ci"),
                "interval": describe_interval(metrics) if metrics else None,
                "interval_problem": interval_problem(metrics) if metrics else "no test metrics",
                "accuracy": metrics.get("accuracy"),
                "n_test": r.n_test,
                "best_epoch": r.best_epoch,
                "run_seed": r.run_seed,
            }
        )
    return runs


def _has_repeats(runs: list[dict]) -> bool:
    """Whether any run is a repeat (repeat ≥ 1) of a (source, scenario, fold)."""
    return any(run["repeat"] for run in runs)


def _scenario_means(runs: list[dict]) -> list[dict]:
    """Runs (folds and repeats) averaged per scenario, as the report does (finished or diverged runs with an AUC);
    ``runs`` counts them, ``folds`` the distinct folds among them."""
    aucs: dict = {}
    for run in runs:
        if run["status"] in ("finished", "diverged") and finite(run["auc"]):
            aucs.setdefault((run["source"], run["scenario"]), []).append((run["fold"], run["auc"]))
    return [
        {
            "source": source,
            "scenario": scenario,
            "runs": len(values),
            "folds": len({fold for fold, _ in values}),
            "mean_auc": sum(auc for _, auc in values) / len(values),
        }
        for (source, scenario), values in sorted(aucs.items())
    ]


def _grid_intended_use(records: list) -> dict:
    """The grid's intended use: what each run's test figures show of it (``reading.model_fit``), summed up, and the
    limitations its records give."""
    tested = [r for r in records if r.metrics]
    fits = [(r.run_id, model_fit(r.metrics, RECORD_FILE)) for r in tested]
    statuses = Counter(fit["status"] for _, fit in fits)
    if not fits:
        fit = model_fit(None, None)
    else:
        because = [f"{n} of {len(fits)} runs {status}" for status, n in sorted(statuses.items())]
        because += [f"{run_id}: {fit['because'][0]}" for run_id, fit in fits if fit["status"] == "not fit"][:3]
        fit = {"status": next(iter(statuses)) if len(statuses) == 1 else "mixed", "because": because}
    points = [(r.metrics.get("operating_point"), r.metrics.get("positive_class")) for r in tested]
    points = [(p, positive) for p, positive in points if p]
    limitations = grid_limitations(
        [r.metrics.get("temperature") for r in tested],
        Counter(p.get("chosen_on") for p, _ in points),
        sum(operating_point_note(p, positive) is not None for p, positive in points),
        len(tested),
    )
    return intended_use(fit, limitations)


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
        problems = [r for r in card["runs"] if r["interval_problem"]]
        if not problems:
            answers[29] = ("answered", f"{RECORD_FILE}: metrics.auc_ci")
        else:
            first = f"{problems[0]['run_id']}: {problems[0]['interval_problem']}"
            status = "not answered" if len(problems) == len(card["runs"]) else "partly"
            missing = f"{len(problems)} runs' interval missing or degenerate ({first})"
            answers[29] = (status, f"{RECORD_FILE}: metrics.auc_ci; {missing}")
    answers.update(POLICY_STARTS)
    return answers

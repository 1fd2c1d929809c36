"""The model card (issue 20): MODEL_CARD.md and model_card.json of a run or grid folder, made from its files only.

The numbers the card states are checked against the run's own files, read here independently (test_metrics.json,
the split CSVs, config.json, history.csv), in the JSON and as text in the markdown. The shared ``cli_run`` is
never written to: its card goes to tmp_path, and tests that add records to a run work on a copy.
"""

from __future__ import annotations

import csv
import json
import math
import re
import shutil
import subprocess
import sys
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from radtransfer.card import CARD_JSON, MODEL_CARD, model_card, write_model_card
from radtransfer.cli import main
from radtransfer.errors import RadtransferError
from radtransfer.evaluation.metrics import describe_interval, metrics_from_predictions

NOT_SETTINGS = {"identity", "fingerprint", "model", "strategy_summary", "versions", "class_names", "input_shape"}
NOT_SETTINGS |= {"num_classes", "command"}


def _json(path):
    return json.loads(Path(path).read_text())


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _f(value, digits=3):
    return "NaN" if isinstance(value, float) and math.isnan(value) else f"{value:.{digits}f}"


def _text(value):
    return value if isinstance(value, str) else json.dumps(value)


def _floats(value):
    """Every float in a JSON value (recursively)."""
    if isinstance(value, float):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _floats(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _floats(item)


def _copy_run(cli_run, target: Path) -> Path:
    """A copy of the shared run to write records into (without best.weights.h5, which the card does not read)."""
    shutil.copytree(cli_run, target, ignore=shutil.ignore_patterns("best.weights.h5"))
    return target


def _with_metadata(keras_file: Path, **extra) -> None:
    """Rewrites a .keras file's radtransfer.json member with ``extra`` added (as saving a calibrated model does)."""
    tmp = keras_file.with_name("rewritten.keras")
    with zipfile.ZipFile(keras_file) as source, zipfile.ZipFile(tmp, "w") as target:
        meta = json.loads(source.read("radtransfer.json"))
        for info in source.infolist():
            if info.filename != "radtransfer.json":
                with source.open(info) as reader, target.open(info, "w") as writer:
                    shutil.copyfileobj(reader, writer, 1 << 20)
        target.writestr("radtransfer.json", json.dumps({**meta, **extra}))
    tmp.replace(keras_file)


def _metrics(n_patients, classes, seed, threshold=None, source=None, bootstrap=200):
    """A real evaluate() metrics dict (metrics_from_predictions on drawn predictions, two images per patient)."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_patients) % len(classes), 2)
    logits = rng.normal(size=(len(y), len(classes))) + 1.5 * np.eye(len(classes))[y]
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    patients = [f"S{seed}_{i // 2}" for i in range(len(y))]
    metrics = metrics_from_predictions(
        y,
        p,
        classes,
        bootstrap=bootstrap,
        seed=seed,
        patient_ids=patients,
        threshold=threshold,
        threshold_source=source,
    )
    metrics.pop("predictions")
    return json.loads(json.dumps(metrics))  # as read back from a file (tuples become lists)


# -- a run ------------------------------------------------------------------------------------------------------


def test_run_card_states_only_what_the_run_recorded(cli_run, tmp_path):
    markdown_path, json_path = write_model_card(cli_run, tmp_path / "card")
    assert (markdown_path.name, json_path.name) == (MODEL_CARD, CARD_JSON) and markdown_path.parent == tmp_path / "card"
    assert not (cli_run / MODEL_CARD).exists()  # out_dir: nothing written into the run
    card, md = _json(json_path), markdown_path.read_text()
    assert card == json.loads(json.dumps(model_card(cli_run)))  # the JSON is the card

    config = _json(cli_run / "config.json")
    metrics = _json(cli_run / "test_metrics.json")
    state = _json(cli_run / "state.json")
    cli = _json(cli_run / "cli_config.json")

    # Model details: config.json's build info.
    build = config["model"]
    model = card["model"]
    for key in ("backbone", "weights_source", "weights_sha256", "preprocessing", "input_shape", "dropout"):
        assert model[key] == build[key], key
    assert model["weights_file"] == build["weights_path"] and model["class_names"] == config["class_names"]
    assert f"| backbone | {build['backbone']} |" in md and f"| preprocessing | {build['preprocessing']} |" in md
    assert f"| input size | {json.dumps(build['input_shape'])} |" in md
    assert f"| classes | {', '.join(config['class_names'])} |" in md
    assert build["weights_source"] is None and build["weights_sha256"] is None  # the fixture trains from scratch
    assert "| weights sha256 | no weight file (random initialisation) |" in md
    assert f"| settings fingerprint | {config['fingerprint']} |" in md
    summary = config["strategy_summary"]
    assert f"| trainable / total parameters | {summary['trainable_params']} / {summary['total_params']} |" in md

    # Training: every setting of config.json, the seed, the best epoch and its logged metrics.
    settings = {k: v for k, v in config.items() if k not in NOT_SETTINGS}
    assert card["training"]["settings"] == settings and len(settings) > 20
    for key, value in settings.items():
        assert f"| {key} | {_text(value)} |" in md, key
    assert card["training"]["seed"] == config["seed"] == cli["seed"]
    assert f"Seed: {config['seed']} (used: {config['seed_used']})" in md
    assert card["training"]["best_epoch"] == state["best_epoch"]
    assert f"best epoch {state['best_epoch']} of" in md and f"best val_loss {_f(state['best_val_loss'])}" in md
    (row,) = [r for r in _rows(cli_run / "history.csv") if int(r["epoch"]) == state["best_epoch"]]
    for key, value in row.items():
        if key != "epoch":
            assert f"| {key} | {float(value):.4g} |" in md, key

    # Data: images, patients and classes per part, counted here from the split CSVs.
    classes = sorted(config["class_names"])
    for part in ("train", "val", "test"):
        rows = _rows(cli_run / f"split_{part}.csv")
        counts = Counter(r["label"] for r in rows)
        expected = {"images": len(rows), "patients": len({r["patient_id"] for r in rows}), "classes": dict(counts)}
        assert card["data"]["parts"][part] == expected
        cells = [part, str(len(rows)), str(expected["patients"])] + [str(counts.get(c, 0)) for c in classes]
        assert "| " + " | ".join(cells) + " |" in md, part
    patients = [{r["patient_id"] for r in _rows(cli_run / f"split_{p}.csv")} for p in ("train", "val", "test")]
    assert not (patients[0] & patients[1] or patients[0] & patients[2] or patients[1] & patients[2])
    assert card["data"]["disjoint_level"] == "patient" and "Parts disjoint by: patient" in md
    assert f"val {cli['val']}, test {cli['test']}, seed {cli['seed']}" in md

    # Evaluation, calibration, threshold: test_metrics.json.
    evaluation = card["evaluation"]
    for key in ("n", "n_patients", "auc", "accuracy", "balanced_accuracy", "sensitivity", "specificity"):
        assert evaluation[key] == metrics[key], key
    assert evaluation["confusion_matrix"] == metrics["confusion_matrix"]
    assert evaluation["auc_ci"] == metrics["auc_ci"] == [None, None]  # undefined: null in strict JSON
    assert f"| images | {metrics['n']} |" in md and f"| patients | {metrics['n_patients']} |" in md
    assert f"| AUC (macro, one vs rest) | {_f(metrics['auc'])} |" in md
    assert f"| accuracy | {_f(metrics['accuracy'])} |" in md
    assert f"| balanced accuracy | {_f(metrics['balanced_accuracy'])} |" in md
    assert f"Interval: {describe_interval(metrics)}." in md and "| AUC 95% CI | none |" in md
    for name in metrics["class_names"]:
        cells = (name, _f(metrics["sensitivity"][name]), _f(metrics["specificity"][name]))
        assert "| " + " | ".join(cells) + f" | {_f(metrics['per_class_auc'][name])} |" in md, name
    for name, matrix_row in zip(metrics["class_names"], metrics["confusion_matrix"]):
        assert f"| {name} | " + " | ".join(map(str, matrix_row)) + " |" in md
    assert card["calibration"]["brier"] == metrics["brier"] and card["calibration"]["ece"] == metrics["ece"]
    assert f"Brier score {_f(metrics['brier'])}, expected calibration error {_f(metrics['ece'])}" in md
    for b in (b for b in metrics["calibration_bins"] if b["count"]):
        assert (
            f"| {_f(b['lower'])}–{_f(b['upper'])} | {b['count']} | {_f(b['accuracy'])} | {_f(b['confidence'])} |" in md
        )
    assert "operating_point" not in metrics and card["threshold"]["value"] is None  # four classes: arg-max
    assert f"No operating threshold: {len(config['class_names'])} classes" in md

    # Software versions.
    assert card["software"]["versions"] == config["versions"]
    for package, version in config["versions"].items():
        assert f"| {package} | {version} |" in md

    # The data audit: audit.json's findings counted here by kind and severity (not recorded without one).
    if (cli_run / "audit.json").exists():
        findings = _json(cli_run / "audit.json")
        assert card["audit"]["findings"] == len(findings)
        assert card["audit"]["by_severity"] == dict(Counter(f["severity"] for f in findings))
        assert f"{len(findings)} finding(s) in `audit.json`" in md
    else:
        assert card["audit"] == {"recorded": False, "file": "audit.json"} and "Not recorded: no `audit.json`" in md

    # What the run does not hold is said to be not recorded.
    assert card["external"] == [] and "Not recorded: no external-<site>.json" in md
    assert "Temperature: not recorded" in md

    # Intended use is policy; the CLAIM checklist has 42 items, each marked.
    assert "Decision support" in md and "It is not a diagnostic device" in md
    claim = card["claim"]
    assert [item["item"] for item in claim] == list(range(1, 43))
    for item in claim:
        assert re.search(
            rf"^\| {item['item']} \| .* \| (answered by the records: |partly answered|not answered: |to complete)",
            md,
            re.M,
        )
    status = {item["item"]: item["status"] for item in claim}
    assert status[20] == status[21] == status[23] == status[25] == status[28] == "answered"
    assert status[29] == status[36] == "not answered"  # no interval on 4 test patients
    for item in (1, 2, 4, 5, 8, 12, 14, 16, 19, 30, 31, 32, 39, 40, 41, 42):
        assert status[item] == "author", item
    counts = Counter(status.values())
    assert f"the records answer {counts['answered']}, answer {counts['partly']} in part" in md
    assert f"hold only missing or degenerate evidence for {counts['not answered']}, and leave" in md

    # Nothing contradicts the files: every decimal the markdown prints is one of the files' numbers, as printed.
    recorded = set()
    for value in _floats([config, metrics, state, cli, [float(v) for v in row.values()]]):
        if math.isfinite(value):
            recorded |= {f"{value:.3f}", f"{value:.4f}", f"{value:.4g}", json.dumps(value)}
    printed = re.findall(r"(?<![\w.])\d+\.\d+(?![\w.])", md)
    assert printed and not [number for number in printed if number not in recorded]


def test_card_command_shows_the_audit_external_sites_and_the_temperature(cli_run, tmp_path, capsys):
    run = _copy_run(cli_run, tmp_path / "run")
    config = _json(run / "config.json")
    classes = config["class_names"]
    findings = [
        {
            "kind": "duplicate",
            "severity": "error",
            "paths": ["a.png", "b.png"],
            "parts": ["train", "test"],
            "classes": [classes[0]],
            "detail": "same pixels",
        },
        {
            "kind": "duplicate",
            "severity": "error",
            "paths": ["c.png", "d.png"],
            "parts": ["val", "test"],
            "classes": [classes[1]],
            "detail": "same pixels",
        },
        {
            "kind": "empty_image",
            "severity": "warning",
            "paths": ["e.png"],
            "parts": ["train"],
            "classes": [classes[2]],
            "detail": "constant image",
        },
    ]
    (run / "audit.json").write_text(json.dumps(findings))
    site_b = _metrics(12, classes, seed=3)  # one arm: evaluate's metrics with the site
    (run / "external-hospital_b.json").write_text(json.dumps({**site_b, "site": "hospital_b"}))
    development, recalibrated = _metrics(12, classes, seed=4), _metrics(12, classes, seed=5)
    refit = {"temperature": 1.7, "threshold": None, "threshold_unscaled": None, "n": 8, "n_patients": 4}
    (run / "external-clinic.c.json").write_text(
        json.dumps(
            {"site": "clinic.c", "development": development, "recalibrated": recalibrated, "recalibration": refit}
        )
    )
    fit = {
        "method": "temperature",
        "temperature": 1.2345678,
        "nll_before": 1.5,
        "nll_after": 1.25,
        "ece_before": 0.2,
        "ece_after": 0.05,
        "n": 8,
        "n_patients": 4,
        "fitted_on": "validation part",
    }
    _with_metadata(run / "best.keras", temperature=fit["temperature"], calibration=fit)

    assert main(["card", str(run)]) == 0
    assert str(run / MODEL_CARD) in capsys.readouterr().out
    card, md = _json(run / CARD_JSON), (run / MODEL_CARD).read_text()

    assert card["audit"]["findings"] == 3 and card["audit"]["by_severity"] == {"error": 2, "warning": 1}
    assert card["audit"]["by_kind"] == {"duplicate": {"error": 2}, "empty_image": {"warning": 1}}
    assert "3 finding(s) in `audit.json`: 2 error, 1 warning." in md
    assert "| duplicate | error | 2 |" in md and "| empty_image | warning | 1 |" in md

    sites = {e["site"]: e for e in card["external"]}
    assert set(sites) == {"hospital_b", "clinic.c"}
    for site, arm, source in (
        ("hospital_b", "development", site_b),
        ("clinic.c", "development", development),
        ("clinic.c", "recalibrated", recalibrated),
    ):
        shown = sites[site][arm]
        assert shown["auc"] == source["auc"] and shown["auc_ci"] == source["auc_ci"] and shown["n"] == source["n"]
        assert math.isfinite(source["auc_ci"][0])  # 12 patients, 3 per class: an interval (stats.too_few)
        assert f"95% CI {source['auc_ci'][0]:.3f}–{source['auc_ci'][1]:.3f}" in md
        assert f"Interval: {describe_interval(source)}." in md and f"| Brier score | {_f(source['brier'])} |" in md
    assert (
        "### Site: hospital_b (external-hospital_b.json)" in md and "### Site: clinic.c (external-clinic.c.json)" in md
    )
    assert "temperature 1.7000" in md
    status = {item["item"]: item for item in card["claim"]}
    assert status[32]["status"] == "answered" and "external-hospital_b.json" in status[32]["where"]

    assert card["calibration"]["temperature"] == fit["temperature"] and card["calibration"]["fit"] == fit
    assert "Temperature: 1.2346 (best.keras, radtransfer.json)." in md
    assert "NLL 1.5000 → 1.2500, ECE 0.2000 → 0.0500" in md and "on validation part (8 images)" in md
    missing = card["not_recorded"]
    assert not [text for text in missing if "audit" in text or "external" in text or "a temperature" in text]
    # test_metrics.json was written by train, before calibrate: its Brier and ECE are the uncalibrated model's.
    assert "On the test part (test_metrics.json), measured before the temperature" in md
    assert [text for text in card["not_recorded"] if "calibrated model's Brier score" in text]


def test_a_two_class_run_card_gives_its_threshold_where_it_was_chosen_and_the_weight_file(tmp_path):
    """A hand-made minimal run folder (config.json and test_metrics.json only): the card reports what they hold,
    the threshold and the weight file's sha256 included, and says that the rest is not recorded."""
    run = tmp_path / "run"
    run.mkdir()
    build = {
        "backbone": "densenet121",
        "weights": "radimagenet",
        "weights_source": "radimagenet",
        "weights_path": "/weights/RadImageNet-DenseNet121_notop.h5",
        "weights_sha256": "ab" * 32,
        "preprocessing": "radimagenet",
        "num_classes": 2,
        "input_shape": [256, 256, 3],
        "dropout": 0.5,
    }
    (run / "config.json").write_text(json.dumps({"model": build, "class_names": ["normal", "tumour"], "seed": 7}))
    metrics = _metrics(24, ["normal", "tumour"], seed=9, threshold=0.3125, source="validation")
    (run / "test_metrics.json").write_text(json.dumps(metrics))

    card = model_card(run)
    md = write_model_card(run)[0].read_text()
    point = metrics["operating_point"]
    assert card["threshold"]["value"] == point["threshold"] == 0.3125 and card["threshold"]["chosen_on"] == "validation"
    assert "Threshold 0.3125 on the probability of tumour, chosen on: validation (test_metrics.json)" in md
    assert f"sensitivity {_f(point['sensitivity'])}" in md and f"specificity {_f(point['specificity'])}" in md
    assert (
        f"| AUC (tumour positive) | {_f(metrics['auc'])} |" in md and f"Interval: {describe_interval(metrics)}." in md
    )
    assert card["model"]["weights_sha256"] == build["weights_sha256"] and f"| weights sha256 | {'ab' * 32} |" in md
    assert f"| weights file | {build['weights_path']} |" in md and "| weights source | radimagenet |" in md
    assert card["training"]["seed"] == 7 and "Split: not recorded." in md
    assert any("split" in text for text in card["not_recorded"]) and any(
        "versions" in text for text in card["not_recorded"]
    )
    status = {item["item"]: item["status"] for item in card["claim"]}
    assert status[24] == status[28] == status[29] == "answered" and status[20] == status[23] == "author"


def test_a_wrong_folder_is_a_one_line_usage_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for path in (tmp_path / "missing", tmp_path / "empty"):
        assert main(["card", str(path)]) == 2
        error = capsys.readouterr().err.splitlines()
        assert error[0].startswith(f"radtransfer: error: No run or grid folder at '{path}': pass the out folder of")
        assert len(error) == 2 and error[1].startswith("(run with --debug")  # one line, and the --debug hint
        with pytest.raises(RadtransferError, match="No run or grid folder"):
            model_card(path)


def test_the_card_command_does_not_start_tensorflow(cli_run, tmp_path):
    probe = (
        "import sys\nfrom radtransfer.cli import main\n"
        "code = main(['card', sys.argv[1], '--out', sys.argv[2]])\n"
        "print('RESULT', code, 'tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(cli_run), str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert done.stdout.strip().splitlines()[-1] == "RESULT 0 False False", done.stderr[-2000:]
    assert (tmp_path / MODEL_CARD).exists() and (tmp_path / CARD_JSON).exists()


# -- a grid -----------------------------------------------------------------------------------------------------


def _grid(root: Path, classes=("benign", "malignant")) -> dict:
    """A grid folder's records as ``radtransfer grid`` writes them (grid.json, each run's record.json and the
    config.json of its fine_tune), for 2 sources × 2 scenarios × 1 split; returns the metrics per run."""
    from radtransfer.grid.paper import RADIMAGENET, radimagenet_scenarios
    from radtransfer.grid.records import GridSpec, RunRecord, run_dir

    scenarios = radimagenet_scenarios(["resnet50"])[:2]
    root.mkdir(parents=True)
    GridSpec(
        task="breast_us",
        config=RADIMAGENET.to_dict(),
        sources=["radimagenet", "imagenet"],
        scenarios=[s.to_dict() for s in scenarios],
        folds=None,
        faithful=False,
        bn="frozen",
        interpolation="bilinear",
        n_images=40,
        class_names=list(classes),
    ).write(root)
    versions = {"radtransfer": "0.1.0", "keras": "3.15.1", "tensorflow": "2.21.0"}
    written = {}
    for i, source in enumerate(("radimagenet", "imagenet")):
        for j, scenario in enumerate(scenarios):
            metrics = _metrics(10, list(classes), seed=10 * i + j)
            folder = run_dir(root, source, scenario.id, 0)
            folder.mkdir(parents=True)
            RunRecord(
                run_id=f"{source}/{scenario.id}/fold0",
                task="breast_us",
                source=source,
                **scenario.to_dict(),
                scenario=scenario.id,
                fold=0,
                metrics=metrics,
                best_epoch=3,
                epochs_run=5,
                run_seed=100 + j,
                preprocessing="radimagenet",
                weights_path=f"/w/{source}-resnet50.h5",
                weights_sha256=f"{i}" * 64,
                n_train=30,
                n_val=4,
                n_test=20,
            ).write(folder)
            (folder / "config.json").write_text(json.dumps({"versions": versions}))
            written[(source, scenario.id)] = metrics
    return written


def test_grid_card_gives_each_runs_test_auc_with_its_interval(tmp_path):
    grid = tmp_path / "grid"
    written = _grid(grid)
    assert main(["card", str(grid), "--out", str(tmp_path / "card")]) == 0
    card, md = _json(tmp_path / "card" / CARD_JSON), (tmp_path / "card" / MODEL_CARD).read_text()
    assert card["kind"] == "grid" and card["grid"]["runs_recorded"] == card["grid"]["runs_expected"] == 4
    assert card["grid"]["sources"] == ["radimagenet", "imagenet"] and card["grid"]["seed"] == 726
    assert "| runs recorded / expected | 4 / 4 |" in md and "| scenarios | 2 |" in md
    assert len(card["runs"]) == 4
    for run in card["runs"]:
        metrics = written[(run["source"], run["scenario"])]
        assert run["auc"] == metrics["auc"] and run["auc_ci"] == metrics["auc_ci"]
        low, high = metrics["auc_ci"]
        ci = f"{_f(low)}–{_f(high)}" + (" (zero width: no evidence of precision)" if high == low else "")
        cells = [run["source"], run["scenario"], "0", "finished", _f(metrics["auc"]), ci]
        assert "| " + " | ".join(cells) + f" | {describe_interval(metrics)} | 20 |" in md
    assert {(w["source"], w["weights_sha256"]) for w in card["weights"]} == {
        ("radimagenet", "0" * 64),
        ("imagenet", "1" * 64),
    }
    assert "| radimagenet | resnet50 | /w/radimagenet-resnet50.h5 | " + "0" * 64 + " | radimagenet |" in md
    assert card["software"]["versions"]["keras"] == "3.15.1" and "| keras | 3.15.1 |" in md
    assert "Decision support" in md and len(card["claim"]) == 42
    status = {item["item"]: item["status"] for item in card["claim"]}
    assert status[24] == status[28] == "answered" and status[1] == status[32] == "author"
    zero = [r for r in card["runs"] if r["auc_ci"][0] == r["auc_ci"][1]]  # a perfect AUC on 10 patients
    assert status[29] == ("partly" if zero else "answered")


# -- the package --------------------------------------------------------------------------------------------------


def test_the_card_spells_no_file_name_of_a_run_or_a_grid():
    """Every file name the card reads comes from its owner's constant (training.run_folder, grid.records,
    data.audit, evaluation.external, models.trained): no string in radtransfer/card/ but a docstring names a file,
    apart from the card's own two."""
    import ast

    import radtransfer.card

    name = re.compile(r"[\w<>*{}-]+\.(json|csv|keras|h5|npz|md)\b")
    found = []
    for path in sorted(Path(radtransfer.card.__file__).parent.glob("*.py")):
        tree = ast.parse(path.read_text())
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and ast.get_docstring(node) is not None
        }
        found += [
            (path.name, node.value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
            if name.search(node.value)
        ]
    assert sorted(found) == [("__init__.py", "MODEL_CARD.md"), ("__init__.py", "model_card.json")]


# -- what the records do not support (issue 30, item 5) -----------------------------------------------------------


def _hand_run(root: Path, metrics: dict | None, *, meta: dict | None = None, splits: dict | None = None) -> Path:
    """A minimal run folder written by hand: config.json, test_metrics.json (``metrics``), a best.keras holding
    only its radtransfer.json member (``meta``), and the split CSVs (``splits``: part -> rows)."""
    root.mkdir(parents=True)
    classes = (metrics or {}).get("class_names") or ["normal", "tumour"]
    (root / "config.json").write_text(json.dumps({"class_names": classes, "seed": 7}))
    if metrics is not None:
        (root / "test_metrics.json").write_text(json.dumps(metrics))
    if meta is not None:
        with zipfile.ZipFile(root / "best.keras", "w") as archive:
            archive.writestr("radtransfer.json", json.dumps({"class_names": classes, **meta}))
    for part, rows in (splits or {}).items():
        with open(root / f"split_{part}.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return root


def _predicted(y, p, classes=("normal", "tumour"), threshold=None, source=None, n_patients=None):
    """evaluate()'s metrics of given predictions, as read back from a file (one patient per image)."""
    metrics = metrics_from_predictions(
        np.asarray(y),
        np.asarray(p, dtype=float),
        list(classes),
        bootstrap=200,
        seed=0,
        patient_ids=[f"P{i}" for i in range(len(y))],
        threshold=threshold,
        threshold_source=source,
    )
    metrics.pop("predictions")
    return json.loads(json.dumps(metrics))


def _section(md: str, title: str) -> str:
    """A markdown section's text, from its title to the next."""
    return md.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_test_brier_and_ece_are_said_to_be_of_the_model_before_its_temperature(tmp_path):
    """Defect: test_metrics.json (written by train, temperature null) was printed beside the temperature calibrate
    fitted afterwards, as if of the calibrated model. The card says which model each figure belongs to."""
    metrics = _metrics(24, ["normal", "tumour"], seed=9)
    assert metrics["temperature"] is None  # measured on the softmax as trained
    fit = {"method": "temperature", "temperature": 1.8, "nll_before": 0.9, "nll_after": 0.6, "ece_before": 0.2}
    fit |= {"ece_after": 0.04, "n": 30, "n_patients": 15, "fitted_on": "run/split_val.csv"}
    fit |= {"train_images": 0, "test_images": 0}
    run = _hand_run(tmp_path / "run", metrics, meta={"temperature": 1.8, "calibration": fit})
    card, md = model_card(run), write_model_card(run)[0].read_text()
    calibration = _section(md, "Calibration")
    assert (
        "On the test part (test_metrics.json), measured before the temperature (the softmax as trained; "
        f"test_metrics.json: temperature null): Brier score {_f(metrics['brier'])}" in calibration
    )
    assert card["calibration"]["measured_at"] == "before the temperature"
    assert "The calibrated model's Brier score and expected calibration error on the test part are not recorded" in md
    assert any("calibrated model's Brier score" in text for text in card["not_recorded"])
    assert "on those images, before → after the temperature: NLL 0.9000 → 0.6000, ECE 0.2000 → 0.0400" in md

    # Measured again at the model's temperature: said to be after it, and nothing is missing.
    after = dict(metrics, temperature=1.8)
    run = _hand_run(tmp_path / "after", after, meta={"temperature": 1.8, "calibration": fit})
    card, md = model_card(run), write_model_card(run)[0].read_text()
    assert card["calibration"]["measured_at"] == "at the model's temperature"
    assert "measured after the temperature (at the model's 1.8000): Brier score" in md
    assert "are not recorded" not in _section(md, "Calibration")

    # A model without a temperature: of the softmax as trained, with no after-figure implied.
    run = _hand_run(tmp_path / "none", metrics, meta={})
    md = write_model_card(run)[0].read_text()
    assert "of the softmax as trained (no temperature): Brier score" in md and "after the temperature" not in md


def test_intended_use_says_a_model_at_chance_is_not_fit_for_it(tmp_path):
    """Defect: "decision support for trained readers" was printed for a model with test accuracy 0.000."""
    y = np.array([0, 1] * 12)
    inverted = np.stack([y, 1 - y], axis=1) * 0.8 + 0.1  # every image's probability on the wrong class
    metrics = _predicted(y, inverted)
    assert metrics["accuracy"] == 0.0 and metrics["auc"] == 0.0  # by construction
    card = model_card(_hand_run(tmp_path / "run", metrics))
    md = write_model_card(tmp_path / "run")[0].read_text()
    intended = _section(md, "Intended use and limitations")
    assert "**This model is not fit for that use: its recorded test performance is degenerate or at chance:" in intended
    assert "test accuracy 0.000" in intended and "test AUC 0.000" in intended
    fit = card["intended_use"]["fit"]
    assert fit["status"] == "not fit"
    assert "test accuracy 0.000 (test_metrics.json): no test image classified correctly" in fit["because"]
    assert "test AUC 0.000 (test_metrics.json): at or below chance (0.5)" in fit["because"]

    # AUC below chance with some correct calls: at chance too; a good model with an interval above 0.5 is not.
    rng = np.random.default_rng(1)
    y = np.array([0, 1] * 30)
    good = np.clip(np.stack([1 - y, y], axis=1) * 0.6 + rng.uniform(0, 0.4, size=(60, 2)), 0.01, None)
    good = good / good.sum(1, keepdims=True)
    metrics = _predicted(y, good)
    assert metrics["auc_ci"][0] > 0.5 and metrics["auc_ci_units"] == 60
    card = model_card(_hand_run(tmp_path / "good", metrics))
    assert card["intended_use"]["fit"]["status"] == "above chance"
    # The same separation on 10 patients: a zero-width interval with evaluate's small-sample note shows nothing.
    metrics = _predicted(y[:10], good[:10])
    assert metrics["auc_ci"][0] == metrics["auc_ci"][1] and metrics["auc_ci_note"]
    assert model_card(_hand_run(tmp_path / "few", metrics))["intended_use"]["fit"]["status"] == "not shown"
    metrics = _predicted(y, good[:, ::-1])
    assert metrics["auc"] < 0.5 and metrics["accuracy"] < 0.5
    card = model_card(_hand_run(tmp_path / "worse", metrics))
    assert card["intended_use"]["fit"]["status"] == "not fit"

    # No test metrics: nothing shows it fit.
    card = model_card(_hand_run(tmp_path / "untested", None))
    assert card["intended_use"]["fit"]["status"] == "not shown"


def test_claim_21_says_patient_disjointness_is_unknown_without_patient_ids(tmp_path):
    """Defect: item 21 was "answered: disjoint by image" when the split CSVs hold no patient column."""
    splits = {
        part: [{"path": f"/d/{part}{i}.png", "label": label} for i, label in enumerate(["normal", "tumour"] * 3)]
        for part in ("train", "val", "test")
    }
    card = model_card(_hand_run(tmp_path / "run", None, splits=splits))
    md = write_model_card(tmp_path / "run")[0].read_text()
    unknown = "by patient: unknown (no patient_id column in train, val, test)"
    assert f"Parts disjoint by: image; {unknown}." in md
    item = next(i for i in card["claim"] if i["item"] == 21)
    assert item["status"] == "partly" and unknown in item["where"]
    assert card["data"]["patient_disjoint"] is None and card["data"]["disjoint_level"] == "image"
    item = next(i for i in card["claim"] if i["item"] == 34)
    assert "patients unknown in train, val, test (no patient_id column)" in item["where"]

    # Patients in two parts: answered, and said.
    for part, rows in splits.items():
        for i, row in enumerate(rows):
            row["patient_id"] = f"P{i}"  # the same ids in every part
    card = model_card(_hand_run(tmp_path / "shared", None, splits=splits))
    item = next(i for i in card["claim"] if i["item"] == 21)
    assert card["data"]["patient_disjoint"] is False and "patients in two parts" in item["where"]


def test_claim_items_on_a_degenerate_or_missing_interval_are_not_answered(tmp_path):
    """Defect: items 32 and 36 were answered on a 0.000–0.000 interval or none."""
    metrics = _metrics(24, ["normal", "tumour"], seed=9)
    metrics["auc_ci"] = [0.0, 0.0]  # a zero-width interval, as a record of 2 patients held
    site = _metrics(24, ["normal", "tumour"], seed=3)
    site["auc_ci"] = [None, None]
    run = _hand_run(tmp_path / "run", metrics)
    (run / "external-b.json").write_text(json.dumps({**site, "site": "b"}))
    card, md = model_card(run), write_model_card(run)[0].read_text()
    status = {item["item"]: item for item in card["claim"]}
    for number in (29, 32, 36):
        assert status[number]["status"] == "not answered", number
    assert "zero-width interval 0.000–0.000" in status[36]["where"]
    assert "external-b.json: the AUC has no interval" in status[32]["where"]
    assert re.search(r"^\| 36 \| .* \| not answered: test_metrics.json: the AUC has a zero-width", md, re.M)
    assert "| AUC 95% CI | 0.000–0.000 (zero width: no evidence of precision) |" in md
    assert "hold only missing or degenerate evidence for 3" in md


def test_a_threshold_that_calls_no_image_positive_is_named(tmp_path):
    """Defect: a threshold of 1.0000 (nothing called positive) was shown without comment."""
    rng = np.random.default_rng(4)
    y = np.array([0, 1] * 12)
    p1 = rng.uniform(0.05, 0.95, size=24)
    metrics = _predicted(y, np.stack([1 - p1, p1], axis=1), threshold=1.0, source="validation")
    assert not (p1 >= 1.0).any()  # so no image is called tumour
    point = metrics["operating_point"]
    assert (point["sensitivity"], point["specificity"]) == (0.0, 1.0)
    site = {**metrics, "site": "b"}
    run = _hand_run(tmp_path / "run", metrics, meta={"thresholds": {"1": 1.0}})
    (run / "external-b.json").write_text(json.dumps(site))
    card, md = model_card(run), write_model_card(run)[0].read_text()
    threshold = _section(md, "Operating threshold")
    assert "Threshold 1.0000 on the probability of tumour" in threshold
    assert "**Degenerate: at 1.0000 no image is called tumour (no probability exceeds 1); no test image was called" in (
        threshold
    )
    assert "1: 1.0000 (no image is called tumour at it)" in threshold
    assert "| what it calls | at 1.0000 no image is called tumour" in _section(md, "External validation")
    assert card["intended_use"]["fit"]["status"] == "not fit"  # sensitivity 0 + specificity 1: chance decisions
    limits = card["intended_use"]["limitations"]
    chosen = "The threshold 1.0000 on the probability of tumour was chosen on the validation part"
    degenerate = ". Degenerate: at 1.0000 no image is called tumour"
    assert any(text.startswith(chosen) and degenerate in text for text in limits)


def test_grid_card_tells_repeats_apart(tmp_path):
    """Defect: a grid with repeats listed each scenario twice under fold 0, without a repeat column."""
    from radtransfer.grid.paper import RADIMAGENET, radimagenet_scenarios
    from radtransfer.grid.records import GridSpec, RunRecord, run_dir

    (scenario,) = radimagenet_scenarios(["resnet50"])[:1]
    grid = tmp_path / "grid"
    grid.mkdir()
    GridSpec(
        task="breast_us",
        config=RADIMAGENET.to_dict(),
        sources=["radimagenet"],
        scenarios=[scenario.to_dict()],
        folds=None,
        faithful=False,
        bn="frozen",
        interpolation="bilinear",
        repeats=2,
        n_images=40,
        class_names=["benign", "malignant"],
    ).write(grid)
    aucs = {}
    for repeat in (0, 1):
        metrics = _metrics(10, ["benign", "malignant"], seed=20 + repeat)
        aucs[repeat] = metrics["auc"]
        folder = run_dir(grid, "radimagenet", scenario.id, 0, repeat)
        folder.mkdir(parents=True)
        fields = dict(scenario.to_dict(), scenario=scenario.id, fold=0, repeat=repeat, metrics=metrics, n_test=20)
        RunRecord(run_id=f"r{repeat}", task="breast_us", source="radimagenet", **fields).write(folder)
    card, md = model_card(grid), write_model_card(grid)[0].read_text()
    assert "| source | scenario | fold | repeat | status | AUC |" in md
    for repeat, auc in aucs.items():
        assert f"| radimagenet | {scenario.id} | 0 | {repeat} | finished | {_f(auc)} |" in md
    (mean,) = card["scenario_means"]
    assert mean["runs"] == 2 and mean["folds"] == 1 and mean["mean_auc"] == pytest.approx(sum(aucs.values()) / 2)
    assert f"| radimagenet | {scenario.id} | 2 | 1 | {_f(mean['mean_auc'])} |" in md


def test_limitations_say_where_the_temperature_was_fitted(tmp_path):
    """Defect: the limitations said the temperature was fitted on validation when calibrate --allow-test fitted it
    on test images (the record's test_images), and said so of a model without a temperature."""
    metrics = _metrics(24, ["normal", "tumour"], seed=9, threshold=0.4, source="validation")
    fit = {"method": "temperature", "temperature": 0.7, "nll_before": 0.9, "nll_after": 0.6, "ece_before": 0.2}
    fit |= {"ece_after": 0.04, "n": 12, "n_patients": 6, "fitted_on": "run/split_test.csv"}
    fit |= {"train_images": 0, "test_images": 12}
    run = _hand_run(tmp_path / "run", metrics, meta={"temperature": 0.7, "calibration": fit})
    card, md = model_card(run), write_model_card(run)[0].read_text()
    limits = card["intended_use"]["limitations"]
    assert not any("fitted on it" in t or "temperature fitted on" in t for t in limits)
    assert (
        "The temperature (0.7000) was fitted on run/split_test.csv (12 images), 12 of them images of the run's test "
        "split (--allow-test): calibration figures measured on the test part at this temperature are not "
        "independent of it" in " ".join(limits)
    )
    assert "12 of them images of the run's test split" in _section(md, "Intended use and limitations")

    run = _hand_run(tmp_path / "plain", metrics, meta={})
    limits = " ".join(model_card(run)["intended_use"]["limitations"])
    assert "No temperature is saved with the model" in limits and "temperature was fitted" not in limits
    assert "The threshold 0.4000 on the probability of tumour was chosen on the validation part" in limits

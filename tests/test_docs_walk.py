"""A walk of the commands in docs/quickstart.md, docs/study.md and docs/cli.md, each run as written (in-process,
through ``radtransfer.cli.main``) from a working folder other than the one the data lives in.

What is walked, and what is not (``classify``): every command of a fenced ```bash block (backslash continuations
joined, comments stripped, ``a && b`` as two commands) and every inline code span that starts with ``radtransfer``.
Skipped, each by a stated rule: commands that are not ``radtransfer`` (``make ...``, ``git clone``, ``cd``);
syntax summaries (an ``[optional]`` bracket, an ``…`` or a ``|`` alternative); a bare subcommand name in prose
(``radtransfer train``); and the prose fragments of ``FRAGMENTS``, which name another command's parts and are
not commands. ``test_every_doc_command_is_walked_or_skipped_by_a_rule`` holds the whole list, so a new command in
these docs fails it until it is walked here (or its rule is stated).

The placeholders (``PLACEHOLDERS`` says what each becomes) are a small synthetic world that a module fixture
builds: DATA, SITE_B and SITE_B_LOCAL are synthetic brain MRI folders (absolute paths, outside the working
folder; the two sites' patient ids renamed, so they share no patient), RUN a relative folder, VAL_DATA
``RUN/split_val.csv``; the quickstart's relative paths (``brain_tumor_mri/Training``, ``acl/manifest.csv`` with
its ``filename``/``acl_label``/``patient`` columns, ``some_slice.png``) are made relative to its working folder.
The study's calibrate, evaluate and card run from yet another folder (RUN given relative to it), since the run
folder's split CSVs are documented to read from any working directory.

Miniaturised, so the walk costs seconds, not hours (``small_runs``): the real backbones the docs name build as
the test backbone (the ``tiny_for`` fixture; tests/models test the real ones), its weight files stand under the
names the search expects ($RADTRANSFER_WEIGHTS_DIR); and once each command's arguments are parsed and checked as
written, train's and grid's input size becomes 32 px, the epochs 1 (the docs' ``--epochs 30`` and grid's 30),
the batch 8, eager; grid runs its first scenario only (``--max-scenarios 1``; of 24) and, of its ``--folds 5``
(split as written), fold 0's two paired runs (a filter on ``protocol.plan_runs``): 10 runs of even the test
backbone cost about a minute on 2 cores, and the grid's folds have their own tests (tests/grid). Nothing else is
changed.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import pandas as pd
import pytest

from radtransfer.cli import main

DOCS = Path(__file__).resolve().parents[1] / "docs"
WALKED_DOCS = ("quickstart.md", "study.md", "cli.md")

# Prose that names the parts another command uses; not a command (no --out).
FRAGMENTS = {"radtransfer train DATA", "radtransfer grid DATA --folds K"}

# Every runnable command of the three docs, in the order walked (the docs' order; inline spans that repeat a
# fenced command are that command).
WALK = {
    "quickstart.md": [
        "radtransfer train brain_tumor_mri/Training --backbone densenet121 --weights radimagenet --strategy "
        "unfreeze_all --lr 1e-4 --epochs 30 --out runs/brain",
        "radtransfer gradcam runs/brain some_slice.png --out runs/brain/gradcam",
        "radtransfer grid acl/manifest.csv --image-col filename --label-col acl_label --patient-col patient "
        "--folds 5 --out grids/acl_mri",
        "radtransfer report grids/acl_mri",
    ],
    "study.md": [
        "radtransfer audit DATA",
        "radtransfer train DATA --out RUN --strict",
        "radtransfer train DATA --out RUN",
        "radtransfer calibrate RUN VAL_DATA",
        "radtransfer evaluate RUN SITE_B --site B --recalibrate SITE_B_LOCAL",
        "radtransfer card RUN",
    ],
    "cli.md": ["radtransfer weights check FILE --backbone NAME"],
}

PLACEHOLDERS = {
    "DATA": "synthetic brain MRI, 16 patients × 2 slices, 4 classes, 40 px (a folder holding manifest.csv)",
    "RUN": "'run' in the study's working folder; '../study/run' from the folder the later steps run in",
    "VAL_DATA": "RUN/split_val.csv (the run's validation part, absolute image paths)",
    "SITE_B": "synthetic brain MRI, 8 patients (ids B-P0000…), other seed",
    "SITE_B_LOCAL": "synthetic brain MRI, 8 patients (ids L-P0000…), other seed",
    "FILE": "the RadImageNet file the search finds for densenet121 (a Keras 2 .h5 of the test backbone)",
    "NAME": "densenet121",
}


# -- reading the docs -------------------------------------------------------------------------------------------


def _fenced_commands(text: str) -> list[list[str]]:
    """The commands of the ```bash blocks: continuations joined, comments stripped, split at ``&&``."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            tokens = shlex.split(line, comments=True)
            while tokens:
                end = tokens.index("&&") if "&&" in tokens else len(tokens)
                commands.append(tokens[:end])
                tokens = tokens[end + 1 :]
    return commands


def _inline_commands(text: str) -> list[str]:
    """The inline code spans that start with ``radtransfer `` (outside fenced blocks), as written."""
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    return re.findall(r"`(radtransfer [^`]+)`", prose)


def classify(doc: str) -> tuple[list[str], dict]:
    """(the doc's runnable commands, in its order, without repeats; {skipped command: the rule})."""
    text = (DOCS / doc).read_text()
    runnable, skipped = [], {}
    for kind, command in [("fenced", " ".join(c)) for c in _fenced_commands(text)] + [
        ("inline", c) for c in _inline_commands(text)
    ]:
        tokens = command.split()
        if tokens[0] != "radtransfer":
            skipped[command] = "not radtransfer"
        elif any(mark in command for mark in ("[", "…", "|")):
            skipped[command] = "syntax summary"
        elif kind == "inline" and len(tokens) == 2:
            skipped[command] = "a subcommand named in prose"
        elif kind == "inline" and command in FRAGMENTS:
            skipped[command] = "prose fragment"
        elif command not in runnable:
            runnable.append(command)
    return runnable, skipped


def test_every_doc_command_is_walked_or_skipped_by_a_rule():
    walked = {doc: classify(doc)[0] for doc in WALKED_DOCS}
    # the study's inline `radtransfer train DATA --out RUN` (§2) is walked right after the fenced train
    assert {doc: sorted(commands) for doc, commands in walked.items()} == {
        doc: sorted(commands) for doc, commands in WALK.items()
    }
    assert sum(len(c) for c in walked.values()) == 11
    skipped = {command: rule for doc in WALKED_DOCS for command, rule in classify(doc)[1].items()}
    assert sorted(c for c, rule in skipped.items() if rule == "not radtransfer") == [
        "cd radtransfer",
        "git clone <this repository> radtransfer",
        "make demo",
        "make test",
    ]
    assert sorted(c for c, rule in skipped.items() if rule == "prose fragment") == sorted(FRAGMENTS)
    summaries = [c for c, rule in skipped.items() if rule == "syntax summary"]  # 2 in study.md, 15 in the cli.md table
    assert len(summaries) == 17 and all(c.startswith("radtransfer ") for c in summaries)
    placeholders = {t for c in sum(WALK.values(), []) for t in re.split(r"[\s/]", c) if re.fullmatch(r"[A-Z_]{2,}", t)}
    assert placeholders == set(PLACEHOLDERS)


# -- the world and the walk -------------------------------------------------------------------------------------


def _synthetic(folder: Path, patients: int, seed: int, prefix: str = "") -> Path:
    import radtransfer as rt

    manifest = rt.datasets.synthetic_brain_mri(
        folder, n_patients=patients, slices_per_patient=2, image_size=40, seed=seed
    )
    if prefix:  # the generator numbers patients alike for every seed; two sites share none
        frame = pd.read_csv(manifest)
        frame["patient_id"] = prefix + frame["patient_id"]
        frame.to_csv(manifest, index=False)
    return folder


@pytest.fixture(scope="module")
def world(tmp_path_factory, keras2_files):
    """The data sets and weight files the placeholders become (see the module's docstring)."""
    from radtransfer.models.presets import get_preset

    root = tmp_path_factory.mktemp("docs_world")
    weights = root / "weights"
    radimagenet = keras2_files.place("test_tiny", weights, "RadImageNet-TestTiny_notop.h5")
    keras2_files.place("test_tiny", weights, get_preset("test_tiny", "imagenet").files[0], kind="weights")
    return {
        "root": root,
        "weights": weights,
        "FILE": radimagenet,
        "DATA": _synthetic(root / "data", 16, seed=5),
        "ACL": _synthetic(root / "acl_source", 20, seed=8),  # 5 patients per class: one per fold of 5
        "SITE_B": _synthetic(root / "site_b", 8, seed=6, prefix="B-"),
        "SITE_B_LOCAL": _synthetic(root / "site_b_local", 8, seed=7, prefix="L-"),
    }


@pytest.fixture
def small_runs(world, tiny_for, monkeypatch, tmp_path):
    """The real backbones as the test backbone, its weights found, and train's and grid's expensive defaults made
    small once the command as written has been parsed and checked (the module's docstring lists them)."""
    import importlib

    from radtransfer import protocol

    process = importlib.import_module("radtransfer.cli.main")  # the module (the package exports the function)
    tiny_for("resnet50", "densenet121", "inception_v3", "inception_resnet_v2")
    monkeypatch.setenv("RADTRANSFER_WEIGHTS_DIR", str(world["weights"]))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    check = process._check_arguments

    def checked_then_small(args):
        check(args)
        if args.command == "train":
            args.image_size = 32
            args.train_config = args.train_config.replace(epochs=1, batch_size=8, run_eagerly=True)
        if args.command == "grid":
            args.image_size, args.epochs, args.batch_size, args.run_eagerly = 32, 1, 8, True
            args.max_scenarios = 1

    monkeypatch.setattr(process, "_check_arguments", checked_then_small)
    plan = protocol.plan_runs
    monkeypatch.setattr(protocol, "plan_runs", lambda *a, **k: [run for run in plan(*a, **k) if run.fold == 0])


def _run(command: str, values: dict, capsys, expected: int = 0) -> str:
    """``command`` as written, its placeholders replaced (whole tokens, and the first part of a path); its stdout."""
    argv = []
    for token in shlex.split(command)[1:]:
        head, _, rest = token.partition("/")
        argv.append(f"{values[head]}/{rest}" if rest and head in values else str(values.get(token, token)))
    code = main(argv)
    captured = capsys.readouterr()
    assert code == expected, f"{command} → {argv}: exit {code}\n{captured.err[-3000:]}"
    return captured.out


def test_study_walk(world, small_runs, tmp_path, monkeypatch, capsys):
    audit, train_strict, train_again, calibrate, evaluate, card = WALK["study.md"]
    study, elsewhere = tmp_path / "study", tmp_path / "elsewhere"
    study.mkdir(), elsewhere.mkdir()
    here = {"DATA": world["DATA"], "RUN": "run"}

    monkeypatch.chdir(study)
    _run(audit, here, capsys)
    assert not list(study.iterdir())  # the audit writes nothing without --json
    _run(train_strict, here, capsys)
    run = study / "run"
    for name in ("audit.json", "test_metrics.json", "result.json", "best.keras", "split_val.csv", "cli_config.json"):
        assert (run / name).exists(), name
    metrics = json.loads((run / "test_metrics.json").read_text())
    assert {"auc", "brier", "ece", "calibration_bins"} <= metrics.keys()
    result = (run / "result.json").read_bytes()
    _run(train_again, here, capsys)  # §2's command on the finished run: it is returned, not trained again
    assert (run / "result.json").read_bytes() == result

    monkeypatch.chdir(elsewhere)  # the later steps from another folder: RUN relative to it
    there = {**world, "RUN": "../study/run", "VAL_DATA": "../study/run/split_val.csv"}
    fitted = json.loads(_run(calibrate, there, capsys))
    assert fitted["method"] == "temperature" and fitted["n"] == len(pd.read_csv(run / "split_val.csv"))
    external = json.loads(_run(evaluate, there, capsys))
    assert (run / "external-B.json").exists()
    written = json.loads((run / "external-B.json").read_text())
    assert written.keys() <= external.keys() and written["development"] and written["recalibrated"]
    _run(card, there, capsys)
    assert (run / "model_card.json").exists()
    card = (run / "MODEL_CARD.md").read_text()
    assert "on ../study/run/split_val.csv (8 images)" in card  # the temperature, and what it was fitted on
    assert "### Site: B (external-B.json)" in card and "Recalibrated on a local set of the site" in card
    assert not list(elsewhere.iterdir())  # every file went to the run folder


def test_quickstart_walk(world, small_runs, tmp_path, monkeypatch, capsys):
    train, gradcam, grid, report = WALK["quickstart.md"]
    work = tmp_path / "quickstart"
    monkeypatch.chdir(work if work.mkdir() is None else work)
    source = pd.read_csv(world["DATA"] / "manifest.csv")
    for path in source["path"]:  # the Kaggle layout: one folder per class, no patient ids
        target = Path("brain_tumor_mri/Training") / Path(path).relative_to("images")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(world["DATA"] / path, target)
    shutil.copyfile(world["DATA"] / source["path"][0], "some_slice.png")
    acl = pd.read_csv(world["ACL"] / "manifest.csv")
    two = acl[acl["label"].isin(["glioma", "no_tumor"])]  # a two-class task, as the paper's ACL one
    Path("acl/images").mkdir(parents=True)
    for path in two["path"]:
        shutil.copyfile(world["ACL"] / path, Path("acl/images") / Path(path).name)
    pd.DataFrame(
        {
            "filename": ["images/" + Path(p).name for p in two["path"]],  # relative to the manifest's folder
            "acl_label": (two["label"] == "glioma").map({True: "torn", False: "intact"}),
            "patient": two["patient_id"],
        }
    ).to_csv("acl/manifest.csv", index=False)

    _run(train, {}, capsys)
    assert Path("runs/brain/test_metrics.json").exists() and Path("runs/brain/best.keras").exists()
    _run(gradcam, {}, capsys)
    assert list(Path("runs/brain/gradcam").glob("*.png"))
    _run(grid, {}, capsys)
    grid_dir = Path("grids/acl_mri")
    records = [json.loads(p.read_text()) for p in grid_dir.rglob("record.json")]
    assert sorted((r["source"], r["fold"]) for r in records) == [("imagenet", 0), ("radimagenet", 0)]
    assert json.loads((grid_dir / "grid.json").read_text())["folds"] == 5
    assert (grid_dir / "audit.json").exists() and (grid_dir / "grid.json").exists()
    _run(report, {}, capsys)
    assert (grid_dir / "report" / "summary.md").exists()


def test_cli_walk(world, small_runs, tmp_path, monkeypatch, capsys):
    (check,) = WALK["cli.md"]
    monkeypatch.chdir(tmp_path)
    checked = json.loads(_run(check, {"FILE": world["FILE"], "NAME": "densenet121"}, capsys))
    assert checked["matches"] is True and checked["file"] == str(world["FILE"])

"""GridOptions and CurveOptions: each bad value refused in one line; a keyword call and an options call plan the same
grid; the commands build the options the API call builds."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from radtransfer import protocol
from radtransfer.grid.options import CurveOptions, GridOptions


@pytest.mark.parametrize(
    "keywords, message",
    [
        ({"repeats": 0}, "Expected repeats to be an integer ≥ 1. Received: repeats=0"),
        ({"repeats": 1.5}, "Expected repeats to be an integer ≥ 1"),
        ({"folds": -1}, "folds= must be None or an integer"),
        ({"gpus_per_run": 1}, "need executor='ray'"),
        ({"address": "auto", "executor": "sequential"}, "need executor='ray'"),
        ({"executor": "ray", "cpus_per_run": -1}, "cpus_per_run= must be None or a number ≥ 0"),
        ({"executor": "ray", "gpus_per_run": float("nan")}, "gpus_per_run= must be None or a number ≥ 0"),
        ({"executor": "rey"}, 'Did you mean "ray"'),
        ({"shard": "3/2"}, "1 ≤ k ≤ n"),
        ({"shard": "1/2", "shard_count": 2}, "applies only to shard='auto'"),
        ({"sources": "imagenet"}, "sources= must be a list"),
        ({"sources": []}, "at least one weight source"),
        ({"sources": ["imagenet@fathful"]}, "Unknown preprocessing 'fathful'"),
        ({"faithful": "yes"}, "faithful= must be True or False"),
        ({"task": 3}, "task= must be a name or None"),
        ({"on_bad": "ignore"}, "Expected on_bad to be one of"),
        ({"audit": "loud"}, "Expected audit to be one of"),
        ({"verbose": -1}, "verbose= must be an integer"),
        ({"paper_task": "thyroyd"}, 'Did you mean "thyroid"'),
        ({"train_fraction": 0}, "0 < train_fraction ≤ 1"),
        ({"train_fraction": 1.5}, "0 < train_fraction ≤ 1"),
    ],
)
def test_grid_options_refuse_each_bad_value_in_one_line(keywords, message):
    with pytest.raises(ValueError, match=message) as info:
        GridOptions(**keywords)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "keywords, message",
    [
        ({"fractions": [0.5, 0.2]}, "increasing fractions"),
        ({"fractions": [0, 1]}, r"fractions in \(0, 1\]"),
        ({"backbone": "resnt50"}, 'Did you mean "resnet50"'),
        ({"strategy": "unfreeze_some"}, "Expected strategy to be one of"),
        ({"learning_rate": -1e-3}, "learning_rate= must be None or a number > 0"),
        ({"repeats": 0}, "Expected repeats to be an integer ≥ 1"),
    ],
)
def test_curve_options_refuse_each_bad_value_in_one_line(keywords, message):
    with pytest.raises(ValueError, match=message) as info:
        CurveOptions(**keywords)
    assert "\n" not in str(info.value)


def test_an_unknown_keyword_is_refused_naming_it(tmp_path):
    with pytest.raises(TypeError, match=r"run_grid\(\) got an unexpected keyword argument 'fold'.*\"folds\""):
        protocol.run_grid(None, tmp_path, fold=3)
    with pytest.raises(TypeError, match="learning_curve.*'paper_task'"):
        protocol.learning_curve(None, tmp_path, paper_task="acl")  # a curve's grids compare with no paper task
    with pytest.raises(TypeError, match="expects options to be a GridOptions"):
        protocol.run_grid(None, tmp_path, CurveOptions())


def test_options_are_normalised_once():
    options = GridOptions(
        sources=["RadImageNet", None, "imagenet@FAITHFUL", "none"], paper_task="none", repeats=np.int64(2)
    )
    assert options.sources == ("RadImageNet", "random", "imagenet@faithful")
    assert options.paper_task is None and options.repeats == 2 and type(options.repeats) is int
    assert GridOptions.build(options, {"folds": 3}) == GridOptions(
        **{**options.shared(), "folds": 3, "paper_task": None}
    )
    assert CurveOptions(fractions=[0.5, 1]).fractions == (0.5, 1.0)
    # values run_grid took at 420599b keep working: executor=None, verbose as a bool, a float share
    assert GridOptions(executor=None, verbose=False, train_fraction=0.5).executor == "sequential"
    assert GridOptions(executor="ray", gpus_per_run=0).gpus_per_run == 0  # a CPU-only Ray cluster


class _Planned(Exception):
    pass


def _planned(monkeypatch, call):
    """What run_grid planned (plan_runs' arguments and the executor), without running anything."""
    seen = {}

    def plan(sources, scenarios, n_folds, shard=None, repeats=1):
        seen["plan"] = (tuple(sources), tuple(scenarios), n_folds, shard, repeats)
        raise _Planned

    monkeypatch.setattr(protocol, "plan_runs", plan)
    monkeypatch.setattr(protocol, "require_image_set", lambda *args: None)
    with pytest.raises(_Planned):
        call()
    return seen["plan"]


def test_a_keyword_call_and_an_options_call_plan_the_same_grid(tmp_path, monkeypatch):
    keywords = {"sources": ("imagenet", None), "folds": 3, "repeats": 2, "shard": "2/3", "faithful": True}
    scenarios = protocol.radimagenet_scenarios(["resnet50"])[:2]
    by_keywords = _planned(monkeypatch, lambda: protocol.run_grid(None, tmp_path, scenarios=scenarios, **keywords))
    by_options = _planned(
        monkeypatch, lambda: protocol.run_grid(None, tmp_path, GridOptions(**keywords), scenarios=scenarios)
    )
    assert by_keywords == by_options == (("imagenet", "random"), tuple(scenarios), 3, "2/3", 2)
    mixed = _planned(
        monkeypatch, lambda: protocol.run_grid(None, tmp_path, GridOptions(folds=5), scenarios=scenarios, **keywords)
    )
    assert mixed == by_keywords  # keywords over the options' fields


def test_a_keyword_curve_and_an_options_curve_run_the_same_grids(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(protocol, "run_grid", lambda images, out, options, **kw: seen.append((out, options, kw)) or [])
    monkeypatch.setattr(protocol, "grid_splits", lambda *args: [])
    monkeypatch.setattr(protocol, "_train_sizes", lambda parts: {})
    monkeypatch.setattr(protocol, "require_image_set", lambda *args: None)
    monkeypatch.setattr(protocol.grid_curve, "curve_table", lambda out: [])
    monkeypatch.setattr(protocol.grid_curve, "curve_effects", lambda out, seed: None)
    monkeypatch.setattr(protocol.grid_curve, "write_table", lambda table, out, effects: None)
    keywords = {"fractions": (0.5, 1.0), "backbone": "resnet50", "strategy": "freeze_all", "repeats": 2, "verbose": 0}
    protocol.learning_curve(None, tmp_path / "a" / "curve", **keywords)
    protocol.learning_curve(None, tmp_path / "b" / "curve", CurveOptions(**keywords))
    first, second = seen[:2], seen[2:]
    assert [(o, kw) for _, o, kw in first] == [(o, kw) for _, o, kw in second]
    assert [o.train_fraction for _, o, _ in first] == [0.5, 1.0]
    assert all(o.paper_task is None and o.task == "curve" and o.repeats == 2 for _, o, _ in first)
    scenarios = first[0][2]["scenarios"]  # freeze_all, and unfreeze_all for random initialisation
    assert [s.strategy for s in scenarios] == ["freeze_all", "unfreeze_all"]


def _images(root):
    for name in ("a", "b"):
        for k in range(2):
            (root / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((8, 8), 40 * k, np.uint8)).save(root / name / f"{k}.png")
    return root


def test_the_commands_build_the_options_the_api_builds(tmp_path, monkeypatch):
    from radtransfer.cli import main

    seen = []
    monkeypatch.setattr(protocol, "run_grid", lambda images, out, options, **kw: seen.append(options) or [])
    monkeypatch.setattr(protocol, "learning_curve", lambda images, out, options, **kw: seen.append(options) or _Table())
    data = str(_images(tmp_path / "data"))
    argv = [
        "grid",
        data,
        "--out",
        str(tmp_path / "g"),
        "--sources",
        "imagenet",
        "none",
        "--folds",
        "3",
        "--repeats",
        "2",
    ]
    argv += ["--faithful", "--task", "t", "--paper-task", "none", "--strict", "--on-bad", "skip", "--shard", "1/2"]
    assert main(argv) == 0
    assert seen[-1] == GridOptions(
        sources=("imagenet", None),
        folds=3,
        repeats=2,
        faithful=True,
        task="t",
        paper_task=None,
        audit="strict",
        on_bad="skip",
        shard="1/2",
        verbose=1,
    )
    assert main(["grid", data, "--out", str(tmp_path / "g2"), "--preprocessings", "corrected", "faithful"]) == 0
    assert seen[-1] == GridOptions(sources=protocol.with_preprocessings(["radimagenet", "imagenet"]))
    argv = ["curve", data, "--out", str(tmp_path / "c"), "--fractions", "0.5", "1", "--strategy", "freeze_all"]
    assert main(argv + ["--learning-rate", "0.01", "--no-audit", "--executor", "ray", "--gpus-per-run", "0.5"]) == 0
    assert seen[-1] == CurveOptions(
        fractions=(0.5, 1.0),
        strategy="freeze_all",
        learning_rate=0.01,
        audit="off",
        executor="ray",
        gpus_per_run=0.5,
        sources=("radimagenet", "imagenet", "none"),
    )


def _Table():
    """An empty learning-curve table, as the command prints it."""
    import pandas as pd

    columns = ["source", "backbone", "strategy", "fraction", "n_train_images", "n_train_patients", "runs", "auc"]
    return pd.DataFrame(columns=[*columns, "auc_low", "auc_high", "interval"])


def test_the_commands_list_every_field_with_a_flag(capsys):
    import dataclasses

    from radtransfer.cli import build_parser

    parser = build_parser()
    for command, config_class in (("grid", GridOptions), ("curve", CurveOptions)):
        sub = parser.commands[command]
        dests = {action.dest for action in sub._actions}
        flagged = [f.name for f in dataclasses.fields(config_class) if "flag" in f.metadata]
        assert set(flagged) <= dests, command

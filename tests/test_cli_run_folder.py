"""``radtransfer train`` and its run folder: nothing in it changes until the run is accepted (a refused command
leaves a finished run's folder byte-identical), and one process trains into a folder at a time (a second one is
refused, naming the first; the claim of a process that was killed is taken over)."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import sys
import time

import pytest
import warm_python

from radtransfer.card import MODEL_CARD
from radtransfer.cli import main


def _hashes(folder) -> dict:
    """Every file under ``folder`` by its path there, with its content's hash."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def _train(cli_data, cli_run, out, *extra) -> list:
    """The arguments ``cli_run`` was trained with, into ``out``, then ``extra``."""
    defaults = cli_run.parent / "defaults.json"
    argv = ["train", str(cli_data), "--config", str(defaults), "--batch-size", "4", "--out", str(out)]
    return argv + ["--run-eagerly", "--verbose", "0", *extra]


@pytest.mark.parametrize(
    "extra, differs",
    [
        (["--val", "0.3", "--seed", "1"], "data"),  # another split: other images train
        (["--epochs", "3"], "epochs"),
        (["--lr", "0.01"], "learning_rate"),
    ],
    ids=["split", "epochs", "learning_rate"],
)
def test_a_refused_train_leaves_the_finished_run_byte_identical(extra, differs, cli_data, cli_run, tmp_path, capsys):
    """Before: the refusal came after split_*.csv, cli_config.json and audit.json had been rewritten for a split
    that never trained."""
    run = tmp_path / "run"
    shutil.copytree(cli_run, run)
    before = _hashes(run)
    assert {"split_train.csv", "split_val.csv", "cli_config.json", "audit.json", "best.keras"} <= set(before)
    capsys.readouterr()
    assert main(_train(cli_data, cli_run, run, *extra)) == 1
    error = capsys.readouterr().err
    assert "holds a run with other settings" in error and differs in error, error
    assert _hashes(run) == before


def test_an_accepted_rerun_with_restart_rewrites_the_command_s_files(cli_data, cli_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(cli_run, run)
    assert main(_train(cli_data, cli_run, run, "--val", "0.3", "--seed", "1", "--restart")) == 0
    config = json.loads((run / "cli_config.json").read_text())
    assert config["val"] == 0.3 and config["seed"] == 1
    trained = json.loads((run / "config.json").read_text())
    assert trained["identity"]["config"]["seed"] == 1
    split_val = (run / "split_val.csv").read_text().splitlines()[1:]
    split_train = {line.split(",")[0] for line in (run / "split_train.csv").read_text().splitlines()[1:]}
    assert split_val and not split_train & {line.split(",")[0] for line in split_val}
    assert not (run / "lock.json").exists()


def test_a_second_train_into_a_folder_in_use_is_refused_and_a_killed_holder_s_claim_is_taken_over(
    cli_data, cli_run, tmp_path, capsys
):
    """Before: two trainings into one --out both ran to the end, the last writer's files winning."""
    run = tmp_path / "run"
    first = warm_python.Popen([sys.executable, "-m", "radtransfer", *_train(cli_data, cli_run, run, "--epochs", "200")])
    try:
        deadline = time.time() + 240
        while not (run / "history.csv").exists():  # the first has claimed the folder and is training
            assert first.poll() is None, first.stderr.read()[-2000:]
            assert time.time() < deadline, "the first training did not start"
            time.sleep(0.2)
        holder = json.loads((run / "lock.json").read_text())
        assert holder["pid"] == first.pid
        capsys.readouterr()
        assert main(_train(cli_data, cli_run, run, "--epochs", "200")) == 1
        lines = capsys.readouterr().err.strip().splitlines()
        error = [line for line in lines if line.startswith("radtransfer: error: ")]
        assert len(error) == 1 and f"pid {first.pid}" in error[0] and "--out" in error[0], lines  # one line
        assert lines[-2:] == [error[0], "(run with --debug for the traceback)"], lines
        assert first.poll() is None  # the first goes on
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert (run / "lock.json").exists()  # left by the killed process
    assert main(_train(cli_data, cli_run, run, "--restart")) == 0  # its claim is taken over at once
    assert (run / "best.keras").exists() and not (run / "lock.json").exists()
    assert json.loads((run / "state.json").read_text())["status"] == "finished"


def test_a_run_s_split_files_resolve_from_another_working_directory(cli_data, tmp_path, monkeypatch, capsys):
    """Before: docs/cli.md's ``radtransfer calibrate RUN RUN/split_val.csv`` found none of the images, since the
    split files held paths relative to where ``train`` ran and a CSV's paths are read relative to its folder."""
    from radtransfer.training.run_folder import split_paths

    project = tmp_path / "project"
    shutil.copytree(cli_data, project / "data")
    monkeypatch.chdir(project)
    argv = ["train", "data", "--backbone", "test_tiny", "--weights", "none", "--image-size", "32", "--epochs", "1"]
    assert main([*argv, "--batch-size", "4", "--run-eagerly", "--verbose", "0", "--out", "runs/a"]) == 0
    run = project / "runs" / "a"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    for part in ("train", "val", "test"):
        listed = split_paths(run, part)
        assert listed and all(path.is_file() for path in listed), part
    capsys.readouterr()
    assert main(["calibrate", str(run), str(run / "split_val.csv")]) == 0, capsys.readouterr().err
    monkeypatch.chdir(tmp_path)  # a relative run folder, and its test split: those images are recognised
    assert main(["calibrate", "project/runs/a", "project/runs/a/split_test.csv"]) == 1
    assert "are in the run's test split" in capsys.readouterr().err


def test_calibrate_refuses_the_run_s_test_images_unless_allowed_and_the_card_flags_them(cli_run, tmp_path, capsys):
    """Before: a temperature fitted on the test split was saved after a warning, and the card said "fitted on
    split_test.csv" beside a text saying it was fitted on validation."""
    run = tmp_path / "run"
    shutil.copytree(cli_run, run)
    before = _hashes(run)
    capsys.readouterr()
    assert main(["calibrate", str(run), str(run / "split_test.csv")]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    error = [line for line in lines if line.startswith("radtransfer: error: ")]
    assert len(error) == 1 and "in the run's test split" in error[0] and "--allow-test" in error[0], lines
    assert _hashes(run) == before  # nothing saved
    assert main(["calibrate", str(run), str(run / "split_test.csv"), "--allow-test"]) == 0
    warning = [line for line in capsys.readouterr().err.splitlines() if line.startswith("radtransfer: warning:")]
    assert any("in the run's test split" in line and "test's calibration is flattered" in line for line in warning)
    tested = len((run / "split_test.csv").read_text().splitlines()) - 1
    assert main(["card", str(run)]) == 0
    card = (run / MODEL_CARD).read_text()
    assert f"**Fitted on {tested} images of the run's test split** (allowed with --allow-test)" in card

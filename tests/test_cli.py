"""The radtransfer command: every subcommand with tiny inputs, and its error paths."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import warm_python

import radtransfer as rt
from radtransfer.cli import main


@pytest.fixture(scope="module")
def data_dir(cli_data):
    return cli_data


@pytest.fixture(scope="module")
def trained(cli_run):
    return cli_run


def test_train_writes_run_and_resolved_config(trained, capsys):
    for name in (
        "best.keras",
        "best.weights.h5",
        "history.csv",
        "config.json",
        "test_metrics.json",
        "cli_config.json",
        "split_train.csv",
        "split_test.csv",
    ):
        assert (trained / name).exists(), name
    resolved = json.loads((trained / "cli_config.json").read_text())
    assert resolved["batch_size"] == 4 and resolved["epochs"] == 1 and resolved["backbone"] == "test_tiny"
    metrics = json.loads((trained / "test_metrics.json").read_text())
    # The test AUC, recomputed: the saved model's probabilities on the test split's files (read by predict), and
    # scikit-learn's macro one-vs-rest AUC.
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    test = pd.read_csv(trained / "split_test.csv")
    predicted = rt.predict(trained, test["path"].tolist())
    names = predicted.attrs["class_names"]
    labels = [names.index(label) for label in test["label"]]
    probabilities = predicted[[f"p_{name}" for name in names]].to_numpy()
    assert metrics["n"] == len(test) and metrics["auc"] == pytest.approx(
        roc_auc_score(labels, probabilities, multi_class="ovr"), abs=1e-6
    )


def test_train_ends_in_one_line(trained, data_dir, tmp_path, capsys):
    """Before: train ended in a 51-line JSON dump. Now one line: the test AUC with its interval (here none: 4 test
    patients), the accuracy, the best epoch of the epochs run, the run folder."""
    import shutil

    import pandas as pd

    run = tmp_path / "run"
    shutil.copytree(trained, run)  # the finished run: the command returns it and evaluates it again
    defaults = trained.parent / "defaults.json"
    argv = ["train", str(data_dir), "--config", str(defaults), "--batch-size", "4", "--out", str(run)]
    argv += ["--run-eagerly", "--verbose", "0"]
    capsys.readouterr()
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1, lines
    history = pd.read_csv(run / "history.csv")
    best = int(history.loc[history["val_loss"].idxmin(), "epoch"])
    test = pd.read_csv(run / "split_test.csv")
    metrics = json.loads((run / "test_metrics.json").read_text())
    smallest = int(test.groupby("label")["patient_id"].nunique().min())  # the AUC rests on every class
    accuracy = (rt.predict(run, test["path"].tolist())["predicted"] == test["label"]).mean()  # four classes: argmax
    assert smallest < 3  # under the minimum-units rule: the line says so instead of an interval
    expected = (
        f"test AUC {metrics['auc']:.3f}, no interval ({smallest} patient{'s' if smallest > 1 else ''} in the "
        "smallest class: fewer than 3); "
        f"accuracy {accuracy:.3f} on {len(test)} images; "
        f"best epoch {best} of {len(history)}; run folder {run} (test_metrics.json, result.json)"
    )
    assert lines[0] == expected  # --json prints the JSON instead: the test of a PatientID column reads it


def test_evaluate(trained, data_dir, capsys, tmp_path):
    assert main(["evaluate", str(trained), str(data_dir), "--bootstrap", "50", "--out", str(tmp_path / "m.json")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["n"] == 24 and "auc_ci" in printed
    assert json.loads((tmp_path / "m.json").read_text())["n"] == 24


def test_gradcam(trained, data_dir, tmp_path, capsys):
    image = next((data_dir / "images" / "glioma").glob("*.png"))
    assert main(["gradcam", str(trained), str(image), "--out", str(tmp_path / "cams")]) == 0
    written = list((tmp_path / "cams").glob("*.png"))
    assert len(written) == 1 and written[0].stat().st_size > 5000


def test_gradcam_title_gives_the_models_test_performance(trained, data_dir, tmp_path, capsys, monkeypatch):
    """A model at chance was drawn as a confident lesion map, with no word of its test performance."""
    import shutil

    from matplotlib.figure import Figure

    titles = []
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **k: titles.append(fig.axes[1].get_title()))
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    metrics = json.loads((run / "test_metrics.json").read_text())
    metrics.update(auc=0.45, auc_ci=[None, None], n_patients=4)
    (run / "test_metrics.json").write_text(json.dumps(metrics))
    image = next((data_dir / "images" / "glioma").glob("*.png"))
    assert main(["gradcam", str(run), str(image), "--out", str(tmp_path / "cams")]) == 0
    assert "test AUC 0.450 (no interval (4 test patients))" in titles[-1] and "CHANCE" in titles[-1], titles[-1]
    assert "at or below chance" in capsys.readouterr().err
    (run / "test_metrics.json").unlink()
    assert main(["gradcam", str(run / "best.keras"), str(image), "--out", str(tmp_path / "cams")]) == 0
    assert "test performance unknown" in titles[-1]
    assert "performance is unknown" in capsys.readouterr().err


def test_grid_and_report(data_dir, tmp_path, keras2_files, capsys):
    weights = tmp_path / "weights"
    keras2_files.place("test_tiny", weights, "RadImageNet-TestTiny_notop.h5")
    grid = tmp_path / "grid"
    assert (
        main(
            [
                "grid",
                str(data_dir),
                "--out",
                str(grid),
                "--backbones",
                "test_tiny",
                "--max-scenarios",
                "1",
                "--sources",
                "radimagenet",
                "--weights-dir",
                str(weights),
                "--epochs",
                "1",
                "--image-size",
                "32",
                "--batch-size",
                "8",
                "--run-eagerly",
            ]
        )
        == 0
    )
    assert len(list(grid.rglob("record.json"))) == 1
    config = json.loads(next(grid.rglob("config.json")).read_text())  # the run records the batch size that ran
    assert config["batch_size"] == config["identity"]["config"]["batch_size"] == 8
    assert config["identity"]["data"]["train"]["batch_size"] == 8
    assert main(["report", str(grid), "--equivalence-margin", "0.05"]) == 0  # one source: nothing to pair
    out = capsys.readouterr().out
    assert "mean AUC ± SD" in out and "| task |" not in out  # a short summary; the wide tables in files
    for name in ("summary.md", "summary.csv", "summary.tex", "roc_curves.png", "heatmap.png", "auc_by_scenario.pdf"):
        assert (grid / "report" / name).exists(), name


def test_weights_list_and_check(tmp_path, keras2_files, capsys, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    good = keras2_files.place("resnet50", tmp_path / "w", "RadImageNet-ResNet50_notop.h5")
    assert main(["weights", "--weights-dir", str(tmp_path / "w")]) == 0
    listing = capsys.readouterr().out
    assert "ok" in listing and "resnet50" in listing and str(good) in listing
    assert main(["weights", "check", str(good), "--backbone", "resnet50"]) == 0
    assert json.loads(capsys.readouterr().out)["matches"] is True
    assert main(["weights", "check", str(good), "--backbone", "densenet121"]) == 1
    error = capsys.readouterr().err
    assert "looks like ResNet50 (106 weight layers), not DenseNet121 (241)" in error and "Traceback" not in error


def test_datasets_synthetic(tmp_path, capsys):
    assert (
        main(["datasets", "synthetic", str(tmp_path / "syn"), "--patients", "4", "--slices", "1", "--size", "32"]) == 0
    )
    assert (tmp_path / "syn" / "manifest.csv").exists()


def test_demo_quick(tmp_path, capsys, monkeypatch, tiny_for):
    tiny_for("densenet121")  # the demo's DenseNet121 builds as the test backbone: its path is what is tested
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.delenv("RADTRANSFER_WEIGHTS_DIR", raising=False)
    assert main(["demo", "--quick", "--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "FROM RANDOM INITIALISATION" in out
    report = (tmp_path / "demo" / "report.md").read_text()
    assert "## Test metrics" in report and "RANDOM INITIALISATION" in report
    for figure in ("roc_test.png", "training_curves.png"):
        assert (tmp_path / "demo" / "figures" / figure).stat().st_size > 5000
    assert list((tmp_path / "demo" / "figures" / "gradcam").glob("*.png"))


@pytest.mark.parametrize(
    "argv, code, message",
    [
        (["train", "/no/such/data", "--out", "x"], 2, "DATA not found: '/no/such/data'"),
        (["evaluate", "/no/such/run", "/no/such/data"], 2, "No trained model in '/no/such/run'"),
        (["weights", "check"], 2, "usage: radtransfer weights check FILE --backbone NAME"),
        (["bogus"], 2, "invalid choice"),
        (["train"], 2, "required"),
        (["demo", "--config", "/no/such.yaml"], 2, "--config file not found"),
    ],
)
def test_usage_errors(argv, code, message, capsys):
    assert main(argv) == code
    captured = capsys.readouterr()
    assert message in captured.err and "Traceback" not in captured.err


def test_failures_are_one_line_and_debug_shows_the_traceback(data_dir, tmp_path, capsys):
    argv = ["train", str(data_dir), "--backbone", "densnet121", "--out", str(tmp_path / "r")]
    assert main(argv) == 2  # a wrong name is a usage mistake
    error = capsys.readouterr().err
    assert error.splitlines()[0].startswith("radtransfer: error: Unknown backbone 'densnet121'")
    assert 'Did you mean "densenet121"' in error and "Traceback" not in error
    assert main(["--debug", *argv]) == 2  # a wrong name is a usage mistake
    assert "Traceback" in capsys.readouterr().err


def test_unknown_config_key(data_dir, tmp_path, capsys):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"epoch": 3}))
    assert main(["train", str(data_dir), "--config", str(config), "--out", str(tmp_path / "r")]) == 2
    assert 'Did you mean "epochs"' in capsys.readouterr().err


def test_python_dash_m():
    done = subprocess.run([sys.executable, "-m", "radtransfer", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0
    for command in ("train", "evaluate", "grid", "report", "gradcam", "weights", "datasets", "demo"):
        assert command in done.stdout


# The test backbone from random weights, 32 px, one epoch, no graph tracing: the smallest real training run.
TINY_TRAIN = "--backbone test_tiny --weights none --image-size 32 --epochs 1 --run-eagerly --verbose 0".split()


# -- a newcomer's study: a CSV with a PatientID column, a broken file, an empty label ------------


@pytest.fixture
def study(tmp_path):
    """A CSV study with several slices per patient and a PatientID column."""
    import pandas as pd

    images = rt.datasets.load_synthetic_brain_mri(
        tmp_path / "brain", n_patients=16, slices_per_patient=3, image_size=40, seed=7
    )
    frame = pd.DataFrame(
        {"path": images.paths, "label": [images.class_names[i] for i in images.labels], "PatientID": images.patient_ids}
    )
    frame.to_csv(tmp_path / "study.csv", index=False)
    return tmp_path / "study.csv", frame


def test_train_splits_by_the_patient_column_and_checks_every_part_before_training(study, tmp_path, capsys):
    """Before: the PatientID column was ignored (slices of one patient in train and test), and a broken test file
    was found only after training, with no --on-bad to go on."""
    import pandas as pd

    csv, frame = study
    _, _, test = rt.data.from_csv(csv, image_col="path").split(val=0.10, test=0.15, seed=726)
    broken = test.paths[0]
    with open(broken, "wb") as handle:
        handle.write(b"not an image")
    out = tmp_path / "run"
    argv = ["train", str(csv), *TINY_TRAIN, "--batch-size", "8", "--out", str(out)]
    assert main(argv) == 1
    error = capsys.readouterr().err
    assert "of the test part cannot be read" in error and broken in error and "--on-bad skip" in error
    assert not (out / "history.csv").exists()  # refused before anything was trained

    assert main([*argv, "--on-bad", "skip", "--json"]) == 0
    captured = capsys.readouterr()
    assert "images of 16 patients; parts are split by patient" in captured.err
    skipped = pd.read_csv(out / "skipped_files.csv")
    assert skipped[["part", "path"]].values.tolist() == [["test", broken]]
    parts = {name: set(pd.read_csv(out / f"split_{name}.csv")["patient_id"]) for name in ("train", "val", "test")}
    assert not (parts["train"] & parts["test"]) and not (parts["train"] & parts["val"]) and parts["test"]
    assert broken not in set(pd.read_csv(out / "split_test.csv")["path"])
    first = json.loads(captured.out)

    assert main([*argv, "--on-bad", "skip", "--json"]) == 0  # the same call again: the same run, not retrained
    again = json.loads(capsys.readouterr().out)
    assert again["best_epoch"] == first["best_epoch"] and again["best_val_loss"] == first["best_val_loss"]
    assert again["epochs_run"] == 1 and again["test"]["n"] == len(pd.read_csv(out / "split_test.csv"))


def test_an_empty_label_cell_is_refused_on_the_command_line(study, tmp_path, capsys):
    csv, frame = study
    frame.loc[4, "label"] = None
    frame.to_csv(csv, index=False)
    argv = ["train", str(csv), *TINY_TRAIN, "--out", str(tmp_path / "run")]
    assert main(argv) == 1  # before: a three-class model trained, one class called "nan"
    error = capsys.readouterr().err
    assert "1 row(s) of" in error and "have no label (column 'label'), line 6" in error
    assert "--missing-labels drop" in error
    assert main(["evaluate", str(tmp_path / "nowhere"), str(csv)]) == 2  # no model: refused before the data


def test_predict_keeps_a_row_for_each_unreadable_file(trained, data_dir, tmp_path, capsys):
    import pandas as pd

    good = sorted((data_dir / "images" / "glioma").glob("*.png"))[:2]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    out = tmp_path / "predictions.csv"
    assert (
        main(["predict", str(trained), str(good[0]), str(broken), str(good[1]), "--on-bad", "skip", "--out", str(out)])
        == 0
    )
    frame = pd.read_csv(out, keep_default_na=False)
    assert frame["path"].tolist() == [str(good[0]), str(broken), str(good[1])]
    assert frame["error"].tolist()[0] == frame["error"].tolist()[2] == "" and frame["error"].tolist()[1]
    assert frame["predicted"].tolist()[1] == "" and frame["predicted"].tolist()[0] != ""


def test_predict_reads_a_ge_series_with_a_0_0_window_and_files_without_an_extension(trained, tmp_path, capsys):
    """Issue 28, defect 4: GE writes Window Center/Width 0/0 (no window; the standard needs a width ≥ 1), and
    exports often name slices without an extension; predict refused the whole series ("pixels do not decode")."""
    import pandas as pd

    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    series = tmp_path / "series"
    series.mkdir()
    names = ["IM1.dcm", "IM2", "IM3.dcm", "IM4"]  # in InstanceNumber order by name too
    for k, name in enumerate(names):
        ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
        ds.PatientID, ds.InstanceNumber, ds.Manufacturer = "GE-7", k + 1, "GE MEDICAL SYSTEMS"
        ds.WindowCenter, ds.WindowWidth = 0, 0
        ds.PixelData = (ds.pixel_array + 10 * k).astype(ds.pixel_array.dtype).tobytes()
        ds.save_as(series / name, enforce_file_format=True)
    out = tmp_path / "predictions.csv"
    assert main(["predict", str(trained), str(series), "--out", str(out)]) == 0
    frame = pd.read_csv(out, keep_default_na=False, dtype={"patient_id": str})
    assert frame["path"].tolist() == [str(series / name) for name in names]
    assert frame["patient_id"].tolist() == ["GE-7"] * 4 and "error" not in frame.columns
    assert frame.filter(like="p_").notna().all().all()


# -- the first hour: a command that answers at once, never goes silent, and speaks in flags -------------------


def _radtransfer(*argv, env=None, timeout=300):
    """The command as a user types it, in a fresh process."""
    import os

    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "radtransfer", *argv], capture_output=True, text=True, timeout=timeout, env=environment
    )


def test_help_and_typos_are_answered_without_starting_tensorflow(tmp_path):
    probe = (
        "import sys\nfrom radtransfer.cli import main\n"
        "codes = [main(['train', '--help']), main(['train', sys.argv[1], '--backbone', 'densnet121', '--out', 'x']),"
        " main(['train', sys.argv[1], '--strategy', 'unfreez_all', '--out', 'x']),"
        " main(['grid', sys.argv[1], '--sources', 'radimgenet', '--out', 'x'])]\n"
        "print('CODES', codes, 'tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", probe, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip().splitlines()[-1] == "CODES [0, 2, 2, 2] False False", done.stderr[-2000:]
    shown = " ".join(done.stdout.split())  # the help as read, whatever its line breaks
    assert "{auto,float32,mixed_float16,mixed_bfloat16}" in shown and "(default: 30)" in shown
    assert "resnet50, densenet121, inception_v3, inception_resnet_v2" in shown
    assert 'Did you mean "densenet121"' in done.stderr and "Received: --backbone densnet121" in done.stderr
    assert 'Did you mean "unfreeze_all"' in done.stderr and 'Did you mean "radimagenet"' in done.stderr
    assert "Traceback" not in done.stderr
    grid_help = " ".join(_radtransfer("grid", "--help").stdout.split())
    assert "--max-scenarios" in grid_help and "(default: 256)" in grid_help  # the paper's batch


def test_tensorflow_start_up_lines_are_hidden_and_long_loops_draw_a_bar(trained, data_dir, tmp_path):
    folder = data_dir / "images"  # 24 images: 6 batches of 4, enough for a bar
    quiet = _radtransfer("predict", str(trained), str(folder), "--batch-size", "4", "--out", str(tmp_path / "p.csv"))
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert "I0000" not in quiet.stderr and "absl::InitializeLog" not in quiet.stderr, quiet.stderr
    assert "radtransfer: starting TensorFlow" in quiet.stderr
    assert "predicting: 100%" in quiet.stderr and "batch/s" in quiet.stderr, quiet.stderr  # a bar: rate and ETA


def test_debug_shows_tensorflow_start_up_lines(trained, data_dir, tmp_path):
    image = str(next((data_dir / "images" / "glioma").glob("*.png")))
    loud = _radtransfer("--debug", "predict", str(trained), image, "--out", str(tmp_path / "p.csv"))
    assert loud.returncode == 0 and ("I0000" in loud.stderr or "absl" in loud.stderr)


def test_warnings_are_one_line_in_flags_and_config_keys_take_the_flags_spellings(data_dir, tmp_path, capsys):
    config = tmp_path / "c.json"
    config.write_text(
        json.dumps(
            {
                "learning-rate": 0.01,
                "image-size": 32,
                "weights": "none",
                "backbone": "test_tiny",
                "epochs": 1,
                "run-eagerly": True,
                "verbose": 0,
                "patient-col": "none",
                "on-bad": "skip",
            }
        )
    )
    header, *rows = (data_dir / "manifest.csv").read_text().splitlines()
    rows = [f"{data_dir / row.split(',')[0]},{row.split(',', 1)[1]}" for row in rows]
    (tmp_path / "broken.png").write_bytes(b"not a png")
    rows.append(f"{tmp_path / 'broken.png'},{rows[0].split(',', 1)[1]}")
    (tmp_path / "study.csv").write_text("\n".join([header, *rows]) + "\n")
    out = tmp_path / "run"
    assert main(["train", str(tmp_path / "study.csv"), "--config", str(config), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "--patient-col none: parts are split by image" in err
    warnings_ = [line for line in err.splitlines() if line.startswith("radtransfer: warning:")]
    assert any("skipped 1 unreadable file(s) (--on-bad skip)" in line for line in warnings_), err
    assert all(".py:" not in line and "on_bad" not in line for line in warnings_), err
    assert json.loads((out / "config.json").read_text())["learning_rate"] == 0.01
    config.write_text(json.dumps({"learning_rte": 0.01}))
    assert main(["train", str(data_dir), "--config", str(config), "--out", str(out)]) == 2
    assert 'Did you mean "learning_rate"' in capsys.readouterr().err


def test_intervals_say_how_and_on_how_many_patients_and_train_and_evaluate_agree(trained, data_dir, capsys):
    printed = json.loads((trained / "test_metrics.json").read_text())
    assert main(["evaluate", str(trained), str(data_dir / "manifest.csv"), "--bootstrap", "50"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert "bootstrap over" in evaluated["auc_ci_is"] and "seed 726" in evaluated["auc_ci_is"]
    assert f"over {evaluated['n_patients']} patients" in evaluated["auc_ci_is"]
    assert printed["auc_ci_seed"] == 726  # train and evaluate resample with the same seed


def test_gradcam_outputs_are_keyed_by_their_relative_paths(trained, data_dir, tmp_path, capsys):
    import shutil

    image = next((data_dir / "images" / "glioma").glob("*.png"))
    for folder in ("site_a", "site_b"):
        (tmp_path / "in" / folder).mkdir(parents=True)
        shutil.copy(image, tmp_path / "in" / folder / "same.png")
    assert (
        main(
            [
                "gradcam",
                str(trained),
                str(tmp_path / "in" / "site_a"),
                str(tmp_path / "in" / "site_b"),
                "--out",
                str(tmp_path / "cams"),
            ]
        )
        == 0
    )
    assert sorted(p.name for p in (tmp_path / "cams").glob("*.png")) == ["site_a__same.png", "site_b__same.png"]


def test_an_example_without_weights_ends_in_one_line(tmp_path):
    example = Path(__file__).resolve().parents[1] / "examples" / "radimagenet_grid.py"
    done = warm_python.run(
        [sys.executable, str(example), "--quick", "--out", str(tmp_path / "g")],
        timeout=300,
        cwd=tmp_path,
        env={**__import__("os").environ, "KERAS_HOME": str(tmp_path / "k"), "RADTRANSFER_WEIGHTS_DIR": ""},
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "radimagenet_grid.py: error: The grid needs weight files that were not found" in done.stderr


def test_the_sdist_carries_the_license_the_tests_and_the_docs(tmp_path):
    import tarfile

    root = Path(__file__).resolve().parents[1]
    build = "import setuptools.build_meta as b, sys; print(b.build_sdist(sys.argv[1]))"
    done = subprocess.run(
        [sys.executable, "-c", build, str(tmp_path)], capture_output=True, text=True, cwd=root, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    with tarfile.open(tmp_path / done.stdout.strip().splitlines()[-1]) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    for needed in (
        "LICENSE",
        "tests/conftest.py",
        "tests/models/test_backbone_contract.py",
        "docs/architecture.md",
        "examples/_common.py",
        "weights/README.md",
        "radtransfer/version.py",
    ):
        assert needed in names, needed


# -- the data audit ----------------------------------------------------------------------------------------------


@pytest.fixture
def leaky_split(data_dir, tmp_path):
    """A folder split already (train/, val/ and test/), with one training image re-saved (other bytes, same 16-bit
    pixels) into the test part."""
    from PIL import Image

    root = tmp_path / "split"
    images = sorted((data_dir / "images").rglob("*.png"))
    patients = sorted({p.name.split("_")[0] for p in images})
    for path in images:
        index = patients.index(path.name.split("_")[0])  # one patient of each class in test, one in val
        part = "test" if index < 4 else "val" if index < 8 else "train"
        target = root / part / path.parent.name / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    source = next(p for p in sorted((root / "train").rglob("*.png")))
    copy = root / "test" / source.parent.name / "copied.png"
    Image.open(source).save(copy, compress_level=1)
    assert copy.read_bytes() != source.read_bytes()
    return root, source, copy


def test_audit_command_finds_a_copy_across_parts_and_exits_1(leaky_split, tmp_path, capsys):
    root, source, copy = leaky_split
    code = main(["audit", str(root), "--json", str(tmp_path / "audit.json")])
    out = capsys.readouterr().out
    assert code == 1
    assert "1 error(s) (1 duplicate)" in out and "copied.png" in out
    findings = json.loads((tmp_path / "audit.json").read_text())
    assert [(f["kind"], f["severity"], f["parts"]) for f in findings] == [("duplicate", "error", ["test", "train"])]
    assert sorted(findings[0]["paths"]) == sorted([str(source), str(copy)])


def test_audit_command_on_a_clean_set_and_on_folds(data_dir, tmp_path, capsys):
    assert main(["audit", str(data_dir), "--json", str(tmp_path / "a.json")]) == 0
    out = capsys.readouterr().out
    assert "0 error(s), 0 warning(s) in 24 images" in out
    assert json.loads((tmp_path / "a.json").read_text()) == []
    assert main(["audit", str(data_dir), "--folds", "3"]) == 0
    out = capsys.readouterr().out
    assert "fold3:test" in out and "0 error(s)" in out


def test_train_audits_its_parts_and_strict_refuses_errors(leaky_split, tmp_path, capsys):
    root, _, copy = leaky_split
    argv = ["train", str(root), "--backbone", "test_tiny", "--weights", "none", "--image-size", "32"]
    argv += ["--epochs", "1", "--batch-size", "8", "--verbose", "0", "--strict", "--out", str(tmp_path / "run")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "data audit: 1 error(s) (1 duplicate)" in err
    assert err.strip().splitlines()[-2].startswith("radtransfer: error: The data audit found 1 error(s)")
    assert "train without --strict" in err and "audit=" not in err
    assert "starting TensorFlow" not in err  # refused before TensorFlow starts
    assert f"`radtransfer audit {root}` lists them all" in err
    assert str(copy) in err  # the finding's line
    assert not (tmp_path / "run").exists()  # a refused run writes nothing


def test_train_writes_its_audit_into_the_run_folder(trained):
    assert json.loads((trained / "audit.json").read_text()) == []


def test_the_data_log_writes_to_stderr_as_it_is_now(monkeypatch, capsys):
    """The handler the first command installs must not keep that command's stderr: a test's captured stream (or a
    redirected one) may be closed by the time a later command logs ("--- Logging error ---" in its output)."""
    import io
    import logging

    from radtransfer.cli import _show_data_log

    logger = logging.getLogger("radtransfer.data")
    monkeypatch.setattr(logger, "handlers", [])  # the logger's own handlers come back after the test
    first, current = io.StringIO(), sys.stderr
    sys.stderr = first  # the first command's stderr ...
    try:
        _show_data_log()
    finally:
        sys.stderr = current
    first.close()  # ... is closed before a later command logs
    _show_data_log()  # that command adds no second handler
    logger.info("cached in memory")
    err = capsys.readouterr().err
    assert err.count("radtransfer: cached in memory") == 1 and "Logging error" not in err


def test_predict_says_what_it_is_doing(trained, data_dir, tmp_path, capsys):
    """Before: 64 s of silence on 4 images (the model loading, the images read, the first batch's graph)."""
    images = sorted((data_dir / "images").rglob("*.png"))[:5]
    argv = ["predict", str(trained), *map(str, images), "--batch-size", "2", "--out", str(tmp_path / "p.csv")]
    assert main(argv) == 0
    said = [line for line in capsys.readouterr().err.splitlines() if line.startswith("radtransfer: ")]
    assert said[-3:] == [
        f"radtransfer: loading the model from {trained}",
        "radtransfer: reading and checking 5 image(s)",
        "radtransfer: predicting 5 image(s) in 3 batch(es) of up to 2 (the first builds the model's graph)",
    ]

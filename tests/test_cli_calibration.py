"""radtransfer calibrate, and radtransfer evaluate --site [--recalibrate]: in-process, on the session's tiny run."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from radtransfer.cli import main


@pytest.fixture(scope="module")
def sites(cli_data, tmp_path_factory):
    """CSV manifests of cli_data (absolute paths): an external site's test set (patients P0000-P0007, every class),
    a local set of other patients (P0008-P0011, one per class), and a two-class set (the model has four)."""
    root = tmp_path_factory.mktemp("sites")
    frame = pd.read_csv(cli_data / "manifest.csv")
    frame["path"] = [str(cli_data / p) for p in frame["path"]]
    number = frame["patient_id"].str[1:].astype(int)
    written = {}
    for name, rows in (
        ("external", number < 8),
        ("local", number >= 8),
        ("two_class", frame["label"].isin(["glioma", "no_tumor"])),
    ):
        written[name] = root / f"{name}.csv"
        frame[rows].to_csv(written[name], index=False)
    return written


def test_calibrate_then_validate_at_an_external_site_with_recalibration(cli_run, cli_data, sites, tmp_path, capsys):
    from radtransfer.models.trained import read_trained_info

    run = tmp_path / "run"
    shutil.copytree(cli_run, run)  # the session's run is shared: calibrate rewrites best.keras
    assert main(["calibrate", str(run), str(cli_data)]) == 1  # the folder holds the run's test images too
    assert "--allow-test" in capsys.readouterr().err
    assert main(["calibrate", str(run), str(cli_data), "--allow-test"]) == 0
    captured = capsys.readouterr()
    fitted = json.loads(captured.out)
    assert fitted["method"] == "temperature" and fitted["nll_after"] <= fitted["nll_before"]
    assert fitted["n"] == 24 and fitted["n_patients"] == 12 and fitted["fitted_on"] == str(cli_data)
    assert "NLL" in captured.err and "→" in captured.err
    assert "in the run's train split" in captured.err  # the whole folder holds training images: said
    assert "in the run's test split" in captured.err and fitted["test_images"] + fitted["train_images"] < 24
    saved = read_trained_info(run / "best.keras")
    assert saved["temperature"] == fitted["temperature"] and saved["calibration"]["n"] == 24
    assert saved["class_names"] == read_trained_info(cli_run / "best.keras")["class_names"]

    # predict applies the temperature to a four-class model (no threshold) and changes no decision
    import numpy as np

    from radtransfer.stats.temperature import apply_temperature

    for name, folder in (("before", cli_run), ("after", run)):
        assert main(["predict", str(folder), str(cli_data / "images"), "--out", str(tmp_path / f"{name}.csv")]) == 0
    capsys.readouterr()
    before, after = (pd.read_csv(tmp_path / f"{name}.csv") for name in ("before", "after"))
    columns = [c for c in before.columns if c.startswith("p_")]
    expected = apply_temperature(before[columns].to_numpy(), fitted["temperature"])
    np.testing.assert_allclose(after[columns].to_numpy(), expected, atol=1e-6)
    assert list(after["predicted"]) == list(before["predicted"])

    argv = ["evaluate", str(run), str(sites["external"]), "--site", "B", "--recalibrate", str(sites["local"])]
    assert main(argv + ["--bootstrap", "30"]) == 0
    captured = capsys.readouterr()
    printed = json.loads(captured.out)
    assert printed["site"] == "B" and printed["development"]["n"] == 16 and printed["development"]["n_patients"] == 8
    assert printed["development"]["temperature"] == pytest.approx(fitted["temperature"])  # loaded with the model
    assert printed["recalibration"]["n_patients"] == 4
    assert printed["recalibrated"]["temperature"] == pytest.approx(printed["recalibration"]["temperature"])
    assert printed["recalibrated"]["accuracy"] == printed["development"]["accuracy"]  # a temperature keeps argmax
    assert "development" in captured.err and "recalibrated on local" in captured.err and "ECE" in captured.err
    written = json.loads((run / "external-B.json").read_text())
    assert set(written) == {"site", "development", "recalibrated", "recalibration"}
    assert len(written["recalibrated"]["calibration_bins"]) == 15
    assert (run / "external-B-reliability.png").stat().st_size > 5000
    assert sorted(printed["written"]) == sorted(
        str(run / name) for name in ("external-B.json", "external-B-reliability.png", "external-B-reliability.pdf")
    )


@pytest.mark.parametrize(
    "tail, message",
    [
        (["--recalibrate", "LOCAL"], "--recalibrate needs --site"),
        (["--site", "../B"], "Expected --site to be a short name"),
        (["--site", "B", "--recalibrate", "/no/such.csv"], "--recalibrate LOCAL_DATA not found: '/no/such.csv'"),
        (["--site", "B", "--recalibrate", "TWO"], "--recalibrate LOCAL_DATA: The model was trained on classes"),
    ],
)
def test_evaluate_site_mistakes_are_one_line_usage_errors(cli_run, cli_data, sites, capsys, tail, message):
    tail = [{"LOCAL": str(sites["local"]), "TWO": str(sites["two_class"])}.get(t, t) for t in tail]
    assert main(["evaluate", str(cli_run), str(cli_data), *tail]) == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error


def test_calibrate_refuses_data_of_other_classes_and_missing_paths(cli_run, sites, capsys):
    assert main(["calibrate", str(cli_run), str(sites["two_class"])]) == 2
    error = capsys.readouterr().err
    assert "DATA: The model was trained on classes" in error and "Classes only the model knows" in error
    assert main(["calibrate", str(cli_run), "/no/such/data"]) == 2
    assert "DATA not found: '/no/such/data'" in capsys.readouterr().err
    assert main(["calibrate", "/no/such/run", str(sites["local"])]) == 2
    assert "No trained model in '/no/such/run'" in capsys.readouterr().err

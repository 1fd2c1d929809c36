"""Messages that send a user the wrong way (issue 30, item 10): each on the user's path, the command in-process (or
the API where the message comes from the API), with tiny data and no training."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from radtransfer.cli import main


def _pngs(folder, names, size=16, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8)).save(folder / name)


def _error(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("radtransfer: error:")]
    assert len(lines) == 1, lines
    return lines[0]


# -- 1. "Did you mean" names only columns whose values are files here ---------------------------------------------


def test_a_missing_image_column_suggests_the_column_of_files_not_the_closest_name(tmp_path, capsys):
    names = [f"{i}.png" for i in range(4)]
    _pngs(tmp_path / "scans", names)
    frame = pd.DataFrame(
        {
            "source_path": [f"/archive/of/another/machine/{n}" for n in names],  # closest to "path", not files here
            "file": [f"scans/{n}" for n in names],  # relative to the CSV's folder, as the reader resolves them
            "label": ["a", "b", "a", "b"],
        }
    )
    frame.to_csv(tmp_path / "data.csv", index=False)
    assert main(["audit", str(tmp_path / "data.csv")]) == 1
    error = _error(capsys)
    assert 'source_path"?' not in error and 'Did you mean "source_path"' not in error
    assert "--image-col file" in error


def test_a_missing_image_column_with_no_column_of_files_says_so_and_what_to_pass(tmp_path, capsys):
    frame = pd.DataFrame({"source_path": ["/elsewhere/1.png", "/elsewhere/2.png"], "label": ["a", "b"]})
    frame.to_csv(tmp_path / "data.csv", index=False)
    assert main(["audit", str(tmp_path / "data.csv")]) == 1
    error = _error(capsys)
    assert 'source_path"?' not in error
    assert "None of its columns holds paths of files here" in error and str(tmp_path) in error
    assert "--image-col" in error


# -- 2. an audit of files that cannot be read is a failed gate ----------------------------------------------------


def test_an_audit_whose_every_file_is_missing_exits_1_with_errors(tmp_path, capsys):
    frame = pd.DataFrame({"path": [f"gone/{i}.png" for i in range(4)], "label": ["a", "b", "a", "b"]})
    frame.to_csv(tmp_path / "data.csv", index=False)
    report = tmp_path / "audit.json"
    assert main(["audit", str(tmp_path / "data.csv"), "--json", str(report)]) == 1
    findings = json.loads(report.read_text())
    assert len(findings) == 4 and {f["kind"] for f in findings} == {"unreadable"}
    assert {f["severity"] for f in findings} == {"error"}
    assert "4 error(s) (4 unreadable)" in capsys.readouterr().out


def test_an_audit_keeps_warnings_for_what_does_not_make_figures_wrong(tmp_path, capsys):
    _pngs(tmp_path / "a", ["1.png", "2.png"], seed=1)
    _pngs(tmp_path / "b", ["1.png", "2.png"], seed=2)
    Image.fromarray(np.full((16, 16), 7, np.uint8)).save(tmp_path / "b" / "flat.png")  # an empty image: a warning
    assert main(["audit", str(tmp_path)]) == 0
    assert "0 error(s), 1 warning(s) (1 empty_image)" in capsys.readouterr().out


# -- 3. evaluate points to data that works ------------------------------------------------------------------------


def _manifest(cli_data, keep) -> pd.DataFrame:
    frame = pd.read_csv(cli_data / "manifest.csv", dtype=str)
    frame = frame[frame["label"].isin(keep)].copy()
    frame["path"] = [str(cli_data / p) for p in frame["path"]]
    return frame[["path", "label", "patient_id"]]


def test_evaluate_refuses_data_lacking_a_class_pointing_at_data_that_works(cli_run, cli_data, tmp_path, capsys):
    data = tmp_path / "three.csv"
    _manifest(cli_data, ["glioma", "meningioma", "no_tumor"]).to_csv(data, index=False)
    assert main(["evaluate", str(cli_run), str(data)]) == 2
    error = _error(capsys)
    assert "['pituitary']" in error and "Evaluate on data with the training classes" not in error
    split = cli_run / "split_test.csv"
    assert str(split) in error
    assert main(["evaluate", str(cli_run), str(split), "--bootstrap", "0"]) == 0  # the data it points at work
    capsys.readouterr()


def test_evaluate_refuses_an_unknown_class_pointing_at_data_that_works(cli_run, cli_data, tmp_path, capsys):
    frame = _manifest(cli_data, ["glioma", "meningioma", "no_tumor", "pituitary"])
    frame.loc[frame.index[:2], "label"] = "metastasis"
    data = tmp_path / "five.csv"
    frame.to_csv(data, index=False)
    assert main(["evaluate", str(cli_run), str(data)]) == 2
    error = _error(capsys)
    assert "'metastasis'" in error and "Evaluate on data with the training classes" not in error
    assert str(cli_run / "split_test.csv") in error


# -- 4. TIFF is read, what is not read is counted -----------------------------------------------------------------


def _sixteen_bit(seed=0, size=24):
    rng = np.random.default_rng(seed)
    return rng.integers(1000, 40000, (size, size)).astype(np.uint16)


def test_a_16_bit_grey_tiff_reads_as_the_same_16_bit_png_in_both_paths(tmp_path):
    from radtransfer.data.decode import ReadSettings
    from radtransfer.data.py_dataset.numpy_read import read_image_uint8

    values = _sixteen_bit()
    Image.fromarray(values).save(tmp_path / "a.tif")
    Image.fromarray(values).save(tmp_path / "a.png")
    assert Image.open(tmp_path / "a.tif").mode.startswith("I;16")
    for mode in ("range", "full"):
        settings = ReadSettings(image_size=(24, 24), sixteen_bit=mode)
        tiff = read_image_uint8(tmp_path / "a.tif", settings)
        png = read_image_uint8(tmp_path / "a.png", settings)
        low, high = (values.min(), values.max()) if mode == "range" else (0, 65535 / 255 * 255)
        scale = 255.0 / (high - low) if mode == "range" else 1 / 257.0
        expected = np.round(np.clip((values.astype(np.float64) - low) * scale, 0, 255)).astype(np.uint8)
        np.testing.assert_array_equal(tiff, png)
        assert np.abs(tiff[..., 0].astype(int) - expected).max() <= 1  # float32 rounding at a half
        assert np.array_equal(tiff[..., 0], tiff[..., 2])


def test_a_folder_of_tiffs_trains_through_tf_data_as_its_pngs(tmp_path):
    import radtransfer as rt
    from radtransfer.data import from_directory

    for kind in ("tif", "png"):
        for c, name in enumerate(("a", "b")):
            folder = tmp_path / kind / name
            folder.mkdir(parents=True)
            for i in range(2):
                Image.fromarray(_sixteen_bit(seed=10 * c + i)).save(folder / f"{i}.{kind}")
    tiffs, pngs = from_directory(tmp_path / "tif"), from_directory(tmp_path / "png")
    assert len(tiffs) == 4 and [p.rsplit(".", 1)[1] for p in tiffs.paths] == ["tif"] * 4
    batches = [
        next(iter(rt.data.make_dataset(s, image_size=24, batch_size=4, shuffle=False, cache=False)))[0]
        for s in (tiffs, pngs)
    ]
    np.testing.assert_array_equal(np.asarray(batches[0]), np.asarray(batches[1]))


def test_files_a_folder_does_not_read_are_counted_in_one_line(tmp_path):
    _pngs(tmp_path / "a", ["1.png", "2.png"])
    _pngs(tmp_path / "b", ["1.png"])
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "b" / "cine.gif")
    (tmp_path / "b" / "notes.txt").write_text("read me")
    (tmp_path / "a" / ".hidden.png").write_bytes(b"")
    from radtransfer.data import from_directory

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        images = from_directory(tmp_path)
    assert len(images) == 3
    lines = [str(w.message) for w in caught if "not read" in str(w.message)]
    assert len(lines) == 1 and "\n" not in lines[0]
    assert "2 files" in lines[0] and "1 .gif" in lines[0] and "1 .txt" in lines[0]
    with pytest.raises(Exception, match=r"no images .*found 2 files \(1 \.gif, 1 \.txt\)\)\. GIFs"):
        (tmp_path / "b" / "1.png").unlink()
        from_directory(tmp_path)
    from radtransfer.data.sources import collect_images

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert len(collect_images(tmp_path)[0]) == 2  # predict's folder search says the same
    assert [str(w.message) for w in caught if "not read" in str(w.message)][0].startswith("2 files")


def _rgb16_tiff(path, height=4, width=5):
    """A baseline TIFF of 16-bit RGB samples (TIFF 6.0, section 8), written by hand: Pillow cannot write one."""
    import struct

    data = np.arange(height * width * 3, dtype="<u2").tobytes()
    # (tag, type, value): 3 is SHORT, 4 is LONG; BitsPerSample (258) holds three values, stored after the IFD.
    tags = [(256, 3, width), (257, 3, height), (258, 3, None), (259, 3, 1), (262, 3, 2), (273, 4, 8)]
    tags += [(277, 3, 3), (278, 3, height), (279, 4, len(data))]
    ifd = 8 + len(data)
    bits = ifd + 2 + 12 * len(tags) + 4
    out = b"II*\x00" + struct.pack("<I", ifd) + data + struct.pack("<H", len(tags))
    for tag, kind, value in tags:
        if tag == 258:
            out += struct.pack("<HHII", tag, kind, 3, bits)
        else:
            out += struct.pack("<HHI", tag, kind, 1) + (
                struct.pack("<I", value) if kind == 4 else struct.pack("<HH", value, 0)
            )
    path.write_bytes(out + struct.pack("<I", 0) + struct.pack("<HHH", 16, 16, 16))


def test_tiffs_of_other_kinds_read_as_stated(tmp_path):
    from radtransfer.data.decode import ReadSettings, check_file
    from radtransfer.data.py_dataset.numpy_read import read_image_uint8
    from radtransfer.errors import ImageReadError

    values = _sixteen_bit()
    settings = ReadSettings(image_size=(24, 24))
    Image.fromarray(values).save(tmp_path / "16.png")
    Image.fromarray((values // 257).astype(np.uint8)).save(tmp_path / "8.png")
    Image.frombytes("I;16B", (24, 24), values.astype(">u2").tobytes()).save(tmp_path / "big_endian.tif")
    Image.fromarray(values.astype(np.float32)).save(tmp_path / "float.tif")
    Image.fromarray(values).save(
        tmp_path / "pages.tif", save_all=True, append_images=[Image.fromarray(values.T.copy())]
    )
    Image.fromarray((values // 257).astype(np.uint8)).save(tmp_path / "8.tif", compression="tiff_lzw")
    assert open(tmp_path / "big_endian.tif", "rb").read(4) == b"MM\x00*"
    png16, png8 = (read_image_uint8(tmp_path / f"{n}.png", settings) for n in (16, 8))
    for name in ("big_endian", "float", "pages"):  # pages: the first page
        np.testing.assert_array_equal(read_image_uint8(tmp_path / f"{name}.tif", settings), png16, err_msg=name)
    np.testing.assert_array_equal(read_image_uint8(tmp_path / "8.tif", settings), png8)
    nan = values.astype(np.float32)
    nan[0, 0] = np.nan
    Image.fromarray(nan).save(tmp_path / "nan.tif")
    with pytest.raises(ImageReadError, match=r"nan\.tif.*NaN or infinite"):
        read_image_uint8(tmp_path / "nan.tif", settings)
    _rgb16_tiff(tmp_path / "rgb16.tif")
    assert Image.open(tmp_path / "rgb16.tif").mode == "RGB"  # Pillow reads it, keeping the high bytes
    reason, _, _ = check_file(tmp_path / "rgb16.tif")
    assert reason is not None and "16-bit colour" in reason and "16-bit PNG" in reason


def test_the_audit_finds_a_16_bit_png_and_its_big_endian_tiff_the_same_image(tmp_path):
    from radtransfer import data

    values = _sixteen_bit()
    Image.fromarray(values).save(tmp_path / "a.png")
    Image.frombytes("I;16B", (24, 24), values.astype(">u2").tobytes()).save(tmp_path / "b.tif")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "b.tif")), values)  # the same values, as Pillow reads
    paths = [str(tmp_path / "a.png"), str(tmp_path / "b.tif")]
    report = data.audit({"train": data.ImageSet(paths=paths, labels=[0, 1], class_names=("x", "y"))})
    details = [f"{f.kind}: {f.detail}" for f in report.findings]
    assert "duplicate: 2 files with the same decoded pixels" in details, details  # not only "near duplicates"


def test_a_broken_tiff_inside_the_pipeline_is_named(tmp_path, capfd):
    from radtransfer import data

    paths = []
    for k in range(2):
        Image.fromarray(_sixteen_bit(seed=k)).save(tmp_path / f"{k}.tif", compression="tiff_adobe_deflate")
        paths.append(str(tmp_path / f"{k}.tif"))
    raw = bytearray(open(paths[1], "rb").read())
    strip = Image.open(paths[1]).tag_v2[273]
    start = strip[0] if isinstance(strip, tuple) else strip
    raw[start + 2 : start + 40] = b"\xde\xad\xbe\xef" * 9 + b"\x00\x11"  # the compressed pixels, not the header
    open(paths[1], "wb").write(bytes(raw))
    assert data.check_images(data.ImageSet(paths=paths, labels=[0, 1], class_names=("a", "b")))[1] == []
    image_set = data.ImageSet(paths=paths, labels=[0, 1], class_names=("a", "b"))
    dataset = data.make_dataset(image_set, image_size=(8, 8), shuffle=False, cache=False, batch_size=1)
    with pytest.raises(data.ImageReadError) as caught:
        with data.readable_pipeline_errors(dataset):
            for _ in dataset:
                pass
    message = str(caught.value)
    assert message.startswith(f"Cannot read '{paths[1]}': OSError") and "\n" not in message
    assert "Traceback" not in capfd.readouterr().err


# -- 5. and 6. paths first, and the way out when no weights exist -------------------------------------------------


def test_a_missing_weights_dir_is_refused_before_the_audit_and_tensorflow(cli_data, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", str(cli_data), "--weights-dir", str(tmp_path / "no_such"), "--out", str(out)]
    assert main(argv + ["--backbone", "test_tiny"]) == 2
    err = capsys.readouterr().err
    assert "--weights-dir" in err and str(tmp_path / "no_such") in err
    assert "data audit" not in err and "starting TensorFlow" not in err and not out.exists()


def test_no_weights_found_says_where_it_looked_and_offers_random_initialisation(cli_data, isolated_dirs, capsys):
    out = isolated_dirs / "run"
    assert main(["train", str(cli_data), "--backbone", "test_tiny", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    error = [line for line in err.splitlines() if line.startswith("radtransfer: error:")][0]
    assert "--weights none" in error and "random initialisation" in error and "weights" in error
    assert "data audit" not in err and "starting TensorFlow" not in err and not out.exists()


def test_the_apis_weights_message_offers_weights_none(isolated_dirs):
    from radtransfer.errors import WeightsNotFoundError
    from radtransfer.models.weights import resolve_weights

    with pytest.raises(WeightsNotFoundError, match=r"weights=None to train from random initialisation"):
        resolve_weights("test_tiny", "radimagenet")


# -- 7. the frozen-collapse warning needs patients, and says it once ----------------------------------------------


def _frozen_records(n_patients: int, folds: int = 5) -> pd.DataFrame:
    rows = []
    for source, auc in (("radimagenet", 0.85), ("imagenet", 0.55)):
        for fold in range(folds):
            rows.append(
                {
                    "grid": "g",
                    "source": source,
                    "strategy": "freeze_all",
                    "status": "finished",
                    "auc": auc,
                    "fold": fold,
                    "n_test": n_patients * 2,
                    "n_test_patients": n_patients,
                }
            )
    return pd.DataFrame(rows)


def test_the_frozen_collapse_check_needs_enough_test_patients():
    from radtransfer.grid.sanity import MIN_UNITS, frozen_sanity

    few = frozen_sanity(_frozen_records(5)).set_index("source")  # 25 patients over 5 folds: chance can do it
    assert not few["collapsed"].any() and (few["message"] == "").all()
    # The rule: under chance, a mean AUC over N test patients has SD ≈ sqrt(1 / (3N)) (balanced classes; Hanley
    # and McNeil's variance at AUC 0.5), the difference of two sources' means sqrt(2 / (3N)); the gap must be at
    # least two of those.
    assert MIN_UNITS == int(np.ceil(2 / (3 * (0.15 / 2) ** 2)))
    enough = frozen_sanity(_frozen_records(int(np.ceil(MIN_UNITS / 5)))).set_index("source")
    assert enough.loc["imagenet", "collapsed"] and not enough.loc["radimagenet", "collapsed"]


def test_the_grid_example_warns_of_a_collapse_once(tmp_path, monkeypatch):
    """The grid example writes the report and prints its summary: its collapse warning once, not once per table."""
    import importlib.util
    import sys
    from pathlib import Path

    from radtransfer import plots, protocol

    sys.path.insert(0, str(Path(__file__).parent / "grid"))
    from test_arms import _write_grid

    _write_grid(tmp_path)
    path = Path(__file__).parents[1] / "examples" / "radimagenet_grid.py"
    spec = importlib.util.spec_from_file_location("radimagenet_grid_example", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    monkeypatch.setattr(example, "load_images", lambda args: None)
    monkeypatch.setattr(protocol, "run_grid", lambda *args, **kwargs: [])  # the runs are written already
    monkeypatch.setattr(plots, "grid_figures", lambda *args, **kwargs: [])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # Python's own: a warning once per place it is raised from
        assert example.main(["--out", str(tmp_path)]) == 0
    assert sum("freeze-all runs" in str(w.message) for w in caught) == 1

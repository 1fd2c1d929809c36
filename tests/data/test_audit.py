"""The data audit: each planted finding is found, exactly once, and a clean set gives none."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import radtransfer as rt
from radtransfer import data
from radtransfer.data.audit import KINDS, perceptual_hashes


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """240 distinct 8-bit images (60 synthetic patients, 4 slices each), split by patient."""
    root = tmp_path_factory.mktemp("audit_clean")
    rt.datasets.synthetic_brain_mri(root, n_patients=60, slices_per_patient=4, image_size=96, seed=1, bit_depth=8)
    image_set = data.from_csv(root / "manifest.csv", image_col="path", label_col="label", patient_col="patient_id")
    return root, image_set.split(val=0.15, test=0.2, seed=3)


def test_a_clean_split_has_no_findings(clean):
    _, (train, val, test) = clean
    report = data.audit({"train": train, "val": val, "test": test})
    assert report.findings == []
    assert report.images == 240
    # The hash alone would have flagged pairs of different patients; the thumbnails cleared every one.
    assert report.candidates > 0
    assert report.counts["test"]["images"] == len(test)
    assert report.counts["train"]["patients"] == len(set(train.patient_ids))
    assert sum(report.counts["val"]["classes"].values()) == len(val)


def _jpeg(array, quality):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", quality=quality)
    return Image.open(buffer)


def _planted(clean, folder, unreadable: bool = True):
    """The clean split's rows (path, class, patient) per part, copied into ``folder``, with one of each problem
    planted (the unreadable file only when asked); returns (rows, class names)."""
    root, (train, val, test) = clean
    planted = folder / "planted"
    shutil.copytree(root / "images", planted)
    rows = {"train": [], "val": [], "test": []}
    for name, part in (("train", train), ("val", val), ("test", test)):
        for path, label, patient in zip(part.paths, part.labels, part.patient_ids):
            moved = planted / Path(path).relative_to(root / "images")
            rows[name].append((str(moved), part.class_names[label], patient))
    names = sorted({r[1] for r in rows["train"]})
    source, cls, _ = rows["train"][0]
    pixels = np.asarray(Image.open(source))
    other_class = next(c for c in names if c != cls)

    def add(part, file, label, patient):
        rows[part].append((str(file), label, patient))

    # duplicate across parts (same pixels, another format) and a duplicate within one part (a warning)
    Image.fromarray(pixels).save(planted / "copy_of_train0.bmp")
    add("test", planted / "copy_of_train0.bmp", cls, "P-dup")
    second, cls2, patient2 = rows["train"][5]
    shutil.copyfile(second, planted / "again.png")
    add("train", planted / "again.png", cls2, patient2)
    # near duplicates across parts: JPEG at quality 60, and resized with brightness and contrast changed
    third, cls3, _ = rows["train"][9]
    _jpeg(np.asarray(Image.open(third)), 60).save(planted / "reencoded.png")
    add("val", planted / "reencoded.png", cls3, "P-near1")
    fourth, cls4, _ = rows["train"][13]
    changed = np.clip(np.asarray(Image.open(fourth), dtype=np.float32) * 1.1 + 12, 0, 255).astype(np.uint8)
    Image.fromarray(changed).resize((80, 80), Image.Resampling.BILINEAR).save(planted / "resized.png")
    add("test", planted / "resized.png", cls4, "P-near2")
    # a label conflict: the same picture in the same part under another class
    fifth, cls5, patient5 = rows["train"][17]
    Image.fromarray(np.asarray(Image.open(fifth))).save(planted / "relabelled.bmp")
    add("train", planted / "relabelled.bmp", next(c for c in names if c != cls5), patient5)
    # a patient in two parts
    leak_source = rows["test"][0][0]
    add("val", leak_source.replace(".png", "_leak.png"), rows["test"][0][1], rows["test"][0][2])
    shutil.copyfile(leak_source, leak_source.replace(".png", "_leak.png"))
    # an empty (all-black) slice and an unreadable file
    Image.fromarray(np.zeros((96, 96), np.uint8)).save(planted / "black.png")
    add("train", planted / "black.png", other_class, "P-black")
    if unreadable:
        (planted / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
        add("val", planted / "broken.png", other_class, "P-broken")
    return rows, names


def test_each_planted_finding_is_found_exactly(clean, tmp_path):
    rows, names = _planted(clean, tmp_path)
    planted = tmp_path / "planted"
    leaked = rows["val"][0][2]
    parts = {name: _image_set(part_rows, names) for name, part_rows in rows.items()}
    report = data.audit(parts)
    found = {}
    for finding in report.findings:
        found.setdefault(finding.kind, []).append(finding)
    summary = {kind: len(found.get(kind, [])) for kind in KINDS}
    # the leaked copy is also a cross-part duplicate of the test image it copies
    assert summary == {
        "duplicate": 4,
        "near_duplicate": 2,
        "label_conflict": 1,
        "patient_leak": 1,
        "empty_image": 1,
        "unreadable": 1,
    }, report.table()
    by_file = {f.kind + ":" + Path(f.paths[-1]).name: f for f in report.findings}
    cross = next(f for f in found["duplicate"] if str(planted / "copy_of_train0.bmp") in f.paths)
    assert cross.severity == "error" and cross.parts == ("test", "train")
    within = next(f for f in found["duplicate"] if str(planted / "again.png") in f.paths)
    assert within.severity == "warning" and within.parts == ("train",)
    near_files = {Path(p).name for f in found["near_duplicate"] for p in f.paths}
    assert {"reencoded.png", "resized.png"} <= near_files
    assert all(f.severity == "error" for f in found["near_duplicate"])
    conflict = found["label_conflict"][0]
    assert str(planted / "relabelled.bmp") in conflict.paths and len(conflict.classes) == 2
    assert found["patient_leak"][0].parts == ("test", "val") and leaked != rows["test"][0][2]
    assert found["empty_image"][0].severity == "warning" and found["unreadable"][0].severity == "error"
    assert by_file  # every finding names its files
    # the JSON: exactly the keys and kind names
    written = json.loads(report.write_json(tmp_path / "audit.json").read_text())
    assert all(set(f) == {"kind", "severity", "paths", "parts", "classes", "detail"} for f in written)
    assert {f["kind"] for f in written} == set(KINDS)
    assert "error" in report.table() and "near_duplicate" in report.table()


def _image_set(rows, names):
    from radtransfer.data import ImageSet

    return ImageSet(
        paths=[r[0] for r in rows],
        labels=np.array([names.index(r[1]) for r in rows], dtype=np.int64),
        class_names=tuple(names),
        patient_ids=[r[2] for r in rows],
    )


def test_perceptual_hash_matches_imagehash_algorithm():
    """The hash is ImageHash's phash (DCT-II of a 32x32 thumbnail, 8x8 lowest frequencies above their median),
    checked against a direct per-coefficient DCT formula."""
    rng = np.random.default_rng(0)
    thumb = rng.normal(size=(32, 32))
    k = np.arange(32)
    basis = np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / 64)  # basis[u, x]
    coefficients = (basis @ thumb @ basis.T)[:8, :8].ravel()
    expected = coefficients > np.median(coefficients)
    bits = np.unpackbits(perceptual_hashes(thumb[None]).view(np.uint8), bitorder="little")
    assert np.array_equal(bits.astype(bool), expected)


def test_folds_are_audited_reading_each_image_once(clean, tmp_path, monkeypatch):
    import sys

    audit_module = sys.modules["radtransfer.data.audit"]  # data.audit is the function

    root, (train, val, test) = clean
    image_set = train
    copy = tmp_path / "copy.bmp"
    Image.open(image_set.paths[0]).save(copy)  # the same picture under another patient
    rows = list(zip(image_set.paths, image_set.labels, image_set.patient_ids)) + [
        (str(copy), image_set.labels[0], "P-other")
    ]
    names = list(image_set.class_names)
    planted = _image_set([(p, names[label], patient) for p, label, patient in rows], names)
    reads = []
    original = audit_module._read
    monkeypatch.setattr(audit_module, "_read", lambda path, frame: reads.append(path) or original(path, frame))
    reports = data.audit_folds(planted, k=3, seed=0)
    assert len(reports) == 3 and len(reads) == len(planted)
    kinds = [sorted({f.kind for f in report.findings}) for report in reports]
    # the copy and its source are in different parts of every fold but where they share one (never here: the
    # copy's patient is drawn apart); each fold says which parts
    crossing = [r for r in reports if r.of_kind("duplicate") and r.of_kind("duplicate")[0].severity == "error"]
    assert crossing, kinds
    assert all(set(k) <= {"duplicate"} for k in kinds)
    assert sum(r.counts["test"]["images"] for r in reports) == len(planted)


# -- in-memory images (issue 28, defect 1) ----------------------------------------------------------------------


def _in_memory(rows, names, arrays):
    """The same rows as an in-memory ImageSet (each file's pixels read once, so a path listed twice is one array
    listed twice), named by file name."""
    from radtransfer.data import ImageSet

    for path, _, _ in rows:
        if path not in arrays:
            with Image.open(path) as image:
                arrays[path] = np.asarray(image if image.mode == "L" else image.convert("L"))
    return ImageSet(
        paths=None,
        images=[arrays[r[0]] for r in rows],
        labels=np.array([names.index(r[1]) for r in rows], dtype=np.int64),
        class_names=tuple(names),
        patient_ids=[r[2] for r in rows],
        extras={"name": np.array([Path(r[0]).name for r in rows], dtype=object)},
    )


def _comparable(report, rename=lambda name: Path(name).name):
    return sorted((f.kind, f.severity, tuple(map(rename, f.paths)), f.parts, f.classes) for f in report.findings)


def test_in_memory_images_are_audited_as_their_files(clean, tmp_path):
    """Every planted problem (but the unreadable file, which memory cannot hold), and one file listed in two parts,
    are found the same way in the files and in the same pixels held in memory."""
    rows, names = _planted(clean, tmp_path, unreadable=False)
    rows["test"].append(rows["train"][20][:2] + ("P-listed-twice",))  # one file on two rows, in two parts
    files = data.audit({name: _image_set(part_rows, names) for name, part_rows in rows.items()})
    arrays = {}
    memory = data.audit({name: _in_memory(part_rows, names, arrays) for name, part_rows in rows.items()})
    assert _comparable(memory) == _comparable(files), memory.table()
    assert {f.kind for f in files.findings} == set(KINDS) - {"unreadable"}
    assert memory.counts == files.counts and memory.images == files.images
    twice = [f for f in memory.of_kind("duplicate") if "listed 2 times" in f.detail]
    assert [(f.severity, f.parts) for f in twice] == [("error", ("test", "train"))]
    assert "in-memory image" in twice[0].detail


def _memory_set(image_set, copy_of: int, stack: bool = False):
    """``image_set``'s pixels in memory (a list of arrays, or one 4D array), with a copy (another array, the same
    pixels) of image ``copy_of`` appended under a patient of its own."""
    from radtransfer.data import ImageSet

    arrays = [np.asarray(Image.open(p))[..., None] for p in image_set.paths]
    arrays.append(arrays[copy_of].copy())
    return ImageSet(
        paths=None,
        images=np.stack(arrays) if stack else arrays,
        labels=np.append(image_set.labels, image_set.labels[copy_of]),
        class_names=image_set.class_names,
        patient_ids=[*image_set.patient_ids, "P-copy"],
    )


@pytest.mark.parametrize("stack", [False, True], ids=["list of arrays", "one 4D array"])
def test_folds_of_in_memory_images_name_each_by_its_index_in_the_set(clean, stack):
    """As the grid audits its folds (protocol._audit -> audit_splits), and as audit_folds does: each finding names
    the in-memory images by their index in the set the user gave."""
    _, (train, _, _) = clean
    image_set = _memory_set(train, copy_of=7, stack=stack)
    copy = f"#{len(image_set) - 1}"
    folds = list(image_set.kfold(3, seed=0))
    report = data.audit_splits(folds)
    assert report.images == len(image_set)
    assert {(f.kind, tuple(sorted(f.paths))) for f in report.findings} == {
        ("duplicate", tuple(sorted(("#7", copy))))
    }, report.table()
    assert any(f.severity == "error" and f.parts[0].startswith("fold") for f in report.findings)
    assert "2 images with the same decoded pixels" in report.findings[0].detail
    per_fold = data.audit_folds(image_set, k=3, seed=0)
    assert [_comparable(r, str) for r in per_fold] == [
        sorted(
            (f.kind, f.severity, f.paths, tuple(p.split(":")[1] for p in f.parts), f.classes)
            for f in report.findings
            if f.parts[0].startswith(f"fold{k}:")
        )
        for k in (1, 2, 3)
    ]
    # one record in two parts is one image listed twice (an error), as a path would be; within one, a warning
    from radtransfer.data import ImageSet

    plain = ImageSet(None, image_set.labels, image_set.class_names, images=image_set.images)
    listed = data.audit({"train": plain.subset([0, 4, 8, 4]), "test": plain.subset([8, 12])})  # 4 patients
    assert [(f.kind, f.severity, f.paths, f.parts) for f in listed.findings] == [
        ("duplicate", "error", ("#8", "#8"), ("test", "train")),
        ("duplicate", "warning", ("#4", "#4"), ("train",)),
    ], listed.table()


# -- one file listed twice (issue 28, defect 5) -----------------------------------------------------------------


def test_a_file_listed_twice_is_a_duplicate_across_parts_and_within_one(clean):
    _, (train, val, test) = clean
    names = list(train.class_names)
    rows = {
        name: [(p, names[label], patient) for p, label, patient in zip(part.paths, part.labels, part.patient_ids)]
        for name, part in (("train", train), ("val", val), ("test", test))
    }
    repeated, within = rows["train"][3], rows["train"][11]
    rows["test"].append((repeated[0], repeated[1], "P-another"))  # split by image, a repeated row lands apart
    rows["train"].append(within)
    report = data.audit({name: _image_set(part_rows, names) for name, part_rows in rows.items()})
    assert [(f.kind, f.severity, f.paths, f.parts) for f in report.findings] == [
        ("duplicate", "error", (repeated[0], repeated[0]), ("test", "train")),
        ("duplicate", "warning", (within[0], within[0]), ("train",)),
    ], report.table()
    assert report.findings[0].detail == "one file listed 2 times, in parts test and train"


def test_the_audit_command_refuses_a_manifest_that_lists_a_file_twice(clean, tmp_path, capsys):
    import pandas as pd

    from radtransfer.cli import main

    root, _ = clean
    frame = pd.read_csv(root / "manifest.csv").iloc[:40]
    frame = pd.concat([frame, frame.iloc[[6]]], ignore_index=True)  # 41 rows, 40 files
    frame["path"] = [str(root / p) for p in frame["path"]]
    manifest = tmp_path / "manifest.csv"
    frame.to_csv(manifest, index=False)
    code = main(["audit", str(manifest), "--image-col", "path", "--patient-col", "patient_id"])
    err = capsys.readouterr().err
    assert code == 1
    assert "listed more than once" in err and "lines 8, 42" in err and str(manifest) in err


# -- flipped and rotated copies (issue 28, defect 6) ------------------------------------------------------------

_INVERSE = {5: 6, 6: 5}  # the other orientations undo themselves


def test_every_flipped_and_rotated_copy_is_found_and_named(clean, tmp_path):
    from radtransfer.data import ImageSet

    _, (train, val, test) = clean
    turns = {
        1: lambda a: a[:, ::-1],
        2: lambda a: a[::-1, :],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a.T,
        5: lambda a: np.rot90(a, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: a[::-1, ::-1].T,
    }
    copies, sources = [], {}
    for k, (orientation, turn) in enumerate(turns.items()):
        source = train.paths[10 * k + 3]
        copy = tmp_path / f"turned{orientation}.png"
        Image.fromarray(np.ascontiguousarray(turn(np.asarray(Image.open(source))))).save(copy)
        copies.append(str(copy))
        sources[str(copy)] = (str(source), orientation)
    labels = [train.labels[list(train.paths).index(sources[c][0])] for c in copies]
    test = ImageSet(
        [*test.paths, *copies],
        np.concatenate([test.labels, labels]),
        test.class_names,
        [*test.patient_ids, *(f"P-turned{k}" for k in range(len(copies)))],
    )
    report = data.audit({"train": train, "val": val, "test": test})
    assert [f.kind for f in report.findings] == ["near_duplicate"] * 7, report.table()
    from radtransfer.data.audit import ORIENTATIONS

    for finding in report.findings:
        copy = next(p for p in finding.paths if p in sources)
        source, orientation = sources[copy]
        assert finding.severity == "error" and finding.parts == ("test", "train")
        # the source's other slices may join (a patient's end slices look alike), no one else's
        assert {copy, source} <= set(finding.paths)
        assert {Path(p).name.split("_")[0] for p in set(finding.paths) - {copy}} == {Path(source).name.split("_")[0]}
        assert (
            f"{copy} is a {ORIENTATIONS[orientation]} copy of {source}" in finding.detail
            or f"{source} is a {ORIENTATIONS[_INVERSE.get(orientation, orientation)]} copy of {copy}" in finding.detail
        ), finding.detail


def test_oriented_hashes_are_the_hashes_of_the_turned_thumbnails():
    """One DCT gives all 8: each column equals the pHash of the thumbnail flipped or rotated (numpy), computed by
    the direct per-coefficient DCT formula."""
    from radtransfer.data.audit import oriented_hashes

    rng = np.random.default_rng(1)
    thumbs = rng.normal(size=(5, 32, 32))
    k = np.arange(32)
    basis = np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / 64)
    turns = [
        lambda a: a,
        lambda a: a[:, ::-1],
        lambda a: a[::-1, :],
        lambda a: np.rot90(a, 2),
        lambda a: a.T,
        lambda a: np.rot90(a, 1),
        lambda a: np.rot90(a, -1),
        lambda a: np.rot90(a, 2).T,
    ]
    hashes = oriented_hashes(thumbs)
    for t, turn in enumerate(turns):
        for n, thumb in enumerate(thumbs):
            coefficients = (basis @ turn(thumb) @ basis.T)[:8, :8].ravel()
            expected = coefficients > np.median(coefficients)
            bits = np.unpackbits(hashes[n, t : t + 1].view(np.uint8), bitorder="little").astype(bool)
            assert np.array_equal(bits, expected), (t, n)


def test_near_pairs_finds_every_pair_a_brute_force_finds():
    """The pigeonhole search against every pair compared bit by bit, on hashes that cluster (as same-anatomy images'
    do) and in 4 orientations."""
    from radtransfer.data.audit import near_pairs

    rng = np.random.default_rng(2)
    centres = rng.integers(0, 2**63, size=(8, 4), dtype=np.int64).astype(np.uint64)
    noise = np.zeros((400, 4), dtype=np.uint64)
    for b in range(7):  # a few random bits flipped per hash
        noise |= (rng.random((400, 4)) < 0.5).astype(np.uint64) << rng.integers(0, 64, size=(400, 4)).astype(np.uint64)
    hashes = centres[rng.integers(0, 8, 400)] ^ noise
    differ = hashes[:, 0, None] ^ hashes.ravel()[None, :]  # every query against every (image, orientation)
    bits = np.unpackbits(differ[..., None].view(np.uint8), axis=-1).sum(axis=-1)
    for distance in (0, 3, 6, 10):
        found = {tuple(t) for t in near_pairs(hashes, distance).tolist()}
        i, s = np.nonzero(bits <= distance)
        expected = {(a, b // 4, b % 4) for a, b in zip(i.tolist(), s.tolist()) if b // 4 > a}
        assert found == expected and len(expected) > 0, distance
    keep = near_pairs(hashes, 6, keep=lambda i, j, t: (i + j + t) % 2 == 0)
    assert len(keep) and np.all(keep.sum(axis=1) % 2 == 0)


# -- empty images on the pipeline's scale (issue 28, 7f) --------------------------------------------------------


def test_an_empty_image_is_judged_on_the_scale_the_pipeline_gives_it(tmp_path):
    """A dim 12-bit image with real structure is not empty (the pipeline stretches it to 0-255); a constant one is;
    with sixteen_bit="full" the dim one is as black as the pipeline then makes it. The pipeline's own reading
    (numpy_read.decode_file) is the reference."""
    from radtransfer.data import ImageSet
    from radtransfer.data.decode import ReadSettings
    from radtransfer.data.py_dataset.numpy_read import decode_file

    root = tmp_path / "mri"
    rt.datasets.synthetic_brain_mri(root, n_patients=4, slices_per_patient=1, image_size=64, seed=0)
    slice_ = np.asarray(Image.open(next((root / "images").rglob("*.png"))), dtype=np.float64)
    files = {
        "twelve_bit.png": np.round(slice_).astype(np.uint16),  # values 0-4095
        "dim.png": np.round(slice_ / slice_.max() * 200).astype(np.uint16),  # 0-200 of 65535
        "constant.png": np.full((64, 64), 1000, dtype=np.uint16),
    }
    for name, array in files.items():
        Image.fromarray(array).save(tmp_path / name)
    paths = [str(tmp_path / name) for name in files]
    image_set = ImageSet(paths, [0, 1, 0], ("a", "b"))

    def pipeline_empty(sixteen_bit):
        settings = ReadSettings((64, 64), sixteen_bit=sixteen_bit)
        return {Path(p).name for p in paths if decode_file(p, settings)[..., 0].std() < 1}

    flagged = {Path(f.paths[0]).name for f in data.audit(image_set).of_kind("empty_image")}
    assert flagged == pipeline_empty("range") == {"constant.png"}  # the pipeline's default
    flagged = {Path(f.paths[0]).name for f in data.audit(image_set, sixteen_bit="full").of_kind("empty_image")}
    assert flagged == pipeline_empty("full") == {"dim.png", "constant.png"}
    # in memory, a wider type is stretched from its own range, as the pipeline does
    memory = ImageSet(None, [0, 1, 0], ("a", "b"), images=list(files.values()))
    assert [f.paths for f in data.audit(memory).of_kind("empty_image")] == [("#2",)]


def test_slices_of_volumes_are_audited_and_named_by_volume_and_slice(tmp_path):
    """from_volumes' in-memory slices: a volume saved twice under two patients is found slice by slice across parts,
    each slice named <volume>#<slice>."""
    nibabel = pytest.importorskip("nibabel")
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(24, 24, 6)), rng.normal(size=(24, 24, 6))
    rows = []
    for name, volume, patient in (("a", a, "p1"), ("b", b, "p2"), ("copy_of_a", a, "p3")):
        nibabel.save(nibabel.Nifti1Image(volume.astype(np.float32), np.eye(4)), tmp_path / f"{name}.nii.gz")
        rows.append(f"{name}.nii.gz,{'xy'[len(rows) % 2]},{patient}")
    (tmp_path / "volumes.csv").write_text("volume,label,patient\n" + "\n".join(rows) + "\n")
    slices = data.from_volumes(tmp_path / "volumes.csv", patient_col="patient", slices=("middle", 2))
    by_patient = np.array(slices.patient_ids)
    parts = {
        "train": slices.subset(np.flatnonzero(by_patient != "p3")),
        "test": slices.subset(np.flatnonzero(by_patient == "p3")),
    }
    report = data.audit(parts)
    assert [(f.kind, f.severity, f.parts) for f in report.findings] == [("duplicate", "error", ("test", "train"))] * 2
    named = sorted(tuple(Path(p).name for p in f.paths) for f in report.findings)
    assert named == [("a.nii.gz#2", "copy_of_a.nii.gz#2"), ("a.nii.gz#3", "copy_of_a.nii.gz#3")]

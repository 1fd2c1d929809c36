"""DICOM as scanners write it: rendering equal to pydicom's own, decoders checked before the first epoch,
one-line errors from inside the pipeline, and the multi-frame policy."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

import radtransfer as rt
from radtransfer import data

pydicom = pytest.importorskip("pydicom")
from pydicom.data import get_testdata_file  # noqa: E402
from pydicom.pixels import apply_color_lut, apply_modality_lut  # noqa: E402
from pydicom.uid import JPEGLSLossless, RLELossless  # noqa: E402


def reference_rendering(path) -> np.ndarray:
    """What a viewer shows, written from the standard and pydicom's public functions, independently of
    radtransfer: the whole file decoded by ``ds.pixel_array``, the middle frame, then modality LUT →
    VOI LUT / window (PS3.3 C.11.2.1.2) → 0..255, MONOCHROME1 inverted."""
    ds = pydicom.dcmread(path)
    pixels = ds.pixel_array
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        pixels = pixels[frames // 2]
    photometric = ds.PhotometricInterpretation
    if photometric == "PALETTE COLOR":
        bits = ds.RedPaletteColorLookupTableDescriptor[2]
        return apply_color_lut(pixels, ds)[..., :3] / (2**bits - 1) * 255
    if pixels.ndim == 3:
        return pixels / (2**ds.BitsStored - 1) * 255
    x = apply_modality_lut(pixels, ds).astype(np.float64)
    if ds.get("VOILUTSequence"):
        item = ds.VOILUTSequence[0]
        entries, first, bits = item.LUTDescriptor
        lut = np.asarray(item.LUTData, dtype=np.float64)
        out = lut[np.clip(np.round(x - first).astype(int), 0, len(lut) - 1)] / (2**bits - 1) * 255
    elif "WindowCenter" in ds:
        c = float(ds.WindowCenter[0] if ds["WindowCenter"].VM > 1 else ds.WindowCenter)
        w = float(ds.WindowWidth[0] if ds["WindowWidth"].VM > 1 else ds.WindowWidth)
        function = str(ds.get("VOILUTFunction", "LINEAR")).upper()
        if function == "SIGMOID":
            out = 255 / (1 + np.exp(-4 * (x - c) / w))
        elif function == "LINEAR_EXACT":
            out = np.clip((x - c) / w + 0.5, 0, 1) * 255
        else:
            out = np.clip((x - (c - 0.5)) / (w - 1) + 0.5, 0, 1) * 255
    else:
        out = (x - x.min()) / (x.max() - x.min()) * 255
    if photometric == "MONOCHROME1":
        out = 255 - out
    return np.repeat(out[..., None], 3, axis=-1)


def _variant(tmp_path, source, name, **changes):
    ds = pydicom.dcmread(get_testdata_file(source))
    for keyword, value in changes.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    path = tmp_path / name
    ds.save_as(path)
    return str(path)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """DICOMs this test writes: MONOCHROME1, a VOI LUT Sequence, a sigmoid and a linear-exact window, and a
    CT compressed as RLE and as JPEG-LS by pydicom's own encoders."""
    tmp = tmp_path_factory.mktemp("dicom")
    files = {
        "monochrome1": _variant(
            tmp, "CT_small.dcm", "mono1.dcm", PhotometricInterpretation="MONOCHROME1", WindowCenter=40, WindowWidth=400
        ),
        "sigmoid": _variant(
            tmp, "CT_small.dcm", "sigmoid.dcm", WindowCenter=40, WindowWidth=300, VOILUTFunction="SIGMOID"
        ),
        "linear_exact": _variant(
            tmp,
            "CT_small.dcm",
            "exact.dcm",
            WindowCenter=[40, 600],
            WindowWidth=[350, 2000],
            VOILUTFunction="LINEAR_EXACT",
        ),
    }
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    item = pydicom.Dataset()
    item.add_new(0x00283002, "SS", [256, -200, 8])  # LUT Descriptor: 256 entries from -200 HU, 8 bits
    item.add_new(0x00283006, "US", [int(v) for v in np.round(255 * np.sqrt(np.linspace(0, 1, 256)))])  # gamma
    ds.VOILUTSequence = pydicom.Sequence([item])
    ds.WindowCenter, ds.WindowWidth = 0, 100  # the LUT wins over the window
    files["voi_lut_sequence"] = str(tmp / "voilut.dcm")
    ds.save_as(files["voi_lut_sequence"])
    for name, syntax in (("rle", RLELossless), ("jpeg_ls", JPEGLSLossless)):
        ds = pydicom.dcmread(files["monochrome1"])
        ds.compress(syntax)
        files[name] = str(tmp / f"{name}.dcm")
        ds.save_as(files[name])
    return files


SHIPPED = [  # pydicom's own test files (installed with pydicom): modalities, photometrics, transfer syntaxes
    "CT_small.dcm",  # CT, MONOCHROME2, rescale slope/intercept
    "MR_small_jpeg_ls_lossless.dcm",  # MR, JPEG-LS, its own window
    "JPGExtended.dcm",  # NM, 12-bit JPEG Extended
    "MR_small_RLE.dcm",  # RLE
    "MR_small_jp2klossless.dcm",  # JPEG 2000 lossless
    "JPEG2000.dcm",  # JPEG 2000
    "examples_palette.dcm",  # ultrasound PALETTE COLOR
    "examples_ybr_color.dcm",  # ultrasound YBR_FULL_422 JPEG baseline, 30 frames
    "SC_ybr_full_422_uncompressed.dcm",
    "SC_rgb_dcmtk_+eb+cy+n1.dcm",  # YBR_FULL JPEG
    "SC_rgb_rle_2frame.dcm",  # RGB RLE, 2 frames
    "GDCMJ2K_TextGBR.dcm",  # YBR_RCT JPEG 2000
    "SC_rgb_rle_16bit.dcm",  # 16-bit RGB
]


@pytest.mark.parametrize(
    "name", SHIPPED + ["monochrome1", "sigmoid", "linear_exact", "voi_lut_sequence", "rle", "jpeg_ls"]
)
def test_rendering_equals_pydicoms_within_one_grey_level(name, written):
    path = written.get(name) or get_testdata_file(name)
    ours = data.read_dicom(path).astype(np.float64)
    expected = reference_rendering(path)
    assert ours.shape == expected.shape
    difference = np.abs(ours - expected)
    assert difference.mean() <= 1.0 and difference.max() <= 1.0 + 1e-9


def test_palette_colour_is_colour_not_palette_indices():
    image = data.read_dicom(get_testdata_file("examples_palette.dcm"))
    indices = pydicom.dcmread(get_testdata_file("examples_palette.dcm")).pixel_array
    assert np.abs(image[..., 0].astype(int) - image[..., 2]).mean() > 1  # not grey
    assert not np.array_equal(image[..., 0], indices.astype(np.uint8))


def test_compressed_files_render_as_the_uncompressed_original(written):
    original = data.read_dicom(written["monochrome1"])
    for name in ("rle", "jpeg_ls"):
        np.testing.assert_array_equal(data.read_dicom(written[name]), original)


def _multiframe(tmp_path, frames=5):
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    stack = np.stack([np.full((ds.Rows, ds.Columns), 100 * k, dtype=np.int16) for k in range(frames)])
    stack[:, 0, 0] = 2000  # a fixed bright pixel, so each frame has the same value range
    stack[:, 0, 1] = -1000
    ds.NumberOfFrames = frames
    ds.PixelData = stack.tobytes()
    for keyword in ("WindowCenter", "WindowWidth"):
        if keyword in ds:
            delattr(ds, keyword)
    path = tmp_path / "multi.dcm"
    ds.save_as(path)
    return str(path)


def test_multiframe_frame_policy(tmp_path):
    path = _multiframe(tmp_path)
    centre = {}
    for frame in ("first", "middle", "last", 3):
        centre[frame] = int(data.read_dicom(path, frame=frame)[10, 10, 0])
    # No window: each frame's own range (-1000..2000 stored, a positive rescale keeps it linear) → 0..255.
    expected = {
        f: int(np.round((100 * k + 1000) / 3000 * 255)) for f, k in (("first", 0), ("middle", 2), ("last", 4), (3, 3))
    }
    assert centre == expected
    image_set = data.ImageSet(paths=[path], labels=[0], class_names=("a",))
    with pytest.raises(data.BadImagesError, match=r"has 5 frame\(?s?\)?; frame=7 does not exist"):
        data.make_dataset(image_set, image_size=(8, 8), frame=7)
    with pytest.raises(ValueError, match="frame="):
        data.make_dataset(image_set, image_size=(8, 8), frame="centre")


def test_a_dicom_failing_inside_the_pipeline_raises_one_line_naming_it(tmp_path, capfd):
    """The pre-check decodes one file per kind; a second file of the same kind with broken pixel data
    fails inside tf.data and comes out as radtransfer's one-line error, not a TensorFlow trace."""
    good = tmp_path / "good.dcm"
    bad = tmp_path / "bad.dcm"
    ds = pydicom.dcmread(get_testdata_file("MR_small_RLE.dcm"))
    ds.save_as(good)
    raw = bytearray(good.read_bytes())
    raw[-200:] = b"\x00" * 200  # the last RLE segment becomes garbage
    raw = raw[:-150]
    bad.write_bytes(bytes(raw))
    image_set = data.ImageSet(paths=[str(good), str(bad)], labels=[0, 1], class_names=("a", "b"))
    dataset = data.make_dataset(image_set, image_size=(16, 16), shuffle=False, cache=False, batch_size=1)
    with pytest.raises(data.ImageReadError) as caught:
        with data.readable_pipeline_errors(dataset):
            for _ in dataset:
                pass
    message = str(caught.value)
    assert str(bad) in message and "\n" not in message and "Traceback" not in message
    assert "RLE Lossless" in message
    assert "Traceback" not in capfd.readouterr().err  # not even in TensorFlow's C++ log


def test_a_broken_png_inside_the_pipeline_is_named(tmp_path):
    from PIL import Image

    paths = []
    for k in range(3):
        path = tmp_path / f"{k}.png"
        Image.fromarray(np.full((8, 8), 40 * k, dtype=np.uint8)).save(path)
        paths.append(str(path))
    raw = bytearray(open(paths[1], "rb").read())
    start = raw.find(b"IDAT") + 8
    raw[start : start + 6] = b"\xde\xad\xbe\xef\x00\x11"  # corrupt the compressed data, keep the IEND marker
    open(paths[1], "wb").write(bytes(raw))
    image_set = data.ImageSet(paths=paths, labels=[0, 1, 0], class_names=("a", "b"))
    dataset = data.make_dataset(image_set, image_size=(8, 8), shuffle=False, cache=False)
    with pytest.raises(data.ImageReadError, match=r"Cannot read '.*1\.png'"):
        with data.readable_pipeline_errors(dataset):
            for _ in dataset:
                pass


MISSING_DECODERS = textwrap.dedent("""
    import sys
    for name in {blocked!r}:
        sys.modules[name] = None  # as if the package were not installed
    import json
    from radtransfer.data.decode import check_files
    bad, _, _ = check_files({paths!r})
    print(json.dumps(bad))
""")


def test_precheck_names_files_their_transfer_syntax_and_the_package_before_training():
    """Without pylibjpeg, Pillow claims JPEG Extended but cannot decode 12 bits, and nothing decodes JPEG-LS:
    the pre-check finds both before any epoch, naming the file, the transfer syntax and the package."""
    import json

    paths = [
        get_testdata_file("JPGExtended.dcm"),
        get_testdata_file("MR_small_jpeg_ls_lossless.dcm"),
        get_testdata_file("CT_small.dcm"),
    ]
    script = MISSING_DECODERS.format(blocked=["pylibjpeg", "libjpeg", "openjpeg", "rle", "jpeg_ls"], paths=paths)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    bad = dict(json.loads(done.stdout.strip().splitlines()[-1]))
    assert set(bad) == set(paths[:2])
    assert "JPEG Extended" in bad[paths[0]] and "pylibjpeg-libjpeg" in bad[paths[0]]
    assert "JPEG-LS" in bad[paths[1]] and "pyjpegls" in bad[paths[1]]


def test_dicom_needs_pydicom_3():
    from radtransfer.data import dicom

    assert dicom.MIN_PYDICOM == (3, 0)
    assert tuple(int(v) for v in pydicom.__version__.split(".")[:2]) >= (3, 0)
    assert rt.data.read_dicom is dicom.read_dicom


def test_enhanced_multiframe_takes_rescale_and_window_from_the_frames_functional_groups(tmp_path):
    """Enhanced CT/MR keep rescale and window in functional groups, not at the top level."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    for keyword in ("RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth"):
        if keyword in ds:
            delattr(ds, keyword)
    ds.PixelRepresentation = 0
    stack = np.full((3, ds.Rows, ds.Columns), 600, dtype=np.uint16)
    ds.NumberOfFrames, ds.PixelData = 3, stack.tobytes()
    transform = pydicom.Dataset()
    transform.RescaleSlope, transform.RescaleIntercept, transform.RescaleType = 2, -1000, "HU"
    shared = pydicom.Dataset()
    shared.PixelValueTransformationSequence = pydicom.Sequence([transform])
    ds.SharedFunctionalGroupsSequence = pydicom.Sequence([shared])
    frames = []
    for center in (-500, 200, 900):  # the middle frame's window is centred on the stored 600 → 200 HU
        window = pydicom.Dataset()
        window.WindowCenter, window.WindowWidth = center, 400
        group = pydicom.Dataset()
        group.FrameVOILUTSequence = pydicom.Sequence([window])
        frames.append(group)
    ds.PerFrameFunctionalGroupsSequence = pydicom.Sequence(frames)
    path = tmp_path / "enhanced.dcm"
    ds.save_as(path)
    hu = 2 * 600 - 1000
    expected = {
        frame: int(np.round(np.clip((hu - (c - 0.5)) / 399 + 0.5, 0, 1) * 255))
        for frame, c in (("first", -500), ("middle", 200), ("last", 900))
    }
    assert {f: int(data.read_dicom(path, frame=f)[5, 5, 0]) for f in expected} == expected
    assert expected == {"first": 255, "middle": 128, "last": 0}


# -- every test file shipped inside the installed pydicom ------------------------------------------------------------

PYDICOM_TEST_FILES = Path(get_testdata_file("CT_small.dcm")).parent  # local: nothing is downloaded
DICOM_EXTRA_MODULES = ("pylibjpeg", "libjpeg", "openjpeg", "rle")  # what ``pip install 'radtransfer[dicom]'`` adds


@pytest.fixture(scope="module")
def pydicom_test_files():
    """pydicom's own test files, split by whether ``pydicom.dcmread(path).pixel_array`` decodes them here:
    (paths it decodes, the DICOM files it does not)."""
    from radtransfer.data.decode import is_dicom

    decoded, refused = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # padding, VR mismatch and bad-value warnings of the odd files
        for path in sorted(str(p) for p in PYDICOM_TEST_FILES.rglob("*") if p.is_file()):
            try:
                _ = pydicom.dcmread(path).pixel_array
            except Exception:  # noqa: BLE001 - whatever pydicom raises, it does not decode the file
                if is_dicom(path):
                    refused.append(path)
            else:
                decoded.append(path)
    return decoded, refused


def test_every_file_pydicom_decodes_passes_the_precheck_and_reads_as_pydicom_renders_it(pydicom_test_files):
    """Issue 17: a Deflated Explicit VR file (image_dfl.dcm) and a JPEG Baseline RGB file stored in implicit VR
    (SC_rgb_jpeg.dcm) decode with pydicom but were refused. Every shipped file pydicom decodes must pass the
    pre-check (alone and all together) and read, equal to the rendering computed with pydicom's functions."""
    from radtransfer.data.decode import check_files

    decoded, _ = pydicom_test_files
    assert {"image_dfl.dcm", "SC_rgb_jpeg.dcm", "SC_rgb_jpeg_dcmtk.dcm"} <= {Path(p).name for p in decoded}
    assert len(decoded) >= 80, decoded
    problems = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in decoded:
            bad, _, dicom = check_files([path], workers=1)
            if bad or not dicom.all():
                problems[path] = f"pre-check: {bad}"
                continue
            try:
                ours = data.read_dicom(path).astype(np.float64)
            except Exception as exc:  # noqa: BLE001 - every failure is reported below
                problems[path] = f"read: {exc}"
                continue
            expected = reference_rendering(path)
            if ours.shape != expected.shape or np.abs(ours - expected).max() > 1.0 + 1e-9:
                problems[path] = f"rendering differs from pydicom's: {ours.shape} vs {expected.shape}"
        bad, _, dicom = check_files(decoded, workers=2)
    refused = [Path(p).name for p in problems]
    assert not problems, f"{len(problems)} of {len(decoded)} files pydicom decodes are refused: {refused}: {problems}"
    assert bad == [] and dicom.all()


@pytest.mark.parametrize("name", ["image_dfl.dcm", "SC_rgb_jpeg.dcm"])
def test_deflated_and_implicit_vr_jpeg_files_come_out_of_the_pipeline(name):
    path = get_testdata_file(name)
    ds = pydicom.dcmread(path)
    image_set = data.ImageSet(paths=[path], labels=[0], class_names=("a",))
    dataset = data.make_dataset(
        image_set, image_size=(ds.Rows, ds.Columns), batch_size=1, shuffle=False, cache=False, interpolation="nearest"
    )
    images, _ = next(iter(dataset))
    difference = np.abs(images[0].numpy().astype(np.float64) - reference_rendering(path))
    assert difference.max() <= 1.0 + 1e-9


def test_files_pydicom_cannot_decode_are_refused_naming_the_cause_never_an_installed_extra(pydicom_test_files):
    """Each DICOM file pydicom refuses is refused by the pre-check too, in one line that names the real cause (the
    decoders' own errors, the transfer syntax) and never asks to install packages that are installed."""
    from radtransfer.data.decode import check_files

    if not all(importlib.util.find_spec(module) for module in DICOM_EXTRA_MODULES):
        pytest.skip("the dicom extra is not completely installed here")
    _, refused = pydicom_test_files
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bad = dict(check_files(refused, workers=2)[0])
    assert set(bad) == set(refused)
    for path, reason in bad.items():
        assert "radtransfer[dicom]" not in reason and "\n" not in reason, (path, reason)
        for package, _ in re.findall(r"([A-Za-z][\w.-]*)>=([\d.]+)", reason):  # requirements named as missing
            with pytest.raises(importlib.metadata.PackageNotFoundError):
                importlib.metadata.distribution(package)
    by_name = {Path(p).name: reason for p, reason in bad.items()}
    assert "JPEG Extended" in by_name["JPEG-lossy.dcm"] and "libjpeg error" in by_name["JPEG-lossy.dcm"]
    embedded = by_name["JPEG2000-embedded-sequence-delimiter.dcm"]
    assert "JPEG 2000" in embedded and "Error decoding the J2K data" in embedded
    assert "less than expected (8130 vs 8192 bytes)" in by_name["MR_truncated.dcm"]  # pydicom's words, not numpy's


# -- issue 28, defect 4: windows the standard does not define, and DICOM files found by content ---------------------


def write_ge_series(folder, names, patient="GE-0001", seed=0, size=48, **attributes):
    """A GE-like MR series as the scanner writes it: 16-bit signed, a few hundred grey levels, PatientID and
    InstanceNumber (1, 2, ... in the order of ``names``), Window Center/Width 0/0 and no rescale, saved with the
    DICM preamble. ``attributes`` replace or (None) delete elements."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    series = generate_uid()
    y, x = np.mgrid[:size, :size]
    paths = []
    for k, name in enumerate(names):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.Manufacturer = "MR", "GE MEDICAL SYSTEMS"
        ds.PatientID, ds.SeriesInstanceUID, ds.InstanceNumber = patient, series, k + 1
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.WindowCenter, ds.WindowWidth = 0, 0
        blob = 300 * np.exp(-((y - size / 2 + 3 * k) ** 2 + (x - size / 2) ** 2) / (2 * (size / 4) ** 2))
        ds.PixelData = (blob + rng.integers(0, 40, (size, size)) + 5 * k).astype(np.int16).tobytes()
        for keyword, value in attributes.items():
            if value is None:
                delattr(ds, keyword)
            else:
                setattr(ds, keyword, value)
        path = folder / name
        ds.save_as(path, enforce_file_format=True)
        paths.append(str(path))
    return paths


def range_rendering(path) -> np.ndarray:
    """docs/data.md's rendering of a file without a usable VOI: pydicom's pixels through its modality LUT,
    min..max stretched to 0..255, rounded half to even, three channels (independent of radtransfer)."""
    ds = pydicom.dcmread(path)
    x = apply_modality_lut(ds.pixel_array, ds).astype(np.float64)
    out = np.round((x - x.min()) / (x.max() - x.min()) * 255).astype(np.uint8)
    return np.repeat(out[..., None], 3, axis=-1)


def test_a_ge_series_with_a_0_0_window_reads_as_its_range(tmp_path):
    """The real-data case rebuilt: GE writes Window Center/Width 0/0, which PS3.3 C.11.2.1.2 does not define
    (width ≥ 1) and pydicom's apply_windowing refuses; it was refused as "pixels do not decode"."""
    paths = write_ge_series(tmp_path, [f"IM{k}.dcm" for k in range(1, 6)])
    for path in paths:
        ours = data.read_dicom(path)
        assert len(np.unique(ours)) > 100  # a few hundred grey levels, stretched: not a blank image
        np.testing.assert_array_equal(ours, range_rendering(path))


UNDEFINED_WINDOWS = {  # (Window Center, Window Width, VOI LUT Function): each treated as absent
    "width 0 (GE)": (0, 0, None),
    "width 0.5, linear": (100, 0.5, None),
    "width -1, linear": (100, -1, None),
    "width 0, linear exact": (100, 0, "LINEAR_EXACT"),
    "width 0, sigmoid": (100, 0, "SIGMOID"),
    "width NaN": (100, "NaN", None),
    "width empty": (100, "", None),
    "center empty": ("", 200, None),
    "first width 0 of two": ([0, 100], [0, 200], None),
}


@pytest.mark.parametrize("window", UNDEFINED_WINDOWS, ids=list(UNDEFINED_WINDOWS))
def test_a_window_the_standard_does_not_define_is_treated_as_absent(tmp_path, window):
    center, width, function = UNDEFINED_WINDOWS[window]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the invalid DS value "NaN" as it writes it
        (path,) = write_ge_series(tmp_path, ["slice.dcm"], WindowCenter=center, WindowWidth=width)
        if function:
            ds = pydicom.dcmread(path)
            ds.VOILUTFunction = function
            ds.save_as(path)
        ours = data.read_dicom(path)
    np.testing.assert_array_equal(ours, range_rendering(path))


DEFINED_WINDOWS = {  # windows at the edge of what the standard allows, and an empty function (= LINEAR): applied
    "width 1, linear": (150, 1, None),
    "width 0.5, linear exact": (150, 0.5, "LINEAR_EXACT"),
    "width 0.5, sigmoid": (150, 0.5, "SIGMOID"),
    "empty function": (150, 200, ""),
    "second of two ignored": ([150, 0], [200, 0], None),
}


@pytest.mark.parametrize("window", DEFINED_WINDOWS, ids=list(DEFINED_WINDOWS))
def test_a_window_the_standard_defines_is_applied(tmp_path, window):
    center, width, function = DEFINED_WINDOWS[window]
    (path,) = write_ge_series(tmp_path, ["slice.dcm"], WindowCenter=center, WindowWidth=width)
    if function is not None:
        ds = pydicom.dcmread(path)
        ds.VOILUTFunction = function
        ds.save_as(path)
    ours = data.read_dicom(path).astype(np.float64)
    with np.errstate(divide="ignore", over="ignore"):  # width 1 divides by width - 1 = 0; sigmoid's exp saturates
        expected = reference_rendering(path)
    assert np.abs(ours - expected).max() <= 1.0 + 1e-9
    assert not np.array_equal(ours, range_rendering(path))


def _voi_lut_item(descriptor=(256, 0, 8), lut=None, vr="US"):
    item = pydicom.Dataset()
    if descriptor is not None:
        item.add_new(0x00283002, "US", list(descriptor))
    if lut is not None:
        item.add_new(0x00283006, vr, lut)
    return item


MALFORMED_VOI_LUTS = {  # a VOI LUT Sequence that cannot be applied: the window, then the range, instead
    "empty sequence": [],
    "no LUT Data": [_voi_lut_item(lut=None)],
    "no LUT Descriptor": [_voi_lut_item(descriptor=None, lut=list(range(256)))],
    "descriptor of two values": [_voi_lut_item(descriptor=(256, 0), lut=list(range(256)))],
    "empty LUT Data": [_voi_lut_item(lut=[])],
    "0 bits per entry": [_voi_lut_item(descriptor=(256, 0, 0), lut=list(range(256)))],
    "empty item": [pydicom.Dataset()],
}


@pytest.mark.parametrize("with_window", [True, False], ids=["then the window", "then the range"])
@pytest.mark.parametrize("lut", MALFORMED_VOI_LUTS, ids=list(MALFORMED_VOI_LUTS))
def test_an_empty_or_malformed_voi_lut_sequence_is_treated_as_absent(tmp_path, lut, with_window):
    window = {"WindowCenter": 150, "WindowWidth": 200} if with_window else {}
    (plain,) = write_ge_series(tmp_path / "plain", ["slice.dcm"], **window)
    ds = pydicom.dcmread(plain)
    ds.VOILUTSequence = pydicom.Sequence(MALFORMED_VOI_LUTS[lut])
    path = str(tmp_path / "lut.dcm")
    ds.save_as(path)
    ours = data.read_dicom(path).astype(np.float64)
    expected = reference_rendering(plain) if with_window else range_rendering(plain)
    assert np.abs(ours - expected).max() <= 1.0 + 1e-9


def test_an_empty_rescale_slope_is_treated_as_absent(tmp_path):
    (plain,) = write_ge_series(tmp_path / "plain", ["slice.dcm"])
    (path,) = write_ge_series(tmp_path, ["slice.dcm"], RescaleSlope="", RescaleIntercept=0)
    np.testing.assert_array_equal(data.read_dicom(path), range_rendering(plain))


@pytest.mark.parametrize(
    "window", [(40, 0), (40, 0.5), (40, float("nan")), (float("inf"), 400), (40,), "40,400", "44", [40, 400, 1]]
)
def test_an_explicit_window_narrower_than_1_is_refused_in_one_line_naming_the_argument(tmp_path, window):
    (path,) = write_ge_series(tmp_path, ["slice.dcm"])
    with pytest.raises(ValueError, match=r"^Expected window=\(center, width\)[^\n]*Received: window=") as caught:
        data.read_dicom(path, window=window)
    assert "\n" not in str(caught.value)
    image_set = data.ImageSet(paths=[path], labels=[0], class_names=("a",))
    for read in (data.make_dataset, data.ImageSequence):  # each passes it to ReadSettings unconverted
        with pytest.raises(ValueError, match=r"^Expected dicom_window=\(center, width\)[^\n]*Received: dicom_window="):
            read(image_set, image_size=(8, 8), dicom_window=window)
    # Width 1, the narrowest the standard defines, is a threshold at center - 0.5 (PS3.3 C.11.2.1.2.1).
    threshold = np.where(pydicom.dcmread(path).pixel_array > 149.5, 255, 0)
    np.testing.assert_array_equal(data.read_dicom(path, window=(150, 1))[..., 0], threshold)


@pytest.fixture(scope="module")
def ge_study(tmp_path_factory):
    """Two class folders of GE-like series (two patients each side), every window 0/0."""
    root = tmp_path_factory.mktemp("ge_study")
    for label, patients in (("normal", ("GE-1", "GE-2")), ("lesion", ("GE-3", "GE-4"))):
        for k, patient in enumerate(patients):
            write_ge_series(root / label, [f"{patient}-IM{i}.dcm" for i in range(1, 4)], patient=patient, seed=k)
    return root


def test_make_dataset_and_the_numpy_path_read_a_ge_series_folder_as_its_range(ge_study):
    """from_directory → check_images → make_dataset (tf.data) and ImageSequence (the numpy path) read every slice,
    each equal to the independent range rendering (native size, nearest: no resampling)."""
    image_set = data.from_directory(ge_study)
    assert len(image_set) == 12 and len(set(image_set.patient_ids)) == 4
    kept, bad = data.check_images(image_set)  # the check before the first epoch decodes one slice per kind
    assert bad == [] and len(kept) == 12
    expected = np.stack([range_rendering(p) for p in image_set.paths])
    kwargs = {"image_size": (48, 48), "interpolation": "nearest", "batch_size": 12, "shuffle": False, "cache": False}
    tf_images = next(iter(data.make_dataset(image_set, **kwargs)))[0].numpy()
    np.testing.assert_array_equal(tf_images, expected)
    numpy_images = data.ImageSequence(image_set, **kwargs)[0][0]
    np.testing.assert_array_equal(numpy_images, expected)


def test_dicom_files_are_found_by_content_whatever_their_name(tmp_path):
    """One rule for from_directory and predict: x.dcm beside extensionless, .IMA and numeric-named DICOM files are
    all images; hidden files, a DICOMDIR and non-DICOM files without an image extension are not."""
    from radtransfer.data.sources import collect_images

    first = write_ge_series(tmp_path / "a", ["IM001.dcm", "IM002", "IM003.IMA", "IM004.dcm", "IM005"], patient="P1")
    uids = [f"1.2.840.113619.2.55.3.{k}" for k in range(1, 4)]
    second = write_ge_series(tmp_path / "b", uids, patient="P2", seed=1)
    hidden = write_ge_series(tmp_path / "a", [".IM006"], patient="P1")
    (tmp_path / "a" / "README").write_text("scanner export notes\n" * 20)
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    dicomdir = pydicom.dcmread(first[0])
    dicomdir.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.1.3.10"  # Media Storage Directory Storage
    dicomdir.save_as(tmp_path / "a" / "DICOMDIR")
    image_set = data.from_directory(tmp_path)
    assert list(image_set.paths) == first + second and hidden[0] not in image_set.paths
    assert image_set.labels.tolist() == [0] * 5 + [1] * 3
    assert list(image_set.patient_ids) == ["P1"] * 5 + ["P2"] * 3
    for folder, paths, patient in (("a", first, "P1"), ("b", second, "P2")):
        found, patients = collect_images(tmp_path / folder)  # what predict reads from the class folder
        assert found == paths and patients == [patient] * len(paths)
    assert [str(pydicom.dcmread(p).PatientID) for p in image_set.paths] == list(image_set.patient_ids)

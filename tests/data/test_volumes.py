"""data.from_volumes: slices shown as a DICOM viewer shows them (checked against DICOM files written from the
same phantom with pydicom), whatever the NIfTI's storage order, and volumes whose mask is empty."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from radtransfer import data
from radtransfer.data.sources import DataSourceError

nibabel = pytest.importorskip("nibabel")
pydicom = pytest.importorskip("pydicom")

# -- the phantom, in DICOM patient coordinates (LPS, mm) --------------------------------------------------------

NX, NY, NZ = 9, 7, 5  # voxels along patient right→left, anterior→posterior, inferior→superior
X0, Y0, Z0 = -20.0, -15.0, -30.0  # LPS position of the voxel at the patient's right, anterior, inferior corner
DZ = 2.0  # slice spacing; in-plane spacing is 1 mm
WINDOW = (500, 1000)  # 0..1000 → 0..255: the ramp stays below it, the blob saturates


def phantom(lps) -> float:
    """A ramp that rises towards the patient's left (20/mm), posterior (3/mm) and superior, and a bright blob
    at the patient's left, anterior and superior corner: no flip or transposition maps it onto itself."""
    x, y, z = (float(v) for v in lps[:3])
    value = 200.0 + 20.0 * (x - X0) + 3.0 * (y - Y0) + 1.0 * (z - Z0)
    if x >= X0 + NX - 3 and y <= Y0 + 1 and z >= Z0 + DZ * (NZ - 2):
        value += 1000.0
    return value


def write_dicom(path, position, orientation, shape, spacing) -> None:
    """One CT image whose pixel (r, c) holds the phantom at IPP + c·Δc·X + r·Δr·Y (PS3.3 C.7.6.2.1.1)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    position, orientation = np.asarray(position, float), np.asarray(orientation, float)
    row_dir, col_dir = orientation[:3], orientation[3:]  # X: along a row (columns grow); Y: down a column
    pixels = np.zeros(shape, dtype=np.int16)
    for r in range(shape[0]):
        for c in range(shape[1]):
            pixels[r, c] = round(phantom(position + c * spacing[1] * row_dir + r * spacing[0] * col_dir))
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.ImagePositionPatient = [float(v) for v in position]
    ds.ImageOrientationPatient = [float(v) for v in orientation]
    ds.PixelSpacing = [float(v) for v in spacing]
    ds.Rows, ds.Columns = shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleIntercept, ds.RescaleSlope = 0, 1
    ds.PixelData = pixels.astype("<i2").tobytes()
    ds.save_as(str(path), enforce_file_format=True)


def write_nifti(path, affine, shape) -> None:
    """A volume whose voxel (i, j, k) holds the phantom at the affine's RAS position, turned into LPS."""
    volume = np.zeros(shape, dtype=np.int16)
    for index in np.ndindex(*shape):
        ras = affine @ np.array([*index, 1.0])
        volume[index] = round(phantom((-ras[0], -ras[1], ras[2])))
    nibabel.save(nibabel.Nifti1Image(volume, affine), str(path))


# RAS storage: i runs patient left→right, j posterior→anterior, k inferior→superior.
RAS_AFFINE = np.array([[1.0, 0, 0, -(X0 + NX - 1)], [0, 1.0, 0, -(Y0 + NY - 1)], [0, 0, DZ, Z0], [0, 0, 0, 1]])
# LPS storage (as DICOM stores it): i runs right→left, j anterior→posterior.
LPS_AFFINE = np.array([[-1.0, 0, 0, -X0], [0, -1.0, 0, -Y0], [0, 0, DZ, Z0], [0, 0, 0, 1]])
# Axes permuted and flipped: i runs superior→inferior, j right→left, k posterior→anterior.
PERMUTED_AFFINE = np.array(
    [[0, -1.0, 0, -X0], [0, 0, 1.0, -(Y0 + NY - 1)], [-DZ, 0, 0, Z0 + DZ * (NZ - 1)], [0, 0, 0, 1]]
)


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    """The phantom as NIfTI in three storage orders, and as DICOM: an axial series, one coronal and one sagittal
    image in the standard orientations."""
    tmp = tmp_path_factory.mktemp("volumes")
    write_nifti(tmp / "ras.nii.gz", RAS_AFFINE, (NX, NY, NZ))
    write_nifti(tmp / "lps.nii.gz", LPS_AFFINE, (NX, NY, NZ))
    write_nifti(tmp / "permuted.nii.gz", PERMUTED_AFFINE, (NZ, NX, NY))
    top = Z0 + DZ * (NZ - 1)
    axial = []
    for k in range(NZ):  # DICOM's standard axial orientation: columns → patient left, rows → posterior
        axial.append(tmp / f"axial{k}.dcm")
        write_dicom(axial[-1], (X0, Y0, Z0 + DZ * k), (1, 0, 0, 0, 1, 0), (NY, NX), (1.0, 1.0))
    coronal_y = Y0 + 1  # coronal: columns → patient left, rows → inferior
    write_dicom(tmp / "coronal.dcm", (X0, coronal_y, top), (1, 0, 0, 0, 0, -1), (NZ, NX), (DZ, 1.0))
    sagittal_x = X0 + NX - 2  # sagittal: columns → posterior, rows → inferior
    write_dicom(tmp / "sagittal.dcm", (sagittal_x, Y0, top), (0, 1, 0, 0, 0, -1), (NZ, NY), (DZ, 1.0))
    return {
        "dir": tmp,
        "axial": axial,
        "coronal": (tmp / "coronal.dcm", coronal_y),
        "sagittal": (tmp / "sagittal.dcm", sagittal_x),
    }


def _slices(directory, volume, plane):
    import pandas as pd

    frame = pd.DataFrame({"volume": [str(directory / volume)], "label": ["a"]})
    image_set = data.from_volumes(frame, plane=plane, window=WINDOW)
    return {int(s): np.asarray(im) for s, im in zip(image_set.extras["slice"], image_set.images)}


def _dicom(path):
    return data.read_dicom(path, window=WINDOW)[..., 0]


def _assert_same_image(ours, dicom):
    assert ours.shape == dicom.shape
    # DICOM's linear window ((x - (c - ½)) / (w - 1)) and a plain one differ by at most one grey level; a mirror
    # image differs by the ramp, 5 grey levels a column, and by the blob.
    worst = int(np.abs(ours.astype(int) - dicom.astype(int)).max())
    assert worst <= 1, f"differs from the DICOM rendering by up to {worst} grey levels"


def _blob(image):
    rows, cols = np.nonzero(image == 255)
    assert len(rows), "the blob is not in this slice"
    return rows.mean() / (image.shape[0] - 1), cols.mean() / (image.shape[1] - 1)


def test_axial_slices_are_the_dicom_series_radiological_view(scans):
    slices = _slices(scans["dir"], "ras.nii.gz", "axial")
    assert sorted(slices) == list(range(NZ))
    for k, path in enumerate(scans["axial"]):  # canonical k runs inferior → superior, as the series does
        _assert_same_image(slices[k], _dicom(path))
    row, col = _blob(slices[NZ - 1])
    assert row < 0.5 and col > 0.5  # anterior at the top; the patient's left on the image's right


def test_coronal_and_sagittal_slices_follow_the_viewer_convention(scans):
    coronal_path, coronal_y = scans["coronal"]
    coronal = _slices(scans["dir"], "ras.nii.gz", "coronal")[int(round(-coronal_y - RAS_AFFINE[1, 3]))]
    _assert_same_image(coronal, _dicom(coronal_path))
    sagittal_path, sagittal_x = scans["sagittal"]
    sagittal = _slices(scans["dir"], "ras.nii.gz", "sagittal")[int(round(-sagittal_x - RAS_AFFINE[0, 3]))]
    _assert_same_image(sagittal, _dicom(sagittal_path))
    row, col = _blob(coronal)
    assert row < 0.5 and col > 0.5  # superior at the top; the patient's left on the image's right
    row, col = _blob(sagittal)
    assert row < 0.5 and col < 0.5  # superior at the top; anterior on the image's left


@pytest.mark.parametrize("stored", ["lps.nii.gz", "permuted.nii.gz"])
@pytest.mark.parametrize("plane", ["axial", "coronal", "sagittal"])
def test_the_storage_order_does_not_change_the_slices(scans, stored, plane):
    reference = _slices(scans["dir"], "ras.nii.gz", plane)
    other = _slices(scans["dir"], stored, plane)
    assert sorted(other) == sorted(reference)
    for index, image in reference.items():
        np.testing.assert_array_equal(other[index], image)


# -- empty masks ------------------------------------------------------------------------------------------------


@pytest.fixture()
def masked(tmp_path):
    """Three 6×5×9 volumes: lesions touching axial slices 1–3 and 4–6, and a normal volume with an empty mask."""
    import pandas as pd

    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    volume = np.arange(6 * 5 * 9, dtype=np.int16).reshape(6, 5, 9)
    rows = []
    for name, touched in (("lesion1", range(1, 4)), ("lesion2", range(4, 7)), ("normal", ())):
        mask = np.zeros(volume.shape, dtype=np.uint8)
        for k in touched:
            mask[2:4, 2:4, k] = 1
        nibabel.save(nibabel.Nifti1Image(volume, affine), str(tmp_path / f"{name}.nii.gz"))
        nibabel.save(nibabel.Nifti1Image(mask, affine), str(tmp_path / f"{name}_mask.nii.gz"))
        rows.append(
            {
                "volume": f"{name}.nii.gz",
                "mask": f"{name}_mask.nii.gz",
                "label": "normal" if name == "normal" else "lesion",
                "patient": name,
            }
        )
    pd.DataFrame(rows).to_csv(tmp_path / "volumes.csv", index=False)
    return tmp_path / "volumes.csv"


def _by_volume(image_set):
    out = {}
    for volume, index in zip(image_set.extras["volume"], image_set.extras["slice"]):
        out.setdefault(str(volume).rsplit("/", 1)[-1].split(".")[0], []).append(int(index))
    return out


def test_an_empty_mask_falls_back_to_as_many_middle_slices_as_the_other_masks_touch(masked):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the fallback is the documented default: no warning
        image_set = data.from_volumes(masked, mask_col="mask", slices="mask", window=WINDOW)
    assert _by_volume(image_set) == {"lesion1": [1, 2, 3], "lesion2": [4, 5, 6], "normal": [3, 4, 5]}
    assert list(image_set.extras["mask_empty"]) == [False] * 6 + [True] * 3
    assert image_set.class_names == ("lesion", "normal")
    chosen = data.from_volumes(masked, mask_col="mask", slices="mask", empty_mask=("middle", 1), window=WINDOW)
    assert _by_volume(chosen)["normal"] == [4]
    sagittal = data.from_volumes(masked, mask_col="mask", slices="mask", plane="sagittal", window=WINDOW)
    assert _by_volume(sagittal) == {"lesion1": [2, 3], "lesion2": [2, 3], "normal": [2, 3]}  # 2 of 6, centred


def test_an_empty_mask_can_be_skipped_with_a_count_or_refused(masked):
    with pytest.warns(UserWarning, match=r"Skipped 1 of 3 volumes whose mask is empty.*/normal\.nii\.gz"):
        image_set = data.from_volumes(masked, mask_col="mask", slices="mask", empty_mask="skip", window=WINDOW)
    assert _by_volume(image_set) == {"lesion1": [1, 2, 3], "lesion2": [4, 5, 6]}
    with pytest.raises(DataSourceError, match=r"mask '.*normal_mask\.nii\.gz' of volume '.*normal\.nii\.gz' is empty"):
        data.from_volumes(masked, mask_col="mask", slices="mask", empty_mask="raise")


def test_a_bad_empty_mask_value_is_named_with_the_closest_choice(masked):
    with pytest.raises(ValueError, match=r"empty_mask='skp'.*Did you mean \"skip\""):
        data.from_volumes(masked, mask_col="mask", slices="mask", empty_mask="skp")
    with pytest.raises(ValueError, match=r"empty_mask=\('middle', 0\)"):
        data.from_volumes(masked, mask_col="mask", slices="mask", empty_mask=("middle", 0))


def test_only_empty_masks_need_a_slice_count(tmp_path, masked):
    import pandas as pd

    frame = pd.read_csv(masked)
    frame = frame[frame["patient"] == "normal"].assign(
        volume=lambda f: [str(tmp_path / v) for v in f["volume"]], mask=lambda f: [str(tmp_path / m) for m in f["mask"]]
    )
    with pytest.raises(DataSourceError, match=r"Every volume's mask is empty.*empty_mask=\('middle', k\)"):
        data.from_volumes(frame, mask_col="mask", slices="mask")
    image_set = data.from_volumes(frame, mask_col="mask", slices="mask", empty_mask=("middle", 2))
    assert _by_volume(image_set) == {"normal": [3, 4]}
    with pytest.raises(DataSourceError, match="leaves no volume"):
        data.from_volumes(frame, mask_col="mask", slices="mask", empty_mask="skip")


def test_class_names_and_percentiles_are_keywords_and_an_unknown_one_is_refused_in_one_line(masked):
    """from_volumes declares ten parameters; class_names and percentiles stay keywords, checked once."""
    volume = np.arange(6 * 5 * 9, dtype=np.int16).reshape(6, 5, 9)  # the fixture's volumes
    low, high = np.percentile(volume, (10, 90))
    image_set = data.from_volumes(masked, slices=("middle", 1), class_names=("normal", "lesion"), percentiles=(10, 90))
    assert list(image_set.class_names) == ["normal", "lesion"]
    expected = np.round((np.clip(volume[:, :, 4].astype(float), low, high) - low) / (high - low) * 255)
    first = np.asarray(image_set.images[0])  # the middle axial slice, shown as a viewer shows it: same values
    np.testing.assert_array_equal(np.sort(first.ravel()), np.sort(expected.astype(np.uint8).ravel()))
    with pytest.raises(TypeError) as refused:
        data.from_volumes(masked, percentile=(1, 99))
    message = str(refused.value)
    assert "\n" not in message and "'percentile'" in message and 'Did you mean "percentiles"' in message
    assert "class_names" in message and "empty_mask" in message

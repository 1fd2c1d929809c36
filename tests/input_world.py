"""One set of pixels written as every kind of input the library accepts, for the battery in test_input_kinds.py.

32 grey 16×16 images of 16 patients (8 per class, 2 slices each; the positive class carries a brighter square);
every image spans 0..255, so renderers that stretch an image to its own range (DICOM without a window) and
volumes read with the window (127.5, 255) give back exactly these pixels. The last positive patient's second slice
is a copy of the previous patient's first (a duplicate the audit must find whatever the kind). Patients are split
the same way for every kind: train 4 + 4, val 2 + 2, test 2 + 2.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

CLASSES = ("parasitized", "uninfected")  # the names of the mocked tensorflow-datasets builder
N_PATIENTS, SLICES, SIZE = 16, 2, 16
PARTS = {
    "train": [0, 1, 2, 3, 8, 9, 10, 11],
    "val": [4, 5, 12, 13],
    "test": [6, 7, 14, 15],
}
DUPLICATE = (15 * SLICES + 1, 14 * SLICES)  # (copy, original): image indices
TFDS_NAME, TFDS_SPLIT = "malaria", "train"  # a two-class tensorflow-datasets builder with named classes, mocked

# Every input kind, by how a user holds it.
FILE_KINDS = ("class_folder", "split_folder", "csv", "dicom")
MEMORY_KINDS = ("nifti", "tfds", "image_set_arrays")
IMAGE_SET_KINDS = (*FILE_KINDS, *MEMORY_KINDS)
DATASET_KINDS = ("make_dataset", "tf_data", "py_dataset", "numpy")
KINDS = (*IMAGE_SET_KINDS, *DATASET_KINDS)
WITH_PATIENTS = ("csv", "dicom", "nifti", "tfds", "image_set_arrays")


def patient_of(index: int) -> int:
    return index // SLICES


def label_of_patient(patient: int) -> int:
    return patient // (N_PATIENTS // 2)


def pid(patient: int) -> str:
    return f"p{patient:02d}"


def name(index: int) -> str:
    return f"{pid(patient_of(index))}_s{index % SLICES}"


def pixels() -> np.ndarray:
    rng = np.random.default_rng(28)
    images = []
    for index in range(N_PATIENTS * SLICES):
        image = rng.normal(100.0, 30.0, (SIZE, SIZE))
        if label_of_patient(patient_of(index)):
            image[4:12, 4:12] += 70.0
        image = np.clip(np.round(image), 1, 254).astype(np.uint8)
        image[0, 0], image[0, 1] = 0, 255
        images.append(image)
    copy, original = DUPLICATE
    images[copy] = images[original].copy()
    return np.stack(images)


@dataclass
class World:
    root: Path
    grey: np.ndarray  # (32, 16, 16) uint8
    labels: np.ndarray
    patients: np.ndarray
    indices: dict = field(default_factory=dict)  # part -> image indices, in set order

    @property
    def rgb(self) -> np.ndarray:
        return np.repeat(self.grey[..., None], 3, axis=-1)

    def one_hot(self, part: str) -> np.ndarray:
        return np.eye(len(CLASSES), dtype=np.float32)[self.labels[self.indices[part]]]

    def path(self, kind: str, index: int) -> Path:
        cls = CLASSES[self.labels[index]]
        if kind == "class_folder":
            return self.root / "folder" / cls / f"{name(index)}.png"
        if kind == "dicom":
            return self.root / "dicom" / cls / f"{name(index)}.dcm"
        raise KeyError(kind)

    def split_path(self, part: str, index: int) -> Path:
        return self.root / "split" / part / CLASSES[self.labels[index]] / f"{name(index)}.png"

    def spec(self, kind: str) -> str:
        """What the command line takes as DATA for this kind."""
        return {
            "class_folder": str(self.root / "folder"),
            "split_folder": str(self.root / "split"),
            "csv": str(self.root / "manifest.csv"),
            "dicom": str(self.root / "dicom"),
            "nifti": str(self.root / "volumes.csv"),
            "tfds": f"tfds:{TFDS_NAME}:{TFDS_SPLIT}",
        }[kind]


def make_world(root: Path) -> World:
    import pandas as pd
    from PIL import Image

    grey = pixels()
    n = len(grey)
    labels = np.array([label_of_patient(patient_of(i)) for i in range(n)])
    patients = np.array([pid(patient_of(i)) for i in range(n)], dtype=object)
    world = World(Path(root), grey, labels, patients)
    for part, members in PARTS.items():
        world.indices[part] = np.array([i for i in range(n) if patient_of(i) in members])
    for index in range(n):
        for path in (world.path("class_folder", index), world.split_path(_part_of(world, index), index)):
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(grey[index], mode="L").save(path)
    rows = [
        {"path": f"folder/{CLASSES[labels[i]]}/{name(i)}.png", "label": CLASSES[labels[i]], "patient_id": patients[i]}
        for i in range(n)
    ]
    pd.DataFrame(rows).to_csv(world.root / "manifest.csv", index=False)
    _write_dicom(world)
    _write_volumes(world)
    return world


def _part_of(world: World, index: int) -> str:
    return next(part for part, members in world.indices.items() if index in members)


def _write_dicom(world: World) -> None:
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    for index, image in enumerate(world.grey):
        path = world.path("dicom", index)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality = "MR"
        ds.PatientID = world.patients[index]
        ds.SeriesInstanceUID = generate_uid(entropy_srcs=[str(world.patients[index])])
        ds.InstanceNumber = index % SLICES + 1
        ds.Rows, ds.Columns = image.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.PixelData = image.tobytes()
        ds.save_as(path, enforce_file_format=True)


def _write_volumes(world: World) -> None:
    """One NIfTI volume per patient, its slices along the axial axis, stored so that ``from_volumes`` shows each
    slice as the image (the inverse of the radiological display, found among the eight flips and rotations)."""
    import nibabel
    import pandas as pd

    from radtransfer.data.volumes import _displayed

    probe = np.arange(SIZE * SIZE).reshape(SIZE, SIZE)
    stored = next(
        t
        for t in (lambda a, k=k, f=f: np.rot90(a[:, ::-1] if f else a, k) for k in range(4) for f in (0, 1))
        if np.array_equal(_displayed(t(probe)), probe)
    )
    folder = world.root / "nifti"
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for patient in range(N_PATIENTS):
        members = [i for i in range(len(world.grey)) if patient_of(i) == patient]
        volume = np.stack([stored(world.grey[i]) for i in members], axis=-1).astype(np.int16)
        path = folder / f"{pid(patient)}.nii.gz"
        nibabel.save(nibabel.Nifti1Image(volume, np.eye(4)), path)
        rows.append(
            {"volume": f"nifti/{path.name}", "label": CLASSES[label_of_patient(patient)], "patient_id": pid(patient)}
        )
    pd.DataFrame(rows).to_csv(world.root / "volumes.csv", index=False)


@contextlib.contextmanager
def mocked_tfds(world: World):
    """tensorflow-datasets serving the world's images as a two-class builder's split (RGB records with an id)."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    def as_dataset(self, split, **kwargs):
        return tf.data.Dataset.from_tensor_slices(
            {"image": world.rgb, "label": world.labels, "id": np.array([p.encode() for p in world.patients])}
        )

    with tfds.testing.mock_data(
        num_examples=len(world.grey), as_dataset_fn=as_dataset, policy=tfds.testing.MockPolicy.USE_CODE
    ):
        yield

"""Reading medical images, splitting them by patient, and feeding them to Keras with tf.data.

from radtransfer import data
images = data.from_csv("manifest.csv", image_col="path", label_col="label", patient_col="patient")
train, val, test = images.split(val=0.10, test=0.15, by="patient", seed=726)
train_ds = data.make_dataset(train, augment="radimagenet", seed=726)
val_ds = data.make_dataset(val, shuffle=False)
"""

from ..errors import BadImagesError, DataSourceError, DicomDecodeError, ImageReadError, LeakageError
from .audit import AuditReport, Finding, audit, audit_folds, audit_splits
from .augment import PRESETS as AUGMENT_PRESETS
from .augment import Augment
from .confounders import Marker, marked_indices, plant_marker
from .decode import ReadSettings, check_files
from .dicom import read_dicom
from .failures import check_images, check_parts, readable_pipeline_errors, validate_images
from .fingerprint import data_manifest
from .imageset import ImageSet, check_no_leakage
from .loading import load, load_parts
from .py_dataset.numpy_read import read_image_uint8
from .sources import from_csv, from_directory, from_split_directory, from_tfds, is_split_directory
from .tf_data.pipeline import make_dataset
from .tf_data.stream import DataStream, stream_of
from .volumes import from_volumes

__all__ = [
    "audit",
    "audit_folds",
    "audit_splits",
    "epoch_order",
    "AuditReport",
    "Finding",
    "AUGMENT_PRESETS",
    "Augment",
    "BadImagesError",
    "DataSourceError",
    "DataStream",
    "DicomDecodeError",
    "ImageSequence",
    "ImageReadError",
    "ReadSettings",
    "ImageSet",
    "LeakageError",
    "Marker",
    "check_files",
    "check_images",
    "check_parts",
    "check_no_leakage",
    "data_manifest",
    "from_csv",
    "from_directory",
    "from_split_directory",
    "from_tfds",
    "from_volumes",
    "is_split_directory",
    "load",
    "load_parts",
    "make_dataset",
    "marked_indices",
    "plant_marker",
    "read_dicom",
    "read_image_uint8",
    "readable_pipeline_errors",
    "stream_of",
    "validate_images",
]


def __getattr__(name):
    """``ImageSequence`` and ``epoch_order`` import Keras, so they are imported when first asked for."""
    if name in ("ImageSequence", "epoch_order"):
        from .py_dataset import sequence

        return getattr(sequence, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

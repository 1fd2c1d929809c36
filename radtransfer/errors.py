"""Exceptions a user can cause. Each message says what was wrong, where, and what to do."""


class RadtransferError(Exception):
    """Base class of radtransfer's user-facing errors (the CLI prints them as one line)."""


class WeightsNotFoundError(RadtransferError, FileNotFoundError):
    """No weight file was found where radtransfer looked, or a download failed."""


class WeightsFileError(RadtransferError, ValueError):
    """A weight file exists but cannot be used (not HDF5, truncated, wrong backbone, pinned hash...)."""


class ClassMismatchError(RadtransferError, ValueError):
    """The classes of a data set differ from those the model was trained on."""


class DataSourceError(RadtransferError, ValueError):
    """A folder, CSV or dataset cannot be turned into an image set."""


class LeakageError(RadtransferError, ValueError):
    """A patient's images fall in more than one part of a split."""


class DataAuditError(RadtransferError, ValueError):
    """The data audit found errors (duplicates or near duplicates across parts, label conflicts, patient leaks)
    and training was asked to be strict about them (``.report`` holds the AuditReport)."""

    def __init__(self, message, report):
        super().__init__(message)
        self.report = report


class BadImagesError(RadtransferError, ValueError):
    """Some image files are missing or unreadable (listed in the message and in ``.bad``)."""

    def __init__(self, message, bad):
        super().__init__(message)
        self.bad = bad


class ImageReadError(RadtransferError, ValueError):
    """An image could not be read while the pipeline ran (the message names the file when it can)."""


class DicomDecodeError(RadtransferError, ValueError):
    """A DICOM file's pixels cannot be decoded or rendered (the message names the file)."""

    def __init__(self, path, reason: str):
        super().__init__(f"'{path}': {reason}")
        self.path, self.reason = str(path), reason


class RunMismatchError(RadtransferError, ValueError):
    """The run folder holds a run with other settings than the ones asked for."""

    def __init__(self, message, differences=()):
        super().__init__(message)
        self.differences = list(differences)


class HeldOutDataError(RadtransferError, ValueError):
    """Data meant to be held out (a temperature's) holds images of the run's test split."""


class RunFolderInUseError(RadtransferError, RuntimeError):
    """Another live process is training into the same run folder (its claim names it)."""

    def __init__(self, message, holder=None):
        super().__init__(message)
        self.holder = holder or {}


class TrainingDivergedError(RadtransferError, RuntimeError):
    """The loss became NaN or infinite. ``.result`` describes the run up to then (its ``best_epoch`` is
    the last good checkpoint, -1 if none); the model holds that checkpoint's weights when there is one."""

    def __init__(self, message, result=None, diverged_epoch=None):
        super().__init__(message)
        self.result = result
        self.diverged_epoch = diverged_epoch


class GridRunsFailedError(RadtransferError, RuntimeError):
    """Some runs of a grid raised an error (all other runs were still recorded)."""

    def __init__(self, message, failures):
        super().__init__(message)
        self.failures = failures

"""Exceptions a user can cause. Each message says what was wrong, where, and what to do."""


class RadtransferError(Exception):
    """Base class of radtransfer's user-facing errors (the CLI prints them as one line)."""


class WeightsNotFoundError(RadtransferError, FileNotFoundError):
    """No weight file was found where radtransfer looked, or a download failed."""


class WeightsFileError(RadtransferError, ValueError):
    """A weight file exists but cannot be used (not HDF5, truncated, wrong backbone, pinned hash...)."""


class ClassMismatchError(RadtransferError, ValueError):
    """The classes of a data set differ from those the model was trained on."""

"""Optional dependencies: imported when used, with an error that says which extra installs them."""

from __future__ import annotations

import importlib


def require(module: str, extra: str, purpose: str, min_version: tuple | None = None, package: str | None = None):
    """Imports ``module``, or raises an ImportError saying what needs it and how to install it.

    Args:
        module: the module to import ("pydicom", "ray", "nibabel", "yaml").
        extra: the radtransfer extra that installs it ("dicom", "ray", ...).
        purpose: what needs it, for the message ("Reading DICOM files").
        min_version: the lowest version that works, as a tuple of ints.
        package: the name pip knows it by, when it differs from the module's (PyYAML for yaml).
    """
    hint = f"pip install 'radtransfer[{extra}]'"
    try:
        imported = importlib.import_module(module)
    except ImportError:
        raise ImportError(f"{purpose} needs {package or module}, which is not installed: {hint}.") from None
    if min_version is not None:
        found = getattr(imported, "__version__", "0")
        version = tuple(int(p) for p in str(found).split(".")[: len(min_version)] if p.isdigit())
        if version < tuple(min_version):
            wanted = ".".join(map(str, min_version))
            raise ImportError(f"{purpose} needs {package or module} ≥ {wanted}; found {found}. Upgrade: {hint}.")
    return imported

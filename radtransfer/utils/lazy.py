"""Packages whose public names are imported on first use (PEP 562), so ``import radtransfer`` and the command's
``--help`` answer at once instead of starting TensorFlow."""

from __future__ import annotations

import importlib


def lazy_exports(package: str, exports: dict):
    """``(__getattr__, __dir__)`` for a package: ``exports`` maps each public name to the module that defines it,
    relative to the package ("name": ".module" for the attribute of that name, or ".module:" for the module
    itself)."""

    def __getattr__(name):
        target = exports.get(name)
        if target is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module_name, _, attribute = target.partition(":")
        module = importlib.import_module(module_name, package)
        value = module if target.endswith(":") else getattr(module, attribute or name)
        importlib.import_module(package).__dict__[name] = value  # the next access is a plain attribute
        return value

    def __dir__():
        return sorted(set(exports) | set(importlib.import_module(package).__dict__))

    return __getattr__, __dir__

"""The TensorFlow-free image path stays free of TensorFlow: ``data/py_dataset/`` never imports ``data/tf_data/`` or
TensorFlow, nor does any radtransfer module it imports (read from the source), and reading a batch with
``ImageSequence`` runs no radtransfer import of TensorFlow (a subprocess that records every import).

Under the tensorflow Keras backend ``import keras`` loads TensorFlow itself, so there the subprocess asserts on
radtransfer's own imports only; under KERAS_BACKEND=jax (when jax is installed) it asserts that TensorFlow is not
loaded at all."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PY_DATASET = REPO / "radtransfer" / "data" / "py_dataset"
FORBIDDEN = ("tensorflow", "radtransfer.data.tf_data")


def _module_file(name: str) -> Path | None:
    path = REPO.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def _imports(name: str) -> list[tuple[str, int]]:
    """Every module an import statement of module ``name`` names (inside functions too), with its line."""
    path = _module_file(name)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module
            found.append((base, node.lineno))
            found += [
                (f"{base}.{alias.name}", node.lineno) for alias in node.names if _module_file(f"{base}.{alias.name}")
            ]
    return found


def test_py_dataset_and_what_it_imports_never_import_tf_data_or_tensorflow():
    start = [f"radtransfer.data.py_dataset.{path.stem}" for path in sorted(PY_DATASET.glob("*.py"))]
    assert "radtransfer.data.py_dataset.sequence" in start and "radtransfer.data.py_dataset.numpy_read" in start
    seen, todo, bad = set(), list(start), []
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for imported, line in _imports(name):
            if imported.startswith(FORBIDDEN):
                bad.append(f"{name}:{line} imports {imported}")
            if imported.startswith("radtransfer") and _module_file(imported):
                todo.append(imported)
    assert not bad, bad
    assert "radtransfer.data.decode" in seen and "radtransfer.data.cache" in seen  # the shared halves are followed


READ_A_BATCH = textwrap.dedent("""
    import builtins, json, sys

    imported_by_radtransfer = []
    original = builtins.__import__

    def recording(name, globals=None, locals=None, fromlist=(), level=0):
        importer = (globals or {}).get("__name__", "")
        if name.split(".")[0] == "tensorflow" and importer.startswith("radtransfer"):
            imported_by_radtransfer.append(importer)
        return original(name, globals, locals, fromlist, level)

    builtins.__import__ = recording
    import numpy as np
    from PIL import Image

    from radtransfer.data.imageset import ImageSet
    from radtransfer.data.py_dataset import array_cache, arrays, device_augment, numpy_read, sequence

    folder = sys.argv[1]
    paths = []
    for i in range(6):
        paths.append(f"{folder}/{i}.png")
        Image.fromarray(np.full((40, 36), 40 * i, dtype=np.uint8)).save(paths[-1])
    image_set = ImageSet(paths=np.array(paths), labels=np.arange(6) % 2, class_names=("a", "b"))
    batches = sequence.ImageSequence(image_set, image_size=(16, 16), batch_size=4, shuffle=True, seed=1, cache=True)
    images, labels = batches[0]
    augmented = sequence.TransformSequence(batches, "radimagenet")[1]
    print("RESULT " + json.dumps({
        "shape": list(images.shape), "labels": labels.shape[-1], "transforms": list(augmented[0]["transforms"].shape),
        "imported_by_radtransfer": sorted(set(imported_by_radtransfer)),
        "tf_data_modules": sorted(m for m in sys.modules if m.startswith("radtransfer.data.tf_data.")),
        "tensorflow_loaded": "tensorflow" in sys.modules,
    }))
""")


def _read_a_batch(tmp_path, backend: str) -> dict:
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, "-c", READ_A_BATCH, str(tmp_path)], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.split("RESULT ", 1)[1].splitlines()[0])


def test_reading_a_batch_with_image_sequence_runs_no_radtransfer_import_of_tensorflow(tmp_path):
    result = _read_a_batch(tmp_path, "tensorflow")  # keras loads TensorFlow itself here: radtransfer's imports only
    assert result["shape"] == [4, 16, 16, 3] and result["labels"] == 2 and result["transforms"] == [2, 8]
    assert result["imported_by_radtransfer"] == []
    # radtransfer.data's own __init__ imports make_dataset (TensorFlow-free until it runs); py_dataset loads no more.
    assert set(result["tf_data_modules"]) <= {
        "radtransfer.data.tf_data.pipeline",
        "radtransfer.data.tf_data.stream",
        "radtransfer.data.tf_data.decode",
        "radtransfer.data.tf_data.augment",
    }


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_under_jax_reading_a_batch_never_loads_tensorflow(tmp_path):
    result = _read_a_batch(tmp_path, "jax")
    assert result["shape"] == [4, 16, 16, 3]
    assert not result["tensorflow_loaded"] and result["imported_by_radtransfer"] == []

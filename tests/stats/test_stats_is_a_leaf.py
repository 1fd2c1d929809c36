"""``radtransfer.stats`` is a leaf of pure numbers: it imports NumPy, SciPy, scikit-learn, the standard library and
``radtransfer.utils``/``radtransfer.errors`` only, never TensorFlow, Keras or a higher folder of radtransfer."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import radtransfer.stats

STATS = Path(radtransfer.stats.__file__).parent
ALLOWED = {"numpy", "scipy", "sklearn", "radtransfer.utils", "radtransfer.errors", "radtransfer.stats"}
MODULES = sorted(f"radtransfer.stats.{p.stem}" for p in STATS.glob("*.py") if p.stem != "__init__")


def _imports(path: Path) -> list[str]:
    """The absolute name of every module a file imports (relative imports resolved against radtransfer.stats)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                names.append(node.module)
            else:
                base = "radtransfer.stats".split(".")[: 2 - (node.level - 1)]
                names.append(".".join(base + ([node.module] if node.module else [])))
    return names


def test_every_import_in_stats_is_numpy_scipy_sklearn_the_standard_library_or_utils():
    wrong = {}
    for path in sorted(STATS.glob("*.py")):
        for name in _imports(path):
            top = name.split(".")[0]
            allowed = top in sys.stdlib_module_names or any(name == a or name.startswith(a + ".") for a in ALLOWED)
            if not allowed:
                wrong.setdefault(path.name, []).append(name)
    assert not wrong, f"radtransfer/stats imports outside its floor: {wrong}"
    assert "radtransfer.stats.calibration" in _imports(STATS / "temperature.py")  # the resolver reads relative ones


def test_importing_every_stats_module_and_using_it_starts_no_tensorflow_and_no_higher_folder():
    probe = (
        "import importlib, json, sys\n"
        "import numpy as np\n"
        "for name in json.loads(sys.argv[1]): importlib.import_module(name)\n"
        "from radtransfer import stats\n"
        "y = np.array([0, 1, 0, 1, 1, 0]); p = np.array([.2, .7, .4, .6, .9, .1])\n"
        "stats.bootstrap_auc_ci(y, np.stack([1 - p, p], 1), n=20); stats.fit_temperature(y, np.stack([1 - p, p], 1))\n"
        "stats.youden_threshold(y == 1, p)\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'torch', 'jax')"
        " or m.startswith(('radtransfer.data', 'radtransfer.models', 'radtransfer.training',"
        " 'radtransfer.evaluation', 'radtransfer.grid')))\n"
        "print('LOADED ' + json.dumps(loaded))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, json.dumps(MODULES)], capture_output=True, text=True, timeout=300
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("LOADED ")]
    assert lines, done.stderr[-3000:]
    assert json.loads(lines[-1][len("LOADED ") :]) == []
    assert set(MODULES) >= {f"radtransfer.stats.{m}" for m in ("auc", "bootstrap", "calibration", "temperature")}

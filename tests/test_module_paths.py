"""The package's module paths: ``radtransfer.stats`` (a package), ``radtransfer.gradcam``, ``radtransfer.records`` and
``radtransfer.datasets`` (radtransfer 0.1's module names, now one module object with the module that holds the code)
import by path and as attributes, to the same object, and ``import radtransfer`` still starts no TensorFlow."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

# module path -> (the module that holds the code, a name it defines)
PATHS = {
    "radtransfer.stats": ("radtransfer.stats", "auc_score"),
    "radtransfer.gradcam": ("radtransfer.evaluation.gradcam", "pointing_game"),
    "radtransfer.records": ("radtransfer.grid.records", "GridSpec"),
    "radtransfer.datasets": ("radtransfer.data.synthetic", "load_synthetic_brain_mri"),
}

_PROBE = """
import importlib, json, sys
paths = json.loads(sys.argv[1])
import radtransfer
report = {"tensorflow_after_import_radtransfer": "tensorflow" in sys.modules}
for path, (home, name) in paths.items():
    exec(f"import {path} as by_path")  # the statement a user writes, the first touch of that name
    exec(f"from {path} import {name} as defined")
    attribute = getattr(radtransfer, path.rpartition(".")[2])
    report[path] = {
        "same": by_path is sys.modules[path] is attribute is importlib.import_module(home),
        "name": defined is getattr(importlib.import_module(home), name),
    }
import numpy as np
import radtransfer.gradcam as g
heatmaps, masks = np.zeros((2, 4, 4)), np.zeros((2, 4, 4), dtype=bool)
heatmaps[0, 1, 1], heatmaps[1, 3, 3], masks[:, 1, 1] = 1.0, 1.0, True
report["pointing_game"] = g.pointing_game(heatmaps, masks).tolist()  # is the hottest pixel in the mask?
print("RESULT " + json.dumps(report))
"""


def test_the_four_module_paths_import_by_path_to_the_module_their_attribute_gives():
    """A fresh process imports each by its path first (``import radtransfer.gradcam as g``, ``from radtransfer.gradcam
    import pointing_game``) and calls through it; ``sys.modules`` then holds the code's own module under both names,
    and ``import radtransfer`` alone started no TensorFlow."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(PATHS)], capture_output=True, text=True, timeout=300
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, done.stderr[-3000:]
    report = json.loads(lines[-1][len("RESULT ") :])
    assert report.pop("tensorflow_after_import_radtransfer") is False
    assert report.pop("pointing_game") == [1.0, 0.0]
    assert report == {path: {"same": True, "name": True} for path in PATHS}


def test_the_attribute_and_the_module_path_are_one_object_whichever_comes_first():
    """In this process (whatever other tests imported before): the attribute, ``import_module`` of the path and the
    code's own module are one object, and ``radtransfer.stats`` offers every name it offered as a module."""
    import radtransfer

    for path, (home, _) in PATHS.items():
        attribute = getattr(radtransfer, path.rpartition(".")[2])
        assert attribute is importlib.import_module(path) is sys.modules[path] is importlib.import_module(home), path
    before = {  # the public names of the module radtransfer.stats (evaluation/stats.py) at 9c40546
        "BCA_MAX_UNITS", "SMALL_SAMPLE_RARER", "SMALL_SAMPLE_UNITS", "auc_score", "bootstrap_auc_ci",
        "bootstrap_operating_point_ci", "compare_aucs", "delong_test", "paired_bootstrap_test", "small_sample_note",
        "stratified_bootstrap_ci", "units_per_class", "youden_threshold",
    }  # fmt: skip
    assert before <= set(radtransfer.stats.__all__) and all(hasattr(radtransfer.stats, n) for n in before)

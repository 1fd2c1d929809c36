"""RunFolder: one training run's folder: what it holds, whether it may be resumed, and atomic writes.

Layout::

    config.json        the run's identity (the settings that define it), its fingerprint, and every
                       resolved setting (precision, XLA, versions, ...)
    state.json         progress after each finished epoch: next epoch, best epoch, early-stopping and
                       learning-rate state, the seed in use, status (running / finished / diverged)
    history.csv        one row per finished epoch
    last.weights.h5    the model and optimizer after the last finished epoch (deleted when done)
    best.weights.h5    the model's weights at the best epoch (lowest val_loss)
    best.keras         the best model, float32, with the class names and the validation threshold
    result.json        the FineTuneResult of a finished run
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path


from ..errors import RadtransferError, RunMismatchError
from ..utils.io import write_json_atomic, write_text_atomic
from .config import differences

CONFIG = "config.json"
STATE = "state.json"
HISTORY = "history.csv"
LAST = "last.weights.h5"
BEST_WEIGHTS = "best.weights.h5"
BEST_MODEL = "best.keras"
RESULT = "result.json"
_FILES = (CONFIG, STATE, HISTORY, LAST, BEST_WEIGHTS, BEST_MODEL, RESULT)
_LEGACY = ("backup",)  # BackupAndRestore's folder (radtransfer 0.1 runs)


class RunFolder:
    """A training run's folder.

    Args:
        path: the folder (created if missing; must be writable).
    """

    def __init__(self, path):
        self.path = Path(path).expanduser()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / f".write_test{os.getpid()}"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise RadtransferError(f"Cannot write to out_dir '{self.path}': {exc.strerror or exc}. "
                                   "Choose a writable folder.") from None

    def __repr__(self) -> str:
        return f"RunFolder('{self.path}', status={self.status()!r})"

    def file(self, name: str) -> Path:
        return self.path / name

    def paths(self) -> dict:
        return {"config": str(self.file(CONFIG)), "history": str(self.file(HISTORY)),
                "best_model": str(self.file(BEST_MODEL)), "best_weights": str(self.file(BEST_WEIGHTS)),
                "result": str(self.file(RESULT))}

    # -- reading ---------------------------------------------------------------------------------

    def read_json(self, name: str):
        path = self.file(name)
        if not path.exists():
            return None
        return json.loads(path.read_text())

    def status(self) -> str:
        """"new" (nothing here), "interrupted", "finished", "diverged", or "legacy" (a run written by
        radtransfer 0.1, which has no fingerprint)."""
        state = self.read_json(STATE)
        if state is not None:
            return {"finished": "finished", "diverged": "diverged"}.get(state.get("status"), "interrupted")
        if self.file(RESULT).exists() or self.file(HISTORY).exists() or self.file(CONFIG).exists():
            return "legacy"
        return "new"

    def check_compatible(self, identity: dict) -> None:
        """Raises RunMismatchError, listing what differs, unless the folder's run has this identity."""
        config = self.read_json(CONFIG) or {}
        stored = config.get("identity")
        if stored is None:
            raise RunMismatchError(
                f"'{self.path}' holds a run written without a settings fingerprint (radtransfer 0.1), so it "
                "cannot be checked against this one. Pass resume=False (CLI: --restart) to discard it and "
                "start over, or choose another out_dir.")
        changed = differences(stored, identity)
        if changed:
            raise RunMismatchError(
                f"'{self.path}' holds a run with other settings; resuming it would mix two runs.\n"
                "Differences (stored → requested):\n  " + "\n  ".join(changed) +
                "\nPass resume=False (CLI: --restart) to discard that run and start over, or choose another out_dir.",
                changed)

    def history(self) -> dict:
        """The finished epochs' metrics, column by column."""
        import pandas as pd

        path = self.file(HISTORY)
        if not path.exists() or path.stat().st_size == 0:
            return {}
        frame = pd.read_csv(path)
        if frame.empty:
            return {}
        frame = frame.drop_duplicates(subset="epoch", keep="last").sort_values("epoch")
        return {column: frame[column].tolist() for column in frame.columns}

    # -- writing ---------------------------------------------------------------------------------

    def write_json(self, name: str, payload) -> None:
        write_json_atomic(self.file(name), payload)

    def write_history(self, history: dict) -> None:
        columns = ["epoch"] + sorted(k for k in history if k != "epoch")
        rows = zip(*(history[c] for c in columns)) if history.get("epoch") else []
        lines = [",".join(columns)] + [",".join(_csv(v) for v in row) for row in rows]
        write_text_atomic(self.file(HISTORY), "\n".join(lines) + "\n")

    def reset(self) -> None:
        """Deletes this folder's run files (not anything else in it)."""
        import shutil

        for name in _FILES:
            path = self.file(name)
            if path.exists():
                path.unlink()
        for name in _LEGACY:
            if self.file(name).is_dir():
                shutil.rmtree(self.file(name))


def _csv(value) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return repr(value) if isinstance(value, float) else str(value)

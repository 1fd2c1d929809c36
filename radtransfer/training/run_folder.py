"""RunFolder: one training run's folder, the only place that names its files: what it holds, whether it may be
resumed, and its atomic writes.

Layout::

    config.json           the run's identity (the settings that define it, with a schema version), its
                          fingerprint, and every resolved setting (precision, XLA, versions, ...)
    state.json            progress after each finished epoch: next epoch, best epoch, early-stopping and
                          learning-rate state, the seed in use, status (running / finished / diverged)
    history.csv           one row per finished epoch
    last-e<k>.npz         the model and optimizer after epoch k, the last finished (deleted when done;
                          ``state_files``; earlier runs wrote last-e<k>.weights.h5, still read)
    best-e<k>.npz         the model's weights at epoch k, the best so far (deleted when done)
    best.weights.h5       the model's weights at the best epoch (lowest val_loss)
    best.keras            the best model, float32, with the class names and the validation thresholds
    result.json           the FineTuneResult of a finished run
    lock.json             while a process trains into the folder: its claim (utils/claims.py); a second
                          process is refused, and the claim of a process that died is taken over

and, in the folder of ``radtransfer train`` (which writes them; named here so each name has one owner)::

    cli_config.json       the command's resolved options
    split_<part>.csv      the train / val / test parts (path, label, patient_id); image paths absolute, so they
                          resolve from any working directory (a relative path is read relative to the file's
                          folder, as ``data.from_csv`` reads a manifest)
    skipped_files.csv     --on-bad skip: the unreadable files left out (part, path, reason)
    test_metrics.json     evaluate()'s metrics on the test part
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.decode import READ_SETTING_FIELDS
from ..errors import RadtransferError, RunFolderInUseError, RunMismatchError
from ..models.trained import load_trained_file
from ..utils.claims import FolderClaim, current_token
from ..utils.io import write_json_atomic, write_text_atomic
from .config import differences, fingerprint

CONFIG = "config.json"
STATE = "state.json"
HISTORY = "history.csv"
BEST_WEIGHTS = "best.weights.h5"
BEST_MODEL = "best.keras"
RESULT = "result.json"
LOCK = "lock.json"
CLI_CONFIG = "cli_config.json"
TEST_METRICS = "test_metrics.json"
SKIPPED_FILES = "skipped_files.csv"
PROBE_RESULT = "probe.json"  # lp_ft's first phase (training/linear_probe.py): its record, history and head
PROBE_HISTORY = "probe_history.csv"
PROBE_HEAD = "probe_head.npz"
SPLIT_FILES = {"train": "split_train.csv", "val": "split_val.csv", "test": "split_test.csv"}
CHECKPOINT_GLOBS = ("*-e*.npz", "*-e*.weights.h5")  # the per-epoch checkpoints (``checkpoint``), and older runs'
IDENTITY_SCHEMA = 2  # 2: the identity carries its schema version
_FILES = (CONFIG, STATE, HISTORY, BEST_WEIGHTS, BEST_MODEL, RESULT, PROBE_RESULT, PROBE_HISTORY, PROBE_HEAD)
_LEGACY_FILES = ("last.weights.h5",)  # radtransfer 0.1
_LEGACY_DIRS = ("backup",)  # BackupAndRestore's folder (radtransfer 0.1 runs)
_HELD: set[Path] = set()  # the run folders this process holds (a block inside one that holds it holds it too)


def checkpoint(kind: str, epoch: int) -> str:
    """The file name of a per-epoch checkpoint: ``kind`` "last" (model and optimizer) or "best" (model)."""
    return f"{kind}-e{epoch}.npz"


def run_identity(config: dict, class_names, data_signature: dict, model: dict) -> dict:
    """What defines a run, as config.json stores it and its fingerprint hashes: the defining settings, the
    classes, the data's signature and how the model was built, with the identity's schema version."""
    return {
        "schema_version": IDENTITY_SCHEMA,
        "config": config,
        "class_names": class_names,
        "data": data_signature,
        "model": model,
    }


@dataclass
class FineTuneResult:
    """What fine_tune did.

    Attributes:
        history: per-epoch metrics (``loss``, ``val_loss``, ``val_auc``, ...), all epochs of the run,
            resumed parts included.
        best_epoch: the epoch with the lowest val_loss, counted from 1 as the logs count (-1: no epoch finished
            with a finite val_loss); its weights are in the model.
        best_val_loss: that val_loss.
        epochs_run: epochs trained in total.
        resumed_from: the epochs done before this call resumed the run (0 for a fresh run).
        stopped_early: whether early stopping ended the run.
        trainable_params: parameters the strategy left trainable.
        images_per_second: training throughput (train images × epochs ÷ time in training steps), when known.
        paths: output files (config, history, checkpoints), when out_dir was given.
        settings: every resolved setting (also in config.json).
        status: "finished" or "diverged".
        diverged_epoch: the epoch (from 1) whose loss became NaN (None if none did).
        threshold: two classes: the threshold on class 1's probability chosen on the validation set
            (Youden's J) at the best epoch; ``evaluate`` applies it to test data. None for more classes, or
            when no epoch finished with a finite val_loss.
        thresholds: two classes: {class index (as a string): threshold on that class's probability}, each
            chosen on the validation set with that class as the positive one (``evaluate(...,
            positive_class=c)`` applies class c's).
        class_names: the classes, in output order (when known).
        fingerprint: the hash of the settings that define the run.
        seed: the base seed every random stream of the run was derived from.
        model: the trained model (the caller's object when a model was passed; not saved in result.json).
    """

    history: dict
    best_epoch: int
    best_val_loss: float
    epochs_run: int
    resumed_from: int
    stopped_early: bool
    trainable_params: int
    images_per_second: float | None
    paths: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    status: str = "finished"
    diverged_epoch: int | None = None
    threshold: float | None = None
    thresholds: dict | None = None
    class_names: list | None = None
    fingerprint: str | None = None
    seed: int | None = None
    model: object = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "model"}

    @classmethod
    def from_dict(cls, values: dict, model=None) -> "FineTuneResult":
        known = {f for f in cls.__dataclass_fields__ if f != "model"}
        return cls(**{k: v for k, v in values.items() if k in known}, model=model)


class RunFolder:
    """A training run's folder.

    Args:
        path: the folder (created if missing; must be writable).
    """

    @classmethod
    @contextmanager
    def claimed(cls, out_dir, resume: bool = True):
        """The folder of ``out_dir`` (None when there is none), held by this process while the block runs, and
        emptied of any run first unless ``resume``.

        Raises:
            RunFolderInUseError: another live process holds it.
        """
        if out_dir is None:
            yield None
            return
        folder = cls(out_dir)
        with folder.claim():
            if not resume:
                folder.reset()
            yield folder

    @contextmanager
    def claim(self):
        """Holds the folder for this process while the block runs (again inside a block that holds it already);
        raises RunFolderInUseError, naming the holder, when another live process holds it."""
        key = self.path.resolve()
        if key in _HELD:  # the outer block releases it
            yield self
            return
        claim = FolderClaim(self.file(LOCK), current_token())
        if not claim.acquire():
            holder = claim.holder or {}
            since = holder.get("claimed_at")
            since = time.strftime(" since %Y-%m-%d %H:%M:%S", time.localtime(since)) if since else ""
            raise RunFolderInUseError(
                f"'{self.path}' is being trained into by another process (pid {holder.get('pid', '?')} on "
                f"{holder.get('host', 'an unknown host')}{since}): wait for it to end, or choose another out_dir "
                "(command line: --out).",
                holder,
            )
        _HELD.add(key)
        try:
            yield self
        finally:
            _HELD.discard(key)
            claim.release()

    def __init__(self, path):
        self.path = Path(path).expanduser()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / f".write_test{os.getpid()}"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise RadtransferError(
                f"Cannot write to out_dir '{self.path}': {exc.strerror or exc}. Choose a writable folder."
            ) from None

    def __repr__(self) -> str:
        return f"RunFolder('{self.path}', status={self.status()!r})"

    def file(self, name: str) -> Path:
        return self.path / name

    def paths(self) -> dict:
        return {
            "config": str(self.file(CONFIG)),
            "history": str(self.file(HISTORY)),
            "best_model": str(self.file(BEST_MODEL)),
            "best_weights": str(self.file(BEST_WEIGHTS)),
            "result": str(self.file(RESULT)),
        }

    # -- reading ---------------------------------------------------------------------------------

    def read_json(self, name: str):
        path = self.file(name)
        if not path.exists():
            return None
        return json.loads(path.read_text())

    def status(self) -> str:
        """ "new" (nothing here), "interrupted", "finished", "diverged", or "legacy" (a run written by
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
                "start over, or choose another out_dir."
            )
        changed = differences(stored, identity)
        if changed:
            raise RunMismatchError(
                f"'{self.path}' holds a run with other settings; resuming it would mix two runs.\n"
                "Differences (stored → requested):\n  "
                + "\n  ".join(changed)
                + "\nPass resume=False (CLI: --restart) to discard that run and start over, or choose another out_dir.",
                changed,
            )

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

    def write_history(self, history: dict, name: str = HISTORY) -> None:
        columns = ["epoch"] + sorted(k for k in history if k != "epoch")
        rows = zip(*(history[c] for c in columns)) if history.get("epoch") else []
        lines = [",".join(columns)] + [",".join(_csv(v) for v in row) for row in rows]
        write_text_atomic(self.file(name), "\n".join(lines) + "\n")

    def write_config(self, identity: dict, settings: dict) -> str:
        """Writes config.json (the identity, its fingerprint and every resolved setting); returns the fingerprint."""
        value = fingerprint(identity)
        self.write_json(CONFIG, {"identity": identity, "fingerprint": value, **settings})
        return value

    def state(self) -> dict | None:
        return self.read_json(STATE)

    def write_state(self, state: dict) -> None:
        self.write_json(STATE, state)

    def clean_checkpoints(self) -> None:
        """Deletes the per-epoch checkpoints (a finished run keeps only best.weights.h5 and best.keras)."""
        for pattern in CHECKPOINT_GLOBS:
            for path in self.path.glob(pattern):
                path.unlink()

    def reset(self) -> None:
        """Deletes this folder's run files, the per-epoch checkpoints included (not anything else in it)."""
        for name in (*_FILES, *_LEGACY_FILES):
            path = self.file(name)
            if path.exists():
                path.unlink()
        self.clean_checkpoints()
        for name in _LEGACY_DIRS:
            if self.file(name).is_dir():
                shutil.rmtree(self.file(name))


def write_split(folder, part: str, image_set) -> Path:
    """Writes ``image_set`` as the run folder's ``split_<part>.csv`` (path, label, patient_id): image files by their
    absolute paths (a path relative to the working directory would not resolve from elsewhere), in-memory images by
    their names (``ImageSet.image_names``). A multi-label set also has one 0/1 column per label, so the file reads
    back with ``from_csv(..., label_cols=[...])``."""
    import pandas as pd

    folder = Path(folder)
    names = image_set.image_names()
    if image_set.paths is not None:
        names = [os.path.abspath(os.path.expanduser(name)) for name in names]
    frame = pd.DataFrame({"path": names, "label": image_set.label_strings()})
    if image_set.patient_ids is not None:
        frame["patient_id"] = image_set.patient_ids
    if image_set.multi_label:
        for k, name in enumerate(image_set.class_names):
            if str(name) not in frame:
                frame[str(name)] = np.asarray(image_set.labels)[:, k].astype(int)
    path = folder / SPLIT_FILES[part]
    frame.to_csv(path, index=False)
    return path


def split_paths(folder, part: str) -> list[Path] | None:
    """The image files a run folder's ``split_<part>.csv`` lists, as absolute paths (None without the file); a
    relative path is read relative to the file's folder, as ``data.from_csv`` reads it."""
    import pandas as pd

    path = Path(folder) / SPLIT_FILES[part]
    if not path.is_file():
        return None
    here = Path(os.path.abspath(path.parent))
    return [Path(os.path.abspath(here / Path(str(p)).expanduser())) for p in pd.read_csv(path)["path"]]


def _csv(value) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return repr(value) if isinstance(value, float) else str(value)


# -- reading a run folder's trained model -----------------------------------------------------------------------


def load_trained(path_or_run_dir):
    """Loads a trained model (a ``.keras`` file, or a run folder of ``fine_tune`` / ``radtransfer train`` holding
    best.keras) with its class names, validation thresholds, read settings and build info attached.

    Raises:
        RadtransferError: there is no trained model there.
    """
    path = Path(path_or_run_dir)
    file = path / BEST_MODEL if path.is_dir() else path
    if not file.exists():
        raise RadtransferError(
            f"No trained model at '{file}'. Pass a run folder of fine_tune / 'radtransfer train' (it holds "
            f"{BEST_MODEL}) or a .keras file."
        )
    config = _read_config(file.parent)
    fallback = {"class_names": config.get("class_names"), "read_settings": run_read_settings(file.parent)}
    return load_trained_file(file, fallback)


def _read_config(run_dir) -> dict:
    path = Path(run_dir) / CONFIG
    try:
        return json.loads(path.read_text()) if path.exists() else {}
    except ValueError:
        return {}


def run_read_settings(run_dir) -> dict | None:
    """The read settings a run folder's config.json recorded for its training data (None if absent)."""
    try:
        train = _read_config(run_dir)["identity"]["data"]["train"] or {}
    except (KeyError, TypeError):
        return None
    return {k: train[k] for k in READ_SETTING_FIELDS if k in train} if "image_size" in train else None

"""The per-epoch checkpoints of a run folder, written without holding up training.

After an epoch the model's variables (and for a resume point the optimizer's: Adam's slots are two more copies of
every trainable weight, 270 MiB for ResNet50) are copied into memory in the order Keras builds them, and a
background thread writes the copy to an ``.npz`` file, atomically, followed by whatever must wait for the file (the
run's state, which names it). The next epoch trains meanwhile; a kill leaves the previous state naming the previous
file, which is deleted only after the new state is written, so resuming stays exact. Keras's ``save_weights``
writes the same values but on the training thread (about 3 s per epoch for ResNet50 on this 2-core machine).

A checkpoint is matched to the model by order and shape: the model of a resumed run is built the same way, so its
variables come in the same order; a mismatch is refused with one line.
"""

from __future__ import annotations

import queue
import threading

import keras
import numpy as np

from ..errors import RadtransferError
from ..utils.io import replace_atomic


def variables_of(model, optimizer: bool = True) -> list:
    """The model's variables, then (``optimizer``) its optimizer's, in Keras's build order."""
    variables = list(model.weights)
    if optimizer and getattr(model, "optimizer", None) is not None:
        variables += list(model.optimizer.variables)
    return variables


def snapshot(model, optimizer: bool = True) -> list[np.ndarray]:
    """A copy in host memory of ``variables_of(model, optimizer)``: later training does not change it."""
    return [np.array(keras.ops.convert_to_numpy(v), copy=True) for v in variables_of(model, optimizer)]


def write_snapshot(path, arrays) -> None:
    """Writes a snapshot to ``path`` (an ``.npz``), atomically."""

    def write(tmp):
        with open(tmp, "wb") as handle:
            np.savez(handle, *arrays)

    replace_atomic(path, write)


def load_snapshot(model, path, optimizer: bool = True) -> None:
    """Assigns a ``write_snapshot`` file to ``variables_of(model, optimizer)``.

    Raises:
        RadtransferError: the file holds other variables than the model has (another architecture or settings).
    """
    variables = variables_of(model, optimizer)
    if optimizer and getattr(model, "optimizer", None) is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
        variables = variables_of(model, optimizer)
    with np.load(path) as data:
        arrays = [data[f"arr_{i}"] for i in range(len(data.files))]
    shapes = [tuple(v.shape) for v in variables]
    if len(arrays) != len(variables) or any(a.shape != s for a, s in zip(arrays, shapes)):
        raise RadtransferError(
            f"The checkpoint '{path}' holds {len(arrays)} variables that do not match this model's {len(variables)} "
            "(another backbone, strategy or precision). Pass resume=False to start the run over."
        )
    for variable, array in zip(variables, arrays):
        variable.assign(array.astype(variable.dtype, copy=False))


class BackgroundWriter:
    """One thread that runs writes in the order they were submitted. ``wait`` returns when all are done and
    raises the first error one of them raised (so a full disk stops the run at the next epoch, not silently)."""

    def __init__(self):
        self._tasks: queue.Queue = queue.Queue()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def submit(self, task) -> None:
        self._raise()
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="radtransfer-checkpoints", daemon=True)
            self._thread.start()
        self._tasks.put(task)

    def wait(self) -> None:
        if self._thread is not None:
            self._tasks.join()
        self._raise()

    def drain(self) -> None:
        """Waits for the writes, leaving their error aside (for a training thread that is already failing)."""
        if self._thread is not None:
            self._tasks.join()
        self._error = None

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _work(self) -> None:
        while True:
            task = self._tasks.get()
            try:
                if self._error is None:
                    task()
            except BaseException as exc:  # handed to the training thread at its next submit or wait
                self._error = exc
            finally:
                self._tasks.task_done()

"""The grid on a local Ray cluster with two workers: one run per GPU, the same records as the sequential
grid, and a worker killed mid-run is retried, resumes from its checkpoint, and no run is lost or recorded
twice.

Marked ``ray`` (run by ``make test-ray``, which installs the ``ray`` extra): each test trains a tiny grid
(2 scenarios × 2 folds of the test backbone at 32 px, 2 epochs, eagerly: each epoch lasts long enough to be
killed in) and starts Ray.
"""

from __future__ import annotations

import io
import json
import os
import signal
import threading
import time

import pytest

import radtransfer as rt
from radtransfer import protocol

pytestmark = pytest.mark.ray

SCENARIOS = [protocol.Scenario("test_tiny", "freeze_all", 1e-3), protocol.Scenario("test_tiny", "unfreeze_top10", 1e-2)]
CONFIG = protocol.RADIMAGENET.replace(image_size=32, batch_size=8, epochs=2, bootstrap=50, run_eagerly=True)


@pytest.fixture(scope="module")
def grid_inputs(tmp_path_factory, keras2_files):
    root = tmp_path_factory.mktemp("ray_grid")
    rt.datasets.synthetic_brain_mri(root / "data", n_patients=12, slices_per_patient=2, image_size=40, seed=4)
    keras2_files.place("test_tiny", root / "weights", "RadImageNet-TestTiny_notop.h5")
    image_set = rt.datasets.load_synthetic_brain_mri(root / "data")
    return root, image_set


def _grid(image_set, out, weights_dir, executor, log=None):
    return protocol.run_grid(
        image_set,
        out,
        config=CONFIG,
        sources=("radimagenet",),
        scenarios=SCENARIOS,
        folds=2,
        weights_dir=weights_dir,
        task="brain_mri",
        executor=executor,
        log=log,
    )


@pytest.fixture(scope="module")
def sequential(grid_inputs):
    root, image_set = grid_inputs
    _grid(image_set, root / "sequential", root / "weights", "sequential")
    return root / "sequential"


def _records(grid_dir):
    return {str(p.relative_to(grid_dir)): json.loads(p.read_text()) for p in sorted(grid_dir.rglob("record.json"))}


def _two_workers(**kwargs):
    return rt.RayExecutor(init_kwargs={"num_cpus": 2, **kwargs})


def _finished_lines(log):
    return [line for line in log.getvalue().splitlines() if "; finished " in line]


def test_ray_grid_runs_one_run_per_gpu_and_records_what_the_sequential_grid_records(grid_inputs, sequential):
    """A local Ray instance that declares two GPUs (Ray schedules by declared resources; TensorFlow on this
    CPU machine ignores CUDA_VISIBLE_DEVICES): one run per GPU at a time, each in a fresh worker process
    pinned to its GPU, and records byte-for-byte those of the sequential grid."""
    root, image_set = grid_inputs
    log = io.StringIO()
    _grid(image_set, root / "ray", root / "weights", _two_workers(num_gpus=2), log=log)
    expected, got = _records(sequential), _records(root / "ray")
    assert len(expected) == 4 and got == expected
    text = log.getvalue()
    assert "4 runs submitted to Ray (1 GPU and 1 CPU per run, up to 2 at once)" in text
    workers = [line.split(" on ", 1)[1].split(";")[0] for line in _finished_lines(log)]
    assert len(workers) == 4 and len({w.split(" ")[0] for w in workers}) == 4  # a fresh process per GPU run
    assert {w.split("(GPU ")[1].rstrip(")") for w in workers} == {"0", "1"}
    assert "done 4/4 runs of this grid" in text
    assert not list((root / "ray").rglob("claim.json"))
    assert len(list((root / "ray").rglob("timing.json"))) == 4


def test_a_killed_worker_is_retried_and_its_run_resumes(grid_inputs, sequential):
    """SIGKILL the worker training a run once its first epoch is saved: Ray retries the task, the retry
    reclaims the run (same token) and resumes at epoch 2; every run is recorded once, as sequentially."""
    root, image_set = grid_inputs
    out = root / "ray_killed"
    killed = {}

    def kill_first_checkpointed_worker():
        deadline = time.time() + 300
        while time.time() < deadline and not killed:
            for state in out.glob("runs/*/*/fold*/state.json"):
                claim = state.parent / "claim.json"
                try:
                    if json.loads(state.read_text()).get("next_epoch") == 1 and claim.exists():
                        pid = json.loads(claim.read_text())["pid"]
                        os.kill(pid, signal.SIGKILL)
                        killed.update(pid=pid, run=state.parent)
                        return
                except (OSError, ValueError, KeyError):
                    continue
            time.sleep(0.05)

    killer = threading.Thread(target=kill_first_checkpointed_worker, daemon=True)
    killer.start()
    log = io.StringIO()
    _grid(image_set, out, root / "weights", rt.RayExecutor(cpus_per_run=1, init_kwargs={"num_cpus": 2}), log=log)
    killer.join(5)
    assert killed, "no worker was killed: the test did not exercise a retry"

    assert _records(out) == _records(sequential)  # no run lost, the resumed one equal too
    run_dir = killed["run"]
    assert json.loads((run_dir / "result.json").read_text())["resumed_from"] == 1
    run_id = "/".join(run_dir.parts[-3:])
    finished = [line for line in _finished_lines(log) if f"finished {run_id} " in line]
    assert len(finished) == 1 and f":{killed['pid']};" not in finished[0]  # recorded once, by another worker
    assert len(_finished_lines(log)) == 4


def test_a_run_that_raises_does_not_stop_the_others_and_is_named(grid_inputs):
    root, image_set = grid_inputs
    scenarios = [
        protocol.Scenario("test_tiny", "freeze_all", 1e-3),
        protocol.Scenario("test_tiny", "no_such_strategy", 1e-3),
    ]
    with pytest.raises(protocol.GridRunsFailedError, match="1 run.* failed on Ray") as caught:
        protocol.run_grid(
            image_set,
            root / "ray_error",
            config=CONFIG.replace(epochs=1),
            sources=("radimagenet",),
            scenarios=scenarios,
            weights_dir=root / "weights",
            task="brain_mri",
            executor=rt.RayExecutor(cpus_per_run=1, init_kwargs={"num_cpus": 2}),
            log=io.StringIO(),
        )
    message = str(caught.value)
    assert "radimagenet/test_tiny__no_such_strategy__lr0.001/fold0" in message and "no_such_strategy" in message
    assert len(caught.value.failures) == 1
    records = _records(root / "ray_error")
    assert list(records) == ["runs/radimagenet/test_tiny__freeze_all__lr0.001/fold0/record.json"]
    assert not list((root / "ray_error").rglob("claim.json"))  # the failed run's claim was released


def test_a_learning_curve_on_ray_records_what_the_sequential_curve_records(grid_inputs):
    """protocol.learning_curve on the grid's machinery: each share's grid runs on Ray (random initialisation
    beside RadImageNet weights) and records byte-for-byte what the same curve records run sequentially, and
    the two tables agree."""
    root, image_set = grid_inputs
    tables = {}
    for name, executor in (("sequential", "sequential"), ("ray", _two_workers(num_gpus=2))):
        tables[name] = protocol.learning_curve(
            image_set,
            root / f"curve_{name}",
            fractions=(0.5, 1.0),
            sources=("radimagenet", None),
            backbone="test_tiny",
            config=CONFIG.replace(epochs=1),
            weights_dir=root / "weights",
            task="brain_mri",
            executor=executor,
            verbose=0,
        )
    expected, got = _records(root / "curve_sequential"), _records(root / "curve_ray")
    assert len(expected) == 4 and got == expected
    assert {key.split("/")[0] for key in got} == {"fraction0.5", "fraction1"}
    assert tables["ray"].equals(tables["sequential"])

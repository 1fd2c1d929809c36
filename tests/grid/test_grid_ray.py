"""The grid on a local Ray cluster with two workers: one run per GPU, the same records as the sequential
grid, and a worker killed mid-run is retried, resumes from its checkpoint, and no run is lost or recorded
twice.

Marked ``ray`` (run by ``make test-ray``, which installs the ``ray`` extra): each test trains a tiny grid
(2 scenarios × 2 folds of the test backbone at 32 px, 2 epochs, eagerly: each epoch lasts long enough to be
killed in) and starts Ray. The last three join a cluster that ``ray start --head`` started with Ray's token
authentication (started once, after the other tests' clusters are gone), as a multi-node grid does.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

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


# -- a cluster with token authentication, joined by address ------------------------------------------------


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


@pytest.fixture(scope="module")
def token_cluster():
    """A two-CPU head node started by ``ray start --head --block`` with RAY_AUTH_MODE=token and its token only in
    its own environment (this process's ~/.ray/auth_token is not its token), on its own ports and temp dir
    (``ray.init()`` elsewhere on the machine does not find it). SIGTERM to the blocking ``ray start`` stops all
    its processes; ``ray stop`` would stop every Ray on the machine."""
    ray = pytest.importorskip("ray")
    if not hasattr(ray.exceptions, "AuthenticationError"):
        pytest.skip(f"Ray {ray.__version__} has no token authentication (Ray >= 2.52)")
    token = secrets.token_hex(32)
    temp_dir = Path(tempfile.mkdtemp(prefix="rt_ray_", dir="/tmp"))  # short: Ray's sockets live under it
    port, client_port, dashboard_port = _free_ports(3)
    repo = Path(__file__).resolve().parents[2]
    env = {key: value for key, value in os.environ.items() if not key.startswith(("RAY_AUTH_", "RAY_ADDRESS"))}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(repo), env.get("PYTHONPATH")]))  # this checkout
    command = [
        str(Path(sys.executable).with_name("ray")), "start", "--head", "--block", f"--port={port}",
        "--num-cpus=2", "--num-gpus=0", f"--temp-dir={temp_dir}", "--include-dashboard=false",
        f"--dashboard-port={dashboard_port}", f"--ray-client-server-port={client_port}", "--disable-usage-stats",
    ]  # fmt: skip
    log_path = temp_dir / "ray_start.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, env=env, cwd=repo, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 180
        while "Ray runtime started" not in log_path.read_text():
            if process.poll() is not None or time.time() > deadline:
                pytest.fail(f"ray start --head did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield SimpleNamespace(address=f"127.0.0.1:{port}", token=token)
    finally:
        process.terminate()
        try:
            process.wait(90)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture
def no_token_here(monkeypatch, tmp_path):
    """This process without Ray's auth settings, its home (~/.ray/auth_token) an empty folder."""
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_a_grid_joins_a_token_cluster_with_the_token_file(grid_inputs, sequential, token_cluster, no_token_here):
    """The multi-node path: the driver joins by address with the cluster's token in ~/.ray/auth_token and
    RAY_AUTH_MODE unset (Ray 2.60 sends no token to an explicit address then); the runs execute on the
    cluster's workers, which authenticate with their raylet's token, and record what the sequential grid does."""
    root, image_set = grid_inputs
    (no_token_here / ".ray").mkdir(parents=True)
    (no_token_here / ".ray" / "auth_token").write_text(token_cluster.token)
    log = io.StringIO()
    executor = rt.RayExecutor(address=token_cluster.address, cpus_per_run=1)
    protocol.run_grid(
        image_set, root / "ray_token", config=CONFIG, sources=("radimagenet",), scenarios=SCENARIOS[:1], folds=2,
        weights_dir=root / "weights", task="brain_mri", executor=executor, log=log,
    )  # fmt: skip
    expected = {key: value for key, value in _records(sequential).items() if "/test_tiny__freeze_all__" in key}
    assert len(expected) == 2 and _records(root / "ray_token") == expected
    assert "2 runs submitted to Ray (0 GPU and 1 CPU per run, up to 2 at once)" in log.getvalue()
    assert "RAY_AUTH_MODE" not in os.environ  # set for the connection, unset again by close()


def test_the_token_from_the_environment_joins_and_stays_out_of_the_runtime_env(
    token_cluster, no_token_here, monkeypatch
):
    import ray

    monkeypatch.setenv("RADTRANSFER_CACHE_DIR", str(no_token_here))  # forwarded: the job has a runtime_env
    monkeypatch.setenv("RAY_AUTH_TOKEN", token_cluster.token)
    executor = rt.RayExecutor(address=token_cluster.address, cpus_per_run=1)
    try:
        assert executor.parallelism() == 2
        runtime_env = json.dumps(dict(ray.get_runtime_context().runtime_env))
        assert str(no_token_here) in runtime_env and token_cluster.token not in runtime_env
    finally:
        executor.close()


def test_joining_a_token_cluster_without_its_token_says_what_to_set(token_cluster, no_token_here, monkeypatch):
    """Without a token, with a wrong one, and with RAY_AUTH_MODE=disabled: one line naming the address and where
    the token goes, instead of Ray's ConnectionError."""
    monkeypatch.setenv("RAY_gcs_server_port_wait_time_s", "2")  # Ray retries the refused connection 20 s
    address = token_cluster.address
    cases = [
        ({}, "requires token authentication and this process has no token: put the cluster's token in"),
        ({"RAY_AUTH_TOKEN": "0" * 64}, "refused the token from RAY_AUTH_TOKEN: put the cluster's token in"),
        ({"RAY_AUTH_MODE": "token"}, "requires token authentication and this process has no token"),
        ({"RAY_AUTH_MODE": "disabled"}, "but RAY_AUTH_MODE=disabled here: unset it or set RAY_AUTH_MODE=token"),
        ({"RAY_AUTH_TOKEN_PATH": "/nonexistent/token"}, "(RAY_AUTH_TOKEN_PATH=/nonexistent/token names no file"),
    ]
    for env, expected in cases:
        with monkeypatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            with pytest.raises(rt.RadtransferError) as caught:
                rt.RayExecutor(address=address).parallelism()
            message = str(caught.value)
            assert "\n" not in message and f"address={address!r}" in message, message
            assert expected in message and "RAY_AUTH_TOKEN, ~/.ray/auth_token or the file" in message, message
            assert "`ray get-auth-token` on the head node" in message
        assert os.environ.get("RAY_AUTH_MODE") is None

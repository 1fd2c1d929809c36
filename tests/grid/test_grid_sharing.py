"""Many processes filling one grid folder: claims (no run trained or recorded twice, dead holders taken
over) and shard="auto" from SLURM job arrays and Kubernetes Indexed Jobs."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from radtransfer import protocol
from radtransfer.grid.claims import CLAIM_FILE, RunClaim, new_token
from radtransfer.grid.plan import resolve_shard
from radtransfer.grid.records import RECORD_FILE
from radtransfer.grid.runs import execute_claimed

# -- claims ----------------------------------------------------------------------------------------


class _FakeRecord:
    status, diverged_epoch, metrics = "finished", None, {"auc": 0.75}


class _FakeJob:
    """Stands in for GridJob: 'training' sleeps, 'commit' appends to a shared log and writes the record."""

    def __init__(self, root, log, seconds=0.02):
        self.root, self.log, self.seconds = Path(root), Path(log), seconds

    def run_dir(self, run):
        return self.root / run.id

    def train_and_evaluate(self, run, say=None):
        time.sleep(self.seconds * random.random())
        return _FakeRecord(), None

    def commit(self, run, record, predictions, seconds):
        with open(self.log, "a") as handle:  # O_APPEND: one whole line per write
            handle.write(f"{run.id} {os.getpid()}\n")
        (self.run_dir(run) / RECORD_FILE).write_text("{}")


def _worker(root, log, runs, start_at):
    random.seed(os.getpid())
    while time.time() < start_at:
        time.sleep(0.001)
    job, token = _FakeJob(root, log), new_token()
    for run in runs:
        execute_claimed(job, run, token)


def _runs(n):
    scenarios = [protocol.Scenario("resnet50", "freeze_all", 10.0**-k) for k in range(n)]
    return protocol.plan_runs(("radimagenet",), scenarios, 1)


def test_overlapping_workers_train_and_record_every_run_exactly_once(tmp_path):
    """Six processes work through the same 40 runs at once (as overlapping shards, or job-array tasks
    without a shard, do): every run is recorded, none twice, and the work is shared."""
    runs, log = _runs(40), tmp_path / "commits.log"
    context = multiprocessing.get_context("fork")
    start_at = time.time() + 1.0
    workers = [context.Process(target=_worker, args=(tmp_path / "grid", log, runs, start_at)) for _ in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    lines = log.read_text().splitlines()
    committed = [line.split()[0] for line in lines]
    assert sorted(committed) == sorted(run.id for run in runs)  # all runs, each once
    assert len({line.split()[1] for line in lines}) >= 2  # more than one worker did work
    assert not list((tmp_path / "grid").rglob(CLAIM_FILE))  # every claim released
    assert not [p for p in (tmp_path / "grid").rglob(".claim*")]  # no temporary files left


def test_a_live_holder_keeps_its_run_and_is_named(tmp_path):
    first = RunClaim(tmp_path, "first")
    assert first.acquire()
    second = RunClaim(tmp_path, "second")
    assert not second.acquire()
    assert second.holder["pid"] == os.getpid() and second.holder["token"] == "first"
    outcome = execute_claimed(_FakeJob(tmp_path.parent, tmp_path / "log"), _Run(tmp_path.name), "third")
    assert outcome.state == "held" and outcome.holder["token"] == "first"
    first.release()
    assert not (tmp_path / CLAIM_FILE).exists()


class _Run:
    """A run whose folder is a given name (for the fake job)."""

    def __init__(self, name):
        self.id = name
        self.scenario = protocol.Scenario("resnet50", "freeze_all", 1e-3)


HOLD = """
import sys, time
from radtransfer.grid.claims import RunClaim
claim = RunClaim(sys.argv[1], "killed-worker", heartbeat=0.05)
assert claim.acquire()
print("held", flush=True)
time.sleep(float(sys.argv[2]) if len(sys.argv) > 2 else 600)
"""  # exits without releasing: a task killed at its time limit


def test_the_claim_of_a_killed_process_on_this_machine_is_taken_over_at_once(tmp_path):
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    assert not RunClaim(tmp_path, "other").acquire()  # alive: held
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    claim = RunClaim(tmp_path, "other")
    assert claim.acquire() and claim.took_over["pid"] == process.pid
    assert json.loads((tmp_path / CLAIM_FILE).read_text())["token"] == "other"
    claim.release()


def test_a_share_waits_for_a_run_another_process_holds_and_takes_it_over_when_that_process_dies(tmp_path, monkeypatch):
    """A shard must be complete when run_grid returns: a run of its share that another process holds is
    looked at again until it is recorded or, its holder dead, trained here."""
    import io

    from radtransfer.grid import runs as grid_runs
    from radtransfer.grid.executors import SequentialExecutor
    from radtransfer.grid.progress import GridProgress

    monkeypatch.setattr(grid_runs, "HELD_RUN_POLL_S", 0.1)
    runs, job = _runs(3), _FakeJob(tmp_path / "grid", tmp_path / "log")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(job.run_dir(runs[1])), "1.5"], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "held"
    log = io.StringIO()
    progress = GridProgress("t", runs, done_before=0, total=3, log=log)
    runner = SequentialExecutor()
    outcomes = runner.run(job, runs, progress, "me")
    assert [o.state for o in outcomes] == ["recorded", "held", "recorded"] and progress.done == 2
    protocol._wait_for_held_runs(job, runner, outcomes, {r.id: r for r in runs}, progress, "me")
    holder.wait()
    assert progress.done == 3 and all((job.run_dir(r) / RECORD_FILE).exists() for r in runs)
    text = log.getvalue()
    assert f"skipping {runs[1].id}: held by pid {holder.pid}" in text and "waiting for 1 run(s) held" in text
    assert text.count("skipping") == 1  # said once, not at every look


def test_another_machines_claim_is_taken_over_only_once_its_heartbeat_stops(tmp_path):
    foreign = {
        "token": "w1",
        "nonce": "n1",
        "machine": "node17/boot",
        "host": "node17",
        "pid": 4242,
        "start_ticks": 1,
        "claimed_at": time.time(),
    }
    (tmp_path / CLAIM_FILE).write_text(json.dumps(foreign))
    assert not RunClaim(tmp_path, "me", stale_after=60).acquire()  # touched just now: alive
    old = time.time() - 120
    os.utime(tmp_path / CLAIM_FILE, (old, old))
    claim = RunClaim(tmp_path, "me", stale_after=60)
    assert claim.acquire() and claim.took_over["host"] == "node17"
    claim.release()


def test_the_heartbeat_keeps_a_long_run_alive(tmp_path):
    claim = RunClaim(tmp_path, "long", heartbeat=0.05)
    assert claim.acquire()
    old = time.time() - 1000
    os.utime(tmp_path / CLAIM_FILE, (old, old))
    time.sleep(0.3)
    assert time.time() - (tmp_path / CLAIM_FILE).stat().st_mtime < 5
    claim.release()


def test_a_retry_with_the_same_token_reclaims_at_once(tmp_path):
    """A Ray task retried after its worker died presents its token again and takes its own claim back,
    even from another machine and before the heartbeat goes stale."""
    foreign = {
        "token": "ray:abc:run1",
        "nonce": "n1",
        "machine": "node3/boot",
        "host": "node3",
        "pid": 7,
        "claimed_at": time.time(),
    }
    (tmp_path / CLAIM_FILE).write_text(json.dumps(foreign))
    claim = RunClaim(tmp_path, "ray:abc:run1")
    assert claim.acquire() and claim.took_over["nonce"] == "n1"
    claim.release()


def test_a_run_whose_claim_was_taken_over_is_not_recorded_by_its_old_holder(tmp_path):
    """If a holder was judged dead while it still trained (e.g. its node was cut off), the new holder
    records the run; the old one finishes without writing a second record."""

    class TakenOverMidRun(_FakeJob):
        def train_and_evaluate(self, run, say=None):
            claim_file = self.run_dir(run) / CLAIM_FILE
            info = json.loads(claim_file.read_text())
            claim_file.write_text(json.dumps({**info, "nonce": "someone-else", "token": "other"}))
            return super().train_and_evaluate(run)

    job = TakenOverMidRun(tmp_path, tmp_path / "log")
    outcome = execute_claimed(job, _Run("run"), "old-holder")
    assert outcome.state == "lost"
    assert not (tmp_path / "run" / RECORD_FILE).exists() and not (tmp_path / "log").exists()
    assert json.loads((tmp_path / "run" / CLAIM_FILE).read_text())["token"] == "other"  # left to its holder


def test_a_recorded_run_is_not_trained_again(tmp_path):
    job = _FakeJob(tmp_path, tmp_path / "log")
    assert execute_claimed(job, _Run("run"), "a").state == "recorded"
    assert execute_claimed(job, _Run("run"), "b").state == "already_recorded"
    assert (tmp_path / "log").read_text().count("run ") == 1


# -- shard="auto" ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "env, expected",
    [
        (
            {
                "SLURM_ARRAY_TASK_ID": "3",
                "SLURM_ARRAY_TASK_MIN": "0",
                "SLURM_ARRAY_TASK_MAX": "9",
                "SLURM_ARRAY_TASK_COUNT": "10",
            },
            "4/10",
        ),  # --array=0-9
        (
            {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_MAX": "10"},
            "1/10",
        ),  # 1-10, old SLURM
        (
            {
                "SLURM_ARRAY_TASK_ID": "4",
                "SLURM_ARRAY_TASK_MIN": "0",
                "SLURM_ARRAY_TASK_MAX": "18",
                "SLURM_ARRAY_TASK_STEP": "2",
                "SLURM_ARRAY_TASK_COUNT": "10",
            },
            "3/10",
        ),  # --array=0-18:2
        (
            {
                "SLURM_ARRAY_TASK_ID": "7",
                "SLURM_ARRAY_TASK_MIN": "7",
                "SLURM_ARRAY_TASK_MAX": "7",
                "SLURM_ARRAY_TASK_COUNT": "1",
            },
            "1/1",
        ),
        ({"JOB_COMPLETION_INDEX": "0"}, "1/5"),
        ({"JOB_COMPLETION_INDEX": "4"}, "5/5"),
    ],
)
def test_shard_auto_reads_the_job_array(env, expected):
    count = 5 if "JOB_COMPLETION_INDEX" in env else None
    assert resolve_shard("auto", count, environ=env) == expected


@pytest.mark.parametrize(
    "env, count, message",
    [
        ({}, None, "neither .SLURM_ARRAY_TASK_ID"),
        (
            {
                "SLURM_ARRAY_TASK_ID": "4",
                "SLURM_ARRAY_TASK_MIN": "1",
                "SLURM_ARRAY_TASK_MAX": "9",
                "SLURM_ARRAY_TASK_COUNT": "3",
            },
            None,
            "no arithmetic order",
        ),  # --array=1,4,9
        ({"SLURM_ARRAY_TASK_ID": "4"}, None, "is this a job array"),
        (
            {"SLURM_ARRAY_TASK_ID": "x", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "3"},
            None,
            "not an integer",
        ),
        ({"JOB_COMPLETION_INDEX": "2"}, None, "--shard-count"),
        ({"JOB_COMPLETION_INDEX": "5"}, 5, "outside 0..4"),
        ({"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "3"}, 8, "disagrees"),
    ],
)
def test_shard_auto_says_what_is_missing(env, count, message):
    with pytest.raises(ValueError, match=message):
        resolve_shard("auto", count, environ=env)


def test_auto_shards_of_a_slurm_array_partition_the_grid(monkeypatch):
    scenarios = protocol.radimagenet_scenarios()
    everything = protocol.plan_runs(("radimagenet", "imagenet"), scenarios, 5)
    shares = []
    for task in range(1, 8):  # sbatch --array=1-7
        monkeypatch.setenv("SLURM_ARRAY_TASK_ID", str(task))
        monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "1")
        monkeypatch.setenv("SLURM_ARRAY_TASK_MAX", "7")
        monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "7")
        shares.append(protocol.plan_runs(("radimagenet", "imagenet"), scenarios, 5, resolve_shard("auto")))
    assert sorted(r.id for share in shares for r in share) == sorted(r.id for r in everything)


def test_run_grid_with_shard_auto_outside_a_job_array_fails_before_training(tmp_path, monkeypatch):
    for name in ("SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX"):
        monkeypatch.delenv(name, raising=False)
    from radtransfer.data import ImageSet

    image_set = ImageSet([str(tmp_path / f"{i}.png") for i in range(4)], [0, 1, 0, 1], ["a", "b"])
    with pytest.raises(ValueError, match="shard='auto' found neither"):
        protocol.run_grid(image_set, tmp_path / "grid", shard="auto", verbose=0)
    assert not (tmp_path / "grid" / "grid.json").exists()


# -- executors -------------------------------------------------------------------------------------


def test_ray_is_imported_only_when_the_ray_executor_runs(monkeypatch):
    code = "import sys, radtransfer; from radtransfer import protocol; print('ray' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    from radtransfer.grid.executors import RayExecutor

    with pytest.raises(ImportError, match=r"pip install 'radtransfer\[ray\]'"):
        RayExecutor().parallelism()


def test_unknown_executors_and_misplaced_ray_options_are_named(tmp_path):
    from radtransfer.cli import main
    from radtransfer.grid.executors import resolve_executor

    with pytest.raises(ValueError, match='Did you mean "ray"'):
        resolve_executor("rey")
    assert main(["grid", str(tmp_path), "--out", str(tmp_path / "g"), "--address", "auto"]) == 2


def test_workers_read_relative_image_paths_from_the_drivers_working_folder(tmp_path, monkeypatch):
    """Relative paths are part of every run's fingerprint, so they are kept as given; a worker process (Ray
    starts its own) moves to the driver's folder, or says why it cannot."""
    import pickle

    from radtransfer.data import ImageSet
    from radtransfer.errors import RadtransferError
    from radtransfer.grid.runs import GridJob

    monkeypatch.chdir(tmp_path)
    images = ImageSet(["a/1.png", "a/2.png"], [0, 1], ["x", "y"])
    job = GridJob(tmp_path / "grid", None, None, [(images, images, images)], {}, False, "bilinear", "frozen", 0)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    copy = pickle.loads(pickle.dumps(job))
    copy.enter_working_folder()
    assert os.getcwd() == str(tmp_path)
    copy.cwd = str(tmp_path / "not_mounted_here")
    with pytest.raises(RadtransferError, match="cannot enter the driver's working folder"):
        copy.enter_working_folder()


def _write_as_pid_1(path, writer, start_at):
    from radtransfer.utils import io as run_folder

    os.getpid = lambda: 1  # as in containers on several machines: every writer is pid 1
    while time.time() < start_at:
        time.sleep(0.001)
    for _ in range(150):
        run_folder.write_json_atomic(path, {"writer": writer, "blob": "x" * 50_000})


def test_writers_on_several_machines_never_leave_a_torn_file(tmp_path):
    """Shards on several machines write the same grid.json and pair files; with equal pids (containers)
    their temporary files must still differ, or one would rename the other's half-written file into place."""
    path = tmp_path / "grid.json"
    context = multiprocessing.get_context("fork")
    start_at = time.time() + 0.5
    writers = [context.Process(target=_write_as_pid_1, args=(path, k, start_at)) for k in range(4)]
    for writer in writers:
        writer.start()
    reads = 0
    while any(w.is_alive() for w in writers):
        if path.exists():
            payload = json.loads(path.read_text())  # a torn file fails here
            assert len(payload["blob"]) == 50_000
            reads += 1
    for writer in writers:
        writer.join()
        assert writer.exitcode == 0
    assert reads > 0 and not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]


def test_the_eta_weighs_the_runs_left_by_their_kind():
    """Before a kind has run, its prior cost scales the seconds per cost unit seen so far; once it has, its own
    mean is used; the sum is divided by the runs that train at once."""
    from radtransfer.grid.plan import expected_cost
    from radtransfer.grid.progress import GridProgress
    from radtransfer.grid.runs import RunOutcome

    scenarios = [
        protocol.Scenario("resnet50", "freeze_all", 1e-3),
        protocol.Scenario("inception_resnet_v2", "unfreeze_all", 1e-3),
    ]
    runs = protocol.plan_runs(("radimagenet",), scenarios, 3)  # 3 ResNet50 freeze_all, 3 IRV2 unfreeze_all
    progress = GridProgress("t", runs, done_before=0, total=6, parallel=2, verbose=0)
    assert progress.eta() != progress.eta()  # NaN before any run finished
    progress.finished(RunOutcome(run_id=runs[0].id, state="recorded", seconds=60.0))
    per_unit = 60.0 / expected_cost(runs[0])
    irv2 = expected_cost(runs[1]) * per_unit
    assert irv2 == pytest.approx(60.0 * 2.0 / 0.6)  # InceptionResNetV2 full fine-tune: 2.0 / 0.6 of it
    assert progress.eta() == pytest.approx((2 * 60.0 + 3 * irv2) / 2)
    progress.finished(RunOutcome(run_id=runs[1].id, state="recorded", seconds=500.0))
    assert progress.eta() == pytest.approx((2 * 60.0 + 2 * 500.0) / 2)
    progress.finished(RunOutcome(run_id=runs[2].id, state="held", holder={"pid": 1}))
    assert len(progress.left) == 4 and progress.done == 2  # a held run is still to be waited for


def test_each_finished_run_says_its_test_auc_with_one_worker_and_with_many():
    """Before: one worker said nothing when a run ended (46–146 s after its start line), many workers no AUC."""
    import io

    from radtransfer.grid.progress import GridProgress
    from radtransfer.grid.runs import RunOutcome

    runs, log = _runs(3), io.StringIO()
    progress = GridProgress("t", runs, done_before=0, total=3, log=log)
    progress.finished(RunOutcome(run_id=runs[0].id, state="recorded", status="finished", seconds=46.0, auc=0.8125))
    failed = RunOutcome(run_id=runs[1].id, state="recorded", status="failed", diverged_epoch=1, seconds=5.0)
    progress.finished(failed, running=1)
    progress.finished(RunOutcome(run_id=runs[2].id, state="recorded", status="finished", auc=float("nan")), running=0)
    lines = log.getvalue().splitlines()
    assert lines[0] == f"[grid t] finished {runs[0].id} in 0m46s: test AUC 0.812; done 1/3, left 2, ETA 1m32s"
    assert f"finished {runs[1].id} in 0m05s on ; failed, no test AUC; running 1" in lines[1]
    assert "; test AUC not defined; running 0, left 0" in lines[3]  # lines[2]: the failed run's loss

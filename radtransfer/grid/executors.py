"""Where a grid's runs execute: one after another in this process (``SequentialExecutor``), or each as a Ray task
on a cluster (``RayExecutor``: one run per GPU, retried when its worker dies).

Both go through ``runs.execute_claimed``, so they train, record and claim runs the same way and may share one
results folder with each other and with other shards. Ray is an optional extra (``pip install
'radtransfer[ray]'``), imported only when the Ray executor runs; every node must have radtransfer installed and
see the grid folder, the images and the weight files at the paths the driver uses (a shared filesystem).

Ray's token authentication (Ray ≥ 2.52; on by default for clusters ``ray.init()`` starts from Ray 2.59, and for
every cluster from Ray 2.61): joining a cluster, the executor uses the token this process has
(``$RAY_AUTH_TOKEN``, the file ``$RAY_AUTH_TOKEN_PATH`` names, or ``~/.ray/auth_token``) and says in one line
what to set when the cluster refuses it. The token is a node setting: each node's raylet has it and passes it
to its workers, so it never travels in the job's ``runtime_env`` (which the cluster stores and shows).
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import GridRunsFailedError, RadtransferError
from ..utils.choices import check_choice
from ..utils.optional import require
from .options import EXECUTORS
from .plan import longest_first
from .progress import GridProgress
from .runs import GridJob, RunOutcome, execute_claimed


class SequentialExecutor:
    """Runs the grid's runs one after another in this process. Several such processes (one per GPU, or
    job-array tasks) may share one out_dir: each skips the runs another one has claimed."""

    name = "sequential"

    def parallelism(self) -> int:
        return 1

    def run(self, job: GridJob, runs, progress: GridProgress, token: str) -> list[RunOutcome]:
        outcomes = []
        for run in runs:
            outcome = execute_claimed(job, run, token, on_start=progress.starting, say=progress.say)
            progress.finished(outcome)
            outcomes.append(outcome)
        return outcomes

    def close(self) -> None:
        pass


def resolve_executor(executor):
    """An executor from run_grid's ``executor`` argument: "sequential", "ray", or an executor object
    (e.g. ``RayExecutor(address="auto", gpus_per_run=1)``)."""
    if executor is None or executor == "sequential":
        return SequentialExecutor()
    if executor == "ray":
        return RayExecutor()
    if hasattr(executor, "run") and hasattr(executor, "parallelism"):
        return executor
    return check_choice("executor", executor, EXECUTORS, what="or a RayExecutor")


# -- Ray ----------------------------------------------------------------------------------------------------

# Set on the driver, sent to the workers in the job's runtime_env. Ray's own settings (RAY_AUTH_MODE,
# RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH) are not: workers take them from their node's raylet, and a token sent
# here would be stored in the cluster's job table and shown on its dashboard.
FORWARDED_ENV = (
    "KERAS_BACKEND",
    "TF_CPP_MIN_LOG_LEVEL",
    "KERAS_HOME",
    "RADTRANSFER_CACHE_DIR",
    "RADTRANSFER_WEIGHTS_DIR",
)
AUTH_MODE, AUTH_TOKEN, AUTH_TOKEN_PATH = "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"
_WORKER_JOBS: dict = {}  # per worker process: the grid job of its last task, with its cached fold


def _import_ray():
    return require("ray", "ray", "executor='ray'")


def _execute_on_worker(job: GridJob, run, token: str) -> RunOutcome:
    """The Ray task: one run, reusing this worker's job (and its fold's cached images) across tasks."""
    cached = _WORKER_JOBS.get(job.key)
    if cached is None:
        _WORKER_JOBS.clear()
        _WORKER_JOBS[job.key] = cached = job
    cached.enter_working_folder()
    return execute_claimed(cached, run, token)


@dataclass
class RayExecutor:
    """Runs each grid run as a Ray task.

    Args:
        address: the cluster to join: None (``$RAY_ADDRESS`` if set, else a Ray instance started on this
            machine with all its GPUs), "auto" (a cluster started on this machine with ``ray start``), or
            "ray://head:10001" / "head:6379".
        gpus_per_run: GPUs per run; default 1 where the cluster has GPUs, else 0.
        cpus_per_run: CPUs per run; default: with GPUs, the cluster's CPUs per GPU (for the input
            pipeline); without, all CPUs of the smallest node (TensorFlow uses every core of a node, so one
            run per node is the fast choice; pass 1 for as many runs as cores).
        max_retries: times a run is retried when its worker process or node dies; the retry resumes from the
            run's last finished epoch.
        init_kwargs: further ``ray.init`` arguments.
    """

    address: str | None = None
    gpus_per_run: float | None = None
    cpus_per_run: float | None = None
    max_retries: int = 3
    init_kwargs: dict = field(default_factory=dict)

    name = "ray"

    def __post_init__(self):
        self._started_here = False
        self._resources = None
        self._set_auth_mode = False  # RAY_AUTH_MODE=token set by _connect, unset again by close()

    def _connect(self):
        ray = _import_ray()
        if not ray.is_initialized():
            env = {name: os.environ[name] for name in FORWARDED_ENV if name in os.environ}
            kwargs = {"include_dashboard": False, **self.init_kwargs}
            if env:
                kwargs.setdefault("runtime_env", {"env_vars": env})
            address = self.address or os.environ.get("RAY_ADDRESS") or None
            auth_error = getattr(ray.exceptions, "AuthenticationError", None)  # Ray >= 2.52
            if address is not None and auth_error is not None:
                self._set_auth_mode = _use_token_if_any()
            try:
                ray.init(address=self.address, **kwargs)
            except (ConnectionError, *((auth_error,) if auth_error else ())) as exc:
                self._restore_auth_mode()
                if _refused_for_token(exc, auth_error):
                    raise RadtransferError(_token_refused_message(address)) from None
                raise RadtransferError(
                    f"Could not join the Ray cluster at address={self.address!r}: {exc}. Start it "
                    "with `ray start --head` (see docs/reproduce.md), or leave address out to "
                    "start Ray on this machine."
                ) from None
            except BaseException:
                self._restore_auth_mode()
                raise
            self._started_here = True
        return ray

    def _restore_auth_mode(self):
        if self._set_auth_mode:
            os.environ.pop(AUTH_MODE, None)
            _refresh_ray_auth()
            self._set_auth_mode = False

    def resources(self) -> tuple[float, float]:
        """(GPUs, CPUs) per run, from the arguments or the cluster."""
        if self._resources is None:
            ray = self._connect()
            total = ray.cluster_resources()
            gpus = self.gpus_per_run if self.gpus_per_run is not None else (1 if total.get("GPU", 0) >= 1 else 0)
            cpus = self.cpus_per_run
            if cpus is None:
                if gpus:
                    cpus = max(1, int(total.get("CPU", 1) // max(total.get("GPU", 1), 1)))
                else:
                    nodes = [n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")]
                    cpus = max(1, int(min(nodes))) if nodes else 1
            if gpus > total.get("GPU", 0) or cpus > total.get("CPU", 0):
                raise RadtransferError(
                    f"A run asks for {gpus} GPU(s) and {cpus} CPU(s), but the Ray cluster has "
                    f"{total.get('GPU', 0):g} GPU(s) and {total.get('CPU', 0):g} CPU(s) in all; "
                    "lower gpus_per_run / cpus_per_run."
                )
            self._resources = (gpus, cpus)
        return self._resources

    def parallelism(self) -> int:
        """How many runs the cluster can train at once (as it is now; autoscaling clusters may grow)."""
        ray = self._connect()
        gpus, cpus = self.resources()
        total = ray.cluster_resources()
        limits = [int(total.get("CPU", 0) // cpus)]
        if gpus:
            limits.append(int(total.get("GPU", 0) // gpus))
        return max(1, min(limits))

    def run(self, job: GridJob, runs, progress: GridProgress, token: str) -> list[RunOutcome]:
        ray = self._connect()
        gpus, cpus = self.resources()
        # A GPU run gets a fresh worker process (max_calls=1, Ray's own default for GPU tasks): a reused one
        # would keep the GPU its TensorFlow or JAX runtime started on, whatever GPU Ray assigns it next.
        task = ray.remote(max_calls=1 if gpus else 0)(_execute_on_worker).options(
            num_gpus=gpus, num_cpus=cpus, max_retries=self.max_retries, retry_exceptions=False
        )
        job_ref = ray.put(job)
        session = f"ray:{uuid.uuid4().hex[:12]}"
        pending = {task.remote(job_ref, run, f"{session}:{run.id}"): run for run in longest_first(runs)}
        capacity = self.parallelism()
        progress.say(
            f"{len(pending)} runs submitted to Ray ({gpus:g} GPU and {cpus:g} CPU per run, up to {capacity} at once)"
        )
        outcomes, failures = [], []
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    run = pending.pop(ref)
                    try:
                        outcome = ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        failures.append((run, exc))
                        progress.left.pop(run.id, None)
                        progress.say(f"{run.id} raised an error: {_first_line(exc)}")
                        continue
                    outcomes.append(outcome)
                    progress.finished(outcome, running=min(capacity, len(pending)))
        except KeyboardInterrupt:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
        if failures:
            listed = "\n".join(f"  {run.id}: {_first_line(exc)}" for run, exc in failures)
            raise GridRunsFailedError(
                f"{len(failures)} run(s) of the grid failed on Ray (the other runs were recorded; "
                f"rerunning the grid retries only these):\n{listed}",
                failures,
            )
        return outcomes

    def close(self) -> None:
        if self._started_here:
            _import_ray().shutdown()
            self._started_here = False
        self._restore_auth_mode()


def _token_source() -> str | None:
    """Where Ray finds this process's token, in Ray's order (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, the default
    file), or None when there is none."""
    if os.environ.get(AUTH_TOKEN, "").strip():
        return AUTH_TOKEN
    named = os.environ.get(AUTH_TOKEN_PATH)
    path = Path(named).expanduser() if named else Path.home() / ".ray" / "auth_token"
    try:
        has_token = bool(path.read_text().strip())
    except OSError:
        has_token = False
    if not has_token:
        return None
    return f"{AUTH_TOKEN_PATH}={named}" if named else str(path)


def _use_token_if_any() -> bool:
    """Before joining a cluster: with a token at hand and RAY_AUTH_MODE unset, turn token mode on for this
    process, as Ray >= 2.61 does by default (2.52-2.60 send no token to an explicit address without it; a
    cluster without authentication ignores the token). Returns whether it set RAY_AUTH_MODE."""
    set_here = AUTH_MODE not in os.environ and _token_source() is not None
    if set_here:
        os.environ[AUTH_MODE] = "token"
    _refresh_ray_auth()
    return set_here


def _refresh_ray_auth() -> None:
    """Makes Ray re-read RAY_AUTH_* from the environment: it caches them once a Ray session has run in the
    process (ray._raylet's Config and AuthenticationTokenLoader, Ray >= 2.52; without them, nothing to do)."""
    try:
        from ray._raylet import AuthenticationTokenLoader, Config

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()
    except (ImportError, AttributeError, TypeError):  # another Ray: its own reading of the environment holds
        return


def _refused_for_token(exc, auth_error) -> bool:
    """Whether ray.init failed on the token: Ray raises AuthenticationError before connecting (token mode,
    no token), or a ConnectionError whose cause names the refused token (the GCS answered Unauthenticated)."""
    seen = exc
    while seen is not None:
        if auth_error is not None and isinstance(seen, auth_error):
            return True
        text = str(seen)
        if "InvalidAuthToken" in text or "AuthenticationError" in text or "Unauthenticated" in text:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _token_refused_message(address: str) -> str:
    source, mode = _token_source(), os.environ.get(AUTH_MODE)
    where = (
        f"{AUTH_TOKEN}, ~/.ray/auth_token or the file {AUTH_TOKEN_PATH} names "
        "(`ray get-auth-token` on the head node prints the cluster's token; see docs/reproduce.md)"
    )
    if mode is not None and mode.lower() != "token":
        return (
            f"The Ray cluster at address={address!r} requires token authentication, but {AUTH_MODE}={mode} "
            f"here: unset it or set {AUTH_MODE}=token, with the cluster's token in {where}."
        )
    if source is None:
        named = os.environ.get(AUTH_TOKEN_PATH)
        missing = f" ({AUTH_TOKEN_PATH}={named} names no file with a token)" if named else ""
        return (
            f"The Ray cluster at address={address!r} requires token authentication and this process has no "
            f"token{missing}: put the cluster's token in {where}."
        )
    return (
        f"The Ray cluster at address={address!r} refused the token from {source}: put the cluster's token in {where}."
    )


def _first_line(exc) -> str:
    cause = getattr(exc, "cause", None)
    text = f"{type(cause).__name__}: {cause}" if cause is not None else str(exc)
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__

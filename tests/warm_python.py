"""Python processes for tests, started without paying for TensorFlow's import each time.

A test that needs a real process (one killed with SIGKILL, one holding a lock, two filling a cache at once) used
to start a fresh interpreter, which spends 10-12 s of CPU importing TensorFlow and Keras before the first line of
the test's code. ``run`` and ``Popen`` here start the same command as a child of a multiprocessing fork server that
imported TensorFlow, Keras and the package once per test process. The child is a process of its own (its own pid,
memory, exit status; a signal kills it as it kills a fresh interpreter) and runs the command as ``python`` would:
``-c CODE``, ``-m MODULE`` or ``SCRIPT`` with its arguments, in the given working directory and environment, its
stdout and stderr on pipes.

What only a fresh interpreter shows is tested with ``subprocess`` itself: which modules an import loads, what
TensorFlow prints while it starts, and anything read from the environment when TensorFlow, Keras or JAX is imported
(an ``env`` that changes such a variable is refused here, so a test cannot believe it set one).
"""

from __future__ import annotations

import multiprocessing
import os
import runpy
import subprocess
import sys
import threading

# Imported once by the fork server; every child starts with them loaded (and nothing run on TensorFlow yet).
PRELOAD = [
    "numpy",
    "pandas",
    "tensorflow",
    "keras",
    "radtransfer",
    "radtransfer.cli",
    "radtransfer.cli.commands",
    "radtransfer.training",
    "radtransfer.grid",
    "radtransfer.evaluation",
    "radtransfer.data.tf_data",
]
# Read when TensorFlow, Keras, JAX or the interpreter starts: a child could not change them. (TensorFlow's C++ log
# level, TF_CPP_*, is the fork server's too; the command sets it in the test process, and a child may set it.
# KERAS_HOME passes: radtransfer reads it at each weight search, which is what tests set it for.)
_READ_AT_IMPORT = ("KERAS_BACKEND", "TF_ENABLE_", "TF_USE_", "JAX_", "XLA_", "CUDA_", "OMP_", "MKL_")
_READ_AT_IMPORT += ("LD_", "PYTHONHASHSEED", "PYTHONPATH")

_SERVER_ENV = dict(os.environ)  # the environment the fork server starts with (the test session's, at import)
_context = None


def _server():
    global _context
    if _context is None:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(PRELOAD)
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(_SERVER_ENV)
        try:
            from multiprocessing import forkserver

            forkserver.ensure_running()
        finally:
            os.environ.clear()
            os.environ.update(saved)
        _context = context
    return _context


def _check_env(env: dict) -> None:
    changed = sorted(
        key
        for key in set(env) | set(_SERVER_ENV)
        if key.startswith(_READ_AT_IMPORT) and env.get(key) != _SERVER_ENV.get(key)
    )
    if changed:
        raise ValueError(
            f"warm_python: {', '.join(changed)} would differ from the fork server's, but is read when TensorFlow, "
            "Keras or the interpreter starts; use subprocess for this test"
        )


def _child(argv: list, cwd, env: dict, out, err) -> None:
    """Runs in the forked child: the command's stdio, directory and environment, then its code."""
    for connection, fd in ((out, 1), (err, 2)):
        os.dup2(connection.fileno(), fd)
        connection.close()
    if cwd is not None:
        os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    if argv[0] == "-c":
        sys.argv = ["-c", *argv[2:]]
        sys.path.insert(0, "")
        exec(compile(argv[1], "<string>", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
    elif argv[0] == "-m":
        sys.argv = [argv[1], *argv[2:]]
        sys.path.insert(0, os.getcwd())
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = list(argv)
        sys.path.insert(0, os.path.dirname(os.path.abspath(argv[0])))
        runpy.run_path(argv[0], run_name="__main__")


def _text(connection):
    fd = os.dup(connection.fileno())
    connection.close()
    return open(fd, encoding="utf-8", errors="replace")


class Popen:
    """The subset of ``subprocess.Popen`` the tests use, for ``[sys.executable, ...]`` commands, always in text
    mode with stdout and stderr on pipes."""

    def __init__(self, args, cwd=None, env=None, **_ignored):
        if os.path.realpath(args[0]) != os.path.realpath(sys.executable):
            raise ValueError(f"warm_python runs the test interpreter only, not {args[0]}")
        env = dict(os.environ if env is None else env)
        _check_env(env)
        self.args = list(args)
        context = _server()
        out_r, out_w = context.Pipe(duplex=False)
        err_r, err_w = context.Pipe(duplex=False)
        self._process = context.Process(target=_child, args=(list(args[1:]), cwd, env, out_w, err_w), daemon=False)
        self._process.start()
        out_w.close()
        err_w.close()
        self.pid = self._process.pid
        self.stdout, self.stderr = (_text(connection) for connection in (out_r, err_r))
        self.returncode = None
        self._output = None

    def poll(self):
        if self.returncode is None and not self._process.is_alive():
            self.returncode = self._process.exitcode
        return self.returncode

    def wait(self, timeout=None):
        self._process.join(timeout)
        if self.poll() is None:
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self.returncode

    def send_signal(self, sig):
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self):
        self._process.kill()

    def terminate(self):
        self._process.terminate()

    def communicate(self, timeout=None):
        """Both streams to their ends and the exit status, as ``subprocess.Popen.communicate`` (stdout, stderr);
        once read, a later call gives the same texts."""
        if self._output is not None:
            return self._output
        texts = {}
        readers = [
            threading.Thread(target=lambda name=name, f=f: texts.__setitem__(name, f.read()), daemon=True)
            for name, f in (("out", self.stdout), ("err", self.stderr))
        ]
        for reader in readers:
            reader.start()
        try:
            self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self.wait()
            raise
        finally:
            for reader in readers:
                reader.join()
            self.stdout.close()
            self.stderr.close()
        self._output = texts.get("out", ""), texts.get("err", "")
        return self._output

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.poll() is None:
            self.kill()
            self.wait()
        self.stdout.close()
        self.stderr.close()


def run(args, cwd=None, env=None, timeout=None, check=False, **_ignored) -> subprocess.CompletedProcess:
    """As ``subprocess.run(args, capture_output=True, text=True, ...)``."""
    process = Popen(args, cwd=cwd, env=env)
    stdout, stderr = process.communicate(timeout=timeout)
    done = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    if check:
        done.check_returncode()
    return done

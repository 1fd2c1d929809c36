"""Claims: which process may write a folder, when several processes can reach it.

A grid run's folder (grid/claims.py) and a training run's folder (training/run_folder.py) are claimed before
anything is written into them. Grid shards, job-array tasks, local workers, Ray tasks and a second ``radtransfer
train`` can all point at the same folder, on a shared filesystem too. The claim file is created with ``os.link``
from a fully written temporary file: the link either creates the whole claim or fails because one exists, also
on NFS, where ``O_EXCL`` was long unreliable. A holder touches the file every ``heartbeat`` seconds while it holds
it.

A claim left by a holder that died is taken over:

- on the same machine at once, when the holder's process is gone (its pid and start time no longer
  match a live process);
- from another machine when the file has not been touched for ``stale_after`` seconds;
- at once by the holder's own retry: a claim carries a token, and a Ray task retried after its worker
  died presents the same token.

A holder checks that the claim is still its own (its nonce is still in the file) before it writes what it
claimed the folder for, so a run is recorded once even if a claim was taken over while its holder still lived.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from .processes import process_alive, start_ticks, this_machine

HEARTBEAT_S = 30.0
STALE_AFTER_S = 600.0


def new_token() -> str:
    """A token for a process that claims runs for itself."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


_TOKENS: list[str] = []  # claiming_as's tokens, innermost last
_PROCESS_TOKEN: list[str] = []  # this process's own token, made on first use


def current_token() -> str:
    """The token this process claims folders with: the innermost ``claiming_as``'s, else its own."""
    if _TOKENS:
        return _TOKENS[-1]
    if not _PROCESS_TOKEN or not _PROCESS_TOKEN[0].startswith(f"{socket.gethostname()}:{os.getpid()}:"):
        _PROCESS_TOKEN[:] = [new_token()]  # made here, or in a parent before a fork
    return _PROCESS_TOKEN[0]


@contextmanager
def claiming_as(token: str):
    """Claims made inside the block use ``token`` (a grid run's: its retry then takes over its run folder too)."""
    _TOKENS.append(token)
    try:
        yield
    finally:
        _TOKENS.pop()


class FolderClaim:
    """The exclusive right to write a folder, held as a claim file in it.

    Use as a context manager::

        with FolderClaim(run_dir / "claim.json", token) as claim:
            if claim.held:
                ...train...
                if claim.still_held():
                    ...write the record...

    Args:
        path: the claim file (its folder is created if missing).
        token: who claims: equal tokens are one holder (a retried Ray task).
        heartbeat: seconds between touches of the claim file while it is held.
        stale_after: seconds without a touch after which another machine's claim is taken over.
    """

    def __init__(self, path, token: str, *, heartbeat: float = HEARTBEAT_S, stale_after: float = STALE_AFTER_S):
        self.path = Path(path)
        self.folder = self.path.parent
        self.token = token
        self.heartbeat, self.stale_after = heartbeat, stale_after
        self.nonce = uuid.uuid4().hex
        self.held = False
        self.holder: dict | None = None  # who holds it, when we could not claim it
        self.took_over: dict | None = None  # the dead holder whose claim we took
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._thread = None

    def __enter__(self) -> "FolderClaim":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    # -- reading -----------------------------------------------------------------------------------

    def read(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (ValueError, OSError):
            return {}  # unreadable: treated as held by an unknown process until it goes stale

    def is_stale(self, info: dict) -> bool:
        """Whether a claim someone else wrote may be taken over."""
        if info.get("token") == self.token:
            return True
        if info.get("machine") == this_machine() and isinstance(info.get("pid"), int):
            return not process_alive(info["pid"], info.get("start_ticks"))
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return True
        return age > self.stale_after

    # -- claiming ----------------------------------------------------------------------------------

    def _payload(self) -> dict:
        pid = os.getpid()
        return {
            "token": self.token,
            "nonce": self.nonce,
            "machine": this_machine(),
            "host": socket.gethostname(),
            "pid": pid,
            "start_ticks": start_ticks(pid),
            "claimed_at": time.time(),
        }

    def _try_create(self) -> bool:
        tmp = self.folder / f".{self.path.stem}.{self.nonce}.tmp"
        with open(tmp, "w") as handle:
            json.dump(self._payload(), handle)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink()

    def _take_over(self, stale: dict) -> None:
        """Moves a stale claim aside; if what was moved is not the claim judged stale (someone took it over
        in between), puts it back."""
        aside = self.folder / f".{self.path.stem}.{self.nonce}.stale"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        try:
            moved = json.loads(aside.read_text())
        except (ValueError, OSError):
            moved = {}
        if moved.get("nonce") != stale.get("nonce"):
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass
        else:
            self.took_over = stale
        aside.unlink()

    def acquire(self) -> bool:
        """Claims the folder if it is free or its holder is dead; ``held`` says whether it worked."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(5):
            if self._try_create():
                self.held = True
                self._start_heartbeat()
                return True
            info = self.read()
            if info is None:
                continue  # released in between
            if not self.is_stale(info):
                self.holder = info
                return False
            self._take_over(info)
        self.holder = self.read()
        return False

    def still_held(self) -> bool:
        """Whether the claim file is still this holder's (checked before what it was claimed for is written)."""
        if not self.held or self._lost.is_set():
            return False
        info = self.read()
        return bool(info) and info.get("nonce") == self.nonce

    def release(self) -> None:
        """Stops the heartbeat and removes the claim file, if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self.still_held():
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
        self.held = False

    def _start_heartbeat(self) -> None:
        def beat():
            while not self._stop.wait(self.heartbeat):
                info = self.read()
                if not info or info.get("nonce") != self.nonce:
                    self._lost.set()
                    return
                try:
                    os.utime(self.path)
                except FileNotFoundError:
                    self._lost.set()
                    return

        self._thread = threading.Thread(target=beat, name=f"claim-heartbeat:{self.folder.name}", daemon=True)
        self._thread.start()

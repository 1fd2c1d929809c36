"""Which machine this is, and whether a process of it is still alive (Linux /proc, with fallbacks)."""

from __future__ import annotations

import os
import socket
from pathlib import Path


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), which tells a pid reused by another process
    from the one that was recorded."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def this_machine() -> str:
    """This machine since its last boot: its host name and boot id."""
    return f"{socket.gethostname()}/{boot_id()}"


def process_alive(pid: int, started: int | None = None) -> bool:
    """Whether ``pid`` is a live process on this machine (and, if given, the one started at ``started`` ticks)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if started is not None:
        current = start_ticks(pid)
        if current is not None and current != started:
            return False
    try:  # a zombie (killed, not yet reaped by its parent) holds nothing
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True

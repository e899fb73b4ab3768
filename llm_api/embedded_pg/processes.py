"""Process plumbing: free ports, process states, and waiting."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

LISTEN_HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago (tiny race until postgres binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LISTEN_HOST, 0))
        return sock.getsockname()[1]


def process_state(pid: int) -> str | None:
    """Linux process state letter ("R", "S", "Z", ...) or None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and ")"; the state follows the last ")".
    return stat.rpartition(")")[2].split()[0]


def processes_in(directory: Path) -> list[int]:
    """PIDs of live processes whose working directory is *directory*.

    Every PostgreSQL server process chdirs into its cluster, so this finds a cluster's
    processes even after they were orphaned. Processes we may not inspect (other users',
    when not root) are skipped; PostgreSQL runs as us in that case anyway.
    """
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "cwd") == str(directory):
                    pids.append(int(entry.name))
            except OSError:  # gone meanwhile, not ours, or a zombie (which has no cwd)
                continue
    return pids


def wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    """Poll *condition* until it is true; False if *timeout* seconds pass first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True

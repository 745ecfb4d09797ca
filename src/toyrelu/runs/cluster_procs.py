"""The processes of a local Ray instance that toyrelu started, and their end.

Every process of the instance inherits an environment mark (a variable set while Ray starts),
so they are found by it whoever their parent is by then: Ray reparents its agents, and a
worker's title hides its command line. ``end_marked`` ends them when the executor closes. If
the driver dies first (kill -9, an out-of-memory kill), a reaper process started beside the
instance ends them: Ray's own fate-sharing ends most, but its dashboard and runtime-env agents
outlive the driver and ignore SIGTERM. ``ray stop`` is never used, since it ends every Ray
process of the machine, other users' too.

Standard library only: the reaper runs as ``python -m toyrelu.runs.cluster_procs`` and must
start at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

from toyrelu.runs.store_leases import process_start

# How long a marked process gets to end on SIGTERM before SIGKILL, and how often the reaper
# looks for its driver.
STOP_S = 3.0
POLL_S = 0.5
# After the driver's death, the reaper ends marked processes until none has been seen for
# QUIET_S, for REAP_S at most.
QUIET_S = 2.0
REAP_S = 30.0


def marked(name: str, value: str) -> list[int]:
    """Pids of this user's processes, this one aside, whose environment has ``name=value``
    (other users' environments cannot be read)."""
    mark = f"{name}={value}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/environ", "rb") as f:
                if mark in f.read().split(b"\0"):
                    found.append(int(entry))
    return found


def end_marked(name: str, value: str) -> None:
    """SIGTERM every process marked ``name=value``, then SIGKILL those still there after
    ``STOP_S``, and any that appeared meanwhile, until none is left (for ``STOP_S`` more at
    most)."""
    pids = marked(name, value)
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_S
    while pids and time.monotonic() < deadline:
        time.sleep(0.1)
        pids = marked(name, value)
    deadline = time.monotonic() + STOP_S
    while pids and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
        pids = marked(name, value)


def start_reaper(name: str, value: str) -> subprocess.Popen:
    """A process that ends the processes marked ``name=value`` once this one has died. It runs
    in a session of its own, so that a Ctrl-C meant for toyrelu does not end it first; the
    executor stops it after ending the processes itself."""
    pid = os.getpid()
    return subprocess.Popen(
        [sys.executable, "-m", "toyrelu.runs.cluster_procs", str(pid),
         process_start(pid) or "", name, value],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, env={k: v for k, v in os.environ.items() if k != name})


def reap(pid: int, start: str, name: str, value: str) -> None:
    """Wait until the process ``pid`` that started at ``start`` is gone, then end the marked
    processes, and again any that a dying process of Ray starts, until none has been seen for
    ``QUIET_S`` (or ``REAP_S`` have passed)."""
    while process_start(pid) == start:
        time.sleep(POLL_S)
    deadline = time.monotonic() + REAP_S
    quiet = time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - quiet < QUIET_S:
        if marked(name, value):
            end_marked(name, value)
            quiet = time.monotonic()
        time.sleep(POLL_S / 5)


if __name__ == "__main__":
    reap(int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4])

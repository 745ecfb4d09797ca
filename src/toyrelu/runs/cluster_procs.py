"""The processes of a local Ray instance that toyrelu started, and their end.

They are found two ways, since neither alone finds them all:

- an environment mark (a variable set while the instance lives) that they inherit, whoever
  their parent is by then: Ray reparents its agents, and a worker's title hides its command
  line. But a process that sets its title may overwrite its environment as /proc shows it, and
  Ray's agents do;
- the process tree: the processes that ``ray.init`` started here and all their descendants,
  each known by its pid and its start time (so a reused pid is never taken for it), recorded
  while they still hang below this process.

``end`` ends them when the executor closes. If the driver dies first (kill -9, an out-of-memory
kill), a reaper process started beside the instance ends them: Ray's own fate-sharing ends most,
but its dashboard and runtime-env agents outlive the driver and ignore SIGTERM. ``ray stop`` is
never used, since it ends every Ray process of the machine, other users' too.

Standard library only: the reaper runs as ``python -m toyrelu.runs.cluster_procs`` and must
start at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator

from toyrelu.runs.store_leases import process_start

# How long a process gets to end on SIGTERM before SIGKILL, and how often the reaper looks at
# the driver and its descendants.
STOP_S = 3.0
POLL_S = 0.5
# After the driver's death, the reaper ends what it found until nothing has been seen for
# QUIET_S, for REAP_S at most.
QUIET_S = 2.0
REAP_S = 30.0

Known = dict[int, str]  # pid -> its start time (process_start)


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


def children() -> dict[int, list[int]]:
    """Parent pid -> the pids of its children, for every process."""
    out: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                with open(f"/proc/{entry}/stat") as f:
                    # The command name (field 2) is in parentheses and may hold spaces.
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                out.setdefault(ppid, []).append(int(entry))
    return out


def tree(roots: Iterable[int], skip: Iterable[int] = ()) -> Known:
    """``roots`` and all their descendants but ``skip`` (and theirs), with start times."""
    below, seen, todo = children(), set(skip), list(roots)
    out: Known = {}
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        start = process_start(pid)
        if start is not None:
            out[pid] = start
            todo.extend(below.get(pid, ()))
    return out


def alive(known: Known) -> list[int]:
    return [pid for pid, start in known.items() if process_start(pid) == start]


def end(find: Callable[[], list[int]]) -> None:
    """SIGTERM every process ``find`` gives, then SIGKILL those still there after ``STOP_S``,
    and any that appeared meanwhile, until none is left (for ``STOP_S`` more at most)."""
    pids = find()
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_S
    while pids and time.monotonic() < deadline:
        time.sleep(0.1)
        pids = find()
    deadline = time.monotonic() + STOP_S
    while pids and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
        pids = find()


def finder(known: Known, name: str, value: str) -> Callable[[], list[int]]:
    """The processes of ``known`` still running, and those marked ``name=value``."""
    return lambda: sorted(set(alive(known)) | set(marked(name, value)))


def start_reaper(name: str, value: str) -> subprocess.Popen:
    """A process that ends this process's descendants and the processes marked ``name=value``
    once this one has died. It runs in a session of its own, so that a Ctrl-C meant for
    toyrelu does not end it first; the executor stops it after ending the processes itself."""
    pid = os.getpid()
    return subprocess.Popen(
        [sys.executable, "-m", "toyrelu.runs.cluster_procs", str(pid),
         process_start(pid) or "", name, value],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, env={k: v for k, v in os.environ.items() if k != name})


def reap(pid: int, start: str, name: str, value: str) -> None:
    """While the process ``pid`` that started at ``start`` runs, record its descendants; once
    it is gone, end them and the marked processes, and again any that appear, until none has
    been seen for ``QUIET_S`` (or ``REAP_S`` have passed)."""
    known: Known = {}
    while process_start(pid) == start:
        known.update(tree(children().get(pid, ()), skip=[os.getpid()]))
        time.sleep(POLL_S)
    find = finder(known, name, value)
    deadline = time.monotonic() + REAP_S
    quiet = time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - quiet < QUIET_S:
        if find():
            end(find)
            quiet = time.monotonic()
        time.sleep(POLL_S / 5)


if __name__ == "__main__":
    reap(int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4])


@contextlib.contextmanager
def held_stderr(hold: bool) -> Iterator[None]:
    """While joining a cluster, Ray's core prints each failed try to the process's stderr
    (file descriptor 2, past Python's ``sys.stderr``), one line a second for some twenty
    seconds when the address answers but is no Ray: held in a temporary file, so that a failure
    is the one line toyrelu prints."""
    if not hold:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as held:
            os.dup2(held.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)

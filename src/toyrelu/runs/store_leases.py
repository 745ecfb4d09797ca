"""Leases: which sweep is training which run, so that sweeps sharing one store train each run
once.

A sweep claims a run right before training it: in one write transaction it checks that the run
is not finished and that no live owner holds its lease, and writes its own lease. ``Store.put``
deletes the run's lease with the row that finishes it; a sweep drops its remaining leases when it
ends. A lease whose owner died is taken over:

- on the same host, the owner is gone when no process has its pid, or the process with that
  pid started at another time than the owner (the pid was reused): Linux's start time of a
  process, ``/proc/PID/stat`` field 22, tells two processes with one pid apart;
- on another host, whose processes this one cannot see, the owner is gone when it has not
  renewed its lease's heartbeat for ``LEASE_TIMEOUT_S``; a sweep renews it as its runs report
  steps, at most every ``HEARTBEAT_S``.
"""

from __future__ import annotations

import os
import secrets
import socket
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from toyrelu.runs.store_schema import transaction

# A live sweep renews its heartbeat every HEARTBEAT_S while its runs report steps (the CPU
# engine reports about every second of work); the timeout leaves room for ten missed renewals
# before a sweep on another host takes the runs over.
HEARTBEAT_S = 60.0
LEASE_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Owner:
    """Who holds a lease: a token of its own (one per store connection), and the host, pid and
    process start time that tell whether it still runs."""

    token: str
    host: str
    pid: int
    pid_start: str

    @classmethod
    def here(cls) -> Owner:
        pid = os.getpid()
        return cls(secrets.token_hex(8), socket.gethostname(), pid, process_start(pid) or "")


def process_start(pid: int) -> str | None:
    """When the running process ``pid`` started (clock ticks since boot), or None when no
    process has that pid (a zombie counts as gone). Without ``/proc``, "" for any live pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        if Path("/proc/self/stat").exists():
            return None
        return "" if _pid_exists(pid) else None
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    fields = stat.rsplit(")", 1)[-1].split()
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return fields[19]


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def held(host: str, pid: int, pid_start: str, heartbeat: float, here: Owner, now: float) -> bool:
    """Whether the lease of (``host``, ``pid``, ``pid_start``, ``heartbeat``) still has a live
    owner, as seen by ``here`` at time ``now`` (seconds since the epoch)."""
    if host != here.host:
        return now - heartbeat < LEASE_TIMEOUT_S
    return process_start(pid) == pid_start


def claim(conn: sqlite3.Connection, run_id: str, owner: Owner, done: tuple[str, ...],
          now: float) -> bool:
    """Lease ``run_id`` to ``owner`` unless the run's status is one of ``done`` or a live other
    owner holds it; True when ``owner`` holds the lease now."""
    with transaction(conn):
        row = conn.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is not None and row[0] in done:
            return False
        lease = conn.execute("SELECT owner, host, pid, pid_start, heartbeat FROM leases"
                             " WHERE run_id = ?", (run_id,)).fetchone()
        if lease is not None:
            token, host, pid, pid_start, heartbeat = lease
            if token != owner.token and held(host, pid, pid_start, heartbeat, owner, now):
                return False
        conn.execute(
            "INSERT OR REPLACE INTO leases (run_id, owner, host, pid, pid_start, heartbeat)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (run_id, owner.token, owner.host, owner.pid, owner.pid_start, now),
        )
    return True


def renew(conn: sqlite3.Connection, owner: Owner, now: float) -> None:
    """Move the heartbeat of every lease ``owner`` holds to ``now``."""
    with transaction(conn):
        conn.execute("UPDATE leases SET heartbeat = ? WHERE owner = ?", (now, owner.token))


def release(conn: sqlite3.Connection, owner: Owner) -> None:
    """Drop every lease ``owner`` holds."""
    with transaction(conn):
        conn.execute("DELETE FROM leases WHERE owner = ?", (owner.token,))

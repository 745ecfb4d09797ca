"""Open a local HTML file in headless Chromium and report what a reader's browser saw.

Chromium is driven through its DevTools protocol over ``--remote-debugging-pipe``: it reads
commands from file descriptor 3 and writes replies and events to descriptor 4, each message one
JSON object ended by a NUL byte. That needs no websocket and no driver library, only the
``chromium`` binary (Debian's package). The page itself runs no script: the title and the images'
state are read with ``Runtime.evaluate`` after the load event.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BINARIES = ("chromium", "chromium-browser", "google-chrome")
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--remote-debugging-pipe",
)
# Chromium expects the pipe exactly on fds 3 (commands) and 4 (replies). This tiny program puts
# the two fds given in argv there and execs the browser: it copies both above 9 first, so that
# neither dup2 overwrites the other, and needs no preexec_fn (unsafe in a threaded process).
ONTO_3_AND_4 = """import fcntl, os, sys
high = [fcntl.fcntl(int(fd), fcntl.F_DUPFD, 10) for fd in sys.argv[1:3]]
for fd in sys.argv[1:3]:
    os.close(int(fd))
for target, fd in zip((3, 4), high):
    os.dup2(fd, target)
    os.close(fd)
os.execvp(sys.argv[3], sys.argv[3:])
"""
# What counts as a console error: console.error/assert calls, uncaught exceptions, and the
# browser's own error log (a resource that failed to load, a blocked request, ...).
PAGE_STATE = """JSON.stringify({
  title: document.title,
  images: Array.from(document.images, img => ({
    src: img.getAttribute("src").slice(0, 40), complete: img.complete,
    naturalWidth: img.naturalWidth, naturalHeight: img.naturalHeight})),
})"""


@dataclass
class PageReport:
    title: str
    images: list[dict[str, Any]]
    errors: list[str] = field(default_factory=list)


def find_chromium() -> str | None:
    """Path of a Chromium binary: $CHROMIUM if set, else the first of BINARIES on PATH."""
    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"]
    for name in BINARIES:
        path = shutil.which(name)
        if path:
            return path
    return None


def open_page(binary: str, page: Path, profile: Path, timeout: float = 60.0) -> PageReport:
    """Load ``page`` (a local file) in a fresh headless Chromium with an empty profile folder
    and return its title, its images' load state and every console error seen until the load
    event."""
    commands_read, commands_write = os.pipe()
    events_read, events_write = os.pipe()

    process = subprocess.Popen(
        [sys.executable, "-c", ONTO_3_AND_4, str(commands_read), str(events_write),
         binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
        pass_fds=(commands_read, events_write),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    os.close(commands_read)
    os.close(events_write)
    client = _Client(commands_write, events_read, time.monotonic() + timeout)
    try:
        target = client.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = client.call("Target.attachToTarget",
                              {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            client.call(f"{domain}.enable", session=session)
        client.call("Page.navigate", {"url": page.resolve().as_uri()}, session=session)
        client.wait(lambda m: m.get("method") == "Page.loadEventFired"
                    and m.get("sessionId") == session)
        state = client.call("Runtime.evaluate", {"expression": PAGE_STATE,
                                                 "returnByValue": True}, session=session)
        values = json.loads(state["result"]["value"])
        errors = [e for e in map(_error, client.seen) if e]
        try:
            client.call("Browser.close")
        except EOFError:  # the browser may close the pipe before it answers
            pass
        process.wait(timeout=10)
        return PageReport(values["title"], values["images"], errors)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(commands_write)
        os.close(events_read)


def _error(message: dict[str, Any]) -> str | None:
    method, params = message.get("method"), message.get("params", {})
    if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
        return "console: " + " ".join(str(a.get("value", a.get("description")))
                                      for a in params.get("args", []))
    if method == "Runtime.exceptionThrown":
        details = params["exceptionDetails"]
        return "exception: " + details.get("exception", {}).get("description", details["text"])
    if method == "Log.entryAdded" and params["entry"]["level"] == "error":
        entry = params["entry"]
        return f"log: {entry['text']} {entry.get('url', '')}".strip()
    return None


class _Client:
    """Request/response over the NUL-delimited pipe; every message read is kept in ``seen``."""

    def __init__(self, write_fd: int, read_fd: int, deadline: float):
        self.write_fd, self.read_fd, self.deadline = write_fd, read_fd, deadline
        self.seen: list[dict[str, Any]] = []
        self._buffer = b""
        self._next_id = 0

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.write_fd, json.dumps(message).encode() + b"\0")
        wanted = self._next_id
        reply = self.wait(lambda m: m.get("id") == wanted)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def wait(self, match: Any) -> dict[str, Any]:
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                message = json.loads(raw)
                self.seen.append(message)
                if match(message):
                    return message
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("Chromium did not answer in time")
            ready, _, _ = select.select([self.read_fd], [], [], left)
            if ready:
                chunk = os.read(self.read_fd, 1 << 16)
                if not chunk:
                    raise EOFError("Chromium closed the DevTools pipe")
                self._buffer += chunk

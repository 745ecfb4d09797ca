"""The command line, ``toyrelu``: ``reproduce``, ``sweep``, ``figures``, ``report``, ``export``,
``animate``, ``presets`` and ``sensitivity``.

``options`` makes every RunConfig field an option typed by the field (``--n-features 10000``; a
comma list makes it a sweep axis: ``--n-train 3,5,10``), ``parser`` the parser of every command,
``commands`` what each does (parse, call the layers below, print) and ``entry`` the entry point:
bad input ends with one line on stderr and exit code 2.

This module imports nothing of them until ``main`` runs, so that the program can take over
Ctrl-C before its imports (``_quiet_until_ready``).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

__all__ = ["UsageError", "build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """The ``toyrelu`` program (``argv`` None: the command line) or one command called from
    Python; returns the exit code (``entry.main``)."""
    if argv is None:
        _quiet_until_ready()
    from toyrelu.cli.entry import main as run

    return run(argv)


def _quiet_until_ready() -> None:
    """A stopping signal while the program imports its modules ends it with one line and
    128 + the signal's number, as ``entry.main`` does once it runs, instead of Python's
    traceback from inside an import. Only the program does this: a caller of ``main(argv)``
    keeps its own handlers."""
    if threading.current_thread() is not threading.main_thread():
        return
    from toyrelu.runs.resources import STOPPING

    def stop(signum: int, frame: object) -> None:
        # A closed terminal may take stderr with it; the exit code still says what happened.
        try:
            os.write(sys.stderr.fileno(), b"toyrelu: interrupted\n")
        except (OSError, AttributeError, ValueError):
            pass
        finally:
            os._exit(128 + signum)

    for s in STOPPING:
        if signal.getsignal(s) is not signal.SIG_IGN:  # nohup's SIGHUP stays ignored
            signal.signal(s, stop)


def __getattr__(name: str) -> Any:
    # The parser's names, loaded on first use like the rest of the command line.
    if name in ("UsageError", "build_parser"):
        from toyrelu.cli import parser

        return getattr(parser, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

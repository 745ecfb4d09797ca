"""``main``: parse, run the command, and turn what went wrong into one line and an exit code."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence

from toyrelu.cli.commands import COMMANDS
from toyrelu.cli.parser import RunsFailed, UsageError, parse
from toyrelu.core.config import ConfigError
from toyrelu.runs.resources import STOPPING


class Stopped(KeyboardInterrupt):
    """A stopping signal, raised where the command was, so that it unwinds as from Ctrl-C:
    ``finally`` blocks stop worker processes and close the store."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 1 when every run a command trained failed,
    2 bad input, 141 when the reader of stdout went away, as ``toyrelu export --out - | head``
    does, and 128 + the signal's number when stopped by SIGINT, SIGTERM or SIGHUP: 130, 143,
    129)."""
    # A path given in bytes that are not UTF-8 reaches Python as lone surrogates; printing it
    # back must give the user's bytes, not a UnicodeEncodeError after the work is done.
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="surrogateescape")
    with _stopping_signals_raise(exiting=argv is None):
        return _main(argv)


# The commands that train and store runs: an interrupted one is resumed by running it again.
TRAINING = ("reproduce", "sweep", "sensitivity")


def _main(argv: Sequence[str] | None) -> int:
    command = None
    try:
        args = parse(argv)
        command = args.command
        COMMANDS[command](args)
    except BrokenPipeError:
        # Nothing is wrong with the input: the reader has what it wanted. Point stdout at
        # /dev/null so that the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13  # as if killed by SIGPIPE
    except _input_errors() as exc:
        print(f"toyrelu: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    except RunsFailed as exc:
        print(f"toyrelu: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # an output path that cannot be written
        where = f": {exc.filename}" if exc.filename else ""
        print(f"toyrelu: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        signum = exc.signum if isinstance(exc, Stopped) else signal.SIGINT
        by = "" if signum == signal.SIGINT else f" by {signal.Signals(signum).name}"
        # A closed terminal may take stderr with it; the exit code still says what happened.
        then = ("; finished runs are stored, rerun the same command to resume"
                if command in TRAINING else "")
        with contextlib.suppress(OSError):
            print(f"toyrelu: interrupted{by}{then}", file=sys.stderr)
        return 128 + signum
    return 0


@contextlib.contextmanager
def _stopping_signals_raise(*, exiting: bool) -> Iterator[None]:
    """While the command runs, a stopping signal raises ``Stopped`` where the command is, and
    the signals that follow it are ignored, so that a second Ctrl-C cannot cut the clean-up
    short. A signal ignored already (``nohup`` ignores SIGHUP) stays ignored. The handlers in
    place before are restored afterwards (``main`` may be called in a process that has its
    own), unless a signal stopped the command and the process is ``exiting`` (``main`` read
    its arguments from the command line, as the ``toyrelu`` program does): a second signal
    between the last line and the exit would kill it by that signal instead of the exit code
    that says what happened."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers; Ctrl-C is then Python's default
        return

    stopped = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopped
        stopped = True
        for s in before:
            signal.signal(s, signal.SIG_IGN)
        raise Stopped(signum)

    # A handler that Python did not install (None) could not be put back.
    before = {s: h for s in STOPPING
              if (h := signal.getsignal(s)) not in (signal.SIG_IGN, None)}
    for s in before:
        signal.signal(s, stop)
    try:
        yield
    finally:
        if not (stopped and exiting):
            for s, handler in before.items():
                signal.signal(s, handler)


def _input_errors() -> tuple[type[Exception], ...]:
    """The errors that mean bad input: the CLI's own, the config's, the store's, the
    outputs' and a cluster's.

    Python evaluates an ``except`` clause only once an exception is raised, and a StoreError
    can only come from a loaded store module; so the store (and numpy with it) is not imported
    just to be ready to catch its error."""
    lazy = {"toyrelu.runs.store": "StoreError", "toyrelu.runs.outputs": "OutputError",
            "toyrelu.runs.cluster_ray": "ClusterError"}
    loaded = [getattr(sys.modules[m], name) for m, name in lazy.items() if m in sys.modules]
    return (UsageError, ConfigError, *loaded)

"""``main``: parse, run the command, and turn what went wrong into one line and an exit code."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from toyrelu.cli.commands import COMMANDS
from toyrelu.cli.parser import RunsFailed, UsageError, parse
from toyrelu.core.config import ConfigError


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 1 when every run a command trained failed,
    2 bad input, 130 interrupted, 141 when the reader of stdout went away, as
    ``toyrelu export --out - | head`` does)."""
    try:
        args = parse(argv)
        COMMANDS[args.command](args)
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
    except KeyboardInterrupt:
        print("toyrelu: interrupted; finished runs are stored, rerun the same command to resume",
              file=sys.stderr)
        return 130
    return 0


def _input_errors() -> tuple[type[Exception], ...]:
    """The errors that mean bad input: the CLI's own, the config's, the store's and the
    outputs'.

    Python evaluates an ``except`` clause only once an exception is raised, and a StoreError
    can only come from a loaded store module; so the store (and numpy with it) is not imported
    just to be ready to catch its error."""
    lazy = {"toyrelu.runs.store": "StoreError", "toyrelu.runs.outputs": "OutputError"}
    loaded = [getattr(sys.modules[m], name) for m, name in lazy.items() if m in sys.modules]
    return (UsageError, ConfigError, *loaded)

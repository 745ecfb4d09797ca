"""Writing output files safely: whole or not at all, and never onto what is being read.

Every file a command writes (exports, figures, reports, summaries) goes through ``atomic``, or
``atomic_path`` for a writer that opens the file by name (animations): the bytes go to a
temporary file in the same folder, which replaces the target by a rename only once it is
complete and flushed to disk. A full disk or an interrupt leaves the old file (or
none) and no partial one, and the error names the target. ``target`` refuses a path that is
empty, a folder, or the very file a command reads from (the store), which a careless
``--out runs.sqlite`` would otherwise overwrite.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

SQLITE_SIDE_FILES = ("-journal", "-wal", "-shm")


class OutputError(ValueError):
    """A target that must not be written; the message is one line naming the option."""


def target(path: str | os.PathLike, option: str, *,
           inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """``path`` as the file an option names, refused (``OutputError``) when it is empty, an
    existing folder, the same file as one of ``inputs``, or the journal SQLite keeps beside
    one (``SQLITE_SIDE_FILES``)."""
    text = os.fspath(path)
    if not text.strip():
        raise OutputError(f"{option}: an empty path names no file")
    out = Path(text)
    if out.is_dir():
        raise OutputError(f"{option}: {out} is a folder; give a file name")
    for source in inputs:
        if _same_file(out, Path(source)):
            raise OutputError(f"{option}: {out} is the file being read ({source}); "
                              "write to another path")
        # SQLite takes a file of these names beside a store for its own journal: a file
        # written there would be rolled back into the store when it is next opened.
        for suffix in SQLITE_SIDE_FILES:
            if _same_file(out, Path(f"{os.fspath(source)}{suffix}")):
                raise OutputError(f"{option}: {out} is where SQLite keeps the journal of "
                                  f"{source}; write to another path")
    return out


def _same_file(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


@contextlib.contextmanager
def atomic(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """A file object to write ``path`` through: a temporary file beside it, renamed over
    ``path`` when the block ends without error, and removed when it raises. ``mode`` is "w"
    (text, ``kwargs`` as ``open`` takes them) or "wb". The folder must exist. An ``OSError``
    (a full disk, a missing folder) is raised again with ``path`` as its file name."""
    if mode not in ("w", "wb"):
        raise ValueError(f"mode: {mode!r} must be 'w' or 'wb'")
    with atomic_path(path) as temporary, open(temporary, mode, **kwargs) as f:
        yield f


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary file name beside ``path`` for a writer that opens files by name, as
    matplotlib's movie writers do: it ends in the suffix of ``path``, since such writers pick
    the format by it. The file is synced and renamed over ``path`` when the block ends without
    error, and removed when it raises; ``OSError`` is raised again with ``path`` as its file
    name, as ``atomic`` does. The folder must exist.

    What a rename cannot replace is written in place: a path that is not a regular file
    (``/dev/null``, a named pipe) is handed to the writer as it is, and a symbolic link is
    followed, so the file it points to is replaced and the link kept. A file replaced keeps its
    permissions."""
    out = Path(os.path.realpath(path))
    if out.exists() and not out.is_file():
        with _naming(out):
            yield out
        return
    mode = stat.S_IMODE(out.stat().st_mode) if out.exists() else 0o666 & ~_umask()
    try:
        handle, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=f".partial{out.suffix}",
                                        dir=out.parent)
        os.close(handle)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(out)) from None
    temporary = Path(name)
    try:
        yield temporary
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, out)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        with _naming(out):
            raise


@contextlib.contextmanager
def _naming(out: Path) -> Iterator[None]:
    """An ``OSError`` of the block raised again with ``out`` as its file name (a broken pipe
    stays one: the reader went away, the command is not at fault)."""
    try:
        yield
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):
            raise
        raise OSError(exc.errno, exc.strerror, str(out)) from None


def write_text(path: str | os.PathLike, text: str) -> Path:
    """``text`` into ``path`` (UTF-8), whole or not at all; returns the path."""
    with atomic(path, encoding="utf-8") as f:
        f.write(text)
    return Path(path)


def _umask() -> int:
    """The process's umask (read by setting it, then put back), so that a renamed temporary
    file gets the permissions an ordinary new file would."""
    mask = os.umask(0)
    os.umask(mask)
    return mask

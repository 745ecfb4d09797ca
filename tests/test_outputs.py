"""Output files are written whole or not at all, never onto the file being read
(``toyrelu.runs.outputs``), and every command's outputs go through that."""

from __future__ import annotations

import errno
import os
import shutil
import stat
from pathlib import Path

import pytest

from helpers import run_cli
from toyrelu.runs import outputs
from toyrelu.runs.outputs import OutputError, atomic, target


@pytest.fixture(scope="module")
def one_run_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One run of the smoke preset, stored."""
    path = tmp_path_factory.mktemp("smoke") / "runs.sqlite"
    from toyrelu import cli

    assert cli.main(["sweep", "--preset", "smoke", "--n-train", "5", "--seeds", "0",
                     "--store", str(path), "--workers", "1", "--device", "cpu"]) == 0
    return path


def leftovers(folder: Path) -> list[str]:
    """Temporary files an interrupted write would leave behind."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".partial"))


def full_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every atomic write fails as a full disk fails it: when the data are flushed."""
    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(outputs.os, "fsync", no_space)


def test_a_completed_write_replaces_the_file_with_ordinary_permissions(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    path.write_text("old")
    with atomic(path) as f:
        f.write("new")
    assert path.read_text() == "new"
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
    assert leftovers(tmp_path) == []


def test_a_failed_write_leaves_the_old_file_and_no_partial_one(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    full_disk(monkeypatch)
    with pytest.raises(OSError) as caught, atomic(path, "wb") as f:
        f.write(b"half of the new")
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(path)
    assert path.read_bytes() == b"old"
    assert leftovers(tmp_path) == []


def test_an_error_inside_the_block_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "new.txt"
    with pytest.raises(KeyError), atomic(path) as f:
        f.write("some")
        raise KeyError("stop")
    assert not path.exists() and leftovers(tmp_path) == []


def test_a_missing_folder_is_named_in_the_error(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "out.txt"
    with pytest.raises(OSError) as caught, atomic(path):
        pass
    assert caught.value.filename == str(path)


def test_target_refuses_empty_paths_folders_and_the_input_itself(tmp_path: Path) -> None:
    store = tmp_path / "runs.sqlite"
    store.write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    for bad, words in (("", "empty"), ("  ", "empty"), (tmp_path, "folder"),
                       (store, "being read"), (tmp_path / "sub" / ".." / "runs.sqlite",
                                               "being read")):
        with pytest.raises(OutputError, match=f"^out: .*{words}"):
            target(bad, "out", inputs=[store])
    link = tmp_path / "link.sqlite"
    link.symlink_to(store)
    with pytest.raises(OutputError, match="being read"):
        target(link, "out", inputs=[store])
    assert target(tmp_path / "runs.csv", "out", inputs=[store]) == tmp_path / "runs.csv"


@pytest.mark.parametrize("options", [
    ["--out", "{store}"], ["--format", "json", "--out", "{store}"],
    ["--run", "any", "--arrays", "{store}"]], ids=["csv", "json", "arrays"])
def test_export_never_writes_onto_the_store(one_run_store: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture,
                                            options: list[str]) -> None:
    store = tmp_path / "runs.sqlite"
    shutil.copyfile(one_run_store, store)
    before = store.read_bytes()
    argv = [o.format(store=store) for o in options]
    code, out, err = run_cli(capsys, "export", "--store", store, *argv)
    option = "arrays" if "--arrays" in argv else "out"
    assert (code, out) == (2, "")
    assert err == (f"toyrelu: error: {option}: {store} is the file being read ({store}); "
                   "write to another path\n")
    assert store.read_bytes() == before


@pytest.mark.parametrize("suffix", ["-journal", "-wal", "-shm"])
def test_export_never_writes_where_sqlite_keeps_the_stores_journal(
    one_run_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture, suffix: str
) -> None:
    # A file there is taken for a journal the next time the store opens: a hot journal
    # would be played back into the store.
    store = tmp_path / "runs.sqlite"
    shutil.copyfile(one_run_store, store)
    journal = tmp_path / f"runs.sqlite{suffix}"
    code, out, err = run_cli(capsys, "export", "--store", store, "--out", journal)
    assert (code, out) == (2, "")
    assert err == (f"toyrelu: error: out: {journal} is where SQLite keeps the journal of "
                   f"{store}; write to another path\n")
    assert sorted(tmp_path.iterdir()) == [store]


def test_export_to_an_empty_path_names_the_option(one_run_store: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    code, out, err = run_cli(capsys, "export", "--store", one_run_store, "--out", "")
    assert (code, out, err) == (2, "", "toyrelu: error: out: an empty path names no file\n")


@pytest.mark.parametrize("command", ["figures", "report", "reproduce", "sensitivity"])
def test_an_empty_output_folder_is_refused(one_run_store: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture,
                                           monkeypatch: pytest.MonkeyPatch, command: str) -> None:
    # An empty --out would otherwise write into the current folder.
    monkeypatch.chdir(tmp_path)
    source = [] if command in ("reproduce", "sensitivity") else ["--store", one_run_store]
    code, out, err = run_cli(capsys, command, *source, "--out", "")
    assert (code, out, err) == (2, "", "toyrelu: error: out: an empty path names no folder\n")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["export", "report"])
def test_a_full_disk_leaves_no_partial_output_and_names_the_path(
        one_run_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
        monkeypatch: pytest.MonkeyPatch, command: str) -> None:
    full_disk(monkeypatch)
    out = tmp_path / "out"
    out.mkdir()
    argv = (["--out", out / "runs.csv"] if command == "export" else ["--out", out])
    code, stdout, err = run_cli(capsys, command, "--store", one_run_store, *argv)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("toyrelu: error: No space left on device: ")
    assert str(out) in err
    written = [p for p in out.rglob("*") if p.is_file()] if out.exists() else []
    assert [p.name for p in written if p.stat().st_size == 0 or p.suffix == ".partial"] == []
    assert not (out / "report.html").exists() and not (out / "runs.csv").exists()


@pytest.mark.parametrize("out", ["{store}", "{folder}/movie.gif"], ids=["store", "link"])
def test_animate_never_writes_onto_the_store(one_run_store: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture, out: str) -> None:
    store = tmp_path / "runs.sqlite"
    shutil.copyfile(one_run_store, store)
    (tmp_path / "movie.gif").symlink_to(store)
    before = store.read_bytes()
    path = out.format(store=store, folder=tmp_path)
    code, stdout, err = run_cli(capsys, "animate", "--store", store, "--run", "any",
                                "--out", path)
    assert (code, stdout) == (2, "")
    assert err == (f"toyrelu: error: out: {path} is the file being read ({store}); "
                   "write to another path\n")
    assert store.read_bytes() == before


@pytest.mark.parametrize("out, words", [("", "an empty path names no file"),
                                        (".", ". is a folder; give a file name")])
def test_animate_to_an_empty_path_or_a_folder_names_the_option(
        one_run_store: Path, capsys: pytest.CaptureFixture, out: str, words: str) -> None:
    code, stdout, err = run_cli(capsys, "animate", "--store", one_run_store, "--run", "any",
                                "--out", out)
    assert (code, stdout, err) == (2, "", f"toyrelu: error: out: {words}\n")


def test_a_path_that_is_no_regular_file_is_written_in_place(one_run_store: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture) -> None:
    # A rename would replace /dev/null itself (as root) or a named pipe with a regular file.
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    read = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        code, out, err = run_cli(capsys, "export", "--store", one_run_store, "--out", fifo)
        received = os.read(read, 1 << 20)
    finally:
        os.close(read)
    assert (code, err) == (0, "")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert received.startswith(b"run_id,")
    code, out, err = run_cli(capsys, "export", "--store", one_run_store, "--out", os.devnull)
    assert (code, err) == (0, "") and stat.S_ISCHR(os.stat(os.devnull).st_mode)


def test_a_link_is_followed_and_a_replaced_file_keeps_its_permissions(tmp_path: Path) -> None:
    real = tmp_path / "real.csv"
    real.write_text("old")
    real.chmod(0o600)
    link = tmp_path / "link.csv"
    link.symlink_to(real)
    with atomic(link) as f:
        f.write("new")
    assert link.is_symlink() and real.read_text() == "new"
    assert stat.S_IMODE(real.stat().st_mode) == 0o600

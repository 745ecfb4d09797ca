"""Damaged runs: a row whose config or result is not JSON, or an array that is not a whole .npy
blob, is named in one line by every reader and every command that reads it (never a traceback,
never a report that quietly leaves a section out), and ``toyrelu check`` lists and drops them.

The damage is written with sqlite3 into stores made by the store itself (hand-made runs, or the
smoke preset swept once for the commands that draw figures).
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from helpers import run_cli
from toyrelu import cli
from toyrelu.runs.store import DamagedRun, Store, StoreError

GOOD_NPY_HEAD = 10  # bytes of a .npy blob kept when one is cut short


def damage(path: Path, sql: str, *params: object) -> None:
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(sql, params)
    conn.close()


def hint(path: Path, run_id: str, problem: str) -> str:
    return (f"store: {path} run {run_id} is damaged ({problem}); toyrelu check --store {path} "
            "--drop removes it")


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """A store of three good runs, a, b and c, each with two arrays."""
    path = tmp_path / "runs.sqlite"
    with Store(path) as store:
        for i, run_id in enumerate("abc"):
            store.put(run_id, {"x": i}, {"status": "ok", "loss": 0.5 * i},
                      {"W": np.full((2, 3), i, np.float32), "b": np.arange(3.0)})
    return path


# Each damage: the SQL that writes it into run b, what is wrong, and the readers that meet it.
DAMAGES = {
    "config not JSON": ("UPDATE runs SET config = '{\"x\": 1' WHERE run_id = 'b'",
                        "config is not valid JSON: Expecting ',' delimiter: line 1 column 8 "
                        "(char 7)", ("runs", "config")),
    "config not an object": ("UPDATE runs SET config = '[1, 2]' WHERE run_id = 'b'",
                             "config is not a JSON object but list", ("runs", "config")),
    "result not JSON": ("UPDATE runs SET result = 'garbage' WHERE run_id = 'b'",
                        "result is not valid JSON: Expecting value: line 1 column 1 (char 0)",
                        ("runs",)),
    "array cut short": (f"UPDATE arrays SET npy = substr(npy, 1, {GOOD_NPY_HEAD})"
                        " WHERE run_id = 'b' AND name = 'W'",
                        "array W is not a valid .npy blob: ", ("arrays",)),
    "array not bytes": ("UPDATE arrays SET npy = 'text' WHERE run_id = 'b' AND name = 'b'",
                        "array b is str, not .npy bytes", ("arrays",)),
}


@pytest.mark.parametrize("case", list(DAMAGES))
def test_every_reader_names_the_damaged_run_in_one_line(path: Path, case: str) -> None:
    sql, problem, readers = DAMAGES[case]
    damage(path, sql)
    with Store(path, create=False) as store:
        calls = {"runs": store.runs, "config": lambda: store.config("b"),
                 "arrays": lambda: store.arrays("b")}
        for name, read in calls.items():
            if name not in readers:
                read()  # this damage is not in what it reads
                continue
            with pytest.raises(DamagedRun) as excinfo:
                read()
            message = str(excinfo.value)
            assert "\n" not in message and excinfo.value.run_id == "b"
            expected = hint(path, "b", problem)
            if problem.endswith(": "):  # numpy's words for a cut blob are its own
                prefix, suffix = expected.split(problem)
                assert message.startswith(prefix + problem) and message.endswith(suffix)
            else:
                assert message == expected
        # The other runs read as before.
        assert store.config("a") == {"x": 0}
        assert store.arrays("c")["W"].tolist() == np.full((2, 3), 2, np.float32).tolist()
        assert store.finished_ids() == {"a", "b", "c"}


def test_check_lists_each_damaged_run_once_and_drop_deletes_it_whole(path: Path) -> None:
    damage(path, DAMAGES["config not JSON"][0])
    damage(path, DAMAGES["array not bytes"][0])
    damage(path, "UPDATE runs SET result = 'null' WHERE run_id = 'c'")
    damage(path, "INSERT INTO leases VALUES ('b', 'other', 'elsewhere', 1, '1', 0)")
    with Store(path) as store:
        found = store.check()
        assert [d.run_id for d in found] == ["b", "c"]
        assert found[0].problem == ("config is not valid JSON: Expecting ',' delimiter: line 1 "
                                    "column 8 (char 7); array b is str, not .npy bytes")
        assert found[1].problem == "result is not a JSON object but NoneType"
        assert len(store) == 3  # checking changes nothing

        assert store.check(drop=True) == found
        assert store.check() == []
        assert len(store) == 1 and store.runs()["run_id"].tolist() == ["a"]
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT DISTINCT run_id FROM arrays").fetchall() == [("a",)]
    assert conn.execute("SELECT COUNT(*) FROM leases").fetchone() == (0,)
    conn.close()


def test_dropping_from_a_store_opened_to_read_fails_and_drops_nothing(path: Path,
                                                                     monkeypatch) -> None:
    damage(path, DAMAGES["result not JSON"][0])
    real_connect = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda target, **kwargs: real_connect(
        f"file:{target}?mode=ro", uri=True, **kwargs))
    with Store(path, create=False) as store, pytest.raises(StoreError, match="is read-only"):
        store.check(drop=True)
    monkeypatch.undo()
    with Store(path, create=False) as store:
        assert len(store) == 3


# ---------------------------------------------------------------------------- the commands


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("smoke") / "runs.sqlite"
    assert cli.main(["sweep", "--preset", "smoke", "--store", str(path), "--workers", "1",
                     "--n-train", "3,5,30", "--seeds", "0"]) == 0
    return path


def damaged_copy(smoke: Path, tmp_path: Path, sql: str) -> tuple[Path, str]:
    """A copy of the smoke store with ``sql`` applied to its first run; returns its id too."""
    path = tmp_path / "runs.sqlite"
    shutil.copyfile(smoke, path)
    with Store(path, create=False) as store:
        run_id = store.runs()["run_id"].iloc[0]
    damage(path, sql.replace("RUN", "?"), run_id)
    return path, run_id


COMMANDS = {
    "export": lambda tmp: ["export"],
    "export arrays": lambda tmp: ["export", "--run", "RUN", "--arrays", tmp / "a.npz"],
    "figures": lambda tmp: ["figures", "--out", tmp / "figs"],
    "report": lambda tmp: ["report", "--out", tmp / "report"],
}


@pytest.mark.parametrize(("command", "what"), [
    ("export", "config"), ("figures", "config"), ("report", "config"),
    ("export arrays", "W"), ("figures", "W"), ("report", "W"),
])
def test_commands_stop_on_a_damaged_run_with_one_line(
    smoke: Path, tmp_path: Path, capsys: pytest.CaptureFixture, command: str, what: str
) -> None:
    sql = ("UPDATE runs SET config = '{' WHERE run_id = RUN" if what == "config" else
           "UPDATE arrays SET npy = x'00' WHERE run_id = RUN AND name = 'W'")
    path, run_id = damaged_copy(smoke, tmp_path, sql)
    argv = [str(a).replace("RUN", run_id) for a in COMMANDS[command](tmp_path)]
    code, out, err = run_cli(capsys, *argv, "--store", path)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1, err
    assert err.startswith(f"toyrelu: error: store: {path} run {run_id} is damaged (")
    assert err.endswith(f"); toyrelu check --store {path} --drop removes it\n")
    assert not (tmp_path / "report" / "report.html").exists()


def test_check_command_lists_then_drops_damaged_runs(
    smoke: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    clean = tmp_path / "clean.sqlite"
    shutil.copyfile(smoke, clean)
    assert run_cli(capsys, "check", "--store", clean) == (
        0, f"toyrelu: 3 runs in {clean}, none damaged\n", "")

    path, run_id = damaged_copy(smoke, tmp_path, "UPDATE runs SET result = '' WHERE run_id = RUN")
    code, out, err = run_cli(capsys, "check", "--store", path)
    assert code == 1
    assert out == f"{run_id}: result is not valid JSON: Expecting value: line 1 column 1 (char 0)\n"
    assert err == (f"toyrelu: error: 1 of 3 runs in {path} are damaged; toyrelu check --store "
                   f"{path} --drop removes them\n")

    code, out, err = run_cli(capsys, "check", "--store", path, "--drop")
    assert (code, err) == (0, "")
    assert out.splitlines()[-1] == f"toyrelu: dropped 1 damaged runs from {path}; 2 runs left"
    assert run_cli(capsys, "check", "--store", path)[0] == 0
    # The dropped run is trained again by the next sweep.
    code, _, err = run_cli(capsys, "sweep", "--preset", "smoke", "--store", path, "--workers",
                           "1", "--n-train", "3,5,30", "--seeds", "0")
    assert code == 0
    assert err.splitlines()[-1] == ("toyrelu: 1 finished, 0 failed, 0 errors (retried by the "
                                    "next run), 2 already stored")


def test_check_of_a_missing_store(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, out, err = run_cli(capsys, "check", "--store", tmp_path / "none.sqlite")
    assert (code, out) == (2, "")
    assert err == f"toyrelu: error: store: {tmp_path / 'none.sqlite'} does not exist\n"
    assert list(tmp_path.iterdir()) == []

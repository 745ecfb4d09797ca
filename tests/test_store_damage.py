"""Damaged runs: a row whose config or result is not JSON, an array that is not a whole .npy
blob, or valid JSON that is no run (a config that builds no RunConfig, an ok run without losses
or parameters, text for a number, an array of the wrong shape) is named in one line by every
reader and every command that reads it (never a traceback, never a report that quietly leaves a
section out); ``toyrelu check`` lists and drops them, and a sweep trains them again.

The damage is written with sqlite3 into stores made by the store itself (hand-made runs, or the
smoke preset swept once for the commands that draw figures).
"""

from __future__ import annotations

import io
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from helpers import run_cli
from toyrelu import cli
from toyrelu.core.config import RunConfig
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


CONFIGS = {name: RunConfig(n_features=3, n_hidden=2, n_train=2, seed=i)
           for i, name in enumerate("abc")}
ID = {name: config.run_id for name, config in CONFIGS.items()}


def arrays(i: int) -> dict[str, np.ndarray]:
    """The arrays of a trained run of CONFIGS (two training examples of three features)."""
    return {"W": np.full((2, 3), i, np.float32), "b": np.arange(3.0, dtype=np.float32),
            "H": np.zeros((2, 2), np.float32), "X_indptr": np.array([0, 1, 2]),
            "X_indices": np.array([0, 2], np.int32), "X_data": np.ones(2, np.float32)}


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """A store of three good runs, a, b and c, each with its arrays."""
    path = tmp_path / "runs.sqlite"
    with Store(path) as store:
        for i, (name, config) in enumerate(CONFIGS.items()):
            store.put(ID[name], config.to_dict(),
                      {"status": "ok", "error": None, "train_loss": 0.5 * i, "test_loss": 1.0},
                      arrays(i))
    return path


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


B = ID["b"]
ALL = ("runs", "config", "arrays")
# Each damage: the SQL that writes it into run b (its id is the parameter), what is wrong, and
# the readers that meet it.
DAMAGES = {
    "config not JSON": ("UPDATE runs SET config = '{\"x\": 1' WHERE run_id = ?",
                        "config is not valid JSON: Expecting ',' delimiter: line 1 column 8 "
                        "(char 7)", ALL),
    "config not an object": ("UPDATE runs SET config = '[1, 2]' WHERE run_id = ?",
                             "config is not a JSON object but list", ALL),
    "result not JSON": ("UPDATE runs SET result = 'garbage' WHERE run_id = ?",
                        "result is not valid JSON: Expecting value: line 1 column 1 (char 0)",
                        ALL),
    "array cut short": (f"UPDATE arrays SET npy = substr(npy, 1, {GOOD_NPY_HEAD})"
                        " WHERE run_id = ? AND name = 'W'",
                        "array W is not a valid .npy blob: ", ("arrays",)),
    "array not bytes": ("UPDATE arrays SET npy = 'text' WHERE run_id = ? AND name = 'b'",
                        "array b is str, not .npy bytes", ("arrays",)),
    # Valid JSON and whole arrays that are no run.
    "result empty": ("UPDATE runs SET result = '{}' WHERE run_id = ?",
                     "ok run without train_loss and test_loss", ALL),
    "text for a loss": ("UPDATE runs SET result = json_set(result, '$.train_loss', 'abc')"
                        " WHERE run_id = ?", "result train_loss is 'abc', not a number", ALL),
    "n_hidden text": ("UPDATE runs SET config = json_set(config, '$.n_hidden', 'two')"
                      " WHERE run_id = ?", "config is not a valid run config (n_hidden: 'two' "
                      "must be an integer >= 1)", ALL),
    "config of another run": ("UPDATE runs SET config = json_set(config, '$.seed', 0)"
                              " WHERE run_id = ?",
                              f"config is that of run {ID['a']}, not of this run", ALL),
    "unknown status": ("UPDATE runs SET status = 'done' WHERE run_id = ?",
                       "status 'done' is not one of ok, failed, error, lost", ALL),
    "ok without arrays": ("DELETE FROM arrays WHERE run_id = ?",
                          "ok run without array W, b, H, X_indptr, X_indices, X_data",
                          ("arrays",)),
    "W of another shape": ("UPDATE arrays SET npy = ? WHERE run_id = ? AND name = 'W'",
                           "array W is float64 (3, 2), not floating (2, 3)", ("arrays",)),
    "X in part": ("DELETE FROM arrays WHERE run_id = ? AND name = 'X_data'",
                  "ok run without array X_data; array X_data missing beside X_indptr",
                  ("arrays",)),
    "H of another length": ("UPDATE arrays SET npy = ? WHERE run_id = ? AND name = 'H'",
                            "array H has 3 rows where X_indptr gives 2", ("arrays",)),
}
# The array written by the damages that replace one
BLOBS = {"W of another shape": np.zeros((3, 2)), "H of another length": np.zeros((3, 2))}


def damage_b(path: Path, case: str) -> None:
    blob = [npy(BLOBS[case])] if case in BLOBS else []
    damage(path, DAMAGES[case][0], *blob, B)


@pytest.mark.parametrize("case", list(DAMAGES))
def test_every_reader_names_the_damaged_run_in_one_line(path: Path, case: str) -> None:
    _, problem, readers = DAMAGES[case]
    damage_b(path, case)
    with Store(path, create=False) as store:
        calls = {"runs": store.runs, "config": lambda: store.config(B),
                 "arrays": lambda: store.arrays(B)}
        for name, read in calls.items():
            if name not in readers:
                read()  # this damage is not in what it reads
                continue
            with pytest.raises(DamagedRun) as excinfo:
                read()
            message = str(excinfo.value)
            assert "\n" not in message and excinfo.value.run_id == B
            expected = hint(path, B, problem)
            if problem.endswith(": "):  # numpy's words for a cut blob are its own
                prefix, suffix = expected.split(problem)
                assert message.startswith(prefix + problem) and message.endswith(suffix)
            else:
                assert message == expected
        # The other runs read as before, and check finds b alone, with the same problem.
        assert store.config(ID["a"]) == CONFIGS["a"].to_dict()
        assert store.arrays(ID["c"])["W"].tolist() == np.full((2, 3), 2, np.float32).tolist()
        found = store.check()
        assert [d.run_id for d in found] == [B]
        assert found[0].problem.startswith(problem)


def test_a_run_stored_by_another_version_is_read(path: Path) -> None:
    # A field that did not exist when the run was stored takes its default, a field that no
    # longer exists is left out, and neither config can be checked against the run's id.
    damage(path, "UPDATE runs SET config = json_remove(config, '$.snapshot_every')"
                 " WHERE run_id = ?", B)
    damage(path, "UPDATE runs SET config = json_set(config, '$.warmup', 3) WHERE run_id = ?",
           ID["c"])
    with Store(path, create=False) as store:
        assert store.check() == []
        assert "snapshot_every" not in store.config(B) and store.config(ID["c"])["warmup"] == 3
        assert len(store.runs()) == 3


def test_check_reads_array_headers_and_sizes_without_the_values(path: Path,
                                                                 monkeypatch) -> None:
    monkeypatch.setattr(np, "load", None)  # the scan must not decode any array
    damage(path, "UPDATE arrays SET npy = substr(npy, 1, length(npy) - 1)"
                 " WHERE run_id = ? AND name = 'W'", B)
    with Store(path, create=False) as store:
        [found] = store.check()
        assert (found.run_id, found.problem) == (B, "array W is not a valid .npy blob: 151 "
                                                    "bytes of 152")


def test_without_rules_a_store_reads_any_json_object(path: Path) -> None:
    damage_b(path, "n_hidden text")
    damage_b(path, "ok without arrays")
    with Store(path, create=False, rules=None) as store:
        assert store.config(B)["n_hidden"] == "two"
        assert store.arrays(B) == {} and store.check() == []


def test_check_lists_each_damaged_run_once_and_drop_deletes_it_whole(path: Path) -> None:
    damage_b(path, "config not JSON")
    damage_b(path, "array not bytes")
    damage(path, "UPDATE runs SET result = 'null' WHERE run_id = ?", ID["c"])
    damage(path, "INSERT INTO leases VALUES (?, 'other', 'elsewhere', 1, '1', 0)", B)
    with Store(path) as store:
        found = store.check()
        assert [d.run_id for d in found] == [B, ID["c"]]
        assert found[0].problem == ("config is not valid JSON: Expecting ',' delimiter: line 1 "
                                    "column 8 (char 7); array b is str, not .npy bytes")
        assert found[1].problem == "result is not a JSON object but NoneType"
        assert len(store) == 3  # checking changes nothing
        assert store.check(ids={ID["c"]}) == found[1:]

        assert store.check(drop=True) == found
        assert store.check() == []
        assert len(store) == 1 and store.runs()["run_id"].tolist() == [ID["a"]]
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT DISTINCT run_id FROM arrays").fetchall() == [(ID["a"],)]
    assert conn.execute("SELECT COUNT(*) FROM leases").fetchone() == (0,)
    conn.close()


def test_dropping_from_a_store_opened_to_read_fails_and_drops_nothing(path: Path,
                                                                     monkeypatch) -> None:
    damage_b(path, "result not JSON")
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


SEMANTIC = {
    "result empty": "UPDATE runs SET result = '{}' WHERE run_id = RUN",
    "n_hidden text": "UPDATE runs SET config = json_set(config, '$.n_hidden', 'two')"
                     " WHERE run_id = RUN",
    "no arrays": "DELETE FROM arrays WHERE run_id = RUN",
}


@pytest.mark.parametrize("command", ["export", "figures", "report"])
@pytest.mark.parametrize("case", list(SEMANTIC))
def test_commands_stop_on_a_run_that_is_valid_json_but_no_run(
    smoke: Path, tmp_path: Path, capsys: pytest.CaptureFixture, command: str, case: str
) -> None:
    path, run_id = damaged_copy(smoke, tmp_path, SEMANTIC[case])
    code, out, err = run_cli(capsys, *COMMANDS[command](tmp_path), "--store", path)
    if command == "export" and case == "no arrays":
        assert code == 0  # the table of runs needs no arrays
        return
    assert (code, out) == (2, ""), err
    assert err.count("\n") == 1, err
    assert err.startswith(f"toyrelu: error: store: {path} run {run_id} is damaged (")
    assert not (tmp_path / "report" / "report.html").exists()


@pytest.mark.parametrize("case", list(SEMANTIC))
def test_a_sweep_names_a_damaged_finished_run_and_trains_it_again(
    smoke: Path, tmp_path: Path, capsys: pytest.CaptureFixture, case: str
) -> None:
    path, run_id = damaged_copy(smoke, tmp_path, SEMANTIC[case])
    with Store(path, create=False) as store:
        before = {r: store.arrays(r) for r in store.ids("ok") - {run_id}}
    code, _, err = run_cli(capsys, "sweep", "--preset", "smoke", "--store", path, "--workers",
                           "1", "--n-train", "3,5,30", "--seeds", "0")
    assert code == 0, err
    lines = err.splitlines()
    assert lines[1].startswith(f"toyrelu: run {run_id} in {path} is damaged (")
    assert lines[1].endswith("); training it again")
    assert lines[-1] == ("toyrelu: 1 finished, 0 failed, 0 errors (retried by the next run), "
                         "2 already stored, 1 damaged in the store and trained again")
    with Store(path, create=False) as store:
        assert store.check() == []
        assert store.ids("ok") == {run_id, *before}
        for other, arrays in before.items():  # the others were not touched
            assert all(np.array_equal(arrays[k], v) for k, v in store.arrays(other).items())
        smoke_store = Store(smoke, create=False)
        with smoke_store:
            for name, array in smoke_store.arrays(run_id).items():
                assert np.array_equal(store.arrays(run_id)[name], array)


class StoredMeanwhile:
    """An executor that, right before asking to start each run, lets another sweep store
    ``run_id`` whole again (its result copied back from ``good``)."""

    def __init__(self, path: Path, good: Path, run_id: str) -> None:
        self.path, self.good, self.run_id = path, good, run_id
        self.ran: list[str] = []

    def map(self, configs, on_steps, start=None):
        from toyrelu.runs.training import run_one

        conn = sqlite3.connect(self.path)
        conn.execute("ATTACH ? AS good", (str(self.good),))
        with conn:
            conn.execute("UPDATE runs SET result = (SELECT result FROM good.runs WHERE run_id = ?)"
                         " WHERE run_id = ?", (self.run_id, self.run_id))
        conn.close()
        for config in configs:
            if start is None or start(config):
                self.ran.append(config.run_id)
                yield run_one(config, on_steps)


def test_a_damaged_run_another_sweep_stored_meanwhile_is_not_trained_again(
    smoke: Path, tmp_path: Path
) -> None:
    from toyrelu.runs.presets import PRESETS
    from toyrelu.runs.sweep import SweepReport, run_sweep

    path, run_id = damaged_copy(smoke, tmp_path, SEMANTIC["result empty"])
    configs = PRESETS["smoke"].override({"n_train": [3, 5, 30], "seed": [0]}).configs()
    executor = StoredMeanwhile(path, smoke, run_id)
    with Store(path) as store:
        report = run_sweep(configs, store, executor)
        assert store.check() == []
    assert executor.ran == []
    assert report == SweepReport(total=3, skipped=3, ok=0, failed=0, errors=0, damaged=1)

"""Fuzzing the command line: every command and every option, with valid and hostile values.

Each example calls ``toyrelu.cli.main`` in process, from a fresh folder that holds copies of a
small trained store, and checks what any input must give (``check``): exit code 0, 1, 2 or
130, and 1 only when the store it names gained failed runs and no finished one; on an error a
last stderr line "toyrelu: error: ..."; no traceback anywhere; and every store in the folder
byte for byte as it was after a refused command, or after a command that only reads stores.
stdout starts as strict UTF-8 and stderr backslash-escapes, as in a UTF-8 terminal.

An example takes a command's small defaults and draws one to three options, all valid but for
at most one hostile value, so that hostile values meet every check deep in a command, not only
the first one. Runs stay small: the training commands always get the smoke preset or base, one
T, one seed, 20 steps and one worker unless an example is about that option, and the valid
config values are those the trained store's kernels cover (m = 2, float32). Values held back
from the random draws: huge worker counts (``SLOW``), which are capped at the cores rather than
refused and so start a process pool per example (tests/test_limits.py covers the cap). Examples
are derandomized, so CI is reproducible.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from toyrelu import cli
from toyrelu.cli.parser import build_parser
from toyrelu.core.config import CHOICES, ConfigError, field_names
from toyrelu.runs.presets import PRESETS, Preset
from toyrelu.runs.resources import resolve_device
from toyrelu.runs.store import Store

FUZZ = settings(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
EXIT_CODES = (0, 1, 2, 130)
EVERY_RUN_FAILED = re.compile(r"toyrelu: error: every run (?:trained|of the study) failed "
                              r"\((?P<n>\d+)\).* toyrelu export --store (?P<store>.+)$")

HUGE = ("1e9", "1e30", str(10**30), "9" * 40)
HOSTILE = ("nan", "NaN", "inf", "-inf", "-1", "0", "-0", "1e30", "1e-30", "1.5", "", " ", ",",
           "1,,1", "abc", "ünïcødé", "∞", "\udcff", "0x10", "1_0", "none", "true", "-", "--",
           "$(x)", *HUGE)
SLOW: Mapping[str, Sequence[str]] = {"workers": HUGE}
VALID: Mapping[str, Sequence[str]] = {
    "n_features": ("1", "2", "50", "1e1"),
    "n_hidden": ("2",),
    "sparsity": ("0", "0.5", "0.9", "0.999"),
    "n_train": ("1", "3", "5", "inf", "∞"),
    "seed": ("0", "1", str(2**63)),
    "restart": ("0", "1"),
    "steps": ("1", "5", "20"),
    "lr": ("1e-3", "0.1", "1e30"),
    "warmup_steps": ("none", "0", "1"),
    "weight_decay": ("0", "1e-2", "1e30"),
    "decay_bias": ("true", "false", "yes", "0"),
    "beta1": ("0", "0.9", "0.999999"),
    "beta2": ("0", "0.99", "0.999999"),
    "eps": ("1e-8", "1e30", "1e-300"),
    "schedule": CHOICES["schedule"],
    "loss_reduction": CHOICES["loss_reduction"],
    "bias_init": CHOICES["bias_init"],
    "dtype": ("float32",),
    "n_test": ("1", "10"),
    "engine": ("fused",),
    "batch_size": ("1", "10"),
    "n_repeated": ("0", "1", "2"),
    "repeats": ("1", "2"),
    "snapshot_every": ("0", "1", "7", str(10**30)),
}
SMALL_RUNS = {"--n-train": "5", "--seeds": "0", "--steps": "20", "--workers": "1",
              "--device": "cpu"}


def cheap(preset: Preset) -> bool:
    """Whether the small runs of ``preset`` (``SMALL_RUNS``) need no kernels beyond the
    trained store's (m = 2, float32), or are refused before any."""
    try:
        configs = preset.override({"n_train": [5], "seed": [0], "steps": [20]}).configs()
    except ConfigError:
        return True
    return all((c.n_hidden, c.dtype) == (2, "float32") for c in configs)


CHEAP_PRESETS = tuple(name for name, preset in PRESETS.items() if cheap(preset))
DEVICES = ("", "gpu", "CPU", "cuda:0", "ünï",
           *(("auto", "cuda") if resolve_device("auto") == "cpu" else ()))
STORES = ("runs.sqlite", "{work}/runs.sqlite", "link.sqlite", "folder/../runs.sqlite",
          "prev/runs.sqlite")
NOT_STORES = ("missing.sqlite", "folder", "notes.txt", "", "nowhere/runs.sqlite", "ünï.sqlite",
              "\udcff.sqlite", "link.gif/x")
FOLDERS = ("out", "folder", "prev", "nowhere/deep/out", "ünï", "\udcff", "{work}/out")
NOT_FOLDERS = ("runs.sqlite", "notes.txt/sub", "", ".", "link.sqlite")
NOT_FILES = ("runs.sqlite", "link.gif", "link.sqlite", "folder", "", ".", "notes.txt/x",
             "\udcff.csv")
RUNS = ("{snapshots}", "{plain}")
NOT_RUNS = ("nosuch", "", "ünï", "'; DROP TABLE runs; --", "%", "*", "{snapshots} ")
# Text that no number parser reads as digits, without the NUL that argv cannot hold.
TEXT = st.text(st.characters(exclude_categories=("Cs", "Nd"), exclude_characters="\x00"),
               max_size=6)
DROP = object()


class Values(NamedTuple):
    """What an option takes: ``valid`` values, each alone accepted by the option's own
    checks, and ``hostile`` ones (text, out-of-range numbers, paths of the wrong kind, the
    option left out as ``DROP``). ``None`` stands for a flag's presence."""

    valid: st.SearchStrategy[object]
    hostile: st.SearchStrategy[object]


def values(valid: Sequence[object], hostile: Sequence[object]) -> Values:
    """``valid`` and ``hostile`` values, or text, for an option."""
    return Values(st.sampled_from(valid), st.one_of(st.sampled_from(hostile), TEXT))


def folder_values(*, required: bool) -> Values:
    """An output folder: a usable path or any text (a folder of that name is made), or a path
    that cannot be a folder, or the option left out when ``required``."""
    return Values(st.one_of(st.sampled_from(FOLDERS), TEXT),
                  st.sampled_from((*NOT_FOLDERS, DROP) if required else NOT_FOLDERS))


def field_values(name: str) -> Values:
    """Config field ``name``: cheap valid values or comma lists of them; hostile values,
    text, or lists mixing both; never the values ``SLOW`` holds back."""
    pending = set(SLOW.get(name, ()))
    valid = st.sampled_from(VALID[name])
    hostile = st.one_of(st.sampled_from([v for v in HOSTILE if v not in pending]), TEXT)
    return Values(st.one_of(valid, st.lists(valid, min_size=2, max_size=3).map(",".join)),
                  st.one_of(hostile, st.lists(st.one_of(valid, hostile), min_size=2,
                                              max_size=3).map(",".join)))


def count_values(option: str, valid: Sequence[str]) -> Values:
    """A count option (workers, restarts, fps): ``valid`` values, or numbers out of range, not
    integers or not numbers; never the values ``SLOW`` holds back."""
    hostile = ("0", "-1", "-0", "1.5", "nan", "inf", "1e3", "", "abc", "∞", "١",
               *(v for v in HUGE if v not in SLOW.get(option, ())))
    return Values(st.sampled_from(valid), st.sampled_from(hostile))


FLAG = Values(st.just(None), st.just(None))
OVERRIDES = {f"--{name.replace('_', '-')}": field_values(name) for name in field_names()}
OVERRIDES["--seeds"] = field_values("seed")
# A well-formed cluster address that nothing listens on: no example starts Ray (the small
# defaults' --workers 1 is refused beside --cluster anyway); tests/test_cluster_ray.py trains on
# Ray.
CLUSTERS = values(("ray:127.0.0.1:1", "ray:[::1]:1", "slurm"),
                  ("dask", "ray:", "ray:host", "RAY", "ray:h:0", "ray:h:99999", "ray:auto:1", ""))
TRAINING = {"--workers": count_values("workers", ("1",)),
            "--device": values(("cpu",), DEVICES), "--gpu-cells": FLAG, "--gpu-dots": FLAG,
            "--gpu-batch-rows": count_values("gpu-batch-rows", ("1000",)),
            "--cluster": CLUSTERS,
            "--slurm-partition": values(("gpu", "ünï"), ("", " ", "-")),
            "--slurm-time": count_values("slurm-time", ("1", "60")),
            "--slurm-gpus": count_values("slurm-gpus", ("1", "2"))}
RUN_OPTIONS = {**TRAINING, "--restarts": count_values("restarts", ("1", "2")),
               "--retry-failed": FLAG, **OVERRIDES}
PRESET = values(CHEAP_PRESETS, ("SMOKE", "", "nope", "smoke "))
COMMANDS: Mapping[str, tuple[dict[str, object], dict[str, Values]]] = {
    "presets": ({}, {}),
    "sweep": ({"--preset": "smoke", "--store": "runs.sqlite", **SMALL_RUNS},
              {"--preset": PRESET,
               "--store": values((*STORES, "new.sqlite", "ünï.sqlite", "nowhere/runs.sqlite"),
                                 ("folder", "notes.txt", "", "link.gif/x", DROP)),
               **RUN_OPTIONS}),
    "reproduce": ({"--preset": "smoke", "--out": "out", **SMALL_RUNS},
                  {"--preset": PRESET, "--out": folder_values(required=False),
                   **RUN_OPTIONS}),
    "figures": ({"--store": "runs.sqlite", "--out": "out"},
                {"--store": values(STORES, (*NOT_STORES, DROP)),
                 "--out": folder_values(required=True)}),
    "report": ({"--store": "runs.sqlite", "--out": "out"},
               {"--store": values(STORES, (*NOT_STORES, DROP)),
                "--out": folder_values(required=True)}),
    "export": ({"--store": "runs.sqlite"},
               {"--store": values(STORES, (*NOT_STORES, DROP)),
                "--format": values(("csv", "json"), ("CSV", "npz", "")),
                "--out": values(("-", "out.csv", "out.json", "ünï.csv", "notes.txt",
                                 "{work}/out.csv"), NOT_FILES),
                "--run": values(RUNS, NOT_RUNS),
                "--arrays": values(("out.npz", "ünï.npz", "\udcff.npz", "notes.txt",
                                    "{work}/out.npz"), NOT_FILES)}),
    "animate": ({"--store": "runs.sqlite", "--run": "{snapshots}", "--out": "out.gif"},
                {"--store": values(STORES, (*NOT_STORES, DROP)),
                 "--run": values(RUNS, (*NOT_RUNS, DROP)),
                 "--out": values(("out.gif", "out.GIF", "ünï.gif", "\udcff.gif",
                                  "nowhere/out.gif", "{work}/out.gif", "notes.gif"),
                                 (*NOT_FILES, "out.mp4", "out.png", "out", DROP)),
                 "--fps": count_values("fps", ("1", "10", str(10**30)))}),
    "check": ({"--store": "runs.sqlite"},
              {"--store": values(STORES, (*NOT_STORES, DROP)), "--drop": FLAG}),
    "sensitivity": ({"--base": "smoke", "--knobs": "decay_bias", "--seeds": "0",
                     "--out": "out", "--workers": "1", "--device": "cpu"},
                    {"--base": values(("smoke",), ("SMOKE", "", "nope")),
                     "--knobs": values(("decay_bias", "bias_init", "schedule",
                                        " decay_bias , bias_init"),
                                       ("decay_bias,", "decay_bias,decay_bias", "", ",",
                                        "nope", "ünï", "steps,STEPS")),
                     "--seeds": values(("0", "1", str(2**63)),
                                       ("0,0", "1,0,1", "", "-1", "nan", "x", ",")),
                     "--out": folder_values(required=True), **TRAINING}),
}
EXTRA = ((),) * 8 + (("--nope", "1"), ("stray",), ("--help",))


@st.composite
def command_line(draw, command: str, *, hostile: bool = False) -> list[str]:
    """``toyrelu COMMAND`` with the command's small defaults and one to three options drawn,
    all valid but for at most one hostile value (exactly one if ``hostile``, for the commands
    whose every success takes seconds); sometimes an unknown option, a stray word or --help
    at the end."""
    defaults, options = COMMANDS[command]
    chosen: dict[str, object] = dict(defaults)
    if options:
        picked = draw(st.lists(st.sampled_from(sorted(options)), min_size=1, max_size=3,
                               unique=True))
        bad = draw(st.sampled_from(picked if hostile else [None, *picked]))
        for option in picked:
            kind = options[option].hostile if option == bad else options[option].valid
            chosen[option] = draw(kind)
    return render(command, chosen) + list(draw(st.sampled_from(EXTRA)))


@st.composite
def hostile_option(draw, command: str, option: str) -> list[str]:
    """``toyrelu COMMAND`` with its small defaults, up to two other options valid, and a
    hostile value of ``option``."""
    defaults, options = COMMANDS[command]
    chosen: dict[str, object] = dict(defaults)
    others = sorted(set(options) - {option})
    for other in draw(st.lists(st.sampled_from(others), max_size=2, unique=True)):
        chosen[other] = draw(options[other].valid)
    chosen[option] = draw(options[option].hostile)
    return render(command, chosen)


def render(command: str, chosen: Mapping[str, object]) -> list[str]:
    argv = [command]
    for option, value in chosen.items():
        if value is not DROP:
            argv += [option] if value is None else [option, str(value)]
    return argv


# --------------------------------------------------------------------------- the checks


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A store with one smoke run with snapshots and one without (T = 5, 100 steps), and the
    two run ids."""
    path = tmp_path_factory.mktemp("fuzz") / "runs.sqlite"
    argv = ["sweep", "--preset", "smoke", "--store", str(path), "--n-train", "5", "--seeds",
            "0", "--steps", "100", "--workers", "1", "--device", "cpu"]
    with contextlib.redirect_stderr(io.StringIO()):
        assert cli.main(argv) == 0
        assert cli.main([*argv, "--snapshot-every", "20"]) == 0
    with Store(path, create=False) as store:
        runs = store.runs().set_index("snapshot_every")["run_id"]
    return {"store": str(path), "snapshots": runs[20], "plain": runs[0]}


@contextlib.contextmanager
def workplace(trained: Mapping[str, str]) -> Iterator[Path]:
    """A fresh folder, made the working directory, holding the store (runs.sqlite, and a
    copy in prev/), links to it, a folder, and a text file."""
    work = Path(tempfile.mkdtemp(dir=Path(trained["store"]).parent))
    shutil.copyfile(trained["store"], work / "runs.sqlite")
    (work / "prev").mkdir()
    shutil.copyfile(trained["store"], work / "prev" / "runs.sqlite")
    (work / "folder").mkdir()
    (work / "notes.txt").write_text("not a store\n")
    (work / "link.sqlite").symlink_to(work / "runs.sqlite")
    (work / "link.gif").symlink_to(work / "runs.sqlite")
    here = os.getcwd()
    os.chdir(work)
    try:
        yield work
    finally:
        os.chdir(here)
        shutil.rmtree(work)


def run_main(argv: Sequence[str]) -> tuple[int, str, str]:
    """``cli.main(argv)`` with stdout and stderr captured as a UTF-8 terminal would take them;
    argparse's --help ends by SystemExit, whose code counts as the exit code."""
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
    stderr = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="backslashreplace")
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            code = cli.main(list(argv))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 2
    texts = []
    for stream in (stdout, stderr):
        stream.flush()
        # stdout gives back the bytes of a path that are not UTF-8, as a terminal shows them.
        texts.append(stream.buffer.getvalue().decode("utf-8", "surrogateescape"))
    return code, texts[0], texts[1]


def fill(arg: str, work: Path, trained: Mapping[str, str]) -> str:
    """``arg`` with {work}, {snapshots} and {plain} filled in (other braces stay as text)."""
    for key, value in (("work", str(work)), ("snapshots", trained["snapshots"]),
                       ("plain", trained["plain"])):
        arg = arg.replace(f"{{{key}}}", value)
    return arg


def run_counts(path: Path, data: bytes | None = None) -> tuple[int, int]:
    """(ok, failed) runs of the store at ``path``, or of a store whose bytes are ``data``."""
    if data is not None:
        with tempfile.NamedTemporaryFile(suffix=".sqlite") as copy:
            copy.write(data)
            copy.flush()
            return run_counts(Path(copy.name))
    with Store(path, create=False) as store:
        status = store.runs()["status"]
    return int((status == "ok").sum()), int((status == "failed").sum())


def check(argv: Sequence[str], trained: Mapping[str, str]) -> None:
    """Run ``argv`` in a fresh workplace and assert what every command line must give: an
    exit code of EXIT_CODES; no traceback; on an error a last line "toyrelu: error: ..."; exit
    1 only when the store it names gained failed runs and no finished one; the stores the
    folder held unchanged by a refused command, and by any command that only reads them."""
    with workplace(trained) as work:
        argv = [fill(a, work, trained) for a in argv]
        stores = {p.resolve(): p.read_bytes() for p in work.rglob("*.sqlite")
                  if not p.is_symlink()}
        code, out, err = run_main(argv)
        assert code in EXIT_CODES, (code, err)
        assert "Traceback" not in out + err, err
        if code != 0:
            last = err.splitlines()[-1] if err else ""
            assert last.startswith("toyrelu: error: ") and err.endswith(last + "\n"), err
        if code == 1:
            failed = EVERY_RUN_FAILED.match(last)
            assert failed, last
            store = (work / failed["store"]).resolve()
            ok_before = run_counts(store, stores[store])[0] if store in stores else 0
            ok_after, failed_after = run_counts(store)
            assert ok_after == ok_before and failed_after >= int(failed["n"]) > 0, last
        if code in (2, 130) or argv[:1] in (["figures"], ["report"], ["export"], ["animate"],
                                              ["check"]):
            for path, data in stores.items():
                assert path.read_bytes() == data, f"{path} changed by {argv[0]} (exit {code})"


# --------------------------------------------------------------------------- the fuzz tests


def test_every_option_of_every_command_is_fuzzed() -> None:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.dest == "command"]
    assert set(sub.choices) == set(COMMANDS)
    for name, command in sub.choices.items():
        options = {s for a in command._actions for s in a.option_strings if s.startswith("--")}
        assert options - {"--help"} == set(COMMANDS[name][1]), name
    assert set(VALID) == set(field_names())


# Each option of each command with hostile values; the config fields once, through sweep,
# since reproduce parses them by the same code.
OPTIONS = [(command, option) for command, (_, options) in COMMANDS.items()
           for option in sorted(options) if not (command == "reproduce" and option in OVERRIDES)]


@settings(FUZZ, max_examples=4)
@pytest.mark.parametrize("command, option", OPTIONS, ids=[f"{c}{o}" for c, o in OPTIONS])
@given(data=st.data())
def test_fuzz_each_option(trained: dict[str, str], command: str, option: str,
                          data: st.DataObject) -> None:
    check(data.draw(hostile_option(command, option), label="argv"), trained)


WORDS = st.lists(st.one_of(st.sampled_from([*COMMANDS, "--store", "--out", "-h", "--preset",
                                             "-", "--", "="]), TEXT), max_size=4)
SMALL = [f"{o}={v}" for o, v in SMALL_RUNS.items()]


@settings(FUZZ, max_examples=60)
@given(argv=WORDS)
@example(argv=[])
def test_fuzz_words(trained: dict[str, str], argv: list[str]) -> None:
    check(argv, trained)


@settings(FUZZ, max_examples=8)
@given(argv=command_line("presets"))
def test_fuzz_presets(trained: dict[str, str], argv: list[str]) -> None:
    check(argv, trained)


@settings(FUZZ, max_examples=120)
@given(argv=command_line("sweep"))
@example(argv=["sweep", "--preset=smoke", "--store=runs.sqlite", *SMALL, "--lr=1e30"])
@example(argv=["sweep", "--preset=smoke", "--store=prev/runs.sqlite", *SMALL, "--lr=nan"])
def test_fuzz_sweep(trained: dict[str, str], argv: list[str]) -> None:
    check(argv, trained)


@settings(FUZZ, max_examples=80)
@given(argv=command_line("export"))
@example(argv=["export", "--store=runs.sqlite", "--out=runs.sqlite"])
@example(argv=["export", "--store=runs.sqlite", "--run={plain}", "--arrays=runs.sqlite"])
@example(argv=["export", "--store=runs.sqlite", "--run={plain}", "--arrays=\udcff.npz"])
def test_fuzz_export(trained: dict[str, str], argv: list[str]) -> None:
    check(argv, trained)


@settings(FUZZ, max_examples=60)
@given(argv=command_line("animate", hostile=True))
@example(argv=["animate", "--store=runs.sqlite", "--run={snapshots}", "--out=out.gif"])
@example(argv=["animate", "--store=runs.sqlite", "--run={snapshots}", "--out=link.gif"])
@example(argv=["animate", "--store=runs.sqlite", "--run={plain}", "--out=out.gif"])
@example(argv=["animate", "--store=runs.sqlite", "--run={snapshots}", "--out=\udcff.gif"])
def test_fuzz_animate(trained: dict[str, str], argv: list[str]) -> None:
    check(argv, trained)


@settings(FUZZ, max_examples=15)
@given(argv=command_line("figures", hostile=True))
@example(argv=["figures", "--store=runs.sqlite", "--out=out"])
@example(argv=["figures", "--store=runs.sqlite", "--out=runs.sqlite"])
@example(argv=["figures", "--store=runs.sqlite", "--out=\udcff"])
def test_fuzz_figures(trained: dict[str, str], argv: list[str]) -> None:
    check(argv, trained)


@settings(FUZZ, max_examples=12)
@given(argv=command_line("report", hostile=True))
@example(argv=["report", "--store=link.sqlite", "--out=ünï"])
@example(argv=["report", "--store=runs.sqlite", "--out=notes.txt/sub"])
def test_fuzz_report(trained: dict[str, str], argv: list[str]) -> None:
    check(argv, trained)


@settings(FUZZ, max_examples=15)
@given(argv=command_line("reproduce", hostile=True))
@example(argv=["reproduce", "--preset=smoke", "--out=prev", *SMALL])
@example(argv=["reproduce", "--preset=smoke", "--out=prev", *SMALL, "--eps=0"])
def test_fuzz_reproduce(trained: dict[str, str], argv: list[str]) -> None:
    check(argv, trained)


@settings(FUZZ, max_examples=30)
@given(argv=command_line("sensitivity", hostile=True))
@example(argv=["sensitivity", "--base=smoke", "--knobs=decay_bias", "--seeds=0",
               "--out=prev", "--workers=1", "--device=cpu"])
@example(argv=["sensitivity", "--base=smoke", "--knobs=decay_bias", "--seeds=0,0",
               "--out=prev", "--workers=1", "--device=cpu"])
def test_fuzz_sensitivity(trained: dict[str, str], argv: list[str]) -> None:
    check(argv, trained)


@settings(FUZZ, max_examples=15)
@given(argv=command_line("check"))
@example(argv=["check", "--store=runs.sqlite"])
@example(argv=["check", "--store=folder/../runs.sqlite", "--drop"])
def test_fuzz_check(trained: dict[str, str], argv: list[str]) -> None:
    check(argv, trained)

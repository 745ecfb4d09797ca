"""Train the ReLU-output toy model on finite datasets, sweep it, and draw what the paper drew.

Commands: ``reproduce``, ``sweep``, ``figures``, ``report``, ``export``, ``animate``,
``presets`` and ``sensitivity``.

Every config field is an option (``--n-features 10000``); a comma list makes it a sweep axis
(``--n-train 3,5,10``). Bad input ends with one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from toyrelu.core.config import (
    BIAS_INITS,
    DTYPES,
    ENGINES,
    LOSS_REDUCTIONS,
    SCHEDULES,
    ConfigError,
    RunConfig,
)
from toyrelu.runs.presets import PRESETS, Preset
from toyrelu.runs.resources import DEVICES, default_workers, resolve_device
from toyrelu.runs.store import Store, StoreError

if TYPE_CHECKING:
    from toyrelu.runs.executors import Executor

ALIASES = {"seeds": "seed"}
CHOICES = {
    "schedule": SCHEDULES,
    "loss_reduction": LOSS_REDUCTIONS,
    "bias_init": BIAS_INITS,
    "dtype": DTYPES,
    "engine": ENGINES,
}


class UsageError(Exception):
    """Bad command-line input; the message is one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _parse_value(name: str, kind: str, text: str) -> Any:
    text = text.strip()
    try:
        if kind == "bool":
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if "None" in kind and text.lower() == "none":
            return None
        if "float" in kind and text.lower() in ("inf", "infinity", "∞"):
            return math.inf
        if kind.startswith("int"):
            number = float(text.replace("_", ""))
            if not number.is_integer():
                raise ValueError
            return int(number)
        if kind == "float":
            return float(text)
        return text
    except ValueError:
        expected = {"bool": "true or false", "int | float": "an integer or inf"}.get(
            kind, kind.replace(" | None", " or none"))
        raise ConfigError(f"{name}: {text!r} is not a valid value (expected {expected})") from None


def _add_overrides(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "config overrides (each replaces the preset's value; a comma list sweeps the field)"
    )
    for f in dataclasses.fields(RunConfig):
        flags = [f"--{f.name.replace('_', '-')}"]
        flags += [f"--{alias}" for alias, target in ALIASES.items() if target == f.name]
        metavar = "|".join(CHOICES[f.name]) if f.name in CHOICES else str(f.type).upper()
        group.add_argument(*flags, dest=f"set_{f.name}", metavar=metavar)


def _overrides(args: argparse.Namespace) -> dict[str, list[Any]]:
    values = {}
    for f in dataclasses.fields(RunConfig):
        raw = getattr(args, f"set_{f.name}", None)
        if raw is not None:
            parts = [p for p in raw.split(",") if p.strip()]
            if not parts:
                raise ConfigError(f"{f.name}: empty value")
            values[f.name] = [_parse_value(f.name, str(f.type), p) for p in parts]
    return values


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--restarts", type=int, default=None, metavar="K",
                        help="train K initialisations per dataset, keep the lowest training loss")
    _add_device_options(parser)


def _add_device_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", metavar="|".join(DEVICES),
                        help="where to train (default: auto, a CUDA GPU when there is one)")
    parser.add_argument("--gpu-cells", action="store_true",
                        help="on a GPU, take the split-cell step on fixed training sets while it "
                             "pays (same results up to rounding; the CPU engine does so anyway)")
    parser.add_argument("--gpu-dots", action="store_true",
                        help="on a GPU, run the dense passes as tensor-core dots (tf32x3 in "
                             "float32; the same cost per pair for every m up to 16)")


def _preset(args: argparse.Namespace) -> Preset:
    if args.preset not in PRESETS:
        raise UsageError(f"preset: {args.preset!r} is unknown (choose from {', '.join(PRESETS)})")
    values = _overrides(args)
    restarts = getattr(args, "restarts", None)
    if restarts is not None:
        if restarts < 1:
            raise UsageError(f"restarts: {restarts} must be an integer >= 1")
        if "restart" in values:
            raise UsageError("restarts: give either --restarts K or --restart values, not both")
        values["restart"] = list(range(restarts))
    return PRESETS[args.preset].override(values)


def _device(args: argparse.Namespace) -> str:
    try:
        device = resolve_device(args.device)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.gpu_cells and device != "cuda":
        raise UsageError("gpu-cells: needs a CUDA GPU (the CPU engine takes its split-cell step "
                         "by itself)")
    if args.gpu_dots and device != "cuda":
        raise UsageError("gpu-dots: needs a CUDA GPU")
    return device


def _executor(args: argparse.Namespace, workers: int, device: str) -> Executor:
    """Where the runs train, with the GPU options of ``_add_device_options``."""
    from toyrelu.runs.executors import executor

    return executor(workers, device, args.gpu_cells, args.gpu_dots)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="toyrelu", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    reproduce = commands.add_parser("reproduce", help="sweep, figures and summary in one folder")
    reproduce.add_argument("--preset", default="quick", help=f"one of {', '.join(PRESETS)}")
    reproduce.add_argument("--out", default="toyrelu-out", help="output folder")
    reproduce.add_argument("--workers", type=int, default=None, help="processes (default: cores)")
    _add_run_options(reproduce)
    _add_overrides(reproduce)

    sweep = commands.add_parser("sweep", help="run (or resume) a sweep into a store")
    sweep.add_argument("--preset", default="quick", help=f"one of {', '.join(PRESETS)}")
    sweep.add_argument("--store", required=True, help="SQLite file (created if missing)")
    sweep.add_argument("--workers", type=int, default=None, help="processes (default: cores)")
    _add_run_options(sweep)
    _add_overrides(sweep)

    figures = commands.add_parser("figures", help="draw every figure a store supports")
    figures.add_argument("--store", required=True)
    figures.add_argument("--out", required=True, help="output folder")

    report = commands.add_parser("report", help="one self-contained HTML page (and markdown) "
                                 "on every run of a store")
    report.add_argument("--store", required=True)
    report.add_argument("--out", required=True, help="output folder (report.html, report.md)")

    export = commands.add_parser("export", help="runs as CSV/JSON, or one run's arrays as .npz")
    export.add_argument("--store", required=True)
    export.add_argument("--format", choices=("csv", "json"), default="csv")
    export.add_argument("--out", default="-", help="file, or - for stdout")
    export.add_argument("--run", help="run_id whose arrays to export (with --arrays)")
    export.add_argument("--arrays", help="output .npz for --run")

    animate = commands.add_parser("animate", help="a run's snapshots as a GIF or MP4")
    animate.add_argument("--store", required=True)
    animate.add_argument("--run", required=True, help="run_id (trained with --snapshot-every)")
    animate.add_argument("--out", required=True, help="output .gif, or .mp4 (needs ffmpeg)")
    animate.add_argument("--fps", type=int, default=10, help="frames per second (default 10)")

    commands.add_parser("presets", help="list the presets")

    sens = commands.add_parser("sensitivity", help="vary one setting at a time; rank what "
                               "sets the test-loss bump (resumable)")
    sens.add_argument("--base", default="quick", help="quick, paper or smoke")
    sens.add_argument("--knobs", default=None, help="comma list (default: all)")
    sens.add_argument("--out", required=True, help="output folder (store: OUT/runs.sqlite)")
    sens.add_argument("--seeds", default=None, help="comma list (default: the base's)")
    sens.add_argument("--workers", type=int, default=None, help="processes (default: cores)")
    _add_device_options(sens)
    return parser


def _workers(args: argparse.Namespace) -> int:
    if args.workers is None:
        return default_workers()
    if args.workers < 1:
        raise UsageError(f"workers: {args.workers} must be an integer >= 1")
    return args.workers


def _sweep(preset: Preset, store: Store, args: argparse.Namespace, workers: int,
           device: str) -> None:
    configs = preset.configs()
    where = "on the GPU" if device == "cuda" else f"on {workers} CPU process(es)"
    print(f"toyrelu: preset {preset.name}: {len(configs)} runs into {store.path}, {where}",
          file=sys.stderr)
    from toyrelu.runs.sweep import run_sweep

    report = run_sweep(configs, store, _executor(args, workers, device), progress=sys.stderr)
    print(f"toyrelu: {report.ok} finished, {report.failed} failed, {report.skipped} already "
          f"stored", file=sys.stderr)


def _out_dir(path: str) -> Path:
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise UsageError(f"out: {out} exists and is not a folder")
    return out


def cmd_reproduce(args: argparse.Namespace) -> None:
    from toyrelu.report import reproduce

    preset = _preset(args)
    workers = _workers(args)
    device = _device(args)
    out = _out_dir(args.out)
    with Store(out / "runs.sqlite") as store:
        _sweep(preset, store, args, workers, device)
        found = reproduce.write(preset, store, out)
    for f in found:
        print(f"{'ok ' if f.holds else 'NOT'} {f.claim}: {f.measured}")
    print(f"toyrelu: figures and summary.md in {out}")


def cmd_sweep(args: argparse.Namespace) -> None:
    preset = _preset(args)
    workers = _workers(args)
    device = _device(args)
    with Store(args.store) as store:
        _sweep(preset, store, args, workers, device)


def cmd_figures(args: argparse.Namespace) -> None:
    from toyrelu.report import store_figures

    with Store(args.store, create=False) as store:
        names, pooled = store_figures.write(store, _out_dir(args.out))
    if pooled:
        print(f"toyrelu: note: the figures pool runs that differ in {', '.join(pooled)}",
              file=sys.stderr)
    print(f"toyrelu: wrote {', '.join(names)} (and SVG twins) to {args.out}")


def cmd_report(args: argparse.Namespace) -> None:
    from toyrelu.report import build as report

    out = _out_dir(args.out)
    with Store(args.store, create=False) as store:
        html_path, _ = report.write(store, out)
    print(f"toyrelu: wrote {html_path} and report.md (figures beside them)")


def cmd_export(args: argparse.Namespace) -> None:
    from toyrelu.report import export

    with Store(args.store, create=False) as store:
        if args.run or args.arrays:
            if not (args.run and args.arrays):
                raise UsageError("export: --run and --arrays go together")
            names = export.write_arrays(store, args.run, args.arrays)
            print(f"toyrelu: wrote {', '.join(names)} of run {args.run} to {args.arrays}")
            return
        table = export.runs_table(store)
    export.write_table(table, sys.stdout if args.out == "-" else args.out, args.format)


def cmd_animate(args: argparse.Namespace) -> None:
    from toyrelu.analysis import dynamics
    from toyrelu.figures import animation

    try:
        animation.movie_writer(args.out, args.fps)  # bad names fail before any work
        with Store(args.store, create=False) as store:
            trajectory = dynamics.load(store, args.run)
        out = animation.write(trajectory, args.out, fps=args.fps)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    print(f"toyrelu: wrote {len(trajectory)} frames of run {args.run} to {out}")


def cmd_presets(args: argparse.Namespace) -> None:
    for name, preset in PRESETS.items():
        print(f"{name}: {preset.description} ({len(preset.configs())} runs)")


def cmd_sensitivity(args: argparse.Namespace) -> None:
    from toyrelu.analysis import sensitivity
    from toyrelu.report import sensitivity as sensitivity_report
    from toyrelu.runs.knobs import study as make_study

    knobs = None if args.knobs is None else [k.strip() for k in args.knobs.split(",")]
    seeds = None if args.seeds is None else [
        _parse_value("seed", "int", p) for p in args.seeds.split(",") if p.strip()]
    study = make_study(args.base, knobs, seeds)
    workers, device, out = _workers(args), _device(args), _out_dir(args.out)
    with Store(out / "runs.sqlite") as store:
        print(f"toyrelu: sensitivity around the {args.base} base: {len(study.knobs)} knobs, "
              f"{len(study.configs())} runs into {store.path}", file=sys.stderr)
        study = sensitivity.run(study, store, _executor(args, workers, device),
                                progress=sys.stderr)
        tables, sentence, _ = sensitivity_report.write(study, store, out)
    for row in tables.ranking.itertuples(index=False):
        print(f"{row.knob:>12}  x{row.factor:<8.3g} lowest {row.lowest_value} "
              f"({row.lowest_peak:.4g}; base {row.base_peak:.4g})")
    print(sentence)
    print(f"toyrelu: figures and sensitivity.md in {out}")


COMMANDS = {
    "reproduce": cmd_reproduce,
    "sweep": cmd_sweep,
    "figures": cmd_figures,
    "report": cmd_report,
    "export": cmd_export,
    "animate": cmd_animate,
    "presets": cmd_presets,
    "sensitivity": cmd_sensitivity,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 2 bad input, 130 interrupted, 141 when the
    reader of stdout went away, as ``toyrelu export --out - | head`` does)."""
    try:
        args = build_parser().parse_args(argv)
        COMMANDS[args.command](args)
    except BrokenPipeError:
        # Nothing is wrong with the input: the reader has what it wanted. Point stdout at
        # /dev/null so that the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13  # as if killed by SIGPIPE
    except (UsageError, ConfigError, StoreError) as exc:
        print(f"toyrelu: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    except OSError as exc:  # an output path that cannot be written
        where = f": {exc.filename}" if exc.filename else ""
        print(f"toyrelu: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("toyrelu: interrupted; finished runs are stored, rerun the same command to resume",
              file=sys.stderr)
        return 130
    return 0

"""The commands: each turns parsed arguments into calls to the layers below and prints.

What a command computes lives in those layers (``runs`` sweeps and stores, ``report`` writes
the summaries, figures and exports); here are only the checks of the input that argparse cannot
make and the lines for the user. Heavy layers are imported inside the command that needs them,
so that ``toyrelu presets`` and ``--help`` load no numerical library.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from toyrelu.cli.options import overrides
from toyrelu.cli.parser import RunsFailed, UsageError
from toyrelu.runs.presets import PRESETS, Preset
from toyrelu.runs.resources import default_workers, resolve_device

if TYPE_CHECKING:
    from toyrelu.runs.executors import Executor
    from toyrelu.runs.store import Store


def cmd_reproduce(args: argparse.Namespace) -> None:
    from toyrelu.report import reproduce
    from toyrelu.runs.store import Store

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
    from toyrelu.runs.store import Store

    preset = _preset(args)
    workers = _workers(args)
    device = _device(args)
    with Store(args.store) as store:
        _sweep(preset, store, args, workers, device)


def cmd_figures(args: argparse.Namespace) -> None:
    from toyrelu.report import store_figures
    from toyrelu.runs.store import Store

    with Store(args.store, create=False) as store:
        names, pooled = store_figures.write(store, _out_dir(args.out))
    if pooled:
        print(f"toyrelu: note: the figures pool runs that differ in {', '.join(pooled)}",
              file=sys.stderr)
    print(f"toyrelu: wrote {', '.join(names)} (and SVG twins) to {args.out}")


def cmd_report(args: argparse.Namespace) -> None:
    from toyrelu.report import build as report
    from toyrelu.runs.store import Store

    out = _out_dir(args.out)
    with Store(args.store, create=False) as store:
        html_path, _ = report.write(store, out)
    print(f"toyrelu: wrote {html_path} and report.md (figures beside them)")


def cmd_export(args: argparse.Namespace) -> None:
    from toyrelu.report import export
    from toyrelu.runs.outputs import target
    from toyrelu.runs.store import Store

    if args.run or args.arrays:
        if not (args.run and args.arrays):
            raise UsageError("export: --run and --arrays go together")
        target(args.arrays, "arrays", inputs=[args.store])
    elif args.out != "-":
        target(args.out, "out", inputs=[args.store])
    with Store(args.store, create=False) as store:
        if args.arrays:
            names = export.write_arrays(store, args.run, args.arrays)
            print(f"toyrelu: wrote {', '.join(names)} of run {args.run} to {args.arrays}")
            return
        table = export.runs_table(store)
    export.write_table(table, sys.stdout if args.out == "-" else args.out, args.format)


def cmd_animate(args: argparse.Namespace) -> None:
    from toyrelu.analysis import dynamics
    from toyrelu.figures import animation
    from toyrelu.runs.outputs import target
    from toyrelu.runs.store import Store

    target(args.out, "out", inputs=[args.store])
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
    from toyrelu.runs.store import Store

    knobs = None if args.knobs is None else [k.strip() for k in args.knobs.split(",")]
    study = make_study(args.base, knobs, args.seeds)
    workers, device, out = _workers(args), _device(args), _out_dir(args.out)
    with Store(out / "runs.sqlite") as store:
        print(f"toyrelu: sensitivity around the {args.base} base: {len(study.knobs)} knobs, "
              f"{len(study.configs())} runs into {store.path}", file=sys.stderr)
        study = sensitivity.run(study, store, _executor(args, workers, device),
                                progress=sys.stderr)
        tables, sentence, _ = sensitivity_report.write(study, store, out)
    if tables.bumps.empty:
        # The sweep above stored every run, so an empty analysis means none finished.
        raise RunsFailed(f"every run of the study failed ({len(study.configs())}), so nothing "
                         f"is written to {out}; the reasons are in the error column of "
                         f"toyrelu export --store {store.path}")
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


def _preset(args: argparse.Namespace) -> Preset:
    if args.preset not in PRESETS:
        raise UsageError(f"preset: {args.preset!r} is unknown (choose from {', '.join(PRESETS)})")
    values = overrides(args)
    restarts = getattr(args, "restarts", None)
    if restarts is not None:
        if restarts < 1:
            raise UsageError(f"restarts: {restarts} must be an integer >= 1")
        if "restart" in values:
            raise UsageError("restarts: give either --restarts K or --restart values, not both")
        values["restart"] = list(range(restarts))
    return PRESETS[args.preset].override(values)


def _workers(args: argparse.Namespace) -> int:
    if args.workers is None:
        return default_workers()
    if args.workers < 1:
        raise UsageError(f"workers: {args.workers} must be an integer >= 1")
    return args.workers


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
    """Where the runs train, with the GPU options of ``parser._add_device_options``."""
    from toyrelu.runs.executors import executor

    return executor(workers, device, args.gpu_cells, args.gpu_dots)


def _out_dir(path: str) -> Path:
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise UsageError(f"out: {out} exists and is not a folder")
    return out


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
    if report.failed and not report.ok:
        raise RunsFailed(f"every run trained failed ({report.failed}); the reasons are in the "
                         f"error column of toyrelu export --store {store.path}")

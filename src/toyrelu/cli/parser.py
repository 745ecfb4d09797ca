"""The argument parser of every command, and ``UsageError`` for input it cannot take.

Options only: the commands themselves are in ``toyrelu.cli.commands``. This module loads no
numerical library, so ``toyrelu --help`` answers at once.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from typing import NoReturn

from toyrelu.cli.options import FieldValues, add_overrides
from toyrelu.runs.cluster_jobs import JOB_MINUTES, MAX_RUNS_PER_JOB, TIME_SHARE
from toyrelu.runs.knobs import BASES, KNOB_NAMES
from toyrelu.runs.presets import PRESETS
from toyrelu.runs.resources import DEVICES

DESCRIPTION = ("Train the ReLU-output toy model on finite datasets, sweep it, and draw what the "
               "paper drew.")


class UsageError(Exception):
    """Bad command-line input; the message is one line."""


class RunsFailed(Exception):
    """A command trained runs and every one of them failed; the message is one line."""


class DamagedRuns(RunsFailed):
    """``check`` found damaged runs and left them; the message is one line (exit code 1, as
    for failed runs: the input was fine, the runs are not)."""


class _Parser(argparse.ArgumentParser):
    # argparse would print the usage and exit; the caller prints one line instead.
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """``argv`` (default: this process's) parsed by ``build_parser``. An option before any
    command is unknown, since the options belong to the commands; argparse would report it as
    a missing command instead."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0].startswith("-") and args[0] not in ("-h", "--help"):
        raise UsageError(f"unrecognized arguments: {args[0]} (options follow a command: "
                         "toyrelu COMMAND --help)")
    return build_parser().parse_args(_negative_values_attached(args))


# A value that starts like a negative number (-1e-2, -.5, -inf, a list -1,-2): argparse takes
# only plain ones (-1, -0.5) for values and the rest for unknown options.
_NEGATIVE = re.compile(r"-(\d|\.\d|inf|nan)", re.IGNORECASE)


def _negative_values_attached(args: list[str]) -> list[str]:
    """``--opt VALUE`` written ``--opt=VALUE`` where VALUE looks like a negative number, so
    that it reaches the option's own check (``--weight-decay -1e-2``: weight_decay must be
    in [0, inf)) instead of argparse's "expected one argument"."""
    out: list[str] = []
    for arg in args:
        previous = out[-1] if out else ""
        if (_NEGATIVE.match(arg) and previous.startswith("--") and "=" not in previous
                and previous != "--"):
            out[-1] = f"{previous}={arg}"
        else:
            out.append(arg)
    return out


def build_parser() -> argparse.ArgumentParser:
    """The ``toyrelu`` parser: one sub-command per ``toyrelu.cli.commands.COMMANDS`` entry."""
    parser = _Parser(prog="toyrelu", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    presets = f"one of {', '.join(PRESETS)}"

    reproduce = commands.add_parser("reproduce", help="sweep, figures and summary in one folder")
    reproduce.add_argument("--preset", default="quick", help=presets)
    reproduce.add_argument("--out", default="toyrelu-out", help="output folder")
    reproduce.add_argument("--workers", type=int, default=None, help="processes (default: cores)")
    _add_run_options(reproduce)
    add_overrides(reproduce)

    sweep = commands.add_parser("sweep", help="run (or resume) a sweep into a store")
    sweep.add_argument("--preset", default="quick", help=presets)
    sweep.add_argument("--store", required=True, help="SQLite file (created if missing)")
    sweep.add_argument("--workers", type=int, default=None, help="processes (default: cores)")
    _add_run_options(sweep)
    add_overrides(sweep)

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

    _add_check(commands)
    animate = commands.add_parser("animate", help="a run's snapshots as a GIF or MP4")
    animate.add_argument("--store", required=True)
    animate.add_argument("--run", required=True, help="run_id (trained with --snapshot-every)")
    animate.add_argument("--out", required=True, help="output .gif, or .mp4 (needs ffmpeg)")
    animate.add_argument("--fps", type=int, default=10, help="frames per second (default 10)")

    commands.add_parser("presets", help="list the presets")

    sens = commands.add_parser("sensitivity", help="vary one setting at a time; rank what "
                               "sets the test-loss bump (resumable)")
    sens.add_argument("--base", default="quick", help=f"one of {', '.join(BASES)}")
    sens.add_argument("--knobs", default=None,
                      help=f"comma list of {', '.join(KNOB_NAMES)} (default: all)")
    sens.add_argument("--out", required=True, help="output folder (store: OUT/runs.sqlite)")
    sens.add_argument("--seeds", type=FieldValues("seed", allow_empty=True), default=None,
                      metavar="INT", help="comma list (default: the base's)")
    sens.add_argument("--workers", type=int, default=None, help="processes (default: cores)")
    _add_device_options(sens)
    return parser


def _add_check(commands: argparse._SubParsersAction) -> None:
    check = commands.add_parser("check", help="read every run of a store back; name (or drop) "
                                "the damaged ones")
    check.add_argument("--store", required=True)
    check.add_argument("--drop", action="store_true",
                       help="delete the damaged runs (a sweep trains them again)")


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--restarts", type=int, default=None, metavar="K",
                        help="train K initialisations per dataset, keep the lowest training loss")
    parser.add_argument("--retry-failed", action="store_true",
                        help="train the runs stored as failed (diverged or crashed) again; runs "
                             "stopped by an error of the machine are trained again anyway")
    _add_device_options(parser)


def _add_device_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cluster", default=None, metavar="ray[:ADDRESS]|slurm",
                        help="train on Ray: ray starts a local instance, ray:auto or "
                             "ray:HOST:PORT joins a running cluster (one task per CPU run or "
                             "GPU batch; needs pip install 'toyrelu[ray]'); or slurm: SLURM "
                             "jobs through submitit (pip install 'toyrelu[slurm]')")
    parser.add_argument("--slurm-partition", default=None, metavar="NAME",
                        help="with --cluster slurm: the partition (default: the cluster's)")
    parser.add_argument("--slurm-time", type=int, default=None, metavar="MINUTES",
                        help="with --cluster slurm: each job's time limit (default 240); a CPU "
                             "job takes runs until their time estimated by the cost model would "
                             f"pass the shorter of {JOB_MINUTES:g} minutes and "
                             f"{TIME_SHARE:.0%}% of the limit, {MAX_RUNS_PER_JOB} runs at most")
    parser.add_argument("--slurm-gpus", type=int, default=None, metavar="K",
                        help="with --cluster slurm and --device cuda: GPUs per job, each "
                             "training one GPU batch (default 1)")
    parser.add_argument("--device", default="auto", metavar="|".join(DEVICES),
                        help="where to train (default: auto, a CUDA GPU when there is one)")
    parser.add_argument("--gpu-cells", action="store_true",
                        help="on a GPU, take the split-cell step on fixed training sets while it "
                             "pays (same results up to rounding; the CPU engine does so anyway)")
    parser.add_argument("--gpu-dots", action="store_true",
                        help="on a GPU, run the dense passes as tensor-core dots (tf32x3 in "
                             "float32; the same cost per pair for every m up to 16)")
    parser.add_argument("--gpu-batch-rows", type=int, default=None, metavar="ROWS",
                        help="on a GPU, at most ROWS training rows per batch of runs (default "
                             "2,000,000); smaller batches spread over more GPUs, and a run's "
                             "numbers change in rounding with its batch")

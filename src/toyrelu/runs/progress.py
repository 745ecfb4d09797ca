"""The one-line progress bar of a sweep: runs done, steps per second, time left.

Written here rather than with tqdm or rich (each a new dependency): neither keeps what this bar
does without as much code around it. The time left weighs steps by their cost while the rate
shown counts steps, start-up is left out of the rate (tqdm's smoothed rate includes it), and a log
file gets a new line every few seconds, where tqdm writes carriage returns and rich's live display
prints only the final state.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from typing import TextIO

from toyrelu.core.config import RunConfig
from toyrelu.runs.grid import cost


class Progress:
    """A one-line progress bar on a text stream: runs done, steps/s and time left.

    Time left is the work still to do over the rate of work since the first report, with each
    step weighted by its cost, so one large run does not make the estimate jump. The time
    before the first report (starting workers, compiling kernels on a fresh install) is left
    out of the rate, as it is not spent again: until a second report there is no estimate.
    """

    def __init__(self, configs: Sequence[RunConfig], stream: TextIO | None = None):
        self.stream = stream if stream is not None else sys.stderr
        self.total_runs = len(configs)
        self.step_cost = {c.run_id: cost(c) / c.steps for c in configs}
        self.run_cost = {c.run_id: cost(c) for c in configs}
        self.total_work = sum(cost(c) for c in configs) or 1.0
        self.work = 0.0
        self.steps = 0
        self.runs = 0
        self.start = time.perf_counter()
        self.first: tuple[float, float] | None = None  # (time, work) of the first report
        self.last_draw = -math.inf

    def on_steps(self, run_id: str, k: int) -> None:
        self.steps += k
        self.work += k * self.step_cost.get(run_id, 0.0)
        if self.first is None:
            self.first = (time.perf_counter(), self.work)
        self.draw()

    def on_run(self) -> None:
        self.runs += 1
        self.draw(force=True)

    def on_skip(self, run_id: str) -> None:
        """``run_id`` will not train here (another sweep trains it): it leaves the runs and the
        work to do."""
        self.total_runs -= 1
        self.total_work = max(self.total_work - self.run_cost.get(run_id, 0.0), 1.0)
        self.draw(force=True)

    def line(self) -> str:
        now = time.perf_counter()
        elapsed = now - self.start
        rate = self.steps / elapsed if elapsed > 0 else 0.0
        left = float("nan")
        if self.work >= self.total_work:
            left = 0.0
        elif self.first is not None and self.work > self.first[1] and now > self.first[0]:
            work_rate = (self.work - self.first[1]) / (now - self.first[0])
            left = (self.total_work - self.work) / work_rate
        return (
            f"runs {self.runs}/{self.total_runs} | {rate:,.0f} steps/s | "
            f"elapsed {_clock(elapsed)} | left {_clock(left)}"
        )

    def draw(self, force: bool = False) -> None:
        # A terminal line is redrawn in place; a log file gets a new line every few seconds.
        tty = self.stream.isatty()
        now = time.perf_counter()
        if not force and now - self.last_draw < (0.5 if tty else 5.0):
            return
        if not tty and force and now - self.last_draw < 5.0 and self.runs < self.total_runs:
            return
        self.last_draw = now
        self.stream.write(self.line() + ("\r" if tty else "\n"))
        self.stream.flush()

    def close(self) -> None:
        if self.stream.isatty():
            self.stream.write("\n")


def _clock(seconds: float) -> str:
    if seconds != seconds:  # NaN: nothing measured yet
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes >= 60:
        return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}"


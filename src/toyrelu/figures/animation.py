"""Animations of training dynamics: a run's features and hidden vectors, one frame per snapshot.

Each frame draws what figure 1 of the paper draws for a finished run (``figures.plot_features``
and ``figures.plot_hidden`` side by side) at one stored snapshot (``toyrelu.analysis.dynamics``),
with the step in the title and the same axes limits in every frame, so that growth and rotation
are visible. A GIF is written with Pillow (which comes with matplotlib), an MP4 with ffmpeg, each
to a temporary file beside the target that is renamed into place once complete
(``toyrelu.runs.outputs.atomic_path``).
"""

from __future__ import annotations

import errno
import io
import math
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from matplotlib import animation as mpl_animation
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from PIL import Image

from toyrelu import figures
from toyrelu.analysis import dynamics
from toyrelu.analysis.dynamics import Frame, Trajectory
from toyrelu.core.config import fmt_T
from toyrelu.runs import outputs

FORMATS = (".gif", ".mp4")
MARGIN = 1.12  # as figures._plane: a little room around the longest vector


class GifWriter(mpl_animation.PillowWriter):
    """matplotlib's PillowWriter, holding each frame as a 256-colour palette image (what a GIF
    stores anyway; Pillow would convert RGB frames the same way when writing) instead of RGB:
    a third of the memory until the file is written (docs/engines.md)."""

    def setup(self, fig: Figure, outfile: Any, dpi: float | None = None) -> None:
        super().setup(fig, outfile, dpi=dpi)
        self.frames: list[Image.Image] = []

    def grab_frame(self, **savefig_kwargs: Any) -> None:
        buffer = io.BytesIO()
        self.fig.savefig(buffer, **{**savefig_kwargs, "format": "rgba", "dpi": self.dpi})
        rgba = Image.frombuffer("RGBA", self.frame_size, buffer.getvalue(), "raw", "RGBA", 0, 1)
        self.frames.append(rgba.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE))

    def finish(self) -> None:
        self.frames[0].save(self.outfile, save_all=True, append_images=self.frames[1:],
                            duration=int(1000 / self.fps), loop=0)


def movie_writer(out: str | Path, fps: int) -> mpl_animation.AbstractMovieWriter:
    """The writer for ``out``: Pillow for ``.gif``, ffmpeg for ``.mp4``.

    Raises ValueError (one line naming the field) for another suffix, an fps below 1, or an
    ``.mp4`` without ffmpeg installed.
    """
    if isinstance(fps, bool) or not isinstance(fps, int) or fps < 1:
        raise ValueError(f"fps: {fps!r} must be an integer >= 1")
    suffix = Path(out).suffix.lower()
    if suffix == ".gif":
        return GifWriter(fps=fps)
    if suffix == ".mp4":
        if not mpl_animation.writers.is_available("ffmpeg"):
            raise ValueError(f"out: {out} needs ffmpeg, which is not installed; "
                             f"write a .gif instead")
        return mpl_animation.FFMpegWriter(fps=fps)
    raise ValueError(f"out: {out} must end in {' or '.join(FORMATS)}")


def title(trajectory: Trajectory, frame: Frame) -> str:
    """``T = 5, seed 0: step 300 of 1,000, train loss 0.412`` (the loss when computed)."""
    config = trajectory.config
    text = (f"T = {fmt_T(config.n_train)}, seed {config.seed}: "
            f"step {frame.step:,} of {config.steps:,}")
    if not math.isnan(frame.train_loss):
        text += f", train loss {frame.train_loss:.4g}"
    return text


def draw_frame(
    axes: tuple[Axes, Axes], frame: Frame, *, radii: tuple[float, float], style=None
) -> tuple[Axes, Axes]:
    """Features (left) and training hidden vectors (right) of one snapshot, replacing what the
    axes held; ``radii`` (largest |W_i| and |h_t| of the whole run, ``dynamics.radii``) fix the
    limits so that every frame has the same scale. Needs n_hidden = 2."""
    ax_W, ax_H = axes
    for ax in axes:
        ax.cla()
    figures.plot_features(ax_W, frame.W, style=style)
    figures.plot_hidden(ax_H, frame.H, style=style)
    for ax, radius, name in ((ax_W, radii[0], "features $W_i$"),
                             (ax_H, radii[1], "hidden vectors $h_t$")):
        lim = MARGIN * (radius or 1.0)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_title(name)
    return ax_W, ax_H


def write(
    trajectory: Trajectory,
    out: str | Path,
    *,
    fps: int = 10,
    dpi: int = 100,
    losses: bool = True,
    style=None,
    on_frame: Callable[[int], None] | None = None,
) -> Path:
    """Write one frame per snapshot of ``trajectory`` to ``out`` (.gif or .mp4); returns it.

    With ``losses`` each title shows the snapshot's train loss (about one training step of
    work per frame). ``on_frame(s)`` (if given) is called after frame ``s`` is drawn. Raises
    ValueError as ``movie_writer`` does, and for n_hidden other than 2; OSError naming ``out``
    when it cannot be written (a full disk), leaving any earlier file there as it was.
    """
    m = trajectory.config.n_hidden
    if m != 2:
        raise ValueError(f"n_hidden: run {trajectory.run_id} has m = {m}; animations need m = 2")
    writer = movie_writer(out, fps)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    radii = dynamics.radii(trajectory)
    fig = Figure(figsize=(8.0, 4.4))
    # Fixed margins, not a layout engine: frames must not shift as the title's width changes.
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.86, wspace=0.06)
    axes = fig.subplots(1, 2)
    try:
        with outputs.atomic_path(out) as temporary, writer.saving(fig, str(temporary), dpi):
            for s in range(len(trajectory)):
                frame = dynamics.frame(trajectory, s, loss=losses)
                draw_frame((axes[0], axes[1]), frame, radii=radii, style=style)
                fig.suptitle(title(trajectory, frame))
                writer.grab_frame()
                if on_frame is not None:
                    on_frame(s)
    except subprocess.CalledProcessError as exc:
        # ffmpeg reports a full disk or a codec it lacks by its exit status and stderr.
        err = exc.stderr or ""
        said = (err.decode(errors="replace") if isinstance(err, bytes) else err).splitlines()
        reason = said[-1].strip() if said else f"exit status {exc.returncode}"
        raise OSError(errno.EIO, f"ffmpeg could not write the movie ({reason})",
                      str(out)) from None
    return out

"""Figures are checked through what they drew (line data, collections, labels), from hand-made
tables whose expected values are written beside them; no training, no pixels."""

import errno
import os
import subprocess

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import LineCollection, PathCollection, PolyCollection  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402

from toyrelu import figures  # noqa: E402

# Per-T losses of three seeds; the seed means are 4.0, 1.5 and 1.0 (test), 0.0, 0.2, 0.9 (train).
TEST_LOSS = {3: [2.0, 4.0, 6.0], 30: [1.0, 1.5, 2.0], 300: [0.99, 1.0, 1.01]}
TRAIN_LOSS = {3: [0.0, 0.0, 0.0], 30: [0.1, 0.2, 0.3], 300: [0.8, 0.9, 1.0]}
FAILED = 1e9  # the losses and norms of failed runs; they must appear nowhere


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def make_runs(n_hidden=2, offset=0.0):
    rows = []
    for T in TEST_LOSS:
        for seed in range(3):
            rows.append(dict(
                run_id=f"{n_hidden}-{T}-{seed}", status="ok", n_features=20, n_hidden=n_hidden,
                sparsity=0.9, n_train=T, seed=seed, steps=100, weight_decay=1e-2,
                train_loss=TRAIN_LOSS[T][seed], test_loss=TEST_LOSS[T][seed] + offset,
                W_norm=1.0 + seed + T / 100, b_norm=0.5 * seed,
            ))
    for T in (30, 1000):  # a failed seed at a plotted T, and a T with only a failed run
        rows.append(dict(rows[0], run_id=f"failed-{T}", status="failed", n_train=T, seed=9,
                         train_loss=FAILED, test_loss=FAILED, W_norm=FAILED, b_norm=FAILED))
    return pd.DataFrame(rows)


def make_dims(n_hidden=2):
    rows = [dict(n_train=T, seed=seed, kind=kind, dimensionality=d, n_hidden=n_hidden)
            for T, seed, kind, d in [(3, 0, "example", 2 / 3), (3, 0, "feature", 0.0),
                                     (3, 1, "example", 0.6), (100, 0, "feature", 0.25),
                                     (100, 0, "example", 0.01), (1000, 1, "feature", 0.4)]]
    return pd.DataFrame(rows)


def line(ax, label):
    (found,) = [ln for ln in ax.get_lines() if ln.get_label() == label]
    return found


def collections_like(ax, kind, color):
    return [c for c in ax.collections if isinstance(c, kind)
            and np.allclose(c.get_facecolor()[0][:3], to_rgb(color))]


def legend_texts(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_plot_loss_returns_axes_and_sets_scales_and_labels():
    fig, ax = plt.subplots()
    assert figures.plot_loss(ax, make_runs()) is ax
    assert ax.get_xscale() == "log" and ax.get_yscale() == "symlog"
    assert "T" in ax.get_xlabel() and "loss" in ax.get_ylabel()
    assert legend_texts(ax) == ["test", "train", "predict zero ($L$ = 1)"]
    np.testing.assert_array_equal(line(ax, "predict zero ($L$ = 1)").get_ydata(), [1.0, 1.0])


@pytest.mark.parametrize("label, column, table", [("test", "test_loss", TEST_LOSS),
                                                  ("train", "train_loss", TRAIN_LOSS)])
def test_plot_loss_mean_line_is_seed_mean_of_ok_runs(label, column, table):
    fig, ax = plt.subplots()
    figures.plot_loss(ax, make_runs())
    mean = line(ax, label)
    np.testing.assert_array_equal(mean.get_xdata(), [3, 30, 300])  # T = 1000 only failed
    np.testing.assert_allclose(mean.get_ydata(), [np.mean(v) for v in table.values()], rtol=1e-12)


@pytest.mark.parametrize("label, table", [("test", TEST_LOSS), ("train", TRAIN_LOSS)])
def test_plot_loss_band_spans_min_to_max_and_dots_show_every_ok_run(label, table):
    fig, ax = plt.subplots()
    figures.plot_loss(ax, make_runs())
    color = line(ax, label).get_color()
    (band,) = collections_like(ax, PolyCollection, color)
    vertices = band.get_paths()[0].vertices
    for T, values in table.items():
        at_T = vertices[np.isclose(vertices[:, 0], T), 1]
        np.testing.assert_allclose([at_T.min(), at_T.max()], [min(values), max(values)])
    assert vertices[:, 1].max() < FAILED
    (dots,) = collections_like(ax, PathCollection, color)
    expected = sorted((T, v) for T, values in table.items() for v in values)
    np.testing.assert_allclose(sorted(map(tuple, dots.get_offsets())), expected)


def test_plot_loss_gives_each_n_hidden_its_own_colour():
    runs = pd.concat([make_runs(n_hidden=2), make_runs(n_hidden=4, offset=1.0)])
    fig, ax = plt.subplots()
    figures.plot_loss(ax, runs)
    m2, m4 = line(ax, "test, $m$ = 2"), line(ax, "test, $m$ = 4")
    assert to_rgb(m2.get_color()) != to_rgb(m4.get_color())
    np.testing.assert_allclose(m4.get_ydata() - m2.get_ydata(), 1.0)  # the offset of make_runs
    assert line(ax, "train, $m$ = 4").get_linestyle() == "--"


def two_procedures():
    """make_runs under the summed loss and, 1.0 lower, under the mean over features."""
    summed = make_runs().assign(loss_reduction="sum", eps=1e-8)
    averaged = make_runs(offset=-1.0).assign(loss_reduction="mean", eps=1e-8)
    averaged["run_id"] = "mean-" + averaged["run_id"]
    return pd.concat([summed, averaged], ignore_index=True)


@pytest.mark.parametrize("plot", [figures.plot_loss, figures.plot_norms])
def test_loss_and_norms_draw_each_procedure_in_its_own_style_never_pooled(plot):
    fig, ax = plt.subplots()
    plot(ax, two_procedures())
    texts = legend_texts(ax)
    assert "summed loss (eps 1e-8)" in texts
    assert "paper's procedure: mean over features" in texts
    # One mean line per quantity and procedure, each the seed mean of its own runs.
    drawn = [ln for ln in ax.get_lines() if len(ln.get_xdata()) == 3]
    assert len(drawn) == 4
    solid = [ln for ln in drawn if ln.get_linestyle() == "-"]
    dashed = [ln for ln in drawn if ln.get_linestyle() == "--"]
    assert len(solid) == len(dashed) == 2
    if plot is figures.plot_loss:
        test_means = [np.mean(v) for v in TEST_LOSS.values()]
        (summed,) = [ln for ln in solid if ln.get_label() == "test"]
        (averaged,) = [ln for ln in dashed if ln.get_color() == summed.get_color()]
        np.testing.assert_allclose(summed.get_ydata(), test_means, rtol=1e-12)
        np.testing.assert_allclose(averaged.get_ydata(), np.subtract(test_means, 1.0),
                                   rtol=1e-12)
        assert averaged.get_markerfacecolor() == "white"


def test_one_procedure_draws_as_before():
    fig, ax = plt.subplots()
    figures.plot_loss(ax, make_runs().assign(loss_reduction="mean", eps=1e-8))
    assert legend_texts(ax) == ["test", "train", "predict zero ($L$ = 1)"]
    assert line(ax, "train").get_linestyle() == "--"


def test_style_overrides_defaults_and_rejects_unknown_fields():
    fig, ax = plt.subplots()
    figures.plot_loss(ax, make_runs(), style={"test_color": "#ff0000"})
    assert to_rgb(line(ax, "test").get_color()) == (1.0, 0.0, 0.0)
    with pytest.raises(TypeError):
        figures.plot_loss(ax, make_runs(), style={"no_such_field": 1})


def test_plot_dimensionality_scatters_every_value_near_its_T():
    dims = make_dims()
    fig, ax = plt.subplots()
    assert figures.plot_dimensionality(ax, dims) is ax
    for kind, label in [("feature", "features"), ("example", "training examples")]:
        (points,) = [c for c in ax.collections if c.get_label() == label]
        rows = dims[dims["kind"] == kind]
        offsets = points.get_offsets()
        np.testing.assert_allclose(offsets[:, 1], rows["dimensionality"])
        ratio = offsets[:, 0] / rows["n_train"].to_numpy()
        assert np.all(np.abs(np.log(ratio)) < 5 * figures.Style().jitter)
    assert ax.get_xscale() == "log"
    assert ax.get_ylim()[1] == pytest.approx(1.05)
    assert "D" in ax.get_ylabel()


def test_plot_dimensionality_jitter_is_deterministic():
    offsets = []
    for _ in range(2):
        fig, ax = plt.subplots()
        figures.plot_dimensionality(ax, make_dims())
        offsets.append(np.concatenate([c.get_offsets() for c in ax.collections]))
    np.testing.assert_array_equal(*offsets)


def test_plot_dimensionality_draws_m_over_T_across_the_T_range():
    fig, ax = plt.subplots()
    figures.plot_dimensionality(ax, make_dims(n_hidden=2))
    curve = line(ax, "m / T")
    x = np.asarray(curve.get_xdata())
    np.testing.assert_allclose(curve.get_ydata(), 2 / x, rtol=1e-12)
    np.testing.assert_allclose([x.min(), x.max()], [3, 1000])


def test_plot_dimensionality_rejects_several_n_hidden():
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match="n_hidden"):
        figures.plot_dimensionality(ax, pd.concat([make_dims(2), make_dims(4)]))


def test_plot_norms_draws_seed_means_of_ok_runs_on_log_x():
    fig, ax = plt.subplots()
    assert figures.plot_norms(ax, make_runs()) is ax
    # W_norm = 1 + seed + T/100 and b_norm = seed / 2 over seeds 0, 1, 2
    W, b = line(ax, r"$\|W\|_F$"), line(ax, r"$\|b\|_2$")
    np.testing.assert_allclose(W.get_ydata(), [2.03, 2.3, 5.0])
    np.testing.assert_allclose(b.get_ydata(), [0.5, 0.5, 0.5])
    (band,) = collections_like(ax, PolyCollection, W.get_color())
    assert band.get_paths()[0].vertices[:, 1].max() == pytest.approx(6.0)  # seed 2, T = 300
    assert ax.get_xscale() == "log" and "T" in ax.get_xlabel()


# A pentagon of unit features plus one feature at the origin; five points on a triangle.
PENTAGON = np.stack([np.cos(2 * np.pi * np.arange(5) / 5), np.sin(2 * np.pi * np.arange(5) / 5)])
W_PENTAGON = np.concatenate([PENTAGON, np.zeros((2, 1))], axis=1)  # (2, 6)
H_POINTS = np.array([[1.0, 0.0], [-0.5, 0.8], [-0.5, -0.8], [0.2, 0.1], [0.0, 2.0]])  # (5, 2)


def test_plot_features_draws_one_spoke_from_origin_to_each_column():
    fig, ax = plt.subplots()
    assert figures.plot_features(ax, W_PENTAGON) is ax
    (spokes,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    segments = np.asarray(spokes.get_segments())
    assert segments.shape == (6, 2, 2)
    np.testing.assert_array_equal(segments[:, 0], 0.0)
    np.testing.assert_allclose(segments[:, 1], W_PENTAGON.T)
    (tips,) = [c for c in ax.collections if isinstance(c, PathCollection)]
    np.testing.assert_allclose(tips.get_offsets(), W_PENTAGON.T)
    lo, hi = ax.get_xlim()
    assert lo == -hi and ax.get_ylim() == (lo, hi) and hi > 1.0
    assert ax.get_aspect() == 1.0 and len(ax.get_xticks()) == len(ax.get_yticks()) == 0


def test_plot_hidden_draws_each_point_with_a_ray():
    fig, ax = plt.subplots()
    assert figures.plot_hidden(ax, H_POINTS) is ax
    (points,) = [c for c in ax.collections if isinstance(c, PathCollection)]
    np.testing.assert_allclose(points.get_offsets(), H_POINTS)
    (rays,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    np.testing.assert_allclose(np.asarray(rays.get_segments())[:, 1], H_POINTS)
    assert ax.get_aspect() == 1.0 and ax.get_xlim()[1] > 2.0  # |h| reaches 2


def test_geometry_grid_has_a_column_per_T_sorted():
    geometry = [(5, W_PENTAGON, H_POINTS), (3, W_PENTAGON, H_POINTS[:3]),
                (1000, W_PENTAGON, H_POINTS)]
    fig = figures.geometry_grid(geometry)
    axes = np.array(fig.axes).reshape(2, 3)
    assert [ax.get_title() for ax in axes[0]] == ["T = 3", "T = 5", "T = 1,000"]
    assert [ax.get_title() for ax in axes[1]] == ["", "", ""]
    assert axes[0, 0].get_ylabel() == "features $W_i$"
    assert axes[1, 0].get_ylabel() == "hidden vectors $h_t$"
    (points,) = [c for c in axes[1, 0].collections if isinstance(c, PathCollection)]
    assert len(points.get_offsets()) == 3  # the T = 3 entry, moved to the first column


def test_geometry_grid_rejects_more_than_two_hidden_dimensions():
    with pytest.raises(ValueError, match="n_hidden = 2"):
        figures.geometry_grid([(3, np.ones((3, 6)), np.ones((3, 3)))])


def test_summary_figure_has_loss_dimensionality_and_norm_panels():
    fig = figures.summary_figure(make_runs(), make_dims())
    assert len(fig.axes) == 3
    assert all(ax.get_xscale() == "log" for ax in fig.axes)
    assert [ax.get_ylabel() for ax in fig.axes][1] == "fractional dimensionality $D$"
    assert fig.axes[0].get_yscale() == "symlog"


def test_save_writes_png_and_svg_and_closes_the_figure(tmp_path):
    fig, ax = plt.subplots()
    figures.plot_norms(ax, make_runs())
    paths = figures.save(fig, tmp_path / "nested" / "out", "norms")
    assert [p.name for p in paths] == ["norms.png", "norms.svg"]
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths)
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in paths[1].read_text()
    assert not plt.fignum_exists(fig.number)


# --------------------------------------------------------------------------- animation files


def square_trajectory():
    """Four features on the axes' directions, growing over three snapshots; X = the identity."""
    from toyrelu.analysis.dynamics import Trajectory
    from toyrelu.core.config import RunConfig
    from toyrelu.core.data import SparseData

    square = np.array([[1.0, 0.0, -1.0, 0.0], [0.0, 1.0, 0.0, -1.0]])
    W = np.stack([s * square for s in (0.5, 1.0, 2.0)]).astype(np.float32)
    X = SparseData(np.arange(5, dtype=np.int64), np.arange(4, dtype=np.int32),
                   np.ones(4, np.float32), 4)
    config = RunConfig(n_features=4, n_train=4, steps=20, snapshot_every=10, sparsity=0.5)
    return Trajectory("square", config, np.array([0, 10, 20]), W, np.zeros((3, 4), np.float32),
                      X)


def folder_listing(folder):
    return sorted(p.name for p in folder.iterdir())


def test_an_animation_is_written_beside_the_target_and_renamed_into_place(tmp_path,
                                                                           monkeypatch):
    from PIL import Image

    from toyrelu.figures import animation

    seen = []
    setup = animation.GifWriter.setup

    def spy(self, fig, outfile, dpi=None):
        seen.append(outfile)
        setup(self, fig, outfile, dpi)

    monkeypatch.setattr(animation.GifWriter, "setup", spy)
    out = tmp_path / "run.gif"
    out.write_bytes(b"an earlier movie")
    assert animation.write(square_trajectory(), out, fps=4, dpi=20, losses=False) == out
    (written,) = seen
    # A temporary name in the same folder that keeps the suffix the writer goes by.
    assert written != str(out) and written.endswith(".gif")
    assert os.path.dirname(written) == str(tmp_path)
    with Image.open(out) as gif:
        assert gif.format == "GIF" and gif.n_frames == 3
    assert folder_listing(tmp_path) == ["run.gif"]


@pytest.mark.parametrize("where", ["writer", "sync"])
def test_a_full_disk_keeps_the_earlier_animation_and_names_the_path(tmp_path, monkeypatch,
                                                                     where):
    from toyrelu.figures import animation
    from toyrelu.runs import outputs

    def no_space(*args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def half_then_no_space(self):
        with open(self.outfile, "wb") as f:
            f.write(b"GIF89a, half of it")
        no_space()

    if where == "writer":
        monkeypatch.setattr(animation.GifWriter, "finish", half_then_no_space)
    else:
        monkeypatch.setattr(outputs.os, "fsync", no_space)
    out = tmp_path / "run.gif"
    out.write_bytes(b"an earlier movie")
    with pytest.raises(OSError) as caught:
        animation.write(square_trajectory(), out, fps=4, dpi=20, losses=False)
    assert (caught.value.errno, caught.value.filename) == (errno.ENOSPC, str(out))
    assert out.read_bytes() == b"an earlier movie"
    assert folder_listing(tmp_path) == ["run.gif"]


def test_a_failing_ffmpeg_is_an_os_error_naming_the_movie(tmp_path, monkeypatch):
    from toyrelu.figures import animation

    class FailingFFMpeg(animation.GifWriter):
        def finish(self):
            with open(self.outfile, "wb") as f:
                f.write(b"\x00\x00\x00\x18ftypmp42")
            raise subprocess.CalledProcessError(1, ["ffmpeg"], "",
                                                "frame=2\nNo space left on device\n")

    monkeypatch.setattr(animation, "movie_writer", lambda out, fps: FailingFFMpeg(fps=fps))
    out = tmp_path / "run.mp4"
    with pytest.raises(OSError) as caught:
        animation.write(square_trajectory(), out, fps=4, dpi=20, losses=False)
    assert caught.value.filename == str(out)
    assert caught.value.strerror == "ffmpeg could not write the movie (No space left on device)"
    assert folder_listing(tmp_path) == []

"""Training dynamics: snapshots of W and b taken by both engines (``snapshot_every``), stored with
the run, loaded as a trajectory (``toyrelu.analysis.dynamics``), drawn frame by frame and written
as a GIF (``toyrelu.figures.animation``, ``toyrelu animate``).

Runs here are smoke-sized (n = 50, T = 5, at most 120 steps); drawing tests use hand-made
trajectories whose geometry is known exactly.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from matplotlib import animation as mpl_animation
from matplotlib.figure import Figure
from PIL import Image

from helpers import assert_close, run_cli
from toyrelu import cli
from toyrelu.analysis import dynamics
from toyrelu.core import data, model, trainer
from toyrelu.core.config import MAX_SNAPSHOTS, ConfigError, RunConfig
from toyrelu.core.data import SparseData
from toyrelu.engines import reference
from toyrelu.engines.cpu import engine
from toyrelu.figures import animation
from toyrelu.runs import training
from toyrelu.runs.store import Store, StoreError
from toyrelu.runs.sweep import run_sweep

BASE = RunConfig(n_features=50, sparsity=0.9, n_train=5, steps=120, n_test=200)
SNAP = BASE.replace(snapshot_every=25)
# 0, every 25 steps, and the last step (120 is not a multiple of 25).
SNAP_STEPS = [0, 25, 50, 75, 100, 120]


def collect(trainer, config: RunConfig, X, **kwargs) -> tuple[list, tuple]:
    """Train with an ``on_snapshot`` that records (step, W, b); returns (snapshots, final)."""
    seen: list = []
    W0, b0 = model.init_params(config)
    final = trainer(config, X, W0, b0, on_snapshot=lambda s, W, b: seen.append((s, W, b)),
                    **kwargs)
    return seen, final


# --------------------------------------------------------------------------- config, steps


@pytest.mark.parametrize(
    ("steps", "K", "expected"),
    [(120, 25, SNAP_STEPS), (100, 25, [0, 25, 50, 75, 100]), (10, 100, [0, 10]),
     (3, 1, [0, 1, 2, 3])],
)
def test_snapshot_steps_are_zero_every_K_and_the_last(steps: int, K: int, expected) -> None:
    config = RunConfig(steps=steps, snapshot_every=K)
    assert trainer.snapshot_steps(config).tolist() == expected
    # ceil(steps / K) + 1 snapshots, the count the config caps.
    assert len(expected) == math.ceil(steps / K) + 1
    assert trainer.snapshot_steps(RunConfig(steps=steps)).tolist() == []


def test_snapshot_count_is_capped_with_a_one_line_error_naming_the_smallest_K() -> None:
    # 10,000 steps: K = 11 keeps ceil(10000 / 11) + 1 = 911 snapshots, K = 10 keeps 1,001.
    assert len(trainer.snapshot_steps(RunConfig(steps=10_000, snapshot_every=11))) == 911
    with pytest.raises(ConfigError) as excinfo:
        RunConfig(steps=10_000, snapshot_every=10)
    message = str(excinfo.value)
    assert message.startswith("snapshot_every: 10 ") and "\n" not in message
    assert f"more than {MAX_SNAPSHOTS}" in message and "at least 11" in message


# --------------------------------------------------------------------------- engines


@pytest.mark.parametrize("chunk", [7, 1000])
def test_fused_engine_snapshots_at_the_right_steps_whatever_the_chunk(chunk: int) -> None:
    X = data.train_set(SNAP)
    seen, (W, b) = collect(engine.train, SNAP, X, chunk=chunk)
    assert [s for s, _, _ in seen] == SNAP_STEPS
    W0, b0 = model.init_params(SNAP)
    assert np.array_equal(seen[0][1], W0.astype(SNAP.dtype))
    assert np.array_equal(seen[0][2], b0.astype(SNAP.dtype))
    assert np.array_equal(seen[-1][1], W) and np.array_equal(seen[-1][2], b)
    # Copies, not the engine's live buffers: the step-0 snapshot is not the trained W.
    assert not np.array_equal(seen[0][1], W)
    # Chunks of 7 steps and one chunk of 120 give the same snapshots, bit for bit.
    other, _ = collect(engine.train, SNAP, X, chunk=1000 if chunk == 7 else 7)
    for (_, W_a, b_a), (_, W_b, b_b) in zip(seen, other, strict=True):
        assert np.array_equal(W_a, W_b) and np.array_equal(b_a, b_b)


def test_reference_engine_snapshots_match_the_fused_ones() -> None:
    X = data.train_set(SNAP)
    seen, (W, b) = collect(reference.train, SNAP, X)
    assert [s for s, _, _ in seen] == SNAP_STEPS
    assert np.array_equal(seen[-1][1], W) and np.array_equal(seen[-1][2], b)
    fused, _ = collect(engine.train, SNAP, X)
    for (step, W_r, b_r), (_, W_f, b_f) in zip(seen, fused, strict=True):
        # float32 trajectories of two engines drift apart by rounding only (test_engine.py
        # holds them to 1e-4 over a short run).
        assert_close(W_f, W_r, rtol=1e-4, what=f"W at step {step}")
        assert_close(b_f, b_r, rtol=1e-4, atol=1e-6, what=f"b at step {step}")


def test_stream_engine_snapshots_at_the_right_steps() -> None:
    config = SNAP.replace(n_train=math.inf, batch_size=16, steps=60, snapshot_every=20)
    seen, (W, b) = collect(engine.train, config, data.batches(config))
    assert [s for s, _, _ in seen] == [0, 20, 40, 60]
    assert np.array_equal(seen[-1][1], W) and np.array_equal(seen[-1][2], b)


@pytest.mark.parametrize("trainer", [engine.train, reference.train], ids=["fused", "reference"])
def test_on_snapshot_without_snapshot_every_is_an_error(trainer) -> None:
    with pytest.raises(ValueError, match="^on_snapshot: needs config.snapshot_every > 0"):
        collect(trainer, BASE, data.train_set(BASE))


@pytest.mark.parametrize(
    "config",
    [SNAP, SNAP.replace(engine="reference"),
     SNAP.replace(n_train=math.inf, batch_size=16, steps=60, snapshot_every=20)],
    ids=["fused", "reference", "stream"],
)
def test_snapshots_leave_the_trained_numbers_bit_identical(config: RunConfig) -> None:
    with_snapshots = training.run(config)
    without = training.run(config.replace(snapshot_every=0))
    assert without.snapshots == []
    assert [s for s, _, _ in with_snapshots.snapshots] == trainer.snapshot_steps(config).tolist()
    assert np.array_equal(with_snapshots.W, without.W)
    assert np.array_equal(with_snapshots.b, without.b)
    for name in ("train_loss", "test_loss", "W_norm", "b_norm"):
        assert with_snapshots.values[name] == without.values[name], name


# --------------------------------------------------------------------------- stored arrays


def test_snapshot_arrays_round_trip_through_the_store(tmp_path: Path) -> None:
    result = training.run(SNAP)
    arrays = result.arrays()
    S = len(SNAP_STEPS)
    assert arrays["snapshot_steps"].tolist() == SNAP_STEPS
    assert arrays["snapshot_steps"].dtype == np.int64
    assert arrays["snapshot_W"].shape == (S, SNAP.n_hidden, SNAP.n_features)
    assert arrays["snapshot_b"].shape == (S, SNAP.n_features)
    assert arrays["snapshot_W"].dtype == arrays["snapshot_b"].dtype == np.float32
    assert "snapshot_W" not in training.run(BASE).arrays()
    with Store(tmp_path / "runs.sqlite") as store:
        store.put(SNAP.run_id, SNAP.to_dict(), result.metrics(), arrays)
        stored = store.arrays(SNAP.run_id)
        trajectory = dynamics.load(store, SNAP.run_id)
    for name in ("snapshot_steps", "snapshot_W", "snapshot_b"):
        assert np.array_equal(stored[name], arrays[name])
        assert stored[name].dtype == arrays[name].dtype
    assert trajectory.config == SNAP and len(trajectory) == S
    # The last frame is the stored model: same H = X W^T and the same train loss, exactly.
    last = dynamics.frame(trajectory, S - 1, loss=True)
    assert last.step == SNAP.steps
    assert np.array_equal(last.H, stored["H"])
    assert last.train_loss == result.values["train_loss"]


def test_a_failed_run_stores_no_snapshots(tmp_path: Path) -> None:
    # lr = 1e6 overflows within a few steps (as in test_sweep.py), after the step-0 snapshot.
    diverging = SNAP.replace(lr=1e6)
    result = training.run(diverging)
    assert result.status == "failed" and result.snapshots == []
    assert not any(name.startswith("snapshot_") for name in result.arrays())
    with Store(tmp_path / "runs.sqlite") as store:
        run_sweep([diverging], store)
        with pytest.raises(StoreError) as excinfo:
            dynamics.load(store, diverging.run_id)
    assert str(excinfo.value) == f"run: {diverging.run_id} has no snapshots (the run failed)"


@pytest.mark.parametrize(("status", "why"), [
    ("lost", "the cluster lost the run; the next sweep trains it"),
    ("error", "the run stopped on an error; the next sweep trains it"),
])
def test_a_run_not_trained_yet_has_no_snapshots_and_says_why(tmp_path: Path, status: str,
                                                              why: str) -> None:
    with Store(tmp_path / "runs.sqlite") as store:
        store.put(SNAP.run_id, SNAP.to_dict(), {"status": status, "error": "lost: gone"}, {})
        with pytest.raises(StoreError) as excinfo:
            dynamics.load(store, SNAP.run_id)
    assert str(excinfo.value) == f"run: {SNAP.run_id} has no snapshots ({why})"


# --------------------------------------------------------------------------- dynamics


def pentagon_trajectory(scales=(0.5, 1.0, 2.0)) -> dynamics.Trajectory:
    """Five features on a regular pentagon, scaled per snapshot, and X = the identity (5 x 5),
    so that H_s = W_s^T: the hidden vectors are the pentagon too."""
    angles = 2 * np.pi * np.arange(5) / 5
    pentagon = np.stack([np.cos(angles), np.sin(angles)])  # (2, 5)
    W = np.stack([s * pentagon for s in scales]).astype(np.float32)
    b = np.zeros((len(scales), 5), np.float32)
    X = SparseData(np.arange(6, dtype=np.int64), np.arange(5, dtype=np.int32),
                   np.ones(5, np.float32), 5)
    config = RunConfig(n_features=5, n_train=5, steps=20, snapshot_every=10, sparsity=0.5)
    return dynamics.Trajectory("hand-made", config, np.array([0, 10, 20]), W, b, X)


def test_frames_of_a_pentagon_have_the_golden_dimensionalities() -> None:
    trajectory = pentagon_trajectory()
    f = dynamics.frame(trajectory, 2, loss=True)
    assert f.step == 20
    assert_close(f.H, trajectory.W[2].T, rtol=0, what="H = X W^T with X = I")
    # Golden value (STYLE.md): every vector of a regular pentagon has D = 2/5.
    assert_close(f.feature_D, np.full(5, 0.4), rtol=1e-6, what="feature D")
    assert_close(f.example_D, np.full(5, 0.4), rtol=1e-6, what="example D")
    # Loss of x_t = e_t: h_t = 2 w_t, z_i = 4 cos(2 pi (i - t) / 5), so the ReLU output is
    # 4 at i = t and 4 cos(72 deg) twice: (4 - 1)^2 + 2 (4 cos 72)^2.
    expected = 9 + 2 * (4 * np.cos(2 * np.pi / 5)) ** 2
    assert_close(f.train_loss, expected, rtol=1e-6, what="train loss")
    table = dynamics.summary(trajectory)
    assert table.columns.tolist() == dynamics.SUMMARY_COLUMNS
    assert table["step"].tolist() == [0, 10, 20]
    assert table["features_learned"].tolist() == [5, 5, 5]
    assert_close(table["feature_D_sum"].to_numpy(), np.full(3, 2.0), rtol=1e-6, what="sum D")
    assert_close(table["W_norm"].to_numpy(), np.sqrt(5) * np.array([0.5, 1.0, 2.0]),
                 rtol=1e-6, what="||W||_F")
    assert table["train_loss"].isna().all()  # losses only on request
    assert_close(np.array(dynamics.radii(trajectory)), np.array([2.0, 2.0]), rtol=1e-6,
                 what="largest |W_i| and |h_t|")


# --------------------------------------------------------------------------- animation


def test_a_frame_draws_the_snapshot_with_limits_fixed_across_frames() -> None:
    trajectory = pentagon_trajectory()
    radii = (2.0, 3.0)
    fig = Figure()
    axes = fig.subplots(1, 2)
    for s in (0, 2):
        frame = dynamics.frame(trajectory, s)
        ax_W, ax_H = animation.draw_frame((axes[0], axes[1]), frame, radii=radii)
        # One scatter per panel, after the axes were cleared: the tips of W_i and the h_t.
        (tips,) = ax_W.collections[1:]
        (points,) = ax_H.collections[1:]
        assert_close(tips.get_offsets(), trajectory.W[s].T, rtol=0, what="feature tips")
        assert_close(points.get_offsets(), frame.H, rtol=0, what="hidden vectors")
        assert ax_W.get_xlim() == ax_W.get_ylim() == pytest.approx((-2.24, 2.24))
        assert ax_H.get_xlim() == ax_H.get_ylim() == pytest.approx((-3.36, 3.36))
    assert animation.title(trajectory, frame) == "T = 5, seed 0: step 20 of 20"


def test_the_title_shows_infinite_T_and_the_loss() -> None:
    trajectory = pentagon_trajectory()
    infinite = dynamics.Trajectory("x", RunConfig(n_train=math.inf, steps=20, seed=3),
                                   trajectory.steps, trajectory.W, trajectory.b, trajectory.X)
    frame = dynamics.frame(infinite, 1, loss=True)
    assert animation.title(infinite, frame).startswith("T = \u221e, seed 3: step 10 of 20, ")


def test_a_gif_has_one_frame_per_snapshot(tmp_path: Path) -> None:
    trajectory = pentagon_trajectory()
    drawn: list[int] = []
    out = animation.write(trajectory, tmp_path / "sub" / "run.gif", fps=4, dpi=40,
                          on_frame=drawn.append)
    assert drawn == [0, 1, 2]
    with Image.open(out) as gif:
        assert gif.format == "GIF" and gif.n_frames == 3
        assert gif.size == (320, 176)  # 8 x 4.4 inches at 40 dpi
        assert gif.info["duration"] == 250  # 4 fps


@pytest.mark.parametrize(
    ("name", "fps", "message"),
    [("run.png", 10, "out: .*run.png must end in .gif or .mp4"),
     ("run.gif", 0, "fps: 0 must be an integer >= 1")],
)
def test_movie_writer_rejects_bad_names_and_rates(name: str, fps: int, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}"):
        animation.movie_writer(name, fps)


def test_only_two_hidden_dimensions_can_be_animated(tmp_path: Path) -> None:
    flat = pentagon_trajectory()
    three = dynamics.Trajectory("m3", flat.config.replace(n_hidden=3), flat.steps,
                                np.zeros((3, 3, 5), np.float32), flat.b, flat.X)
    with pytest.raises(ValueError, match="^n_hidden: run m3 has m = 3; animations need m = 2"):
        animation.write(three, tmp_path / "m3.gif")
    assert not (tmp_path / "m3.gif").exists()


def test_mp4_needs_ffmpeg(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mpl_animation.writers, "is_available", lambda name: False)
    with pytest.raises(ValueError, match="^out: run.mp4 needs ffmpeg, which is not installed"):
        animation.movie_writer("run.mp4", 10)
    monkeypatch.setattr(mpl_animation.writers, "is_available", lambda name: name == "ffmpeg")
    assert isinstance(animation.movie_writer("run.MP4", 10), mpl_animation.FFMpegWriter)


# --------------------------------------------------------------------------- command line


@pytest.fixture(scope="module")
def snapshot_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RunConfig]:
    """One smoke run (T = 5, seed 0) with --snapshot-every, and the same run without."""
    path = tmp_path_factory.mktemp("dynamics") / "runs.sqlite"
    argv = ["sweep", "--preset", "smoke", "--store", str(path), "--workers", "1", "--device",
            "cpu", "--n-train", "5", "--seeds", "0", "--steps", "100"]
    assert cli.main(argv) == 0
    assert cli.main([*argv, "--snapshot-every", "20"]) == 0
    with Store(path, create=False) as store:
        runs = store.runs()
        (run_id,) = runs.loc[runs["snapshot_every"] == 20, "run_id"]
        config = RunConfig.from_dict(store.config(run_id))
    return path, config


def test_cli_animate_writes_a_gif(snapshot_store, tmp_path: Path,
                                  capsys: pytest.CaptureFixture) -> None:
    path, config = snapshot_store
    assert (config.n_features, config.n_train, config.steps) == (50, 5, 100)
    out = tmp_path / "run.gif"
    code, stdout, _ = run_cli(capsys, "animate", "--store", path, "--run", config.run_id,
                              "--out", out, "--fps", 5)
    assert code == 0
    assert stdout == f"toyrelu: wrote 6 frames of run {config.run_id} to {out}\n"
    with Image.open(out) as gif:
        assert gif.n_frames == 6  # steps 0, 20, 40, 60, 80, 100


def test_cli_animate_without_snapshots_is_a_one_line_error(
    snapshot_store, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path, config = snapshot_store
    plain = config.replace(snapshot_every=0).run_id
    code, _, err = run_cli(capsys, "animate", "--store", path, "--run", plain, "--out",
                           tmp_path / "run.gif")
    assert code == 2
    assert err == (f"toyrelu: error: run: {plain} has no snapshots "
                   f"(train it with --snapshot-every K)\n")
    assert not (tmp_path / "run.gif").exists()


@pytest.mark.parametrize(
    ("args", "start"),
    [(["--run", "nosuchrun", "--out", "x.gif"], "toyrelu: error: store: no run nosuchrun in"),
     (["--run", "any", "--out", "x.avi"], "toyrelu: error: out: x.avi must end in"),
     (["--run", "any", "--out", "x.gif", "--fps", "0"], "toyrelu: error: fps: 0 must be")],
)
def test_cli_animate_bad_input_is_a_one_line_error(
    snapshot_store, capsys: pytest.CaptureFixture, args: list[str], start: str
) -> None:
    path, _ = snapshot_store
    code, _, err = run_cli(capsys, "animate", "--store", path, *args)
    assert code == 2 and err.startswith(start) and err.count("\n") == 1, err

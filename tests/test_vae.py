"""Tests of V: the ConvVAE's layers and loss, its training script (resume, interruption, bad input) and encoding.

Real models, real Doom rollouts (the session fixture `doom_rollouts` from conftest.py), tiny step counts.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from common.errors import DataError, UserError
from common.storage import read_series, write_npz
from common.tensorboard import HYPERPARAMETERS_TAG
from tests.test_tensorboard import read_summaries
from vae import ConvVAE, frames_to_inputs, kl_divergence, vae_loss
from vae.encode import encode_rollouts, load_vae
from vae.train import VAETrainConfig, train_vae

# Keras converts its variables with np.array(x) (no copy keyword), which NumPy 2 flags on every conversion.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

REPO = Path(__file__).resolve().parents[1]
TINY = dict(batch_size=32, log_every=1, seed=0)  # steps on a few real episodes, a second or so each


@pytest.fixture
def exp_dir(doom_rollouts, tmp_path) -> Path:
    """A fresh experiment folder holding copies of 3 of the session's real Doom episodes."""
    rollouts = tmp_path / "exp" / "rollouts"
    rollouts.mkdir(parents=True)
    for path in sorted((Path(doom_rollouts) / "rollouts").glob("ep*.npz"))[:3]:
        shutil.copy(path, rollouts / path.name)
    return tmp_path / "exp"


def real_frames(exp_dir: Path, count: int = 16) -> np.ndarray:
    with np.load(sorted((exp_dir / "rollouts").glob("ep*.npz"))[0]) as data:
        return data["obs"][:count]


def deterministic_loss(model: ConvVAE, frames: np.ndarray) -> float:
    """The training loss with z = mu (no sampling noise), to compare a model before and after training."""
    images = frames_to_inputs(frames)
    mu, logvar = model.encode(images)
    return float(vae_loss(images, model.decode(mu), mu, logvar)[0])


def checkpoint_state(exp_dir: Path, z_size: int = 64) -> tuple[int, int, list[np.ndarray]]:
    """(step, Adam iterations, weights) of the latest checkpoint in `exp_dir/vae/checkpoints/`."""
    model = ConvVAE(z_size=z_size)
    optimizer = keras.optimizers.Adam()
    optimizer.build(model.trainable_variables)
    step = tf.Variable(0, dtype=tf.int64)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step)
    checkpoint.restore(tf.train.latest_checkpoint(exp_dir / "vae" / "checkpoints")).expect_partial()
    return int(step.numpy()), int(optimizer.iterations.numpy()), model.get_weights()


def run_cli(module: str, *args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", module, *args], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def error_line(stderr: str) -> str:
    """The last stderr line, which must be our one-line error (TF may log C++ warnings before it)."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error: "), stderr
    assert sum(line.startswith("error: ") for line in lines) == 1, stderr
    return lines[-1]


# --- the model -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("z_size, expected", [(32, 4_348_547), (64, 4_446_915)])
def test_parameter_count_is_the_papers(z_size, expected):
    assert ConvVAE(z_size=z_size).count_params() == expected


def test_output_shapes_and_dtypes():
    model = ConvVAE(z_size=32)
    frames = np.random.default_rng(0).integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    images = frames_to_inputs(frames)
    assert images.dtype == tf.float32 and 0.0 <= float(tf.reduce_min(images)) <= float(tf.reduce_max(images)) <= 1
    mu, logvar = model.encode(images)
    assert mu.shape == logvar.shape == (5, 32)
    z = model.sample(mu, logvar)
    assert z.shape == (5, 32) and not np.allclose(z, mu)
    decoded = model.decode(z)
    assert decoded.shape == (5, 64, 64, 3) and decoded.dtype == tf.float32
    assert 0.0 <= float(tf.reduce_min(decoded)) and float(tf.reduce_max(decoded)) <= 1.0
    reconstruction, mu2, _ = model(images)
    assert reconstruction.shape == (5, 64, 64, 3) and np.allclose(mu2, mu)
    np.testing.assert_allclose(model.reconstruct(images), model.decode(mu), atol=1e-6)
    # The compiled uint8 path matches the eager one and does not retrace for another batch size.
    fast_mu, fast_logvar = model.encode_frames(frames)
    np.testing.assert_allclose(fast_mu, mu, atol=1e-5)
    np.testing.assert_allclose(fast_logvar, logvar, atol=1e-5)
    model.encode_frames(frames[:1])
    assert model._encode_frames_fn.experimental_get_tracing_count() == 1


def test_summary_lists_the_parts(capsys):
    ConvVAE(z_size=64).summary()
    out = capsys.readouterr().out
    for part in ("encoder", "decoder", "mu", "logvar", "4,446,915"):
        assert part in out


def test_loss_equals_hand_computed_numpy():
    rng = np.random.default_rng(1)
    images = rng.random((4, 64, 64, 3)).astype(np.float32)
    reconstruction = rng.random((4, 64, 64, 3)).astype(np.float32)
    mu = rng.normal(0, 1.0, (4, 8)).astype(np.float32)
    logvar = rng.normal(0, 0.5, (4, 8)).astype(np.float32)
    mu[0] = 0.01  # example 0 sits under the free-bits floor (0.5 * 8 = 4 nats) and is clamped to it
    logvar[0] = 0.0
    recon = np.mean(np.sum((images - reconstruction) ** 2, axis=(1, 2, 3)))
    kl_each = -0.5 * np.sum(1 + logvar - mu**2 - np.exp(logvar), axis=1)
    assert kl_each[0] < 4.0 < kl_each[1:].min()
    kl = np.mean(np.maximum(kl_each, 4.0))
    total, got_recon, got_kl = vae_loss(images, reconstruction, mu, logvar, kl_tolerance=0.5)
    np.testing.assert_allclose([got_recon, got_kl, total], [recon, kl, recon + kl], rtol=1e-5)
    np.testing.assert_allclose(kl_divergence(mu, logvar), kl_each, rtol=1e-5)


def test_free_bits_examples_under_the_floor_give_no_gradient():
    mu = tf.Variable([[0.1] * 8, [3.0] * 8])  # KL 0.06 nats (under the floor of 4) and 36.6 (over it)
    logvar = tf.Variable([[0.1] * 8, [0.5] * 8])
    with tf.GradientTape() as tape:
        kl = vae_loss(tf.zeros((2, 64, 64, 3)), tf.zeros((2, 64, 64, 3)), mu, logvar, kl_tolerance=0.5)[2]
    grad_mu, grad_logvar = tape.gradient(kl, [mu, logvar])
    assert np.all(grad_mu[0] == 0) and np.all(grad_logvar[0] == 0)
    assert np.all(grad_mu[1] != 0) and np.all(grad_logvar[1] != 0)


def test_free_bits_clamp_stops_gradient_to_the_encoder_heads():
    """A fresh encoder's KL (a small fraction of a nat) is under 0.5 * z: its heads get no KL gradient."""
    model = ConvVAE(z_size=16)
    for head in (model.mu_head, model.logvar_head):
        kernel, bias = head.get_weights()
        head.set_weights([kernel * 0.01, np.full_like(bias, 0.1)])  # KL > 0 but well under the floor
    images = frames_to_inputs(np.random.default_rng(2).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8))
    heads = model.mu_head.trainable_variables + model.logvar_head.trainable_variables
    for tolerance, expect_zero in ((0.5, True), (0.0, False)):
        with tf.GradientTape() as tape:
            mu, logvar = model.encode(images)
            kl = vae_loss(images, images, mu, logvar, kl_tolerance=tolerance)[2]
        assert float(tf.reduce_max(kl_divergence(mu, logvar))) < 0.5 * 16
        gradients = tape.gradient(kl, heads)
        assert all(np.all(g.numpy() == 0) for g in gradients) == expect_zero
        assert any(np.any(g.numpy() != 0) for g in gradients) != expect_zero


def test_save_load_round_trip_gives_identical_outputs(tmp_path):
    frames = np.random.default_rng(3).integers(0, 256, (6, 64, 64, 3), dtype=np.uint8)
    model = ConvVAE(z_size=64, seed=5)
    model.save(tmp_path / "vae.keras")
    loaded = load_vae(tmp_path / "vae.keras", z_size=64)
    assert isinstance(loaded, ConvVAE) and loaded.z_size == 64 and loaded.count_params() == 4_446_915
    for a, b in zip(model.encode_frames(frames), loaded.encode_frames(frames)):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    z = np.random.default_rng(4).normal(size=(6, 64)).astype(np.float32)
    np.testing.assert_array_equal(model.decode(z).numpy(), loaded.decode(z).numpy())


def test_custom_encoder_plugs_in_and_round_trips(tmp_path):
    encoder = keras.Sequential([keras.Input((64, 64, 3)), keras.layers.Conv2D(8, 8, strides=8, activation="relu"),
                                keras.layers.GlobalAveragePooling2D()], name="small_encoder")
    model = ConvVAE(z_size=4, encoder=encoder)
    assert model.encoder is encoder and model.mu_head.kernel.shape == (8, 4)
    model.save(tmp_path / "custom.keras")
    loaded = load_vae(tmp_path / "custom.keras")
    images = frames_to_inputs(np.random.default_rng(5).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8))
    assert loaded.encoder.name == "small_encoder"
    np.testing.assert_array_equal(model.reconstruct(images).numpy(), loaded.reconstruct(images).numpy())


# --- training ------------------------------------------------------------------------------------------------

def test_training_steps_lower_the_loss(exp_dir):
    frames = real_frames(exp_dir, 32)
    model = ConvVAE(z_size=64, seed=0)
    before = deterministic_loss(model, frames)
    path = train_vae(exp_dir, VAETrainConfig(max_steps=8, learning_rate=1e-3, **TINY), model=model, verbose=False)
    after = deterministic_loss(model, frames)
    assert after < 0.8 * before, (before, after)
    assert path == exp_dir.resolve() / "vae" / "vae.keras"
    assert load_vae(path, z_size=64).count_params() == 4_446_915
    assert (exp_dir / "vae" / "reconstructions.png").stat().st_size > 0
    found = read_summaries(exp_dir / "vae" / "tensorboard")  # log_every=1: a point every step
    for tag in ("losses/total", "losses/recon", "losses/kl", "train/learning_rate", "perf/steps_per_s",
                "perf/frames_per_s"):
        assert [step for step, _ in found[tag]] == list(range(1, 9)), tag
    assert found["losses/recon"][-1][1] < found["losses/recon"][0][1]
    assert [step for step, _ in found["images/originals_vs_reconstructions"]] == [8]
    assert '"batch_size": 32' in found[HYPERPARAMETERS_TAG][0][1]


def test_mixed_precision_trains_and_saves_a_float32_model(exp_dir):
    path = train_vae(exp_dir, VAETrainConfig(max_steps=1, mixed_precision=True, **TINY), verbose=False)
    model = load_vae(path, z_size=64)
    assert model.dtype_policy.name == "float32" and model.encoder.layers[0].compute_dtype == "float32"
    assert checkpoint_state(exp_dir)[0] == 1


def test_resume_continues_from_the_saved_step_with_the_same_result(exp_dir, tmp_path, capsys):
    config = VAETrainConfig(max_steps=2, checkpoint_every=100, **TINY)
    train_vae(exp_dir, config)
    assert checkpoint_state(exp_dir)[:2] == (2, 2)
    capsys.readouterr()
    train_vae(exp_dir, VAETrainConfig(max_steps=4, checkpoint_every=100, **TINY))
    assert "resuming at step 2 " in capsys.readouterr().out
    step, iterations, resumed_weights = checkpoint_state(exp_dir)
    assert (step, iterations) == (4, 4)  # the optimizer state came back too: 2 + 2 Adam updates
    # Running a finished run again trains nothing and keeps vae.keras (so encoded series stay current).
    saved = (exp_dir / "vae" / "vae.keras").stat().st_mtime_ns
    train_vae(exp_dir, VAETrainConfig(max_steps=4, checkpoint_every=100, **TINY))
    assert "already trained for 4 steps" in capsys.readouterr().out
    assert (exp_dir / "vae" / "vae.keras").stat().st_mtime_ns == saved and checkpoint_state(exp_dir)[0] == 4
    # The same 4 steps without a stop give the same weights: same batches, same z draws, same Adam state.
    straight = tmp_path / "straight"
    shutil.copytree(exp_dir / "rollouts", straight / "rollouts")
    train_vae(straight, VAETrainConfig(max_steps=4, checkpoint_every=100, **TINY), verbose=False)
    for a, b in zip(resumed_weights, checkpoint_state(straight)[2]):
        np.testing.assert_array_equal(a, b)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(exp_dir):
    train_vae(exp_dir, VAETrainConfig(max_steps=1, **TINY), verbose=False)
    with pytest.raises(UserError, match="non-finite loss at step"):
        train_vae(exp_dir, VAETrainConfig(max_steps=6, learning_rate=1e30, **TINY), verbose=False)
    step, _, weights = checkpoint_state(exp_dir)
    assert step == 1 and all(np.all(np.isfinite(w)) for w in weights)


def test_sigterm_saves_a_checkpoint_and_the_same_command_resumes(exp_dir):
    process = run_cli("vae.train", f"--exp_dir={exp_dir}", "--batch_size=8", "--checkpoint_every=3")
    deadline = time.monotonic() + 120
    while not (exp_dir / "vae" / "checkpoints" / "checkpoint").exists() and time.monotonic() < deadline:
        time.sleep(0.1)  # training is under way once the first periodic checkpoint (step 3) is there
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 2
    line = error_line(stderr)
    assert "interrupted at step" in line and "checkpoint saved" in line
    step = checkpoint_state(exp_dir)[0]
    assert step >= 3 and f"interrupted at step {step:,} of" in line
    train_vae(exp_dir, VAETrainConfig(max_steps=step + 1, batch_size=8, seed=0), verbose=False)
    assert checkpoint_state(exp_dir)[0] == step + 1


class _SignalledWhileFinalized:
    """Sends this process SIGTERM from its finalizer, as if the signal came while a finished tf.data iterator was
    being collected: the handler runs inside `__del__`, and Python ignores what it raises there."""

    def __del__(self):
        os.kill(os.getpid(), signal.SIGTERM)
        sum(range(10_000))  # bytecodes for the handler to run between


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_sigterm_lost_in_a_finalizer_still_stops_training_at_the_next_step(tmp_path):
    from common.training import TrainingCheckpoint, TrainingInterrupted, checkpoint_on_interrupt

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    checkpoint = TrainingCheckpoint(tmp_path / "checkpoints", model, keras.optimizers.Adam())
    steps_run = []
    with pytest.raises(TrainingInterrupted, match="interrupted at step 3 of 100"):
        with checkpoint_on_interrupt(checkpoint.save, checkpoint, 100) as signal_received:
            for step in range(100):
                signal_received.raise_if_received()
                steps_run.append(step)
                checkpoint.step.assign_add(1)
                if step == 2:
                    _SignalledWhileFinalized()  # collected at once: the signal's KeyboardInterrupt is lost
    assert steps_run == [0, 1, 2] and checkpoint.latest.endswith("ckpt-3")


# --- encoding ------------------------------------------------------------------------------------------------

def test_encode_writes_a_series_per_episode_and_initial_z(exp_dir):
    model = ConvVAE(z_size=64, seed=0)
    (exp_dir / "vae").mkdir()
    model.save(exp_dir / "vae" / "vae.keras")
    series = encode_rollouts(exp_dir, batch_size=64, verbose=False)
    rollouts = sorted((exp_dir / "rollouts").glob("ep*.npz"))
    assert [p.name for p in series] == [p.name for p in rollouts]
    firsts = []
    for rollout_path, series_path in zip(rollouts, series):
        arrays = read_series(series_path)
        with np.load(rollout_path) as rollout:
            obs, action, done = rollout["obs"], rollout["action"], rollout["done"]
            assert str(np.load(series_path)["env"]) == "doom"
        assert arrays["mu"].shape == arrays["logvar"].shape == (len(obs), 64)
        np.testing.assert_array_equal(arrays["action"], action)
        np.testing.assert_array_equal(arrays["done"], done)
        np.testing.assert_allclose(arrays["mu"][:5], model.encode_frames(obs[:5])[0], atol=1e-5)
        firsts.append(arrays["mu"][0])
    with np.load(exp_dir / "series" / "initial_z.npz") as initial:
        assert initial["mu"].shape == initial["logvar"].shape == (len(rollouts), 64)
        np.testing.assert_array_equal(initial["mu"], np.stack(firsts))
    # Idempotent: a second run rewrites nothing that is already valid.
    mtimes = [p.stat().st_mtime_ns for p in series]
    encode_rollouts(exp_dir, verbose=False)
    assert [p.stat().st_mtime_ns for p in series] == mtimes


# --- bad input -----------------------------------------------------------------------------------------------

def test_empty_rollouts_folder_is_a_one_line_cli_error(tmp_path):
    (tmp_path / "rollouts").mkdir()
    process = run_cli("vae.train", f"--exp_dir={tmp_path}")
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 2
    line = error_line(stderr)
    assert "rollouts" in line and "no rollout files" in line


@pytest.mark.parametrize("obs, problem", [
    (np.zeros((10, 64, 64, 3), np.float32), "dtype float32, expected uint8"),
    (np.zeros((10, 32, 32, 3), np.uint8), "shape (10, 32, 32, 3)"),
])
def test_malformed_rollout_is_named_in_the_error(exp_dir, obs, problem):
    bad = exp_dir / "rollouts" / "ep000099.npz"
    write_npz(bad, obs=obs, action=np.zeros((10, 1), np.float32), reward=np.zeros(10, np.float32),
              done=np.zeros(10, bool), env=np.array("doom"))
    with pytest.raises(DataError, match="ep000099.npz") as error:
        train_vae(exp_dir, VAETrainConfig(**TINY), verbose=False)
    assert problem in str(error.value)


def test_load_vae_rejects_missing_corrupt_foreign_and_mismatched_files(tmp_path):
    with pytest.raises(DataError, match="missing.keras: file not found"):
        load_vae(tmp_path / "missing.keras")
    (tmp_path / "corrupt.keras").write_bytes(b"not a zip file")
    with pytest.raises(DataError, match="corrupt.keras: not a loadable"):
        load_vae(tmp_path / "corrupt.keras")
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]).save(tmp_path / "other.keras")
    with pytest.raises(DataError, match="other.keras: holds a Sequential, not a ConvVAE"):
        load_vae(tmp_path / "other.keras")
    ConvVAE(z_size=32).save(tmp_path / "z32.keras")
    with pytest.raises(DataError, match="z32.keras: the model has z_size=32, expected 64"):
        load_vae(tmp_path / "z32.keras", z_size=64)


def test_z_size_disagreeing_with_the_checkpoints_is_refused(exp_dir):
    train_vae(exp_dir, VAETrainConfig(max_steps=1, **TINY), verbose=False)
    with pytest.raises(DataError, match="config.json: .*z_size=64, not 32"):
        train_vae(exp_dir, VAETrainConfig(z_size=32, max_steps=2, **TINY), verbose=False)

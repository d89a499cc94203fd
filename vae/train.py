"""Trains V (the ConvVAE) on the frames of `DIR/rollouts/`, streaming them; writes `DIR/vae/vae.keras`.

    python -m vae.train --exp_dir=exp/doom                  # the paper's settings: 1 epoch, batch 100, Adam 1e-4
    python -m vae.train --exp_dir=exp/doom --epochs=10      # the 2018 code's 10 epochs (continues a finished run)

A second run of the same command resumes from the last checkpoint in `DIR/vae/checkpoints/` (model, Adam state,
step and position in the epoch); `--noresume` starts over. Checkpoints are written every `--checkpoint_every`
steps, at the end of every epoch and on Ctrl-C or SIGTERM. TensorBoard: `tensorboard --logdir DIR/vae/logs`.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from common.errors import DataError, UserError, sigterm_as_interrupt
from common.layout import ExperimentLayout, experiment
from common.progress import Progress
from common.storage import atomic_path, episode_files, read_json, write_json
from vae import summary
from vae.data import PARALLEL_READS, SHUFFLE_BUFFER, data_error_from, frame_batches, load_frames, scan_rollouts
from vae.model import KL_TOLERANCE, ConvVAE, frames_to_inputs, inputs_to_frames, vae_loss

PAPER_Z_SIZE = {"carracing": 32, "doom": 64}  # the paper's latent sizes per task


@dataclasses.dataclass(frozen=True)
class VAETrainConfig:
    """How to train V; the defaults are the paper's."""

    z_size: int | None = None  # latent size; None: the paper's for the rollouts' env (32 CarRacing, 64 Doom)
    epochs: int = 1  # passes over the data; the paper says 1, the 2018 code ran 10
    batch_size: int = 100  # frames per batch (paper)
    learning_rate: float = 1e-4  # Adam (paper)
    kl_tolerance: float = KL_TOLERANCE  # free bits: KL floor per example, in nats per latent dimension
    seed: int = 0  # drives the weights, the episode order, the frame shuffle and the sampled z
    mixed_precision: bool = False  # Keras 'mixed_bfloat16' policy (weights stay float32)
    shuffle_buffer: int = SHUFFLE_BUFFER  # frames in the shuffle buffer
    parallel_reads: int = PARALLEL_READS  # episodes decompressed at once
    checkpoint_every: int = 500  # steps between checkpoints (and one at every epoch end)
    log_every: int = 20  # steps between TensorBoard scalars
    max_steps: int | None = None  # stop (with a checkpoint) at this total step; None: run all epochs
    resume: bool = True  # continue from the last checkpoint; False discards the old checkpoints

    def validated(self) -> VAETrainConfig:
        """Checks the fields; a bad value raises `UserError` naming its flag."""
        positive = ("epochs", "batch_size", "shuffle_buffer", "parallel_reads", "checkpoint_every", "log_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise UserError(f"--{name}={getattr(self, name)}: must be at least 1")
        if self.z_size is not None and self.z_size < 1:
            raise UserError(f"--z_size={self.z_size}: must be at least 1")
        if not self.learning_rate > 0 or not math.isfinite(self.learning_rate):
            raise UserError(f"--learning_rate={self.learning_rate}: must be a positive number")
        if not self.kl_tolerance >= 0:
            raise UserError(f"--kl_tolerance={self.kl_tolerance}: must be >= 0")
        if self.max_steps is not None and self.max_steps < 0:
            raise UserError(f"--max_steps={self.max_steps}: must be >= 0")
        return self


class TrainingInterrupted(UserError):
    """Ctrl-C or SIGTERM: the checkpoint was saved and the same command resumes."""


def make_train_step(model: ConvVAE, optimizer: keras.optimizers.Optimizer, batch_size: int,
                    kl_tolerance: float = KL_TOLERANCE) -> Callable[[tf.Tensor], tuple[tf.Tensor, ...]]:
    """A compiled step on a uint8 batch (batch_size, 64, 64, 3) -> (total, recon, kl, finite).

    The update is applied only when the loss and every gradient are finite, so a NaN never reaches the
    weights (or a checkpoint); the caller stops on `finite == False`.
    """

    @tf.function(input_signature=[tf.TensorSpec((batch_size, 64, 64, 3), tf.uint8)])
    def train_step(frames: tf.Tensor) -> tuple[tf.Tensor, ...]:
        images = frames_to_inputs(frames)
        with tf.GradientTape() as tape:
            reconstruction, mu, logvar = model(images, training=True)
            total, recon, kl = vae_loss(images, reconstruction, mu, logvar, kl_tolerance)
        gradients = tape.gradient(total, model.trainable_variables)
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in gradients + [total]])

        def apply() -> tf.Tensor:
            optimizer.apply_gradients(zip(gradients, model.trainable_variables))
            return tf.constant(True)

        tf.cond(finite, apply, lambda: tf.constant(False))
        return total, recon, kl, finite

    return train_step


def resolve_z_size(config: VAETrainConfig, env: str | None, folder: Path) -> int:
    """--z_size, or the paper's for the rollouts' env."""
    if config.z_size is not None:
        return config.z_size
    if env not in PAPER_Z_SIZE:
        raise DataError(f"{folder}: rollouts name no known env ({env!r}); pass --z_size")
    return PAPER_Z_SIZE[env]


def reconstruction_grid(model: ConvVAE, frames: np.ndarray, columns: int = 8) -> np.ndarray:
    """uint8 image: rows of originals, each followed by a row of their reconstructions (from mu)."""
    reconstructed = inputs_to_frames(model.reconstruct(frames_to_inputs(frames)))
    columns = min(columns, len(frames))
    rows = []
    for start in range(0, len(frames) - len(frames) % columns, columns):
        for images in (frames[start:start + columns], reconstructed[start:start + columns]):
            rows.append(np.concatenate(list(images), axis=1))
    return np.concatenate(rows, axis=0)


def sample_frames(files: list[Path], count: int = 16, seed: int = 0) -> np.ndarray:
    """`count` fixed frames, one each from episodes spread over the data set, for reconstruction images."""
    rng = np.random.default_rng([seed, 2])
    chosen = [files[i] for i in np.linspace(0, len(files) - 1, min(count, len(files))).astype(int)]
    frames = []
    while len(frames) < count:
        for path in chosen:
            obs = load_frames(path)
            frames.append(obs[rng.integers(len(obs))])
            if len(frames) == count:
                break
    return np.stack(frames)


def save_png(path: Path, image: np.ndarray) -> None:
    """Writes a uint8 image as a PNG, atomically."""
    from PIL import Image

    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(image).save(tmp)


def save_model(model: ConvVAE, path: Path) -> None:
    """Saves `model` as a `.keras` file, atomically, with a float32 policy whatever it trained with."""
    if model.dtype_policy.name != "float32":
        model_f32 = ConvVAE.from_config({**model.get_config(), "dtype": "float32"})
        model_f32.set_weights(model.get_weights())
        model = model_f32
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)


def _check_run_config(layout: ExperimentLayout, run_config: dict[str, Any]) -> None:
    """A resumed run must build the same model as the checkpoint's."""
    path = layout.vae / "config.json"
    if not path.exists():
        return
    recorded = read_json(path)
    if recorded.get("z_size") != run_config["z_size"]:
        raise DataError(f"{path}: the checkpoints in {layout.vae / 'checkpoints'} have z_size="
                        f"{recorded.get('z_size')}, not {run_config['z_size']}; pass --z_size="
                        f"{recorded.get('z_size')} or --noresume to start over")


class TrainingState:
    """Everything a resumed run needs, in one `tf.train.Checkpoint`: model, Adam's slots, the step, the epoch
    and the frames of it already done, and the z sampler's state (Keras does not checkpoint a SeedGenerator,
    and a resumed run must draw the same z as an uninterrupted one)."""

    def __init__(self, model: ConvVAE, optimizer: keras.optimizers.Optimizer, directory: Path):
        optimizer.build(model.trainable_variables)  # Adam's slots must exist to be restored
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.epoch_frames = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch_frames")
        self.checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, step=self.step, epoch=self.epoch,
                                              epoch_frames=self.epoch_frames, sampler=model.seed_generator.state)
        self.manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=3,
                                                  step_counter=self.step)

    def restore_latest(self) -> str | None:
        """Restores the latest complete checkpoint, if any; returns its path. A mismatch raises DataError."""
        latest = self.manager.latest_checkpoint
        if latest:
            try:
                self.checkpoint.restore(latest).assert_existing_objects_matched()
            except (ValueError, AssertionError, tf.errors.OpError) as error:
                raise DataError(f"{latest}: cannot restore this checkpoint ({type(error).__name__}: "
                                f"{str(error).splitlines()[0]}); --noresume starts over") from None
        return latest

    def save(self) -> None:
        self.manager.save(checkpoint_number=self.step)

    def position(self) -> tuple[int, int, int]:
        """(step, epoch, frames of the epoch done)."""
        return int(self.step.numpy()), int(self.epoch.numpy()), int(self.epoch_frames.numpy())


class ScalarLog:
    """Averages the losses over `every` steps and writes them with the rate and learning rate to TensorBoard."""

    def __init__(self, writer, every: int, batch_size: int):
        self.writer, self.every, self.batch_size = writer, every, batch_size
        self.sums, self.count, self.since = np.zeros(3), 0, time.monotonic()

    def add(self, step: int, losses: tuple[float, float, float], learning_rate: float) -> None:
        self.sums += losses
        self.count += 1
        if self.count < self.every:
            return
        now = time.monotonic()
        with self.writer.as_default():
            for name, value in zip(("total", "recon", "kl"), self.sums / self.count):
                summary.scalar(f"losses/{name}", value, step=step)
            summary.scalar("train/learning_rate", learning_rate, step=step)
            summary.scalar("perf/frames_per_s", self.count * self.batch_size / max(now - self.since, 1e-9), step)
        self.sums[:], self.count, self.since = 0, 0, now


def train_vae(exp_dir: str | Path, config: VAETrainConfig = VAETrainConfig(),
              model: ConvVAE | None = None, verbose: bool = True) -> Path:
    """Trains V on `exp_dir/rollouts/` and saves `exp_dir/vae/vae.keras`; returns that path.

    `model` replaces the paper's ConvVAE (e.g. one with another encoder); its z_size wins over the config's.
    Resumes from `exp_dir/vae/checkpoints/` unless `config.resume` is False; a finished run is not redone.
    Raises `DataError` for bad rollouts or checkpoints, `UserError` on a non-finite loss (nothing is saved: the
    last good checkpoint stays), `TrainingInterrupted` on Ctrl-C / SIGTERM after saving a checkpoint.
    """
    config = config.validated()
    layout = experiment(exp_dir, create=False)
    rollouts = scan_rollouts(episode_files(layout.rollouts, "rollout"))
    files = list(rollouts.files)
    if model is not None:
        if config.z_size is not None and config.z_size != model.z_size:
            raise UserError(f"--z_size={config.z_size} disagrees with the given model's z_size={model.z_size}")
        z_size = model.z_size
    else:
        z_size = resolve_z_size(config, rollouts.env, layout.rollouts)
    steps_per_epoch = rollouts.frames // config.batch_size
    if steps_per_epoch < 1:
        raise DataError(f"{layout.rollouts}: {rollouts.frames} frames, fewer than one batch of "
                        f"{config.batch_size}")
    total_steps = steps_per_epoch * config.epochs
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)

    checkpoint_dir = layout.vae / "checkpoints"
    if not config.resume:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
        (layout.vae / "config.json").unlink(missing_ok=True)
    run_config = {**dataclasses.asdict(config), "z_size": z_size, "env": rollouts.env,
                  "episodes": len(files), "frames": rollouts.frames, "steps_per_epoch": steps_per_epoch}
    _check_run_config(layout, run_config)
    write_json(layout.vae / "config.json", run_config)

    keras.utils.set_random_seed(config.seed)
    if model is None:
        policy = "mixed_bfloat16" if config.mixed_precision else "float32"
        model = ConvVAE(z_size=z_size, seed=config.seed, dtype=policy)
    optimizer = keras.optimizers.Adam(learning_rate=config.learning_rate)
    state = TrainingState(model, optimizer, checkpoint_dir)
    restored = state.restore_latest()
    optimizer.learning_rate.assign(config.learning_rate)  # the flag wins over a checkpoint's value
    start_step, start_epoch, start_frames = state.position()
    log = print if verbose else (lambda *args, **kwargs: None)
    if restored:
        log(f"vae: resuming at step {start_step:,} (epoch {start_epoch + 1}, {start_frames:,} frames in) "
            f"from {restored}")
    log(f"vae: z_size {z_size}, {len(files):,} episodes, {rollouts.frames:,} frames, {steps_per_epoch:,} "
        f"steps an epoch, {config.epochs} epoch(s), {model.dtype_policy.name}")

    writer = tf.summary.create_file_writer(str(layout.vae / "logs"))
    with writer.as_default():
        summary.text("config/hyperparameters", f"```\n{json.dumps(run_config, indent=2)}\n```", start_step)
    sample = sample_frames(files, seed=config.seed)
    train_step = make_train_step(model, optimizer, config.batch_size, config.kl_tolerance)
    scalars = ScalarLog(writer, config.log_every, config.batch_size)
    progress = Progress("vae", total_steps, "steps", rate_unit="frames", start_done=start_step,
                        stream=None if verbose else io.StringIO())

    def save_checkpoint() -> None:
        state.save()
        with writer.as_default():
            summary.image("images/originals_vs_reconstructions", reconstruction_grid(model, sample),
                          int(state.step.numpy()))
        writer.flush()

    try:
        with sigterm_as_interrupt():
            while state.position()[0] < total_steps and state.position()[1] < config.epochs:
                step, epoch, epoch_frames = state.position()
                batches = frame_batches(files, config.batch_size, config.seed, epoch, skip_frames=epoch_frames,
                                        shuffle_buffer=config.shuffle_buffer, parallel_reads=config.parallel_reads)
                epoch_done = True  # unless stopped at total_steps before the epoch's data ran out
                try:
                    for frames in batches:
                        total, recon, kl, finite = (t.numpy() for t in train_step(frames))
                        if not finite:
                            raise UserError(
                                f"non-finite loss at step {step + 1:,} (total={total}, recon={recon}, kl={kl}); "
                                f"stopped without saving, the last good checkpoint "
                                f"({state.manager.latest_checkpoint or 'none'}) is kept; try a lower "
                                f"--learning_rate")
                        state.step.assign_add(1)
                        state.epoch_frames.assign_add(config.batch_size)
                        step += 1
                        scalars.add(step, (total, recon, kl), float(optimizer.learning_rate))
                        progress.update(1, rate_count=config.batch_size, loss=f"{total:.2f}")
                        if step >= total_steps:
                            epoch_done = state.position()[2] // config.batch_size >= steps_per_epoch
                            break
                        if step % config.checkpoint_every == 0:
                            save_checkpoint()
                except tf.errors.OpError as error:
                    raise data_error_from(error) from None
                if epoch_done:
                    state.epoch.assign_add(1)
                    state.epoch_frames.assign(0)
                save_checkpoint()
    except KeyboardInterrupt:
        save_checkpoint()
        progress.close()
        raise TrainingInterrupted(f"interrupted at step {int(state.step.numpy()):,} of {total_steps:,}; "
                                  f"checkpoint saved in {checkpoint_dir}; run the same command to resume") from None
    progress.close()
    writer.close()

    # A finished run run again changes nothing: rewriting vae.keras would make every series look stale.
    if state.position()[0] > start_step or not layout.vae_model.exists():
        save_model(model, layout.vae_model)
        save_png(layout.vae / "reconstructions.png", reconstruction_grid(model, sample))
        log(f"vae: saved {layout.vae_model} and {layout.vae / 'reconstructions.png'}")
    else:
        log(f"vae: already trained for {start_step:,} steps; {layout.vae_model} kept")
    return layout.vae_model


def main(argv) -> None:
    from absl import flags, logging

    logging.set_verbosity(logging.WARNING)  # TF's checkpoint saver logs a line at INFO on every save
    FLAGS = flags.FLAGS
    config = VAETrainConfig(z_size=FLAGS.z_size, epochs=FLAGS.epochs, batch_size=FLAGS.batch_size,
                            learning_rate=FLAGS.learning_rate, kl_tolerance=FLAGS.kl_tolerance, seed=FLAGS.seed,
                            mixed_precision=FLAGS.mixed_precision, checkpoint_every=FLAGS.checkpoint_every,
                            max_steps=FLAGS.max_steps, resume=FLAGS.resume)
    train_vae(FLAGS.exp_dir, config)


def define_flags() -> None:
    from absl import flags

    defaults = VAETrainConfig()
    flags.DEFINE_string("exp_dir", None, "Experiment folder: reads EXP_DIR/rollouts/, writes EXP_DIR/vae/.",
                        required=True)
    flags.DEFINE_integer("z_size", None, "Latent size (default: the paper's, 32 CarRacing, 64 Doom, "
                         "from the rollouts' env).")
    flags.DEFINE_integer("epochs", defaults.epochs, "Passes over the data (the paper: 1; the 2018 code: 10).")
    flags.DEFINE_integer("batch_size", defaults.batch_size, "Frames per batch (the paper: 100).")
    flags.DEFINE_float("learning_rate", defaults.learning_rate, "Adam's learning rate (the paper: 1e-4).")
    flags.DEFINE_float("kl_tolerance", defaults.kl_tolerance, "Free bits: KL floor in nats per latent "
                       "dimension (the 2018 code: 0.5).")
    flags.DEFINE_integer("seed", defaults.seed, "Seed of the weights, data order and sampling.")
    flags.DEFINE_bool("mixed_precision", defaults.mixed_precision, "Compute in bfloat16 (Keras "
                      "'mixed_bfloat16'); weights and the saved model stay float32.")
    flags.DEFINE_integer("checkpoint_every", defaults.checkpoint_every, "Steps between checkpoints.")
    flags.DEFINE_integer("max_steps", None, "Stop (with a checkpoint) at this total step.")
    flags.DEFINE_bool("resume", defaults.resume, "Continue from the last checkpoint; --noresume starts over.")


if __name__ == "__main__":
    from common.errors import run_main

    define_flags()
    run_main(main)

"""Trains V (the ConvVAE) on the frames of `DIR/rollouts/`, streaming them; writes `DIR/vae/vae.keras`.

    python -m vae.train --exp_dir=exp/doom                  # the paper's settings: 1 epoch, batch 100, Adam 1e-4
    python -m vae.train --exp_dir=exp/doom --epochs=10      # the 2018 code's 10 epochs (continues a finished run)
    python -m vae.train --exp_dir=exp/doom --beta=4         # a beta-VAE: the KL term weighted x4

A second run of the same command resumes from the last checkpoint in `DIR/vae/checkpoints/` (model, Adam state,
step and position in the epoch); `--noresume` starts over. Checkpoints are written every `--checkpoint_every`
steps, at the end of every epoch and on Ctrl-C or SIGTERM. TensorBoard: `tensorboard --logdir DIR/vae/tensorboard`.
"""

from __future__ import annotations

import dataclasses
import io
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from absl import flags, logging
from keras import ops

from common.errors import DataError, SignalReceived, UserError, run_main
from common.flags import ConfigFlags
from common.layout import ExperimentLayout, experiment
from common.paper import VAE_BATCH_SIZE, VAE_EPOCHS, VAE_LEARNING_RATE, Z_SIZE
from common.progress import Progress
from common.storage import atomic_path, episode_files, read_json, write_json
from common.tensorboard import SummaryWriter, TrainingScalars
from common.training import TrainingCheckpoint, apply_if_finite, check_finite, checkpoint_on_interrupt
from vae.data import PARALLEL_READS, SHUFFLE_BUFFER, data_error_from, frame_batches, load_frames, scan_rollouts
from vae.interface import VisionModel, vision_model_problem
from vae.model import KL_TOLERANCE, ConvVAE, combine_losses, frames_to_inputs, inputs_to_frames


@dataclasses.dataclass(frozen=True)
class VAETrainConfig:
    """How to train V; the defaults are the paper's."""

    z_size: int | None = None  # latent size; None: the paper's for the rollouts' env (32 CarRacing, 64 Doom)
    epochs: int = VAE_EPOCHS  # passes over the data; the paper says 1, the 2018 code ran 10
    batch_size: int = VAE_BATCH_SIZE  # frames per batch (paper)
    learning_rate: float = VAE_LEARNING_RATE  # Adam (paper)
    kl_tolerance: float = KL_TOLERANCE  # free bits: KL floor per example, in nats per latent dimension
    beta: float = 1.0  # weight of the KL term: 1 is the paper's VAE, above 1 a beta-VAE (Higgins et al., 2017)
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
        if not (self.beta >= 0 and math.isfinite(self.beta)):
            raise UserError(f"--beta={self.beta}: must be a number >= 0")
        if self.max_steps is not None and self.max_steps < 0:
            raise UserError(f"--max_steps={self.max_steps}: must be >= 0")
        return self


def make_train_step(model: VisionModel, optimizer: keras.optimizers.Optimizer, batch_size: int,
                    kl_tolerance: float = KL_TOLERANCE,
                    beta: float = 1.0) -> Callable[[tf.Tensor], tuple[tf.Tensor, ...]]:
    """A compiled step on a uint8 batch (batch_size, 64, 64, 3) -> (total, recon, kl, finite).

    The loss is V's own per-image `loss_terms`, combined as recon + beta * kl with free bits (`combine_losses`).

    The update is applied only when the loss and every gradient are finite (`apply_if_finite`), so a NaN never
    reaches the weights (or a checkpoint); the caller stops on `finite == False`.
    """

    @tf.function(input_signature=[tf.TensorSpec((batch_size, 64, 64, 3), tf.uint8)])
    def train_step(frames: tf.Tensor) -> tuple[tf.Tensor, ...]:
        images = frames_to_inputs(frames)
        with tf.GradientTape() as tape:
            reconstruction, mu, logvar = model(images, training=True)
            recon_terms, kl_terms = model.loss_terms(images, reconstruction, mu, logvar)
            total, recon, kl = combine_losses(recon_terms, kl_terms, ops.shape(mu)[-1], kl_tolerance, beta)
        gradients = tape.gradient(total, model.trainable_variables)
        return total, recon, kl, apply_if_finite(optimizer, gradients, model.trainable_variables, total)

    return train_step


def resolve_z_size(config: VAETrainConfig, env: str | None, folder: Path) -> int:
    """--z_size, or the paper's for the rollouts' env."""
    if config.z_size is not None:
        return config.z_size
    if env not in Z_SIZE:
        raise DataError(f"{folder}: rollouts name no known env ({env!r}); pass --z_size")
    return Z_SIZE[env]


def reconstruction_grid(model: VisionModel, frames: np.ndarray, columns: int = 8) -> np.ndarray:
    """uint8 image: rows of originals, each followed by a row of their reconstructions (from mu)."""
    reconstructed = inputs_to_frames(model.decode(model.encode(frames_to_inputs(frames))[0]))
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


def save_model(model: VisionModel, path: Path) -> None:
    """Saves `model` as a `.keras` file, atomically, with a float32 policy whatever it trained with."""
    if model.dtype_policy.name != "float32":
        model_f32 = type(model).from_config({**model.get_config(), "dtype": "float32"})
        model_f32.set_weights(model.get_weights())
        model = model_f32
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)


@dataclasses.dataclass(frozen=True)
class RolloutPlan:
    """What a run trains on: the rollout files, their env and frame count, V's latent size and the step counts."""

    files: list[Path]
    env: str | None
    frames: int
    z_size: int
    steps_per_epoch: int
    total_steps: int  # the run's last step: all epochs, or --max_steps if fewer


def plan_run(layout: ExperimentLayout, config: VAETrainConfig, model: VisionModel | None) -> RolloutPlan:
    """Scans `rollouts/` and works out the latent size and step counts; bad rollouts raise `DataError`, a given
    model that is no V (`vae.interface.VisionModel`) `UserError`."""
    if model is not None and vision_model_problem(model):
        raise UserError(f"train_vae(model=...): {vision_model_problem(model)}")
    rollouts = scan_rollouts(episode_files(layout.rollouts, "rollout"))
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
    return RolloutPlan(list(rollouts.files), rollouts.env, rollouts.frames, z_size, steps_per_epoch, total_steps)


def _check_run_config(layout: ExperimentLayout, run_config: dict[str, Any]) -> None:
    """A resumed run must build the same model as the checkpoint's."""
    path = layout.run_config("vae")
    if not path.exists():
        return
    recorded = read_json(path)
    if recorded.get("z_size") != run_config["z_size"]:
        raise DataError(f"{path}: the checkpoints in {layout.checkpoints('vae')} have z_size="
                        f"{recorded.get('z_size')}, not {run_config['z_size']}; pass --z_size="
                        f"{recorded.get('z_size')} or --noresume to start over")


def record_run_config(layout: ExperimentLayout, config: VAETrainConfig, plan: RolloutPlan) -> dict[str, Any]:
    """Discards the old run on --noresume, checks a resumed one builds the same model, writes vae/config.json."""
    if not config.resume:
        shutil.rmtree(layout.checkpoints("vae"), ignore_errors=True)
        layout.run_config("vae").unlink(missing_ok=True)
    run_config = {**dataclasses.asdict(config), "z_size": plan.z_size, "env": plan.env, "episodes": len(plan.files),
                  "frames": plan.frames, "steps_per_epoch": plan.steps_per_epoch}
    _check_run_config(layout, run_config)
    write_json(layout.run_config("vae"), run_config)
    return run_config


class TrainingState:
    """V's checkpoint (`TrainingCheckpoint`: model, Adam's slots, the step) plus the epoch and the frames of it
    already done, and the z sampler's state (Keras does not checkpoint a SeedGenerator, and a resumed run must
    draw the same z as an uninterrupted one; a V without a `seed_generator` resumes with other draws)."""

    def __init__(self, model: VisionModel, optimizer: keras.optimizers.Optimizer, directory: Path):
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.epoch_frames = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch_frames")
        sampler = getattr(model, "seed_generator", None)
        position = {} if sampler is None else {"sampler": sampler.state}
        self.checkpoint = TrainingCheckpoint(directory, model, optimizer, epoch=self.epoch,
                                             epoch_frames=self.epoch_frames, **position)
        self.step = self.checkpoint.step

    def position(self) -> tuple[int, int, int]:
        """(step, epoch, frames of the epoch done)."""
        return int(self.step.numpy()), int(self.epoch.numpy()), int(self.epoch_frames.numpy())


class EpochLoop:
    """V's training loop: epochs of shuffled batches from the saved position, a checkpoint (with a reconstruction
    image) every `checkpoint_every` steps and at each epoch's end, TensorBoard scalars and a progress line."""

    def __init__(self, model: VisionModel, optimizer: keras.optimizers.Optimizer, state: TrainingState,
                 writer: SummaryWriter, plan: RolloutPlan, config: VAETrainConfig, verbose: bool):
        self.model, self.state, self.writer, self.plan, self.config = model, state, writer, plan, config
        self.sample = sample_frames(plan.files, seed=config.seed)
        self.train_step = make_train_step(model, optimizer, config.batch_size, config.kl_tolerance, config.beta)
        self.scalars = TrainingScalars(writer, config.log_every, optimizer, config.batch_size, "frames")
        self.progress = Progress("vae", plan.total_steps, "steps", rate_unit="frames", start_done=state.position()[0],
                                 stream=None if verbose else io.StringIO())

    def save_checkpoint(self) -> None:
        self.state.checkpoint.save()
        self.writer.image("images/originals_vs_reconstructions", reconstruction_grid(self.model, self.sample),
                          self.state.position()[0])
        self.writer.flush()

    def _save_on_interrupt(self) -> None:
        self.save_checkpoint()
        self.progress.close()

    def run(self) -> None:
        """Trains to the plan's last step (or epoch); Ctrl-C / SIGTERM save a checkpoint and raise
        `TrainingInterrupted`."""
        with checkpoint_on_interrupt(self._save_on_interrupt, self.state.checkpoint,
                                     self.plan.total_steps) as signal_received:
            while self.state.position()[0] < self.plan.total_steps and self.state.position()[1] < self.config.epochs:
                if self.run_epoch(signal_received):
                    self.state.epoch.assign_add(1)
                    self.state.epoch_frames.assign(0)
                self.save_checkpoint()
        self.progress.close()

    def run_epoch(self, signal_received: SignalReceived) -> bool:
        """Trains on the rest of the current epoch; True when its data ran out (not stopped at the last step)."""
        config = self.config
        step, epoch, epoch_frames = self.state.position()
        batches = frame_batches(self.plan.files, config.batch_size, config.seed, epoch, skip_frames=epoch_frames,
                                shuffle_buffer=config.shuffle_buffer, parallel_reads=config.parallel_reads)
        try:
            for frames in batches:
                signal_received.raise_if_received()
                total, recon, kl, finite = (t.numpy() for t in self.train_step(frames))
                losses = {"total": total, "recon": recon, "kl": kl}
                check_finite(finite, step + 1, losses, self.state.checkpoint)
                self.state.step.assign_add(1)
                self.state.epoch_frames.assign_add(config.batch_size)
                step += 1
                self.scalars.add(step, losses)
                self.progress.update(1, rate_count=config.batch_size, loss=f"{total:.2f}")
                if step >= self.plan.total_steps:
                    return self.state.position()[2] // config.batch_size >= self.plan.steps_per_epoch
                if step % config.checkpoint_every == 0:
                    self.save_checkpoint()
        except tf.errors.OpError as error:
            raise data_error_from(error) from None
        return True


def train_vae(exp_dir: str | Path, config: VAETrainConfig = VAETrainConfig(),
              model: VisionModel | None = None, verbose: bool = True) -> Path:
    """Trains V on `exp_dir/rollouts/` and saves `exp_dir/vae/vae.keras`; returns that path.

    `model` replaces the paper's ConvVAE (e.g. one with another encoder, or any `vae.interface.VisionModel`); its
    z_size wins over the config's. `config.beta` weights the KL term (a beta-VAE above 1).
    Resumes from `exp_dir/vae/checkpoints/` unless `config.resume` is False; a finished run is not redone.
    Raises `DataError` for bad rollouts or checkpoints, `UserError` on a non-finite loss (nothing is saved: the
    last good checkpoint stays), `TrainingInterrupted` on Ctrl-C / SIGTERM after saving a checkpoint.
    """
    config = config.validated()
    layout = experiment(exp_dir, create=False)
    plan = plan_run(layout, config, model)
    run_config = record_run_config(layout, config, plan)

    keras.utils.set_random_seed(config.seed)
    if model is None:
        policy = "mixed_bfloat16" if config.mixed_precision else "float32"
        model = ConvVAE(z_size=plan.z_size, seed=config.seed, dtype=policy)
    optimizer = keras.optimizers.Adam(learning_rate=config.learning_rate)
    state = TrainingState(model, optimizer, layout.checkpoints("vae"))
    restored = state.checkpoint.restore_latest()
    optimizer.learning_rate.assign(config.learning_rate)  # the flag wins over a checkpoint's value
    start_step, start_epoch, start_frames = state.position()
    log = print if verbose else (lambda *args, **kwargs: None)
    if restored:
        log(f"vae: resuming at step {start_step:,} (epoch {start_epoch + 1}, {start_frames:,} frames in) "
            f"from {restored}")
    log(f"vae: z_size {plan.z_size}, {len(plan.files):,} episodes, {plan.frames:,} frames, "
        f"{plan.steps_per_epoch:,} steps an epoch, {config.epochs} epoch(s), {model.dtype_policy.name}"
        + (f", beta {config.beta:g}" if config.beta != 1.0 else ""))

    writer = SummaryWriter(layout.tensorboard("vae"))
    writer.hyperparameters(run_config, start_step)
    loop = EpochLoop(model, optimizer, state, writer, plan, config, verbose)
    try:
        loop.run()
    finally:
        writer.close()

    # A finished run run again changes nothing: rewriting vae.keras would make every series look stale.
    if state.position()[0] > start_step or not layout.vae_model.exists():
        save_model(model, layout.vae_model)
        save_png(layout.vae_reconstructions, reconstruction_grid(model, loop.sample))
        log(f"vae: saved {layout.vae_model} and {layout.vae_reconstructions}")
    else:
        log(f"vae: already trained for {start_step:,} steps; {layout.vae_model} kept")
    return layout.vae_model


def main(argv) -> None:
    logging.set_verbosity(logging.WARNING)  # TF's checkpoint saver logs a line at INFO on every save
    train_vae(flags.FLAGS.exp_dir, ConfigFlags(VAETrainConfig).parse())


def define_flags() -> None:
    flags.DEFINE_string("exp_dir", None, "Experiment folder: reads EXP_DIR/rollouts/, writes EXP_DIR/vae/.",
                        required=True)
    ConfigFlags(VAETrainConfig).define()


if __name__ == "__main__":
    define_flags()
    run_main(main)

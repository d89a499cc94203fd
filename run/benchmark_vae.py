"""Speed of V on the real workload: `vae.train`'s compiled step fed by its tf.data pipeline from a data set of
doom_small's shape (>= 1,000 compressed Take Cover episodes of ~320 frames at 160x120), beside a bare reference
step of the same model written here (GradientTape + Adam on in-memory tensors, the paper's loss spelled out):
what this machine gives the model with no input pipeline, no finite-check and no bookkeeping. Their ratio is
what our training loop costs (target >= 0.9). `python -m run.benchmark --cases=vae` runs it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import keras
import tensorflow as tf

from common.layout import experiment
from common.storage import episode_files
from vae.data import PARALLEL_READS, SHUFFLE_BUFFER, frame_batches, scan_rollouts
from vae.model import KL_TOLERANCE, ConvVAE
from vae.train import make_train_step

DOOM_SMALL_RESOLUTION = "160x120"  # doom_small's render size (run/configs/doom_small.cfg)


def reference_train_step(model: keras.Model, optimizer: keras.optimizers.Optimizer) -> Callable:
    """A bare training step of `model` on float images in [0, 1]: the paper's loss (summed squared error plus
    the KL with free bits) written out, Adam applied, nothing else."""
    floor = KL_TOLERANCE * model.z_size

    @tf.function
    def step(images: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            reconstruction, mu, logvar = model(images, training=True)
            recon = tf.reduce_mean(tf.reduce_sum(tf.square(images - reconstruction), axis=[1, 2, 3]))
            kl = -0.5 * tf.reduce_sum(1.0 + logvar - tf.square(mu) - tf.exp(logvar), axis=-1)
            loss = recon + tf.reduce_mean(tf.maximum(kl, floor))
        optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
        return loss

    return step


def ensure_rollouts(work_dir: Path, episodes: int, workers: int, seed: int) -> list[Path]:
    """The Doom rollouts in `work_dir/rollouts/`, collecting (at doom_small's resolution) those not there yet."""
    from run.collect import collect_rollouts

    layout = experiment(work_dir)
    present = episode_files(layout.rollouts, "rollout") if layout.rollouts.is_dir() else []
    if len(present) < episodes:
        collect_rollouts(work_dir, env="doom", episodes=episodes, workers=workers, seed=seed,
                         doom_resolution=DOOM_SMALL_RESOLUTION, verbose=False)
    return episode_files(layout.rollouts, "rollout")[:episodes]


def _timed_steps(step: Callable, batches: Iterator, steps: int) -> float:
    """Seconds for `steps` steps, each synchronised on its first output (training reads the loss every step)."""
    start = time.perf_counter()
    for _ in range(steps):
        outputs = step(next(batches))
        (outputs[0] if isinstance(outputs, tuple) else outputs).numpy()
    return time.perf_counter() - start


def benchmark_vae(work_dir: Path, episodes: int = 1000, steps: int = 40, batch_size: int = 100, rounds: int = 3,
                  z_size: int = 64, workers: int = 2, seed: int = 0) -> dict:
    """Training frames/s of `vae.train`'s step through its pipeline over `episodes` rollout files vs. the bare
    reference step on in-memory batches, in alternating rounds of `steps` steps (both see the same load).

    The pipeline runs as in training: all files in the epoch's order, interleaved `PARALLEL_READS` at a time,
    through the full `SHUFFLE_BUFFER` (filled before timing starts, as it is once an epoch in training).
    """
    files = ensure_rollouts(Path(work_dir), episodes, workers, seed)
    rollouts = scan_rollouts(files)
    shuffle_buffer = min(SHUFFLE_BUFFER, max(batch_size, rollouts.frames // 4))  # tiny data sets (tests)

    keras.utils.set_random_seed(seed)
    model, reference_model = ConvVAE(z_size=z_size, seed=seed), ConvVAE(z_size=z_size, seed=seed)
    optimizers = [keras.optimizers.Adam(1e-4), keras.optimizers.Adam(1e-4)]
    for optimizer, vae in zip(optimizers, (model, reference_model), strict=True):
        optimizer.build(vae.trainable_variables)
    train_step = make_train_step(model, optimizers[0], batch_size)
    reference = reference_train_step(reference_model, optimizers[1])

    pipeline = iter(frame_batches(list(rollouts.files), batch_size, seed, 0, shuffle_buffer=shuffle_buffer,
                                  parallel_reads=PARALLEL_READS).repeat())
    in_memory = [tf.constant(next(pipeline).numpy(), tf.float32) / 255.0 for _ in range(4)]
    memory = (in_memory[i % len(in_memory)] for i in range(10**12))
    _timed_steps(train_step, pipeline, 2)  # trace; the shuffle buffer fills here
    _timed_steps(reference, memory, 2)

    files_seconds = reference_seconds = 0.0
    for _ in range(rounds):
        reference_seconds += _timed_steps(reference, memory, steps)
        files_seconds += _timed_steps(train_step, pipeline, steps)
    frames = rounds * steps * batch_size
    return {
        "vae_episodes": len(rollouts.files),
        "vae_frames": rollouts.frames,
        "vae_batch_size": batch_size,
        "vae_shuffle_buffer": shuffle_buffer,
        "vae_timed_steps_each": rounds * steps,
        "vae_files_frames_per_s": frames / files_seconds,
        "vae_reference_frames_per_s": frames / reference_seconds,
        "vae_files_vs_reference_ratio": reference_seconds / files_seconds,
    }

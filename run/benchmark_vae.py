"""Measures what the streaming input pipeline costs V's training: the same compiled step fed by tf.data from
rollout files vs. by tensors already in memory, in the same process, alternating rounds so that both see the
same machine load. `python -m run.benchmark --cases=vae` runs it.
"""

from __future__ import annotations

import time
from pathlib import Path

import keras
import tensorflow as tf

from common.layout import experiment
from common.storage import episode_files
from vae.data import PARALLEL_READS, SHUFFLE_BUFFER, frame_batches, scan_rollouts
from vae.model import ConvVAE
from vae.train import make_train_step


def _timed_steps(train_step, batches, steps: int) -> float:
    """Seconds for `steps` steps, each synchronised on its loss as in training (which checks it is finite)."""
    start = time.perf_counter()
    for _ in range(steps):
        train_step(next(batches))[0].numpy()
    return time.perf_counter() - start


def benchmark_vae(work_dir: Path, episodes: int = 24, steps: int = 20, batch_size: int = 100,
                  rounds: int = 3, z_size: int = 64, seed: int = 0) -> dict:
    """Training frames/s from rollout files through the real tf.data pipeline vs. from in-memory tensors.

    Uses the Doom rollouts in `work_dir/rollouts/`, collecting `episodes` real ones first if fewer are there.
    Each of `rounds` rounds times `steps` in-memory steps, then `steps` pipeline steps. Returns both rates and
    `pipeline_vs_memory_ratio` (1.0: the input pipeline costs nothing). With few episodes the shuffle buffer is
    capped at a quarter of the frames, so that refilling it at each pass over the small data set does not
    dominate: on the full data set that refill happens once an epoch.
    """
    layout = experiment(work_dir)
    present = sorted(layout.rollouts.glob("ep*.npz")) if layout.rollouts.is_dir() else []
    if len(present) < episodes:
        from run.collect import collect_rollouts

        collect_rollouts(work_dir, env="doom", episodes=episodes, workers=1, seed=seed, verbose=False)
    rollouts = scan_rollouts(episode_files(layout.rollouts, "rollout")[:max(episodes, 1)])
    shuffle_buffer = max(batch_size, min(SHUFFLE_BUFFER, rollouts.frames // 4))

    keras.utils.set_random_seed(seed)
    model = ConvVAE(z_size=z_size, seed=seed)
    optimizer = keras.optimizers.Adam(1e-4)
    optimizer.build(model.trainable_variables)
    train_step = make_train_step(model, optimizer, batch_size)

    pipeline = iter(frame_batches(list(rollouts.files), batch_size, seed, 0, shuffle_buffer=shuffle_buffer,
                                  parallel_reads=PARALLEL_READS).repeat())
    in_memory = [tf.constant(next(pipeline).numpy()) for _ in range(4)]
    memory = (in_memory[i % len(in_memory)] for i in range(10**12))
    for batches in (memory, pipeline):  # trace the step and fill the pipeline's buffers before timing
        _timed_steps(train_step, batches, 2)

    memory_seconds = pipeline_seconds = 0.0
    for _ in range(rounds):
        memory_seconds += _timed_steps(train_step, memory, steps)
        pipeline_seconds += _timed_steps(train_step, pipeline, steps)
    frames = rounds * steps * batch_size
    memory_fps, pipeline_fps = frames / memory_seconds, frames / pipeline_seconds
    return {
        "vae_episodes": len(rollouts.files),
        "vae_frames": rollouts.frames,
        "vae_batch_size": batch_size,
        "vae_shuffle_buffer": shuffle_buffer,
        "vae_timed_steps_each": rounds * steps,
        "vae_in_memory_frames_per_s": memory_fps,
        "vae_pipeline_frames_per_s": pipeline_fps,
        "vae_pipeline_vs_memory_ratio": pipeline_fps / memory_fps,
    }

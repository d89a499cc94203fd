"""Streams V's training frames from rollout files with tf.data, never holding the data set in memory.

The paper's 10,000 random rollouts are ~3M Doom frames (~37 GB as uint8; CarRacing ~123 GB): the 2018 code
loaded them all into RAM. Here episodes are read in parallel, a few at a time, interleaved frame by frame into a
shuffle buffer of frames, batched and prefetched. The file order and the buffer's shuffle are drawn from
(seed, epoch), so an epoch's batches are the same on every run: a resumed run skips the batches already done.
"""

from __future__ import annotations

import dataclasses
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from common.errors import DataError
from common.storage import FRAME_SHAPE, npz_errors

SHUFFLE_BUFFER = 10_000  # frames (~123 MB of uint8); spans ~30 Doom episodes besides the interleaving
PARALLEL_READS = 4  # episodes decompressed at once and interleaved frame by frame


@dataclasses.dataclass(frozen=True)
class RolloutSet:
    """What V's training needs to know about a rollouts folder, read from the file headers only."""

    files: tuple[Path, ...]
    lengths: tuple[int, ...]  # frames per episode
    env: str | None  # 'doom' or 'carracing' from the files' `env` field; None if they do not say

    @property
    def frames(self) -> int:
        return int(sum(self.lengths))


def _obs_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of the `obs` array of an `.npz` file, read from its header without decompressing it."""
    with zipfile.ZipFile(path) as archive:
        with archive.open("obs.npy") as f:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, _, dtype = read_header(f)
    return tuple(shape), np.dtype(dtype)


def _check_obs(path: Path, shape: tuple[int, ...], dtype: np.dtype) -> None:
    if dtype != np.uint8:
        raise DataError(f"{path}: 'obs' has dtype {dtype}, expected uint8")
    if len(shape) != 4 or tuple(shape[1:]) != FRAME_SHAPE:
        raise DataError(f"{path}: 'obs' has shape {shape}, expected (T, 64, 64, 3)")
    if shape[0] < 1:
        raise DataError(f"{path}: empty episode (0 steps)")


def scan_rollout(path: str | Path) -> tuple[int, str | None]:
    """(frames, env) of one rollout file, checking the frames' shape and dtype; problems raise `DataError`."""
    path = Path(path)
    try:
        with npz_errors(path):
            shape, dtype = _obs_header(path)
            with np.load(path, allow_pickle=False) as data:  # lazy: reads only the members asked for
                env = str(data["env"]) if "env" in data.files else None
    except KeyError:
        raise DataError(f"{path}: no 'obs' array; not a rollout file") from None
    _check_obs(path, shape, dtype)
    return int(shape[0]), env


def scan_rollouts(files: Sequence[str | Path]) -> RolloutSet:
    """Checks every rollout's header (cheap: no frame is decompressed) and the agreement of their envs."""
    files = tuple(Path(f) for f in files)
    if not files:
        raise DataError("no rollout files given")
    lengths, envs = [], {}
    for path in files:
        length, env = scan_rollout(path)
        lengths.append(length)
        envs.setdefault(env, path)
    if len(envs) > 1:
        listed = ", ".join(f"{env!r} ({path})" for env, path in envs.items())
        raise DataError(f"{files[0].parent}: rollouts of different environments mixed: {listed}")
    return RolloutSet(files, tuple(lengths), next(iter(envs)))


def load_frames(path: str | Path) -> np.ndarray:
    """The (T, 64, 64, 3) uint8 frames of one rollout file, checked; problems raise `DataError`."""
    path = Path(path)
    try:
        with npz_errors(path), np.load(path, allow_pickle=False) as data:
            obs = data["obs"]
    except KeyError:
        raise DataError(f"{path}: no 'obs' array; not a rollout file") from None
    _check_obs(path, obs.shape, obs.dtype)
    return obs


def _load_frames_op(path: tf.Tensor) -> tf.Tensor:
    frames = tf.numpy_function(lambda p: load_frames(p.decode()), [path], tf.uint8, stateful=False)
    return tf.ensure_shape(frames, (None, *FRAME_SHAPE))


def epoch_file_order(count: int, seed: int, epoch: int) -> np.ndarray:
    """The episode order of an epoch: a permutation drawn from (seed, epoch), the same on every run."""
    return np.random.default_rng([seed, epoch]).permutation(count)


def frame_batches(files: Sequence[str | Path], batch_size: int, seed: int, epoch: int,
                  skip_frames: int = 0, shuffle_buffer: int = SHUFFLE_BUFFER,
                  parallel_reads: int = PARALLEL_READS) -> tf.data.Dataset:
    """One epoch of shuffled uint8 frame batches (batch_size, 64, 64, 3); the last partial batch is dropped.

    Deterministic for a given (files, seed, epoch): `skip_frames` drops the epoch's first frames (those already
    trained on before a resume) before batching, so a resumed epoch sees exactly the batches it would have.
    Memory: `parallel_reads` episodes plus `shuffle_buffer` frames plus two prefetched batches.
    """
    order = epoch_file_order(len(files), seed, epoch)
    paths = tf.data.Dataset.from_tensor_slices([str(files[i]) for i in order])
    frames = paths.interleave(
        lambda path: tf.data.Dataset.from_tensor_slices(_load_frames_op(path)),
        cycle_length=parallel_reads, block_length=1, num_parallel_calls=parallel_reads, deterministic=True)
    shuffle_seed = int(np.random.default_rng([seed, epoch, 1]).integers(2**31 - 1))
    frames = frames.shuffle(shuffle_buffer, seed=shuffle_seed, reshuffle_each_iteration=False)
    if skip_frames:
        frames = frames.skip(skip_frames)
    batches = frames.batch(batch_size, drop_remainder=True)
    options = tf.data.Options()
    options.deterministic = True
    return batches.prefetch(2).with_options(options)


def data_error_from(error: tf.errors.OpError) -> DataError:
    """Turns the TF error that wraps a `DataError` raised inside the pipeline back into a one-line DataError."""
    match = re.search(r"DataError: (.*)", str(error))
    if match:
        return DataError(match.group(1).strip())
    return DataError(f"reading rollouts failed: {str(error).strip().splitlines()[0]}")

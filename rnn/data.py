"""Batches of encoded episodes (series) for teacher-forced MDN-RNN training.

All series are held in memory as flat (frames, ...) arrays with per-episode offsets (10,000 Doom episodes of
~300 frames with z = 64 take ~1.5 GB), and every batch is a pure function of its step number, so a resumed run
sees exactly the batches it would have seen.

A batch of B rows and T input steps is a dict of numpy arrays:
  mu, logvar  (B, T+1, Z)  V's posterior of frames t..t+T (the model draws z ~ N(mu, exp(logvar)) itself)
  action      (B, T, A)    action taken after frame t
  restart     (B, T)       1 on an episode's first frame (the LSTM state is zeroed before that step)
  reward      (B, T)       the reward of the step taken after frame t (what an M with a reward output predicts)
  done        (B, T)       1 where the agent died after this frame (the episode ended, not by the step cap)
  z_mask      (B, T)       1 where the target frame t+1 belongs to the same episode and is not padding
  step_mask   (B, T)       1 where input frame t exists (not padding)

Two layouts:
  EpisodeBatches (CarRacing; also validation): each row one window of an episode from a zero state.
  StreamBatches (Doom): episodes concatenated into B streams, cut into chunks of T; the LSTM state is carried
    from one chunk to the next (the trainer resets it when `is_epoch_start(step)`).
"""

from __future__ import annotations

import dataclasses
import heapq
import io
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from common.errors import DataError, UserError
from common.progress import Progress
from common.storage import episode_files, read_series

ENVS = ("carracing", "doom")
BATCH_KEYS = ("mu", "logvar", "action", "reward", "restart", "done", "z_mask", "step_mask")


@dataclasses.dataclass(frozen=True)
class SeriesSet:
    """Encoded episodes, flattened: episode i is frames starts[i] .. starts[i] + lengths[i] - 1."""

    files: tuple[Path, ...]
    env: str
    mu: np.ndarray  # (N, Z) float32
    logvar: np.ndarray  # (N, Z) float32
    action: np.ndarray  # (N, A) float32
    reward: np.ndarray  # (N,) float32: the reward of the step taken after each frame
    done: np.ndarray  # (N,) bool
    starts: np.ndarray  # (E,) int64
    lengths: np.ndarray  # (E,) int64

    @property
    def z_size(self) -> int:
        return int(self.mu.shape[1])

    @property
    def action_size(self) -> int:
        return int(self.action.shape[1])

    @property
    def num_episodes(self) -> int:
        return len(self.files)


def load_series(folder: str | os.PathLike, verbose: bool = False) -> SeriesSet:
    """Reads every `ep*.npz` of a series folder; inconsistent, non-finite or too short episodes raise
    `DataError` naming the file. `verbose` prints a progress line every few seconds."""
    files = episode_files(folder, "series")
    progress = Progress("rnn: reading series", len(files), "episodes", stream=None if verbose else io.StringIO())
    env, sizes = None, None
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("mu", "logvar", "action", "reward", "done")}
    for path in files:
        arrays = read_series(path)
        if "env" not in arrays:
            raise DataError(f"{path}: missing 'env' (one of {', '.join(ENVS)})")
        this_env = str(arrays["env"])
        if this_env not in ENVS:
            raise DataError(f"{path}: env '{this_env}' is not one of {', '.join(ENVS)}")
        this_sizes = (arrays["mu"].shape[1], arrays["action"].shape[1])
        if env is None:
            env, sizes = this_env, this_sizes
        elif (this_env, this_sizes) != (env, sizes):
            raise DataError(f"{path}: env {this_env} with z {this_sizes[0]}, action {this_sizes[1]} differs from "
                            f"{files[0].name} (env {env}, z {sizes[0]}, action {sizes[1]})")
        if len(arrays["mu"]) < 2:
            raise DataError(f"{path}: episode of {len(arrays['mu'])} frame; M needs at least 2")
        for name in ("mu", "logvar", "action", "reward"):
            if not np.all(np.isfinite(arrays[name])):
                raise DataError(f"{path}: '{name}' has NaN or infinite values")
        if bool(arrays.get("truncated", False)):  # ended by the step cap: not a death for the death head
            arrays["done"] = np.zeros_like(arrays["done"])
        for name in parts:
            parts[name].append(arrays[name])
        progress.update(1)
    lengths = np.array([len(m) for m in parts["mu"]], np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    return SeriesSet(tuple(files), env, *(np.concatenate(parts[k]) for k in ("mu", "logvar", "action", "reward",
                                                                              "done")),
                     starts, lengths)


def split_episodes(num_episodes: int, val_episodes: int, val_fraction: float,
                   seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random split into (train, validation) episode indices.

    `val_episodes` > 0 takes that many; else `val_fraction` of them (at least one when the fraction is > 0).
    """
    if val_episodes > 0:
        num_val = val_episodes
    elif val_fraction > 0:
        num_val = max(1, int(round(val_fraction * num_episodes)))
    else:
        num_val = 0
    if num_val >= num_episodes:
        raise UserError(f"{num_val} validation episodes leave none of {num_episodes} for training; "
                        f"lower --val_episodes or --val_fraction")
    order = np.random.default_rng([seed, 1]).permutation(num_episodes)
    return np.sort(order[num_val:]), np.sort(order[:num_val])


def _empty_batch(rows: int, steps: int, z_size: int, action_size: int) -> dict[str, np.ndarray]:
    return {"mu": np.zeros((rows, steps + 1, z_size), np.float32),
            "logvar": np.zeros((rows, steps + 1, z_size), np.float32),
            "action": np.zeros((rows, steps, action_size), np.float32),
            **{k: np.zeros((rows, steps), np.float32) for k in ("reward", "restart", "done", "z_mask", "step_mask")}}


class EpisodeBatches:
    """Rows of single episodes: a random window of `seq_len` + 1 frames per row, zero-padded and masked.

    An epoch is a seeded permutation of the episodes cut into ceil(E / B) batches (the last one wraps around).
    Each row runs from a zero state, so the last frame of an episode is also an input (its death target
    counts; its z target is masked) when the window reaches it.
    """

    def __init__(self, data: SeriesSet, episodes: Sequence[int], batch_size: int, seq_len: int, seed: int):
        if len(episodes) == 0:
            raise UserError("no episodes to batch")
        self.data, self.episodes = data, np.asarray(episodes, np.int64)
        self.batch_size, self.seq_len, self.seed = batch_size, seq_len, seed
        self.steps_per_epoch = -(-len(self.episodes) // batch_size)

    def is_epoch_start(self, step: int) -> bool:
        return True  # every row starts from a zero state

    def rows(self, step: int) -> np.ndarray:
        epoch, index = divmod(step, self.steps_per_epoch)
        order = np.random.default_rng([self.seed, 2, epoch]).permutation(self.episodes)
        return order[(index * self.batch_size + np.arange(self.batch_size)) % len(order)]

    def batch(self, step: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, 3, step])
        return self._fill(self.rows(step), self.seq_len, rng)

    def _fill(self, rows: np.ndarray, steps: int, rng: np.random.Generator | None) -> dict[str, np.ndarray]:
        data = self.data
        out = _empty_batch(len(rows), steps, data.z_size, data.action_size)
        for b, episode in enumerate(rows):
            length = int(data.lengths[episode])
            # A random window of steps + 1 frames (CarRacing: 1000 frames, 999 steps: the whole episode).
            offset = int(rng.integers(0, length - steps)) if rng is not None and length > steps else 0
            frames = min(length - offset, steps + 1)
            index = data.starts[episode] + offset + np.arange(frames)
            inputs = min(frames, steps)
            out["mu"][b, :frames], out["logvar"][b, :frames] = data.mu[index], data.logvar[index]
            out["action"][b, :inputs] = data.action[index[:inputs]]
            out["reward"][b, :inputs] = data.reward[index[:inputs]]
            out["restart"][b, 0] = float(offset == 0)
            out["done"][b, :inputs] = data.done[index[:inputs]]
            out["z_mask"][b, :frames - 1] = 1.0
            out["step_mask"][b, :inputs] = 1.0
        return out

    def full_episodes(self) -> Iterator[dict[str, np.ndarray]]:
        """Every episode whole (validation): rows sorted by length, each batch padded to its longest episode."""
        order = self.episodes[np.argsort(self.data.lengths[self.episodes], kind="stable")]
        for first in range(0, len(order), self.batch_size):
            rows = order[first:first + self.batch_size]
            yield self._fill(rows, int(self.data.lengths[rows].max()), None)


class StreamBatches:
    """Doom's layout: each epoch, a seeded permutation of the episodes is dealt (each to the currently shortest)
    into `batch_size` streams, cut to the shortest stream's whole chunks of `seq_len` steps.

    Chunk i of a stream covers its frames i*T .. i*T + T, so consecutive chunks continue one another and the
    LSTM state carries over; restart is 1 on each episode's first frame; the z target is masked where the next
    frame starts another episode (it cannot be predicted), while its death target is 1 there.
    """

    def __init__(self, data: SeriesSet, episodes: Sequence[int], batch_size: int, seq_len: int, seed: int):
        self.data, self.episodes = data, np.asarray(episodes, np.int64)
        self.batch_size, self.seq_len, self.seed = batch_size, seq_len, seed
        if len(self.episodes) < batch_size:
            raise UserError(f"{len(self.episodes)} training episodes cannot fill {batch_size} streams; "
                            f"lower --batch_size")
        self._chunks: list[int] = []  # chunks of each epoch so far
        self._cached: tuple[int, np.ndarray, np.ndarray] | None = None  # epoch, frame index, restart
        if self._epoch_chunks(0) == 0:
            raise UserError(f"streams of {len(self.episodes)} episodes over {batch_size} streams are shorter than "
                            f"--seq_len={seq_len} + 1 frames; lower --seq_len or --batch_size")

    def _deal(self, epoch: int) -> list[list[int]]:
        order = np.random.default_rng([self.seed, 4, epoch]).permutation(self.episodes)
        heap = [(0, s) for s in range(self.batch_size)]
        streams: list[list[int]] = [[] for _ in range(self.batch_size)]
        for episode in order:
            length, s = heapq.heappop(heap)
            streams[s].append(int(episode))
            heapq.heappush(heap, (length + int(self.data.lengths[episode]), s))
        return streams

    def _epoch_chunks(self, epoch: int) -> int:
        while len(self._chunks) <= epoch:
            streams = self._deal(len(self._chunks))
            shortest = min(int(self.data.lengths[s].sum()) for s in streams)
            self._chunks.append((shortest - 1) // self.seq_len)
        return self._chunks[epoch]

    def position(self, step: int) -> tuple[int, int]:
        """(epoch, chunk index within the epoch) of a training step."""
        epoch = 0
        while step >= self._epoch_chunks(epoch):
            step -= self._epoch_chunks(epoch)
            epoch += 1
        return epoch, step

    def is_epoch_start(self, step: int) -> bool:
        """True where new streams begin, so the carried LSTM state must be zeroed."""
        return self.position(step)[1] == 0

    def _streams(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        if self._cached is None or self._cached[0] != epoch:
            frames = self._epoch_chunks(epoch) * self.seq_len + 1
            index = np.empty((self.batch_size, frames), np.int64)
            restart = np.zeros((self.batch_size, frames), np.float32)
            for s, episodes in enumerate(self._deal(epoch)):
                starts, lengths = self.data.starts[episodes], self.data.lengths[episodes]
                flat = np.concatenate([np.arange(a, a + n) for a, n in zip(starts, lengths)])[:frames]
                index[s] = flat
                firsts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
                restart[s, firsts[firsts < frames]] = 1.0
            self._cached = (epoch, index, restart)
        return self._cached[1], self._cached[2]

    def batch(self, step: int) -> dict[str, np.ndarray]:
        epoch, chunk = self.position(step)
        index, restart = self._streams(epoch)
        window = slice(chunk * self.seq_len, chunk * self.seq_len + self.seq_len + 1)
        frames, flags = index[:, window], restart[:, window]
        next_restart = flags[:, 1:]
        return {"mu": self.data.mu[frames], "logvar": self.data.logvar[frames],
                "action": self.data.action[frames[:, :-1]], "reward": self.data.reward[frames[:, :-1]],
                "restart": flags[:, :-1].copy(),
                "done": self.data.done[frames[:, :-1]].astype(np.float32), "z_mask": 1.0 - next_restart,
                "step_mask": np.ones_like(next_restart)}

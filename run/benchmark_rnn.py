"""Speed of M: training through the real input pipeline vs. the bare compiled step, and the step API.

    python -m run.benchmark --cases=rnn

`benchmark_rnn` writes its own synthetic series files (`write_synthetic_series`, also used by the tests) and
reports sequences/s of (a) `train_rnn`'s pipeline (series files -> batches -> tf.data -> train step) and (b) the
same compiled train step fed one in-memory batch, their ratio (the pipeline should cost < 10%), and the
latency of a batch-1 `next_state` (the controller's hot path) and the rate of batch-1,024 dream steps
(next_state + mixture head + sampling inside one tf.while_loop).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from common.paper import DOOM_TEMPERATURE
from common.storage import episode_name, write_npz
from rnn.config import RNNTrainConfig
from rnn.data import EpisodeBatches, StreamBatches, load_series
from rnn.model import MDNRNN, ResettableLSTM, sample_mixture
from rnn.steps import PaperDecay, make_train_step


def write_synthetic_series(folder: Path, env: str = "doom", episodes: int = 8, length: tuple[int, int] = (40, 80),
                           z_size: int = 4, action_size: int | None = None, seed: int = 0,
                           noise: float = 0.05) -> list[Path]:
    """Writes series files from a known, learnable process, in `vae.encode`'s format.

    z[0] runs linearly from -1 to 1 over each episode (so the end, a "death", is predictable), the other
    dimensions follow z' = 0.8 z + 0.5 tanh(a) + noise; mu is that z and logvar is log(noise^2).
    """
    action_size = action_size or (1 if env == "doom" else 3)
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(action_size, z_size)).astype(np.float32) / np.sqrt(action_size)
    paths = []
    for e in range(episodes):
        n = int(rng.integers(length[0], length[1] + 1))
        action = rng.uniform(-1, 1, (n, action_size)).astype(np.float32)
        z = np.zeros((n, z_size), np.float32)
        z[0] = rng.normal(size=z_size) * 0.5
        for t in range(1, n):
            z[t] = 0.8 * z[t - 1] + 0.5 * np.tanh(action[t - 1] @ mixing) + noise * rng.normal(size=z_size)
        z[:, 0] = np.linspace(-1, 1, n)
        done = np.zeros(n, bool)
        done[-1] = True
        path = Path(folder) / episode_name(e)
        write_npz(path, mu=z, logvar=np.full_like(z, 2 * np.log(noise)), action=action,
                  reward=np.ones(n, np.float32), done=done, seed=np.int64(seed * 100_000 + e), env=np.str_(env))
        paths.append(path)
    return paths


def _timed(function: Any, repeats: int) -> float:
    """Seconds per call (best of three rounds of `repeats`), after one warm-up call."""
    function()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeats):
            function()
        best = min(best, (time.perf_counter() - start) / repeats)
    return best


def next_state_latency(model: MDNRNN, repeats: int = 500) -> float:
    """Seconds per batch-1 `next_state` call with tensor inputs (the controller's per-step call)."""
    z, action = tf.zeros([1, model.z_size]), tf.zeros([1, model.action_size])
    restart = tf.zeros([1]) if model.predict_done else None
    state = model.initial_state(1)
    return _timed(lambda: model.next_state(z, action, state, restart), repeats)


def dream_step_rate(model: MDNRNN, batch: int = 1024, steps: int = 20, temperature: float = DOOM_TEMPERATURE) -> float:
    """Batched dream steps per second (each advancing `batch` dreams) inside one tf.while_loop."""
    @tf.function
    def run(z: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        def body(i: tf.Tensor, z: tf.Tensor, h: tf.Tensor, c: tf.Tensor) -> tuple[tf.Tensor, ...]:
            restart = tf.fill([batch], tf.cast(tf.equal(i, 0), tf.float32)) if model.predict_done else None
            (h, c), params, _ = model.step((h, c), z, tf.zeros([batch, model.action_size]), restart)
            z = sample_mixture(params, temperature, tf.random.experimental.stateless_fold_in(seed, i))
            return i + 1, z, h, c

        state = model.initial_state(batch)
        return tf.while_loop(lambda i, *_: i < steps, body, (tf.constant(0), z, *state))[1]

    z0, seed = tf.zeros([batch, model.z_size]), tf.constant([0, 1])
    return steps / _timed(lambda: run(z0, seed).numpy(), 1)


class _KerasRNNCell(keras.layers.Layer):
    """The same LSTM with resets as a cell for keras.layers.RNN (input: x then the keep flag), for comparison."""

    def __init__(self, lstm: ResettableLSTM):
        super().__init__()
        self.lstm, self.state_size, self.output_size = lstm, [lstm.units, lstm.units], lstm.units

    def call(self, inputs: tf.Tensor, states: Any) -> tuple[tf.Tensor, list[tf.Tensor]]:
        h, c = self.lstm.step(inputs[:, :-1], tuple(states), inputs[:, -1])
        return h, [h, c]


def compare_unroll(batch: int = 100, steps: int = 100, input_size: int = 66, hidden: int = 512,
                   repeats: int = 3) -> dict[str, float]:
    """Seconds per forward + backward pass of the LSTM with resets: `ResettableLSTM` (one input matmul, then
    tf.scan) vs. keras.layers.RNN over an equivalent cell. Measured here (2 shared cores, 100 x 100 steps, best
    of rounds): LSTM 512: 0.73-1.25 s vs 0.88-1.5 s; LSTM 256: 0.23-0.37 s vs 0.21-0.33 s, each ahead in some
    rounds; a tf.while_loop slicing its inputs per step took 1.4 s at LSTM 512."""
    lstm = ResettableLSTM(hidden)
    lstm.build((None, input_size))
    keras_rnn = keras.layers.RNN(_KerasRNNCell(lstm), return_sequences=True)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(batch, steps, input_size)), tf.float32)
    keep = tf.constant(rng.random((batch, steps)) > 0.01, tf.float32)

    def timed_gradient(unroll: Any) -> float:
        @tf.function
        def gradient() -> list[tf.Tensor]:
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(unroll()))
            return tape.gradient(loss, lstm.trainable_variables)

        return _timed(lambda: gradient()[0].numpy(), repeats)

    return {"scan_s": timed_gradient(lambda: lstm(x, keep)[0]),
            "keras_rnn_s": timed_gradient(lambda: keras_rnn(tf.concat([x, keep[:, :, None]], -1)))}


def benchmark_rnn(work_dir: Path, env: str = "doom", episodes: int = 40, batch_size: int = 16, seq_len: int = 100,
                  hidden: int | None = None, z_size: int | None = None, train_steps: int = 8,
                  dream_batch: int = 1024) -> dict[str, float]:
    """Measures M's training and step speeds on synthetic series written under `work_dir`.

    Returns sequences_per_s_pipeline, sequences_per_s_in_memory, pipeline_ratio (>= 0.9 expected),
    next_state_ms_batch1, dream_steps_per_s (batched steps of `dream_batch` dreams), and the sizes used.
    """
    hidden = hidden or (512 if env == "doom" else 256)
    z_size = z_size or (64 if env == "doom" else 32)
    folder = Path(work_dir) / "series"
    write_synthetic_series(folder, env, episodes, length=(2 * seq_len, 3 * seq_len), z_size=z_size)
    data = load_series(folder)
    config = RNNTrainConfig(batch_size=batch_size, seq_len=seq_len, hidden=hidden).resolved(env)
    keras.utils.set_random_seed(0)
    model = MDNRNN(z_size=z_size, action_size=data.action_size, hidden_size=hidden,
                   predict_done=config.predict_done)
    optimizer = keras.optimizers.Adam(learning_rate=PaperDecay())
    optimizer.build(model.trainable_variables)
    step = tf.Variable(0, dtype=tf.int64)
    carried = None
    if config.predict_done:
        carried = (tf.Variable(tf.zeros([batch_size, hidden])), tf.Variable(tf.zeros([batch_size, hidden])))
    batches = (StreamBatches if config.predict_done else EpisodeBatches)(
        data, np.arange(data.num_episodes), batch_size, seq_len, seed=0)
    train_step = make_train_step(model, optimizer, step, carried, config)

    def stream(first: int, count: int):
        for s in range(first, first + count):
            yield {**batches.batch(s), "reset": np.float32(batches.is_epoch_start(s))}

    sample = next(stream(0, 1))
    spec = {k: tf.TensorSpec(v.shape, tf.float32) for k, v in sample.items()}
    in_memory = {k: tf.constant(v) for k, v in sample.items()}
    train_step(in_memory)  # trace

    def through_pipeline() -> float:
        dataset = tf.data.Dataset.from_generator(lambda: stream(1, train_steps + 1), output_signature=spec)
        batches_in = iter(dataset.prefetch(2))
        train_step(next(batches_in))[1].numpy()  # the pipeline's start-up happens once a run: not timed
        start = time.perf_counter()
        for batch in batches_in:
            train_step(batch)[1].numpy()
        return train_steps * batch_size / (time.perf_counter() - start)

    def bare() -> float:
        start = time.perf_counter()
        for _ in range(train_steps):
            train_step(in_memory)[1].numpy()
        return train_steps * batch_size / (time.perf_counter() - start)

    # Interleaved rounds, best of each: the machine is shared, so single timings are noisy.
    pipeline, memory = 0.0, 0.0
    for _ in range(2):
        pipeline, memory = max(pipeline, through_pipeline()), max(memory, bare())
    return {"env": env, "hidden": hidden, "z_size": z_size, "batch_size": batch_size, "seq_len": seq_len,
            "sequences_per_s_pipeline": pipeline, "sequences_per_s_in_memory": memory,
            "pipeline_ratio": pipeline / memory,
            "next_state_ms_batch1": next_state_latency(model) * 1e3,
            "dream_batch": dream_batch, "dream_steps_per_s": dream_step_rate(model, dream_batch)}

"""Speed of M: its real training step at the paper's sizes beside a plain Keras LSTM, and the step API.

    python -m run.benchmark --cases=rnn

`benchmark_rnn` writes synthetic series files of each task's shape (`write_synthetic_series`, also used by the
tests) and times, in alternating rounds, (a) M's training step (`rnn.steps.make_train_step`: resets at
restarts, state carried between chunks, the mixture and death losses) fed by `rnn.train`'s input pipeline,
(b) the same step fed in-memory batches (their ratio is the pipeline's cost, target >= 0.9), and (c) a
reference: `keras.layers.LSTM` of the same size with a Dense head and the same losses (Doom target: M at
>= 0.8 of its speed). It also gives the latency of a batch-1 `next_state` (the controller's hot path) and the
rate of batch-1,024 dream steps (next_state + mixture head + sampling inside one tf.while_loop).
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
from rnn.model import MDNRNN, done_loss, mixture_nll_sum, sample_mixture
from rnn.steps import PaperDecay, make_train_step, sample_z
from rnn.train import batch_dataset


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


def reference_model(hidden: int, input_size: int, output_size: int) -> keras.Model:
    """The reference M: a plain `keras.layers.LSTM` (no resets, no carried state) and a Dense head of M's size."""
    inputs = keras.Input((None, input_size))
    outputs = keras.layers.Dense(output_size)(keras.layers.LSTM(hidden, return_sequences=True)(inputs))
    return keras.Model(inputs, outputs)


def reference_train_step(reference: keras.Model, model: MDNRNN, optimizer: keras.optimizers.Optimizer,
                         config: RNNTrainConfig) -> Any:
    """A bare training step of the reference on one of M's batches: the same z draw, the same mixture and death
    losses (M's `split_head`, `mixture_nll_sum`, `done_loss`), Adam; no finite-check, no bookkeeping."""

    @tf.function
    def step(batch: dict[str, tf.Tensor]) -> tf.Tensor:
        z = sample_z(batch["mu"], batch["logvar"], tf.constant([0, 1], tf.int64))
        parts = [z[:, :-1], batch["action"]] + ([batch["restart"][..., None]] if model.predict_done else [])
        with tf.GradientTape() as tape:
            params, done_logit = model.split_head(reference(tf.concat(parts, -1)))
            z_nll, count = mixture_nll_sum(params, z[:, 1:], batch["z_mask"])
            loss = z_nll / count
            if model.predict_done:
                loss += done_loss(done_logit, batch["done"], batch["step_mask"], config.restart_weight)
        optimizer.apply(tape.gradient(loss, reference.trainable_variables), reference.trainable_variables)
        return loss

    return step


def _training_setup(work_dir: Path, env: str, episodes: int, length: tuple[int, int], batch_size: int,
                    seq_len: int, hidden: int, z_size: int) -> tuple:
    """Synthetic series of the task's shape, M and its real train step (`rnn.steps.make_train_step`), the
    batches as `rnn.train` deals them, and the reference with its step."""
    folder = Path(work_dir) / f"series_{env}"
    if not folder.is_dir():
        write_synthetic_series(folder, env, episodes, length=length, z_size=z_size)
    data = load_series(folder)
    config = RNNTrainConfig(batch_size=batch_size, seq_len=seq_len, hidden=hidden).resolved(env)
    keras.utils.set_random_seed(0)
    model = MDNRNN(z_size=z_size, action_size=data.action_size, hidden_size=hidden,
                   num_mixtures=config.num_mixtures, predict_done=config.predict_done)
    optimizer = keras.optimizers.Adam(learning_rate=PaperDecay())
    optimizer.build(model.trainable_variables)
    carried = None
    if config.predict_done:
        carried = (tf.Variable(tf.zeros([batch_size, hidden])), tf.Variable(tf.zeros([batch_size, hidden])))
    train_step = make_train_step(model, optimizer, tf.Variable(0, dtype=tf.int64), carried, config)
    batches = (StreamBatches if config.predict_done else EpisodeBatches)(
        data, np.arange(data.num_episodes), batch_size, seq_len, seed=0)
    reference = reference_model(hidden, model.input_size, model.output_size)
    reference_optimizer = keras.optimizers.Adam(learning_rate=PaperDecay())
    reference_optimizer.build(reference.trainable_variables)
    return model, train_step, batches, reference_train_step(reference, model, reference_optimizer, config)


def _seconds_per_step(step: Any, batches: Any, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        outputs = step(next(batches))
        (outputs[1] if isinstance(outputs, tuple) else outputs).numpy()
    return (time.perf_counter() - start) / steps


def time_training(work_dir: Path, env: str, episodes: int, length: tuple[int, int], batch_size: int,
                  seq_len: int, hidden: int, z_size: int, steps: int, rounds: int = 2) -> tuple[dict, MDNRNN]:
    """Seconds per step of M's real training step fed by `rnn.train`'s pipeline and fed in memory, and of the
    reference LSTM's step, in alternating rounds (best of each: the machine's load changes)."""
    model, train_step, batches, reference_step = _training_setup(
        work_dir, env, episodes, length, batch_size, seq_len, hidden, z_size)
    samples = [{k: tf.constant(v) for k, v in batches.batch(s).items()} for s in range(4)]
    for sample in samples:
        sample["reset"] = tf.constant(0.0)
    memory = (samples[i % len(samples)] for i in range(10**12))
    pipeline = iter(batch_dataset(batches, 0, 10**9, batch_size))
    for step, source in ((train_step, pipeline), (train_step, memory), (reference_step, memory)):
        _seconds_per_step(step, source, 1)  # trace; the pipeline starts
    best = {"pipeline": float("inf"), "memory": float("inf"), "reference": float("inf")}
    for _ in range(rounds):
        for name, step, source in (("pipeline", train_step, pipeline), ("memory", train_step, memory),
                                   ("reference", reference_step, memory)):
            best[name] = min(best[name], _seconds_per_step(step, source, steps))
    return best, model


def benchmark_rnn(work_dir: Path, doom: dict | None = None, carracing: dict | None = None, steps: int = 6,
                  dream_batch: int = 1024) -> dict[str, float]:
    """M's training at paper sizes vs. the reference LSTM, the pipeline's cost, and the step API's speeds.

    `doom` and `carracing` override the sizes (episodes, length, batch_size, seq_len, hidden, z_size; tests
    make them small); `carracing={"skip": True}` leaves CarRacing out. Doom's synthetic episodes last 150-500
    steps (doom_small's average is ~320), so a 100-step chunk of 100 streams holds restarts as real data does.
    Returns rnn_doom_step_s (through the pipeline), rnn_reference_step_s, rnn_doom_vs_reference_ratio (>= 0.8),
    pipeline_ratio (>= 0.9), the same for CarRacing, next_state_ms_batch1 and dream_steps_per_s.
    """
    doom = {"episodes": 160, "length": (150, 500), "batch_size": 100, "seq_len": 100, "hidden": 512,
            "z_size": 64, **(doom or {})}
    times, model = time_training(work_dir, "doom", steps=steps, **doom)
    batch = doom["batch_size"]
    results = {"doom_sizes": f"LSTM {doom['hidden']}, z {doom['z_size']}, {batch} x {doom['seq_len']}",
               "rnn_doom_step_s": times["pipeline"], "rnn_doom_in_memory_step_s": times["memory"],
               "rnn_reference_step_s": times["reference"],
               "rnn_doom_vs_reference_ratio": times["reference"] / times["pipeline"],
               "sequences_per_s_pipeline": batch / times["pipeline"],
               "sequences_per_s_in_memory": batch / times["memory"],
               "pipeline_ratio": times["memory"] / times["pipeline"]}
    carracing = {"episodes": 110, "length": (1000, 1000), "batch_size": 100, "seq_len": 999, "hidden": 256,
                 "z_size": 32, **(carracing or {})}
    if not carracing.pop("skip", False):
        car_times, _ = time_training(work_dir, "carracing", steps=max(1, steps // 3), **carracing)
        results.update({"rnn_carracing_step_s": car_times["pipeline"],
                        "rnn_carracing_reference_step_s": car_times["reference"],
                        "rnn_carracing_vs_reference_ratio": car_times["reference"] / car_times["pipeline"]})
    results.update({"next_state_ms_batch1": next_state_latency(model) * 1e3, "dream_batch": dream_batch,
                    "dream_steps_per_s": dream_step_rate(model, dream_batch)})
    return results

"""DoomRNN: Take Cover dreamt by M, as a gymnasium env, a batched vector env, and a fused CMA-ES evaluator.

The dream runs in latent space only (no frames are rendered):
  reset:  z_0 ~ N(mu, sigma^2) of a random real first frame (`series/initial_z.npz`), M state zero, restart = 1
  step a: (h, c) <- M(z_t, a_t, restart_t, (h, c)); z_{t+1} ~ the mixture from h at temperature tau;
          done when the death logit > 0 (p > 0.5, not sampled, as the paper found more stable) or at 2,100 steps;
          reward +1 a step survived.
The observation is [z, c, h] (1,088 values), what the Doom controller reads. The temperature tau (1.15 in the
paper) divides the mixture logits and scales the noise by sqrt(tau): higher tau makes the dream harder to cheat.

All dreams of a batch advance in one compiled program; finished dreams are masked inside a chunk of steps and
dropped from the batch between chunks, so a CMA-ES generation of 64 x 16 dreams costs what its survivors cost.
"""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np
import tensorflow as tf

from common.errors import DataError
from common.storage import read_npz

PAPER_TEMPERATURE = 1.15  # the 2018 code used 1.25
MAX_STEPS = 2100
CHUNK_STEPS = 64  # steps per compiled call; finished dreams leave the batch between calls


def load_initial_z(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """The (mu, logvar) pairs (N, Z) of real first frames the dream resets from."""
    schema = {"mu": (np.dtype(np.float32), (-1, -1)), "logvar": (np.dtype(np.float32), (-1, -1))}
    arrays = read_npz(path, schema)
    return arrays["mu"], arrays["logvar"]


def sample_start(mu: np.ndarray, logvar: np.ndarray, seed: int) -> np.ndarray:
    """z_0 (Z,) of a dream: a stored first frame chosen by `seed`, then a draw from its N(mu, sigma^2)."""
    rng = np.random.default_rng(int(seed))
    index = rng.integers(len(mu))
    eps = rng.standard_normal(mu.shape[1]).astype(np.float32)
    return (mu[index] + np.exp(logvar[index] / 2.0) * eps).astype(np.float32)


def dream_step(rnn, z, action, state, restart, temperature, seed, low_precision=None):
    """One step of M's dream, pure TF: (z', (h', c'), death logit or None). M consumes (z, a, restart) from
    `state`; z' is drawn from the mixture its new h predicts, at temperature tau.

    `low_precision` (from `bfloat16_weights`) runs the two large matmuls, the LSTM's recurrent one and the
    head, in bfloat16: faster on CPUs with AVX-512 BF16 or AMX, an option (the paper's dream is float32).
    """
    recurrent, head = low_precision if low_precision is not None else (None, None)
    state = rnn.advance(z, action, state, restart, recurrent)
    if head is None:
        out = rnn.head(state[0])
    else:
        kernel, bias = head
        out = tf.cast(tf.matmul(tf.cast(state[0], kernel.dtype), kernel), tf.float32) + bias
    mixture, done_logit = rnn.split_head(out)
    return rnn.sample(mixture, temperature, seed), state, done_logit


def bfloat16_weights(rnn):
    """Frozen bfloat16 copies of M's recurrent and head kernels, for `dream_step`'s fast path."""
    return (tf.constant(tf.cast(rnn.lstm.recurrent_kernel, tf.bfloat16)),
            (tf.constant(tf.cast(rnn.head.kernel, tf.bfloat16)), tf.constant(rnn.head.bias)))


class DreamDynamics:
    """The compiled dream: M's step, temperature sampling and the death threshold, for a batch of dreams.

    `controller`/`params` drive the fused rollout (`returns`); the gym envs call `step` with given actions.
    """

    def __init__(self, rnn, initial_mu: np.ndarray, initial_logvar: np.ndarray,
                 temperature: float = PAPER_TEMPERATURE, max_steps: int = MAX_STEPS, bfloat16: bool = False):
        if not rnn.predict_done:
            raise DataError("the Doom dream needs an MDNRNN with the death head (predict_done=True)")
        if initial_mu.shape[1] != rnn.z_size:
            raise DataError(f"initial_z has z size {initial_mu.shape[1]} but M has {rnn.z_size}")
        self.rnn, self.temperature, self.max_steps = rnn, float(temperature), int(max_steps)
        self.bfloat16 = bfloat16
        self._low_precision = bfloat16_weights(rnn) if bfloat16 else None
        self.initial_mu, self.initial_logvar = initial_mu.astype(np.float32), initial_logvar.astype(np.float32)
        z, hidden = rnn.z_size, rnn.hidden_size
        state = [tf.TensorSpec([None, hidden], tf.float32)] * 2
        self._step = tf.function(self._step_graph, input_signature=[
            tf.TensorSpec([None, z], tf.float32), tf.TensorSpec([None, rnn.action_size], tf.float32), *state,
            tf.TensorSpec([None], tf.float32), tf.TensorSpec([], tf.float32), tf.TensorSpec([2], tf.int32)])
        self._rollout_fns: dict[Any, Any] = {}

    def initial_z(self, seeds: np.ndarray) -> np.ndarray:
        """z_0 for each seed (see `sample_start`)."""
        return np.stack([sample_start(self.initial_mu, self.initial_logvar, seed)
                         for seed in np.asarray(seeds).reshape(-1)])

    def _advance(self, z, action, h, c, restart, temperature, seed):
        z_next, (h, c), done_logit = dream_step(self.rnn, z, action, (h, c), restart, temperature, seed,
                                                self._low_precision)
        return z_next, h, c, done_logit > 0.0

    def _step_graph(self, z, action, h, c, restart, temperature, seed):
        return self._advance(z, action, h, c, restart, temperature, seed)

    def step(self, z, action, h, c, restart, seed: tuple[int, int]):
        """One step of a batch: (z', h', c', died) from z, action, state and restart flags."""
        return self._step(tf.constant(z, tf.float32), tf.constant(action, tf.float32), h, c,
                          tf.constant(restart, tf.float32), tf.constant(self.temperature),
                          tf.constant(seed, tf.int32))

    def _rollout_fn(self, controller):
        key = (controller.env, controller.variant, controller.z_size, controller.hidden_size)
        if key in self._rollout_fns:
            return self._rollout_fns[key]
        z_size, hidden = self.rnn.z_size, self.rnn.hidden_size

        def chunk(z, h, c, params, restart, steps, temperature, seed, length):
            """Advances every dream `length` steps; a dream stops counting once it died or hit the cap."""
            alive = steps < self.max_steps

            def body(t, z, h, c, restart, steps, alive):
                action = controller.env_action_tensor(controller.act(params, controller.features(z, h, c)))
                step_seed = tf.stack([seed[0], seed[1] + t])
                z, h, c, died = self._advance(z, action, h, c, restart, temperature, step_seed)
                steps = steps + tf.cast(alive, tf.int32)
                alive = alive & ~died & (steps < self.max_steps)
                return t + 1, z, h, c, tf.zeros_like(restart), steps, alive

            _, z, h, c, restart, steps, alive = tf.while_loop(
                lambda t, *rest: (t < length) & tf.reduce_any(rest[-1]), body,
                (tf.constant(0), z, h, c, restart, steps, alive))
            return z, h, c, restart, steps, alive

        function = tf.function(chunk, input_signature=[
            tf.TensorSpec([None, z_size], tf.float32), tf.TensorSpec([None, hidden], tf.float32),
            tf.TensorSpec([None, hidden], tf.float32), tf.TensorSpec([None, controller.num_params], tf.float32),
            tf.TensorSpec([None], tf.float32), tf.TensorSpec([None], tf.int32), tf.TensorSpec([], tf.float32),
            tf.TensorSpec([2], tf.int32), tf.TensorSpec([], tf.int32)])
        self._rollout_fns[key] = function
        return function

    def returns(self, controller, params: np.ndarray, seeds: np.ndarray, chunk_steps: int = CHUNK_STEPS) -> np.ndarray:
        """Steps survived (= return) of one dream per row: params (N, P) with seeds (N,), all in one batch."""
        params = np.asarray(params, np.float32)
        seeds = np.asarray(seeds, np.int64).reshape(-1)
        count = len(seeds)
        run_chunk = self._rollout_fn(controller)
        z = tf.constant(self.initial_z(seeds))
        h, c = self.rnn.initial_state(count)
        restart = tf.ones([count])
        steps = tf.zeros([count], tf.int32)
        params_t = tf.constant(params)
        index = np.arange(count)
        result = np.zeros(count, np.int64)
        base_seed = int(np.random.default_rng(seeds).integers(2**31 - 1))
        offset = 0
        while len(index):
            z, h, c, restart, steps, alive = run_chunk(
                z, h, c, params_t, restart, steps, tf.constant(self.temperature),
                tf.constant([base_seed, offset], tf.int32), tf.constant(chunk_steps))
            offset += chunk_steps
            alive_np = alive.numpy()
            finished = ~alive_np
            result[index[finished]] = steps.numpy()[finished]
            if finished.any():
                keep = tf.constant(np.flatnonzero(alive_np))
                z, h, c, restart, steps, params_t = (tf.gather(t, keep) for t in (z, h, c, restart, steps, params_t))
                index = index[alive_np]
        return result.astype(np.float64)


def load_dream(exp_dir: str | os.PathLike, temperature: float = PAPER_TEMPERATURE,
               max_steps: int = MAX_STEPS, rnn_path: str | os.PathLike | None = None,
               bfloat16: bool = False) -> DreamDynamics:
    """The dream of an experiment: M from `rnn/rnn.keras`, resets from `series/initial_z.npz`."""
    from common.layout import experiment
    from rnn.model import load_rnn

    layout = experiment(exp_dir, create=False)
    rnn = load_rnn(rnn_path or layout.rnn_model, expect={"predict_done": True})
    mu, logvar = load_initial_z(layout.initial_z)
    return DreamDynamics(rnn, mu, logvar, temperature, max_steps, bfloat16)


class DoomDreamEnv(gym.Env):
    """DoomRNN as a gymnasium env: observation [z, c, h], action in [-1, 1], +1 a step, the death threshold.

    Args:
      exp_dir: experiment whose `rnn/rnn.keras` (Doom M) and `series/initial_z.npz` make the dream.
      temperature: tau, 1.15 as in the paper.
      dynamics: an already loaded `DreamDynamics` (instead of `exp_dir`), e.g. to share M between envs.
    """

    metadata = {"render_modes": []}

    def __init__(self, exp_dir: str | os.PathLike | None = None, temperature: float = PAPER_TEMPERATURE,
                 max_steps: int = MAX_STEPS, dynamics: DreamDynamics | None = None):
        self.dynamics = dynamics or load_dream(exp_dir, temperature, max_steps)
        rnn = self.dynamics.rnn
        size = rnn.z_size + 2 * rnn.hidden_size
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (size,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self._z = self._h = self._c = None
        self._steps = 0
        self._episode_seed = 0

    def _observation(self) -> np.ndarray:
        return np.concatenate([self._z[0], self._c.numpy()[0], self._h.numpy()[0]]).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._episode_seed = int(self.np_random.integers(2**31 - 1))
        self._z = self.dynamics.initial_z([self._episode_seed])
        self._h, self._c = self.dynamics.rnn.initial_state(1)
        self._steps = 0
        return self._observation(), {}

    def step(self, action):
        action = np.clip(np.asarray(action, np.float32).reshape(1, -1), -1.0, 1.0)
        z, self._h, self._c, died = self.dynamics.step(
            self._z, action, self._h, self._c, [1.0 if self._steps == 0 else 0.0],
            (self._episode_seed, self._steps))
        self._z = z.numpy()
        self._steps += 1
        terminated = bool(died.numpy()[0])
        truncated = not terminated and self._steps >= self.dynamics.max_steps
        return self._observation(), 1.0, terminated, truncated, {}


class DoomDreamVectorEnv(gym.vector.VectorEnv):
    """`num_envs` DoomRNN dreams stepped as one batch (one compiled call per step for all of them).

    Finished dreams reset themselves on the next step (gymnasium's next-step autoreset).
    """

    metadata = {"autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int, exp_dir: str | os.PathLike | None = None,
                 temperature: float = PAPER_TEMPERATURE, max_steps: int = MAX_STEPS,
                 dynamics: DreamDynamics | None = None):
        self.dynamics = dynamics or load_dream(exp_dir, temperature, max_steps)
        rnn = self.dynamics.rnn
        self.num_envs = num_envs
        size = rnn.z_size + 2 * rnn.hidden_size
        self.single_observation_space = gym.spaces.Box(-np.inf, np.inf, (size,), np.float32)
        self.single_action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        self._rng = np.random.default_rng()
        self._steps = np.zeros(num_envs, np.int64)
        self._needs_reset = np.zeros(num_envs, bool)
        self._t = 0

    def _observation(self) -> np.ndarray:
        return np.concatenate([self._z, self._c.numpy(), self._h.numpy()], axis=1).astype(np.float32)

    def _reset_rows(self, rows: np.ndarray) -> None:
        seeds = self._rng.integers(2**31 - 1, size=len(rows))
        self._z[rows] = self.dynamics.initial_z(seeds)
        mask = np.ones((self.num_envs, 1), np.float32)
        mask[rows] = 0.0
        self._h, self._c = self._h * mask, self._c * mask
        self._steps[rows] = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._z = np.zeros((self.num_envs, self.dynamics.rnn.z_size), np.float32)
        self._h, self._c = self.dynamics.rnn.initial_state(self.num_envs)
        self._reset_rows(np.arange(self.num_envs))
        self._needs_reset[:] = False
        return self._observation(), {}

    def step(self, actions):
        resetting = self._needs_reset
        actions = np.clip(np.asarray(actions, np.float32).reshape(self.num_envs, -1), -1.0, 1.0)
        restart = (self._steps == 0).astype(np.float32)
        z, self._h, self._c, died = self.dynamics.step(self._z, actions, self._h, self._c, restart,
                                                       (int(self._rng.integers(2**31 - 1)), self._t))
        self._t += 1
        self._z = z.numpy()
        self._steps += 1
        terminated = died.numpy().astype(bool) & ~resetting
        truncated = ~terminated & ~resetting & (self._steps >= self.dynamics.max_steps)
        rewards = np.where(resetting, 0.0, 1.0).astype(np.float32)
        if resetting.any():  # next-step autoreset: these rows start a new dream instead of stepping
            self._reset_rows(np.flatnonzero(resetting))
        self._needs_reset = terminated | truncated
        return self._observation(), rewards, terminated, truncated, {}

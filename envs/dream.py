"""DoomRNN: Take Cover dreamt by M, as one batched dream step that everything dreaming goes through.

The dream runs in latent space only (no frames are rendered):
  reset:  z_0 ~ N(mu, sigma^2) of a random real first frame (`series/initial_z.npz`), M state zero, restart = 1
  step a: (h, c) <- M(z_t, a_t, restart_t, (h, c)); z_{t+1} ~ the mixture from h at temperature tau;
          done when the death logit > 0 (p > 0.5, not sampled, as the paper found more stable) or at 2,100 steps;
          reward +1 a step survived.
The observation is [z, c, h] (1,088 values), what the Doom controller reads. The temperature tau (1.15 in the
paper) divides the mixture logits and scales the noise by sqrt(tau): higher tau makes the dream harder to cheat.

`dream_step` is that step, once, for a batch of dreams. `DreamDynamics` compiles it and drives it: CMA-ES's
fused evaluation (`returns`: all dreams of a generation advance in one compiled program; finished dreams are
masked inside a chunk of steps and dropped from the batch between chunks, so a generation of 64 x 16 dreams costs
what its survivors cost), given actions (`step`: the gym env as a batch of 1, the vector env, `run.dream`'s
videos and play) and per-dream policies in Python (`survival`: `run.dream_audit`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import tensorflow as tf

from common.errors import DataError, UserError
from common.layout import experiment
from common.paper import DOOM_TEMPERATURE, EPISODE_STEPS
from common.storage import read_npz
from rnn.model import MDNRNN, ResettableLSTM, load_rnn, lstm_gates, mixture_noise, sample_mixture_from_noise

CHUNK_STEPS = 64  # steps per compiled call; finished dreams leave the batch between calls
FAST_BATCH_MULTIPLE = 64  # the bfloat16 path's batches are padded to a multiple of this (XLA compiles per size)

class DreamState(NamedTuple):
    """A batch of dreams in progress: z_t (B, Z), M's (h, c) (B, hidden) and the steps dreamt (B,) int32.

    A dream with 0 steps is at its start: M's restart flag is 1 there, which zeroes its state.
    """

    z: Any
    h: Any
    c: Any
    steps: Any


class DreamStep(NamedTuple):
    """What one step of a batch of dreams did."""

    state: DreamState  # after the step: z_{t+1}, M's new (h, c), steps + 1
    died: Any  # (B,) bool: the death logit passed 0 (never for an M without the death head)
    truncated: Any  # (B,) bool: alive at the step cap
    death_logit: Any  # (B,) float32; -inf for an M without the death head (CarRacing's)
    reward: Any  # (B,) float32: the step's reward, M's prediction for an M that predicts reward, else 1 (Doom's
    # +1 a step survived)


def dream_step(rnn: MDNRNN, state: DreamState, action: Any, temperature: Any, seed: Any, max_steps: Any,
               fast: BFloat16Path | None = None) -> DreamStep:
    """The dream's one step, pure TF for a batch: M consumes (z_t, a_t, restart_t), z_{t+1} is drawn from the
    mixture its new h predicts at temperature tau (stateless `seed`, [2] ints), a dream dies where the death logit
    passes 0 and is truncated at `max_steps`. `fast` runs the same step on M's `BFloat16Path`.
    """
    restart = tf.cast(tf.equal(state.steps, 0), tf.float32)
    if fast is None:  # any M (rnn.interface.MemoryModel), in float32
        h, c = rnn.advance(state.z, action, (state.h, state.c), restart)
        out = rnn.head(h)
        mixture, death_logit = rnn.split_head(out)
        z_next = rnn.sample(mixture, temperature, seed)
        death_logit, reward = _death_and_reward(rnn, out, death_logit)
    else:
        h, c = fast.advance(state, action, restart)
        z_next, death_logit, reward = fast.predict(h, temperature, seed)
    steps = state.steps + 1
    died = death_logit > 0.0
    truncated = ~died & (steps >= max_steps)
    return DreamStep(DreamState(z_next, h, c, steps), died, truncated, death_logit, reward)


def _death_and_reward(rnn: MDNRNN, out: tf.Tensor, death_logit: tf.Tensor | None) -> tuple[tf.Tensor, tf.Tensor]:
    """The step's death logit (-inf for an M without the death head) and reward (M's prediction for an M that
    predicts reward, else Doom's +1 a step survived), each (B,) float32, from the head's outputs."""
    batch = tf.shape(out)[:1]
    if death_logit is None:
        death_logit = tf.fill(batch, -np.inf)
    reward = rnn.predicted_reward(out) if getattr(rnn, "predict_reward", False) else None
    if reward is None:
        reward = tf.ones(batch, tf.float32)
    return death_logit, tf.cast(reward, tf.float32)


class BFloat16Path:
    """The dream step's fast path (`controller.train --dream_bfloat16`, the paper's MDNRNN): M's matmuls in
    bfloat16, the element-wise work between them fused by XLA.

    For the LSTM, the input and recurrent kernels are stacked so that [x_t, h_t] takes one bfloat16 matmul (a GRU
    keeps its float32 input projection and multiplies h in bfloat16); XLA compiles the gates, and the head's tail
    (mixture split, Gumbel-max sampling from the very noise the float32 dream draws, death and reward), once per
    batch size. The matmuls stay with TensorFlow's oneDNN kernels: XLA's own made the whole step slower on CPU.
    Measured: see `run.benchmark --cases=dream`.
    """

    def __init__(self, rnn: MDNRNN):
        if not hasattr(rnn, "recurrent_layer"):
            raise UserError(f"--dream_bfloat16 needs the paper's M (MDNRNN, LSTM or GRU); {type(rnn).__name__} has "
                            "no recurrent_layer() with a recurrent_kernel")
        self.rnn = rnn
        layer = rnn.recurrent_layer()
        self.stacked_kernel = self.recurrent_kernel = None
        if isinstance(layer, ResettableLSTM):
            self.stacked_kernel = tf.constant(tf.cast(tf.concat([layer.kernel, layer.recurrent_kernel], 0),
                                                      tf.bfloat16))
            self.bias = tf.constant(layer.bias)
            self._gates = tf.function(_lstm_gates_bfloat16, jit_compile=True)
        else:
            self.recurrent_kernel = tf.constant(tf.cast(layer.recurrent_kernel, tf.bfloat16))
        self.head_kernel = tf.constant(tf.cast(rnn.head.kernel, tf.bfloat16))
        self.head_bias = tf.constant(rnn.head.bias)
        self._tail = tf.function(self._tail_graph, jit_compile=True)

    def advance(self, state: DreamState, action: Any, restart: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """M's new (h, c) after (z_t, a_t, restart_t), as `MDNRNN.advance`."""
        if self.stacked_kernel is None:
            return self.rnn.advance(state.z, action, (state.h, state.c), restart, self.recurrent_kernel)
        x, keep = self.rnn.cell_inputs(state.z, action, restart)
        h, c = state.h, state.c
        if keep is not None:
            h, c = h * keep[:, None], c * keep[:, None]
        products = tf.matmul(tf.cast(tf.concat([x, h], -1), tf.bfloat16), self.stacked_kernel)
        return self._gates(products, self.bias, c)

    def predict(self, h: tf.Tensor, temperature: Any, seed: Any) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """z_{t+1} drawn from the head's mixture at h, the death logit and the reward (see `dream_step`)."""
        out = tf.matmul(tf.cast(h, tf.bfloat16), self.head_kernel)
        shape = tf.stack([tf.shape(h)[0], self.rnn.z_size, self.rnn.num_mixtures])
        return self._tail(out, *mixture_noise(shape, seed), tf.cast(temperature, tf.float32))

    def _tail_graph(self, out, uniform, normal, temperature):
        out = tf.cast(out, tf.float32) + self.head_bias
        mixture, death_logit = self.rnn.split_head(out)
        return (sample_mixture_from_noise(mixture, temperature, uniform, normal),
                *_death_and_reward(self.rnn, out, death_logit))


def _lstm_gates_bfloat16(products: tf.Tensor, bias: tf.Tensor, c: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """The LSTM's update from the bfloat16 products [x, h]·[W; U] (B, 4 units), its bias and the cell c."""
    return lstm_gates(tf.cast(products, tf.float32) + bias, c)


def _state_spec(rnn: MDNRNN, batch_size: int | None) -> DreamState:
    hidden = tf.TensorSpec([batch_size, rnn.hidden_size], tf.float32)
    return DreamState(tf.TensorSpec([batch_size, rnn.z_size], tf.float32), hidden, hidden,
                      tf.TensorSpec([batch_size], tf.int32))


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


class DreamDynamics:
    """M's dream compiled for batches of dreams, at temperature tau with a step cap.

    Args:
      rnn: M; Doom's has the death head (the dream ends where it predicts death), CarRacing's runs to the cap.
      initial_mu, initial_logvar: (N, Z) real first frames `reset` draws z_0 from (None: callers `start`
        from their own z_0).
      temperature: tau, 1.15 as in the paper; `step` may override it per call.
      max_steps: the step cap, 2,100 as the real game's.
      bfloat16: the two large matmuls in bfloat16 (`controller.train --dream_bfloat16`).
      batch_size: the batch `step` is compiled for (None: any). A fixed size lets TensorFlow pick kernels for it
        (batch 1: the dream shown one frame at a time).
    """

    def __init__(self, rnn: MDNRNN, initial_mu: np.ndarray | None = None, initial_logvar: np.ndarray | None = None,
                 temperature: float = DOOM_TEMPERATURE, max_steps: int = EPISODE_STEPS["doom"], bfloat16: bool = False,
                 batch_size: int | None = None):
        if initial_mu is not None and initial_mu.shape[1] != rnn.z_size:
            raise DataError(f"initial_z has z size {initial_mu.shape[1]} but M has {rnn.z_size}")
        self.rnn, self.temperature, self.max_steps = rnn, float(temperature), int(max_steps)
        self.bfloat16 = bfloat16
        self._fast = BFloat16Path(rnn) if bfloat16 else None
        self.initial_mu = None if initial_mu is None else initial_mu.astype(np.float32)
        self.initial_logvar = None if initial_logvar is None else initial_logvar.astype(np.float32)
        self._step = tf.function(self._step_graph, input_signature=[
            _state_spec(rnn, batch_size), tf.TensorSpec([batch_size, rnn.action_size], tf.float32),
            tf.TensorSpec([], tf.float32), tf.TensorSpec([2], tf.int32)])
        self._rollout_fns: dict[Any, Any] = {}

    def _step_graph(self, state: DreamState, action, temperature, seed) -> DreamStep:
        return dream_step(self.rnn, state, action, temperature, seed, self.max_steps, self._fast)

    def initial_z(self, seeds: Any) -> np.ndarray:
        """z_0 for each seed (see `sample_start`)."""
        if self.initial_mu is None:
            raise DataError("this dream has no start frames (initial_z): start it from a given z_0")
        return np.stack([sample_start(self.initial_mu, self.initial_logvar, seed)
                         for seed in np.asarray(seeds).reshape(-1)])

    def start(self, z: Any) -> DreamState:
        """Dreams starting from z_0 (B, Z): M's state zero, no steps dreamt."""
        z = tf.constant(np.asarray(z, np.float32))
        h, c = self.rnn.initial_state(int(z.shape[0]))
        return DreamState(z, h, c, tf.zeros([z.shape[0]], tf.int32))

    def reset(self, seeds: Any) -> DreamState:
        """One new dream per seed, from a real first frame (see `sample_start`)."""
        return self.start(self.initial_z(seeds))

    def step(self, state: DreamState, action: Any, seed: Any, temperature: float | None = None) -> DreamStep:
        """One compiled `dream_step` of a batch with given actions (B, A) and a stateless seed ([2] ints)."""
        state = DreamState(*(tf.cast(part, dtype) for part, dtype in zip(state, (tf.float32,) * 3 + (tf.int32,))))
        return self._step(state, tf.cast(action, tf.float32),
                          tf.constant(self.temperature if temperature is None else temperature, tf.float32),
                          tf.constant(seed, tf.int32))

    def survival(self, act: Callable[[DreamState], np.ndarray], seeds: np.ndarray, seed: int) -> np.ndarray:
        """The return of one dream per seed (Doom: steps survived; CarRacing: M's summed rewards), all in one
        batch, with actions `act(state)` (B, A) computed in Python each step (e.g. fixed policies); step t samples
        with the stateless seed (seed, t)."""
        state = self.reset(seeds)
        alive = np.ones(len(state.steps), bool)
        total = np.zeros(len(alive), np.float64)
        for t in range(self.max_steps):
            result = self.step(state, act(state), (seed, t))
            state = result.state
            total += np.where(alive, result.reward.numpy(), 0.0)
            alive &= ~(result.died.numpy() | result.truncated.numpy())
            if not alive.any():
                break
        return total

    def _rollout_fn(self, controller):
        key = repr(sorted(controller.get_config().items()))  # any C (controller.interface.ControllerModel)
        if key not in self._rollout_fns:
            self._rollout_fns[key] = self._compile_chunk(controller)
        return self._rollout_fns[key]

    def _compile_chunk(self, controller):
        def chunk(state, total, params, temperature, seed, length):
            """Advances every dream `length` steps, adding each step's reward to `total`; a dream stops counting
            once it died or hit the cap."""
            def body(t, state, total, alive):
                action = controller.env_action_tensor(controller.act(params, controller.features(
                    state.z, state.h, state.c)))
                result = self._step_graph(state, action, temperature, tf.stack([seed[0], seed[1] + t]))
                steps = tf.where(alive, result.state.steps, state.steps)
                total = total + tf.where(alive, result.reward, 0.0)
                alive = alive & ~result.died & ~result.truncated
                return t + 1, result.state._replace(steps=steps), total, alive

            _, state, total, alive = tf.while_loop(
                lambda t, state, total, alive: (t < length) & tf.reduce_any(alive), body,
                (tf.constant(0), state, total, state.steps < self.max_steps))
            return state, total, alive

        return tf.function(chunk, input_signature=[
            _state_spec(self.rnn, None), tf.TensorSpec([None], tf.float32),
            tf.TensorSpec([None, controller.num_params], tf.float32), tf.TensorSpec([], tf.float32),
            tf.TensorSpec([2], tf.int32), tf.TensorSpec([], tf.int32)])

    def returns(self, controller, params: np.ndarray, seeds: np.ndarray, chunk_steps: int = CHUNK_STEPS) -> np.ndarray:
        """The return of one dream per row, params (N, P) with seeds (N,), all in one batch: the sum of the
        steps' rewards (Doom: the steps survived; CarRacing: M's predicted rewards)."""
        seeds = np.asarray(seeds, np.int64).reshape(-1)
        run_chunk = self._rollout_fn(controller)
        result = np.zeros(len(seeds), np.float64)
        base_seed = int(np.random.default_rng(seeds).integers(2**31 - 1))
        batch = self._batch_of(np.arange(len(seeds)), self.reset(seeds), tf.zeros([len(seeds)], tf.float32),
                               tf.constant(np.asarray(params, np.float32)), np.arange(len(seeds)))
        offset = 0
        while (batch.index >= 0).any():
            state, total, alive = run_chunk(batch.state, batch.total, batch.params, tf.constant(self.temperature),
                                            tf.constant([base_seed, offset], tf.int32), tf.constant(chunk_steps))
            offset += chunk_steps
            alive_np = alive.numpy()
            finished = ~alive_np & (batch.index >= 0)
            result[batch.index[finished]] = total.numpy()[finished]
            batch = _Batch(state, total, batch.params, batch.index)
            if finished.any():
                batch = self._batch_of(np.flatnonzero(alive_np), *batch)
        return result

    def _batch_of(self, rows: np.ndarray, state: DreamState, total: tf.Tensor, params: tf.Tensor,
                  index: np.ndarray) -> _Batch:
        """The dreams at `rows` of a batch. On the bfloat16 path the batch is padded with finished dreams (index -1)
        to a multiple of `FAST_BATCH_MULTIPLE` rows: XLA compiles its parts once per batch size."""
        pad = (-len(rows)) % FAST_BATCH_MULTIPLE if self._fast is not None and len(rows) else 0
        gather = tf.constant(np.concatenate([rows, np.repeat(rows[:1], pad)]))
        state = DreamState(*(tf.gather(part, gather) for part in state))
        if pad:  # a dream at the step cap is finished: the chunk leaves it as it is
            steps = np.concatenate([state.steps.numpy()[:len(rows)], np.full(pad, self.max_steps, np.int32)])
            state = state._replace(steps=tf.constant(steps))
        return _Batch(state, tf.gather(total, gather), tf.gather(params, gather),
                      np.concatenate([index[rows], np.full(pad, -1)]))


class _Batch(NamedTuple):
    """The dreams `DreamDynamics.returns` is running: their state, returns so far, C's parameters and result rows
    (-1: padding)."""

    state: DreamState
    total: Any
    params: Any
    index: np.ndarray


def load_dream(exp_dir: str | os.PathLike, temperature: float = DOOM_TEMPERATURE, max_steps: int | None = None,
               rnn_path: str | os.PathLike | None = None, bfloat16: bool = False, task: str = "doom") -> DreamDynamics:
    """The dream of an experiment: M from `rnn/rnn.keras`, resets from `series/initial_z.npz`; `max_steps`
    defaults to the task's cap. Doom's M must predict death; CarRacing's must predict reward (the dream's return
    is the sum of its predictions), else a one-line `DataError` names the file."""
    layout = experiment(exp_dir, create=False)
    path = rnn_path or layout.rnn_model
    if task == "doom":
        rnn = load_rnn(path, expect={"predict_done": True})
    elif task == "carracing":
        rnn = load_rnn(path)
        if rnn.action_size != 3:
            raise DataError(f"{path}: an M of {rnn.action_size} action value(s), not CarRacing's 3")
        if not getattr(rnn, "predict_reward", False):
            raise DataError(f"{path}: the CarRacing dream pays M's predicted reward, and this M has no reward output "
                            "(train one with python -m rnn.train --predict_reward)")
    else:
        raise UserError(f"no dream of task {task!r}; choose doom or carracing")
    mu, logvar = load_initial_z(layout.initial_z)
    return DreamDynamics(rnn, mu, logvar, temperature, max_steps or EPISODE_STEPS[task], bfloat16)


def _doom_dynamics(exp_dir, temperature: float, max_steps: int, dynamics: DreamDynamics | None) -> DreamDynamics:
    dynamics = dynamics or load_dream(exp_dir, temperature, max_steps)
    if not dynamics.rnn.predict_done or dynamics.initial_mu is None:
        raise DataError("the Doom dream needs an MDNRNN with the death head (predict_done=True) and start frames")
    return dynamics


def _observation(state: DreamState) -> np.ndarray:
    """[z, c, h] (B, Z + 2 hidden), what the Doom controller reads."""
    return np.concatenate([np.asarray(state.z), np.asarray(state.c), np.asarray(state.h)], axis=1).astype(np.float32)


class DoomDreamEnv(gym.Env):
    """DoomRNN as a gymnasium env: observation [z, c, h], action in [-1, 1], +1 a step, the death threshold.

    Args:
      exp_dir: experiment whose `rnn/rnn.keras` (Doom M) and `series/initial_z.npz` make the dream.
      temperature: tau, 1.15 as in the paper.
      dynamics: an already loaded `DreamDynamics` (instead of `exp_dir`), e.g. to share M between envs.
    """

    metadata = {"render_modes": []}

    def __init__(self, exp_dir: str | os.PathLike | None = None, temperature: float = DOOM_TEMPERATURE,
                 max_steps: int = EPISODE_STEPS["doom"], dynamics: DreamDynamics | None = None):
        self.dynamics = _doom_dynamics(exp_dir, temperature, max_steps, dynamics)
        rnn = self.dynamics.rnn
        size = rnn.z_size + 2 * rnn.hidden_size
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (size,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self._state: DreamState | None = None
        self._steps = 0
        self._episode_seed = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._episode_seed = int(self.np_random.integers(2**31 - 1))
        self._state = self.dynamics.reset([self._episode_seed])
        self._steps = 0
        return _observation(self._state)[0], {}

    def step(self, action):
        action = np.clip(np.asarray(action, np.float32).reshape(1, -1), -1.0, 1.0)
        result = self.dynamics.step(self._state, action, (self._episode_seed, self._steps))
        self._state = result.state
        self._steps += 1
        return (_observation(self._state)[0], 1.0, bool(result.died.numpy()[0]), bool(result.truncated.numpy()[0]),
                {})


class DoomDreamVectorEnv(gym.vector.VectorEnv):
    """`num_envs` DoomRNN dreams stepped as one batch (one compiled call per step for all of them).

    Finished dreams reset themselves on the next step (gymnasium's next-step autoreset).
    """

    metadata = {"autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int, exp_dir: str | os.PathLike | None = None,
                 temperature: float = DOOM_TEMPERATURE, max_steps: int = EPISODE_STEPS["doom"],
                 dynamics: DreamDynamics | None = None):
        self.dynamics = _doom_dynamics(exp_dir, temperature, max_steps, dynamics)
        rnn = self.dynamics.rnn
        self.num_envs = num_envs
        size = rnn.z_size + 2 * rnn.hidden_size
        self.single_observation_space = gym.spaces.Box(-np.inf, np.inf, (size,), np.float32)
        self.single_action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        self._rng = np.random.default_rng()
        self._state: DreamState | None = None
        self._needs_reset = np.zeros(num_envs, bool)
        self._t = 0

    def _reset_rows(self, state: DreamState, rows: np.ndarray) -> DreamState:
        """`state` with new dreams in `rows`: z_0 from a real first frame, M's state zero, no steps dreamt."""
        z, steps = np.array(state.z, np.float32), np.array(state.steps, np.int32)
        z[rows] = self.dynamics.initial_z(self._rng.integers(2**31 - 1, size=len(rows)))
        steps[rows] = 0
        mask = np.ones((self.num_envs, 1), np.float32)
        mask[rows] = 0.0
        return DreamState(z, state.h * mask, state.c * mask, steps)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        rnn = self.dynamics.rnn
        empty = self.dynamics.start(np.zeros((self.num_envs, rnn.z_size), np.float32))
        self._state = self._reset_rows(empty, np.arange(self.num_envs))
        self._needs_reset[:] = False
        return _observation(self._state), {}

    def step(self, actions):
        resetting = self._needs_reset
        actions = np.clip(np.asarray(actions, np.float32).reshape(self.num_envs, -1), -1.0, 1.0)
        result = self.dynamics.step(self._state, actions, (int(self._rng.integers(2**31 - 1)), self._t))
        self._t += 1
        self._state = result.state
        terminated = result.died.numpy() & ~resetting
        truncated = result.truncated.numpy() & ~resetting
        rewards = np.where(resetting, 0.0, 1.0).astype(np.float32)
        if resetting.any():  # next-step autoreset: these rows start a new dream instead of stepping
            self._state = self._reset_rows(self._state, np.flatnonzero(resetting))
        self._needs_reset = terminated | truncated
        return _observation(self._state), rewards, terminated, truncated, {}

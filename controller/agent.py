"""The agent: V encodes the frame, C acts on [z, h] (Doom: [z, c, h]), M advances its state; one compiled call a frame.

This is the paper's `rollout(controller)` loop: z_t = V(x_t), a_t = C(z_t, h_t), h_{t+1} = M(z_t, a_t, h_t).
z is sampled from N(mu, sigma^2) at every step, as the 2018 agent did.

`play_episodes` plays several episodes (each its own C and seed) in lockstep on as many environments, with one
compiled V + C + M call a step for all of them: V encodes 4 frames at about half the cost a frame of encoding one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from common.errors import DataError
from controller.model import Controller


def check_compatible(vae, rnn, controller: Controller) -> None:
    """Raises a one-line `DataError` when V, M and C disagree in sizes or task."""
    problems = []
    if vae.z_size != controller.z_size or rnn.z_size != controller.z_size:
        problems.append(f"z sizes differ (V {vae.z_size}, M {rnn.z_size}, C {controller.z_size})")
    if rnn.hidden_size != controller.hidden_size:
        problems.append(f"M has {rnn.hidden_size} LSTM units but C expects {controller.hidden_size}")
    if rnn.action_size != controller.action_size:
        problems.append(f"M takes {rnn.action_size} action values but {controller.env} has {controller.action_size}")
    if controller.env == "doom" and not rnn.predict_done:  # a CarRacing M may predict the episode's end too
        problems.append("M lacks the Doom death head but the task is doom")
    if problems:
        raise DataError("V, M and C do not fit together: " + "; ".join(problems))


class Agent:
    """V + M + C. `act(frame, state, params, first, seed)` returns (env action, next M state, z); `act_batch` does
    the same for B episodes at once, each row with its own C, seed and state.

    Both run one compiled graph (at batch 1 for `act`), so an episode played alone is, to the bit, the episode
    played as the only row of `play_episodes`. A row's floats do depend on the batch it shares (matrix kernels
    sum in a shape-dependent order), so `RealEvaluator` fixes the chunks it plays together by task index.
    """

    def __init__(self, vae, rnn, controller: Controller):
        check_compatible(vae, rnn, controller)
        self.vae, self.rnn, self.controller = vae, rnn, controller
        self._functions = {}  # batch size -> concrete function of `_act_graph`
        self._no_override = {}  # batch size -> zero override, not used

    def initial_state(self, batch: int = 1) -> tuple[tf.Tensor, tf.Tensor]:
        return self.rnn.initial_state(batch)

    def _function(self, batch: int):
        """The compiled step at one batch size. Calling the concrete function skips tf.function's argument
        dispatch (a third of a batch-1 step)."""
        if batch not in self._functions:
            controller, hidden = self.controller, self.rnn.hidden_size
            function = tf.function(self._act_graph, jit_compile=True, input_signature=[
                tf.TensorSpec([batch, 64, 64, 3], tf.uint8), tf.TensorSpec([batch, hidden], tf.float32),
                tf.TensorSpec([batch, hidden], tf.float32), tf.TensorSpec([batch, controller.num_params], tf.float32),
                tf.TensorSpec([batch], tf.float32), tf.TensorSpec([batch, 2], tf.int32),
                tf.TensorSpec([batch, controller.action_size], tf.float32), tf.TensorSpec([batch], tf.bool)])
            self._functions[batch] = function.get_concrete_function()
            self._no_override[batch] = (tf.zeros([batch, controller.action_size]), tf.zeros([batch], tf.bool))
        return self._functions[batch]

    def _act_graph(self, frames, h, c, params, first, seeds, override, use_override):
        mu, logvar = self.vae.encode(tf.cast(frames, tf.float32) / 255.0)
        # Each row draws its own (seed, step) noise: a row's z does not depend on the batch it is in.
        noise = tf.concat([tf.random.stateless_normal([1, self.vae.z_size], seeds[row])
                           for row in range(frames.shape[0])], axis=0)
        z = mu + tf.exp(logvar / 2.0) * noise
        keep = 1.0 - first[:, None]  # a row starting an episode starts from M's zero state
        h, c = h * keep, c * keep
        output = self.controller.act(params, self.controller.features(z, h, c))
        action = tf.where(use_override[:, None], override, self.controller.env_action_tensor(output))
        h_next, c_next = self.rnn.advance(z, action, (h, c), first if self.rnn.predict_done else None)
        return action, h_next, c_next, z

    def act_batch(self, frames: np.ndarray, state, params: np.ndarray, first: np.ndarray, seeds: np.ndarray,
                  override: np.ndarray | None = None, use_override: np.ndarray | None = None):
        """One frame of B episodes: frames (B, 64, 64, 3), params (B, P) one C a row, first (B,) 1 where an episode
        starts (its state is zeroed), seeds (B, 2) each row's (seed, step) -> (actions (B, A), state, z (B, Z)).

        Rows where `use_override` (B,) is set take `override` (B, A) in place of C's action, and M advances with
        it (e.g. exploration)."""
        batch = len(frames)
        function = self._function(batch)
        if override is None:
            override, use_override = self._no_override[batch]
        else:
            override, use_override = tf.constant(override, tf.float32), tf.constant(use_override, tf.bool)
        action, h, c, z = function(tf.constant(frames, tf.uint8), state[0], state[1], tf.constant(params, tf.float32),
                                   tf.constant(first, tf.float32), tf.constant(seeds, tf.int32), override,
                                   use_override)
        return action.numpy(), (h, c), z.numpy()

    def act(self, frame: np.ndarray, state, params: np.ndarray, first: bool, seed: tuple[int, int],
            override: np.ndarray | None = None):
        """One frame: (env action (A,), next state, z (Z,)).

        `override` replaces C's action (e.g. exploration): M then advances with the action actually taken.
        """
        forced = override is not None
        action, state, z = self.act_batch(
            frame[None], state, np.reshape(params, (1, -1)), np.array([float(first)], np.float32),
            np.array([seed], np.int32), np.reshape(override, (1, -1)) if forced else None,
            np.array([True]) if forced else None)
        return action[0], state, z[0]


def play_episode(env, agent: Agent, params: np.ndarray, seed: int, max_steps: int | None = None,
                 on_step: Callable[[np.ndarray, np.ndarray, Any], None] | None = None) -> tuple[float, int]:
    """Runs one real episode with the agent from `env.reset(seed=seed)`; returns (total reward, steps).

    `on_step(frame, action, z)` sees every frame (e.g. to record a video or the rollout).
    """
    params = np.asarray(params, np.float32)
    frame, _ = env.reset(seed=int(seed))
    state = agent.initial_state()
    total, steps = 0.0, 0
    while max_steps is None or steps < max_steps:
        action, state, z = agent.act(frame, state, params, steps == 0, (int(seed) & 0x7FFFFFFF, steps))
        if on_step is not None:
            on_step(frame, action, z)
        frame, reward, terminated, truncated, _ = env.step(action)
        total += float(reward)
        steps += 1
        if terminated or truncated:
            break
    return total, steps


def play_episodes(envs: list, agent: Agent, tasks: list[tuple[np.ndarray, int]],
                  max_steps: int | None = None) -> list[float]:
    """Plays `tasks`, (C's params, seed) pairs, on `envs` in lockstep; returns each task's total reward.

    Each environment plays one task at a time and takes the next when its episode ends; every step is one
    compiled V + C + M call for all environments still playing (the batch shrinks as the tasks run out, so the
    longest episode of a chunk does not pay for the rows that finished). Each episode has its own reset seed, z
    noise and state, as in `play_episode`; with one environment the totals are `play_episode`'s to the bit.
    """
    queue = iter(enumerate(tasks))
    totals = [0.0] * len(tasks)
    rows = min(len(envs), len(tasks))
    playing = {"env": list(envs[:rows]), "task": [0] * rows, "frame": np.zeros((rows, 64, 64, 3), np.uint8),
               "params": np.zeros((rows, agent.controller.num_params), np.float32),
               "first": np.ones(rows, np.float32), "seed": np.zeros((rows, 2), np.int32)}  # seed: (seed, step)

    def start_next(row: int) -> bool:
        index, task = next(queue, (None, None))
        if index is None:
            return False
        params, seed = task
        playing["task"][row] = index
        playing["frame"][row] = playing["env"][row].reset(seed=int(seed))[0]
        playing["params"][row], playing["first"][row] = params, 1.0
        playing["seed"][row] = (int(seed) & 0x7FFFFFFF, 0)
        return True

    for row in range(rows):
        start_next(row)
    state = agent.initial_state(rows)
    while playing["env"]:
        actions, state, _ = agent.act_batch(playing["frame"], state, playing["params"], playing["first"],
                                            playing["seed"])
        playing["first"][:] = 0.0
        finished = []
        for row, env in enumerate(playing["env"]):
            playing["frame"][row], reward, terminated, truncated, _ = env.step(actions[row])
            totals[playing["task"][row]] += float(reward)
            playing["seed"][row, 1] += 1
            ended = terminated or truncated or (max_steps is not None and playing["seed"][row, 1] >= max_steps)
            if ended and not start_next(row):
                finished.append(row)
        if finished:  # no task left for these rows: they leave the batch
            keep = [row for row in range(len(playing["env"])) if row not in finished]
            playing = {name: [values[row] for row in keep] if isinstance(values, list) else values[keep]
                       for name, values in playing.items()}
            keep = tf.constant(keep, tf.int32)
            state = (tf.gather(state[0], keep), tf.gather(state[1], keep))
    return totals

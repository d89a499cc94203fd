"""The agent: V encodes the frame, C acts on [z, h] (Doom: [z, c, h]), M advances its state; one compiled call a frame.

This is the paper's `rollout(controller)` loop: z_t = V(x_t), a_t = C(z_t, h_t), h_{t+1} = M(z_t, a_t, h_t).
z is sampled from N(mu, sigma^2) at every step, as the 2018 agent did.
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
    """V + M + C. `act(frame, state, params, first, seed)` returns (env action, next M state, z)."""

    def __init__(self, vae, rnn, controller: Controller):
        check_compatible(vae, rnn, controller)
        self.vae, self.rnn, self.controller = vae, rnn, controller
        hidden = rnn.hidden_size
        self._act = tf.function(self._act_graph, jit_compile=True, input_signature=[
            tf.TensorSpec([1, 64, 64, 3], tf.uint8), tf.TensorSpec([1, hidden], tf.float32),
            tf.TensorSpec([1, hidden], tf.float32), tf.TensorSpec([controller.num_params], tf.float32),
            tf.TensorSpec([1], tf.float32), tf.TensorSpec([2], tf.int32),
            tf.TensorSpec([1, controller.action_size], tf.float32), tf.TensorSpec([], tf.bool)])
        # Calling the concrete function skips tf.function's argument dispatch: a third of a batch-1 step.
        self._act = self._act.get_concrete_function()
        self._no_override = tf.zeros([1, controller.action_size])
        self._restart = {True: tf.constant([1.0]), False: tf.constant([0.0])}
        self._forced = {True: tf.constant(True), False: tf.constant(False)}

    def initial_state(self) -> tuple[tf.Tensor, tf.Tensor]:
        return self.rnn.initial_state(1)

    def _act_graph(self, frame, h, c, params, restart, seed, override, use_override):
        mu, logvar = self.vae.encode(tf.cast(frame, tf.float32) / 255.0)
        z = mu + tf.exp(logvar / 2.0) * tf.random.stateless_normal(tf.shape(mu), seed)
        output = self.controller.act(params, self.controller.features(z, h, c))
        action = tf.where(use_override, override, self.controller.env_action_tensor(output))
        h_next, c_next = self.rnn.advance(z, action, (h, c), restart if self.rnn.predict_done else None)
        return action, h_next, c_next, z

    def act(self, frame: np.ndarray, state, params: np.ndarray, first: bool, seed: tuple[int, int],
            override: np.ndarray | None = None):
        """One frame: (env action (A,), next state, z (Z,)).

        `override` replaces C's action (e.g. exploration): M then advances with the action actually taken.
        """
        forced = override is not None
        action, h, c, z = self._act(tf.constant(frame[None]), state[0], state[1],
                                    tf.convert_to_tensor(params, tf.float32), self._restart[bool(first)],
                                    tf.constant(seed, tf.int32),
                                    tf.constant(np.reshape(override, (1, -1)), tf.float32) if forced
                                    else self._no_override, self._forced[forced])
        return action.numpy()[0], (h, c), z.numpy()[0]


def play_episode(env, agent: Agent, params: np.ndarray, seed: int, max_steps: int | None = None,
                 on_step: Callable[[np.ndarray, np.ndarray, Any], None] | None = None) -> tuple[float, int]:
    """Runs one real episode with the agent from `env.reset(seed=seed)`; returns (total reward, steps).

    `on_step(frame, action, z)` sees every frame (e.g. to record a video or the rollout).
    """
    params = tf.constant(np.asarray(params, np.float32))  # once an episode, not once a frame
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

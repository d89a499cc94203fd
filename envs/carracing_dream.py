"""CarRacingRNN: CarRacing dreamt by an M that predicts reward (and, optionally, the episode's end).

  reset:  z_0 ~ N(mu, sigma^2) of a random real first frame (`series/initial_z.npz`), M state zero
  step a: a = (steer in [-1, 1], gas in [0, 1], brake in [0, 1]); (h, c) <- M(z_t, a_t, (h, c));
          the reward is M's prediction for the step; z_{t+1} ~ the mixture from h at temperature tau;
          the episode ends where the done logit > 0 (an M trained with --predict_done: leaving the playfield)
          or at 1,000 steps.
The observation is [z, h] (Z + hidden values), what CarRacing's controller reads. Its steps are `DreamDynamics`'
(`envs.dream`), the same compiled step that trains C: `controller.train --env=carracingrnn` plays a whole
generation as one batch through `DreamDynamics.returns`; this env is the gymnasium face of one such dream.
"""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np

from common.errors import DataError
from common.paper import EPISODE_STEPS
from envs.dream import DreamDynamics, DreamState, load_dream

CARRACING_DREAM_TEMPERATURE = 1.0  # M's own distribution; `controller.train --temperature` sets another


def observation(state: DreamState) -> np.ndarray:
    """[z, h] (B, Z + hidden), what the CarRacing controller reads."""
    return np.concatenate([np.asarray(state.z), np.asarray(state.h)], axis=1).astype(np.float32)


class CarRacingDreamEnv(gym.Env):
    """CarRacingRNN as a gymnasium env: observation [z, h], action (steer, gas, brake), M's predicted reward.

    Args:
      exp_dir: experiment whose `rnn/rnn.keras` (a CarRacing M with a reward output) and
        `series/initial_z.npz` make the dream.
      temperature: tau (1.0: M's own distribution).
      max_steps: the step cap, 1,000 as the real game's.
      dynamics: an already loaded `DreamDynamics` (instead of `exp_dir`).
    """

    metadata = {"render_modes": []}

    def __init__(self, exp_dir: str | os.PathLike | None = None, temperature: float = CARRACING_DREAM_TEMPERATURE,
                 max_steps: int = EPISODE_STEPS["carracing"], dynamics: DreamDynamics | None = None):
        self.dynamics = dynamics or load_dream(exp_dir, temperature, max_steps, task="carracing")
        rnn = self.dynamics.rnn
        if not getattr(rnn, "predict_reward", False) or rnn.action_size != 3 or self.dynamics.initial_mu is None:
            raise DataError("the CarRacing dream needs an M with a reward output, 3 action values and start frames")
        size = rnn.z_size + rnn.hidden_size
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (size,), np.float32)
        self.action_space = gym.spaces.Box(np.array([-1.0, 0.0, 0.0], np.float32), np.array([1.0, 1.0, 1.0],
                                                                                            np.float32))
        self._state: DreamState | None = None
        self._steps = 0
        self._episode_seed = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._episode_seed = int(self.np_random.integers(2**31 - 1))
        self._state = self.dynamics.reset([self._episode_seed])
        self._steps = 0
        return observation(self._state)[0], {}

    def step(self, action):
        action = np.clip(np.asarray(action, np.float32).reshape(1, 3), self.action_space.low, self.action_space.high)
        result = self.dynamics.step(self._state, action, (self._episode_seed, self._steps))
        self._state = result.state
        self._steps += 1
        return (observation(self._state)[0], float(result.reward.numpy()[0]), bool(result.died.numpy()[0]),
                bool(result.truncated.numpy()[0]), {})

"""CarRacing-v3 with 64x64x3 frames: rows 0-83 kept (the dashboard dropped), resized as V expects."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from envs.carracing_render import make_fast_carracing
from envs.frames import FRAME_SIZE, legacy_carracing_frame, resize_frame

CROP_ROWS = 84  # CarRacing's 96x96 frame shows the dashboard in rows 84-95.


class CarRacing64Env(gym.ObservationWrapper):
    """`CarRacing-v3` giving (64, 64, 3) uint8 frames; actions are the base env's (steer, gas, brake).

    v3 keeps the paper's reward, frame rate and spaces but renders with pygame (pixels differ from gym 0.9's
    CarRacing-v0) and ends an episode when the lap is complete. `legacy_preprocess=True` reproduces the 2018
    code's per-frame min-max rescale and byte cast (see `envs.frames.legacy_carracing_frame`). The game renders
    its road with `envs.carracing_render` (the same pixels, twice the steps a second).
    """

    def __init__(self, legacy_preprocess: bool = False, render_mode: str | None = None, **kwargs: Any):
        super().__init__(make_fast_carracing(render_mode=render_mode, **kwargs))
        self.legacy_preprocess = legacy_preprocess
        self.observation_space = gym.spaces.Box(0, 255, (FRAME_SIZE, FRAME_SIZE, 3), np.uint8)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        view = observation[:CROP_ROWS]
        return legacy_carracing_frame(view) if self.legacy_preprocess else resize_frame(view)

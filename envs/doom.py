"""VizDoom Take Cover configured as the 2018 agent played it, with 64x64x3 frames and a continuous action."""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np

from common.paper import EPISODE_STEPS
from envs.frames import FRAME_SIZE, resize_frame

MAX_STEPS = EPISODE_STEPS["doom"]  # 2,100, ~60 s of play; solved at > 750 steps survived on average over 100 episodes.
SKILL = 4  # The 2018 gym wrapper asked for 5 and silently clamped it to 4; skill 5 is much harder.
EPISODE_START_TIME = 14  # tics skipped at the start, as the 2018 environment did.
RESOLUTIONS = {"640x480": "RES_640X480", "320x240": "RES_320X240", "160x120": "RES_160X120"}
KEPT_ROWS_FRACTION = 400 / 480  # rows 0-399 of 480: the HUD's status bar is dropped.

LEFT, STAY, RIGHT = 0, 1, 2


def action_to_move(action: float) -> int:
    """The paper's thirds: a < -1/3 moves left, a > 1/3 moves right, anything between stays."""
    if action < -1.0 / 3.0:
        return LEFT
    if action > 1.0 / 3.0:
        return RIGHT
    return STAY


_BUTTONS = {LEFT: [1, 0], STAY: [0, 0], RIGHT: [0, 1]}  # take_cover.cfg's buttons: MOVE_LEFT, MOVE_RIGHT


class TakeCover64Env(gym.Env):
    """Doom Take Cover: survive fireballs; reward +1 a step, at most 2,100 steps, (64, 64, 3) uint8 frames.

    The action is one float in [-1, 1] split in thirds into left / stay / right. The game renders at 640x480
    RGB with its HUD (the paper's setting; `resolution='320x240'` is ~4x faster and keeps the same view), rows
    0-399 of 480 are kept and resized to 64x64. Headless.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 35}

    def __init__(self, resolution: str = "640x480", max_steps: int = MAX_STEPS, skill: int = SKILL,
                 render_mode: str | None = None):
        if resolution not in RESOLUTIONS:
            raise ValueError(f"resolution must be one of {sorted(RESOLUTIONS)}, got {resolution!r}")
        self.resolution, self.max_steps, self.skill = resolution, max_steps, skill
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(0, 255, (FRAME_SIZE, FRAME_SIZE, 3), np.uint8)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self._game = None
        self._steps = 0
        self._screen: np.ndarray | None = None

    def _start_game(self):
        import vizdoom as vzd

        game = vzd.DoomGame()
        game.load_config(os.path.join(vzd.scenarios_path, "take_cover.cfg"))
        game.set_doom_scenario_path(os.path.join(vzd.scenarios_path, "take_cover.wad"))
        game.set_screen_resolution(getattr(vzd.ScreenResolution, RESOLUTIONS[self.resolution]))
        game.set_screen_format(vzd.ScreenFormat.RGB24)
        game.set_render_hud(True)
        game.set_doom_skill(self.skill)
        game.set_episode_start_time(EPISODE_START_TIME)
        game.set_episode_timeout(0)  # the step cap is ours, counted in agent steps
        game.set_window_visible(False)
        game.set_sound_enabled(False)
        game.set_mode(vzd.Mode.PLAYER)
        game.init()
        return game

    def _observe(self) -> np.ndarray:
        screen = self._game.get_state().screen_buffer  # (H, W, 3) uint8 for RGB24
        self._screen = screen
        kept = int(round(screen.shape[0] * KEPT_ROWS_FRACTION))
        return resize_frame(screen[:kept])

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if self._game is None:
            self._game = self._start_game()
        self._game.set_seed(int(self.np_random.integers(0, 2**31 - 1)))
        self._game.new_episode()
        self._steps = 0
        return self._observe(), {}

    def step(self, action):
        move = action_to_move(float(np.asarray(action, dtype=np.float32).reshape(-1)[0]))
        reward = float(self._game.make_action(_BUTTONS[move], 1))
        self._steps += 1
        terminated = bool(self._game.is_episode_finished())
        truncated = not terminated and self._steps >= self.max_steps
        observation = np.zeros(self.observation_space.shape, np.uint8) if terminated else self._observe()
        return observation, reward, terminated, truncated, {"move": move}

    def render(self):
        return None if self._screen is None else self._screen.copy()

    def close(self):
        if self._game is not None:
            self._game.close()
            self._game = None

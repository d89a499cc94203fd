"""Speed of the real games, the yardstick of the benchmark's ratios: `python -m run.benchmark --cases=env` and the
dream case's real side.

The real game is timed in a fresh spawned process that has loaded no TensorFlow: in the benchmark's own process,
after the earlier cases had run their models, bare VizDoom measured 587 steps/s against 790 in a fresh one on
the same idle machine (TensorFlow's idle threads still spin), which flattered the dream's ratio by a third.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from typing import Any


def steps_per_second(step: Callable[[], bool], reset: Callable[[], None], seconds: float) -> float:
    """Calls `step` (True when the episode ended, then `reset`) for `seconds`; returns its calls a second."""
    reset()
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        if step():
            reset()
        steps += 1
    return steps / (time.perf_counter() - start)


def vizdoom_steps_per_s(seconds: float = 5.0) -> float:
    """The bare game: what VizDoom itself costs at the paper's 640x480 (standing still), without our frame
    preprocessing."""
    from envs.doom import TakeCover64Env

    game = TakeCover64Env()._start_game()

    def game_step() -> bool:
        game.make_action([0, 0], 1)
        return game.is_episode_finished()

    try:
        return steps_per_second(game_step, game.new_episode, seconds)
    finally:
        game.close()


def env_steps_per_s(seconds: float = 5.0) -> dict[str, float]:
    """Random-action steps/s of each real environment, bare and wrapped to 64x64 frames, and bare VizDoom."""
    import gymnasium as gym

    import envs

    results = {}
    for name, make in [("carracing_v3_raw", lambda: gym.make("CarRacing-v3")),
                       ("carracing64", lambda: envs.make_env("carracing")),
                       ("doom64_640x480", lambda: envs.make_env("doom")),
                       ("doom64_320x240", lambda: envs.make_env("doom", resolution="320x240"))]:
        env = make()
        env.action_space.seed(0)

        def step(env=env) -> bool:
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            return terminated or truncated

        results[f"{name}_steps_per_s"] = steps_per_second(step, lambda env=env: env.reset(seed=0), seconds)
        env.close()
    results["vizdoom_raw_640x480_steps_per_s"] = vizdoom_steps_per_s(seconds)
    return results


def in_fresh_process(function: Callable[..., Any], *args: Any) -> Any:
    """`function(*args)` in a new spawned process (a module-level function), so nothing this process has loaded
    or left running slows it."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(function, args)

"""Gymnasium environments giving the agent 64x64x3 uint8 frames; importing this package registers them.

    worldmodels/CarRacing64-v0   CarRacing-v3, rows 0-83 resized to 64x64
    worldmodels/TakeCover64-v0   VizDoom Take Cover as the 2018 agent played it
    worldmodels/DoomRNN-v0       Take Cover dreamt by M (gym.make(..., exp_dir=DIR, temperature=1.15))
    worldmodels/CarRacingRNN-v0  CarRacing dreamt by an M that predicts reward (gym.make(..., exp_dir=DIR))
"""

from common.startup import quiet_tensorflow_startup

quiet_tensorflow_startup()  # before anything loads TensorFlow: its start-up lines stay off the screen

import gymnasium as gym  # noqa: E402

ENV_IDS = {
    "carracing": "worldmodels/CarRacing64-v0",
    "doom": "worldmodels/TakeCover64-v0",
}
DREAM_ENV_ID = "worldmodels/DoomRNN-v0"
CARRACING_DREAM_ENV_ID = "worldmodels/CarRacingRNN-v0"


def _register() -> None:
    registered = gym.envs.registry
    if ENV_IDS["carracing"] not in registered:
        gym.register(ENV_IDS["carracing"], entry_point="envs.carracing:CarRacing64Env")
    if ENV_IDS["doom"] not in registered:
        gym.register(ENV_IDS["doom"], entry_point="envs.doom:TakeCover64Env")
    if DREAM_ENV_ID not in registered:
        gym.register(DREAM_ENV_ID, entry_point="envs.dream:DoomDreamEnv")
    if CARRACING_DREAM_ENV_ID not in registered:
        gym.register(CARRACING_DREAM_ENV_ID, entry_point="envs.carracing_dream:CarRacingDreamEnv")


_register()


def make_env(name: str, **kwargs) -> gym.Env:
    """The real environment `'carracing'` or `'doom'` at 64x64."""
    if name not in ENV_IDS:
        raise ValueError(f"unknown environment {name!r}; choose from {sorted(ENV_IDS)}")
    return gym.make(ENV_IDS[name], **kwargs)

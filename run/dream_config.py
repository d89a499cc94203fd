"""What `run.dream` dreams and how it shows it: the config, its checks and the tasks' action ranges."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from common.errors import UserError
from common.paper import DOOM_TEMPERATURE, EPISODE_STEPS, TASKS

ACTION_SIZES = {"doom": 1, "carracing": 3}
DEFAULT_TEMPERATURE = {"doom": DOOM_TEMPERATURE, "carracing": 1.0}  # Doom: the paper's tau; CarRacing: M's own
DEFAULT_ACTIONS = {"doom": (0.0,), "carracing": (0.0, 1.0, 0.0)}  # stand still; straight ahead at full gas
ACTION_RANGES = {"doom": ((-1.0, 1.0),), "carracing": ((-1.0, 1.0), (0.0, 1.0), (0.0, 1.0))}
ACTION_NAMES = {"doom": ("a",), "carracing": ("steer", "gas", "brake")}
VIDEO_STEPS = 300  # default length of a video (10 s at 30 fps)
VIDEO_SUFFIXES = (".gif", ".mp4")
MAX_TEMPERATURE = 3.0


@dataclasses.dataclass(frozen=True)
class DreamConfig:
    """What to dream and how to show it."""

    env: str = "doom"  # Whose dream: doom or carracing.
    out: str | None = None  # Video to write: FILE.gif or FILE.mp4 (with --play: records what is shown).
    temperature: float | None = None  # tau (default: Doom 1.15, the paper's; CarRacing 1.0).
    controller_file: str | None = None  # Controller JSON driving the dream (default: the experiment's trained
    # controller if any, else fixed --actions).
    actions: tuple[float, ...] | None = None  # Fixed actions instead of a controller: Doom a in [-1, 1] (default
    # 0); CarRacing steer,gas,brake (default 0,1,0).
    max_steps: int | None = None  # Steps to dream (default 300 for a video, the task's limit in --play; at most
    # Doom 2,100, CarRacing 1,000).
    seed: int = 0  # Seed of the start frame and of M's samples (--play's restarts use seeds derived from it).
    fps: int = 30  # Frames per second of the video and of --play.
    scale: int = 4  # Enlarge each 64x64 frame this many times (nearest neighbour).
    caption: bool = True  # Add a strip with the step, tau and (Doom) p(death) under each frame.
    play: bool = False  # Open a window: arrows override the driver, +/- (Doom: also up/down) change tau, r
    # restarts, Esc quits.
    play_frames: int = 0  # --play stops after this many frames (0: when the window is closed).

    def resolved(self) -> DreamConfig:
        """Validates the fields and fills in the env-dependent defaults; bad values raise `UserError`."""
        if self.env not in TASKS:
            raise UserError(f"--env={self.env}: unknown environment; choose from {', '.join(TASKS)}")
        if self.out and Path(self.out).suffix.lower() not in VIDEO_SUFFIXES:
            raise UserError(f"--out={self.out}: must end in .gif or .mp4")
        temperature = DEFAULT_TEMPERATURE[self.env] if self.temperature is None else float(self.temperature)
        if not 0.0 <= temperature <= MAX_TEMPERATURE:
            raise UserError(f"--temperature={self.temperature}: must be between 0 and {MAX_TEMPERATURE}")
        if self.actions is not None and self.controller_file:
            raise UserError("--actions and --controller_file both choose the driver: pass one")
        if self.actions is not None:
            check_actions(self.env, self.actions)
        cap = EPISODE_STEPS[self.env]
        max_steps = self.max_steps if self.max_steps is not None else (cap if self.play else VIDEO_STEPS)
        if not 1 <= max_steps <= cap:
            raise UserError(f"--max_steps={self.max_steps}: must be between 1 and {cap} for {self.env}")
        if not 0 <= self.seed < 2**31:
            raise UserError(f"--seed={self.seed}: must be between 0 and 2^31 - 1")
        if self.fps < 1:
            raise UserError(f"--fps={self.fps}: must be at least 1")
        if not 1 <= self.scale <= 16:
            raise UserError(f"--scale={self.scale}: must be between 1 and 16")
        if self.play_frames < 0:
            raise UserError(f"--play_frames={self.play_frames}: must be 0 (until closed) or more")
        return dataclasses.replace(self, temperature=temperature, max_steps=max_steps)


def check_actions(env: str, actions: tuple[float, ...]) -> None:
    """Raises `UserError` unless `actions` has the task's size and each value lies in its range."""
    ranges, names = ACTION_RANGES[env], ACTION_NAMES[env]
    if len(actions) != len(ranges):
        raise UserError(f"--actions={','.join(map(str, actions))}: {env} takes {len(ranges)} value(s): "
                        f"{','.join(names)}")
    for name, value, (low, high) in zip(names, actions, ranges):
        if not low <= value <= high:
            raise UserError(f"--actions: {name}={value} is outside [{low:g}, {high:g}]")

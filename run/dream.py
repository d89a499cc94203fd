"""Dreams people can watch: M's dream decoded by V, written as a video or played in a window.

    python -m run.dream --exp_dir=exp/doom --env=doom --out=dream.gif
    python -m run.dream --exp_dir=exp/doom --env=doom --out=dream.mp4 --temperature=1.3 --max_steps=600
    python -m run.dream --exp_dir=exp/car --env=carracing --out=car.gif --actions=0,1,0
    python -m run.dream --exp_dir=exp/doom --env=doom --play      # arrows act, +/- change tau, r restarts, Esc quits

A dream runs as in the paper's demos. z_0 is drawn from N(mu, sigma^2) of a real first frame
(`series/initial_z.npz`, which Doom needs; CarRacing falls back to the first frame of a random `series/ep*.npz`).
Then, at every step, C acts on [z, h] ([z, c, h] for Doom), or fixed `--actions` do, or the held arrow keys in
`--play`; M advances and z' is drawn from its mixture at temperature tau. The frame shown is V's decoding of z.
The driver is fixed `--actions`, else `--controller_file`, else the experiment's trained controller, else the
default actions (Doom 0, stand still; CarRacing 0,1,0, straight at full gas). Doom's dream ends when the death
logit > 0 (p > 0.5, not sampled, as in DoomRNN) or at 2,100 steps; CarRacing's M has no death output and runs
`--max_steps`.
A video holds one frame per step dreamt, enlarged `--scale` times with a caption strip (step, tau, Doom's p(death)).
In `--play` a finished dream restarts with the next seed; `--out` then records every frame shown.

The parts: `run.dream_config` (the settings), `run.dream_rollout` (V, the dream and the driver, one frame at a
time), `run.dream_video` (captions and the GIF/MP4 writer), `run.dream_play` (the pygame window).
"""

from __future__ import annotations

import os

from common.errors import UserError, run_main
from common.flags import ConfigFlags
from controller.pretrained import define_experiment_flags, experiment_from_flags
from run.dream_config import DreamConfig
from run.dream_play import PlayResult, play_dream
from run.dream_rollout import DreamRollout
from run.dream_video import make_dream_video

CONFIG_FLAGS = ConfigFlags(DreamConfig)


def run_dream(exp_dir: str | os.PathLike, config: DreamConfig) -> DreamRollout | PlayResult:
    """`play_dream` with `config.play`, else `make_dream_video`; prints a one-line summary."""
    config = config.resolved()
    if config.play:
        result = play_dream(exp_dir, config)
        print(f"dream: played {result.frames} frames of {result.dreams} dream(s), tau {result.temperature:.2f}"
              + (f"; recorded to {config.out}" if config.out and result.frames else ""))
        return result
    if not config.out:
        raise UserError("nothing to do: pass --out=FILE.gif or FILE.mp4, or --play")
    rollout = make_dream_video(exp_dir, config)
    end = "M predicted death" if rollout.died else "step limit"
    print(f"dream: {rollout.steps} steps ({end}) at tau {rollout.temperature:.2f}, driven by {rollout.driver}; "
          f"wrote {config.out}")
    return rollout


def main(argv) -> None:

    run_dream(*experiment_from_flags(CONFIG_FLAGS.parse(), ("env",)))


def define_flags() -> None:

    define_experiment_flags("Experiment folder with vae/vae.keras, rnn/rnn.keras and series/.")
    CONFIG_FLAGS.define()


if __name__ == "__main__":
    define_flags()
    run_main(main)

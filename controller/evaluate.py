"""Plays a trained controller in the real environment: mean ± std over N episodes on fixed seeds.

    python -m controller.evaluate --exp_dir=DIR --env=carracing --episodes=100
    python -m controller.evaluate --exp_dir=DIR --env=doom --episodes=100 \
        --controller_file=DIR/controller/doomrnn_full_t1.15/controller.json --video=doom.mp4

A Doom controller trained in the dream runs unchanged in real VizDoom: V encodes each frame, z is sampled from
N(mu, sigma^2), M tracks the state with the taken action and the restart flag. Writes, beside the controller
file: evaluation_<env>.json (per-episode scores), histogram_<env>.png (like the paper's Figure 4, right).
`--video` records one episode with V's reconstruction of every frame beside the frame itself.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from common.backend import Backend
from common.errors import UserError, run_main
from common.flags import ConfigFlags
from common.layout import ControllerRun, experiment
from common.paper import DOOM_RESOLUTION, DOOM_TEMPERATURE, EVAL_EPISODES
from common.seeding import derive_seed
from common.storage import file_digest, write_json
from controller.agent import play_episode
from controller.es import EVAL_SEED_OFFSET
from controller.model import Controller
from controller.plots import plot_score_histogram
from controller.pretrained import define_experiment_flags, experiment_from_flags
from controller.rollouts import RealEvaluator, RealSetup, default_workers, load_agent, make_real_env

EVAL_ENVS = ("carracing", "doom")


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    env: str = "carracing"  # the real environment: carracing or doom
    episodes: int = EVAL_EPISODES  # episodes to play (the paper's 100 random rollouts)
    controller_file: str | None = None  # default: controller/<env>_full/controller.json (Doom: the dream's)
    workers: int = 1  # processes playing episodes
    backend: str = "processes"  # where episodes run: processes (this machine) or ray (a Ray cluster's nodes)
    ray_address: str | None = None  # --backend=ray: auto joins the cluster `ray start` runs; HOST:PORT a given
    # head; unset starts a local Ray
    seed: int = 0  # episode i plays seed derive_seed(seed, EVAL_SEED_OFFSET + 1, i)
    max_steps: int | None = None  # episode step limit; None: the task's (CarRacing 1,000, Doom 2,100)
    doom_resolution: str = DOOM_RESOLUTION  # real Doom's render size
    video: str | None = None  # also record the first episode beside V's reconstruction (.mp4 or .gif)
    episode_timeout: float = 900.0  # seconds before a worker is presumed hung

    def validated(self) -> EvaluateConfig:
        if self.env not in EVAL_ENVS:
            raise UserError(f"--env={self.env}: choose from {', '.join(EVAL_ENVS)}")
        if self.episodes < 1:
            raise UserError(f"--episodes={self.episodes}: must be at least 1")
        Backend.of(self).validated().check_workers(self.workers)
        if self.video and Path(self.video).suffix.lower() not in (".mp4", ".gif"):
            raise UserError(f"--video={self.video}: must end in .mp4 or .gif")
        return self


def default_controller_file(exp_dir, env: str) -> Path:
    """The controller a plain `--env` evaluates: CarRacing's full one, or for Doom the one trained in the dream
    at the paper's temperature (else the one trained in real Doom)."""
    layout = experiment(exp_dir, create=False)
    root = layout.controller
    candidates = [layout.controller_run("carracing")] if env == "carracing" else [
        layout.controller_run("doomrnn", "full", DOOM_TEMPERATURE), layout.controller_run("doom")]
    task_runs = sorted(root.glob(f"{'doom' if env == 'doom' else 'carracing'}*"))
    candidates += [ControllerRun(folder) for folder in task_runs]
    for files in candidates:
        if files.controller.exists():
            return files.controller
    raise UserError(f"{root}: no trained {env} controller found; train one (python -m controller.train) or "
                    "pass --controller_file")


def evaluation_seeds(seed: int, episodes: int) -> np.ndarray:
    return np.array([derive_seed(seed, EVAL_SEED_OFFSET + 1, i) for i in range(episodes)], np.int64)


def evaluate_controller(exp_dir, config: EvaluateConfig, verbose: bool = True) -> dict:
    """Plays `config.episodes` real episodes; returns {'mean', 'std', 'scores', ...} and writes the outputs."""
    config = config.validated()
    path = Path(config.controller_file) if config.controller_file else default_controller_file(exp_dir, config.env)
    controller, params = Controller.load(path)
    if controller.env != config.env:
        raise UserError(f"{path}: a {controller.env} controller cannot play --env={config.env}")
    setup = RealSetup(str(experiment(exp_dir, create=False).root), config.env, controller.get_config(),
                      config.max_steps, config.doom_resolution)
    seeds = evaluation_seeds(config.seed, config.episodes)
    evaluator = RealEvaluator(setup, min(config.workers, config.episodes), config.episode_timeout,
                              Backend.of(config))
    try:
        scores = evaluator(params[None], seeds)[0]
    finally:
        evaluator.close()
    result = {"env": config.env, "controller_file": str(path), "controller_sha256": file_digest(path),
              "episodes": int(scores.size),
              "mean": float(scores.mean()), "std": float(scores.std()), "scores": scores.tolist(),
              "seeds": seeds.tolist(), "max_steps": config.max_steps, "doom_resolution": config.doom_resolution}
    files = ControllerRun(path.parent)
    write_json(files.evaluation(config.env), result)
    plot_score_histogram(scores, files.histogram(config.env),
                         title=f"{config.env}, {controller.variant} controller")
    if config.video:
        record_video(setup, params, int(seeds[0]), Path(config.video))
    if verbose:
        print(f"evaluate: {config.env} {result['mean']:.1f} ± {result['std']:.1f} over {scores.size} episodes "
              f"({path})")
    return result


def record_video(setup: RealSetup, params: np.ndarray, seed: int, out: Path, fps: int = 30) -> Path:
    """One episode as a video: the 64x64 frame the agent sees beside V's reconstruction of its z, 4x enlarged."""
    import imageio.v2 as imageio
    import tensorflow as tf


    agent = load_agent(setup)
    env = make_real_env(setup)
    frames, latents = [], []
    play_episode(env, agent, params, seed, setup.max_steps,
                 on_step=lambda frame, action, z: (frames.append(frame), latents.append(z)))
    env.close()
    reconstructions = []
    for start in range(0, len(latents), 256):
        batch = tf.constant(np.stack(latents[start:start + 256]), tf.float32)
        reconstructions.append((agent.vae.decode(batch).numpy() * 255).round().astype(np.uint8))
    reconstructions = np.concatenate(reconstructions)
    side_by_side = np.concatenate([np.stack(frames), reconstructions], axis=2)  # (T, 64, 128, 3)
    side_by_side = side_by_side.repeat(4, axis=1).repeat(4, axis=2)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".gif":
        imageio.mimsave(out, list(side_by_side), duration=1000 / fps, loop=0)  # milliseconds a frame
    else:
        imageio.mimsave(out, list(side_by_side), fps=fps, macro_block_size=1)
    return out


def _config_flags():
    """The entry point's flags: EvaluateConfig's, with workers defaulting to one per core."""
    return ConfigFlags(EvaluateConfig, defaults=EvaluateConfig(workers=default_workers()))


def main(argv) -> None:
    evaluate_controller(*experiment_from_flags(_config_flags().parse(), ("env", "doom_resolution")))


def define_flags() -> None:
    define_experiment_flags("Experiment folder with vae/, rnn/ and controller/.")
    _config_flags().define()


if __name__ == "__main__":
    define_flags()
    run_main(main)

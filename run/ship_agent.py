"""Packs a trained agent (V, M, C) for shipping, then plays the packed agent in the real game and records its
score in the manifest, so `controller.evaluate --pretrained=NAME` can be checked against it.

    python -m run.ship_agent --exp_dir=exp/doom_small/iterate/round_02 --name=doom
    python -m run.ship_agent --exp_dir=exp/carracing_small --name=carracing --episodes=100 --seed=12345

Writes `pretrained/NAME/` (or `--out`): V's and M's Keras serialisations with float16 weights, C's JSON, the
real first frames the dream starts from, and `manifest.json` (task, the experiment's pipeline settings, the
scores, each file's SHA-256). The score is the packed agent's own (its float16 weights), over `--episodes` real
episodes from `--seed`: the command a user runs to reproduce it is stored beside it.
"""

from __future__ import annotations

import time
from pathlib import Path

from absl import flags

from common.errors import UserError, run_main
from common.layout import experiment
from common.storage import read_json
from controller.evaluate import EvaluateConfig, default_controller_file, evaluate_controller
from controller.pretrained import PRETRAINED_DIR, find_agent, pack_agent, record_scores, unpack_agent
from controller.rollouts import default_workers


def pipeline_settings(exp_dir: Path) -> dict:
    """The pipeline config of the experiment `exp_dir` belongs to (an iterative round's folder sits inside it)."""
    for folder in (exp_dir, *exp_dir.resolve().parents):
        record = experiment(folder, create=False).pipeline_record
        if record.is_file():
            return read_json(record).get("config", {})
    raise UserError(f"{exp_dir}: no pipeline.json in it or above it; ship agents that run.pipeline trained")


def ship_agent(exp_dir: str, name: str, out: Path, controller_file: str | None, episodes: int, seed: int,
               workers: int) -> dict:
    """Packs, unpacks and evaluates; returns the manifest."""
    root = Path(exp_dir)
    settings = pipeline_settings(root)
    task = settings.get("env", "doom")
    controller = Path(controller_file) if controller_file else default_controller_file(root, task)
    start = time.perf_counter()
    agent = pack_agent(root, name, controller, out, settings)
    print(f"ship_agent: packed {controller} with V and M of {root} into {out}")
    unpacked = unpack_agent(find_agent(str(out)))
    config = EvaluateConfig(env=task, episodes=episodes, seed=seed, workers=workers,
                            doom_resolution=settings.get("doom_resolution") or EvaluateConfig.doom_resolution)
    result = evaluate_controller(unpacked, config)
    command = f"python -m controller.evaluate --pretrained={name} --episodes={episodes} --seed={seed}"
    agent = record_scores(agent, {"real": {
        "mean": result["mean"], "std": result["std"], "episodes": result["episodes"], "seed": seed,
        "doom_resolution": config.doom_resolution if task == "doom" else None, "command": command,
        "seconds": round(time.perf_counter() - start, 1)}})
    size = sum(path.stat().st_size for path in out.iterdir()) / 1e6
    print(f"ship_agent: {name}: {result['mean']:.1f} ± {result['std']:.1f} over {episodes} real episodes; "
          f"{size:.1f} MB in {out}")
    return agent.manifest


def main(argv) -> None:
    values = flags.FLAGS
    if values.episodes < 1:
        raise UserError(f"--episodes={values.episodes}: must be at least 1")
    out = Path(values.out) if values.out else PRETRAINED_DIR / values.name
    ship_agent(values.exp_dir, values.name, out, values.controller_file, values.episodes, values.seed,
               values.workers)


def define_flags() -> None:
    flags.DEFINE_string("exp_dir", None, "The experiment (or iterative round's folder) whose V, M and C to ship.",
                        required=True)
    flags.DEFINE_string("name", None, "The agent's name: doom or carracing ship with the project.", required=True)
    flags.DEFINE_string("out", "", "Folder to write (default: pretrained/NAME in this repository).")
    flags.DEFINE_string("controller_file", None, "C to ship (default: the experiment's trained controller).")
    flags.DEFINE_integer("episodes", 100, "Real episodes scoring the packed agent (the paper's 100).")
    flags.DEFINE_integer("seed", 12345, "Seed of those episodes (controller.evaluate's --seed).")
    flags.DEFINE_integer("workers", default_workers(), "Processes playing the episodes.")


if __name__ == "__main__":
    define_flags()
    run_main(main)

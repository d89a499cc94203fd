"""A trained C's final scores, in the dream and in the real game, kept beside it and reused while they score the
same controller file on the same episodes: a killed sweep or ablation resumes without replaying what it scored.

    dream_evaluation.json   the CMA mean over N dreams of its experiment folder's M (`dream_score`)
    evaluation_<task>.json  the CMA mean over N real episodes (`controller.evaluate`, through `real_score`)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from common.layout import ControllerRun
from common.paper import EPISODE_STEPS
from common.seeding import derive_seed
from common.storage import file_digest, write_json
from controller.es import ESConfig, kept_evaluation
from controller.evaluate import EvaluateConfig, evaluate_controller, evaluation_seeds
from controller.model import Controller
from envs.dream import load_dream

# The CMA-ES settings every C of one table shares (the sweep's and the ablation's budget).
ES_FIELDS = ("popsize", "rollouts", "sigma", "generations", "eval_every", "eval_rollouts")
DREAM_EVAL_OFFSET = 2_000_003  # dream-evaluation seeds differ from CMA-ES training and evaluation seeds


def dream_seeds(seed: int, episodes: int) -> np.ndarray:
    return np.array([derive_seed(seed, DREAM_EVAL_OFFSET, i) for i in range(episodes)], np.int64)


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def dream_score(exp_dir: str | os.PathLike, controller_path: Path, temperature: float, episodes: int,
                seed: int, max_steps: int | None = None, task: str = "doom") -> dict:
    """The controller's mean ± std return (Doom: steps survived; CarRacing: M's summed rewards) over `episodes`
    float32 dreams of `exp_dir`'s M at `temperature`, capped at `max_steps` (None: the task's), written to
    `dream_evaluation.json` beside it and reused while the controller file is unchanged."""
    out = ControllerRun(controller_path.parent).dream_evaluation
    seeds = dream_seeds(seed, episodes)
    steps = max_steps or EPISODE_STEPS[task]
    stamp = controller_path.stat().st_mtime
    cached = _read(out)
    if cached and cached.get("seeds") == seeds.tolist() and cached.get("controller_mtime") == stamp \
            and cached.get("temperature") == temperature and cached.get("max_steps") == steps:
        return cached
    controller, params = Controller.load(controller_path)
    dynamics = load_dream(exp_dir, temperature, steps, task=task)
    scores = dynamics.returns(controller, np.repeat(params[None], episodes, axis=0), seeds)
    result = {"temperature": temperature, "episodes": episodes, "mean": float(scores.mean()),
              "std": float(scores.std()), "scores": scores.tolist(), "seeds": seeds.tolist(),
              "max_steps": steps, "controller_file": str(controller_path), "controller_mtime": stamp}
    write_json(out, result)
    return result


def real_score(exp_dir: str | os.PathLike, config: EvaluateConfig, verbose: bool = True) -> dict:
    """`controller.evaluate` of `config.controller_file` in the real game, unless its `evaluation_<env>.json`
    already scores that very file (its SHA-256) on the same episodes, step cap and (Doom) resolution."""
    path = Path(config.controller_file)
    cached = _read(ControllerRun(path.parent).evaluation(config.env))
    if cached and cached.get("seeds") == evaluation_seeds(config.seed, config.episodes).tolist() \
            and cached.get("controller_sha256") == file_digest(path) and cached.get("max_steps") == config.max_steps \
            and (config.env != "doom" or cached.get("doom_resolution") == config.doom_resolution):
        return cached
    return evaluate_controller(exp_dir, config, verbose=verbose)


def budget_from_pipeline(config: Any, pipeline: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """The unset (None) fields of a table's `config` filled from the experiment's recorded pipeline config: the
    CMA-ES settings (else ESConfig's), `defaults`' fields (else their default), and the episode caps."""
    filled = {name: pipeline.get(name, getattr(ESConfig, name)) for name in ES_FIELDS
              if getattr(config, name) is None}
    filled.update({name: pipeline.get(name) or default for name, default in defaults.items()
                   if getattr(config, name) is None})
    if config.max_steps is None:
        filled["max_steps"] = pipeline.get("controller_max_steps") or pipeline.get("max_steps")
    if config.real_max_steps is None:
        filled["real_max_steps"] = pipeline.get("max_steps")
    return filled


def es_config(config: Any) -> ESConfig:
    """The CMA-ES settings of a table's resolved `config`: the same budget and seed for every C."""
    return ESConfig(**{name: getattr(config, name) for name in ES_FIELDS}, seed=config.seed)


def last_cma_evaluation(history: dict[str, Any]) -> dict[str, Any]:
    """The evaluation of the kept CMA mean during training (`history.json`; `kept_evaluation`), as a table row's
    cma_eval_* fields."""
    last = kept_evaluation(history)
    if last is None:
        return {}
    return {"cma_eval_mean": last["mean"], "cma_eval_std": last["std"], "cma_eval_episodes": last["episodes"]}

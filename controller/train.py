"""Trains the controller C with CMA-ES, in the real environment or inside the Doom dream.

    python -m controller.train --exp_dir=DIR --env=carracing --workers=2
    python -m controller.train --exp_dir=DIR --env=doomrnn --temperature=1.15     # Doom, in the dream only
    python -m controller.train --exp_dir=DIR --env=carracing --controller=z_hidden   # the paper's ablation

Output in DIR/controller/<env>_<variant>[_t<tau>]/: es.pkl (the pickled pycma strategy, checkpointed atomically
every generation; a killed run resumes at the next generation on the same trajectory), controller.json (the CMA
mean, what `controller.evaluate` plays), best.json (the best candidate seen), history.json, progress.png and
TensorBoard logs in tb/.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import UserError
from common.layout import experiment
from common.pool import check_worker_count
from common.storage import read_json, write_json
from controller.es import (
    ESConfig,
    ESState,
    evaluate_mean,
    evaluation_seeds,
    generation_line,
    load_state,
    new_state,
    run_generation,
    save_state,
    write_history,
)
from controller.model import Controller
from controller.plots import plot_training_progress
from controller.rollouts import DreamEvaluator, RealEvaluator, RealSetup, controller_dir

TRAIN_ENVS = ("carracing", "doom", "doomrnn")


@dataclasses.dataclass(frozen=True)
class ControllerTrainConfig:
    """How to train C; the defaults are the paper's."""

    env: str = "carracing"  # carracing, doom (real VizDoom), or doomrnn (the dream)
    controller: str = "full"  # full, z or z_hidden
    es: ESConfig = ESConfig()
    workers: int = 1  # processes playing real episodes (unused in the dream, which runs as one batch)
    temperature: float = 1.15  # doomrnn: the dream's tau (the paper's; the 2018 code used 1.25)
    max_steps: int | None = None  # episode step limit; None: the task's (CarRacing 1,000, Doom 2,100)
    doom_resolution: str = "640x480"  # real Doom's render size
    real_eval_every: int = 0  # doomrnn: every K generations also play the CMA mean in real Doom (0: never)
    real_eval_episodes: int = 8  # episodes of each of those real checks
    episode_timeout: float = 900.0  # seconds before a real-episode worker is presumed hung
    init_file: str | None = None  # warm start: a controller JSON whose parameters become x0
    dream_bfloat16: bool = False  # doomrnn: run the dream's matmuls in bfloat16 (faster on AVX-512 BF16 CPUs)

    def validated(self) -> ControllerTrainConfig:
        if self.env not in TRAIN_ENVS:
            raise UserError(f"--env={self.env}: choose from {', '.join(TRAIN_ENVS)}")
        for name in ("popsize", "rollouts", "generations", "eval_every", "eval_rollouts"):
            if getattr(self.es, name) < 1:
                raise UserError(f"--{name}={getattr(self.es, name)}: must be at least 1")
        if self.es.popsize < 2:
            raise UserError(f"--popsize={self.es.popsize}: CMA-ES needs at least 2 candidates")
        if not self.es.sigma > 0:
            raise UserError(f"--sigma={self.es.sigma}: must be positive")
        if self.workers < 1:
            raise UserError(f"--workers={self.workers}: must be at least 1")
        check_worker_count(self.workers)
        if not self.temperature > 0:
            raise UserError(f"--temperature={self.temperature}: must be positive")
        return self

    def model_env(self) -> str:
        return "carracing" if self.env == "carracing" else "doom"

    def max_episode_steps(self) -> int:
        return self.max_steps or (1000 if self.env == "carracing" else 2100)


def output_dir(exp_dir: str | Path, config: ControllerTrainConfig) -> Path:
    return controller_dir(experiment(exp_dir).controller, config.env, config.controller,
                          config.temperature if config.env == "doomrnn" else None)


def _real_setup(exp_dir, config: ControllerTrainConfig, controller: Controller, env: str) -> RealSetup:
    return RealSetup(str(experiment(exp_dir).root), env, controller.get_config(), config.max_episode_steps(),
                     config.doom_resolution)


def _identity(config: ControllerTrainConfig, controller: Controller) -> dict[str, Any]:
    """What a resumed run must share with the checkpoint it resumes."""
    es = dataclasses.asdict(config.es)
    es.pop("generations")
    return {"env": config.env, "controller": controller.get_config(), "es": es,
            "temperature": config.temperature if config.env == "doomrnn" else None,
            "max_steps": config.max_episode_steps()}


def _open_state(out: Path, config: ControllerTrainConfig, controller: Controller) -> ESState:
    identity = _identity(config, controller)
    checkpoint = out / "es.pkl"
    if checkpoint.exists():
        recorded = read_json(out / "config.json")
        differing = sorted(key for key in identity if recorded.get(key) != identity[key])
        if differing:
            raise UserError(f"{out}: a run with other settings ({', '.join(differing)}) is checkpointed here; "
                            "use another --exp_dir or remove that folder")
        return load_state(checkpoint)
    x0 = None
    if config.init_file:
        init_controller, x0 = Controller.load(config.init_file)
        if init_controller != controller:
            raise UserError(f"{config.init_file}: a {init_controller.env} '{init_controller.variant}' controller, "
                            f"but this run trains {controller.env} '{controller.variant}'")
    write_json(out / "config.json", identity)
    return new_state(controller.num_params, config.es, x0)


def _dream_dynamics(exp_dir, config: ControllerTrainConfig):
    from envs.dream import load_dream

    return load_dream(exp_dir, config.temperature, config.max_episode_steps(), bfloat16=config.dream_bfloat16)


def train_controller(exp_dir: str | Path, config: ControllerTrainConfig, verbose: bool = True) -> Path:
    """Runs CMA-ES until `config.es.generations`, resuming from the folder's checkpoint; returns the folder."""
    import tensorflow as tf

    config = config.validated()
    out = output_dir(exp_dir, config)
    out.mkdir(parents=True, exist_ok=True)
    model_env = config.model_env()
    if config.env == "doomrnn":
        dynamics = _dream_dynamics(exp_dir, config)
        rnn = dynamics.rnn
        controller = Controller(model_env, config.controller, rnn.z_size, rnn.hidden_size)
        evaluate = DreamEvaluator(dynamics, controller)
    else:
        from rnn.model import load_rnn

        rnn = load_rnn(experiment(exp_dir, create=False).rnn_model)
        controller = Controller(model_env, config.controller, rnn.z_size, rnn.hidden_size)
        evaluate = RealEvaluator(_real_setup(exp_dir, config, controller, model_env), config.workers,
                                 config.episode_timeout)
    state = _open_state(out, config, controller)
    real_check = None
    if config.env == "doomrnn" and config.real_eval_every > 0:
        real_check = RealEvaluator(_real_setup(exp_dir, config, controller, "doom"), config.workers,
                                   config.episode_timeout)
    writer = tf.summary.create_file_writer(str(out / "tb"))
    say = print if verbose else (lambda *args, **kwargs: None)
    if state.generation >= config.es.generations:
        say(f"controller: {out} already ran {state.generation} generations")
    elif state.generation:
        say(f"controller: resuming {out} at generation {state.generation + 1}")
    else:
        say(f"controller: training {controller.num_params} parameters ({controller.env} '{controller.variant}') "
            f"in {config.env}, population {config.es.popsize} x {config.es.rollouts} rollouts")
    try:
        while state.generation < config.es.generations:
            record = run_generation(state, config.es, evaluate)
            logs = {"es/best": record["best"], "es/mean": record["mean"], "es/worst": record["worst"],
                    "es/sigma": record["sigma"], "perf/seconds_per_generation": record["seconds"]}
            generation = state.generation
            if generation % config.es.eval_every == 0 or generation == config.es.generations:
                evaluation = evaluate_mean(state, config.es, evaluate)
                logs["eval/return_mean"], logs["eval/return_std"] = evaluation["mean"], evaluation["std"]
                say(f"evaluation at generation {generation}: CMA mean scores {evaluation['mean']:.1f} ± "
                    f"{evaluation['std']:.1f} over {evaluation['episodes']} episodes")
            if real_check is not None and (generation % config.real_eval_every == 0
                                           or generation == config.es.generations):
                _real_check(state, config, real_check, logs, say)
            _checkpoint(out, state, controller, config)
            with writer.as_default(step=generation):
                for tag, value in logs.items():
                    tf.summary.scalar(tag, value)
            writer.flush()
            say(generation_line(record, state, config.es))
    finally:
        evaluate.close()
        if real_check is not None:
            real_check.close()
        writer.close()
    return out


def _real_check(state: ESState, config: ControllerTrainConfig, real_check: RealEvaluator, logs: dict,
                say) -> None:
    """The paper's "virtual vs actual score": the CMA mean in real Doom, so exploiting M shows as it happens."""
    seeds = evaluation_seeds(config.es, config.real_eval_episodes)
    scores = real_check(np.asarray(state.strategy.mean, np.float32)[None], seeds)[0]
    dream = state.evaluations[-1]["mean"] if state.evaluations else float("nan")
    state.evaluations.append({"generation": state.generation, "real_mean": float(scores.mean()),
                              "real_std": float(scores.std()), "real_episodes": int(scores.size)})
    logs["real/return_mean"] = float(scores.mean())
    say(f"real check at generation {state.generation}: {scores.mean():.1f} ± {scores.std():.1f} over "
        f"{scores.size} real episodes (last dream evaluation {dream:.1f})")


def _checkpoint(out: Path, state: ESState, controller: Controller, config: ControllerTrainConfig) -> None:
    """Everything of this generation, each file atomic; es.pkl last, so a resume never skips a written result."""
    info = {"generation": state.generation, "env": config.env}
    controller.save(out / "controller.json", np.asarray(state.strategy.mean, np.float32), **info)
    if state.best_params is not None:
        controller.save(out / "best.json", state.best_params, fitness=state.best_fitness, **info)
    write_history(out, state)
    plot_training_progress(state.history, [e for e in state.evaluations if "mean" in e], out / "progress.png",
                           title=f"CMA-ES, {config.env}, '{controller.variant}' controller",
                           real_checks=[e for e in state.evaluations if "real_mean" in e])
    save_state(out / "es.pkl", state)


def main(argv) -> None:
    from absl import flags

    FLAGS = flags.FLAGS
    es = ESConfig(popsize=FLAGS.popsize, rollouts=FLAGS.rollouts, sigma=FLAGS.sigma,
                  generations=FLAGS.generations, weight_decay=FLAGS.weight_decay, eval_every=FLAGS.eval_every,
                  eval_rollouts=FLAGS.eval_rollouts, seed=FLAGS.seed)
    config = ControllerTrainConfig(env=FLAGS.env, controller=FLAGS.controller, es=es, workers=FLAGS.workers,
                                   temperature=FLAGS.temperature, max_steps=FLAGS.max_steps,
                                   doom_resolution=FLAGS.doom_resolution, real_eval_every=FLAGS.real_eval_every,
                                   real_eval_episodes=FLAGS.real_eval_episodes,
                                   episode_timeout=FLAGS.episode_timeout, init_file=FLAGS.init_file,
                                   dream_bfloat16=FLAGS.dream_bfloat16)
    start = time.perf_counter()
    out = train_controller(FLAGS.exp_dir, config)
    print(f"controller: done in {time.perf_counter() - start:.0f}s; {out / 'controller.json'}")


def define_flags() -> None:
    from absl import flags

    from controller.rollouts import default_workers

    flags.DEFINE_string("exp_dir", None, "Experiment folder with vae/vae.keras and rnn/rnn.keras.", required=True)
    flags.DEFINE_string("env", "carracing", "carracing, doom (real VizDoom) or doomrnn (inside the dream).")
    flags.DEFINE_string("controller", "full", "full ([z, h]; Doom [z, c, h]), z, or z_hidden (40 tanh units).")
    flags.DEFINE_integer("popsize", ESConfig.popsize, "CMA-ES population (paper: 64).")
    flags.DEFINE_integer("rollouts", ESConfig.rollouts, "Episodes per candidate; fitness is their mean (paper: 16).")
    flags.DEFINE_float("sigma", ESConfig.sigma, "Initial CMA-ES step size (paper: 0.1).")
    flags.DEFINE_integer("generations", ESConfig.generations, "Generations to run in total (paper: 1,800 "
                         "for CarRacing).")
    flags.DEFINE_float("weight_decay", ESConfig.weight_decay, "Fitness penalty weight_decay * mean(theta^2).")
    flags.DEFINE_integer("eval_every", ESConfig.eval_every, "Generations between evaluations of the CMA mean.")
    flags.DEFINE_integer("eval_rollouts", ESConfig.eval_rollouts, "Episodes per evaluation (paper: 1,024).")
    flags.DEFINE_integer("seed", ESConfig.seed, "Seed of the search and of every episode.")
    flags.DEFINE_integer("workers", default_workers(), "Processes for real episodes (spawned).")
    flags.DEFINE_float("temperature", 1.15, "doomrnn: the dream's temperature tau (paper: 1.15).")
    flags.DEFINE_integer("max_steps", None, "Episode step limit (default: CarRacing 1,000, Doom 2,100).")
    flags.DEFINE_string("doom_resolution", "640x480", "Real Doom's render size (640x480 or 320x240).")
    flags.DEFINE_integer("real_eval_every", 0, "doomrnn: every K generations also play the CMA mean in real Doom.")
    flags.DEFINE_integer("real_eval_episodes", 8, "Episodes of each real check.")
    flags.DEFINE_float("episode_timeout", 900.0, "Seconds before a real-episode worker is presumed hung.")
    flags.DEFINE_string("init_file", None, "Warm start from this controller JSON (x0 = its parameters).")
    flags.DEFINE_bool("dream_bfloat16", False, "doomrnn: the dream's two large matmuls in bfloat16 (faster on "
                      "CPUs with AVX-512 BF16 or AMX; the paper's dream is float32).")


if __name__ == "__main__":
    from common.errors import run_main

    define_flags()
    run_main(main)

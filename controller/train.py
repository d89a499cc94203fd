"""Trains the controller C with CMA-ES, in the real environment or inside the Doom dream.

    python -m controller.train --exp_dir=DIR --env=carracing --workers=2
    python -m controller.train --exp_dir=DIR --env=doomrnn --temperature=1.15     # Doom, in the dream only
    python -m controller.train --exp_dir=DIR --env=carracing --controller=z_hidden   # the paper's ablation
    python -m controller.train --exp_dir=DIR --env=doomrnn --controller=full_hidden  # C with a small hidden layer
    python -m controller.train --exp_dir=DIR --env=carracingrnn --temperature=1.0  # CarRacing in the dream (an M
                                                                                   # trained with --predict_reward)

Output in DIR/controller/<env>_<variant>[_t<tau>]/: es.pkl (the pickled pycma strategy, checkpointed atomically
every generation; a killed run resumes at the next generation on the same trajectory), controller.json (the CMA
mean, what `controller.evaluate` plays), best.json (the best candidate seen), history.json, progress.png and
TensorBoard logs in tensorboard/.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

from common.backend import Backend
from common.errors import UserError, run_main
from common.flags import ConfigFlags
from common.layout import DREAM_ENVS, ControllerRun, experiment
from common.paper import DOOM_RESOLUTION, DOOM_TEMPERATURE, EPISODE_STEPS
from common.storage import read_json, write_json
from common.tensorboard import SummaryWriter
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
from controller.interface import CONTROLLERS, make_controller
from controller.model import Controller, save_controller
from controller.plots import plot_training_progress
from controller.pretrained import define_experiment_flags, experiment_from_flags
from controller.rollouts import DreamEvaluator, RealEvaluator, RealSetup, default_workers
from envs.dream import load_dream
from rnn.model import load_rnn

TRAIN_ENVS = ("carracing", "doom", *DREAM_ENVS)


@dataclasses.dataclass(frozen=True)
class ControllerTrainConfig:
    """How to train C; the defaults are the paper's."""

    env: str = "carracing"  # carracing, doom (real VizDoom), or in M's dream: doomrnn or carracingrnn
    controller: str = "full"  # which C, by registered name: full ([z, h]; Doom [z, c, h]), z, z_hidden (40 tanh
    # units; the paper's three), full_hidden (full plus 8 tanh units on z), or module:Class of your own
    es: ESConfig = ESConfig()  # the CMA-ES search
    workers: int = 1  # processes playing real episodes (unused in the dream, which runs as one batch)
    backend: str = "processes"  # where real episodes run: processes (this machine) or ray (a Ray cluster's nodes)
    ray_address: str | None = None  # --backend=ray: auto joins the cluster `ray start` runs; HOST:PORT a given
    # head; unset starts a local Ray
    temperature: float = DOOM_TEMPERATURE  # the dream's tau (Doom: the paper's 1.15; the 2018 code used 1.25; for
    # carracingrnn 1.0 is M's own distribution)
    max_steps: int | None = None  # episode step limit; None: the task's (CarRacing 1,000, Doom 2,100)
    doom_resolution: str = DOOM_RESOLUTION  # real Doom's render size
    real_eval_every: int = 0  # in a dream: every K generations also play the CMA mean in the real game (0: never)
    real_eval_episodes: int = 8  # episodes of each of those real checks
    episode_timeout: float = 900.0  # seconds before a real-episode worker is presumed hung
    init_file: str | None = None  # warm start: a controller JSON whose parameters become x0
    dream_bfloat16: bool = False  # in a dream: run its matmuls in bfloat16 (faster on AVX-512 BF16 CPUs)

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
        Backend.of(self).validated().check_workers(self.workers)
        if not self.temperature > 0:
            raise UserError(f"--temperature={self.temperature}: must be positive")
        CONTROLLERS.resolve(self.controller)  # an unknown name fails before any model loads
        return self

    def model_env(self) -> str:
        """The real task: carracing or doom."""
        return DREAM_ENVS.get(self.env, self.env)

    def max_episode_steps(self) -> int:
        return self.max_steps or EPISODE_STEPS[self.model_env()]


def output_run(exp_dir: str | Path, config: ControllerTrainConfig) -> ControllerRun:
    """This training's folder, `controller/<env>_<variant>[_t<tau>]/`."""
    return experiment(exp_dir).controller_run(config.env, config.controller,
                          config.temperature if config.env in DREAM_ENVS else None)


def _real_setup(exp_dir, config: ControllerTrainConfig, controller: Controller, env: str) -> RealSetup:
    return RealSetup(str(experiment(exp_dir).root), env, controller.get_config(), config.max_episode_steps(),
                     config.doom_resolution)


def _identity(config: ControllerTrainConfig, controller: Controller) -> dict[str, Any]:
    """What a resumed run must share with the checkpoint it resumes."""
    es = dataclasses.asdict(config.es)
    es.pop("generations")
    return {"env": config.env, "controller": controller.get_config(), "es": es,
            "temperature": config.temperature if config.env in DREAM_ENVS else None,
            "max_steps": config.max_episode_steps()}


def _open_state(files: ControllerRun, config: ControllerTrainConfig, controller: Controller) -> ESState:
    identity = _identity(config, controller)
    checkpoint = files.es_state
    if checkpoint.exists():
        recorded = read_json(files.config)
        differing = sorted(key for key in identity if recorded.get(key) != identity[key])
        if differing:
            raise UserError(f"{files.folder}: a run with other settings ({', '.join(differing)}) is checkpointed here; "
                            "use another --exp_dir or remove that folder")
        return load_state(checkpoint)
    x0 = None
    if config.init_file:
        init_controller, x0 = Controller.load(config.init_file)
        if init_controller.get_config() != controller.get_config():
            raise UserError(f"{config.init_file}: a {init_controller.env} '{init_controller.variant}' controller, "
                            f"but this run trains {controller.env} '{controller.variant}'")
    write_json(files.config, identity)
    return new_state(controller.num_params, config.es, x0)


def _dream_dynamics(exp_dir, config: ControllerTrainConfig):
    return load_dream(exp_dir, config.temperature, config.max_episode_steps(), bfloat16=config.dream_bfloat16,
                      task=config.model_env())


def train_controller(exp_dir: str | Path, config: ControllerTrainConfig, verbose: bool = True) -> Path:
    """Runs CMA-ES until `config.es.generations`, resuming from the folder's checkpoint; returns the folder."""
    config = config.validated()
    files = output_run(exp_dir, config)
    out = files.folder
    model_env = config.model_env()
    if config.env in DREAM_ENVS:
        dynamics = _dream_dynamics(exp_dir, config)
        rnn = dynamics.rnn
        controller = make_controller(config.controller, model_env, rnn.z_size, rnn.hidden_size)
        evaluate = DreamEvaluator(dynamics, controller)
    else:
        rnn = load_rnn(experiment(exp_dir, create=False).rnn_model)
        controller = make_controller(config.controller, model_env, rnn.z_size, rnn.hidden_size)
        evaluate = RealEvaluator(_real_setup(exp_dir, config, controller, model_env), config.workers,
                                 config.episode_timeout, Backend.of(config))
    out.mkdir(parents=True, exist_ok=True)  # only now that V, M and C fit: bad input writes nothing
    state = _open_state(files, config, controller)
    real_check = None
    if config.env in DREAM_ENVS and config.real_eval_every > 0:
        real_check = RealEvaluator(_real_setup(exp_dir, config, controller, model_env), config.workers,
                                   config.episode_timeout, Backend.of(config))
    writer = SummaryWriter(files.tensorboard)
    writer.hyperparameters(dataclasses.asdict(config), state.generation)
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
            _checkpoint(files, state, controller, config)
            writer.scalars(generation, logs)
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


def _checkpoint(files: ControllerRun, state: ESState, controller: Controller, config: ControllerTrainConfig) -> None:
    """Everything of this generation, each file atomic; es.pkl last, so a resume never skips a written result."""
    info = {"generation": state.generation, "env": config.env}
    save_controller(controller, files.controller, np.asarray(state.strategy.mean, np.float32), **info)
    if state.best_params is not None:
        save_controller(controller, files.best, state.best_params, fitness=state.best_fitness, **info)
    write_history(files.history, state)
    plot_training_progress(state.history, [e for e in state.evaluations if "mean" in e], files.progress_plot,
                           title=f"CMA-ES, {config.env}, '{controller.variant}' controller",
                           real_checks=[e for e in state.evaluations if "real_mean" in e])
    save_state(files.es_state, state)


def _config_flags():
    """The entry point's flags: ControllerTrainConfig's and its ESConfig's; workers default to one per core."""
    return ConfigFlags(ControllerTrainConfig, defaults=ControllerTrainConfig(workers=default_workers()))


def main(argv) -> None:
    start = time.perf_counter()
    out = train_controller(*experiment_from_flags(_config_flags().parse(), ("doom_resolution",)))
    print(f"controller: done in {time.perf_counter() - start:.0f}s; {out / 'controller.json'}")


def define_flags() -> None:
    define_experiment_flags("Experiment folder with vae/vae.keras and rnn/rnn.keras.")
    _config_flags().define()


if __name__ == "__main__":
    define_flags()
    run_main(main)

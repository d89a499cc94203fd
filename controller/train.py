"""Trains the controller C with CMA-ES, in the real environment or inside M's dream, and optionally fine-tunes a
dream-trained C in the real game afterwards.

    python -m controller.train --exp_dir=DIR --env=carracing --workers=2
    python -m controller.train --exp_dir=DIR --env=doomrnn --temperature=1.15     # Doom, in the dream only
    python -m controller.train --exp_dir=DIR --env=carracing --controller=z_hidden   # the paper's ablation
    python -m controller.train --exp_dir=DIR --env=doomrnn --controller=full_hidden  # C with a small hidden layer
    python -m controller.train --exp_dir=DIR --env=carracingrnn --temperature=1.0  # CarRacing in the dream (an M
                                                                                   # trained with --predict_reward)
    python -m controller.train --exp_dir=DIR --env=carracingrnn --temperature=1.0 --real_generations=20
                                               # then 20 generations of 16 x 4 real episodes from the dream's C

Output in DIR/controller/<env>_<variant>[_t<tau>]/: es.pkl (the pickled pycma strategy, checkpointed atomically
every generation; a killed run resumes at the next generation on the same trajectory), controller.json (the CMA
mean, what `controller.evaluate` plays), best.json (the best candidate seen), history.json, progress.png and
TensorBoard logs in tensorboard/.
With --real_generations (after training in a dream), the real fine-tuning is a CMA-ES run of its own with the
same files in DIR/controller/<that folder>_real/, started from the dream run's CMA mean and final step size; the
dream run's folder keeps what the dream alone achieved.
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
from common.storage import file_digest, read_json, write_json
from common.tensorboard import SummaryWriter
from controller.es import (
    ESConfig,
    ESState,
    Evaluator,
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
    real_eval_episodes: int = 8  # episodes of each of those real checks, and of the real fine-tuning's evaluations
    real_generations: int = 0  # in a dream: afterwards, this many CMA-ES generations in the real game, from the
    # dream's CMA mean, as a run of its own (`<dream run>_real/`); 0: the dream alone
    real_popsize: int = 16  # the real fine-tuning's population (smaller: real episodes cost far more than dreams)
    real_rollouts: int = 4  # real episodes per candidate in the real fine-tuning
    real_sigma: float | None = None  # the real fine-tuning's initial step size; None: the dream run's final sigma
    episode_timeout: float = 900.0  # seconds before a real-episode worker is presumed hung
    init_file: str | None = None  # warm start: a controller JSON whose parameters become x0
    dream_bfloat16: bool = False  # in a dream: run its matmuls in bfloat16 (faster on AVX-512 BF16 CPUs)
    select_by_real_check: bool = False  # in a dream with real checks: at the end, C (controller.json) is the CMA
    # mean whose real check scored best, not the last one (the checks are paid for; later dream generations may
    # exploit M, which only the real game shows)

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
        self._check_real_game_settings()
        CONTROLLERS.resolve(self.controller)  # an unknown name fails before any model loads
        return self

    def _check_real_game_settings(self) -> None:
        """The real checks' and the real fine-tuning's settings."""
        for name in ("real_eval_every", "real_generations"):
            if getattr(self, name) < 0:
                raise UserError(f"--{name}={getattr(self, name)}: must be >= 0")
        if self.real_generations and self.env not in DREAM_ENVS:
            raise UserError(f"--real_generations={self.real_generations}: fine-tunes a C trained in a dream "
                            f"({' or '.join(DREAM_ENVS)}), not one trained in {self.env}, the real game already")
        if self.select_by_real_check and not (self.env in DREAM_ENVS and self.real_eval_every > 0):
            raise UserError("--select_by_real_check: keeps the CMA mean of the best real check, so it needs C "
                            f"trained in a dream ({' or '.join(DREAM_ENVS)}) with --real_eval_every > 0")
        if (self.real_eval_every or self.real_generations) and self.real_eval_episodes < 1:
            raise UserError(f"--real_eval_episodes={self.real_eval_episodes}: must be at least 1")
        if self.real_popsize < 2:
            raise UserError(f"--real_popsize={self.real_popsize}: CMA-ES needs at least 2 candidates")
        if self.real_rollouts < 1:
            raise UserError(f"--real_rollouts={self.real_rollouts}: must be at least 1")
        if self.real_sigma is not None and not self.real_sigma > 0:
            raise UserError(f"--real_sigma={self.real_sigma}: must be positive (or left unset)")

    def without_finetuning(self) -> ControllerTrainConfig:
        """This config with the real fine-tuning's settings at their defaults (none): all that decides the training
        itself (the pipeline's controller stage, run.iterate's rounds, the fine-tuning's own run)."""
        defaults = ControllerTrainConfig()
        return dataclasses.replace(self, **{name: getattr(defaults, name) for name in FINETUNE_FIELDS})

    def model_env(self) -> str:
        """The real task: carracing or doom."""
        return DREAM_ENVS.get(self.env, self.env)

    def max_episode_steps(self) -> int:
        return self.max_steps or EPISODE_STEPS[self.model_env()]


# The real fine-tuning's own settings: they change nothing of the training before it.
FINETUNE_FIELDS = ("real_generations", "real_popsize", "real_rollouts", "real_sigma")


def output_run(exp_dir: str | Path, config: ControllerTrainConfig) -> ControllerRun:
    """This training's folder, `controller/<env>_<variant>[_t<tau>]/`."""
    return experiment(exp_dir).controller_run(config.env, config.controller,
                          config.temperature if config.env in DREAM_ENVS else None)


def _real_evaluator(exp_dir, config: ControllerTrainConfig, controller: Controller) -> RealEvaluator:
    """Workers playing C in the real task, each with the experiment's V and M."""
    setup = RealSetup(str(experiment(exp_dir).root), config.model_env(), controller.get_config(),
                      config.max_episode_steps(), config.doom_resolution)
    return RealEvaluator(setup, config.workers, config.episode_timeout, Backend.of(config))


def _identity(config: ControllerTrainConfig, controller: Controller) -> dict[str, Any]:
    """What a resumed run must share with the checkpoint it resumes."""
    es = dataclasses.asdict(config.es)
    es.pop("generations")
    return {"env": config.env, "controller": controller.get_config(), "es": es,
            "temperature": config.temperature if config.env in DREAM_ENVS else None,
            "max_steps": config.max_episode_steps(),
            **({"select_by_real_check": True} if config.select_by_real_check else {})}


def _open_state(files: ControllerRun, config: ControllerTrainConfig, controller: Controller,
                warm_start: dict[str, Any] | None = None) -> ESState:
    """The run's checkpoint, or a new search (from `config.init_file` if given); `warm_start` joins the settings a
    resumed run must share (the real fine-tuning's dream C)."""
    identity = {**_identity(config, controller), **(warm_start or {})}
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


@dataclasses.dataclass(frozen=True)
class _Phase:
    """One CMA-ES run and how it reports: C's training, or the real fine-tuning after a dream."""

    files: ControllerRun
    config: ControllerTrainConfig
    controller: Controller
    name: str = "controller"  # starts its lines about the run as a whole
    prefix: str = ""  # starts its lines about each generation
    title: str = ""  # of its progress plot


def _controller_and_evaluator(exp_dir, config: ControllerTrainConfig) -> tuple[Controller, Evaluator]:
    """C sized for the experiment's M, and where its candidates play: the batched dream or real-game workers."""
    if config.env in DREAM_ENVS:
        dynamics = _dream_dynamics(exp_dir, config)
        controller = make_controller(config.controller, config.model_env(), dynamics.rnn.z_size,
                                     dynamics.rnn.hidden_size)
        return controller, DreamEvaluator(dynamics, controller)
    rnn = load_rnn(experiment(exp_dir, create=False).rnn_model)
    controller = make_controller(config.controller, config.model_env(), rnn.z_size, rnn.hidden_size)
    return controller, _real_evaluator(exp_dir, config, controller)


def _check_vae(exp_dir) -> None:
    """Real episodes show frames, which V encodes: a dream needs no V, its real fine-tuning does (checked before
    the dream's training, not after it)."""
    vae = experiment(exp_dir, create=False).vae_model
    if not vae.exists():
        raise UserError(f"{vae}: missing; real fine-tuning plays the real game, which needs V (vae.train)")


def _printer(verbose: bool):
    return print if verbose else (lambda *args, **kwargs: None)


def train_controller(exp_dir: str | Path, config: ControllerTrainConfig, verbose: bool = True) -> Path:
    """Runs CMA-ES until `config.es.generations`, resuming from the folder's checkpoint; returns the folder. In a
    dream with `config.real_generations`, then fine-tunes the result in the real game (`finetune_controller`,
    in the folder's `real_finetune` beside it)."""
    config = config.validated()
    if config.real_generations:
        _check_vae(exp_dir)
    files = output_run(exp_dir, config)
    controller, evaluate = _controller_and_evaluator(exp_dir, config)
    files.folder.mkdir(parents=True, exist_ok=True)  # only now that V, M and C fit: bad input writes nothing
    real_check, say = None, _printer(verbose)
    try:
        state = _open_state(files, config, controller)
        if config.env in DREAM_ENVS and config.real_eval_every > 0:
            real_check = _real_evaluator(exp_dir, config, controller)
        phase = _Phase(files, config, controller, title=f"CMA-ES, {config.env}, '{controller.variant}' controller")
        _announce(phase, state, say, f"training {controller.num_params} parameters ({controller.env} "
                  f"'{controller.variant}') in {config.env}, population {config.es.popsize} x {config.es.rollouts} "
                  "rollouts")
        _search(phase, state, evaluate, say, real_check)
    finally:
        evaluate.close()
        if real_check is not None:
            real_check.close()
    if config.select_by_real_check:
        _keep_best_real_check(phase, state, say)
    if config.real_generations:
        finetune_controller(exp_dir, files, config, verbose)
    return files.folder


def real_finetune_config(config: ControllerTrainConfig, dream_run: ControllerRun) -> ControllerTrainConfig:
    """The real fine-tuning's own run: in the dream's real task, from the dream run's CMA mean (its
    controller.json), at the dream's final step size unless `real_sigma`, with `real_popsize` x `real_rollouts`
    real episodes a generation and evaluations of `real_eval_episodes` real episodes."""
    sigma = config.real_sigma
    if sigma is None:
        sigma = float(load_state(dream_run.es_state).strategy.sigma)
    es = dataclasses.replace(config.es, popsize=config.real_popsize, rollouts=config.real_rollouts, sigma=sigma,
                             generations=config.real_generations, eval_rollouts=config.real_eval_episodes)
    return dataclasses.replace(config.without_finetuning(), env=config.model_env(), es=es,
                               init_file=str(dream_run.controller), real_eval_every=0)


def finetune_controller(exp_dir: str | Path, dream_run: ControllerRun, config: ControllerTrainConfig,
                        verbose: bool = True) -> Path:
    """Fine-tunes the C of `dream_run` (trained in a dream) in the real game for `config.real_generations`
    generations (`real_finetune_config`), in a run of its own, `dream_run.real_finetune`; the dream run is only
    read, so it keeps what the dream alone achieved. `config` gives the fine-tuning's settings (those of the
    dream's own CMA-ES do not matter: run.iterate's last round trains with other ones). Resumes from the
    fine-tuning's es.pkl; returns its folder."""
    config = config.validated()
    if config.real_generations < 1:
        raise UserError(f"--real_generations={config.real_generations}: nothing to fine-tune")
    _check_vae(exp_dir)
    for needed in (dream_run.controller, dream_run.es_state):
        if not needed.exists():
            raise UserError(f"{needed}: missing; the real fine-tuning starts from a C trained in the dream")
    controller, _ = Controller.load(dream_run.controller)
    real = real_finetune_config(config, dream_run)
    phase = _Phase(dream_run.real_finetune, real, controller, name="real fine-tuning", prefix="real fine-tuning: ",
                   title=f"CMA-ES, real fine-tuning in {real.env} of {dream_run.folder.name}")
    phase.files.folder.mkdir(parents=True, exist_ok=True)
    state = _open_state(phase.files, real, controller, {"fine_tuned_from": dream_run.folder.name,
                                                        "dream_controller_sha256": file_digest(dream_run.controller)})
    say = _printer(verbose)
    _announce(phase, state, say, f"{real.es.generations} generations in real {real.env} from "
              f"{dream_run.folder.name}'s CMA mean ({controller.num_params} parameters), sigma {real.es.sigma:.4g}, "
              f"population {real.es.popsize} x {real.es.rollouts} real episodes")
    if state.generation < real.es.generations:
        evaluate = _real_evaluator(exp_dir, real, controller)
        try:
            _search(phase, state, evaluate, say)
        finally:
            evaluate.close()
    return phase.files.folder


def _announce(phase: _Phase, state: ESState, say, start: str) -> None:
    if state.generation >= phase.config.es.generations:
        say(f"{phase.name}: {phase.files.folder} already ran {state.generation} generations")
    elif state.generation:
        say(f"{phase.name}: resuming {phase.files.folder} at generation {state.generation + 1}")
    else:
        say(f"{phase.name}: {start}")


def _search(phase: _Phase, state: ESState, evaluate: Evaluator, say, real_check: RealEvaluator | None = None) -> None:
    """Generations up to the phase's budget, each checkpointed; the CMA mean evaluated every `eval_every`
    generations and at the last (in a dream with `real_eval_every`, also played in the real game)."""
    config, es = phase.config, phase.config.es
    writer = SummaryWriter(phase.files.tensorboard)
    writer.hyperparameters(dataclasses.asdict(config), state.generation)
    try:
        while state.generation < es.generations:
            record = run_generation(state, es, evaluate)
            logs = {"es/best": record["best"], "es/mean": record["mean"], "es/worst": record["worst"],
                    "es/sigma": record["sigma"], "perf/seconds_per_generation": record["seconds"]}
            generation = state.generation
            if generation % es.eval_every == 0 or generation == es.generations:
                evaluation = evaluate_mean(state, es, evaluate)
                logs["eval/return_mean"], logs["eval/return_std"] = evaluation["mean"], evaluation["std"]
                say(f"{phase.prefix}evaluation at generation {generation}: CMA mean scores {evaluation['mean']:.1f} "
                    f"± {evaluation['std']:.1f} over {evaluation['episodes']} episodes")
            if real_check is not None and (generation % config.real_eval_every == 0 or generation == es.generations):
                _real_check(phase, state, real_check, logs, say)
            _checkpoint(phase, state)
            writer.scalars(generation, logs)
            writer.flush()
            say(phase.prefix + generation_line(record, state, es))
    finally:
        writer.close()


def _real_check(phase: _Phase, state: ESState, real_check: RealEvaluator, logs: dict, say) -> None:
    """The paper's "virtual vs actual score": the CMA mean in the real game, so exploiting M shows as it happens.
    With `select_by_real_check`, a mean that beats every earlier check is kept in best_real_check.json."""
    config = phase.config
    seeds = evaluation_seeds(config.es, config.real_eval_episodes)
    mean = np.asarray(state.strategy.mean, np.float32)
    scores = real_check(mean[None], seeds)[0]
    dream = state.evaluations[-1]["mean"] if state.evaluations else float("nan")
    earlier = [e["real_mean"] for e in state.evaluations if "real_mean" in e]
    check = {"generation": state.generation, "real_mean": float(scores.mean()), "real_std": float(scores.std()),
             "real_episodes": int(scores.size)}
    state.evaluations.append(check)
    if config.select_by_real_check and check["real_mean"] > max(earlier, default=-np.inf):
        save_controller(phase.controller, phase.files.best_real_check, mean, env=config.env, **check)
    logs["real/return_mean"] = check["real_mean"]
    say(f"real check at generation {state.generation}: {scores.mean():.1f} ± {scores.std():.1f} over "
        f"{scores.size} real episodes (last dream evaluation {dream:.1f})")


def _keep_best_real_check(phase: _Phase, state: ESState, say) -> None:
    """At the end of a dream run with `select_by_real_check`: controller.json becomes the CMA mean of the best real
    check (the earliest of equals) and history.json names it (`selected`). Repeating it changes nothing, so a run
    resumed after its last generation ends the same."""
    files, checks = phase.files, [e for e in state.evaluations if "real_mean" in e]
    best = max(checks, key=lambda e: e["real_mean"])  # max keeps the first of equals
    controller, params = Controller.load(files.best_real_check)
    if read_json(files.best_real_check).get("generation") != best["generation"]:
        raise UserError(f"{files.best_real_check}: not the CMA mean of generation {best['generation']}'s real "
                        "check, the best recorded in es.pkl; remove the folder to train again")
    save_controller(controller, files.controller, params, generation=state.generation, env=phase.config.env,
                    selected_generation=best["generation"])
    write_history(files.history, state, selected=best)
    say(f"{phase.name}: kept the CMA mean of generation {best['generation']} (real check {best['real_mean']:.1f} "
        f"over {best['real_episodes']} episodes, the best of {len(checks)}) as {files.controller}")


def _checkpoint(phase: _Phase, state: ESState) -> None:
    """Everything of this generation, each file atomic; es.pkl last, so a resume never skips a written result."""
    files, controller = phase.files, phase.controller
    info = {"generation": state.generation, "env": phase.config.env}
    save_controller(controller, files.controller, np.asarray(state.strategy.mean, np.float32), **info)
    if state.best_params is not None:
        save_controller(controller, files.best, state.best_params, fitness=state.best_fitness, **info)
    write_history(files.history, state)
    plot_training_progress(state.history, [e for e in state.evaluations if "mean" in e], files.progress_plot,
                           title=phase.title,
                           real_checks=[e for e in state.evaluations if "real_mean" in e])
    save_state(files.es_state, state)


def _config_flags():
    """The entry point's flags: ControllerTrainConfig's and its ESConfig's; workers default to one per core."""
    return ConfigFlags(ControllerTrainConfig, defaults=ControllerTrainConfig(workers=default_workers()))


def main(argv) -> None:
    start = time.perf_counter()
    exp_dir, config = experiment_from_flags(_config_flags().parse(), ("doom_resolution",))
    files = ControllerRun(train_controller(exp_dir, config))
    print(f"controller: done in {time.perf_counter() - start:.0f}s; {files.controller}"
          + (f"; fine-tuned in the real game: {files.real_finetune.controller}" if config.real_generations else ""))


def define_flags() -> None:
    define_experiment_flags("Experiment folder with vae/vae.keras and rnn/rnn.keras.")
    _config_flags().define()


if __name__ == "__main__":
    define_flags()
    run_main(main)

"""The pipeline's settings: the shared ones once, each stage's own config nested, its flags, the shipped configs.

Each stage's config (CollectConfig, VAETrainConfig, RNNTrainConfig, ControllerTrainConfig, EvaluateConfig,
IterateConfig) is a field of `PipelineConfig`; its flags are the stage's own fields under the names the pipeline
has always used (`--vae_epochs`, `--rnn_steps`, `--popsize`, `--iterate_rounds`, ...). What several stages share
(the task, the seed, the workers and their backend, the episode cap, Doom's resolution) is set once, here, and
`PipelineConfig` builds every stage's config from it in one place (`collect_config()` ... `iterate_config()`).
C's config also holds the finetune stage's settings (`--real_generations`, `finetune_config()`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from absl import flags

from common.backend import Backend
from common.errors import UserError
from common.flags import ConfigFlags
from common.layout import DREAM_ENVS, ControllerRun, ExperimentLayout
from common.paper import DOOM_RESOLUTION, TASKS
from controller.evaluate import EvaluateConfig
from controller.interface import CONTROLLERS
from controller.train import ControllerTrainConfig
from rnn.train import RNNTrainConfig
from run.collect import CollectConfig
from run.iterate_rounds import IterateConfig
from run.iterate_rounds import controller_run as round_controller_run
from vae.train import VAETrainConfig

# The flags defined here belong to run.pipeline, whose `--help` lists them.
flags.disclaim_key_flags()

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
CONTROLLER_ENVS = {"doom": ("doomrnn", "doom"), "carracing": ("carracing", "carracingrnn")}  # first: the paper's
DOOM_RESOLUTIONS = ("640x480", "320x240", "160x120")


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Every setting of a pipeline run. Defaults are the paper's (each stage config's own); None means the
    paper's value for the task, filled in by the stage that uses it."""

    env: str = "doom"  # the task: doom (Take Cover) or carracing
    seed: int = 0  # one seed for every stage (episodes, weights, batches, CMA-ES, evaluation)
    workers: int | None = None  # processes playing real episodes (collection, evaluation); None: one per core
    # (with --backend=ray: one per CPU of the Ray cluster)
    backend: str = "processes"  # where real episodes run: processes (this machine) or ray (a Ray cluster's nodes;
    # V and M still train here)
    ray_address: str | None = None  # --backend=ray: auto joins the cluster `ray start` runs; HOST:PORT a given
    # head; unset starts a local Ray
    max_steps: int | None = None  # episode cap for collection and evaluation; None: CarRacing 1,000, Doom 2,100
    doom_resolution: str = DOOM_RESOLUTION  # Doom render size: 640x480 (paper), 320x240 or 160x120 (same view)
    controller_env: str | None = None  # where C trains: carracing, doom (real) or doomrnn (the dream; Doom's paper)
    # or carracingrnn (CarRacing's dream: needs --rnn_predict_reward)
    collect: CollectConfig = CollectConfig()  # the random rollouts
    vae: VAETrainConfig = VAETrainConfig()  # V
    rnn: RNNTrainConfig = RNNTrainConfig()  # M
    controller: ControllerTrainConfig = ControllerTrainConfig()  # C and its CMA-ES
    evaluate: EvaluateConfig = EvaluateConfig()  # the final evaluation in the real game
    iterate: IterateConfig = IterateConfig(rounds=0)  # the iterative rounds after round 0 (none by default)

    @property
    def evaluation_env(self) -> str:
        """The real game C is finally played in (a dream-trained Doom C plays real Doom)."""
        return "carracing" if self.env == "carracing" else "doom"

    def resolved(self) -> PipelineConfig:
        """Checks the settings that need no model code; fills in workers and controller_env."""
        if self.env not in TASKS:
            raise UserError(f"--env={self.env}: unknown task; choose from {', '.join(TASKS)}")
        controller_env = self.controller_env or CONTROLLER_ENVS[self.env][0]
        if controller_env not in CONTROLLER_ENVS[self.env]:
            raise UserError(f"--controller_env={controller_env}: a {self.env} controller trains in "
                            f"{' or '.join(CONTROLLER_ENVS[self.env])}")
        if controller_env == "carracingrnn" and not self.rnn.predict_reward:
            raise UserError("--controller_env=carracingrnn: the CarRacing dream pays M's predicted reward; add "
                            "--rnn_predict_reward (and --rnn_predict_done for its episode end)")
        CONTROLLERS.resolve(self.controller.controller)  # an unknown C is one error line before any stage runs
        if self.doom_resolution not in DOOM_RESOLUTIONS:
            raise UserError(f"--doom_resolution={self.doom_resolution}: choose from {', '.join(DOOM_RESOLUTIONS)}")
        _check_iterate(self.iterate, self.env, controller_env)
        values = PIPELINE_FLAGS.values(self)
        for name in ("episodes", "vae_epochs", "vae_batch_size", "rnn_eval_every", "popsize", "rollouts",
                     "generations", "eval_every", "eval_rollouts", "eval_episodes"):
            if values[name] < 1:
                raise UserError(f"--{name}={values[name]}: must be at least 1")
        for name in ("workers", "max_steps", "z_size", "vae_max_steps", "rnn_steps", "rnn_batch_size",
                     "rnn_seq_len", "rnn_hidden", "controller_max_steps"):
            if values[name] is not None and values[name] < 1:
                raise UserError(f"--{name}={values[name]}: must be at least 1 (or left unset)")
        if self.controller.real_eval_every < 0:
            raise UserError(f"--real_eval_every={self.controller.real_eval_every}: must be >= 0")
        for name in ("temperature", "sigma"):
            if not values[name] > 0:
                raise UserError(f"--{name}={values[name]}: must be positive")
        workers = self.workers or Backend(self.backend, self.ray_address or None).validated().default_workers()
        return dataclasses.replace(self, controller_env=controller_env, workers=workers)

    # ---- each stage's config, built from the shared settings and its own part ----

    def collect_config(self) -> CollectConfig:
        return dataclasses.replace(self.collect, env=self.env, workers=self.workers, backend=self.backend,
                                   ray_address=self.ray_address, seed=self.seed,
                                   max_steps=self.max_steps, doom_resolution=self.doom_resolution)

    def vae_config(self) -> VAETrainConfig:
        return dataclasses.replace(self.vae, seed=self.seed)

    def rnn_config(self) -> RNNTrainConfig:
        """M's; checkpointed at every validation, so a resumed run keeps the best model's step."""
        return dataclasses.replace(self.rnn, seed=self.seed, checkpoint_every=self.rnn.eval_every)

    def controller_config(self) -> ControllerTrainConfig:
        """C's training (the controller stage's; the rounds retrain with it): without the real fine-tuning, the
        finetune stage's, so that its settings never make C train again."""
        return self.finetune_config().without_finetuning()

    def finetune_config(self) -> ControllerTrainConfig:
        """C's settings as the flags give them, the real fine-tuning's (`--real_generations`) included."""
        return dataclasses.replace(self.controller, env=self.controller_env, workers=self.workers,
                                   backend=self.backend, ray_address=self.ray_address,
                                   es=dataclasses.replace(self.controller.es, seed=self.seed),
                                   max_steps=self.controller.max_steps or self.max_steps,
                                   doom_resolution=self.doom_resolution)

    def controller_run(self, exp_dir: str | os.PathLike) -> ControllerRun:
        """Where the controller stage writes C: `controller/<env>_<variant>[_t<tau>]/`."""
        config = self.controller_config()
        return ExperimentLayout(Path(exp_dir).expanduser().resolve()).controller_run(
            config.env, config.controller, config.temperature if config.env in DREAM_ENVS else None)

    def evaluate_config(self, exp_dir: str | os.PathLike) -> EvaluateConfig:
        return dataclasses.replace(self.evaluate, env=self.evaluation_env, workers=self.workers, seed=self.seed,
                                   backend=self.backend, ray_address=self.ray_address,
                                   controller_file=str(self.controller_run(exp_dir).controller),
                                   max_steps=self.max_steps, doom_resolution=self.doom_resolution)

    def final_controller_run(self, exp_dir: str | os.PathLike) -> tuple[ExperimentLayout, ControllerRun]:
        """The C the run ends with and the experiment folder of its V and M: the controller stage's, or with
        iterative rounds the last round's. The finetune stage fine-tunes this C."""
        if not self.iterate.rounds:
            return ExperimentLayout(Path(exp_dir).expanduser().resolve()), self.controller_run(exp_dir)
        last = ExperimentLayout(Path(exp_dir).expanduser().resolve()).round(self.iterate.rounds)
        return last, round_controller_run(last, self.iterate_config(), self.iterate.rounds)

    def finetune_evaluate_config(self, exp_dir: str | os.PathLike) -> EvaluateConfig:
        """The fine-tuned C in the real game, on the evaluation stage's episodes."""
        _, dream_run = self.final_controller_run(exp_dir)
        return dataclasses.replace(self.evaluate_config(exp_dir),
                                   controller_file=str(dream_run.real_finetune.controller))

    def iterate_config(self) -> IterateConfig:
        """run.iterate's: the pipeline's M (fine-tuned for `--iterate_rnn_steps`), C and evaluation, with the
        iterate_* budget per round. C's episodes are capped as the evaluation's (`--max_steps`), not by
        `--controller_max_steps`."""
        fine_tune = self.iterate.rnn
        return dataclasses.replace(
            self.iterate, env=self.env, controller_env=self.controller_env, rounds=max(self.iterate.rounds, 1),
            workers=self.workers, seed=self.seed,
            backend=self.backend, ray_address=self.ray_address,
            max_steps=self.max_steps, doom_resolution=self.doom_resolution, eval_episodes=self.evaluate.episodes,
            rnn=dataclasses.replace(self.rnn_config(), steps=fine_tune.steps, val_fraction=fine_tune.val_fraction),
            controller=self.controller_config())

    def validate_stages(self) -> None:
        """Every stage's own checks, up front: a bad value must not wait an hour for its stage to be found."""
        self.collect_config().resolved()
        self.vae_config().validated()
        self.rnn_config().resolved(self.env)
        self.finetune_config().validated()  # C's settings, the real fine-tuning's included
        if self.iterate.rounds:
            self.iterate_config().validated()


def _check_iterate(iterate: IterateConfig, env: str, controller_env: str) -> None:
    if iterate.rounds < 0:
        raise UserError(f"--iterate_rounds={iterate.rounds}: must be >= 0")
    if iterate.rounds and controller_env == "doom":
        raise UserError("--iterate_rounds needs C trained in a dream (--controller_env=doomrnn or carracingrnn) or "
                        "in CarRacing's real game, not in real Doom")
    if not iterate.generations or min(iterate.generations) < 1:
        raise UserError(f"--iterate_generations={','.join(map(str, iterate.generations))}: give one whole "
                        "number >= 1 per round, separated by commas")
    if iterate.hole_episodes < 0:
        raise UserError(f"--iterate_hole_episodes={iterate.hole_episodes}: must be at least 0")
    if iterate.round_temperature is not None and not iterate.round_temperature > 0:
        raise UserError(f"--iterate_round_temperature={iterate.round_temperature}: must be positive")
    if iterate.round_controller is not None:
        try:
            CONTROLLERS.resolve(iterate.round_controller)
        except UserError as error:
            raise UserError(f"--iterate_round_controller: {error}") from None
    if iterate.hole_episodes and not (controller_env in DREAM_ENVS and iterate.audit_episodes):
        raise UserError(f"--iterate_hole_episodes={iterate.hole_episodes}: needs the dream audit (C trained in a "
                        "dream and --iterate_audit_episodes >= 1), which names the holes")


def _all_but(path: str, config_class: type, keep: Sequence[str]) -> set[str]:
    return {f"{path}.{field.name}" for field in dataclasses.fields(config_class) if field.name not in keep}


# The pipeline's flags: the shared settings, then each stage's own fields under their historical names. Skipped:
# what the shared settings fill in, what the pipeline derives (C's file, M's checkpoint interval) and what only
# a stage's own entry point sets (resume, warm starts, the controller-policy options of collection).
SHARED = ("env", "workers", "backend", "ray_address", "seed", "max_steps", "doom_resolution")
PIPELINE_FLAGS = ConfigFlags(
    PipelineConfig,
    names={"vae": "vae_", "vae.z_size": "z_size", "rnn": "rnn_", "rnn.rnn": "rnn", "rnn.rnn_cell": "rnn_cell",
           "evaluate": "eval_",
           "controller.max_steps": "controller_max_steps",
           "iterate": "iterate_", "iterate.episodes_per_round": "iterate_episodes", "iterate.rnn": "rnn_"},
    skip=frozenset({
        *(f"{stage}.{name}" for stage in ("collect", "controller", "evaluate", "iterate") for name in SHARED
          if (stage, name) != ("controller", "max_steps")),  # C's own cap is --controller_max_steps
        "collect.episode_timeout", "collect.controller_file", "collect.explore", "collect.explore_episodes",
        "collect.models_dir",
        "vae.seed", "vae.resume",
        "rnn.seed", "rnn.resume", "rnn.checkpoint_every", "rnn.val_pattern", "rnn.init_model",
        "controller.es.seed", "controller.episode_timeout", "controller.init_file",
        "evaluate.controller_file", "evaluate.episode_timeout",
        "iterate.eval_episodes", "iterate.controller", "iterate.controller_env",
        *_all_but("iterate.rnn", RNNTrainConfig, ("steps",)),
    }))


# ---- the shipped configs ----

def config_names() -> list[str]:
    """The configs shipped in `run/configs/`."""
    return sorted(path.stem for path in CONFIG_DIR.glob("*.cfg"))


def config_path(name: str) -> Path:
    """A shipped config by name (`doom_tiny`), or a flagfile by path; anything else raises `UserError`."""
    path = Path(name).expanduser()
    if path.is_file():
        return path.resolve()
    shipped = CONFIG_DIR / f"{name}.cfg"
    if shipped.is_file():
        return shipped
    raise UserError(f"--config={name}: no such config; use a flagfile path or one of {', '.join(config_names())}")


def define_config_flags(flag_values: flags.FlagValues) -> None:
    """Defines `--config` and the pipeline's flags on `flag_values`."""
    flags.DEFINE_string("config", None, f"A shipped config ({', '.join(config_names())}) or a flagfile path; "
                        "flags on the command line override it.", flag_values=flag_values)
    PIPELINE_FLAGS.define(flag_values)


def load_config(name: str, **overrides: Any) -> PipelineConfig:
    """The `PipelineConfig` a shipped config (or flagfile) gives, with `overrides` as if given as flags."""
    flag_values = flags.FlagValues()
    define_config_flags(flag_values)
    argv = ["pipeline", f"--flagfile={config_path(name)}", *(f"--{k}={v}" for k, v in overrides.items())]
    try:
        flag_values(argv)
    except flags.Error as error:
        raise UserError(str(error)) from None
    return PIPELINE_FLAGS.parse(flag_values)


def with_config_flagfile(argv: Sequence[str]) -> list[str]:
    """`argv` with `--flagfile=<the config's file>` first, so every flag on the command line overrides it."""
    argv = list(argv)
    for i, arg in enumerate(argv[1:], 1):
        name = None
        if arg.startswith("--config="):
            name = arg.split("=", 1)[1]
        elif arg == "--config" and i + 1 < len(argv):
            name = argv[i + 1]
        if name is not None:
            return [argv[0], f"--flagfile={config_path(name)}", *argv[1:]]
    return argv

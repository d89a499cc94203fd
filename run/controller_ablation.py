"""The paper's CarRacing table for one experiment: its three controllers (full, z only, z through a hidden layer)
trained with the same budget on the same world model, each scored over 100 real tracks beside 906 / 632 / 788.

    python -m run.controller_ablation --exp_dir=exp/carracing_dream
    python -m run.controller_ablation --exp_dir=exp/carracing_dream --generations=100 --popsize=32 --rollouts=8
    python -m run.controller_ablation --exp_dir=exp/carracing_small --env=carracing   # an M without reward output

The experiment must already have V, M and the series (e.g. from `python -m run.pipeline --env=carracing`). The
ablation runs on one world model, the last iterative round's (`--round` picks another; round 0 is the random
data's), in a folder of its own, `DIR/controller_ablation/`, where that round's V, M and start frames are copied
(`world_model.json` records which, with their SHA-256: one table never mixes two world models; `run.world_copy`).
For each C of `--controllers`, from scratch and with the same CMA-ES budget (the settings default to the
experiment's `pipeline.json`): `controller.train --env=carracingrnn` in M's dream (the default when M predicts
the reward) or `--env=carracing` in the real game (into `controller_ablation/controller/<env>_<variant>[_t<tau>]/`,
resuming its checkpoint), then the final C (the CMA mean) plays `--real_episodes` real tracks
(`controller.evaluate`, `evaluation_carracing.json`) and, when it trained in the dream, `--dream_episodes` dreams
(`dream_evaluation.json`). Scores already on disk for the same controller file and episodes are kept, so a killed
run resumes. Writes `DIR/report/controller_ablation.md` and `.json` after every C, beside the paper's numbers;
`run.report` then takes the CarRacing table's three rows from it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from absl import logging

from common.errors import UserError, run_main
from common.flags import ConfigFlags
from common.layout import ControllerRun, ExperimentLayout, experiment
from common.paper import (
    ABLATION_CONTROLLER_COUNTS,
    CARRACING_CONTROLLERS,
    CARRACING_SCORES,
    CARRACING_SOLVED,
    EPISODE_STEPS,
    PARAMETER_COUNTS,
)
from common.storage import read_json, write_json, write_text
from controller.evaluate import EvaluateConfig
from controller.interface import CONTROLLERS
from controller.model import Controller
from controller.pretrained import define_experiment_flags, experiment_from_flags
from controller.train import ControllerTrainConfig, train_controller
from rnn.model import load_rnn
from run.controller_scores import budget_from_pipeline, dream_score, es_config, last_cma_evaluation, real_score
from run.world_copy import copy_world, round_world

ABLATION_ENVS = ("carracingrnn", "carracing")  # C trains in M's dream, or in the real game
CARRACING_STEPS = EPISODE_STEPS["carracing"]
DREAM_TEMPERATURE = 1.0  # CarRacing's dream at M's own distribution (the paper gives no tau for it)


@dataclasses.dataclass(frozen=True)
class AblationConfig:
    """The ablation; None means the experiment's pipeline setting (`pipeline.json`), else the paper's."""

    controllers: tuple[str, ...] = CARRACING_CONTROLLERS  # C's to train, by registered name (the paper's three:
    # full reads [z, h], z reads z only, z_hidden feeds z through 40 tanh units)
    env: str | None = None  # where each C trains: carracingrnn (M's dream) or carracing (the real game); None:
    # the dream when M predicts the reward, else the real game
    popsize: int | None = None  # CMA-ES population (paper: 64)
    rollouts: int | None = None  # episodes per candidate (paper: 16)
    sigma: float | None = None  # CMA-ES initial step size (0.1)
    generations: int | None = None  # CMA-ES generations of every C
    eval_every: int | None = None  # generations between evaluations of the CMA mean (paper: 25)
    eval_rollouts: int | None = None  # episodes per such evaluation (paper: 1,024)
    temperature: float | None = None  # the dream's tau; None: the pipeline's when it trained C in the CarRacing
    # dream, else 1.0 (M's own distribution)
    max_steps: int | None = None  # training episode cap; None: the pipeline's, else 1,000 (CarRacing's)
    real_max_steps: int | None = None  # real scoring's episode cap; None: the pipeline's, else 1,000
    round: int | None = None  # the iterative round whose V and M the C's use; None: the last (0: random data)
    dream_episodes: int = 1024  # dreams scoring each final C trained in the dream
    real_episodes: int = 100  # real tracks scoring each final C (paper: 100)
    workers: int | None = None  # processes playing real episodes; None: the pipeline's, else one per core
    seed: int | None = None  # None: the pipeline's, else 0
    dream_bfloat16: bool = False  # train C in a dream whose matmuls run in bfloat16 (faster on AVX-512 BF16 CPUs;
    # the final C is still scored in the float32 dream)

    def resolved(self, pipeline: dict[str, Any]) -> AblationConfig:
        """Fills the unset fields from the pipeline's recorded config (else the paper's) and checks those that
        need no model; `env` stays None when unset (M decides, `with_env`)."""
        if not self.controllers:
            raise UserError("--controllers: give at least one")
        if len(set(self.controllers)) != len(self.controllers):
            raise UserError(f"--controllers={','.join(self.controllers)}: a controller is repeated")
        for name in self.controllers:
            if ":" not in name and name not in CONTROLLERS.names():
                raise UserError(f"--controllers={','.join(self.controllers)}: no C is registered as {name!r}; "
                                f"choose from {', '.join(CONTROLLERS.names())} or give module:Class")
            CONTROLLERS.resolve(name)
        if self.env is not None and self.env not in ABLATION_ENVS:
            raise UserError(f"--env={self.env}: choose carracingrnn (the dream) or carracing (the real game)")
        for name in ("dream_episodes", "real_episodes"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name}={getattr(self, name)}: must be at least 1")
        for name in ("max_steps", "real_max_steps", "workers"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise UserError(f"--{name}={getattr(self, name)}: must be at least 1 (or left unset)")
        filled = budget_from_pipeline(self, pipeline, {"workers": os.cpu_count() or 1, "seed": 0})
        if self.temperature is None:
            dream_trained = pipeline.get("controller_env") == "carracingrnn"
            filled["temperature"] = (pipeline.get("temperature") if dream_trained else None) or DREAM_TEMPERATURE
        config = dataclasses.replace(self, **filled)
        for name in self.controllers:  # CMA-ES's counts and sigma, tau: one line before anything is written
            train_config(config, name, self.env or "carracingrnn").validated()
        return config

    @property
    def in_dream(self) -> bool:
        return self.env == "carracingrnn"


def train_config(config: AblationConfig, controller: str, env: str | None = None) -> ControllerTrainConfig:
    """One C's training: every C gets the same CMA-ES settings (budget and seed)."""
    return ControllerTrainConfig(env=env or config.env, controller=controller, es=es_config(config),
                                 workers=config.workers,
                                 temperature=config.temperature, max_steps=config.max_steps,
                                 dream_bfloat16=config.dream_bfloat16)


def with_env(config: AblationConfig, rnn_path: Path) -> AblationConfig:
    """`config` with its `env` set from the world model's M: CarRacing's M only (3 action values), the dream only
    for an M with a reward output (its dream pays M's predicted reward), which is then the default."""
    rnn = load_rnn(rnn_path)
    if rnn.action_size != 3:
        raise UserError(f"{rnn_path}: an M of {rnn.action_size} action value(s), a Doom experiment's; the controller "
                        "ablation is CarRacing's (Doom's table is run.temperature_sweep)")
    predicts_reward = bool(getattr(rnn, "predict_reward", False))
    if config.env == "carracingrnn" and not predicts_reward:
        raise UserError(f"--env=carracingrnn: {rnn_path} has no reward output, and the CarRacing dream pays M's "
                        "predicted reward; train C in the real game (--env=carracing) or M with rnn.train "
                        "--predict_reward")
    return dataclasses.replace(config, env=config.env or ("carracingrnn" if predicts_reward else "carracing"))


def paper_row(controller: str) -> dict | None:
    """The paper's CarRacing row of a C (method, mean, std over 100 tracks, parameters at z 32 and LSTM 256)."""
    if controller not in CARRACING_CONTROLLERS:
        return None
    index = CARRACING_CONTROLLERS.index(controller)
    params = PARAMETER_COUNTS["carracing"]["controller"] if controller == "full" else \
        ABLATION_CONTROLLER_COUNTS[controller]
    return {**CARRACING_SCORES[index], "params": params}


def _cell(mean: float | None, std: float | None, episodes: int | None = None) -> str:
    if mean is None:
        return "—"
    text = f"{mean:,.0f} ± {std:,.0f}"
    return f"{text} ({episodes:,})" if episodes else text


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'s' if n != 1 else ''}"


def table_markdown(rows: Sequence[dict]) -> str:
    """The ablation table: the paper's real score beside this run's real (and dream) score, parameters, budget."""
    lines = ["| C | paper: real (100 tracks) | this run: real | this run: dream | parameters (paper's) | "
             "generations | training episodes |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        paper = row.get("paper") or {}
        label = f"{paper['method']} (`{row['controller']}`)" if paper else f"`{row['controller']}` (not in the paper)"
        params = f"{row['params']:,}" + (f" ({paper['params']:,})" if paper else "")
        lines.append(
            f"| {label} | {_cell(paper.get('mean'), paper.get('std'))} "
            f"| {_cell(row.get('real_mean'), row.get('real_std'), row.get('real_episodes'))} "
            f"| {_cell(row.get('dream_mean'), row.get('dream_std'), row.get('dream_episodes'))} "
            f"| {params} | {row['generations']:,} | {row['episodes']:,} |")
    return "\n".join(lines)


def write_table(layout: ExperimentLayout, rows: list[dict], config: AblationConfig) -> tuple[Path, Path]:
    md_path, json_path = layout.ablation_table(".md"), layout.ablation_table(".json")
    write_json(json_path, {"rows": rows, "config": dataclasses.asdict(config)})
    where = (f"inside the dream at τ {config.temperature:g} (M's predicted rewards)" if config.in_dream
             else "in the real game")
    scored = ("on real tracks and in dreams at the same τ (the sum of M's predicted rewards)" if config.in_dream
              else "on real tracks")
    text = (f"# CarRacing: controller ablation of `{layout.root.name}`\n\n"
            f"Each C trained from scratch {where} with the same budget on one world model, iterative round "
            f"{rows[0]['round'] if rows else '—'}'s V and M (round 0: random data only); its final CMA mean then "
            f"scored {scored}: mean ± std return, episodes in parentheses. Paper column: its CarRacing table "
            "(100 random tracks, C trained in the real game). Parameters: this run's C (the paper's, at z 32 "
            "and LSTM 256).\n\n"
            f"{table_markdown(rows)}\n\nSolved: an average of {CARRACING_SOLVED} or more over 100 tracks.\n\n"
            f"Budget of every C: CMA-ES population {config.popsize} x {config.rollouts} "
            f"{'dreams' if config.in_dream else 'real episodes'} a candidate, "
            f"{_count(config.generations, 'generation')} (σ0 {config.sigma:g}), the CMA mean evaluated every "
            f"{_count(config.eval_every, 'generation')} on {_count(config.eval_rollouts, 'episode')}"
            f"{', matmuls in bfloat16 while training' if config.dream_bfloat16 and config.in_dream else ''}; "
            f"training episodes capped at {config.max_steps or CARRACING_STEPS:,} steps, real scoring's at "
            f"{config.real_max_steps or CARRACING_STEPS:,}. The table holds the C's of the last command "
            "(`--controllers`); each one's folder is kept, and resumed, under `controller_ablation/controller/`.\n")
    write_text(md_path, text)
    return md_path, json_path


def _row(layout: ExperimentLayout, folder: Path, name: str, k: int, config: AblationConfig, real: dict,
         dream: dict | None) -> dict:
    files = ControllerRun(folder)
    controller, _ = Controller.load(files.controller)
    history = read_json(files.history)
    generations = len(history.get("generations", []))
    row = {"controller": name, "round": k, "train_env": config.env,
           "temperature": config.temperature if config.in_dream else None,
           "folder": str(folder.relative_to(layout.root)), "params": controller.num_params,
           "generations": generations, "popsize": config.popsize, "rollouts": config.rollouts,
           "episodes": generations * config.popsize * config.rollouts,
           "real_mean": real["mean"], "real_std": real["std"], "real_episodes": real["episodes"]}
    if dream is not None:
        row.update(dream_mean=dream["mean"], dream_std=dream["std"], dream_episodes=dream["episodes"])
    row.update(last_cma_evaluation(history))
    paper = paper_row(name)
    if paper:
        row["paper"] = paper
    return row


def run_ablation(exp_dir: str | os.PathLike, config: AblationConfig = AblationConfig(),
                 verbose: bool = True) -> list[dict]:
    """Trains and scores every C of `config.controllers` on one world model; returns the table's rows (also
    written to DIR/report/ after each C). Bad input raises a one-line `UserError` before anything is written."""
    layout = experiment(exp_dir, create=False)
    pipeline = read_json(layout.pipeline_record).get("config", {}) if layout.pipeline_record.exists() else {}
    if pipeline.get("env", "carracing") != "carracing":
        raise UserError(f"{layout.root}: a {pipeline['env']} experiment; the controller ablation is CarRacing's "
                        "(Doom's table is run.temperature_sweep)")
    config = config.resolved(pipeline)
    k, world = round_world(layout, config.round, "the controller ablation")
    config = with_env(config, world.rnn_model)
    ablation = copy_world(layout.controller_ablation, k, world, used="trained its C's on")

    say = print if verbose else (lambda *args, **kwargs: None)
    where = f"the dream at tau {config.temperature:g}" if config.in_dream else "the real game"
    say(f"ablation: round {k}'s world model, in {ablation.root}; every C trains in {where}")
    rows: list[dict] = []
    for name in config.controllers:
        say(f"ablation: {name}: training C ({config.generations} generations)")
        folder = train_controller(ablation.root, train_config(config, name), verbose=verbose)
        path = ControllerRun(folder).controller
        dream = None
        if config.in_dream:
            dream = dream_score(ablation.root, path, config.temperature, config.dream_episodes, config.seed,
                                config.max_steps, "carracing")
            say(f"ablation: {name}: dream {dream['mean']:.0f} ± {dream['std']:.0f} over {dream['episodes']} dreams")
        real = real_score(ablation.root, EvaluateConfig(
            env="carracing", episodes=config.real_episodes, controller_file=str(path), workers=config.workers,
            seed=config.seed, max_steps=config.real_max_steps), verbose=verbose)
        say(f"ablation: {name}: real {real['mean']:.0f} ± {real['std']:.0f} over {real['episodes']} tracks")
        rows.append(_row(layout, folder, name, k, config, real, dream))
        md_path, _ = write_table(layout, rows, config)
    say(f"ablation: wrote {md_path} and {md_path.with_suffix('.json')}")
    return rows


# The entry point's flags: every field, unset (None) ones filled from the experiment's pipeline.json.
ABLATION_FLAGS = ConfigFlags(AblationConfig)


def main(argv) -> None:
    logging.set_verbosity(logging.WARNING)
    run_ablation(experiment_from_flags(), ABLATION_FLAGS.parse())


def define_flags() -> None:
    define_experiment_flags("Experiment folder with vae/, rnn/ and series/ (a CarRacing pipeline's).")
    ABLATION_FLAGS.define()


if __name__ == "__main__":
    define_flags()
    run_main(main)

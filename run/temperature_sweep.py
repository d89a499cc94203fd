"""The paper's Doom temperature table for one experiment: C trained in the dream at each tau, scored in the dream
and in real VizDoom.

    python -m run.temperature_sweep --exp_dir=exp/doom_small --temperatures=0.1,0.5,1.0,1.15,1.3
    python -m run.temperature_sweep --exp_dir=exp/doom_small --generations=40 --popsize=32 --rollouts=8

The experiment must already have V, M and the series (e.g. from `python -m run.pipeline`). The sweep runs on one
world model, the last iterative round's (`--round` picks another; round 0 is the random data's), in a folder of
its own, `DIR/temperature_sweep/`, where that round's V, M and start frames are copied (`world_model.json`
records which, with their SHA-256: a sweep never mixes two world models). For each tau, from scratch and with the
same budget: `controller.train --env=doomrnn --temperature=tau` (into `temperature_sweep/controller/
doomrnn_<variant>_t<tau>/`, resuming its checkpoint; the CMA-ES settings default to the experiment's
`pipeline.json`), then the final C (the CMA mean) plays `--dream_episodes` dreams at that tau
(`dream_evaluation.json`, in float32, the paper's dream) and `--real_episodes` real episodes
(`controller.evaluate`, `evaluation_doom.json`). Scores already on disk for the same C and episode count are
kept, so a killed sweep resumes. Writes `DIR/report/temperature_table.md` and `.json` after every tau, beside
the paper's numbers.
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
from common.paper import DOOM_BASELINES, DOOM_RESOLUTION, DOOM_TEMPERATURE_TABLE, EPISODE_STEPS
from common.storage import read_json, write_json, write_text
from controller.evaluate import EvaluateConfig
from controller.pretrained import define_experiment_flags, experiment_from_flags
from controller.train import ControllerTrainConfig, train_controller
from run import controller_scores
from run.controller_scores import budget_from_pipeline, dream_score, es_config, last_cma_evaluation
from run.world_copy import copy_world, round_world

PAPER_TEMPERATURES = tuple(row["temperature"] for row in DOOM_TEMPERATURE_TABLE)  # the paper's table's taus
DOOM_STEPS = EPISODE_STEPS["doom"]  # the real game's and the dream's cap


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """The sweep; None means the experiment's pipeline setting (`pipeline.json`), else the paper's."""

    temperatures: tuple[float, ...] = PAPER_TEMPERATURES  # taus to train C at (the paper's table: 0.1 ... 1.3)
    controller: str = "full"  # C's inputs: full ([z, c, h], the paper's Doom C), z or z_hidden
    popsize: int | None = None  # CMA-ES population (paper: 64)
    rollouts: int | None = None  # dreams per candidate (paper: 16)
    sigma: float | None = None  # CMA-ES initial step size (0.1)
    generations: int | None = None  # CMA-ES generations at each tau
    eval_every: int | None = None  # generations between dream evaluations of the CMA mean (paper: 25)
    eval_rollouts: int | None = None  # dreams per such evaluation (paper: 1,024)
    max_steps: int | None = None  # dream episode cap (training and scoring); None: the pipeline's, else 2,100
    real_max_steps: int | None = None  # real episode cap; None: the pipeline's, else 2,100 (the task's)
    round: int | None = None  # the iterative round whose V and M the sweep uses; None: the last (0: random data)
    dream_episodes: int = 1024  # dreams scoring each final C (the paper's evaluation count)
    real_episodes: int = 100  # real VizDoom episodes scoring each final C (paper: 100)
    workers: int | None = None  # processes playing real episodes; None: the pipeline's, else one per core
    doom_resolution: str | None = None  # real Doom's render size; None: the pipeline's, else 640x480
    seed: int | None = None  # None: the pipeline's, else 0
    dream_bfloat16: bool = False  # train C in a dream whose matmuls run in bfloat16 (faster on AVX-512 BF16 CPUs;
    # the final C is still scored in the float32 dream)

    def resolved(self, pipeline: dict[str, Any]) -> SweepConfig:
        """Fills the unset fields from the pipeline's recorded config (else the paper's) and checks them."""
        if not self.temperatures:
            raise UserError("--temperatures: give at least one")
        for tau in self.temperatures:
            if not tau > 0:
                raise UserError(f"--temperatures: {tau} is not positive")
        if len(set(self.temperatures)) != len(self.temperatures):
            raise UserError("--temperatures: a temperature is repeated")
        for name in ("dream_episodes", "real_episodes"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name}={getattr(self, name)}: must be at least 1")
        return dataclasses.replace(self, **budget_from_pipeline(
            self, pipeline, {"workers": os.cpu_count() or 1, "doom_resolution": DOOM_RESOLUTION, "seed": 0}))


def _train_config(config: SweepConfig, temperature: float) -> ControllerTrainConfig:
    return ControllerTrainConfig(env="doomrnn", controller=config.controller, es=es_config(config),
                                 workers=config.workers,
                                 temperature=temperature, max_steps=config.max_steps,
                                 doom_resolution=config.doom_resolution, dream_bfloat16=config.dream_bfloat16)


def real_score(exp_dir: str | os.PathLike, controller_path: Path, config: SweepConfig, verbose: bool) -> dict:
    """`controller.evaluate` in real Doom, unless `evaluation_doom.json` already scores this controller file on
    the same episodes, cap and resolution."""
    return controller_scores.real_score(exp_dir, EvaluateConfig(
        env="doom", episodes=config.real_episodes, controller_file=str(controller_path), workers=config.workers,
        seed=config.seed, max_steps=config.real_max_steps, doom_resolution=config.doom_resolution), verbose=verbose)


def paper_row(temperature: float) -> dict | None:
    return next((row for row in DOOM_TEMPERATURE_TABLE if abs(row["temperature"] - temperature) < 1e-9), None)


def _cell(mean: float | None, std: float | None, episodes: int | None = None) -> str:
    if mean is None:
        return "not run"
    text = f"{mean:,.0f} ± {std:,.0f}"
    return f"{text} ({episodes:,})" if episodes else text


def table_markdown(rows: Sequence[dict]) -> str:
    """The temperature table, the paper's columns beside this run's (N episodes in parentheses)."""
    lines = ["| τ | paper: dream | paper: real | this run: dream | this run: real | generations | "
             "CMA mean in the dream, last training evaluation |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        paper = paper_row(row["temperature"]) or {}
        lines.append(
            f"| {row['temperature']:.2f} | {_cell(paper.get('dream_mean'), paper.get('dream_std')) if paper else '—'} "
            f"| {_cell(paper.get('real_mean'), paper.get('real_std')) if paper else '—'} "
            f"| {_cell(row.get('dream_mean'), row.get('dream_std'), row.get('dream_episodes'))} "
            f"| {_cell(row.get('real_mean'), row.get('real_std'), row.get('real_episodes'))} "
            f"| {row.get('generations', 0):,} "
            f"| {_cell(row.get('cma_eval_mean'), row.get('cma_eval_std'), row.get('cma_eval_episodes'))} |")
    return "\n".join(lines)


def write_table(layout: ExperimentLayout, rows: list[dict], config: SweepConfig) -> tuple[Path, Path]:
    md_path, json_path = layout.temperature_table(".md"), layout.temperature_table(".json")
    write_json(json_path, {"rows": rows, "config": dataclasses.asdict(config)})
    baselines = ", ".join(f"{name} {mean} ± {std}" for name, (mean, std) in DOOM_BASELINES.items())
    text = (f"# Doom Take Cover: temperature sweep of `{layout.root.name}`\n\n"
            "C trained inside the dream at each τ; its final CMA mean then scored (mean ± std steps survived, "
            "episodes in parentheses) in the dream at the same τ and in real VizDoom. Paper columns: "
            "its temperature table (100 real rollouts).\n\n"
            f"{table_markdown(rows)}\n\nPaper baselines in real Doom: {baselines}. Solved: > 750.\n\n"
            f"World model: iterative round {rows[0]['round'] if rows else '—'}'s V and M (round 0: random data "
            f"only). Every τ trains from scratch with the same budget: CMA-ES population {config.popsize} x "
            f"{config.rollouts} dreams, {config.generations} generations (σ0 {config.sigma})"
            f"{', matmuls in bfloat16 while training' if config.dream_bfloat16 else ''}; dream episodes capped at "
            f"{config.max_steps or DOOM_STEPS} steps.\n")
    write_text(md_path, text)
    return md_path, json_path


def run_sweep(exp_dir: str | os.PathLike, config: SweepConfig = SweepConfig(), verbose: bool = True) -> list[dict]:
    """Trains and scores C at every temperature; returns the table's rows (also written to DIR/report/)."""
    layout = experiment(exp_dir, create=False)
    pipeline = read_json(layout.pipeline_record).get("config", {}) if layout.pipeline_record.exists() else {}
    if pipeline.get("env", "doom") != "doom":
        raise UserError(f"{layout.root}: a {pipeline['env']} experiment; the temperature sweep is Doom's")
    config = config.resolved(pipeline)
    k, world = round_world(layout, config.round, "the sweep")
    sweep = copy_world(layout.temperature_sweep, k, world, used="swept")

    say = print if verbose else (lambda *args, **kwargs: None)
    say(f"sweep: round {k}'s world model, in {sweep.root}")
    rows: list[dict] = []
    for tau in config.temperatures:
        say(f"sweep: tau {tau:g}: training C in the dream ({config.generations} generations)")
        folder = train_controller(sweep.root, _train_config(config, tau), verbose=verbose)
        path = ControllerRun(folder).controller
        history = read_json(ControllerRun(folder).history)
        dream = dream_score(sweep.root, path, tau, config.dream_episodes, config.seed, config.max_steps, "doom")
        say(f"sweep: tau {tau:g}: dream {dream['mean']:.0f} ± {dream['std']:.0f} over {dream['episodes']} dreams")
        real = real_score(sweep.root, path, config, verbose)
        say(f"sweep: tau {tau:g}: real {real['mean']:.0f} ± {real['std']:.0f} over {real['episodes']} episodes")
        row = {"temperature": tau, "round": k, "controller": str(folder.relative_to(layout.root)),
               "generations": len(history.get("generations", [])),
               "dream_mean": dream["mean"], "dream_std": dream["std"], "dream_episodes": dream["episodes"],
               "real_mean": real["mean"], "real_std": real["std"], "real_episodes": real["episodes"]}
        row.update(last_cma_evaluation(history))
        paper = paper_row(tau)
        if paper:
            row["paper"] = paper
        rows.append(row)
        md_path, _ = write_table(layout, rows, config)
    say(f"sweep: wrote {md_path} and {md_path.with_suffix('.json')}")
    return rows


# The entry point's flags: every field, unset (None) ones filled from the experiment's pipeline.json.
SWEEP_FLAGS = ConfigFlags(SweepConfig)


def main(argv) -> None:
    logging.set_verbosity(logging.WARNING)
    run_sweep(experiment_from_flags(), SWEEP_FLAGS.parse())


def define_flags() -> None:
    define_experiment_flags("Experiment folder with vae/, rnn/ and series/ (a Doom pipeline's).")
    SWEEP_FLAGS.define()


if __name__ == "__main__":
    define_flags()
    run_main(main)

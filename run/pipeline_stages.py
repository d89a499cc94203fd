"""The pipeline's stages: for each, the settings that decide its output, whether that output is on disk, and the
call that makes it."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

from common.layout import STAGES, ControllerRun, ExperimentLayout
from common.storage import episode_name, file_digest, read_json
from controller.evaluate import evaluate_controller
from controller.train import finetune_controller, train_controller
from rnn.train import train_rnn
from run.collect import collect_rollouts, is_complete
from run.iterate_rounds import iterate
from run.pipeline_config import PipelineConfig
from run.report import ReportConfig, write_report
from vae.encode import encode_rollouts
from vae.train import train_vae

# Fields of a stage's config that do not change its result: a change to them does not make the stage run again.
OPERATIONAL = {"workers", "backend", "ray_address", "episode_timeout", "verbose", "checkpoint_every", "log_every",
               "resume"}


def settings_of(stage_config: Any) -> dict:
    """A stage config as JSON, without the fields that do not change its result."""
    if stage_config is None:
        return {}
    fields = dataclasses.asdict(stage_config)
    return json.loads(json.dumps({k: v for k, v in fields.items() if k not in OPERATIONAL}))


def same_settings(recorded: Any, current: Any) -> bool:
    """True when the settings agree on every field both know: a field added to a stage's config after a run
    (which that run could not set) does not make its finished stages run again."""
    if isinstance(recorded, dict) and isinstance(current, dict):
        return all(same_settings(recorded[key], current[key]) for key in recorded.keys() & current.keys())
    return recorded == current


def _read(path) -> Any:
    try:
        return read_json(path)
    except (OSError, ValueError):
        return None


# ---- is a stage's output on disk ----

def _collect_complete(layout: ExperimentLayout, config: PipelineConfig) -> bool:
    return all(is_complete(layout.rollouts / episode_name(i)) for i in range(config.collect.episodes))


def _encode_complete(layout: ExperimentLayout, config: PipelineConfig) -> bool:
    return layout.initial_z.exists() and \
        len(list(layout.series.glob("ep*.npz"))) == len(list(layout.rollouts.glob("ep*.npz")))


def _generations_done(run: ControllerRun) -> int:
    """The CMA-ES generations a controller run has written (0 without its controller.json)."""
    history = _read(run.history) if run.controller.exists() else None
    return len(history.get("generations", [])) if isinstance(history, dict) else 0


def _controller_complete(layout: ExperimentLayout, config: PipelineConfig) -> bool:
    return _generations_done(config.controller_run(layout.root)) >= config.controller.es.generations


def _evaluate_complete(layout: ExperimentLayout, config: PipelineConfig) -> bool:
    result = _read(config.controller_run(layout.root).evaluation(config.evaluation_env))
    return isinstance(result, dict) and result.get("episodes") == config.evaluate.episodes


def _iterate_complete(layout: ExperimentLayout, config: PipelineConfig) -> bool:
    if config.iterate.rounds == 0:
        return True
    progress = _read(layout.iterate_progress)
    return isinstance(progress, dict) and len(progress.get("rounds", [])) > config.iterate.rounds


def _finetune_complete(layout: ExperimentLayout, config: PipelineConfig) -> bool:
    if not config.controller.real_generations:
        return True
    run = config.final_controller_run(layout.root)[1].real_finetune
    result = _read(run.evaluation(config.evaluation_env))
    return (_generations_done(run) >= config.controller.real_generations and isinstance(result, dict)
            and result.get("episodes") == config.evaluate.episodes
            and result.get("controller_sha256") == file_digest(run.controller))


# ---- running a stage ----

def _run_report(layout: ExperimentLayout, config: PipelineConfig, verbose: bool) -> None:
    path = write_report(ReportConfig(exp_dirs=(str(layout.root),), seed=config.seed))
    if verbose:
        print(f"report: wrote {path}")


def _run_iterate(layout: ExperimentLayout, config: PipelineConfig, verbose: bool) -> None:
    if config.iterate.rounds:
        iterate(layout.root, config.iterate_config(), verbose=verbose)


def _run_finetune(layout: ExperimentLayout, config: PipelineConfig, verbose: bool) -> None:
    """The final C (the controller stage's or the last round's) fine-tuned in the real game, then scored as the
    evaluation stage scores: the dream-only C beside it keeps its own score."""
    if config.controller.real_generations:
        models, dream_run = config.final_controller_run(layout.root)
        finetune_controller(models.root, dream_run, config.finetune_config(), verbose=verbose)
        evaluate_controller(models.root, config.finetune_evaluate_config(layout.root), verbose=verbose)


def _finetune_settings(layout: ExperimentLayout, config: PipelineConfig) -> dict:
    """The fine-tuning's settings, the C it starts from and its evaluation's, by their places in the experiment."""
    if not config.controller.real_generations:
        return {}
    evaluate = settings_of(config.finetune_evaluate_config(layout.root))
    evaluate.pop("controller_file")
    dream_run = config.final_controller_run(layout.root)[1]
    return {**settings_of(config.finetune_config()), "dream_run": dream_run.folder.relative_to(layout.root).as_posix(),
            "evaluate": evaluate}


def _evaluate_settings(layout: ExperimentLayout, config: PipelineConfig) -> dict:
    """The evaluation's settings name C's folder, not its path: a moved experiment keeps its stages."""
    return {**settings_of(config.evaluate_config(layout.root)),
            "controller_file": config.controller_run(layout.root).folder.name}


@dataclasses.dataclass(frozen=True)
class Stage:
    name: str
    what: str
    settings: Callable[[ExperimentLayout, PipelineConfig], dict]
    complete: Callable[[ExperimentLayout, PipelineConfig], bool]  # its output is on disk (the report: never)
    run: Callable[[ExperimentLayout, PipelineConfig, bool], Any]  # its return value is not used


PIPELINE: tuple[Stage, ...] = (
    Stage("collect", "random rollouts of the real game -> rollouts/",
          lambda d, c: settings_of(c.collect_config()), _collect_complete,
          lambda d, c, v: collect_rollouts(d.root, c.collect_config(), verbose=v)),
    Stage("vae", "train V, the ConvVAE -> vae/vae.keras",
          lambda d, c: settings_of(c.vae_config()), lambda d, c: d.vae_model.exists(),
          lambda d, c, v: train_vae(d.root, c.vae_config(), verbose=v)),
    Stage("encode", "encode every frame with V -> series/",
          lambda d, c: {}, _encode_complete, lambda d, c, v: encode_rollouts(d.root, verbose=v)),
    Stage("rnn", "train M, the MDN-RNN -> rnn/rnn.keras",
          lambda d, c: settings_of(c.rnn_config()), lambda d, c: d.rnn_model.exists(),
          lambda d, c, v: train_rnn(d.root, c.rnn_config(), verbose=v)),
    Stage("controller", "train C with CMA-ES -> controller/",
          lambda d, c: settings_of(c.controller_config()), _controller_complete,
          lambda d, c, v: train_controller(d.root, c.controller_config(), verbose=v)),
    Stage("evaluate", "play C in the real game -> evaluation_<env>.json",
          _evaluate_settings, _evaluate_complete,
          lambda d, c, v: evaluate_controller(d.root, c.evaluate_config(d.root), verbose=v)),
    Stage("iterate", "iterative rounds: real data of C, M fine-tuned, C retrained -> iterate/",
          lambda d, c: settings_of(c.iterate_config()) if c.iterate.rounds else {}, _iterate_complete,
          _run_iterate),
    Stage("finetune", "the final C fine-tuned in the real game (--real_generations) -> its folder's _real/",
          _finetune_settings, _finetune_complete, _run_finetune),
    Stage("report", "the report beside the paper's numbers -> report/README.md",
          lambda d, c: {}, lambda d, c: False, _run_report),
)
assert tuple(stage.name for stage in PIPELINE) == STAGES

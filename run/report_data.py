"""What the report reads from an experiment folder: its records, trained controllers and iterative rounds.

Every path comes from `common.layout`; whatever a folder lacks stays empty (the report shows it as "not run").
Absolute paths never leave this module unmade relative: `portable` turns them into the experiment's name, so a
committed report names no folder of the machine that wrote it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any

from common.errors import UserError
from common.layout import DREAM_ENVS, ControllerRun, ExperimentLayout
from controller.es import kept_evaluation
from controller.model import Controller
from rnn.model import load_rnn, parameter_count
from vae.encode import load_vae

NOT_RUN = "not run"


@dataclasses.dataclass
class ControllerResult:
    """One trained controller folder (`common.layout.ControllerRun`) and what its records say."""

    files: ControllerRun
    train_env: str  # carracing, doom, or a dream: doomrnn or carracingrnn
    variant: str
    task: str  # carracing or doom
    temperature: float | None
    params: int
    generations: int
    seconds: float
    evaluations: list[dict]  # CMA-mean evaluations during training (dream or real)
    real_checks: list[dict]  # doomrnn: the CMA mean in real Doom during training (--real_eval_every)
    real: dict | None  # evaluation_<task>.json
    dream: dict | None  # dream_evaluation.json (temperature sweep)
    episodes: int = 0  # episodes its CMA-ES played: every candidate's rollouts and every evaluation's
    start: ControllerResult | None = None  # a real fine-tuning's (--real_generations): the dream's C it started from
    round: int = 0  # the iterative round whose V and M it played with
    selected: dict | None = None  # the real check whose CMA mean it kept (--select_by_real_check), else None

    @property
    def kept_evaluation(self) -> dict | None:
        """The CMA mean's evaluation during training that describes the kept C (`controller.es.kept_evaluation`)."""
        return kept_evaluation({"evaluations": self.evaluations, "selected": self.selected})

    @property
    def name(self) -> str:
        """The folder's name, `<env>_<variant>[_t<tau>]`."""
        return self.files.folder.name


@dataclasses.dataclass
class Experiment:
    layout: ExperimentLayout
    env: str | None
    pipeline: dict | None  # pipeline.json
    controllers: list[ControllerResult]  # trained in a dream or the game (round 0's)
    finetuned: list[ControllerResult]  # real fine-tunings of round 0's dream-trained Cs and of the last round's
    params: dict[str, int | str]  # vae, rnn -> count, or a reason it is missing
    iterate_config: dict  # run.iterate's settings (empty when it did not run)
    rounds: list[dict]  # run.iterate's rounds, round 0 first (empty when it did not run)
    sweep: list[dict] = dataclasses.field(default_factory=list)  # run.temperature_sweep's rows (empty: not run)
    ablation: list[dict] = dataclasses.field(default_factory=list)  # run.controller_ablation's rows (empty: not run)

    @property
    def root(self) -> Path:
        return self.layout.root

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def later_rounds(self) -> list[dict]:
        """The iterative rounds after round 0."""
        return self.rounds[1:]

    @property
    def rounds_in_dream(self) -> bool:
        """Whether the iterative rounds trained C in a dream (Doom's always; CarRacing's with carracingrnn)."""
        return self.env == "doom" or self.iterate_config.get("controller_env") in DREAM_ENVS

    @property
    def round_variant(self) -> str:
        """The C the iterative rounds after round 0 trained: the paper's full C unless the run chose another
        (`--controller`, or `--iterate_round_controller` for the later rounds)."""
        return (self.iterate_config.get("round_controller")
                or (self.iterate_config.get("controller") or {}).get("controller", "full"))


def read_json(path: Path) -> Any:
    """The JSON at `path`, or None when it is missing or unreadable (a report shows what is there)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def vae_config(layout: ExperimentLayout) -> dict:
    return read_json(layout.run_config("vae")) or {}


def rnn_config(layout: ExperimentLayout) -> dict:
    return read_json(layout.run_config("rnn")) or {}


def iterate_progress(layout: ExperimentLayout) -> dict:
    """run.iterate's settings and rounds so far."""
    return read_json(layout.iterate_progress) or {}


def temperature_table(layout: ExperimentLayout) -> dict | None:
    """run.temperature_sweep's rows (`report/temperature_table.json`)."""
    return read_json(layout.temperature_table(".json"))


def ablation_table(layout: ExperimentLayout) -> dict | None:
    """run.controller_ablation's rows (`report/controller_ablation.json`)."""
    return read_json(layout.ablation_table(".json"))


def _detect_env(layout: ExperimentLayout, pipeline: dict | None) -> str | None:
    if pipeline and pipeline.get("config", {}).get("env"):
        return pipeline["config"]["env"]
    records = [read_json(layout.collect_manifest) or {}, vae_config(layout), rnn_config(layout),
               iterate_progress(layout).get("config", {})]
    return next((r["env"] for r in records if r.get("env") in ("doom", "carracing")), None)


def _model_params(path: Path, kind: str) -> int | str:
    """Trainable parameters of V or M saved at `path`, or why there is no count."""
    if not path.exists():
        return NOT_RUN
    try:
        return parameter_count(load_vae(path) if kind == "vae" else load_rnn(path))
    except UserError as error:
        return f"unreadable ({error})"


def _episodes_played(recorded: dict, generations: int, evaluations: list[dict]) -> int:
    """A CMA-ES run's episodes: generations x population x rollouts, and its evaluations' (real checks too)."""
    es = recorded.get("es") or {}
    return (generations * es.get("popsize", 0) * es.get("rollouts", 0)
            + sum(e.get("episodes", 0) + e.get("real_episodes", 0) for e in evaluations))


def _controller_result(files: ControllerRun, round_: int = 0) -> ControllerResult | None:
    try:
        controller, _ = Controller.load(files.controller)
    except UserError:
        return None
    recorded = read_json(files.config) or {}
    train_env = recorded.get("env") or files.folder.name.split("_")[0]
    history = read_json(files.history) or {}
    generations = history.get("generations", [])
    evaluations = history.get("evaluations", [])
    start = recorded.get("fine_tuned_from")  # controller.train's real fine-tuning names its dream run
    return ControllerResult(files=files, train_env=train_env, variant=controller.variant, task=controller.env,
                            temperature=recorded.get("temperature") if train_env in DREAM_ENVS else None,
                            params=controller.num_params, generations=len(generations),
                            seconds=float(sum(g.get("seconds", 0.0) for g in generations)),
                            evaluations=[e for e in evaluations if "mean" in e],
                            real_checks=[e for e in evaluations if "real_mean" in e],
                            real=read_json(files.evaluation(controller.env)),
                            dream=read_json(files.dream_evaluation),
                            episodes=_episodes_played(recorded, len(generations), evaluations),
                            start=_controller_result(ControllerRun(files.folder.with_name(start)), round_)
                            if start else None,
                            round=round_, selected=history.get("selected"))


def _controller_results(layout: ExperimentLayout, round_: int = 0) -> list[ControllerResult]:
    """Every readable controller folder of one round's experiment folder, by name."""
    folders = sorted(layout.controller.glob("*/")) if layout.controller.is_dir() else []
    return [run for run in (_controller_result(ControllerRun(folder), round_) for folder in folders) if run]


def load_experiment(exp_dir: str | os.PathLike) -> Experiment:
    """Everything the report shows about one experiment folder; missing parts stay empty."""
    root = Path(exp_dir).expanduser().resolve()
    if not root.is_dir():
        raise UserError(f"--exp_dir={exp_dir}: no such experiment folder")
    layout = ExperimentLayout(root)
    pipeline = read_json(layout.pipeline_record)
    runs = _controller_results(layout)
    params = {"vae": _model_params(layout.vae_model, "vae"), "rnn": _model_params(layout.rnn_model, "rnn")}
    progress = iterate_progress(layout)
    rounds = progress.get("rounds", [])
    last = rounds[-1]["round"] if rounds else 0
    if last:  # the pipeline fine-tunes the last round's C
        runs += [run for run in _controller_results(layout.round(last), last) if run.start]
    return Experiment(layout=layout, env=_detect_env(layout, pipeline), pipeline=pipeline,
                      controllers=[run for run in runs if not run.start], finetuned=[run for run in runs if run.start],
                      params=params, iterate_config=progress.get("config", {}), rounds=rounds,
                      sweep=(temperature_table(layout) or {}).get("rows", []),
                      ablation=(ablation_table(layout) or {}).get("rows", []))


def sweep_record(row: dict, kind: str) -> dict | None:
    """A temperature-sweep or controller-ablation row's "dream" or "real" score as an evaluation record (mean,
    std, episodes), or None where the row has none (an ablation C trained in the real game has no dream score)."""
    if f"{kind}_mean" not in row:
        return None
    return {"mean": row[f"{kind}_mean"], "std": row[f"{kind}_std"], "episodes": row[f"{kind}_episodes"]}


def is_real_finetune(files: ControllerRun) -> bool:
    """Whether a controller folder is a real fine-tuning of a dream-trained C (controller.train --real_generations)."""
    return bool((read_json(files.config) or {}).get("fine_tuned_from"))


def round_real(entry: dict) -> dict:
    """An iterative round's real evaluation as an evaluation record (mean, std, episodes)."""
    return {"mean": entry["real_mean"], "std": entry["real_std"], "episodes": entry["real_episodes"]}


def portable(text: str, experiment: Experiment) -> str:
    """`text` with the experiment folder's absolute path made relative (inside it) or replaced by its name, so a
    committed report names no folder of the machine that wrote it."""
    root = str(experiment.root)
    return text.replace(root + os.sep, "").replace(root, experiment.name)


def portable_command(command: str, experiment: Experiment) -> str:
    """The recorded command with an absolute `--exp_dir` given as the experiment's name (a relative one, as the
    user typed it, stays)."""
    return re.sub(r"--exp_dir=(/|[A-Za-z]:[\\/]|~)\S*", f"--exp_dir={experiment.name}", portable(command, experiment))


def exp_dir_argument(experiment: Experiment) -> str:
    """The experiment folder for a command the report suggests: as the pipeline's command gave it when relative,
    else its name."""
    command = portable_command((experiment.pipeline or {}).get("command") or "", experiment)
    match = re.search(r"--exp_dir=(\S+)", command)
    return match.group(1) if match else experiment.name

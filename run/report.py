"""Writes a Markdown report of one or more experiments beside the paper's numbers (`run/paper_results.py`).

    python -m run.report --exp_dir=exp/doom_small
    python -m run.report --exp_dir=exp/doom_small --exp_dir=exp/carracing_small --out=exp/report

Writes `README.md` and the images it embeds into the first experiment's `report/` (or `--out`): the real
scores (mean ± std, episodes) of every trained controller in the paper's tables (CarRacing with its ablations,
Doom with its temperature table), the temperature sweep if one was run, CMA-ES training curves, score
histograms, V's reconstructions, a dream decoded by V, parameter counts beside the paper's, each stage's wall
time and machine (`pipeline.json`) and the dream audit (`report/dream_audit.md`) if present. Whatever an
experiment lacks is shown as "not run".
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import UserError
from common.layout import STAGES

NOT_RUN = "not run"
CARRACING_VARIANTS = ("full", "z", "z_hidden")  # the paper's CarRacing rows 0-2, in its table's order
VARIANT_NAMES = {"full": "reads [z, h]", "z": "reads z only", "z_hidden": "z through 40 tanh units"}


@dataclasses.dataclass(frozen=True)
class ReportConfig:
    exp_dirs: tuple[str, ...]  # experiments to report, in order
    out: str | None = None  # folder of README.md and its images; None: the first experiment's report/
    dream_steps: int = 150  # steps of the dream sample (Doom's ends earlier when M predicts death)
    dream_frames: int = 8  # frames of the dream shown in the strip
    seed: int = 0  # the dream sample's seed


@dataclasses.dataclass
class ControllerRun:
    """One trained controller folder: `controller/<env>_<variant>[_t<tau>]/`."""

    folder: Path
    train_env: str  # carracing, doom or doomrnn
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


@dataclasses.dataclass
class Experiment:
    root: Path
    name: str
    env: str | None
    pipeline: dict | None
    controllers: list[ControllerRun]
    params: dict[str, int | str]  # vae, rnn -> count, or a reason it is missing


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _detect_env(root: Path, pipeline: dict | None) -> str | None:
    if pipeline and pipeline.get("config", {}).get("env"):
        return pipeline["config"]["env"]
    records = [_read_json(path) or {} for path in (root / "rollouts" / "collect.json", root / "vae" / "config.json",
                                                   root / "rnn" / "config.json")]
    records.append((_read_json(root / "iterate" / "progress.json") or {}).get("config", {}))
    return next((r["env"] for r in records if r.get("env") in ("doom", "carracing")), None)


def _model_params(path: Path, kind: str) -> int | str:
    """Trainable parameters of V or M saved at `path`, or why there is no count."""
    if not path.exists():
        return NOT_RUN
    from rnn.model import load_rnn, parameter_count
    from vae.encode import load_vae

    try:
        return parameter_count(load_vae(path) if kind == "vae" else load_rnn(path))
    except UserError as error:
        return f"unreadable ({error})"


def _controller_run(folder: Path) -> ControllerRun | None:
    from controller.model import Controller

    try:
        controller, params = Controller.load(folder / "controller.json")
    except UserError:
        return None
    recorded = _read_json(folder / "config.json") or {}
    train_env = recorded.get("env") or folder.name.split("_")[0]
    history = _read_json(folder / "history.json") or {}
    generations = history.get("generations", [])
    return ControllerRun(folder=folder, train_env=train_env, variant=controller.variant, task=controller.env,
                         temperature=recorded.get("temperature") if train_env == "doomrnn" else None,
                         params=controller.num_params, generations=len(generations),
                         seconds=float(sum(g.get("seconds", 0.0) for g in generations)),
                         evaluations=[e for e in history.get("evaluations", []) if "mean" in e],
                         real_checks=[e for e in history.get("evaluations", []) if "real_mean" in e],
                         real=_read_json(folder / f"evaluation_{controller.env}.json"),
                         dream=_read_json(folder / "dream_evaluation.json"))


def load_experiment(exp_dir: str | os.PathLike) -> Experiment:
    """Everything the report shows about one experiment folder; missing parts stay empty."""
    root = Path(exp_dir).expanduser().resolve()
    if not root.is_dir():
        raise UserError(f"--exp_dir={exp_dir}: no such experiment folder")
    pipeline = _read_json(root / "pipeline.json")
    controllers = []
    for folder in sorted((root / "controller").glob("*/")) if (root / "controller").is_dir() else []:
        run = _controller_run(folder)
        if run is not None:
            controllers.append(run)
    params = {"vae": _model_params(root / "vae" / "vae.keras", "vae"),
              "rnn": _model_params(root / "rnn" / "rnn.keras", "rnn")}
    return Experiment(root=root, name=root.name, env=_detect_env(root, pipeline), pipeline=pipeline,
                      controllers=controllers, params=params)


# ---- formatting ----

def score(result: dict | None) -> str:
    """'906 ± 21 (100)': mean ± std (episodes) of an evaluation record, or 'not run'."""
    if not result or "mean" not in result:
        return NOT_RUN
    episodes = result.get("episodes") or len(result.get("scores", []))
    return f"{result['mean']:,.0f} ± {result['std']:,.0f} ({episodes:,})"


def paper_score(mean: float, std: float) -> str:
    return f"{mean:,.0f} ± {std:,.0f}"


def _count(value: int | str) -> str:
    return f"{value:,}" if isinstance(value, int) else value


def _duration(seconds: float | None) -> str:
    from common.progress import format_duration

    return "—" if seconds is None else format_duration(seconds)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _dream_cell(run: ControllerRun | None) -> str:
    """The dream score of a dream-trained C: the sweep's dream evaluation, else the last CMA-mean evaluation."""
    if run is None:
        return NOT_RUN
    if run.dream:
        return score(run.dream)
    if run.evaluations:
        return score(run.evaluations[-1]) + " *"
    return NOT_RUN


# ---- sections ----

def _label(experiment: Experiment, experiments: list[Experiment]) -> str:
    """A column's name: 'this run', or with the experiment's name when several are reported."""
    return "this run" if len(experiments) == 1 else f"this run: {experiment.name}"


ROUND_NOTE = "the paper's iterative procedure; M also saw the controller's real episodes"


def iterate_rounds(experiment: Experiment) -> tuple[dict, list[dict]]:
    """run.iterate's config and its rounds after round 0 (none when it did not run)."""
    progress = _read_json(experiment.root / "iterate" / "progress.json") or {}
    return progress.get("config", {}), progress.get("rounds", [])[1:]


def _round_real(entry: dict) -> dict:
    return {"mean": entry["real_mean"], "std": entry["real_std"], "episodes": entry["real_episodes"]}


def carracing_section(experiments: list[Experiment]) -> str:
    from common.paper import CARRACING_SCORES, CARRACING_SOLVED

    runs = [e for e in experiments if e.env == "carracing"]
    header = ["method (100 random tracks)", "paper"] + ([_label(e, experiments) for e in runs] or ["this run"])
    rows = []
    for index, paper in enumerate(CARRACING_SCORES):
        cells = [paper["method"], paper_score(paper["mean"], paper["std"])]
        variant = CARRACING_VARIANTS[index] if index < len(CARRACING_VARIANTS) else None
        for experiment in runs or [None]:
            if variant is None:
                cells.append("—")
                continue
            run = next((c for c in (experiment.controllers if experiment else [])
                        if c.task == "carracing" and c.variant == variant), None)
            cells.append(score(run.real) if run else NOT_RUN)
        rows.append(cells)
        if variant == "full":
            for experiment in runs:
                for entry in iterate_rounds(experiment)[1]:
                    rows.append([f"{paper['method']}, after iterative round {entry['round']} ({ROUND_NOTE})", "—"]
                                + [score(_round_real(entry)) if other is experiment else "—" for other in runs])
    return (f"### CarRacing\n\n{_table(header, rows)}\n\nSolved: an average of {CARRACING_SOLVED} or more. "
            "Cells: mean ± std (episodes). The paper ran gym 0.9's CarRacing-v0; this project runs gymnasium's "
            "CarRacing-v3, which keeps the reward, frame rate and spaces but renders with pygame (pixels differ) "
            "and ends an episode when the lap is complete. The ablations (z only, z + hidden) are the "
            "`--controller=z` / `--controller=z_hidden` runs; DQN, A3C and the leaderboard are not reproduced.\n")


def doom_section(experiments: list[Experiment]) -> str:
    from common.paper import DOOM_BASELINES, DOOM_SOLVED, DOOM_TEMPERATURE_TABLE

    runs = [e for e in experiments if e.env == "doom"]
    header = ["trained in the dream at τ", "paper: dream", "paper: real"]
    for experiment in runs or [None]:
        label = _label(experiment, experiments) if experiment else "this run"
        header += [f"{label}: dream", f"{label}: real"]

    def dream_run(experiment: Experiment | None, tau: float) -> ControllerRun | None:
        if experiment is None:
            return None
        return next((c for c in experiment.controllers if c.train_env == "doomrnn" and c.variant == "full"
                     and c.temperature is not None and abs(c.temperature - tau) < 1e-9), None)

    temperatures = [row["temperature"] for row in DOOM_TEMPERATURE_TABLE]
    extra = sorted({c.temperature for e in runs for c in e.controllers if c.train_env == "doomrnn"
                    and c.variant == "full" and c.temperature is not None
                    and all(abs(c.temperature - t) > 1e-9 for t in temperatures)})
    rows = []
    for tau in temperatures + extra:
        paper = next((row for row in DOOM_TEMPERATURE_TABLE if abs(row["temperature"] - tau) < 1e-9), None)
        cells = [f"{tau:.2f}", paper_score(paper["dream_mean"], paper["dream_std"]) if paper else "—",
                 paper_score(paper["real_mean"], paper["real_std"]) if paper else "—"]
        for experiment in runs or [None]:
            run = dream_run(experiment, tau)
            cells += [_dream_cell(run), score(run.real) if run else NOT_RUN]
        rows.append(cells)
    for experiment in runs:
        for run in experiment.controllers:
            if run.task == "doom" and (run.train_env == "doom" or run.variant != "full"):
                where = "real VizDoom" if run.train_env == "doom" else f"the dream at τ {run.temperature:g}"
                cells = [f"{experiment.name}: '{run.variant}' C trained in {where} (not in the paper)", "—", "—"]
                for other in runs:
                    cells += ([_dream_cell(run) if run.train_env == "doomrnn" else "—", score(run.real)]
                              if other is experiment else ["—", "—"])
                rows.append(cells)
    for experiment in runs:
        config, entries = iterate_rounds(experiment)
        for entry in entries:
            label = f"{config['temperature']:.2f}, after iterative round {entry['round']} ({ROUND_NOTE})"
            cells = [label, "—", "—"]
            for other in runs:
                cells += ([score(entry["dream"]) + " *" if entry.get("dream") else "—", score(_round_real(entry))]
                          if other is experiment else ["—", "—"])
            rows.append(cells)
    for name, (mean, std) in DOOM_BASELINES.items():
        rows.append([name, "—", paper_score(mean, std)] + ["—", "—"] * len(runs or [None]))
    return (f"### Doom Take Cover\n\n{_table(header, rows)}\n\nSolved: more than {DOOM_SOLVED} steps on average. "
            "Cells: mean ± std steps survived (episodes); real scores are the paper's 100 real rollouts. "
            "A dream score marked * is the CMA mean's last evaluation during training (the sweep, "
            "`python -m run.temperature_sweep`, scores the final C on its own dreams).\n")


def parameter_section(experiments: list[Experiment]) -> str:
    from common.paper import PARAMETER_COUNTS
    from controller.model import PAPER_SIZES, Controller

    rows = []
    for experiment in experiments:
        env = experiment.env
        paper = PARAMETER_COUNTS.get(env or "", {})
        rows.append([experiment.name, "V (ConvVAE)", _count(experiment.params["vae"]),
                     _count(paper.get("vae", "—"))])
        rows.append([experiment.name, "M (MDN-RNN)", _count(experiment.params["rnn"]),
                     _count(paper.get("rnn", "—"))])
        for run in experiment.controllers:
            if run.variant == "full":
                paper_c = PARAMETER_COUNTS[run.task]["controller"]
            else:  # the ablations' counts for the paper's sizes (the paper states 1,443 for z + hidden)
                sizes = PAPER_SIZES[run.task]
                paper_c = Controller(run.task, run.variant, sizes["z_size"], sizes["hidden_size"]).num_params
            inputs = "reads [z, c, h]" if run.task == "doom" and run.variant == "full" else VARIANT_NAMES[run.variant]
            rows.append([experiment.name, f"C `{run.folder.name}` ({inputs})",
                         f"{run.params:,}", f"{paper_c:,}"])
        if not experiment.controllers:
            rows.append([experiment.name, "C (controller)", NOT_RUN, _count(paper.get("controller", "—"))])
    return "## Parameter counts\n\n" + _table(["experiment", "model", "this run", "paper"], rows) + "\n"


def _stage_rows(pipeline: dict) -> list[list[str]]:

    stages = pipeline.get("stages", {})
    rows = []
    for name in STAGES:
        entry = stages.get(name)
        if entry is None:
            rows.append([name, NOT_RUN, "—", "—", "—"])
            continue
        status = entry.get("status", "?")
        if name == "report" and status == "running":
            status = "writing this report"
        attempts = entry.get("attempts", 1)
        wall = _duration(entry.get("seconds"))
        if entry.get("earlier_attempts_seconds"):
            wall += f" (+{_duration(entry['earlier_attempts_seconds'])} in earlier attempts)"
        rows.append([name, status + (f" ({attempts} attempts)" if attempts > 1 else ""), wall,
                     entry.get("started", "—"), entry.get("machine", "—")])
    return rows


def machine_section(experiment: Experiment) -> str:
    pipeline = experiment.pipeline
    if not pipeline:
        return f"No `pipeline.json` in {experiment.root}: stage times and machine {NOT_RUN}.\n"
    total = pipeline.get("total_seconds")
    interrupted = sum(entry.get("earlier_attempts_seconds", 0.0) for entry in pipeline.get("stages", {}).values())
    text = (f"Config `{pipeline.get('config_name') or 'flags only'}`"
            + (f"; command: `{pipeline['command']}`" if pipeline.get("command") else "") + "\n\n"
            + _table(["stage", "status", "wall time", "started", "machine"], _stage_rows(pipeline))
            + f"\n\nTotal of the finished stages: {_duration(total)}"
            + (f" (+{_duration(interrupted)} in earlier attempts, interrupted or run with other settings, that "
               f"they resumed from: {_duration(total + interrupted)} in all)" if interrupted and total is not None
               else "") + ".\n\n")
    if pipeline.get("note"):  # a hand-written remark on the run's history (e.g. stages copied from another run)
        text += f"Note: {pipeline['note']}\n\n"
    machines = pipeline.get("machines") or {}
    rows = [[host, m.get("cpu", "?"), f"{m.get('usable_cores', '?')} of {m.get('cores', '?')}",
             f"{m.get('memory_gb', '?')} GB", m.get("tensorflow", "?"), ", ".join(m.get("gpus") or []) or "none",
             m.get("python", "?")] for host, m in machines.items()]
    if rows:
        text += _table(["machine", "CPU", "cores used", "memory", "TensorFlow", "GPU", "Python"], rows) + "\n"
    load = (pipeline.get("machine") or {}).get("load_average")
    if load:
        text += f"\nLoad average when the last run started: {', '.join(map(str, load))} (a shared machine is slower).\n"
    return text


class Assets:
    """Copies or renders images into the report folder under per-experiment names."""

    def __init__(self, out: Path, prefix: str):
        self.out, self.prefix = out, prefix

    def copy(self, source: Path, name: str) -> str | None:
        """Copies `source` (if it exists) to the report folder; returns its name there."""
        from common.storage import atomic_path

        if not source.is_file():
            return None
        target = self.out / f"{self.prefix}{name}"
        if source.resolve() != target.resolve():
            with atomic_path(target, suffix=source.suffix) as tmp:
                shutil.copyfile(source, tmp)
        return target.name


def render_dream(experiment: Experiment, assets: Assets, config: ReportConfig) -> str:
    """A dream decoded by V (`run.dream`): a strip of frames and a GIF; or why there is none."""
    from common.storage import atomic_path
    from run.dream import DreamConfig, caption_text, dream_rollout, render_frames, write_video

    if experiment.env is None or not (experiment.root / "rnn" / "rnn.keras").exists() \
            or not (experiment.root / "vae" / "vae.keras").exists():
        return f"Dream samples: {NOT_RUN} (needs V and M).\n"
    try:
        rollout = dream_rollout(experiment.root, DreamConfig(env=experiment.env, max_steps=config.dream_steps,
                                                             seed=config.seed))
    except UserError as error:
        return f"Dream samples: {NOT_RUN} ({error}).\n"
    pick = np.unique(np.linspace(0, rollout.steps - 1, min(config.dream_frames, rollout.steps)).astype(int))
    strip = np.concatenate(list(render_frames(rollout.frames[pick], scale=2)), axis=1)
    strip_name = f"{assets.prefix}dream_strip.png"
    from PIL import Image

    with atomic_path(assets.out / strip_name, suffix=".png") as tmp:
        Image.fromarray(strip).save(tmp)
    doom = experiment.env == "doom"
    captions = [caption_text(t + 1, rollout.temperature, float(p) if doom else None)
                for t, p in enumerate(rollout.death_probabilities)]
    gif_name = f"{assets.prefix}dream.gif"
    write_video(render_frames(rollout.frames, 2, captions), assets.out / gif_name, fps=30)
    end = "M predicted death" if rollout.died else "the step limit"
    driver = rollout.driver.replace(f"{experiment.root}{os.sep}", "")
    steps = ", ".join(str(int(t) + 1) for t in pick)
    return (f"A dream: M's samples at τ {rollout.temperature:g} decoded by V, driven by {driver}; "
            f"{rollout.steps} steps, ended by {end}. Steps {steps}:\n\n![dream frames]({strip_name})\n\n"
            f"The whole dream: [{gif_name}]({gif_name}). More: `python -m run.dream --exp_dir={experiment.root} "
            f"--env={experiment.env} --out=dream.gif`.\n")


def _demote(markdown: str, levels: int = 2) -> str:
    """Headings pushed down `levels` levels so an included file nests under its section."""
    return "\n".join("#" * levels + line if line.startswith("#") else line for line in markdown.splitlines())


def experiment_section(experiment: Experiment, assets: Assets, config: ReportConfig) -> str:
    from run.temperature_sweep import table_markdown

    root = experiment.root
    parts = [f"## Experiment `{experiment.name}` ({experiment.env or 'unknown task'})\n\nFolder: `{root}`\n",
             "### Stages and machine\n\n" + machine_section(experiment)]

    vae_config = _read_json(root / "vae" / "config.json") or {}
    recon = assets.copy(root / "vae" / "reconstructions.png", "reconstructions.png")
    text = "### V: reconstructions\n\n"
    if vae_config:
        text += (f"Trained on {vae_config.get('frames', 0):,} frames of {vae_config.get('episodes', 0):,} episodes, "
                 f"z {vae_config.get('z_size')}, {vae_config.get('epochs')} epoch(s) (paper: 1), batch "
                 f"{vae_config.get('batch_size')}.\n\n")
    text += (f"Originals (odd rows) and V's reconstructions from μ (even rows):\n\n![reconstructions]({recon})\n"
             if recon else f"Reconstructions: {NOT_RUN}.\n")
    parts.append(text)

    best = _read_json(root / "rnn" / "best.json")
    rnn_config = _read_json(root / "rnn" / "config.json") or {}
    text = "### M: validation\n\n"
    if best:
        text += (f"LSTM {rnn_config.get('hidden')}, {rnn_config.get('batch_size')} x {rnn_config.get('seq_len')} "
                 f"steps a batch, {rnn_config.get('steps', 0):,} steps; best validation at step "
                 f"{best.get('step', 0):,}: z NLL {best.get('z_nll', float('nan')):.4f} nats per dimension"
                 + (f", death loss {best['restart']:.4f}" if rnn_config.get("predict_done") else "") + ".\n")
    else:
        text += f"{NOT_RUN}.\n"
    parts.append(text)

    text = "### C: training and evaluation\n\n"
    if not experiment.controllers:
        text += f"{NOT_RUN}.\n"
    for run in experiment.controllers:
        where = {"doomrnn": f"the dream at τ {run.temperature:g}" if run.temperature else "the dream",
                 "doom": "real VizDoom", "carracing": "real CarRacing"}.get(run.train_env, run.train_env)
        last = run.evaluations[-1] if run.evaluations else None
        text += (f"#### `{run.folder.name}`: '{run.variant}' C trained in {where}\n\n"
                 f"{run.generations:,} generations in {_duration(run.seconds)}; last evaluation of the CMA mean "
                 f"({'dream' if run.train_env == 'doomrnn' else 'real'}): "
                 f"{score(last) + ' at generation ' + str(last['generation']) if last else NOT_RUN}. "
                 f"Final C in the real game: {score(run.real)}"
                 + (f"; in {run.dream['episodes']} dreams at τ {run.dream['temperature']:g}: {score(run.dream)}"
                    if run.dream else "") + ".\n\n")
        if run.real_checks:
            checks = "; ".join(f"generation {e['generation']}: {e['real_mean']:,.0f} ± {e['real_std']:,.0f} "
                               f"({e['real_episodes']})" for e in run.real_checks)
            text += f"The CMA mean in real Doom during training (virtual vs actual): {checks}.\n\n"
        curve = assets.copy(run.folder / "progress.png", f"{run.folder.name}_progress.png")
        histogram = assets.copy(run.folder / f"histogram_{run.task}.png", f"{run.folder.name}_histogram.png")
        text += f"![CMA-ES progress]({curve})\n" if curve else f"Training curve: {NOT_RUN}.\n"
        text += f"![score histogram]({histogram})\n\n" if histogram else f"Score histogram: {NOT_RUN}.\n\n"
    parts.append(text)

    table = _read_json(root / "report" / "temperature_table.json")
    parts.append("### Temperature sweep\n\n" + (
        table_markdown(table.get("rows", [])) + "\n" if table else
        f"{NOT_RUN} (`python -m run.temperature_sweep --exp_dir={root}`).\n"))
    parts.append("### Dream samples\n\n" + render_dream(experiment, assets, config))
    audit = root / "report" / "dream_audit.md"
    parts.append("### Dream audit\n\n" + (_demote(audit.read_text(encoding="utf-8")) + "\n" if audit.is_file()
                                          else f"{NOT_RUN} (no `report/dream_audit.md`).\n"))
    rounds = root / "report" / "iterate.md"
    parts.append("### Iterative training\n\n" + (
        _demote(rounds.read_text(encoding="utf-8")) + "\n" if rounds.is_file() else
        f"{NOT_RUN} (`python -m run.iterate --exp_dir={root}`).\n"))
    for folder in sorted(path for path in (root / "iterate").glob("round_*") if path.is_dir()):
        label = folder.name.replace("_", " ")
        for curve_file in sorted((folder / "controller").glob("*/progress.png")):
            run = curve_file.parent
            histogram = next(iter(sorted(run.glob("histogram_*.png"))), None)
            curve = assets.copy(curve_file, f"{folder.name}_{run.name}_progress.png")
            histogram = histogram and assets.copy(histogram, f"{folder.name}_{run.name}_histogram.png")
            parts.append(f"#### C after {label}: training and real scores\n\n![CMA-ES progress, {label}]({curve})\n"
                         + (f"![score histogram, {label}]({histogram})\n" if histogram else ""))
        audit = folder / "report" / "dream_audit.md"
        if audit.is_file():
            parts.append(f"#### Dream audit after {label}\n\n" + _demote(audit.read_text(encoding="utf-8"), levels=3)
                         + "\n")
    return "\n".join(parts)


def write_report(config: ReportConfig) -> Path:
    """Writes README.md and its images; returns the README's path."""
    from common.storage import write_text

    if not config.exp_dirs:
        raise UserError("--exp_dir: give at least one experiment folder")
    if config.dream_frames < 1 or config.dream_steps < 1:
        raise UserError("--dream_frames and --dream_steps must be at least 1")
    experiments = [load_experiment(exp_dir) for exp_dir in config.exp_dirs]
    names = [e.name for e in experiments]
    out = Path(config.out).expanduser().resolve() if config.out else experiments[0].root / "report"
    out.mkdir(parents=True, exist_ok=True)
    single = len(experiments) == 1
    sections = [
        "# World Models: reproduction report\n",
        f"Written {datetime.datetime.now().astimezone().isoformat(timespec='seconds')} for "
        + ", ".join(f"`{e.root}`" for e in experiments) + ". Paper: Ha & Schmidhuber (2018), *World Models*; "
        "its numbers come from `run/paper_results.py`. Anything an experiment has not run is shown as "
        f"\"{NOT_RUN}\".\n",
        "## Results beside the paper\n",
        carracing_section(experiments), doom_section(experiments), parameter_section(experiments)]
    for index, experiment in enumerate(experiments):
        prefix = "" if single else f"{index + 1}_{experiment.name}_"
        if not single and names.count(experiment.name) > 1:
            prefix = f"{index + 1}_"
        sections.append(experiment_section(experiment, Assets(out, prefix), config))
    path = out / "README.md"
    write_text(path, "\n".join(sections))
    return path


def main(argv) -> None:
    from absl import flags, logging

    logging.set_verbosity(logging.WARNING)
    FLAGS = flags.FLAGS
    path = write_report(ReportConfig(exp_dirs=tuple(FLAGS.exp_dir), out=FLAGS.out, dream_steps=FLAGS.dream_steps,
                                     dream_frames=FLAGS.dream_frames, seed=FLAGS.seed))
    print(f"report: wrote {path}")


def define_flags() -> None:
    from absl import flags

    flags.DEFINE_multi_string("exp_dir", None, "Experiment folder; repeat for a combined report.", required=True)
    flags.DEFINE_string("out", None, "Folder for README.md and its images (default: the first EXP_DIR/report).")
    flags.DEFINE_integer("dream_steps", ReportConfig.dream_steps, "Steps of the dream sample.")
    flags.DEFINE_integer("dream_frames", ReportConfig.dream_frames, "Frames of the dream shown in the strip.")
    flags.DEFINE_integer("seed", ReportConfig.seed, "Seed of the dream sample.")


if __name__ == "__main__":
    from common.errors import run_main

    define_flags()
    run_main(main)

"""Writes a Markdown report of one or more experiments beside the paper's numbers (`common/paper.py`).

    python -m run.report --exp_dir=exp/doom_small
    python -m run.report --exp_dir=exp/doom_small --exp_dir=exp/carracing_small --out=exp/report

Writes `README.md`, the images it embeds, `scores.json` and `settings.json` into the first experiment's `report/`
(or `--out`): the real scores (mean ± std, episodes) of every trained controller in the paper's tables (CarRacing
with its ablations, Doom with its temperature table), the temperature sweep (Doom) or the controller ablation
(CarRacing) if one was run, CMA-ES training curves, score histograms, V's reconstructions, a dream decoded by V,
parameter counts beside the paper's, each stage's wall time and machine (`pipeline.json`), the dream audits, the
iterative rounds and the real fine-tuning of the final C (`--real_generations`) beside the dream-only C. Whatever
an experiment lacks is shown as "not run". The folder reads complete on its own: it names no absolute path and
links only files written into it, so it can be committed as `results/<name>/` as it is (`scores.json` as
RESULTS.md defines it; `settings.json`: every setting the run resolved, for comparing recipes).
"""

from __future__ import annotations

import dataclasses
import datetime
from pathlib import Path

from absl import flags, logging

from common.errors import UserError, run_main
from common.storage import write_json, write_text
from run.controller_ablation import table_markdown as ablation_markdown
from run.report_data import (
    NOT_RUN,
    ControllerResult,
    Experiment,
    ablation_table,
    exp_dir_argument,
    load_experiment,
    portable,
    read_json,
    rnn_config,
    temperature_table,
    vae_config,
)
from run.report_figures import Assets, DreamSample, controller_figures, controller_images, dream_section, round_figures
from run.report_scores import scores_record, settings_record
from run.report_tables import (
    carracing_section,
    doom_section,
    duration,
    machine_section,
    parameter_section,
    rounds_table,
    score,
)
from run.results_table import RECIPES_BEGIN, RECIPES_END, expand_folders, recipes_table, replace_block, results_table
from run.temperature_sweep import table_markdown

__all__ = ["NOT_RUN", "ReportConfig", "write_report"]


@dataclasses.dataclass(frozen=True)
class ReportConfig:
    exp_dirs: tuple[str, ...]  # experiments to report, in order
    out: str | None = None  # folder of README.md and its images; None: the first experiment's report/
    dream_steps: int = DreamSample.steps  # steps of the dream sample (Doom's ends earlier when M predicts death)
    dream_frames: int = DreamSample.frames  # frames of the dream shown in the strip
    seed: int = DreamSample.seed  # the dream sample's seed


def _demote(markdown: str, levels: int = 2) -> str:
    """Headings pushed down `levels` levels so an included file nests under its section."""
    return "\n".join("#" * levels + line if line.startswith("#") else line for line in markdown.splitlines())


def vae_section(experiment: Experiment, assets: Assets) -> str:
    """V's training data and size, and its reconstructions copied beside the report."""
    config = vae_config(experiment.layout)
    recon = assets.copy(experiment.layout.vae_reconstructions, "reconstructions.png")
    text = "### V: reconstructions\n\n"
    if config:
        text += (f"Trained on {config.get('frames', 0):,} frames of {config.get('episodes', 0):,} episodes, "
                 f"z {config.get('z_size')}, {config.get('epochs')} epoch(s) (paper: 1), batch "
                 f"{config.get('batch_size')}.\n\n")
    return text + (f"Originals (odd rows) and V's reconstructions from μ (even rows):\n\n![reconstructions]({recon})\n"
                   if recon else f"Reconstructions: {NOT_RUN}.\n")


def rnn_section(experiment: Experiment) -> str:
    """M's size, training and best validation losses (the M kept as rnn.keras)."""
    record = read_json(experiment.layout.rnn_best)
    config = rnn_config(experiment.layout)
    if not record:
        return f"### M: validation\n\n{NOT_RUN}.\n"
    rnn_class = config.get("rnn_class", "rnn.model:MDNRNN")  # runs before the M registry recorded no class
    core = config.get("rnn_cell", "lstm").upper() if rnn_class == "rnn.model:MDNRNN" else rnn_class.split(":")[-1]
    return (f"### M: validation\n\n{core} {config.get('hidden')}, {config.get('batch_size')} x {config.get('seq_len')} "
            f"steps a batch, {config.get('steps', 0):,} steps; best validation at step {record.get('step', 0):,}: "
            f"z NLL {record.get('z_nll', float('nan')):.4f} nats per dimension"
            + (f", death loss {record['restart']:.4f}" if config.get("predict_done") else "") + ".\n")


def controller_section(experiment: Experiment, assets: Assets) -> str:
    """Each trained C: where it trained, its generations and time, its scores, curve and histogram; then each
    real fine-tuning of a dream-trained C."""
    text = "### C: training and evaluation\n\n" + ("" if experiment.controllers else f"{NOT_RUN}.\n")
    for run in experiment.controllers:
        game = "real VizDoom" if run.task == "doom" else "real CarRacing"
        where = game if run.train_env == run.task else (
            ("the dream" if run.task == "doom" else "CarRacing's dream")
            + (f" at τ {run.temperature:g}" if run.temperature else ""))
        last = run.evaluations[-1] if run.evaluations else None
        text += (f"#### `{run.name}`: '{run.variant}' C trained in {where}\n\n"
                 f"{run.generations:,} generations in {duration(run.seconds)}; last evaluation of the CMA mean "
                 f"({'dream' if run.temperature is not None else 'real'}): "
                 f"{score(last) + ' at generation ' + str(last['generation']) if last else NOT_RUN}. "
                 f"Final C in the real game: {score(run.real)}"
                 + (f"; in {run.dream['episodes']} dreams at τ {run.dream['temperature']:g}: {score(run.dream)}"
                    if run.dream else "") + ".\n\n")
        if run.real_checks:
            checks = "; ".join(f"generation {e['generation']}: {e['real_mean']:,.0f} ± {e['real_std']:,.0f} "
                               f"({e['real_episodes']})" for e in run.real_checks)
            text += (f"The CMA mean in real {'Doom' if run.task == 'doom' else 'CarRacing'} during training "
                     f"(virtual vs actual): {checks}."
                     + (f" C is the CMA mean of generation {run.selected['generation']}, the best of these checks "
                        "(`--select_by_real_check`), not the last." if run.selected else "") + "\n\n")
        text += controller_images(*controller_figures(run.files, run.task, assets)) + "\n"
    return text + "".join(finetune_text(run, assets) for run in experiment.finetuned)


def finetune_text(run: ControllerResult, assets: Assets) -> str:
    """A real fine-tuning (--real_generations): where it started, what it cost, its score beside the dream's C."""
    game = "real VizDoom" if run.task == "doom" else "real CarRacing"
    start = f"round {run.round}'s `{run.start.name}`" if run.round else f"`{run.start.name}`"
    last = run.evaluations[-1] if run.evaluations else None
    prefix = f"round_{run.round:02d}_" if run.round else ""
    plural = "s" if run.generations != 1 else ""
    return (f"#### `{run.name}`: the dream's C fine-tuned in {game}\n\n"
            f"From the CMA mean of {start}, trained in the dream: {run.generations:,} real generation{plural} "
            f"({run.episodes:,} real episodes) in {duration(run.seconds)}; last evaluation of the CMA mean: "
            f"{score(last) + ' at generation ' + str(last['generation']) if last else NOT_RUN}. "
            f"Final C in the real game: {score(run.real)}; the dream's C alone: {score(run.start.real)}.\n\n"
            + controller_images(*controller_figures(run.files, run.task, assets, prefix=prefix)) + "\n")


def _audit_text(path: Path, levels: int, experiment: Experiment) -> str | None:
    """A dream audit's Markdown (run.dream_audit), its headings nested `levels` deeper; None when there is none."""
    return _demote(portable(path.read_text(encoding="utf-8"), experiment), levels) if path.is_file() else None


def iterate_section(experiment: Experiment, assets: Assets) -> str:
    """The rounds' table, then each later round's C (curve, histogram) and dream audit, inlined (the report links
    nothing outside its folder)."""
    if not experiment.rounds:
        return (f"### Iterative training\n\n{NOT_RUN} "
                f"(`python -m run.iterate --exp_dir={exp_dir_argument(experiment)}`).\n")
    audits, parts = {}, []
    for entry in experiment.later_rounds:
        layout = experiment.layout.round(entry["round"])
        label = layout.root.name.replace("_", " ")
        parts.append(round_figures(layout, experiment.env or "", assets))
        audit = _audit_text(layout.dream_audit_markdown, 3, experiment)
        if audit is not None:
            parts.append(f"#### Dream audit after {label}\n\n{audit}\n")
            audits[entry["round"]] = f"below: *Dream audit after {label}*"
    if experiment.layout.dream_audit_markdown.is_file():
        audits[0] = "above: *Dream audit*"
    return "### Iterative training\n\n" + rounds_table(experiment, audits) + "\n" + "\n".join(parts)


def experiment_section(experiment: Experiment, assets: Assets, sample: DreamSample) -> str:
    """One experiment's part of the report: stages, V, M, C, the sweep (Doom) or the controller ablation
    (CarRacing), a dream, the audits and the rounds."""
    sweep = temperature_table(experiment.layout)
    ablation = ablation_table(experiment.layout)
    audit = _audit_text(experiment.layout.dream_audit_markdown, 2, experiment)
    parts = [f"## Experiment `{experiment.name}` ({experiment.env or 'unknown task'})\n",
             "### Stages and machine\n\n" + machine_section(experiment),
             vae_section(experiment, assets), rnn_section(experiment), controller_section(experiment, assets),
             "### Temperature sweep\n\n" + (table_markdown(sweep.get("rows", [])) + "\n" if sweep else
                                            f"{NOT_RUN} (`python -m run.temperature_sweep "
                                            f"--exp_dir={exp_dir_argument(experiment)}`).\n"),
             *([_ablation_section(experiment, ablation)] if experiment.env == "carracing" else []),
             "### Dream samples\n\n" + dream_section(experiment, assets, sample),
             "### Dream audit\n\n" + (audit + "\n" if audit is not None else f"{NOT_RUN} (no dream_audit.md).\n"),
             iterate_section(experiment, assets)]
    return "\n".join(parts)


def _ablation_section(experiment: Experiment, ablation: dict | None) -> str:
    """The controller ablation's table (CarRacing's three C's with one budget on one world model), or how to run
    it."""
    if not ablation:
        return (f"### Controller ablation\n\n{NOT_RUN} (`python -m run.controller_ablation "
                f"--exp_dir={exp_dir_argument(experiment)}`).\n")
    return "### Controller ablation\n\n" + ablation_markdown(ablation.get("rows", [])) + "\n"


def _prefixes(experiments: list[Experiment]) -> list[str]:
    """File-name prefixes keeping several experiments' files apart in one folder (none for one experiment)."""
    if len(experiments) == 1:
        return [""]
    names = [e.name for e in experiments]
    return [f"{i + 1}_" if names.count(e.name) > 1 else f"{i + 1}_{e.name}_" for i, e in enumerate(experiments)]


def write_report(config: ReportConfig) -> Path:
    """Writes README.md, its images, scores.json and settings.json (one each per experiment); returns the README's
    path."""
    if not config.exp_dirs:
        raise UserError("--exp_dir: give at least one experiment folder")
    if config.dream_frames < 1 or config.dream_steps < 1:
        raise UserError("--dream_frames and --dream_steps must be at least 1")
    experiments = [load_experiment(exp_dir) for exp_dir in config.exp_dirs]
    out = Path(config.out).expanduser().resolve() if config.out else experiments[0].layout.report
    out.mkdir(parents=True, exist_ok=True)
    sample = DreamSample(steps=config.dream_steps, frames=config.dream_frames, seed=config.seed)
    sections = [
        "# World Models: reproduction report\n",
        f"Written {datetime.datetime.now().astimezone().isoformat(timespec='seconds')} for "
        + ", ".join(f"experiment `{e.name}`" for e in experiments) + ". Paper: Ha & Schmidhuber (2018), *World "
        "Models*; its numbers come from `common/paper.py`. Anything an experiment has not run is shown as "
        f"\"{NOT_RUN}\".\n",
        "## Results beside the paper\n",
        carracing_section(experiments), doom_section(experiments), parameter_section(experiments)]
    for experiment, prefix in zip(experiments, _prefixes(experiments)):
        assets = Assets(out, prefix)
        sections.append(experiment_section(experiment, assets, sample))
        write_json(assets.path("scores.json"), scores_record(experiment))
        settings = settings_record(experiment)
        if settings is not None:
            write_json(assets.path("settings.json"), settings)
    path = out / "README.md"
    write_text(path, "\n".join(sections))
    return path


def render_results(folders: list[str], readme: str | None, all_rows: bool, recipes: bool = False) -> None:
    """Prints one table of several committed results folders (their scores, or with `recipes` their recipes); with
    `readme`, rewrites its generated tables instead (the recipes table where the file has its markers)."""
    if readme is None:
        print(recipes_table(folders) if recipes else results_table(folders, all_rows), end="")
        return
    path = Path(readme)
    if not path.is_file():
        raise UserError(f"--readme={readme}: no such file")
    text = replace_block(path.read_text(encoding="utf-8"), results_table(folders, all_rows), readme)
    written = "results table"
    if RECIPES_BEGIN in text:
        text = replace_block(text, recipes_table(folders), readme, RECIPES_BEGIN, RECIPES_END)
        written = "results and recipes tables"
    write_text(path, text)
    print(f"report: rewrote the {written} of {readme} from {len(folders)} results folders")


def main(argv) -> None:
    logging.set_verbosity(logging.WARNING)
    FLAGS = flags.FLAGS
    if FLAGS.results:
        if FLAGS.exp_dir:
            raise UserError("give either --exp_dir (a report of experiments) or --results (a table of results)")
        render_results(expand_folders(FLAGS.results), FLAGS.readme, FLAGS.all_rows, FLAGS.recipes)
        return
    if not FLAGS.exp_dir:
        raise UserError("--exp_dir: give at least one experiment folder (or --results for a table of results)")
    path = write_report(ReportConfig(exp_dirs=tuple(FLAGS.exp_dir), out=FLAGS.out, dream_steps=FLAGS.dream_steps,
                                     dream_frames=FLAGS.dream_frames, seed=FLAGS.seed))
    print(f"report: wrote {path} and scores.json")


def define_flags() -> None:
    flags.DEFINE_multi_string("exp_dir", None, "Experiment folder; repeat for a combined report.")
    flags.DEFINE_multi_string("results", None, "Committed results folder (with scores.json) or a quoted glob "
                              "('results/*'); repeat for more: one table of them all beside the paper.")
    flags.DEFINE_string("readme", None, "With --results: rewrite the generated results table of this Markdown "
                        "file (between its markers) instead of printing it.")
    flags.DEFINE_bool("all_rows", False, "With --results: every scored row, not only each run's result.")
    flags.DEFINE_bool("recipes", False, "With --results: the recipes table (data, V epochs, M steps, C budget, "
                      "real score, time) of the folders with a settings.json instead of the scores table.")
    flags.DEFINE_string("out", None, "Folder for README.md, its images and scores.json (default: the first "
                        "EXP_DIR/report).")
    flags.DEFINE_integer("dream_steps", ReportConfig.dream_steps, "Steps of the dream sample.")
    flags.DEFINE_integer("dream_frames", ReportConfig.dream_frames, "Frames of the dream shown in the strip.")
    flags.DEFINE_integer("seed", ReportConfig.seed, "Seed of the dream sample.")


if __name__ == "__main__":
    define_flags()
    run_main(main)

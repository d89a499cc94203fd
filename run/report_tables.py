"""The report's tables: the paper's results beside this run's, parameter counts, stage times and the machine, and
the iterative rounds. Paper numbers come from `common.paper`; cells are `mean ± std (episodes)` or "not run".
"""

from __future__ import annotations

from collections.abc import Sequence

from common.layout import DREAM_ENVS, STAGES, ExperimentLayout
from common.paper import (
    ABLATION_CONTROLLER_COUNTS,
    CARRACING_CONTROLLERS,
    CARRACING_SCORES,
    CARRACING_SOLVED,
    DOOM_BASELINES,
    DOOM_SOLVED,
    DOOM_TEMPERATURE_TABLE,
    PARAMETER_COUNTS,
)
from common.progress import format_duration
from common.storage import read_json
from run.report_data import (
    NOT_RUN,
    ControllerResult,
    Experiment,
    portable,
    portable_command,
    round_real,
    sweep_record,
)

CARRACING_VARIANTS = CARRACING_CONTROLLERS  # the paper's CarRacing rows 0-2, in its table's order
VARIANT_NAMES = {"full": "reads [z, h]", "z": "reads z only", "z_hidden": "z through 40 tanh units",
                 "full_hidden": "the full C plus 8 tanh units on z"}
ROUND_NOTE = "the paper's iterative procedure; M also saw the controller's real episodes"


# ---- cells ----

def score(result: dict | None) -> str:
    """'906 ± 21 (100)': mean ± std (episodes) of an evaluation record, or 'not run'."""
    if not result or "mean" not in result:
        return NOT_RUN
    episodes = result.get("episodes") or len(result.get("scores", []))
    return f"{result['mean']:,.0f} ± {result['std']:,.0f} ({episodes:,})"


def paper_score(mean: float, std: float) -> str:
    return f"{mean:,.0f} ± {std:,.0f}"


def count(value: int | str) -> str:
    return f"{value:,}" if isinstance(value, int) else value


def duration(seconds: float | None) -> str:
    return "—" if seconds is None else format_duration(seconds)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def dream_record(run: ControllerResult) -> dict | None:
    """The dream score of a dream-trained C: the sweep's dream evaluation, else the kept CMA mean's evaluation
    during training (the last, or the one at the selected real check; None for a C trained in the real game)."""
    if run.train_env not in DREAM_ENVS:
        return None
    return run.dream or run.kept_evaluation


def dream_cell(run: ControllerResult | None) -> str:
    """`dream_record` as a cell; '*' marks the CMA mean's evaluation during training."""
    record = dream_record(run) if run else None
    return NOT_RUN if record is None else score(record) + ("" if run.dream else " *")


def finetune_label(run: ControllerResult) -> str:
    """'dream of round 1 + 20 real generations (1,380 real episodes)': a real fine-tuning and what it cost."""
    plural = "s" if run.generations != 1 else ""
    return (f"dream{f' of round {run.round}' if run.round else ''} + {run.generations:,} real generation{plural} "
            f"({run.episodes:,} real episodes)")


def _label(experiment: Experiment | None, experiments: list[Experiment]) -> str:
    """A column's name: 'this run', or with the experiment's name when several are reported."""
    return "this run" if experiment is None or len(experiments) == 1 else f"this run: {experiment.name}"


# ---- results beside the paper ----

def _own_carracing_c(experiment: Experiment | None, variant: str | None) -> ControllerResult | None:
    """The experiment's own CarRacing C of `variant` (round 0's, trained in the dream or the game)."""
    return next((c for c in (experiment.controllers if experiment else [])
                 if c.task == "carracing" and c.variant == variant), None)


def _carracing_cell(experiment: Experiment | None, variant: str | None) -> str:
    """An experiment's real score for one of the paper's C's: its controller ablation's C when it ran one (the
    three on one world model with one budget), else its own C of that variant."""
    if variant is None:
        return "—"
    if experiment is not None and experiment.ablation:
        row = next((row for row in experiment.ablation if row["controller"] == variant), None)
        return score(sweep_record(row, "real")) if row else NOT_RUN
    run = _own_carracing_c(experiment, variant)
    return score(run.real) if run else NOT_RUN


def _ablation_note(experiment: Experiment, experiments: list[Experiment]) -> str:
    """Where the CarRacing table's rows of the paper's C's come from when the experiment ran the ablation."""
    rows = experiment.ablation
    first = rows[0]
    where = "real episodes" if first["train_env"] == "carracing" else "dreams"
    generations = sorted({row["generations"] for row in rows})
    budget = (f"{generations[0]:,} generation{'s' if generations[0] != 1 else ''}" if len(generations) == 1
              else f"{generations[0]:,} to {generations[-1]:,} generations: resumed with other budgets")
    place = ("in the real game on" if first["train_env"] == "carracing"
             else f"in the dream (τ {first['temperature']:g}) of")
    variants = ", ".join(f"`{row['controller']}`" for row in rows)
    whose = f"`{experiment.name}`'s" if len(experiments) > 1 else "this run's"
    return (f"The rows of {variants} in {whose} column are its controller ablation (`python -m "
            "run.controller_ablation`): each C trained from scratch with one budget (CMA-ES population "
            f"{first['popsize']} x {first['rollouts']} {where} a candidate, {budget}) {place} iterative round "
            f"{first['round']}'s world model, then scored on real tracks; see the controller ablation below. ")


def carracing_section(experiments: list[Experiment]) -> str:
    runs = [e for e in experiments if e.env == "carracing"]
    header = ["method (100 random tracks)", "paper"] + [_label(e, experiments) for e in runs or [None]]
    rows = []
    for index, paper in enumerate(CARRACING_SCORES):
        variant = CARRACING_VARIANTS[index] if index < len(CARRACING_VARIANTS) else None
        cells = [paper["method"], paper_score(paper["mean"], paper["std"])]
        cells += [_carracing_cell(experiment, variant) for experiment in runs or [None]]
        rows.append(cells)
        for experiment in runs:  # where the ablation fills the row, the experiment's own C gets one of its own
            own = _own_carracing_c(experiment, variant) if experiment.ablation and variant else None
            if own is not None:
                rows.append([f"{paper['method']}: the experiment's own C (round 0)", "—"]
                            + [score(own.real) if other is experiment else "—" for other in runs])
        for experiment in runs:  # the iterative rounds and real fine-tunings of a C, under its paper row
            if variant and variant == experiment.round_variant:
                for entry in experiment.later_rounds:
                    rows.append([f"{paper['method']}, after iterative round {entry['round']} ({ROUND_NOTE})", "—"]
                                + [score(round_real(entry)) if other is experiment else "—" for other in runs])
        if variant:
            rows += _finetune_rows(runs, "carracing", paper["method"], variant)
    notes = "".join(_ablation_note(e, experiments) for e in runs if e.ablation)
    return (f"### CarRacing\n\n{table(header, rows)}\n\nSolved: an average of {CARRACING_SOLVED} or more. "
            "Cells: mean ± std (episodes). The paper ran gym 0.9's CarRacing-v0; this project runs gymnasium's "
            "CarRacing-v3, which keeps the reward, frame rate and spaces but renders with pygame (pixels differ) "
            f"and ends an episode when the lap is complete. {notes}Without a controller ablation, the ablations "
            "(z only, z + hidden) are the experiment's own `--controller=z` / `--controller=z_hidden` runs; DQN, "
            "A3C and the leaderboard are not reproduced.\n")


def _same(a: float | None, b: float) -> bool:
    return a is not None and abs(a - b) < 1e-9


def _dream_trained(experiment: Experiment | None, tau: float) -> ControllerResult | None:
    """The full C trained in the dream at `tau`, if the experiment has one."""
    return next((c for c in (experiment.controllers if experiment else [])
                 if c.train_env == "doomrnn" and c.variant == "full" and _same(c.temperature, tau)), None)


def _temperature_cells(experiment: Experiment | None, tau: float) -> list[str]:
    """An experiment's dream and real cells at `tau`: its temperature sweep's C when it ran one (every τ on one
    world model, from scratch), else its own full C trained at that τ."""
    if experiment is not None and experiment.sweep:
        row = next((row for row in experiment.sweep if _same(row["temperature"], tau)), None)
        return [score(sweep_record(row, "dream")), score(sweep_record(row, "real"))] if row else [NOT_RUN, NOT_RUN]
    run = _dream_trained(experiment, tau)
    return [dream_cell(run), score(run.real) if run else NOT_RUN]


def _doom_temperature_rows(runs: list[Experiment]) -> list[list[str]]:
    """The paper's temperature table, then any other τ this run trained at, this run's columns beside it."""
    temperatures = [row["temperature"] for row in DOOM_TEMPERATURE_TABLE]
    trained = {c.temperature for e in runs if not e.sweep for c in e.controllers if c.train_env == "doomrnn"
               and c.variant == "full" and c.temperature is not None}
    trained |= {row["temperature"] for e in runs for row in e.sweep}
    extra = sorted(tau for tau in trained if not any(_same(tau, t) for t in temperatures))
    rows = []
    for tau in temperatures + extra:
        paper = next((row for row in DOOM_TEMPERATURE_TABLE if _same(row["temperature"], tau)), None)
        cells = [f"{tau:.2f}", paper_score(paper["dream_mean"], paper["dream_std"]) if paper else "—",
                 paper_score(paper["real_mean"], paper["real_std"]) if paper else "—"]
        for experiment in runs or [None]:
            cells += _temperature_cells(experiment, tau)
        rows.append(cells)
    return rows


def _swept_round_zero_rows(runs: list[Experiment]) -> list[list[str]]:
    """Where a sweep fills the τ rows, the pipeline's own C of round 0 (M trained on random data only) gets a row
    of its own."""
    rows = []
    for experiment in runs:
        temperature = ((experiment.pipeline or {}).get("config") or {}).get("temperature")
        run = _dream_trained(experiment, temperature) if experiment.sweep and temperature else None
        if run is not None:
            cells = [f"{temperature:.2f}, round 0: M trained on random data only", "—", "—"]
            for other in runs:
                cells += [dream_cell(run), score(run.real)] if other is experiment else ["—", "—"]
            rows.append(cells)
    return rows


def _finetune_rows(runs: list[Experiment], task: str, method: str | None = None,
                   variant: str = "full") -> list[list[str]]:
    """The real fine-tunings of `task`'s `variant` Cs, each after the paper's `method` (Doom: its dream's τ), the
    paper's columns blank and its real score in its own experiment's column (Doom's: a dream and a real column
    per experiment, and two of the paper's)."""
    dream_columns = 1 if task == "doom" else 0
    rows = []
    for experiment in runs:
        for run in experiment.finetuned:
            if run.task == task and run.variant == variant:
                label = method or f"{run.start.temperature:.2f}"
                cells = [f"{label}, {finetune_label(run)}"] + ["—"] * (1 + dream_columns)
                for other in runs:
                    cells += ["—"] * dream_columns + [score(run.real) if other is experiment else "—"]
                rows.append(cells)
    return rows


def _doom_other_rows(runs: list[Experiment]) -> list[list[str]]:
    """Controllers the paper has no row for (trained in real VizDoom, or an ablation), then the iterative rounds:
    each in its own experiment's columns."""
    rows = []
    for experiment in runs:
        for run in experiment.controllers:
            if run.task == "doom" and (run.train_env == "doom" or run.variant != "full"):
                where = "real VizDoom" if run.train_env == "doom" else f"the dream at τ {run.temperature:g}"
                cells = [f"{experiment.name}: '{run.variant}' C trained in {where} (not in the paper)", "—", "—"]
                for other in runs:
                    cells += ([dream_cell(run) if run.train_env == "doomrnn" else "—", score(run.real)]
                              if other is experiment else ["—", "—"])
                rows.append(cells)
    for experiment in runs:
        for entry in experiment.later_rounds:
            label = f"{experiment.iterate_config['temperature']:.2f}, after iterative round {entry['round']} " \
                    f"({ROUND_NOTE})"
            cells = [label, "—", "—"]
            for other in runs:
                cells += ([score(entry["dream"]) + " *" if entry.get("dream") else "—", score(round_real(entry))]
                          if other is experiment else ["—", "—"])
            rows.append(cells)
    return rows


def doom_section(experiments: list[Experiment]) -> str:
    runs = [e for e in experiments if e.env == "doom"]
    header = ["trained in the dream at τ", "paper: dream", "paper: real"]
    for experiment in runs or [None]:
        header += [f"{_label(experiment, experiments)}: dream", f"{_label(experiment, experiments)}: real"]
    rows = (_doom_temperature_rows(runs) + _swept_round_zero_rows(runs) + _doom_other_rows(runs)
            + _finetune_rows(runs, "doom"))
    for name, (mean, std) in DOOM_BASELINES.items():
        rows.append([name, "—", paper_score(mean, std)] + ["—", "—"] * len(runs or [None]))
    return (f"### Doom Take Cover\n\n{table(header, rows)}\n\nSolved: more than {DOOM_SOLVED} steps on average. "
            "Cells: mean ± std steps survived (episodes); real scores are the paper's 100 real rollouts. "
            "A dream score marked * is the CMA mean's last evaluation during training (the sweep, "
            "`python -m run.temperature_sweep`, scores the final C on its own dreams). Where a sweep ran, its τ "
            "rows are Cs trained from scratch with one budget in the dream of one world model (the last "
            "iterative round's; see the temperature sweep below).\n")


def parameter_section(experiments: list[Experiment]) -> str:
    """Trainable parameters of V, M and every C beside the paper's architectures (the paper states the CarRacing
    ablations' C only)."""
    rows = []
    for experiment in experiments:
        paper = PARAMETER_COUNTS.get(experiment.env or "", {})
        rows.append([experiment.name, "V (ConvVAE)", count(experiment.params["vae"]), count(paper.get("vae", "—"))])
        rows.append([experiment.name, "M (MDN-RNN)", count(experiment.params["rnn"]), count(paper.get("rnn", "—"))])
        for run in experiment.controllers:
            if run.variant == "full":
                paper_c = PARAMETER_COUNTS[run.task]["controller"]
            else:
                paper_c = ABLATION_CONTROLLER_COUNTS.get(run.variant, "—") if run.task == "carracing" else "—"
            inputs = ("reads [z, c, h]" if run.task == "doom" and run.variant == "full"
                      else VARIANT_NAMES.get(run.variant, "not in the paper"))
            rows.append([experiment.name, f"C `{run.name}` ({inputs})", f"{run.params:,}", count(paper_c)])
        if not experiment.controllers:
            rows.append([experiment.name, "C (controller)", NOT_RUN, count(paper.get("controller", "—"))])
    return "## Parameter counts\n\n" + table(["experiment", "model", "this run", "paper"], rows) + "\n"


# ---- stages and machine ----

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
        wall = duration(entry.get("seconds"))
        if entry.get("earlier_attempts_seconds"):
            wall += f" (+{duration(entry['earlier_attempts_seconds'])} in earlier attempts)"
        rows.append([name, status + (f" ({attempts} attempts)" if attempts > 1 else ""), wall,
                     entry.get("started", "—"), entry.get("machine", "—")])
    return rows


def earlier_attempts_seconds(pipeline: dict) -> float:
    """Time of stage attempts that were interrupted or run with other settings, which the run resumed from."""
    return sum(entry.get("earlier_attempts_seconds", 0.0) for entry in pipeline.get("stages", {}).values())


def _machine_table(pipeline: dict) -> str:
    machines = pipeline.get("machines") or {}
    rows = [[host, m.get("cpu", "?"), f"{m.get('usable_cores', '?')} of {m.get('cores', '?')}",
             f"{m.get('memory_gb', '?')} GB", m.get("tensorflow", "?"), ", ".join(m.get("gpus") or []) or "none",
             m.get("python", "?")] for host, m in machines.items()]
    return table(["machine", "CPU", "cores used", "memory", "TensorFlow", "GPU", "Python"], rows) + "\n" if rows else ""


def machine_section(experiment: Experiment) -> str:
    """The config and command, each stage's status and wall time, and the machines, from `pipeline.json`."""
    pipeline = experiment.pipeline
    if not pipeline:
        return f"No `pipeline.json` in this experiment: stage times and machine {NOT_RUN}.\n"
    total = pipeline.get("total_seconds")
    earlier = earlier_attempts_seconds(pipeline)
    command = portable_command(pipeline.get("command") or "", experiment)
    text = (f"Config `{pipeline.get('config_name') or 'flags only'}`" + (f"; command: `{command}`" if command else "")
            + "\n\n" + table(["stage", "status", "wall time", "started", "machine"], _stage_rows(pipeline))
            + f"\n\nTotal of the finished stages: {duration(total)}"
            + (f" (+{duration(earlier)} in earlier attempts, interrupted or run with other settings, that "
               f"they resumed from: {duration(total + earlier)} in all)" if earlier and total is not None
               else "") + ".\n\n")
    if pipeline.get("note"):  # a hand-written remark on the run's history (e.g. stages copied from another run)
        text += f"Note: {portable(pipeline['note'], experiment)}\n\n"
    text += _machine_table(pipeline)
    load = (pipeline.get("machine") or {}).get("load_average")
    if load:
        text += f"\nLoad average when the last run started: {', '.join(map(str, load))} (a shared machine is slower).\n"
    return text


# ---- iterative rounds ----

# What round 0's M was trained on, by run.collect's --policy (round 0's data; its default Doom policy is the paper's
# random policy). An experiment without a collection record is shown as the paper's.
COLLECTION_DATA = {"held_uniform": "random policy", "brownian": "random Brownian driving",
                   "track_follower": "noisy track follower",
                   "mixed_driving": "mixed driving (Brownian, noisy track follower)"}


def round_data(entry: dict, base: ExperimentLayout) -> str:
    """What an iterative round's M was trained on: round 0's collection (by its policy), then each earlier round's
    C and the real episodes of the fixed policies its audit flagged as holes; `base` is the experiment's layout."""
    if entry["round"] == 0:
        policy = read_json(base.collect_manifest).get("policy") if base.collect_manifest.exists() else None
        data = COLLECTION_DATA.get(policy, f"'{policy}' policy") if policy else COLLECTION_DATA["held_uniform"]
    else:
        data = f"+ round {entry['round'] - 1} controller"
    if entry.get("holes"):
        data += " + " + ", ".join(entry["holes"])
    return data

def rounds_table(experiment: Experiment, audits: dict[int, str]) -> str:
    """run.iterate's rounds: M's data, the real score and (C trained in a dream) the dream score; `audits` maps a
    round to where the report shows its dream audit (the report inlines them, so nothing links out of its folder)."""
    dream = experiment.rounds_in_dream
    header = ["round", "data", "real score"] + (["dream score (CMA mean)", "audit"] if dream else [])
    rows = []
    for entry in experiment.rounds:
        cells = [str(entry["round"]), round_data(entry, experiment.layout),
                 f"{entry['real_mean']:.0f} ± {entry['real_std']:.0f} "
                 f"({entry['real_episodes']} episodes)"]
        if dream:
            record = entry.get("dream")
            cells += [score(record) if record else NOT_RUN,
                      audits.get(entry["round"], NOT_RUN)]
        rows.append(cells)
    return table(header, rows) + "\n"

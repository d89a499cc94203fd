"""`scores.json`: the report's numbers in the format of `results/*/scores.json` (see RESULTS.md), which scripts
and readers can trust without parsing Markdown: the task, config, command, commit, total stage time, machine, and
one row per scored controller (its dream and real mean, std and episodes), exactly one of them the run's result:
with a real fine-tuning of the final C (--real_generations), that one, beside the dream-only rows.

`settings.json` beside it: every setting the run resolved (its config plus the command line, as `pipeline.json`
records them), so the recipes of several results folders can be compared (`run.results_table.recipes_table`).
"""

from __future__ import annotations

from typing import Any

from run.report_data import ControllerResult, Experiment, portable, portable_command, round_real, sweep_record
from run.report_tables import dream_record, earlier_attempts_seconds


def _score(record: dict | None) -> dict | None:
    """{mean, std, episodes} of an evaluation record, or None where it was not run."""
    if not record or "mean" not in record:
        return None
    episodes = record.get("episodes") or len(record.get("scores", []))
    return {"mean": round(float(record["mean"]), 1), "std": round(float(record["std"]), 1), "episodes": episodes}


def _row_name(variant: str, temperature: float | None, round_: int | None, real_vizdoom: bool = False) -> str:
    """'full, tau 1.15, round 2': the controller's variant, its dream's tau (or real VizDoom, where a Doom C
    trained outside the dream) and, when the run had iterative rounds, its round."""
    name = variant + (f", tau {temperature:g}" if temperature is not None else "")
    name += ", trained in real VizDoom" if real_vizdoom else ""
    return name + (f", round {round_}" if round_ is not None else "")


def _controller_row(run: ControllerResult, with_rounds: bool) -> dict[str, Any]:
    row = {"name": _row_name(run.variant, run.temperature, 0 if with_rounds else None, run.train_env == "doom"),
           "controller": run.variant}
    if run.temperature is not None:
        row["temperature"] = run.temperature
    row.update(round=0, dream=_score(dream_record(run)), real=_score(run.real), result=False)
    return row


def _finetune_row(run: ControllerResult, with_rounds: bool) -> dict[str, Any]:
    """A real fine-tuning of a dream-trained C: 'full, tau 1.15, dream + 20 real generations', its real score and
    what it cost (`finetune`: real generations and the real episodes they played)."""
    plural = "s" if run.generations != 1 else ""
    row = {"name": _row_name(run.variant, run.start.temperature, run.round if with_rounds else None)
           + f", dream + {run.generations} real generation{plural}", "controller": run.variant}
    if run.start.temperature is not None:
        row["temperature"] = run.start.temperature
    row.update(round=run.round, dream=None, real=_score(run.real),
               finetune={"generations": run.generations, "episodes": run.episodes}, result=False)
    return row


def _round_rows(experiment: Experiment) -> list[dict[str, Any]]:
    """One row per iterative round after round 0: its C's dream (CMA mean) and real scores."""
    temperature = experiment.iterate_config.get("temperature") if experiment.rounds_in_dream else None
    rows = []
    for entry in experiment.later_rounds:
        row = {"name": _row_name(experiment.round_variant, temperature, entry["round"]),
               "controller": experiment.round_variant}
        if temperature is not None:
            row["temperature"] = temperature
        row.update(round=entry["round"], dream=_score(entry.get("dream")), real=_score(round_real(entry)),
                   result=False)
        rows.append(row)
    return rows


def _sweep_rows(experiment: Experiment) -> list[dict[str, Any]]:
    """One row per τ of the temperature sweep (C trained from scratch in one round's dream)."""
    return [{"name": f"full, tau {row['temperature']:g}, temperature sweep on round {row.get('round', 0)}'s M",
             "controller": "full", "temperature": row["temperature"], "round": row.get("round", 0),
             "dream": _score(sweep_record(row, "dream")), "real": _score(sweep_record(row, "real")),
             "result": False} for row in experiment.sweep]


def _ablation_rows(experiment: Experiment) -> list[dict[str, Any]]:
    """One row per C of the controller ablation (each trained from scratch with one budget on one round's M)."""
    rows = []
    for row in experiment.ablation:
        temperature = row.get("temperature")
        where = f"tau {temperature:g}" if temperature is not None else "trained in real CarRacing"
        record = {"name": f"{row['controller']}, {where}, controller ablation on round {row.get('round', 0)}'s M",
                  "controller": row["controller"]}
        if temperature is not None:
            record["temperature"] = temperature
        record.update(round=row.get("round", 0), dream=_score(sweep_record(row, "dream")),
                      real=_score(sweep_record(row, "real")), result=False)
        rows.append(record)
    return rows


def _final_finetune(experiment: Experiment, dream_result: str | None) -> ControllerResult | None:
    """The scored real fine-tuning of the C the run stands for (`dream_result`, or its last round's C): with
    --real_generations, the pipeline's final agent."""
    last = experiment.later_rounds[-1]["round"] if experiment.later_rounds else 0
    return next((run for run in experiment.finetuned if run.real and run.round == last
                 and (last or run.start.name == dream_result)), None)


def _result_index(experiment: Experiment, rows: list[dict]) -> int | None:
    """The row the run stands for, before real fine-tuning: its last iterative round, else the full C at the run's
    temperature (the pipeline's own), else the first full C, else the first row."""
    if not rows:
        return None
    if experiment.later_rounds:
        return len(rows) - 1
    temperature = ((experiment.pipeline or {}).get("config") or {}).get("temperature")
    full = [i for i, row in enumerate(rows) if row["controller"] == "full"]
    at_temperature = [i for i in full if temperature is None or rows[i].get("temperature") in (None, temperature)]
    return (at_temperature or full or [0])[0]


def _machine(pipeline: dict) -> dict[str, Any] | None:
    machine = pipeline.get("machine")
    if not machine:
        return None
    return {"cpu": machine.get("cpu"), "cores": machine.get("usable_cores") or machine.get("cores"),
            "gpu": ", ".join(machine.get("gpus") or []) or None, "tensorflow": machine.get("tensorflow")}


def settings_record(experiment: Experiment) -> dict[str, Any] | None:
    """The experiment's `settings.json`: its config's name and every pipeline setting it ran with (a path among them
    made relative to the experiment), or None where `pipeline.json` records none."""
    config = (experiment.pipeline or {}).get("config")
    if not config:
        return None
    settings = {key: portable(value, experiment) if isinstance(value, str) else value
                for key, value in sorted(config.items())}
    return {"config": experiment.pipeline.get("config_name"), "source": "the experiment's pipeline.json",
            "settings": settings}


def scores_record(experiment: Experiment) -> dict[str, Any]:
    """The experiment's `scores.json` (RESULTS.md); fields the experiment did not record are None."""
    pipeline = experiment.pipeline or {}
    with_rounds = bool(experiment.later_rounds)
    rows = [_controller_row(run, with_rounds) for run in experiment.controllers] + _round_rows(experiment)
    sources = [run.name for run in experiment.controllers] + [None] * len(experiment.later_rounds)
    scored = [i for i, row in enumerate(rows) if row["dream"] or row["real"]]  # a C not scored yet has no row
    rows, sources = [rows[i] for i in scored], [sources[i] for i in scored]
    result = _result_index(experiment, rows)
    final = _final_finetune(experiment, sources[result] if result is not None else None)
    finetuned = [(run, _finetune_row(run, with_rounds)) for run in experiment.finetuned if run.real]
    rows += [row for _, row in finetuned]  # beside the dream-only rows, which show what the dream alone achieved
    if final is not None:
        next(row for run, row in finetuned if run is final)["result"] = True
    elif result is not None:
        rows[result]["result"] = True
    rows += _sweep_rows(experiment) + _ablation_rows(experiment)
    total = pipeline.get("total_seconds")
    return {"task": experiment.env, "config": pipeline.get("config_name"),
            "command": portable_command(pipeline["command"], experiment) if pipeline.get("command") else None,
            "commit": pipeline.get("commit"),
            "total_seconds": None if total is None else round(total + earlier_attempts_seconds(pipeline)),
            "machine": _machine(pipeline), "rows": rows}

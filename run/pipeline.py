"""Runs the paper's whole pipeline in one experiment folder: collect -> V -> encode -> M -> C -> evaluate -> report.

    python -m run.pipeline --config=doom_tiny --exp_dir=exp/doom_tiny      # every stage, real, in a few minutes
    python -m run.pipeline --config=doom_small --exp_dir=exp/doom_small    # about two hours on 2 CPU cores
    python -m run.pipeline --config=doom_paper --exp_dir=exp/doom --workers=64
    python -m run.pipeline --config=my_run.cfg --exp_dir=exp/x --generations=50   # a copied config, overridden

`--config` names a flagfile shipped in `run/configs/` (doom_paper, doom_small, doom_tiny, carracing_paper,
carracing_small, carracing_tiny) or a path to one; any flag on the command line overrides the file, and flags
neither give keep the paper's values. Each stage is skipped when `DIR/pipeline.json` records it finished with
the same settings and its output is on disk; the other stages resume from their own checkpoints, so a killed
pipeline run again continues where it stopped. `DIR/pipeline.json` (written atomically after every stage) holds
the resolved settings, each stage's wall time and the machine it ran on; the last stage writes
`DIR/report/README.md`.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import shlex
import socket
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from common.errors import UserError, run_main, sigterm_as_interrupt
from common.layout import STAGES

EXIT_INTERRUPTED = 130  # the shell's code for a run ended by Ctrl-C

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
ENVS = ("doom", "carracing")
CONTROLLER_ENVS = {"doom": ("doomrnn", "doom"), "carracing": ("carracing",)}  # first: the paper's
VARIANTS = ("full", "z", "z_hidden")
DOOM_RESOLUTIONS = ("640x480", "320x240", "160x120")


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Every setting of a pipeline run; each field is the flag of the same name. Defaults are the paper's;
    None means the paper's value for the task (filled in by the stage that uses it)."""

    env: str = "doom"  # the task: doom (Take Cover) or carracing
    seed: int = 0  # one seed drives every stage (episodes, weights, batches, CMA-ES, evaluation seeds)
    workers: int | None = None  # processes for real episodes (collection, evaluation); None: one per core
    episodes: int = 10_000  # random rollouts collected (paper: 10,000 for both tasks)
    max_steps: int | None = None  # episode cap for collection and evaluation; None: CarRacing 1,000, Doom 2,100
    doom_resolution: str = "640x480"  # Doom render size (the paper's 640x480; 320x240 is ~4x faster)
    z_size: int | None = None  # V's latent size; None: CarRacing 32, Doom 64
    vae_epochs: int = 1  # passes of V over the frames (paper: 1; the 2018 code: 10)
    vae_batch_size: int = 100  # frames per V batch (paper: 100)
    vae_max_steps: int | None = None  # stop V at this many steps; None: all epochs
    rnn_steps: int | None = None  # M's training steps; None: CarRacing 4,000, Doom 24,000
    rnn_batch_size: int | None = None  # M's sequences (CarRacing) or streams (Doom) a batch; None: 100
    rnn_seq_len: int | None = None  # M's steps a sequence/chunk; None: CarRacing 999, Doom 500
    rnn_hidden: int | None = None  # M's LSTM units; None: CarRacing 256, Doom 512
    rnn_eval_every: int = 200  # steps between M's validations (the best model by validation is kept)
    controller_env: str | None = None  # where C trains: carracing, doom, doomrnn; None: carracing / doomrnn
    controller: str = "full"  # C's inputs: full ([z, h]; Doom [z, c, h]), z, or z_hidden (the ablations)
    popsize: int = 64  # CMA-ES population (paper: 64)
    rollouts: int = 16  # episodes per candidate (paper: 16)
    sigma: float = 0.1  # CMA-ES initial step size (2018 code: 0.1)
    generations: int = 1800  # CMA-ES generations (paper: 1,800 for CarRacing)
    eval_every: int = 25  # generations between evaluations of the CMA mean (paper: 25)
    eval_rollouts: int = 1024  # episodes of each of those evaluations (paper: 1,024)
    temperature: float = 1.15  # the dream's tau when C trains in it (paper: 1.15)
    controller_max_steps: int | None = None  # episode cap while C trains (dream or real); None: --max_steps
    real_eval_every: int = 0  # doomrnn: every K generations also play the CMA mean in real Doom (0: never)
    eval_episodes: int = 100  # real episodes of the final evaluation (paper: 100)
    iterate_rounds: int = 0  # rounds of the iterative procedure after round 0 (run.iterate)
    iterate_episodes: int = 600  # real episodes collected with the current controller each round
    iterate_explore: float = 0.3  # chance per step of a random held action while collecting them
    iterate_explore_episodes: float = 1.0  # share of those episodes that explore (the rest: C's own play)
    iterate_rnn_steps: int = 1000  # M's fine-tuning steps each round
    iterate_generations: str = "40"  # CMA-ES generations of C each round ("20,60": the last value repeats)
    iterate_audit_episodes: int = 0  # episodes per policy of a dream audit after each round (0: none)
    iterate_hole_episodes: int = 0  # Doom: real episodes of each fixed policy the audit flags as a hole

    def resolved(self) -> PipelineConfig:
        """Checks the fields that need no model code and fills in workers and controller_env."""
        if self.env not in ENVS:
            raise UserError(f"--env={self.env}: unknown task; choose from {', '.join(ENVS)}")
        controller_env = self.controller_env or CONTROLLER_ENVS[self.env][0]
        if controller_env not in CONTROLLER_ENVS[self.env]:
            raise UserError(f"--controller_env={controller_env}: a {self.env} controller trains in "
                            f"{' or '.join(CONTROLLER_ENVS[self.env])}")
        if self.controller not in VARIANTS:
            raise UserError(f"--controller={self.controller}: choose from {', '.join(VARIANTS)}")
        if self.iterate_rounds < 0:
            raise UserError(f"--iterate_rounds={self.iterate_rounds}: must be >= 0")
        if self.iterate_rounds and (controller_env == "doom" or self.controller != "full"):
            raise UserError("--iterate_rounds needs the full C trained as in the paper: Doom in the dream "
                            "(--controller_env=doomrnn), CarRacing in the real game (--controller=full)")
        if self.iterate_rounds:
            from run.iterate import parse_generations

            parse_generations(self.iterate_generations, "iterate_generations")
        if self.iterate_hole_episodes < 0:
            raise UserError(f"--iterate_hole_episodes={self.iterate_hole_episodes}: must be at least 0")
        if self.iterate_hole_episodes and not (self.env == "doom" and self.iterate_audit_episodes):
            raise UserError(f"--iterate_hole_episodes={self.iterate_hole_episodes}: needs Doom's dream audit "
                            "(--iterate_audit_episodes >= 1), which names the holes")
        if self.doom_resolution not in DOOM_RESOLUTIONS:
            raise UserError(f"--doom_resolution={self.doom_resolution}: choose from {', '.join(DOOM_RESOLUTIONS)}")
        for name in ("episodes", "vae_epochs", "vae_batch_size", "rnn_eval_every", "popsize", "rollouts",
                     "generations", "eval_every", "eval_rollouts", "eval_episodes"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name}={getattr(self, name)}: must be at least 1")
        for name in ("workers", "max_steps", "z_size", "vae_max_steps", "rnn_steps", "rnn_batch_size",
                     "rnn_seq_len", "rnn_hidden", "controller_max_steps"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UserError(f"--{name}={value}: must be at least 1 (or left unset)")
        if self.real_eval_every < 0:
            raise UserError(f"--real_eval_every={self.real_eval_every}: must be >= 0")
        if not self.temperature > 0:
            raise UserError(f"--temperature={self.temperature}: must be positive")
        if not self.sigma > 0:
            raise UserError(f"--sigma={self.sigma}: must be positive")
        return dataclasses.replace(self, controller_env=controller_env, workers=self.workers or os.cpu_count() or 1)

    @property
    def evaluation_env(self) -> str:
        """The real game C is finally played in (a dream-trained Doom C plays real Doom)."""
        return "carracing" if self.env == "carracing" else "doom"


# ---- the stages' own configs ----

def collect_config(config: PipelineConfig):
    from run.collect import CollectConfig

    return CollectConfig(env=config.env, episodes=config.episodes, workers=config.workers, seed=config.seed,
                         max_steps=config.max_steps, doom_resolution=config.doom_resolution)


def vae_config(config: PipelineConfig):
    from vae.train import VAETrainConfig

    return VAETrainConfig(z_size=config.z_size, epochs=config.vae_epochs, batch_size=config.vae_batch_size,
                          seed=config.seed, max_steps=config.vae_max_steps)


def rnn_config(config: PipelineConfig):
    from rnn.train import RNNTrainConfig

    return RNNTrainConfig(steps=config.rnn_steps, batch_size=config.rnn_batch_size, seq_len=config.rnn_seq_len,
                          hidden=config.rnn_hidden, eval_every=config.rnn_eval_every,
                          checkpoint_every=config.rnn_eval_every, seed=config.seed)


def controller_config(config: PipelineConfig):
    from controller.es import ESConfig
    from controller.train import ControllerTrainConfig

    es = ESConfig(popsize=config.popsize, rollouts=config.rollouts, sigma=config.sigma,
                  generations=config.generations, eval_every=config.eval_every,
                  eval_rollouts=config.eval_rollouts, seed=config.seed)
    return ControllerTrainConfig(env=config.controller_env, controller=config.controller, es=es,
                                 workers=config.workers, temperature=config.temperature,
                                 max_steps=config.controller_max_steps or config.max_steps,
                                 doom_resolution=config.doom_resolution, real_eval_every=config.real_eval_every)


def controller_file(exp_dir: str | os.PathLike, config: PipelineConfig) -> Path:
    """Where the controller stage writes C (the CMA mean), `controller/<env>_<variant>[_t<tau>]/controller.json`."""
    from controller.train import output_dir

    return output_dir(exp_dir, controller_config(config)) / "controller.json"


def evaluate_config(exp_dir: str | os.PathLike, config: PipelineConfig):
    from controller.evaluate import EvaluateConfig

    return EvaluateConfig(env=config.evaluation_env, episodes=config.eval_episodes,
                          controller_file=str(controller_file(exp_dir, config)), workers=config.workers,
                          seed=config.seed, max_steps=config.max_steps, doom_resolution=config.doom_resolution)


def validate_stage_configs(config: PipelineConfig) -> None:
    """Every stage's own checks, up front: a bad value must not wait an hour for its stage to be found."""
    collect_config(config).resolved()
    vae_config(config).validated()
    rnn_config(config).resolved(config.env)
    controller_config(config).validated()
    if config.iterate_rounds:
        iterate_config(config).validated()


# ---- stages: settings that decide their output, completeness of that output, and the call ----

OPERATIONAL = {"workers", "episode_timeout", "verbose", "checkpoint_every", "log_every", "resume"}


def _settings(stage_config: Any) -> dict:
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


def _history_generations(folder: Path) -> int:
    try:
        return len(json.loads((folder / "history.json").read_text())["generations"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def _collect_complete(exp_dir: Path, config: PipelineConfig) -> bool:
    from common.storage import episode_name
    from run.collect import is_complete

    folder = exp_dir / "rollouts"
    return all(is_complete(folder / episode_name(i)) for i in range(config.episodes))


def _encode_complete(exp_dir: Path, config: PipelineConfig) -> bool:
    series = exp_dir / "series"
    return (series / "initial_z.npz").exists() and \
        len(list(series.glob("ep*.npz"))) == len(list((exp_dir / "rollouts").glob("ep*.npz")))


def _controller_complete(exp_dir: Path, config: PipelineConfig) -> bool:
    path = controller_file(exp_dir, config)
    return path.exists() and _history_generations(path.parent) >= config.generations


def _evaluate_complete(exp_dir: Path, config: PipelineConfig) -> bool:
    path = controller_file(exp_dir, config).parent / f"evaluation_{config.evaluation_env}.json"
    try:
        return json.loads(path.read_text())["episodes"] == config.eval_episodes
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _run_collect(exp_dir: Path, config: PipelineConfig, verbose: bool) -> None:
    from run.collect import collect_rollouts

    collect_rollouts(exp_dir, collect_config(config), verbose=verbose)


def _run_vae(exp_dir: Path, config: PipelineConfig, verbose: bool) -> None:
    from vae.train import train_vae

    train_vae(exp_dir, vae_config(config), verbose=verbose)


def _run_encode(exp_dir: Path, config: PipelineConfig, verbose: bool) -> None:
    from vae.encode import encode_rollouts

    encode_rollouts(exp_dir, verbose=verbose)


def _run_rnn(exp_dir: Path, config: PipelineConfig, verbose: bool) -> None:
    from rnn.train import train_rnn

    train_rnn(exp_dir, rnn_config(config), verbose=verbose)


def _run_controller(exp_dir: Path, config: PipelineConfig, verbose: bool) -> None:
    from controller.train import train_controller

    train_controller(exp_dir, controller_config(config), verbose=verbose)


def _run_evaluate(exp_dir: Path, config: PipelineConfig, verbose: bool) -> None:
    from controller.evaluate import evaluate_controller

    evaluate_controller(exp_dir, evaluate_config(exp_dir, config), verbose=verbose)


def iterate_config(config: PipelineConfig):
    """run.iterate's settings: the pipeline's M, C and evaluation sizes, the iterate_* budget per round."""
    from run.iterate import IterateConfig, parse_generations

    return IterateConfig(
        env=config.env, rounds=max(config.iterate_rounds, 1), episodes_per_round=config.iterate_episodes,
        explore=config.iterate_explore, explore_episodes=config.iterate_explore_episodes,
        temperature=config.temperature, rnn_steps=config.iterate_rnn_steps, rnn_eval_every=config.rnn_eval_every,
        rnn_batch_size=config.rnn_batch_size, rnn_seq_len=config.rnn_seq_len,
        popsize=config.popsize, rollouts=config.rollouts, generations=parse_generations(config.iterate_generations),
        sigma=config.sigma, eval_every=config.eval_every, eval_rollouts=config.eval_rollouts,
        real_eval_every=config.real_eval_every, eval_episodes=config.eval_episodes,
        audit_episodes=config.iterate_audit_episodes, hole_episodes=config.iterate_hole_episodes,
        workers=config.workers or os.cpu_count() or 1,
        seed=config.seed, max_steps=config.max_steps, doom_resolution=config.doom_resolution)


def _iterate_complete(exp_dir: Path, config: PipelineConfig) -> bool:
    if config.iterate_rounds == 0:
        return True
    try:
        return len(json.loads((exp_dir / "iterate" / "progress.json").read_text())["rounds"]) > config.iterate_rounds
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _run_iterate(exp_dir: Path, config: PipelineConfig, verbose: bool) -> None:
    from run.iterate import iterate

    if config.iterate_rounds:
        iterate(exp_dir, iterate_config(config), verbose=verbose)


def _run_report(exp_dir: Path, config: PipelineConfig, verbose: bool) -> None:
    from run.report import ReportConfig, write_report

    path = write_report(ReportConfig(exp_dirs=(str(exp_dir),), seed=config.seed))
    if verbose:
        print(f"report: wrote {path}")


@dataclasses.dataclass(frozen=True)
class Stage:
    name: str
    what: str
    settings: Callable[[Path, PipelineConfig], dict]
    complete: Callable[[Path, PipelineConfig], bool]  # its output is on disk (the report is always rewritten)
    run: Callable[[Path, PipelineConfig, bool], None]


PIPELINE: tuple[Stage, ...] = (
    Stage("collect", "random rollouts of the real game -> rollouts/",
          lambda d, c: _settings(collect_config(c)), _collect_complete, _run_collect),
    Stage("vae", "train V, the ConvVAE -> vae/vae.keras",
          lambda d, c: _settings(vae_config(c)), lambda d, c: (d / "vae" / "vae.keras").exists(), _run_vae),
    Stage("encode", "encode every frame with V -> series/",
          lambda d, c: {}, _encode_complete, _run_encode),
    Stage("rnn", "train M, the MDN-RNN -> rnn/rnn.keras",
          lambda d, c: _settings(rnn_config(c)), lambda d, c: (d / "rnn" / "rnn.keras").exists(), _run_rnn),
    Stage("controller", "train C with CMA-ES -> controller/",
          lambda d, c: _settings(controller_config(c)), _controller_complete, _run_controller),
    Stage("evaluate", "play C in the real game -> evaluation_<env>.json",
          lambda d, c: {**_settings(evaluate_config(d, c)), "controller_file": controller_file(d, c).parent.name},
          _evaluate_complete, _run_evaluate),
    Stage("iterate", "iterative rounds: real data of C, M fine-tuned, C retrained -> iterate/",
          lambda d, c: _settings(iterate_config(c)) if c.iterate_rounds else {}, _iterate_complete, _run_iterate),
    Stage("report", "the report beside the paper's numbers -> report/README.md",
          lambda d, c: {}, lambda d, c: False, _run_report),
)
assert tuple(stage.name for stage in PIPELINE) == STAGES


# ---- the machine ----

def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _memory_gb() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def machine_info() -> dict[str, Any]:
    """Cores, CPU model, memory, TensorFlow/Keras versions and GPUs of this machine, for the record."""
    import keras
    import tensorflow as tf

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {"host": socket.gethostname(), "cpu": _cpu_model(), "cores": os.cpu_count(), "usable_cores": usable,
            "memory_gb": _memory_gb(), "load_average": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(), "platform": platform.platform(),
            "tensorflow": tf.__version__, "keras": keras.__version__,
            "gpus": [device.name for device in tf.config.list_physical_devices("GPU")]}


# ---- the run ----

def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def run_pipeline(exp_dir: str | os.PathLike, config: PipelineConfig, verbose: bool = True,
                 config_name: str | None = None, command: str | None = None,
                 say: Callable[[str], None] | None = None) -> dict:
    """Runs every stage not already complete, in order, and returns the record written to `DIR/pipeline.json`.

    A stage is skipped when the record says it finished with the same settings, its output exists and no
    earlier stage ran in this call (a stage after one that ran again runs again too; the models continue from
    their checkpoints). `verbose` shows each stage's own progress; `say` prints the pipeline's lines;
    `config_name` and `command` are recorded as given.
    """
    from common.layout import experiment
    from common.progress import format_duration
    from common.storage import read_json, write_json

    say = say or (lambda line: print(line, flush=True))
    config = config.resolved()
    validate_stage_configs(config)
    layout = experiment(exp_dir)
    record_path = layout.root / "pipeline.json"
    record = read_json(record_path) if record_path.exists() else {}
    recorded_env = record.get("config", {}).get("env")
    if recorded_env and recorded_env != config.env:
        raise UserError(f"{layout.root}: holds a {recorded_env} pipeline, not {config.env}; use another --exp_dir")
    machine = machine_info()
    record.update(config=dataclasses.asdict(config), config_name=config_name, command=command, machine=machine)
    record.setdefault("machines", {})[machine["host"]] = {k: v for k, v in machine.items() if k != "load_average"}
    stages = record.setdefault("stages", {})

    def save() -> None:
        record["total_seconds"] = round(sum(s.get("seconds", 0.0) for s in stages.values()
                                            if s.get("status") == "done"), 1)
        write_json(record_path, record)

    say(f"pipeline: {config.env}{f' ({config_name})' if config_name else ''} in {layout.root} on "
        f"{machine['usable_cores']} cores of {machine['cpu']}, "
        f"{'GPU ' + ', '.join(machine['gpus']) if machine['gpus'] else 'no GPU'}, TF {machine['tensorflow']}")
    save()
    started, ran = time.perf_counter(), False
    for number, stage in enumerate(PIPELINE, 1):
        label = f"pipeline: stage {number}/{len(PIPELINE)} {stage.name}"
        settings = stage.settings(layout.root, config)
        previous = stages.get(stage.name, {})
        if (not ran and previous.get("status") == "done" and same_settings(previous.get("settings"), settings)
                and stage.complete(layout.root, config)):
            say(f"{label}: skipped, already complete (took {format_duration(previous.get('seconds', 0))} "
                f"on {previous.get('finished', '?')})")
            continue
        reason = {"running": " (resuming after an interrupted run)", "interrupted": " (resuming)",
                  "failed": " (again, after a failure)"}.get(previous.get("status"), "")
        if previous.get("status") == "done" and stage.name != "report":
            reason = " (again: settings or earlier stages changed)"
        say(f"{label}: started{reason}: {stage.what}")
        entry = {"status": "running", "started": _now(), "settings": settings, "machine": machine["host"],
                 "attempts": previous.get("attempts", 1) + 1 if previous and stage.name != "report" else 1}
        if previous and stage.name != "report":
            # Earlier attempts, interrupted or finished with other settings, made what this one resumes from (or
            # at least cost the experiment their time): kept, so the report's "in all" is the wall time spent.
            entry["earlier_attempts_seconds"] = round(previous.get("earlier_attempts_seconds", 0.0)
                                                      + previous.get("seconds", 0.0), 1)
        stages[stage.name] = entry
        save()
        begin = time.perf_counter()
        try:
            stage.run(layout.root, config, verbose)
        except BaseException as error:
            entry.update(status="interrupted" if isinstance(error, KeyboardInterrupt) or
                         type(error).__name__ == "TrainingInterrupted" else "failed",
                         seconds=round(time.perf_counter() - begin, 1), finished=_now(),
                         error=" ".join(str(error).split())[:300])
            save()
            say(f"{label}: {entry['status']} after {format_duration(entry['seconds'])}")
            raise
        entry.update(status="done", seconds=round(time.perf_counter() - begin, 1), finished=_now())
        ran = True
        save()
        say(f"{label}: finished in {format_duration(entry['seconds'])}")
    say(f"pipeline: done in {format_duration(time.perf_counter() - started)} (all stages: "
        f"{format_duration(record['total_seconds'])}); report in {layout.report / 'README.md'}")
    return record


# ---- configs and flags ----

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


FLAG_HELP = {
    "env": "The task: doom (Take Cover) or carracing.",
    "seed": "One seed for every stage (episodes, weights, batches, CMA-ES, evaluation).",
    "workers": "Processes playing real episodes (default: one per core).",
    "episodes": "Random rollouts to collect (paper: 10,000).",
    "max_steps": "Episode cap for collection and evaluation (default: CarRacing 1,000, Doom 2,100).",
    "doom_resolution": "Doom render size: 640x480 (paper), 320x240 or 160x120 (faster, same view).",
    "z_size": "V's latent size (default: CarRacing 32, Doom 64).",
    "vae_epochs": "V's passes over the frames (paper: 1; the 2018 code: 10).",
    "vae_batch_size": "Frames per V batch (paper: 100).",
    "vae_max_steps": "Stop V after this many steps (default: all epochs).",
    "rnn_steps": "M's training steps (default: CarRacing 4,000, Doom 24,000).",
    "rnn_batch_size": "M's sequences (CarRacing) or streams (Doom) per batch (default: 100).",
    "rnn_seq_len": "M's steps per sequence/chunk (default: CarRacing 999, Doom 500).",
    "rnn_hidden": "M's LSTM units (default: CarRacing 256, Doom 512).",
    "rnn_eval_every": "Steps between M's validations; the best model by validation loss is kept.",
    "controller_env": "Where C trains: carracing, doom (real VizDoom) or doomrnn (the dream; the paper's for Doom).",
    "controller": "C's inputs: full, z or z_hidden (the paper's CarRacing ablations).",
    "popsize": "CMA-ES population (paper: 64).",
    "rollouts": "Episodes per candidate; fitness is their mean (paper: 16).",
    "sigma": "CMA-ES initial step size (2018 code: 0.1).",
    "generations": "CMA-ES generations (paper: 1,800 for CarRacing).",
    "eval_every": "Generations between evaluations of the CMA mean (paper: 25).",
    "eval_rollouts": "Episodes per evaluation of the CMA mean (paper: 1,024).",
    "temperature": "The dream's tau when C trains in it (paper: 1.15).",
    "controller_max_steps": "Episode cap while C trains, in the dream or the real game (default: --max_steps).",
    "real_eval_every": "doomrnn: every K generations also play the CMA mean in real Doom (0: never).",
    "eval_episodes": "Real episodes of the final evaluation (paper: 100).",
    "iterate_rounds": "Iterative rounds after round 0 (collect with C, fine-tune M, retrain C; Doom's C in the "
                      "dream, CarRacing's in the real game).",
    "iterate_episodes": "Real episodes collected with the current controller each round.",
    "iterate_explore": "Chance per step of a random held action while collecting them.",
    "iterate_explore_episodes": "Share of those episodes that explore; the others are the controller's own play.",
    "iterate_rnn_steps": "M's fine-tuning steps each round.",
    "iterate_generations": "CMA-ES generations of C per round: one value for all rounds, or one "
                           "per round (e.g. 20,60: the last value serves the later rounds).",
    "iterate_audit_episodes": "Episodes per policy of a dream audit after each round (0: none).",
    "iterate_hole_episodes": "Doom: real episodes of each fixed policy the last round's audit flagged as a hole, "
                             "added to the next round's data (0: none).",
}


def define_config_flags(flag_values) -> None:
    """Defines `--config` and one flag per `PipelineConfig` field on `flag_values`."""
    from absl import flags

    flags.DEFINE_string("config", None, f"A shipped config ({', '.join(config_names())}) or a flagfile path; "
                        "flags on the command line override it.", flag_values=flag_values)
    for field in dataclasses.fields(PipelineConfig):
        kind = {int: flags.DEFINE_integer, float: flags.DEFINE_float, str: flags.DEFINE_string}[
            {"int": int, "int | None": int, "float": float, "str": str, "str | None": str}[str(field.type)]]
        kind(field.name, field.default, FLAG_HELP[field.name], flag_values=flag_values)


def config_from_flags(flag_values) -> PipelineConfig:
    return PipelineConfig(**{field.name: flag_values[field.name].value for field in dataclasses.fields(PipelineConfig)})


def load_config(name: str, **overrides: Any) -> PipelineConfig:
    """The `PipelineConfig` a shipped config (or flagfile) gives, with `overrides` as if given as flags."""
    from absl import flags

    flag_values = flags.FlagValues()
    define_config_flags(flag_values)
    argv = ["pipeline", f"--flagfile={config_path(name)}", *(f"--{k}={v}" for k, v in overrides.items())]
    try:
        flag_values(argv)
    except flags.Error as error:
        raise UserError(str(error)) from None
    return config_from_flags(flag_values)


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


def main(argv) -> None:
    from absl import flags, logging

    logging.set_verbosity(logging.WARNING)  # TF's checkpoint saver logs a line at INFO on every save
    FLAGS = flags.FLAGS
    try:
        with sigterm_as_interrupt():  # a scheduler's kill is recorded as an interrupted stage, like Ctrl-C
            run_pipeline(FLAGS.exp_dir, config_from_flags(FLAGS), config_name=FLAGS.config,
                         command=" ".join(["python -m run.pipeline", *map(shlex.quote, sys.argv[1:])]))
    except KeyboardInterrupt:
        sys.stderr.write("pipeline: interrupted; the same command resumes\n")
        sys.exit(EXIT_INTERRUPTED)


def define_flags() -> None:
    from absl import flags

    flags.DEFINE_string("exp_dir", None, "Experiment folder; every stage writes its own subfolder of it.",
                        required=True)
    define_config_flags(flags.FLAGS)


if __name__ == "__main__":
    define_flags()
    run_main(main, prepare_argv=with_config_flagfile)

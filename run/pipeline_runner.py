"""The pipeline's runner: each stage not already complete, in order, with `DIR/pipeline.json` (the resolved
settings, each stage's status, attempts and wall time, and the machine it ran on) written after every stage, and
every `HEARTBEAT_SECONDS` while one runs: a run killed outright (SIGKILL, a lost machine) cannot record its end,
so its last heartbeat is what its resumed attempt counts as the killed attempt's time."""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from common.errors import TrainingInterrupted, UserError
from common.layout import ExperimentLayout, experiment
from common.machine import cpu_description
from common.progress import format_duration
from common.storage import read_json, write_json
from run.pipeline_config import PIPELINE_FLAGS, PipelineConfig
from run.pipeline_stages import PIPELINE, Stage, same_settings

# ---- the machine ----

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
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {"host": socket.gethostname(), "cpu": cpu_description(), "cores": os.cpu_count(), "usable_cores": usable,
            "memory_gb": _memory_gb(), "load_average": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(), "platform": platform.platform(),
            "tensorflow": tf.__version__, "keras": keras.__version__,
            "gpus": [device.name for device in tf.config.list_physical_devices("GPU")]}


def project_commit() -> dict[str, Any]:
    """The project's git commit (short hash; None outside git) and whether the work tree differed from it."""
    repo = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        changed = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                                 capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "uncommitted_changes": None}
    return {"commit": commit or None, "uncommitted_changes": bool(changed)}


# ---- the run ----

HEARTBEAT_SECONDS = 5.0  # how often a running stage's time so far is written to pipeline.json

def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


class PipelineRecord:
    """`DIR/pipeline.json`: the resolved settings, the machines, and each stage's status, attempts and time."""

    def __init__(self, layout: ExperimentLayout, config: PipelineConfig, config_name: str | None,
                 command: str | None):
        self.path = layout.pipeline_record
        self.data = read_json(self.path) if self.path.exists() else {}
        recorded_env = self.data.get("config", {}).get("env")
        if recorded_env and recorded_env != config.env:
            raise UserError(f"{layout.root}: holds a {recorded_env} pipeline, not {config.env}; use another --exp_dir")
        self.machine = machine_info()
        self.data.update(config=PIPELINE_FLAGS.values(config), config_name=config_name, command=command,
                         machine=self.machine)
        if "commit" not in self.data:  # the commit the run started from
            self.data.update(project_commit())
        self.data.setdefault("machines", {})[self.machine["host"]] = {
            k: v for k, v in self.machine.items() if k != "load_average"}
        self.stages: dict[str, dict] = self.data.setdefault("stages", {})
        self._lock = threading.Lock()  # the stage's heartbeat saves from its own thread

    def save(self) -> None:
        with self._lock:
            self.data["total_seconds"] = round(sum(s.get("seconds", 0.0) for s in self.stages.values()
                                                   if s.get("status") == "done"), 1)
            write_json(self.path, self.data)

    def start(self, stage: Stage, settings: dict) -> dict:
        """A new entry for `stage`, counting the attempts before it."""
        previous = self.stages.get(stage.name, {})
        entry = {"status": "running", "started": _now(), "settings": settings, "machine": self.machine["host"],
                 **project_commit(),
                 "attempts": previous.get("attempts", 1) + 1 if previous and stage.name != "report" else 1}
        if previous and stage.name != "report":
            # Earlier attempts, interrupted or finished with other settings, made what this one resumes from (or
            # at least cost the experiment their time): kept, so the report's "in all" is the wall time spent.
            # An attempt killed outright left the time of its last heartbeat.
            entry["earlier_attempts_seconds"] = round(previous.get("earlier_attempts_seconds", 0.0)
                                                      + previous.get("seconds", 0.0), 1)
        self.stages[stage.name] = entry
        self.save()
        return entry


def _resume_reason(stage: Stage, previous: dict) -> str:
    reason = {"running": " (resuming after an interrupted run)", "interrupted": " (resuming)",
              "failed": " (again, after a failure)"}.get(previous.get("status"), "")
    if previous.get("status") == "done" and stage.name != "report":
        reason = " (again: settings or earlier stages changed)"
    return reason


def is_interruption(error: BaseException | None) -> bool:
    """Ctrl-C or SIGTERM, also when the KeyboardInterrupt surfaced as another error raised while unwinding: numpy's
    savez, interrupted mid-file, raises ValueError from closing its zip file, with the interrupt as its context."""
    while error is not None:
        if isinstance(error, (KeyboardInterrupt, TrainingInterrupted)):
            return True
        error = error.__context__
    return False


def _run_stage(stage: Stage, label: str, layout: ExperimentLayout, config: PipelineConfig, record: PipelineRecord,
               settings: dict, verbose: bool, say: Callable[[str], None]) -> None:
    """Runs one stage, recording its outcome (done, interrupted or failed) and time."""
    say(f"{label}: started{_resume_reason(stage, record.stages.get(stage.name, {}))}: {stage.what}")
    entry = record.start(stage, settings)
    begin = time.perf_counter()
    try:
        with _heartbeat(record, entry, begin):
            stage.run(layout, config, verbose)
    except BaseException as error:
        interrupted = is_interruption(error)
        entry.update(status="interrupted" if interrupted else "failed",
                     seconds=round(time.perf_counter() - begin, 1), finished=_now(),
                     error=" ".join(str(error).split())[:300])
        record.save()
        say(f"{label}: {entry['status']} after {format_duration(entry['seconds'])}")
        if interrupted and not isinstance(error, (KeyboardInterrupt, TrainingInterrupted)):
            raise KeyboardInterrupt(str(error)) from None  # one line "interrupted", not another error's traceback
        raise
    entry.update(status="done", seconds=round(time.perf_counter() - begin, 1), finished=_now())
    record.save()
    say(f"{label}: finished in {format_duration(entry['seconds'])}")


@contextlib.contextmanager
def _heartbeat(record: PipelineRecord, entry: dict, begin: float) -> Iterator[None]:
    """Writes the running stage's time so far every HEARTBEAT_SECONDS while the block runs."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_SECONDS):
            entry["seconds"] = round(time.perf_counter() - begin, 1)
            record.save()

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def run_pipeline(exp_dir: str | os.PathLike, config: PipelineConfig, verbose: bool = True,
                 config_name: str | None = None, command: str | None = None,
                 say: Callable[[str], None] | None = None) -> dict:
    """Runs every stage not already complete, in order, and returns the record written to `DIR/pipeline.json`.

    A stage is skipped when the record says it finished with the same settings, its output exists and no
    earlier stage ran in this call (a stage after one that ran again runs again too; the models continue from
    their checkpoints). `verbose` shows each stage's own progress; `say` prints the pipeline's lines;
    `config_name` and `command` are recorded as given.
    """
    say = say or (lambda line: print(line, flush=True))
    config = config.resolved()
    config.validate_stages()
    layout = experiment(exp_dir)
    record = PipelineRecord(layout, config, config_name, command)
    machine = record.machine
    say(f"pipeline: {config.env}{f' ({config_name})' if config_name else ''} in {layout.root} on "
        f"{machine['usable_cores']} cores of {machine['cpu']}, "
        f"{'GPU ' + ', '.join(machine['gpus']) if machine['gpus'] else 'no GPU'}, TF {machine['tensorflow']}")
    record.save()
    started, ran = time.perf_counter(), False
    for number, stage in enumerate(PIPELINE, 1):
        label = f"pipeline: stage {number}/{len(PIPELINE)} {stage.name}"
        settings = stage.settings(layout, config)
        previous = record.stages.get(stage.name, {})
        if (not ran and previous.get("status") == "done" and same_settings(previous.get("settings"), settings)
                and stage.complete(layout, config)):
            say(f"{label}: skipped, already complete (took {format_duration(previous.get('seconds', 0))} "
                f"on {previous.get('finished', '?')})")
            continue
        _run_stage(stage, label, layout, config, record, settings, verbose, say)
        ran = True
    say(f"pipeline: done in {format_duration(time.perf_counter() - started)} (all stages: "
        f"{format_duration(record.data['total_seconds'])}); report in {layout.report / 'README.md'}")
    return record.data

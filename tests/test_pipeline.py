"""run.pipeline: doom_tiny end to end from an empty folder (real VizDoom, real V, M and C), a SIGKILL in the middle
of a stage and the resumed run, the shipped configs, and one-line errors for bad input."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from absl import flags

from common.errors import UserError
from common.flags import ConfigFlags
from common.layout import STAGES
from controller.es import ESConfig
from controller.train import ControllerTrainConfig
from run.collect import CollectConfig
from run.pipeline_config import PIPELINE_FLAGS, PipelineConfig, config_names, config_path, load_config
from run.pipeline_runner import run_pipeline
from run.pipeline_stages import same_settings
from vae.train import VAETrainConfig

REPO = Path(__file__).resolve().parents[1]
CONTROLLER = Path("controller") / "doomrnn_full_t1.15"


def finished_doom_tiny(tmp_path_factory) -> tuple[Path, list[str]]:
    """One doom_tiny pipeline run from an empty folder, shared by the test modules of a session (the first
    caller runs it, in this process, through the plain function); returns the folder and the lines it printed."""
    exp_dir = tmp_path_factory.getbasetemp() / "doom_tiny_run"
    log = exp_dir.parent / "doom_tiny_run.log"
    if not log.exists():
        assert not exp_dir.exists()
        lines: list[str] = []
        start = time.perf_counter()
        run_pipeline(exp_dir, load_config("doom_tiny"), verbose=False, config_name="doom_tiny", say=lines.append)
        lines.append(f"wall time {time.perf_counter() - start:.1f}s")
        log.write_text("\n".join(lines))
    return exp_dir, log.read_text().splitlines()


@pytest.fixture(scope="module")
def doom_tiny(tmp_path_factory):
    return finished_doom_tiny(tmp_path_factory)


def test_doom_tiny_end_to_end_from_an_empty_folder(doom_tiny):
    exp_dir, lines = doom_tiny
    print(lines[-1])  # the measured wall time (pytest -s shows it)
    for stage in STAGES:
        assert any(line.startswith("pipeline: stage") and f" {stage}: started" in line for line in lines), stage
        assert any(f" {stage}: finished in " in line for line in lines), stage
    rollouts = sorted((exp_dir / "rollouts").glob("ep*.npz"))
    assert len(rollouts) == 10
    assert sorted(p.name for p in (exp_dir / "series").glob("ep*.npz")) == [p.name for p in rollouts]
    for path in ("vae/vae.keras", "vae/reconstructions.png", "series/initial_z.npz", "rnn/rnn.keras",
                 "rnn/best.json", CONTROLLER / "controller.json", CONTROLLER / "history.json",
                 CONTROLLER / "progress.png", CONTROLLER / "histogram_doom.png", "report/README.md"):
        assert (exp_dir / path).is_file(), path
    history = json.loads((exp_dir / CONTROLLER / "history.json").read_text())
    assert len(history["generations"]) == 2
    evaluation = json.loads((exp_dir / CONTROLLER / "evaluation_doom.json").read_text())
    assert evaluation["episodes"] == 4 and len(evaluation["scores"]) == 4
    assert all(1 <= score <= 2100 for score in evaluation["scores"])
    round_one = exp_dir / "iterate" / "round_01"
    assert len(list((round_one / "rollouts").glob("ep*.npz"))) == 4, "the iterate stage ran one round"
    assert (round_one / CONTROLLER / "evaluation_doom.json").is_file()
    assert (round_one / "report" / "dream_audit.md").is_file()
    report = (exp_dir / "report" / "README.md").read_text()
    assert "| 1 | + round 0 controller |" in report, "the report shows the rounds"

    record = json.loads((exp_dir / "pipeline.json").read_text())
    assert record["config_name"] == "doom_tiny" and record["config"]["episodes"] == 10
    assert record["config"]["controller_env"] == "doomrnn" and record["config"]["temperature"] == 1.15
    for stage in STAGES:
        entry = record["stages"][stage]
        assert entry["status"] == "done" and entry["seconds"] >= 0 and entry["attempts"] == 1, stage
    assert record["total_seconds"] == pytest.approx(sum(record["stages"][s]["seconds"] for s in STAGES), abs=0.2)
    machine = record["machine"]
    assert machine["cores"] == os.cpu_count() and machine["cpu"] and machine["tensorflow"]
    assert machine["gpus"] == [] or all(isinstance(g, str) for g in machine["gpus"])

    report = (exp_dir / "report" / "README.md").read_text()
    assert "| trained in the dream at τ | paper: dream | paper: real | this run: dream | this run: real |" in report
    assert "| 1.15 | 918 ± 546 | 1,092 ± 556 |" in report
    assert f"{evaluation['mean']:,.0f} ± {evaluation['std']:,.0f} (4)" in report


def test_a_killed_pipeline_resumes_and_skips_its_finished_stages(tmp_path):
    exp_dir = tmp_path / "exp"
    command = [sys.executable, "-m", "run.pipeline", "--config=doom_tiny", f"--exp_dir={exp_dir}"]
    process = subprocess.Popen(command, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    record_path = exp_dir / "pipeline.json"
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and process.poll() is None:
            record = json.loads(record_path.read_text()) if record_path.exists() else {}
            vae = record.get("stages", {}).get("vae", {})
            if vae.get("status") == "running" and vae.get("seconds"):  # V's first heartbeat: in the middle of V
                break
            time.sleep(0.1)
        assert process.poll() is None, "the pipeline must still be running when it is killed"
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the pipeline and its workers, if any
        process.wait()
    killed = json.loads(record_path.read_text())
    assert killed["stages"]["collect"]["status"] == "done"
    assert killed["stages"]["vae"]["status"] == "running"
    assert not (exp_dir / "vae" / "vae.keras").exists() and "rnn" not in killed["stages"]

    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "pipeline: stage 1/9 collect: skipped, already complete" in result.stdout
    assert "pipeline: stage 2/9 vae: started (resuming after an interrupted run)" in result.stdout
    for stage in STAGES[1:]:
        assert f" {stage}: finished in " in result.stdout, stage
    resumed = json.loads(record_path.read_text())
    assert resumed["stages"]["collect"] == killed["stages"]["collect"], "a skipped stage keeps its recorded time"
    assert resumed["stages"]["vae"]["attempts"] == 2
    # the killed attempt could not record its end: its last heartbeat's time counts, as the report's "in all"
    assert resumed["stages"]["vae"]["earlier_attempts_seconds"] == killed["stages"]["vae"]["seconds"] >= 5.0
    assert all(resumed["stages"][stage]["status"] == "done" for stage in STAGES)
    assert (exp_dir / CONTROLLER / "evaluation_doom.json").is_file() and (exp_dir / "report" / "README.md").is_file()


def test_a_stage_run_again_with_other_settings_keeps_the_earlier_time(doom_tiny, tmp_path):
    exp_dir = tmp_path / "exp"
    shutil.copytree(doom_tiny[0], exp_dir, symlinks=True)
    before = json.loads((exp_dir / "pipeline.json").read_text())["stages"]
    lines: list[str] = []
    record = run_pipeline(exp_dir, load_config("doom_tiny", eval_episodes=2), verbose=False, say=lines.append)
    assert "pipeline: stage 1/9 collect: skipped" in lines[1], lines
    evaluate = record["stages"]["evaluate"]
    assert evaluate["attempts"] == 2 and evaluate["earlier_attempts_seconds"] == before["evaluate"]["seconds"]
    assert record["stages"]["report"]["attempts"] == 1, "the report is rewritten each run, not resumed"
    report = (exp_dir / "report" / "README.md").read_text()
    assert "in earlier attempts, interrupted or run with other settings" in report


def test_an_interrupt_that_surfaced_as_another_error_is_an_interruption():
    from run.pipeline_runner import is_interruption

    def closing_a_half_written_file():  # as numpy's savez does when a SIGTERM lands mid-write
        try:
            raise KeyboardInterrupt("signal 15")
        finally:
            raise ValueError("Can't close the ZIP file while there is an open writing handle on it")

    with pytest.raises(ValueError) as caught:
        closing_a_half_written_file()
    assert is_interruption(caught.value)
    assert not is_interruption(ValueError("a real failure")) and not is_interruption(None)


def test_sigterm_records_the_stage_as_interrupted_and_the_time_it_ran(tmp_path):
    exp_dir = tmp_path / "exp"
    command = [sys.executable, "-m", "run.pipeline", "--config=doom_tiny", f"--exp_dir={exp_dir}"]
    process = subprocess.Popen(command, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    record_path = exp_dir / "pipeline.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None and not list(exp_dir.glob("rollouts/ep*.npz")):
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)  # the pipeline's own process, as a scheduler would
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-2000:]
    assert stderr.strip().splitlines()[-1] == "pipeline: interrupted; the same command resumes"
    collect = json.loads(record_path.read_text())["stages"]["collect"]
    assert collect["status"] == "interrupted" and collect["seconds"] > 0
    deadline = time.monotonic() + 20  # multiprocessing's resource tracker exits once it sees the parent gone
    while time.monotonic() < deadline:
        left = subprocess.run(["pgrep", "-a", "-g", str(process.pid)], capture_output=True, text=True).stdout.strip()
        if not left:
            break
        time.sleep(0.5)
    assert not left, f"processes outlived the pipeline: {left}"


def test_shipped_configs_parse_and_the_paper_configs_hold_the_papers_values():
    assert {"doom_paper", "doom_small", "doom_tiny", "carracing_paper", "carracing_small",
            "carracing_tiny"} <= set(config_names())
    for name in config_names():
        config = load_config(name).resolved()
        config.validate_stages()  # every stage accepts its part
    doom = load_config("doom_paper").resolved()
    assert (doom.env, doom.collect.episodes, doom.vae.z_size, doom.rnn.hidden, doom.controller_env,
            doom.controller.temperature) == ("doom", 10_000, 64, 512, "doomrnn", 1.15)
    es = doom.controller.es
    assert (es.popsize, es.rollouts, es.eval_every, es.eval_rollouts, doom.evaluate.episodes) == (64, 16, 25, 1024, 100)
    assert doom.doom_resolution == "640x480" and doom.vae.epochs == 1 and doom.max_steps is None
    paper = PIPELINE_FLAGS.values(PipelineConfig())
    unset = {name for name, value in PIPELINE_FLAGS.values(load_config("doom_paper")).items() if value != paper[name]}
    assert unset == {"z_size", "rnn_hidden", "rnn_steps", "rnn_batch_size", "rnn_seq_len", "controller_env"}, \
        "the defaults are the paper's: doom_paper only spells out what they leave to the task"
    car = load_config("carracing_paper")
    assert (car.env, car.collect.episodes, car.vae.z_size, car.rnn.hidden, car.controller_env,
            car.controller.es.generations) == ("carracing", 10_000, 32, 256, "carracing", 1800)
    small = load_config("doom_small")
    assert small.controller.temperature == 1.15 and small.rnn.hidden == 512 and small.evaluate.episodes == 100
    assert len(small.iterate_config().generations) == small.iterate.rounds, "one C budget per round"
    car_rounds = load_config("carracing_tiny", iterate_rounds=1).resolved().iterate_config().validated()
    assert (car_rounds.env, car_rounds.train_env) == ("carracing", "carracing")
    # a flag given beside the config wins over the file
    assert load_config("doom_tiny", episodes=3, generations=7).collect.episodes == 3
    assert load_config("doom_tiny", generations=7).controller.es.generations == 7


def test_a_pipeline_setting_reaches_the_stage_config_that_uses_it():
    config = load_config("doom_tiny", seed=7, workers=1, max_steps=90, doom_resolution="160x120", rnn_eval_every=5,
                         iterate_rnn_steps=9, iterate_generations="3,4", eval_video="first.gif").resolved()
    stages = [config.collect_config(), config.vae_config(), config.rnn_config(), config.controller_config().es,
              config.evaluate_config("/tmp/x"), config.iterate_config()]
    assert all(stage.seed == 7 for stage in stages), "one seed drives every stage"
    for stage in (config.collect_config(), config.controller_config(), config.evaluate_config("/tmp/x"),
                  config.iterate_config()):
        assert (stage.workers, stage.doom_resolution) == (1, "160x120"), type(stage).__name__
    assert config.collect_config().max_steps == config.evaluate_config("/tmp/x").max_steps == 90
    assert config.controller_config().max_steps == 300, "doom_tiny's --controller_max_steps caps C's dreams"
    assert config.iterate_config().max_steps == 90, "the rounds' C plays to the evaluation's cap"
    assert config.rnn_config().checkpoint_every == config.rnn_config().eval_every == 5
    rounds = config.iterate_config()
    assert (rounds.rnn.steps, rounds.rnn.eval_every, rounds.rnn.seq_len, rounds.generations) == (9, 5, 32, (3, 4))
    assert rounds.controller.es.popsize == config.controller_config().es.popsize == 4
    assert rounds.controller.temperature == 1.15 and rounds.eval_episodes == config.evaluate.episodes == 4
    assert config.evaluate_config("/tmp/x").video == "first.gif"
    assert config.evaluate_config("/tmp/x").controller_file.endswith("controller/doomrnn_full_t1.15/controller.json")


def _flags_round_trip(config_flags: ConfigFlags, config) -> object:
    """`config` written out as flags and parsed back through freshly defined ones."""
    flag_values = flags.FlagValues()
    config_flags.define(flag_values)
    argv = ["x"]
    for name, value in config_flags.values(config).items():
        if value is None:
            continue
        if isinstance(value, bool):
            argv.append(f"--{name}" if value else f"--no{name}")
        elif isinstance(value, tuple):
            argv.append(f"--{name}={','.join(map(str, value))}")
        else:
            argv.append(f"--{name}={value}")
    flag_values(argv)
    return config_flags.parse(flag_values)


@pytest.mark.parametrize("config_flags, config", [
    (ConfigFlags(CollectConfig), CollectConfig(env="carracing", episodes=7, max_steps=9, policy="brownian",
                                               legacy_preprocess=True, explore=0.25)),
    (ConfigFlags(VAETrainConfig), VAETrainConfig(z_size=16, epochs=3, learning_rate=3e-4, mixed_precision=True,
                                                 resume=False)),
    (ConfigFlags(ControllerTrainConfig), ControllerTrainConfig(env="doomrnn", controller="z", temperature=1.3,
                                                               es=ESConfig(popsize=8, sigma=0.2, seed=5))),
    (PIPELINE_FLAGS, load_config("doom_small")),
    (PIPELINE_FLAGS, load_config("carracing_tiny", iterate_rounds=1, rnn_learning_rate=0.002)),
])
def test_flags_made_from_a_config_give_the_same_config_back(config_flags, config):
    assert _flags_round_trip(config_flags, config) == config
    defaults = flags.FlagValues()
    config_flags.define(defaults)
    defaults(["x"])
    assert config_flags.parse(defaults) == (config_flags.defaults or config_flags.config_class()), "defaults"


def test_flags_take_their_help_from_the_field_comments():
    flag_values = flags.FlagValues()
    PIPELINE_FLAGS.define(flag_values)
    assert flag_values["rnn_steps"].help == "total optimiser steps (CarRacing 4,000, Doom 24,000)"
    assert "the 2018 code" in flag_values["vae_epochs"].help
    assert "the dream's tau" in flag_values["temperature"].help


def test_every_flag_a_shipped_config_sets_is_a_pipeline_flag_and_reaches_the_config():
    names = set(PIPELINE_FLAGS.flag_names())
    for name in config_names():
        lines = [line.strip() for line in config_path(name).read_text().splitlines()]
        given = dict(line[2:].split("=", 1) for line in lines if line.startswith("--"))
        assert set(given) <= names, (name, set(given) - names)
        values = PIPELINE_FLAGS.values(load_config(name))
        for flag, text in given.items():
            value = values[flag]
            shown = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
            assert shown == text or float(shown) == float(text), (name, flag, text, value)


def test_a_config_can_be_a_copied_and_edited_file(tmp_path):
    text = (REPO / "run" / "configs" / "doom_tiny.cfg").read_text().replace("--episodes=10", "--episodes=12")
    (tmp_path / "mine.cfg").write_text(text)
    config = load_config(str(tmp_path / "mine.cfg"))
    assert config.collect.episodes == 12
    assert config.controller.es.popsize == load_config("doom_tiny").controller.es.popsize
    with pytest.raises(UserError, match="--config=nope: no such config"):
        load_config("nope")
    (tmp_path / "bad.cfg").write_text("--episodes=many\n")
    with pytest.raises(UserError, match="--episodes=many"):
        load_config(str(tmp_path / "bad.cfg"))


@pytest.mark.parametrize("args, message", [
    (["--config=nope"], "--config=nope: no such config"),
    (["--config=doom_tiny", "--episodes=abc"], "--episodes=abc"),
    (["--config=doom_tiny", "--no_such_flag=1"], "no_such_flag"),
    (["--config=doom_tiny", "--env=pong"], "--env=pong"),
    (["--config=doom_tiny", "--env=carracing"], "--controller_env=doomrnn"),
    (["--config=doom_tiny", "--popsize=0"], "--popsize=0"),
    (["--config=doom_tiny", "--doom_resolution=1x1"], "--doom_resolution=1x1"),
    (["--config=doom_tiny", "--iterate_rounds=2", "--iterate_generations=20,x"], "--iterate_generations=20,x"),
    (["--config=doom_tiny", "--iterate_rounds=1", "--controller_env=doom"], "not in real Doom"),
    (["--config=doom_tiny", "--iterate_hole_episodes=50", "--iterate_audit_episodes=0"],
     "needs the dream audit"),
    (["--config=carracing_tiny", "--real_generations=2"], "--real_generations=2: fine-tunes a C trained in a dream"),
    (["--config=doom_tiny", "--iterate_round_temperature=0"], "--iterate_round_temperature=0.0: must be positive"),
    (["--config=doom_tiny", "--iterate_round_controller=wide"], "--iterate_round_controller: --controller=wide"),
])
def test_bad_input_gives_one_error_line_and_exit_2(tmp_path, args, message):
    result = subprocess.run([sys.executable, "-m", "run.pipeline", f"--exp_dir={tmp_path / 'exp'}", *args],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]
    assert not (tmp_path / "exp").exists(), "nothing is written before the settings are known to be good"


def test_a_field_added_to_a_stage_config_later_does_not_rerun_finished_stages():
    recorded = {"episodes": 10, "es": {"popsize": 4, "sigma": 0.1}}
    assert same_settings(recorded, {"episodes": 10, "es": {"popsize": 4, "sigma": 0.1, "new": 1}, "added": True})
    assert not same_settings(recorded, {"episodes": 11, "es": {"popsize": 4, "sigma": 0.1}})
    assert not same_settings(recorded, {"episodes": 10, "es": {"popsize": 8, "sigma": 0.1}})

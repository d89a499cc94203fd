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

from common.errors import UserError
from common.layout import STAGES
from run.pipeline import config_names, iterate_config, load_config, run_pipeline, validate_stage_configs

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
            if record.get("stages", {}).get("vae", {}).get("status") == "running":
                break
            time.sleep(0.1)
        time.sleep(3.0)  # V is compiling or training: a kill in the middle of the stage
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
    assert "pipeline: stage 1/8 collect: skipped, already complete" in result.stdout
    assert "pipeline: stage 2/8 vae: started (resuming after an interrupted run)" in result.stdout
    for stage in STAGES[1:]:
        assert f" {stage}: finished in " in result.stdout, stage
    resumed = json.loads(record_path.read_text())
    assert resumed["stages"]["collect"] == killed["stages"]["collect"], "a skipped stage keeps its recorded time"
    assert resumed["stages"]["vae"]["attempts"] == 2
    assert all(resumed["stages"][stage]["status"] == "done" for stage in STAGES)
    assert (exp_dir / CONTROLLER / "evaluation_doom.json").is_file() and (exp_dir / "report" / "README.md").is_file()


def test_a_stage_run_again_with_other_settings_keeps_the_earlier_time(doom_tiny, tmp_path):
    exp_dir = tmp_path / "exp"
    shutil.copytree(doom_tiny[0], exp_dir, symlinks=True)
    before = json.loads((exp_dir / "pipeline.json").read_text())["stages"]
    lines: list[str] = []
    record = run_pipeline(exp_dir, load_config("doom_tiny", eval_episodes=2), verbose=False, say=lines.append)
    assert "pipeline: stage 1/8 collect: skipped" in lines[1], lines
    evaluate = record["stages"]["evaluate"]
    assert evaluate["attempts"] == 2 and evaluate["earlier_attempts_seconds"] == before["evaluate"]["seconds"]
    assert record["stages"]["report"]["attempts"] == 1, "the report is rewritten each run, not resumed"
    report = (exp_dir / "report" / "README.md").read_text()
    assert "in earlier attempts, interrupted or run with other settings" in report


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
        validate_stage_configs(config)  # every stage accepts its part
    doom = load_config("doom_paper")
    assert (doom.env, doom.episodes, doom.z_size, doom.rnn_hidden, doom.controller_env, doom.temperature) == \
        ("doom", 10_000, 64, 512, "doomrnn", 1.15)
    assert (doom.popsize, doom.rollouts, doom.eval_every, doom.eval_rollouts, doom.eval_episodes) == \
        (64, 16, 25, 1024, 100)
    assert doom.doom_resolution == "640x480" and doom.vae_epochs == 1 and doom.max_steps is None
    car = load_config("carracing_paper")
    assert (car.env, car.episodes, car.z_size, car.rnn_hidden, car.controller_env, car.generations) == \
        ("carracing", 10_000, 32, 256, "carracing", 1800)
    assert (car.popsize, car.rollouts, car.eval_every, car.eval_rollouts, car.eval_episodes) == (64, 16, 25, 1024, 100)
    small = load_config("doom_small")
    assert small.temperature == 1.15 and small.rnn_hidden == 512 and small.eval_episodes == 100
    assert len(iterate_config(small).generations) == small.iterate_rounds, "one C budget per round"
    car_rounds = iterate_config(load_config("carracing_tiny", iterate_rounds=1).resolved()).validated()
    assert (car_rounds.env, car_rounds.train_env) == ("carracing", "carracing")
    # a flag given beside the config wins over the file
    assert load_config("doom_tiny", episodes=3, generations=7).episodes == 3
    assert load_config("doom_tiny", generations=7).generations == 7


def test_a_config_can_be_a_copied_and_edited_file(tmp_path):
    text = (REPO / "run" / "configs" / "doom_tiny.cfg").read_text().replace("--episodes=10", "--episodes=12")
    (tmp_path / "mine.cfg").write_text(text)
    config = load_config(str(tmp_path / "mine.cfg"))
    assert config.episodes == 12 and config.popsize == load_config("doom_tiny").popsize
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
    (["--config=carracing_tiny", "--iterate_rounds=1", "--controller=z"], "--iterate_rounds needs the full C"),
    (["--config=doom_tiny", "--iterate_hole_episodes=50", "--iterate_audit_episodes=0"],
     "needs Doom's dream audit"),
])
def test_bad_input_gives_one_error_line_and_exit_2(tmp_path, args, message):
    result = subprocess.run([sys.executable, "-m", "run.pipeline", f"--exp_dir={tmp_path / 'exp'}", *args],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]
    assert not (tmp_path / "exp").exists(), "nothing is written before the settings are known to be good"


def test_a_field_added_to_a_stage_config_later_does_not_rerun_finished_stages():
    from run.pipeline import same_settings

    recorded = {"episodes": 10, "es": {"popsize": 4, "sigma": 0.1}}
    assert same_settings(recorded, {"episodes": 10, "es": {"popsize": 4, "sigma": 0.1, "new": 1}, "added": True})
    assert not same_settings(recorded, {"episodes": 11, "es": {"popsize": 4, "sigma": 0.1}})
    assert not same_settings(recorded, {"episodes": 10, "es": {"popsize": 8, "sigma": 0.1}})

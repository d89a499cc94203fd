"""Controller training with CMA-ES: in the dream (fast, one batch) and in real CarRacing/Doom (worker pool);
stop and resume, a real SIGKILL and resume, each equal to the uninterrupted run; evaluation in the real game;
a failing worker reported in one line; no TensorFlow/CUDA start-up lines on the screen."""

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from common.errors import UserError
from controller import Controller
from controller.es import ESConfig, kept_evaluation, load_state
from controller.evaluate import EvaluateConfig, evaluate_controller
from controller.rollouts import LOCKSTEP_EPISODES, RealEvaluator, RealSetup
from controller.train import ControllerTrainConfig, train_controller
from tests.conftest import make_carracing_world

REPO = Path(__file__).resolve().parents[1]
DREAM_RUN = "controller/doomrnn_full_t1.15"
# What TensorFlow prints while it starts (the main process and every worker): none of it may reach the screen.
STARTUP_LINES = ("cuInit", "cuda", "oneDNN", "cudart_stub", "All log messages before absl::InitializeLog()",
                 "cpu_feature_guard", "rebuild TensorFlow")


def _linked_experiment(rigged_dream: Path, exp: Path) -> Path:
    """An experiment folder of its own (other tests train in the shared one) with the rigged dream's V, M and
    initial_z linked in."""
    (exp / "rnn").mkdir(parents=True)
    for name in ("series", "vae", "rnn/rnn.keras"):
        os.symlink(rigged_dream / name, exp / name)
    return exp


def _trajectory(out: Path) -> tuple[list, np.ndarray]:
    """Every generation's fitness list and step size, and the final CMA mean, of a controller run folder."""
    generations = json.loads((out / "history.json").read_text())["generations"]
    return ([(g["generation"], g["fitness"], g["sigma"]) for g in generations],
            Controller.load(out / "controller.json")[1])


def _assert_same_trajectory(straight: Path, resumed: Path) -> None:
    expected, expected_mean = _trajectory(straight)
    found, found_mean = _trajectory(resumed)
    assert [g[0] for g in found] == [g[0] for g in expected]
    for (generation, fitness, sigma), (_, expected_fitness, expected_sigma) in zip(found, expected):
        assert fitness == expected_fitness and sigma == expected_sigma, f"generation {generation + 1} differs"
    np.testing.assert_array_equal(found_mean, expected_mean)


def _dream_config(generations: int, **es) -> ControllerTrainConfig:
    settings = dict(popsize=16, rollouts=4, generations=generations, eval_every=2, eval_rollouts=16, seed=5,
                    sigma=0.5)
    settings.update(es)
    return ControllerTrainConfig(env="doomrnn", es=ESConfig(**settings), temperature=1.15)


def test_training_in_the_dream_learns_what_keeps_the_agent_alive(rigged_dream, tmp_path):
    out = train_controller(rigged_dream, _dream_config(8), verbose=False)
    history = json.loads((out / "history.json").read_text())
    best = [g["best"] for g in history["generations"]]
    evaluations = [e["mean"] for e in history["evaluations"]]
    assert len(best) == 8 and len(evaluations) == 4
    assert max(best[-2:]) > 2 * history["generations"][0]["mean"], best
    assert evaluations[-1] > 100, evaluations  # standing still survives ~6 steps; moving right, 2,100
    controller, params = Controller.load(out / "controller.json")
    assert controller.env == "doom" and params.size == controller.num_params
    for name in ("es.pkl", "best.json", "progress.png", "config.json"):
        assert (out / name).exists(), name
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))


def test_dream_training_checks_the_cma_mean_in_the_real_game_and_plots_both_scores(rigged_dream, tmp_path):
    from matplotlib.image import imread

    from controller.plots import plot_training_progress

    exp = _linked_experiment(rigged_dream, tmp_path / "exp")
    config = dataclasses.replace(_dream_config(3, popsize=4, rollouts=2, eval_every=1, eval_rollouts=4),
                                 max_steps=60, real_eval_every=2, real_eval_episodes=2, doom_resolution="160x120")
    out = train_controller(exp, config, verbose=False)
    history = json.loads((out / "history.json").read_text())
    real = [e for e in history["evaluations"] if "real_mean" in e]
    assert [e["generation"] for e in real] == [2, 3], "every 2 generations and at the end"
    assert all(e["real_episodes"] == 2 and 1 <= e["real_mean"] <= 60 for e in real), real
    dream = [e for e in history["evaluations"] if "mean" in e]
    title = "CMA-ES, doomrnn, 'full' controller"
    plot_training_progress(history["generations"], dream, tmp_path / "dream_only.png", title=title)
    plot_training_progress(history["generations"], dream, tmp_path / "both.png", title=title, real_checks=real)
    assert not np.array_equal(imread(tmp_path / "dream_only.png"), imread(tmp_path / "both.png"))
    assert np.array_equal(imread(out / "progress.png"), imread(tmp_path / "both.png")), "the real checks are drawn"


def test_select_by_real_check_keeps_the_cma_mean_of_the_best_real_check(rigged_dream, tmp_path):
    """Checks at generations 1, 2 and 3: controller.json is the CMA mean of the best (the earliest of equals),
    the same mean a run stopped at that generation ends with; history.json names it and the dream score reported
    for C is that generation's; running the finished run again changes nothing."""
    config = dataclasses.replace(_dream_config(3, popsize=4, rollouts=2, eval_every=1, eval_rollouts=4),
                                 max_steps=60, real_eval_every=1, real_eval_episodes=2, doom_resolution="160x120",
                                 select_by_real_check=True)
    out = train_controller(_linked_experiment(rigged_dream, tmp_path / "selected"), config, verbose=False)
    history = json.loads((out / "history.json").read_text())
    checks = [e for e in history["evaluations"] if "real_mean" in e]
    assert [e["generation"] for e in checks] == [1, 2, 3]
    best = max(checks, key=lambda e: e["real_mean"])
    assert history["selected"] == best
    kept = Controller.load(out / "controller.json")[1]
    np.testing.assert_array_equal(kept, Controller.load(out / "best_real_check.json")[1])
    assert kept_evaluation(history)["generation"] == best["generation"]
    stopped = train_controller(_linked_experiment(rigged_dream, tmp_path / "stopped"), dataclasses.replace(
        config, select_by_real_check=False, es=dataclasses.replace(config.es, generations=best["generation"])),
        verbose=False)
    np.testing.assert_array_equal(kept, Controller.load(stopped / "controller.json")[1])
    if best["generation"] != 3:  # the last mean differs from the kept one
        assert not np.array_equal(kept, np.asarray(load_state(out / "es.pkl").strategy.mean, np.float32))
    before = (out / "controller.json").read_bytes()
    train_controller(out.parent.parent, config, verbose=False)
    assert (out / "controller.json").read_bytes() == before
    for wrong, message in ((dict(real_eval_every=0), "--real_eval_every > 0"),
                           (dict(env="doom"), "trained in a dream")):
        with pytest.raises(UserError, match=re.escape(message)):
            dataclasses.replace(config, **wrong).validated()


def test_stopped_and_resumed_dream_training_follows_the_uninterrupted_run(rigged_dream, tmp_path):
    """Stops after 1 and 3 generations, then runs to 7: pycma's step-size rule draws random numbers from the 4th
    generation on, which is where a resumed strategy used to leave the trajectory."""
    config = dataclasses.replace(_dream_config(7, popsize=8, rollouts=2, eval_every=100, eval_rollouts=4),
                                 max_steps=100)
    straight = train_controller(_linked_experiment(rigged_dream, tmp_path / "straight"), config, verbose=False)
    stopped = _linked_experiment(rigged_dream, tmp_path / "stopped")
    for generations in (1, 3, 7):
        resumed = train_controller(stopped, dataclasses.replace(config, es=dataclasses.replace(
            config.es, generations=generations)), verbose=False)
    _assert_same_trajectory(straight, resumed)


def test_sigkill_and_resume_follow_the_uninterrupted_run(rigged_dream, tmp_path):
    straight = _linked_experiment(rigged_dream, tmp_path / "straight")
    killed = _linked_experiment(rigged_dream, tmp_path / "killed")
    args = ["--env=doomrnn", "--popsize=8", "--rollouts=4", "--generations=7", "--eval_every=100",
            "--eval_rollouts=8", "--seed=9", "--max_steps=200"]
    result = subprocess.run([sys.executable, "-m", "controller.train", f"--exp_dir={straight}", *args],
                            cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    process = subprocess.Popen([sys.executable, "-m", "controller.train", f"--exp_dir={killed}", *args,
                                "--generations=100"], cwd=REPO, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    history = killed / DREAM_RUN / "history.json"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if history.exists() and len(json.loads(history.read_text())["generations"]) >= 2:
            break
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    result = subprocess.run([sys.executable, "-m", "controller.train", f"--exp_dir={killed}", *args],
                            cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    resumed_at = int(re.search(r"resuming .* at generation (\d+)", result.stdout).group(1))
    assert 1 <= resumed_at - 1 <= 4, "killed after a checkpointed generation, with 3 or more to run after it"
    _assert_same_trajectory(straight / DREAM_RUN, killed / DREAM_RUN)


@pytest.fixture(scope="module")
def carracing_world(tmp_path_factory) -> Path:
    """An untrained CarRacing V (z 32) and a small M (16 units) saved where the trainer looks."""
    return make_carracing_world(tmp_path_factory.mktemp("carracing_world"), seed=1)


def test_real_carracing_generations_with_two_workers(carracing_world):
    config = ControllerTrainConfig(env="carracing", workers=2, max_steps=40,
                                   es=ESConfig(popsize=4, rollouts=2, generations=2, eval_every=2,
                                               eval_rollouts=2, seed=1))
    out = train_controller(carracing_world, config, verbose=False)
    history = json.loads((out / "history.json").read_text())
    assert len(history["generations"]) == 2 and len(history["evaluations"]) == 1
    for generation in history["generations"]:
        assert generation["worst"] <= generation["mean"] <= generation["best"]
        assert -4.1 <= generation["worst"]  # 40 frames at -0.1 each, plus tiles visited
    assert Controller.load(out / "controller.json")[0].num_params == 32 * 3 + 16 * 3 + 3


def test_real_scores_do_not_depend_on_the_number_of_workers(carracing_world):
    """Six episodes (3 candidates x 2 seeds) in lockstep chunks of `LOCKSTEP_EPISODES`, cut by task index: one
    worker and two give the same returns to the bit."""
    controller = Controller("carracing", "full", hidden_size=16)
    setup = RealSetup(str(carracing_world), "carracing", controller.get_config(), max_steps=30)
    population = np.random.default_rng(4).normal(0, 0.5, (3, controller.num_params))
    returns = {}
    for workers in (1, 2):
        evaluator = RealEvaluator(setup, workers)
        try:
            returns[workers] = evaluator(population, np.array([11, 12]))
        finally:
            evaluator.close()
    assert LOCKSTEP_EPISODES < 6 and returns[1].shape == (3, 2)
    np.testing.assert_array_equal(returns[1], returns[2])
    assert len(np.unique(returns[1])) > 1  # the episodes differ: equality is no coincidence


def test_resumed_real_game_training_follows_the_uninterrupted_run(carracing_world, tmp_path):
    """Real CarRacing episodes in 2 workers: stopped after 2 generations and resumed for 3 more."""
    config = ControllerTrainConfig(env="carracing", workers=2, max_steps=20,
                                   es=ESConfig(popsize=4, rollouts=2, generations=5, eval_every=100,
                                               eval_rollouts=2, seed=3))
    exps = {}
    for name in ("straight", "stopped"):
        exps[name] = tmp_path / name
        exps[name].mkdir()
        for folder in ("vae", "rnn", "series"):
            os.symlink(carracing_world / folder, exps[name] / folder)
    straight = train_controller(exps["straight"], config, verbose=False)
    train_controller(exps["stopped"], dataclasses.replace(config, es=dataclasses.replace(config.es, generations=2)),
                     verbose=False)
    resumed = train_controller(exps["stopped"], config, verbose=False)
    _assert_same_trajectory(straight, resumed)


def test_dream_controller_plays_real_doom_and_reports_mean_std(rigged_dream, tmp_path):
    """Also: neither the main process nor its 2 workers put TensorFlow's start-up lines on the screen (run as a
    user would, without TF_CPP_MIN_LOG_LEVEL)."""
    out = train_controller(rigged_dream, _dream_config(1), verbose=False)
    environ = {name: value for name, value in os.environ.items() if name != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run([sys.executable, "-m", "controller.evaluate", f"--exp_dir={rigged_dream}",
                             "--env=doom", "--episodes=3", "--workers=2", "--doom_resolution=320x240",
                             f"--video={tmp_path / 'doom.gif'}", "--max_steps=300"],
                            cwd=REPO, capture_output=True, text=True, timeout=600, env=environ)
    assert result.returncode == 0, result.stderr[-2000:]
    assert not [line for line in STARTUP_LINES if line.lower() in result.stderr.lower()], result.stderr[-3000:]
    assert "evaluate: doom" in result.stdout and "± " in result.stdout and "over 3 episodes" in result.stdout
    scores = json.loads((out / "evaluation_doom.json").read_text())
    assert len(scores["scores"]) == 3 and all(1 <= s <= 300 for s in scores["scores"])
    assert (out / "histogram_doom.png").exists()
    import imageio.v2 as imageio

    frames = imageio.mimread(tmp_path / "doom.gif")
    assert len(frames) >= 1 and frames[0].shape[:2] == (256, 512)


def test_bad_inputs_name_what_is_wrong(rigged_dream, carracing_world, tmp_path):
    wrong = tmp_path / "wrong.json"
    Controller("carracing", "z").save(wrong, np.zeros(99, np.float32))
    with pytest.raises(Exception, match="carracing controller cannot play --env=doom"):
        evaluate_controller(rigged_dream, EvaluateConfig(env="doom", episodes=1, controller_file=str(wrong)))
    result = subprocess.run([sys.executable, "-m", "controller.train", f"--exp_dir={carracing_world}",
                             "--env=doomrnn", "--generations=1"], cwd=REPO, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].startswith("error: ")
    result = subprocess.run([sys.executable, "-m", "controller.train", f"--exp_dir={carracing_world}",
                             "--workers=500"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "--workers=500" in result.stderr


def test_bfloat16_dream_trains_like_the_float32_one(rigged_dream, tmp_path):
    exp = tmp_path / "exp"
    (exp / "rnn").mkdir(parents=True)
    os.symlink(rigged_dream / "series", exp / "series")
    os.symlink(rigged_dream / "rnn" / "rnn.keras", exp / "rnn" / "rnn.keras")
    config = dataclasses.replace(_dream_config(8), dream_bfloat16=True)
    out = train_controller(exp, config, verbose=False)
    history = json.loads((out / "history.json").read_text())
    assert history["evaluations"][-1]["mean"] > 100, "bfloat16 keeps the rigged dream learnable"


@pytest.mark.parametrize("command", [
    ["controller.evaluate", "--env=carracing", "--episodes=1", "--workers=2"],
    ["controller.train", "--env=carracing", "--generations=1", "--popsize=2", "--rollouts=1", "--workers=1"],
], ids=["evaluate", "train"])
def test_worker_that_fails_to_start_is_one_error_line_with_its_traceback_in_the_log(rigged_dream, tmp_path,
                                                                                    command):
    """CarRacing on a Doom experiment's V and M: the workers fail to build the agent. The user sees one line;
    the worker's traceback is in the experiment's worker_errors.log."""
    exp = _linked_experiment(rigged_dream, tmp_path / "exp")
    args = [sys.executable, "-m", *command, f"--exp_dir={exp}"]
    if command[0] == "controller.evaluate":
        controller = Controller("carracing", "full", z_size=64, hidden_size=16)
        controller.save(tmp_path / "carracing.json", np.zeros(controller.num_params, np.float32))
        args.append(f"--controller_file={tmp_path / 'carracing.json'}")
    environ = {name: value for name, value in os.environ.items() if name != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600, env=environ)
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: a worker failed to start: "), result.stderr[-3000:]
    assert "M takes 1 action values but carracing has 3" in lines[0] and "worker_errors.log" in lines[0]
    log = (exp / "worker_errors.log").read_text()
    assert "Traceback (most recent call last)" in log and "check_compatible" in log

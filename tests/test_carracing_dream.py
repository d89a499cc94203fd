"""CarRacing inside the dream (issue 18): M's reward and done outputs, the CarRacingRNN env and C trained in it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

from common.errors import DataError, UserError
from common.layout import experiment
from common.storage import episode_files, episode_name, read_series, write_npz
from controller.model import Controller
from envs.carracing_dream import CarRacingDreamEnv
from envs.dream import load_dream
from rnn.config import RNNTrainConfig
from rnn.model import MDNRNN, load_rnn, parameter_count
from rnn.train import train_rnn
from run.dream_audit import CARRACING_HOLE_MARGIN
from vae.encode import write_initial_z

REPO = Path(__file__).resolve().parents[1]
Z, HIDDEN = 8, 16


def _run(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600)


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    return lines[0]


def true_reward(action: np.ndarray) -> np.ndarray:
    """The known reward of the synthetic task: gas pays, steering costs (a smooth function of the action)."""
    return (2.0 * action[..., 1] - 0.5 * np.abs(action[..., 0]) - 0.1).astype(np.float32)


def write_carracing_series(folder: Path, episodes: int = 24, seed: int = 0) -> None:
    """CarRacing-shaped series (z 8, action 3) with a known reward and a known end: an episode ends (done, the
    playfield left) at the first step whose steering passes 0.9; z drifts with the steering."""
    rng = np.random.default_rng(seed)
    for e in range(episodes):
        n = int(rng.integers(60, 120))
        action = np.stack([rng.uniform(-1, 1, n), rng.uniform(0, 1, n), rng.uniform(0, 1, n)], 1).astype(np.float32)
        action[:5, 0] = np.clip(action[:5, 0], -0.8, 0.8)  # no episode ends at once
        over = np.flatnonzero(action[:, 0] > 0.9)
        terminated = len(over) > 0
        n = int(over[0]) + 1 if terminated else n
        action = action[:n]
        z = np.zeros((n, Z), np.float32)
        for t in range(1, n):
            z[t] = 0.9 * z[t - 1] + 0.3 * action[t - 1, 0] + 0.05 * rng.normal(size=Z)
        done = np.zeros(n, bool)
        done[-1] = True
        reward = true_reward(action)
        if terminated:
            reward[-1] = -100.0  # CarRacing's penalty for leaving the playfield: the done output's to predict
        write_npz(folder / episode_name(e), mu=z, logvar=np.full_like(z, 2 * np.log(0.05)), action=action,
                  reward=reward, done=done, truncated=np.bool_(not terminated), seed=np.int64(e),
                  env=np.str_("carracing"))


@pytest.fixture(scope="module")
def trained_m(tmp_path_factory) -> Path:
    exp_dir = tmp_path_factory.mktemp("carracing_reward")
    write_carracing_series(experiment(exp_dir).series, episodes=48)
    config = RNNTrainConfig(predict_reward=True, predict_done=True, steps=500, batch_size=8, seq_len=32,
                            hidden=32, learning_rate=3e-3, eval_every=100, checkpoint_every=500, val_episodes=4,
                            seed=0)
    train_rnn(exp_dir, config, verbose=False)
    return exp_dir


def test_reward_and_done_outputs_learn_a_known_function(trained_m, tmp_path):
    """On held-out episodes of the same process, M's reward is the true one within a few percent of its
    variance, and its done logit passes 0 where the playfield is left and rarely elsewhere."""
    rnn = load_rnn(experiment(trained_m).rnn_model)
    assert rnn.predict_reward and rnn.predict_done
    write_carracing_series(tmp_path, episodes=16, seed=99)
    errors, truths, at_ends, elsewhere = [], [], [], []
    for path in episode_files(tmp_path, "series"):
        episode = read_series(path)
        restart = np.zeros((1, len(episode["mu"])), np.float32)
        restart[0, 0] = 1.0
        outputs, _ = rnn({"z": episode["mu"][None], "action": episode["action"][None], "restart": restart})
        kept = ~episode["done"]  # the ending's -100 is the done output's
        errors.append(outputs["reward"].numpy()[0][kept] - episode["reward"][kept])
        truths.append(episode["reward"][kept])
        ended = outputs["done_logit"].numpy()[0] > 0
        if not episode["truncated"]:
            at_ends.append(ended[-1])
        elsewhere.extend(ended[:-1])
    errors, truths = np.concatenate(errors), np.concatenate(truths)
    assert np.mean(errors**2) < 0.1 * truths.var(), (np.mean(errors**2), truths.var())
    assert len(at_ends) >= 8 and np.mean(at_ends) > 0.6 and np.mean(elsewhere) < 0.15, (at_ends, np.mean(elsewhere))
    history = json.loads(experiment(trained_m).rnn_validation.read_text())
    assert history[-1]["reward"] < 0.1 * history[0]["reward"]  # validation reward loss fell tenfold


def test_reward_overestimates_weigh_k_times_in_the_loss(trained_m):
    """The reward loss against a hand computation: squared errors on steps that did not end the episode, those
    where M's reward is above the real one weighted by k (`--reward_overestimate_weight`), k = 1 the plain one."""
    import tensorflow as tf

    from rnn.data import EpisodeBatches, load_series
    from rnn.steps import loss_sums, sample_z

    rnn = load_rnn(experiment(trained_m).rnn_model)
    data = load_series(experiment(trained_m).series)
    batch = {k: tf.constant(v) for k, v in EpisodeBatches(data, range(8), 8, 32, seed=0).batch(0).items()}
    seed = tf.constant([3, 4], tf.int64)
    z = sample_z(batch["mu"], batch["logvar"], seed)  # the draw loss_sums makes with this seed
    outputs, _ = rnn({"z": z[:, :-1], "action": batch["action"], "restart": batch["restart"]})
    difference = outputs["reward"].numpy() - batch["reward"].numpy()
    mask = batch["step_mask"].numpy() * (1.0 - batch["done"].numpy())
    assert 0 < (difference * mask > 0).sum() < mask.sum(), "both signs occur on this batch"
    for k in (1.0, 5.0):
        sums, _ = loss_sums(rnn, batch, seed, reward_overestimate_weight=k)
        weights = np.where(difference > 0, k, 1.0)
        np.testing.assert_allclose(sums["reward"].numpy(), np.sum(difference**2 * weights * mask), rtol=1e-5)
        assert sums["reward_count"].numpy() == mask.sum()


def test_paper_ms_keep_their_sizes_and_a_model_saved_before_reward_loads(tmp_path):
    assert parameter_count(MDNRNN(z_size=32, action_size=3, hidden_size=256)) == 422_368
    assert parameter_count(MDNRNN(z_size=64, action_size=1, hidden_size=512, predict_done=True)) == 1_678_785
    with_reward = MDNRNN(z_size=32, action_size=3, hidden_size=256, predict_reward=True)
    assert parameter_count(with_reward) == 422_368 + 257  # one more head output
    old = MDNRNN(z_size=Z, action_size=3, hidden_size=HIDDEN)
    path = tmp_path / "old.keras"
    old.save(path)
    rewritten = tmp_path / "before.keras"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(rewritten, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "config.json":
                config = json.loads(data)
                del config["config"]["predict_reward"]  # as a model saved before the option existed
                data = json.dumps(config).encode()
            target.writestr(item, data)
    loaded = load_rnn(rewritten)
    assert loaded.predict_reward is False
    for a, b in zip(old.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


def rigged_carracing_rnn() -> MDNRNN:
    """A CarRacing M whose reward depends only on the steering: LSTM unit 0 follows the steering and the reward
    is -3 x its output - 0.1, so steering left pays and steering right costs; z stays near 0."""
    keras.utils.set_random_seed(0)
    rnn = MDNRNN(z_size=Z, action_size=3, hidden_size=HIDDEN, predict_reward=True)
    kernel, recurrent, bias = (w * 0.0 for w in rnn.lstm.get_weights())
    kernel[Z + 0, 2 * HIDDEN] = 3.0  # unit 0's candidate follows the steering (inputs are [z, action])
    bias[0:HIDDEN] = 4.0  # input gates open
    bias[3 * HIDDEN:4 * HIDDEN] = 4.0  # output gates open (forget gates closed: h follows this step's steering)
    rnn.lstm.set_weights([kernel, recurrent, bias])
    head_kernel, head_bias = (w * 0.0 for w in rnn.head.get_weights())
    for dim in range(Z):
        start = dim * 15
        head_bias[start + 10:start + 15] = -3.0  # sharp components at 0
    head_kernel[0, -1] = -3.0
    head_bias[-1] = -0.1
    rnn.head.set_weights([head_kernel, head_bias])
    return rnn


@pytest.fixture(scope="module")
def rigged_world(tmp_path_factory) -> Path:
    exp_dir = tmp_path_factory.mktemp("carracing_rigged")
    layout = experiment(exp_dir)
    write_carracing_series(layout.series, episodes=4)
    write_initial_z(layout.series)
    layout.rnn_model.parent.mkdir(parents=True)
    rigged_carracing_rnn().save(layout.rnn_model)
    return exp_dir


def test_the_carracing_dream_env_passes_gymnasium_checks_and_pays_ms_reward(rigged_world):
    import gymnasium as gym
    from gymnasium.utils.env_checker import check_env

    import envs

    env = gym.make(envs.CARRACING_DREAM_ENV_ID, exp_dir=rigged_world, max_steps=50)
    check_env(env.unwrapped, skip_render_check=True)
    observation, _ = env.reset(seed=1)
    assert observation.shape == (Z + HIDDEN,)
    left = sum(env.step(np.array([-1.0, 0.5, 0.0], np.float32))[1] for _ in range(10))
    env.reset(seed=1)
    right = sum(env.step(np.array([1.0, 0.5, 0.0], np.float32))[1] for _ in range(10))
    assert left > 10 * 1.5 and right < -10 * 1.5  # ~ +2.1 and -2.4 a step
    env.close()


def test_cma_es_in_the_rigged_carracing_dream_learns_to_steer_the_paying_way(rigged_world):
    result = _run("controller.train", f"--exp_dir={rigged_world}", "--env=carracingrnn", "--temperature=1.0",
                  "--popsize=8", "--rollouts=2", "--generations=6", "--eval_every=3", "--eval_rollouts=8",
                  "--max_steps=40", "--sigma=0.3")
    assert result.returncode == 0, result.stderr[-3000:]
    folder = experiment(rigged_world).controller_run("carracingrnn", "full", 1.0)
    controller, params = Controller.load(folder.controller)
    assert controller.env == "carracing" and controller.variant == "full"
    dynamics = load_dream(rigged_world, 1.0, 40, task="carracing")
    learned = dynamics.returns(controller, np.repeat(params[None], 16, 0), np.arange(16)).mean()
    untrained = dynamics.returns(controller, np.zeros((16, controller.num_params)), np.arange(16)).mean()
    assert untrained < 0 and learned > 40 * 1.5, (untrained, learned)  # steering left almost every step
    assert len(json.loads(folder.history.read_text())["generations"]) == 6


def test_carracing_dream_bad_input_is_one_line_and_writes_nothing(rigged_world, trained_m, tmp_path):
    # an M without a reward output
    no_reward = tmp_path / "no_reward"
    experiment(no_reward)
    (no_reward / "series").symlink_to(rigged_world / "series")
    (no_reward / "rnn").mkdir()
    MDNRNN(z_size=Z, action_size=3, hidden_size=HIDDEN).save(no_reward / "rnn" / "rnn.keras")
    assert "no reward output" in _one_error_line(_run("controller.train", f"--exp_dir={no_reward}",
                                                      "--env=carracingrnn"))
    assert not (no_reward / "controller").exists() or not any((no_reward / "controller").iterdir())
    # a Doom M
    doom = tmp_path / "doom"
    experiment(doom)
    (doom / "series").symlink_to(rigged_world / "series")
    (doom / "rnn").mkdir()
    MDNRNN(z_size=Z, action_size=1, hidden_size=HIDDEN, predict_done=True).save(doom / "rnn" / "rnn.keras")
    assert "not CarRacing's 3" in _one_error_line(_run("controller.train", f"--exp_dir={doom}",
                                                       "--env=carracingrnn"))
    # tau <= 0
    assert "--temperature=0" in _one_error_line(_run("controller.train", f"--exp_dir={rigged_world}",
                                                     "--env=carracingrnn", "--temperature=0"))
    with pytest.raises(DataError, match="no reward output"):
        CarRacingDreamEnv(exp_dir=no_reward)


def test_a_reward_output_on_data_whose_reward_is_constant_is_refused(tmp_path):
    from run.benchmark_rnn import write_synthetic_series

    write_synthetic_series(experiment(tmp_path).series, env="doom", episodes=4)  # +1 every step, as Doom's
    with pytest.raises(UserError, match="nothing to predict"):
        train_rnn(tmp_path, RNNTrainConfig(predict_reward=True, steps=1, batch_size=2, seq_len=8, hidden=8,
                                           val_episodes=1), verbose=False)
    assert not experiment(tmp_path).rnn_model.exists()


def test_sigkill_in_the_carracing_dream_and_resume_follow_the_uninterrupted_run(rigged_world, tmp_path):
    from tests.test_controller_train import _assert_same_trajectory, _linked_experiment

    straight = _linked_experiment(rigged_world, tmp_path / "straight")
    killed = _linked_experiment(rigged_world, tmp_path / "killed")
    args = ["--env=carracingrnn", "--temperature=1.0", "--popsize=8", "--rollouts=4", "--generations=6",
            "--eval_every=100", "--eval_rollouts=8", "--seed=9", "--max_steps=150"]
    result = _run("controller.train", f"--exp_dir={straight}", *args)
    assert result.returncode == 0, result.stderr[-2000:]
    process = subprocess.Popen([sys.executable, "-m", "controller.train", f"--exp_dir={killed}", *args,
                                "--generations=100"], cwd=REPO, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run = "controller/carracingrnn_full_t1"
    history = killed / run / "history.json"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if history.exists() and len(json.loads(history.read_text())["generations"]) >= 2:
            break
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    result = _run("controller.train", f"--exp_dir={killed}", *args)
    assert result.returncode == 0, result.stderr[-2000:]
    resumed_at = int(re.search(r"resuming .* at generation (\d+)", result.stdout).group(1))
    assert 1 <= resumed_at - 1 <= 4, "killed after a checkpointed generation, with 2 or more to run after it"
    _assert_same_trajectory(straight / run, killed / run)


def test_carracing_dream_tiny_runs_every_stage_end_to_end(tmp_path):
    """The config in the test suite: real rollouts, V, M with reward and done, C in the dream with a real check
    (its mean kept), one iterative round with the CarRacing audit, real scores, the last round's C fine-tuned for
    one generation in the real game (--real_generations=1, 4 x 1 real episodes), the report."""
    exp = tmp_path / "crd"
    result = subprocess.run([sys.executable, "-m", "run.pipeline", "--config=carracing_dream_tiny",
                             f"--exp_dir={exp}", "--real_generations=1", "--real_popsize=4", "--real_rollouts=1"],
                            cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    layout = experiment(exp)
    rnn = load_rnn(layout.rnn_model)
    assert rnn.predict_reward and rnn.predict_done and rnn.action_size == 3
    run = layout.controller_run("carracingrnn", "z", 1.0)  # the config's C reads z only, as carracing_dream's
    assert Controller.load(run.controller)[0].num_params == 3 * 32 + 3
    history = json.loads(run.history.read_text())
    assert len(history["generations"]) == 2
    assert any("real_mean" in e for e in history["evaluations"])  # the real check of the CMA mean
    assert history["selected"]["generation"] == 2  # --select_by_real_check: the only check's mean is kept
    round_1 = json.loads(layout.round(1).controller_run("carracingrnn", "z", 1.0).history.read_text())
    assert round_1["selected"]["generation"] == 2  # each iterative round's C too
    assert json.loads(run.evaluation("carracing").read_text())["episodes"] == 2
    progress = json.loads(layout.iterate_progress.read_text())
    assert [r["round"] for r in progress["rounds"]] == [0, 1] and progress["rounds"][1]["dream"] is not None
    audit = json.loads((layout.round(1).report / "dream_audit.json").read_text())
    assert audit["env"] == "carracing"
    assert [row["policy"] for row in audit["rows"]] == ["full gas straight", "steer left", "steer right", "brake",
                                                        "random driving", "controller"]
    assert audit["controller_file"] == "controller/carracingrnn_z_t1/controller.json"  # relative to the round's folder
    table = (layout.round(1).report / "dream_audit.md").read_text()
    assert "| policy | dream return | real return | dream - real | |" in table  # returns go negative: no ratio
    for row in audit["rows"]:
        assert row["excess"] == pytest.approx(row["dream_mean"] - row["real_mean"])
        assert row["hole"] == (row["excess"] > CARRACING_HOLE_MARGIN)
        assert f"| {row['excess']:+.0f} |" in table
    assert (layout.round(1).root / audit["controller_file"]).is_file()
    assert "carracingrnn_z_t1" in (layout.report / "README.md").read_text()
    _assert_the_last_rounds_c_is_fine_tuned_and_reported(layout, result.stdout)


def _assert_the_last_rounds_c_is_fine_tuned_and_reported(layout, stdout: str) -> None:
    """The finetune stage fine-tuned round 1's C (no round did: they train in the dream only) for one real
    generation from its CMA mean, scored it on the evaluation's 2 episodes, and the report shows it as the result
    beside the dream-only rows."""
    from controller.es import load_state
    from tests.test_report import scores_problems

    assert "stage 8/9 finetune: started" in stdout and "real fine-tuning: generation 1/1: best " in stdout
    dream = layout.round(1).controller_run("carracingrnn", "z", 1.0)
    real = dream.real_finetune
    assert not layout.controller_run("carracingrnn", "z", 1.0).real_finetune.folder.exists()
    history = json.loads(real.history.read_text())
    assert [len(g["fitness"]) for g in history["generations"]] == [4]
    np.testing.assert_array_equal(load_state(real.es_state).strategy.x0, Controller.load(dream.controller)[1])
    evaluation = json.loads(real.evaluation("carracing").read_text())
    assert evaluation["episodes"] == 2
    scores = json.loads((layout.report / "scores.json").read_text())
    assert scores_problems(scores) == []
    [row] = [row for row in scores["rows"] if "finetune" in row]
    assert row == {"name": "z, tau 1, round 1, dream + 1 real generation", "controller": "z",
                   "temperature": 1.0, "round": 1, "dream": None,
                   "real": {"mean": round(evaluation["mean"], 1), "std": round(evaluation["std"], 1), "episodes": 2},
                   "finetune": {"generations": 1, "episodes": 4 + 2}, "result": True}  # + one evaluation
    dream_only = [r for r in scores["rows"] if "finetune" not in r]
    assert [r["round"] for r in dream_only] == [0, 1] and not any(r["result"] for r in dream_only)
    report = (layout.report / "README.md").read_text()
    assert "| V model only, z input, dream of round 1 + 1 real generation (6 real episodes) | — |" in report
    assert "| V model only, z input, after iterative round 1 (" in report  # the rounds' C is the z-only C
    assert "#### `carracingrnn_z_t1_real`: the dream's C fine-tuned in real CarRacing" in report
    # the same command again skips the stage; another --real_generations runs it again, and only it
    from run.pipeline_config import load_config
    from run.pipeline_stages import PIPELINE, same_settings

    stages = {stage.name: stage for stage in PIPELINE}
    recorded = json.loads(layout.pipeline_record.read_text())["stages"]
    for generations, same in ((1, True), (2, False)):
        config = load_config("carracing_dream_tiny", real_generations=generations, real_popsize=4,
                             real_rollouts=1).resolved()
        assert stages["finetune"].complete(layout, config) is same
        for name in ("controller", "evaluate", "iterate", "finetune"):
            now = stages[name].settings(layout, config)
            assert same_settings(recorded[name]["settings"], now) is (same or name != "finetune"), name

"""run.collect on the real environments: file format, determinism, resume after a kill, bad input."""

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from absl import flags

import envs
from common.errors import DataError, UserError
from common.flags import ConfigFlags
from common.storage import read_rollout
from envs.policies import NEAR_ROW, random_policy_factory, road_centre
from run.collect import CollectConfig, collect_rollouts

REPO = Path(__file__).resolve().parents[1]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "run.collect", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


def test_doom_rollouts_have_the_documented_format(doom_rollouts):
    paths = sorted((doom_rollouts / "rollouts").glob("ep*.npz"))
    assert [p.name for p in paths] == [f"ep{i:06d}.npz" for i in range(6)]
    for path in paths:
        rollout = read_rollout(path)
        steps = len(rollout["reward"])
        assert steps > 100, "Doom episodes of 100 frames or fewer are dropped"
        assert rollout["obs"].shape == (steps, 64, 64, 3)
        assert rollout["action"].shape == (steps, 1) and np.all(np.abs(rollout["action"]) <= 1)
        np.testing.assert_array_equal(rollout["reward"], np.ones(steps, np.float32))
        assert rollout["done"][-1] and not rollout["done"][:-1].any()
        assert str(rollout["env"]) == "doom"
        # The paper's random policy holds an action for 1-10 frames.
        changes = np.flatnonzero(np.diff(rollout["action"][:, 0]) != 0)
        assert np.diff(changes).max() <= 10


def test_same_seed_same_files_whatever_the_worker_count(tmp_path):
    one = collect_rollouts(tmp_path / "one", env="carracing", episodes=3, workers=1, seed=7, max_steps=60,
                           verbose=False)
    two = collect_rollouts(tmp_path / "two", env="carracing", episodes=3, workers=2, seed=7, max_steps=60,
                           verbose=False)
    for a, b in zip(one, two):
        ra, rb = read_rollout(a), read_rollout(b)
        for key in ("obs", "action", "reward", "done", "seed"):
            np.testing.assert_array_equal(ra[key], rb[key])
        assert len(ra["reward"]) == 60 and bool(ra["truncated"])
    assert not np.array_equal(read_rollout(one[0])["obs"], read_rollout(one[1])["obs"])


def test_killed_collection_resumes_without_loss_or_duplicates(tmp_path):
    exp = tmp_path / "exp"
    folder = exp / "rollouts"
    args = ["--env=doom", f"--exp_dir={exp}", "--episodes=14", "--workers=2", "--seed=3",
            "--doom_resolution=320x240"]
    process = subprocess.Popen([sys.executable, "-m", "run.collect", *args], cwd=REPO, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(list(folder.glob("ep*.npz"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # the collector and its workers, mid-episode
    process.wait()
    time.sleep(0.5)
    before = {p.name: _digest(p) for p in folder.glob("ep*.npz")}
    assert 3 <= len(before) < 14, "the kill must land mid-collection"
    for path in folder.glob("ep*.npz"):
        read_rollout(path)  # every file on disk is complete: written atomically
    result = _cli(*args)
    assert result.returncode == 0, result.stderr
    after = {p.name: _digest(p) for p in folder.glob("ep*.npz")}
    assert sorted(after) == [f"ep{i:06d}.npz" for i in range(14)]
    assert all(after[name] == digest for name, digest in before.items()), "finished episodes are kept as they were"
    assert not list(folder.glob(".ep*")), "no temporary files are left behind"
    assert "14/14 episodes" in result.stdout


@pytest.mark.parametrize("flag, message", [("--env=pong", "--env=pong"), ("--episodes=0", "--episodes=0"),
                                           ("--workers=-1", "--workers=-1"), ("--workers=999", "--workers=999"),
                                           ("--policy=brownian", "--policy=brownian")])
def test_bad_flags_give_one_line_and_exit_2(tmp_path, flag, message):
    result = _cli(f"--exp_dir={tmp_path / 'exp'}", "--episodes=1", flag)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_unwritable_exp_dir(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = _cli(f"--exp_dir={blocker / 'exp'}", "--episodes=1")
    assert result.returncode == 2 and "not writable" in result.stderr


def test_other_settings_in_the_same_folder_are_refused_and_nothing_is_lost(tmp_path):
    paths = collect_rollouts(tmp_path, env="carracing", episodes=1, seed=1, max_steps=20, verbose=False)
    digest = _digest(paths[0])
    with pytest.raises(UserError, match="collected with other settings.*seed"):
        collect_rollouts(tmp_path, env="carracing", episodes=2, seed=2, max_steps=20, verbose=False)
    assert _digest(paths[0]) == digest and len(list((tmp_path / "rollouts").glob("ep*.npz"))) == 1


def test_corrupt_or_truncated_file_is_named(tmp_path, doom_rollouts):
    source = (doom_rollouts / "rollouts" / "ep000000.npz").read_bytes()
    truncated = tmp_path / "ep000000.npz"
    truncated.write_bytes(source[: len(source) // 2])
    with pytest.raises(DataError, match=f"{truncated}: corrupt or truncated"):
        read_rollout(truncated)
    wrong = tmp_path / "ep000001.npz"
    np.savez(wrong, obs=np.zeros((5, 32, 32, 3), np.uint8), action=np.zeros((5, 1), np.float32),
             reward=np.zeros(5, np.float32), done=np.zeros(5, bool))
    with pytest.raises(DataError, match=r"ep000001.npz: 'obs' has shape \(5, 32, 32, 3\)"):
        read_rollout(wrong)


def test_2018_random_weights_policy_drives_carracing(tmp_path):
    paths = collect_rollouts(tmp_path, env="carracing", episodes=2, workers=1, seed=4, max_steps=30,
                             policy="random_weights", verbose=False)
    actions = [read_rollout(path)["action"] for path in paths]
    for action in actions:
        assert action.shape == (30, 3)
        assert np.all(action[:, 0] >= -1) and np.all(action[:, 0] <= 1)
        assert np.all(action[:, 1:] >= 0) and np.all(action[:, 1:] <= 1), "gas and brake live in [0, 1]"
    assert not np.allclose(actions[0], actions[1]), "each episode draws its own controller weights"


def _rightward_controller(path: Path):
    """A controller that leans on the rigged M's saturated unit: it moves right (tanh(5 * 0.95)) once h is set."""
    from controller import Controller

    controller = Controller("doom", "full", z_size=64, hidden_size=16)
    params = np.zeros(controller.num_params, np.float32)
    params[64 + 16 + 2] = 5.0
    controller.save(path, params)
    return controller, params


def test_controller_policy_with_exploration_collects_doom(tmp_path, rigged_dream):
    controller_file = tmp_path / "c.json"
    controller, params = _rightward_controller(controller_file)
    settings = dict(env="doom", episodes=2, workers=2, seed=1, max_steps=150, policy="controller", explore=0.2,
                    models_dir=str(rigged_dream), doom_resolution="160x120", verbose=False)
    paths = collect_rollouts(tmp_path / "exp", controller_file=str(controller_file), **settings)
    for path in paths:
        action = read_rollout(path)["action"][:, 0]
        assert np.isclose(action, np.tanh(5.0 * 0.0), atol=1e-6)[0], "the first step: state zero, action 0"
        random_share = np.mean(np.abs(action[1:] - np.tanh(5.0 * 0.95)) > 0.05)
        assert 0.05 < random_share < 0.9, "controller steps with random held actions mixed in"

    # A copied experiment with a copy of the controller resumes (the manifest holds its digest, not its path);
    # another controller in that folder is refused.
    moved = tmp_path / "moved"
    shutil.copytree(tmp_path / "exp", moved / "exp")
    shutil.copy(controller_file, moved / "c.json")
    again = collect_rollouts(moved / "exp", controller_file=str(moved / "c.json"), **settings)
    assert [path.name for path in again] == [path.name for path in paths]
    controller.save(moved / "c.json", params + 1.0)
    with pytest.raises(UserError, match="collected with other settings.*controller_sha256"):
        collect_rollouts(moved / "exp", controller_file=str(moved / "c.json"), **settings)


def test_exploration_in_a_share_of_episodes_leaves_the_others_to_the_controller(tmp_path, rigged_dream):
    controller_file = tmp_path / "c.json"
    _rightward_controller(controller_file)
    settings = dict(env="doom", episodes=8, workers=2, seed=3, max_steps=120, policy="controller", explore=0.3,
                    explore_episodes=0.5, models_dir=str(rigged_dream), doom_resolution="160x120", verbose=False)
    paths = collect_rollouts(tmp_path / "exp", controller_file=str(controller_file), **settings)
    shares = [np.mean(np.abs(read_rollout(path)["action"][1:, 0] - np.tanh(5.0 * 0.95)) > 0.05) for path in paths]
    plain = [share for share in shares if share == 0.0]
    assert 0 < len(plain) < len(paths), f"some episodes explore, the others are C's own play: {shares}"
    assert all(share > 0.05 for share in shares if share > 0.0)
    with pytest.raises(UserError, match="collected with other settings.*explore_episodes"):
        collect_rollouts(tmp_path / "exp", controller_file=str(controller_file), **{**settings,
                                                                                    "explore_episodes": 1.0})
    with pytest.raises(UserError, match=r"--explore_episodes=1.5: must be in \[0, 1\]"):
        collect_rollouts(tmp_path / "other", controller_file=str(controller_file), **{**settings,
                                                                                      "explore_episodes": 1.5})


def test_the_collect_flags_are_the_configs_fields_with_the_readmes_names_and_defaults():
    flag_values = flags.FlagValues()
    ConfigFlags(CollectConfig).define(flag_values)
    flag_values(["collect"])
    defaults = {name: flag_values[name].value for name in ("env", "episodes", "workers", "seed", "max_steps",
                                                           "policy", "doom_resolution")}
    assert defaults == {"env": "doom", "episodes": 10_000, "workers": 1, "seed": 0, "max_steps": None,
                        "policy": None, "doom_resolution": "640x480"}
    flag_values(["collect", "--env=carracing", "--episodes=3", "--policy=random_weights", "--legacy_preprocess"])
    assert ConfigFlags(CollectConfig).parse(flag_values) == CollectConfig(
        env="carracing", episodes=3, policy="random_weights", legacy_preprocess=True)


def _tiles_reached(policy_name: str, seeds: range, steps: int) -> list[int]:
    """Track tiles (positive rewards) a CarRacing policy reaches in `steps` steps from each seed."""
    env = envs.make_env("carracing")
    tiles = []
    for seed in seeds:
        policy = random_policy_factory("carracing", policy_name)(np.random.default_rng(seed))
        frame, _ = env.reset(seed=seed)
        count = 0
        for _ in range(steps):
            frame, reward, terminated, truncated, _ = env.step(policy(frame))
            count += int(reward > 0)
            if terminated or truncated:
                break
        tiles.append(count)
    env.close()
    return tiles


def test_track_follower_drives_along_the_track_where_brownian_driving_wanders():
    """The scripted data driver reads the road from the frame and gets several times further along the track
    than Brownian driving (what M must see to pay a dream's rewards); its road reading finds the road under the
    car at the start of a track."""
    env = envs.make_env("carracing")
    env.reset(seed=3)
    for _ in range(60):  # past the opening zoom, the car still on the start line
        frame, *_ = env.step(np.zeros(3, np.float32))
    env.close()
    assert abs(road_centre(frame, NEAR_ROW) - 32) < 6, "the car starts in the middle of the road"
    assert road_centre(np.zeros_like(frame), NEAR_ROW) is None, "a black frame shows no road"
    follower = _tiles_reached("track_follower", range(2), 300)
    brownian = _tiles_reached("brownian", range(2), 300)
    assert min(follower) > 40, follower
    assert sum(follower) > 3 * sum(brownian), (follower, brownian)

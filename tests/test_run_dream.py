"""run.dream: dream videos (Doom on the rigged M, CarRacing on a tiny untrained V and M), --play headless, and
one-line errors for bad input."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
from PIL import Image

from common.errors import DataError, UserError
from common.storage import read_series
from controller import Controller
from rnn.model import load_rnn
from run.dream import run_dream
from run.dream_config import DreamConfig
from run.dream_play import key_override, play_dream, temperature_change
from run.dream_rollout import dream_rollout
from run.dream_video import make_dream_video
from tests.conftest import make_carracing_world

REPO = Path(__file__).resolve().parents[1]
FRAME = (64 * 4 + 32, 64 * 4, 3)  # 4x enlarged, with the caption strip


def gif_frames(path: Path) -> int:
    with Image.open(path) as image:
        return image.n_frames


@pytest.fixture(scope="module")
def carracing_dream(tmp_path_factory) -> Path:
    """An untrained CarRacing V (z 32), a small M (16 units) and one series file (no initial_z.npz)."""
    return make_carracing_world(tmp_path_factory.mktemp("carracing_dream"), seed=3)


def copy_world(source: Path, target: Path, parts=("vae", "rnn", "series")) -> Path:
    """A private copy of an experiment's V, M and series (the session fixtures may gain controllers)."""
    for part in parts:
        shutil.copytree(source / part, target / part, ignore=shutil.ignore_patterns("ckpt*", "tb*", "logs*"))
    return target


def test_doom_gif_has_one_frame_per_step_and_ends_where_death_passes_one_half(rigged_dream, tmp_path):
    out = tmp_path / "dream.gif"
    # Standing still, the rigged M's death logit follows the sampled z and crosses 0 within tens of steps.
    rollout = make_dream_video(rigged_dream, DreamConfig(env="doom", out=str(out), actions=(0.0,), max_steps=300))
    assert rollout.died and 1 <= rollout.steps < 300
    assert rollout.frames.shape == (rollout.steps, 64, 64, 3) and rollout.latents.shape == (rollout.steps, 64)
    assert rollout.death_probabilities[-1] > 0.5 and np.all(rollout.death_probabilities[:-1] <= 0.5)
    assert rollout.temperature == 1.15 and np.all(rollout.actions == 0.0)
    assert gif_frames(out) == rollout.steps
    assert imageio.mimread(out)[0].shape[:2] == FRAME[:2]


def test_experiments_controller_drives_the_doom_dream_into_an_mp4(rigged_dream, tmp_path):
    exp = copy_world(rigged_dream, tmp_path / "exp")
    controller = Controller("doom", "full", z_size=64, hidden_size=16)
    params = np.zeros(controller.num_params, np.float32)
    params[64 + 2] = params[64 + 16 + 2] = 50.0  # [z, c, h]: once LSTM unit 2 saturates, always move right
    controller_file = exp / "controller" / "doomrnn_full_t1.15" / "controller.json"
    controller.save(controller_file, params)
    out = tmp_path / "dream.mp4"
    rollout = make_dream_video(exp, DreamConfig(env="doom", out=str(out), max_steps=60, fps=20))
    assert rollout.driver == f"controller {controller_file}"
    assert rollout.actions[0, 0] == 0.0 and np.all(rollout.actions[1:, 0] > 0.99)  # state zero at step 0
    assert not rollout.died and rollout.steps == 60  # moving right is safe in the rigged dream
    reader = imageio.get_reader(out)
    try:
        assert reader.count_frames() == 60 and reader.get_meta_data()["fps"] == 20
        assert reader.get_data(0).shape == FRAME
    finally:
        reader.close()


def test_temperature_scales_the_dreamt_noise_by_its_square_root(rigged_dream):
    spreads = {}
    for temperature in (0.1, 2.0):
        rollout = dream_rollout(rigged_dream, DreamConfig(env="doom", actions=(1.0,), max_steps=30,
                                                          temperature=temperature))
        assert rollout.steps == 30
        # Dimensions 1..63 of the rigged M: one component, mu 0, log sigma -3, so z' = e^-3 sqrt(tau) eps.
        spreads[temperature] = rollout.latents[1:, 1:].std()
    assert spreads[2.0] > 3 * spreads[0.1]
    np.testing.assert_allclose([spreads[0.1], spreads[2.0]], np.exp(-3.0) * np.sqrt([0.1, 2.0]), rtol=0.1)


def test_carracing_gif_with_fixed_actions_starts_from_a_real_first_frame(carracing_dream, tmp_path):
    out = tmp_path / "car.gif"
    rollout = make_dream_video(carracing_dream, DreamConfig(env="carracing", out=str(out), actions=(0.0, 1.0, 0.0),
                                                            max_steps=10))
    assert rollout.steps == 10 and not rollout.died and rollout.temperature == 1.0
    np.testing.assert_array_equal(rollout.actions, np.tile([0.0, 1.0, 0.0], (10, 1)))
    first = read_series(carracing_dream / "series" / "ep000000.npz")
    assert np.all(np.abs(rollout.latents[0] - first["mu"][0]) < 6 * np.exp(-2.0))  # z_0 ~ N(mu_0, e^-4)
    assert gif_frames(out) == 10
    assert imageio.mimread(out)[0].shape[:2] == FRAME[:2]


def test_carracing_controller_acts_on_z_and_ms_h(carracing_dream, tmp_path):
    controller = Controller("carracing", "full", z_size=32, hidden_size=16)
    params = np.random.default_rng(1).normal(0, 0.5, controller.num_params).astype(np.float32)
    controller_file = tmp_path / "controller.json"
    controller.save(controller_file, params)
    rollout = dream_rollout(carracing_dream, DreamConfig(env="carracing", max_steps=8,
                                                         controller_file=str(controller_file)))
    rnn = load_rnn(carracing_dream / "rnn" / "rnn.keras")
    state = rnn.initial_state(1)
    for z, action in zip(rollout.latents, rollout.actions):  # replay: a_t = C(z_t, h_t), h_{t+1} = M(z_t, a_t, h_t)
        expected = controller.env_action(controller.act(params, controller.features(z[None], *state)))[0]
        np.testing.assert_allclose(action, expected, atol=1e-5)
        state = rnn.next_state(z[None], action[None], state)
    assert rollout.steps == 8 and len(np.unique(rollout.actions[:, 0])) > 1


def test_play_runs_headless_and_records_what_it_showed(rigged_dream, tmp_path):
    out = tmp_path / "play.gif"
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy", "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-m", "run.dream", f"--exp_dir={rigged_dream}", "--env=doom",
                             "--play", "--play_frames=5", "--actions=1", f"--out={out}"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "dream: played 5 frames of 1 dream(s), tau 1.15" in result.stdout
    assert gif_frames(out) == 5


def test_play_in_process_for_carracing(carracing_dream):
    result = play_dream(carracing_dream, DreamConfig(env="carracing", play=True, play_frames=3, fps=100))
    assert (result.frames, result.dreams, result.temperature) == (3, 1, 1.0)


def test_play_keys_override_the_driver_change_tau_and_restart(rigged_dream, monkeypatch):
    import collections

    import pygame

    def press(key):
        return pygame.event.Event(pygame.KEYDOWN, key=key)

    script = iter([[press(pygame.K_EQUALS), press(pygame.K_EQUALS)], [press(pygame.K_r)]])
    monkeypatch.setattr(pygame.event, "get", lambda: next(script, []))
    monkeypatch.setattr(pygame.key, "get_pressed", lambda: collections.defaultdict(bool, {pygame.K_LEFT: True}))
    # The fixed action 1 keeps the rigged dream alive; holding left (-1) kills it on every step, so each frame
    # ends a dream: 1 + 4 deaths + 1 restart (r) = 6 dreams in 4 frames.
    result = play_dream(rigged_dream, DreamConfig(env="doom", actions=(1.0,), play=True, play_frames=4, fps=100))
    assert (result.frames, result.dreams, result.temperature) == (4, 6, 1.25)


def test_keys_override_the_driver_and_change_tau():
    import pygame

    mask, value = key_override("doom", {pygame.K_LEFT})
    assert mask.tolist() == [1.0] and value.tolist() == [-1.0]
    mask, value = key_override("doom", {pygame.K_LEFT, pygame.K_RIGHT})
    assert mask.tolist() == [1.0] and value.tolist() == [0.0]
    mask, value = key_override("carracing", {pygame.K_RIGHT, pygame.K_UP})
    assert mask.tolist() == [1.0, 1.0, 0.0] and value.tolist() == [1.0, 1.0, 0.0]
    assert key_override("carracing", set())[0].tolist() == [0.0, 0.0, 0.0]
    assert temperature_change("doom", pygame.K_UP) == temperature_change("carracing", pygame.K_EQUALS) > 0
    assert temperature_change("carracing", pygame.K_UP) == 0.0 and temperature_change("doom", pygame.K_MINUS) < 0


def test_bad_input_is_one_error_line_with_exit_code_2(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-m", "run.dream", f"--exp_dir={tmp_path}", "--env=pong",
                             f"--out={tmp_path / 'x.gif'}"], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: --env=pong: unknown environment; choose from doom, carracing"]


def test_missing_v_from_the_command_line(carracing_dream, tmp_path):
    exp = copy_world(carracing_dream, tmp_path / "exp", parts=("rnn", "series"))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-m", "run.dream", f"--exp_dir={exp}", "--env=carracing",
                             f"--out={tmp_path / 'x.gif'}"], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "vae.keras: file not found" in errors[0], result.stderr[-2000:]
    assert not (tmp_path / "x.gif").exists()


@pytest.mark.parametrize("change, message", [
    (dict(out="dream.avi"), "must end in .gif or .mp4"),
    (dict(out=None), "nothing to do: pass --out"),
    (dict(actions=(0.0, 1.0)), "doom takes 1 value"),
    (dict(actions=(2.0,)), r"a=2.0 is outside \[-1, 1\]"),
    (dict(max_steps=2101), "between 1 and 2100"),
    (dict(temperature=-1.0), "between 0 and 3"),
    (dict(seed=-1), "--seed=-1"),
    (dict(actions=(1.0,), controller_file="c.json"), "pass one"),
])
def test_bad_flags_raise_user_errors(rigged_dream, change, message):
    config = DreamConfig(**{"env": "doom", "out": "dream.gif", **change})
    with pytest.raises(UserError, match=message):
        run_dream(rigged_dream, config)


def test_bad_files_raise_one_line_data_errors(rigged_dream, carracing_dream, tmp_path):
    car_controller = tmp_path / "car.json"
    Controller("carracing", "z").save(car_controller, np.zeros(99, np.float32))
    with pytest.raises(UserError, match="a carracing controller cannot drive the doom dream"):
        dream_rollout(rigged_dream, DreamConfig(env="doom", controller_file=str(car_controller)))
    with pytest.raises(DataError, match="controller file not found"):
        dream_rollout(rigged_dream, DreamConfig(env="doom", controller_file=str(tmp_path / "no.json")))
    with pytest.raises(DataError, match="initial_z.npz: file not found"):  # the Doom dream needs it
        dream_rollout(copy_world(carracing_dream, tmp_path / "car"), DreamConfig(env="doom"))
    with pytest.raises(DataError, match="not a carracing M"):
        dream_rollout(rigged_dream, DreamConfig(env="carracing"))
    with pytest.raises(UserError, match="no such experiment folder"):
        dream_rollout(tmp_path / "absent", DreamConfig(env="doom"))
    empty = tmp_path / "empty"
    (empty / "series").mkdir(parents=True)
    with pytest.raises(DataError, match="no series files"):
        dream_rollout(empty, DreamConfig(env="carracing"))

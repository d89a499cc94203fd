"""The real environments at 64x64: shapes, ranges, the Doom action thirds, seeding, gymnasium's checker."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs.carracing import CarRacing64Env
from envs.carracing_render import make_fast_carracing
from envs.doom import LEFT, RIGHT, STAY, TakeCover64Env, action_to_move
from envs.frames import legacy_carracing_frame, resize_frame


@pytest.mark.parametrize("name", ["doom", "carracing"])
def test_frames_are_64x64_uint8_images(name):
    env = gym.make(envs.ENV_IDS[name])
    observation, _ = env.reset(seed=1)
    env.action_space.seed(1)
    frames = [observation]
    for _ in range(60):
        observation, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        frames.append(observation)
        assert np.isfinite(reward)
        if terminated or truncated:
            break
    frames = np.stack(frames)
    assert frames.shape[1:] == (64, 64, 3) and frames.dtype == np.uint8
    assert frames.std() > 5, "frames should show a scene, not a flat colour"
    env.close()


@pytest.mark.parametrize("name", ["doom", "carracing"])
def test_passes_gymnasium_env_checker(name):
    env = gym.make(envs.ENV_IDS[name]).unwrapped
    check_env(env, skip_render_check=True)
    env.close()


@pytest.mark.parametrize("value, move", [(-1.0, LEFT), (-0.34, LEFT), (-0.33, STAY), (0.0, STAY),
                                         (0.33, STAY), (0.34, RIGHT), (1.0, RIGHT)])
def test_doom_action_thirds(value, move):
    assert action_to_move(value) == move


def test_doom_reward_and_crop():
    env = TakeCover64Env()
    observation, _ = env.reset(seed=0)
    _, reward, _, _, info = env.step(np.array([0.9], np.float32))
    assert reward == 1.0 and info["move"] == RIGHT
    screen = env.render()
    assert screen.shape == (480, 640, 3)
    # The kept view is rows 0-399: the status bar (rows 400-479) must not leak into the frame.
    np.testing.assert_array_equal(env._observe(), resize_frame(screen[:400]))
    env.close()


def test_doom_same_seed_same_episode():
    def play(seed):
        env = TakeCover64Env(resolution="320x240")
        frames = [env.reset(seed=seed)[0]]
        for step in range(50):
            frames.append(env.step(np.array([np.sin(step / 5.0)], np.float32))[0])
        env.close()
        return np.stack(frames)

    first, again, other = play(3), play(3), play(4)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_doom_step_cap_truncates():
    env = TakeCover64Env(resolution="160x120", max_steps=30)
    env.reset(seed=0)
    for step in range(1, 31):
        _, _, terminated, truncated, _ = env.step(np.zeros(1, np.float32))
        if terminated:
            pytest.skip("died before the cap")
    assert truncated and step == 30
    env.close()


def test_carracing_keeps_rows_above_dashboard():
    env = CarRacing64Env()
    observation, _ = env.reset(seed=0)
    raw = env.unwrapped.state  # the 96x96 frame the observation was made from
    assert raw.shape == (96, 96, 3)
    np.testing.assert_array_equal(observation, resize_frame(raw[:84]))
    assert not np.array_equal(observation, resize_frame(raw)), "the dashboard rows must be dropped"
    env.close()


def test_legacy_preprocess_reproduces_2018_byte_cast():
    rng = np.random.default_rng(0)
    frame = rng.integers(40, 200, (84, 96, 3), dtype=np.uint8)
    legacy = legacy_carracing_frame(frame)
    assert legacy.shape == (64, 64, 3) and legacy.dtype == np.uint8
    # Per-frame min-max rescale to 0..255, then v -> v - 1 with 0 -> 255: the minimum becomes 255, the maximum 254.
    assert set(np.unique(legacy)) >= {255, 254}
    reference = resize_frame(frame).astype(float)
    order = np.argsort(reference.ravel())
    shifted = (legacy.astype(int).ravel() + 1) % 256  # undo the byte cast
    assert np.all(np.diff(shifted[order]) >= -1), "rescaling must keep the pixel order"
    env = envs.make_env("carracing", legacy_preprocess=True)
    observation, _ = env.reset(seed=0)
    np.testing.assert_array_equal(observation, legacy_carracing_frame(env.unwrapped.state[:84]))
    env.close()


@pytest.mark.parametrize("seed", [0, 7])
def test_fast_road_renderer_gives_the_stock_carracing_pixels(seed):
    """Whole episodes of random driving (the opening zoom, off-road, visited tiles changing colour) give the
    same frames, rewards and ends as gymnasium's own CarRacing-v3."""
    stock, fast = gym.make("CarRacing-v3"), CarRacing64Env().env
    assert type(fast.unwrapped) is not type(stock.unwrapped)
    np.testing.assert_array_equal(stock.reset(seed=seed)[0], fast.reset(seed=seed)[0])
    rng = np.random.default_rng(seed)
    for step in range(1000):
        action = np.array([rng.uniform(-1, 1), rng.uniform(0, 1), rng.uniform(0, 0.2)], np.float32)
        expected, got = stock.step(action), fast.step(action)
        np.testing.assert_array_equal(expected[0], got[0], err_msg=f"frame {step}")
        assert expected[1:4] == got[1:4], f"step {step}"
        if expected[2] or expected[3]:
            break
    assert step > 300
    stock.close()
    fast.close()


def test_fast_renderer_gives_the_stock_video_frames():
    """The `rgb_array` frames videos are made of (the score text drawn with the cached font) are the stock's."""
    stock = gym.make("CarRacing-v3", render_mode="rgb_array")
    fast = make_fast_carracing(render_mode="rgb_array")
    stock.reset(seed=3)
    fast.reset(seed=3)
    for step in range(120):
        action = np.array([0.3 * np.sin(step / 9), 0.8, 0.0], np.float32)
        stock.step(action)
        fast.step(action)
        if step % 30 == 29:  # the score text changes as tiles are visited and frames pass
            np.testing.assert_array_equal(stock.render(), fast.render(), err_msg=f"step {step}")
    stock.close()
    fast.close()

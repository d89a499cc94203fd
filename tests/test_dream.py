"""DoomRNN: the gymnasium env, the batched vector env and the fused evaluator, on a rigged and a trained M."""

import gymnasium as gym
import keras
import numpy as np
import pytest
import tensorflow as tf
from gymnasium.utils.env_checker import check_env
from scipy import stats

import envs
from controller import Controller
from envs.dream import DoomDreamEnv, DoomDreamVectorEnv, DreamDynamics, load_initial_z
from rnn.model import MDNRNN
from tests.conftest import rigged_doom_rnn


@pytest.fixture(scope="module")
def dynamics(doom_series):
    mu, logvar = load_initial_z(doom_series / "series" / "initial_z.npz")
    return DreamDynamics(rigged_doom_rnn(), mu, logvar, temperature=1.15)


def test_registered_env_passes_the_checker(rigged_dream):
    env = gym.make(envs.DREAM_ENV_ID, exp_dir=str(rigged_dream), temperature=1.15)
    assert env.observation_space.shape == (64 + 16 + 16,)
    check_env(env.unwrapped, skip_render_check=True)
    observation, _ = env.reset(seed=0)
    observation, reward, terminated, truncated, _ = env.step(np.array([1.0], np.float32))
    assert reward == 1.0 and observation.shape == (96,)


def test_done_exactly_where_the_death_probability_passes_one_half(dynamics):
    # Action -1 drives unit 0 negative: death logit ~ +12 - 3.5 > 0; action +1: ~ -15 < 0.
    result = dynamics.step(dynamics.reset([0, 1]), np.array([[-1.0], [1.0]], np.float32), (0, 0))
    logit = dynamics.rnn.split_head(dynamics.rnn.head(result.state.h))[1].numpy()
    np.testing.assert_array_equal(result.death_logit.numpy(), logit)
    np.testing.assert_array_equal(result.died.numpy(), logit > 0)
    np.testing.assert_array_equal(result.died.numpy(), [True, False])
    np.testing.assert_array_equal(result.state.steps.numpy(), [1, 1])


def test_an_m_without_the_death_head_dreams_to_the_cap():
    rnn = MDNRNN(z_size=8, action_size=3, hidden_size=16, num_mixtures=5, predict_done=False)
    dream = DreamDynamics(rnn, max_steps=3)
    state = dream.start(np.zeros((2, 8), np.float32))
    for step in range(1, 4):
        result = dream.step(state, np.zeros((2, 3), np.float32), (0, step))
        state = result.state
        assert not result.died.numpy().any() and np.all(np.isneginf(result.death_logit.numpy()))
        assert result.truncated.numpy().tolist() == [step == 3] * 2


def test_dreams_end_at_the_2100_step_cap(dynamics):
    controller = Controller("doom", "full", z_size=64, hidden_size=16)
    params = np.zeros((16, controller.num_params), np.float32)
    params[:, :64] = 0.5  # the first move follows the sign of z_0 ...
    params[:, 64 + 16] = 50.0  # ... then h_0 takes over: once moving right, keep moving right
    returns = dynamics.returns(controller, params, np.arange(16))
    assert np.all(returns <= 2100)
    assert returns.max() == 2100, returns
    vector = DoomDreamVectorEnv(2, dynamics=dynamics)
    vector.reset(seed=0)
    for step in range(1, 2101):
        _, _, terminated, truncated, _ = vector.step(np.ones((2, 1), np.float32))
        assert not terminated.any()
        assert truncated.all() == (step == 2100)


def test_temperature_widens_the_next_z_and_a_tiny_one_follows_the_likeliest_mean(dynamics):
    rnn = dynamics.rnn
    h = tf.random.stateless_normal([1, 16], [1, 2])
    mixture = rnn.split_head(rnn.head(h))[0]
    mixture = type(mixture)(tf.constant([[[2.0, 0.0, -1.0, -1.0, -1.0]] * 64]),
                            tf.constant([[[1.5, -2.0, 0.0, 3.0, -3.0]] * 64]), tf.fill([1, 64, 5], -1.0))
    spreads = {}
    for temperature in (0.5, 1.0, 2.0):
        draws = np.stack([rnn.sample(mixture, temperature, [s, 7]).numpy()[0] for s in range(200)])
        spreads[temperature] = draws.std()
    assert spreads[0.5] < spreads[1.0] < spreads[2.0]
    tiny = np.stack([rnn.sample(mixture, 1e-6, [s, 3]).numpy()[0] for s in range(20)])
    np.testing.assert_allclose(tiny, 1.5, atol=1e-2)


def test_vector_env_and_single_env_agree_in_distribution(dynamics):
    still = np.zeros((1,), np.float32)  # stand still: p(death) ~ 3 % a step, survival ~ geometric
    single = DoomDreamEnv(dynamics=dynamics)
    single_times = []
    for episode in range(150):
        single.reset(seed=episode)
        for steps in range(1, 2101):
            _, _, terminated, truncated, _ = single.step(still)
            if terminated or truncated:
                break
        single_times.append(steps)
    vector = DoomDreamVectorEnv(150, dynamics=dynamics)
    vector.reset(seed=123)
    vector_times = np.zeros(150, int)
    alive = np.ones(150, bool)
    for steps in range(1, 2101):
        _, rewards, terminated, truncated, _ = vector.step(np.zeros((150, 1), np.float32))
        ended = (terminated | truncated) & alive
        vector_times[ended] = steps
        alive &= ~ended
        if not alive.any():
            break
    fused = dynamics.returns(Controller("doom", "full", 64, 16), np.zeros((150, 1 * (64 + 32)), np.float32),
                             np.arange(150))
    assert 10 < np.mean(single_times) < 100, "standing still should die within tens of steps"
    assert stats.ks_2samp(single_times, vector_times).pvalue > 0.01
    assert stats.ks_2samp(single_times, fused).pvalue > 0.01


def test_vector_env_autoresets_finished_dreams(dynamics):
    vector = DoomDreamVectorEnv(4, dynamics=dynamics)
    vector.reset(seed=0)
    _, _, terminated, _, _ = vector.step(np.full((4, 1), -1.0, np.float32))  # everyone dies at once
    assert terminated.all()
    observation, rewards, terminated, _, _ = vector.step(np.zeros((4, 1), np.float32))
    assert not terminated.any() and np.all(rewards == 0), "the step after a death is the reset step"
    np.testing.assert_array_equal(observation[:, 64:], 0.0)  # a new dream starts from the zero state


def test_bfloat16_dream_matches_the_float32_dream(dynamics):
    fast = DreamDynamics(dynamics.rnn, dynamics.initial_mu, dynamics.initial_logvar, temperature=1.15,
                         bfloat16=True)
    actions = np.array([[-1.0], [1.0]], np.float32)
    exact = dynamics.step(dynamics.reset([0, 1]), actions, (0, 0))
    rough = fast.step(fast.reset([0, 1]), actions, (0, 0))
    np.testing.assert_allclose(rough.state.h.numpy(), exact.state.h.numpy(), atol=2e-2)  # h after one step
    np.testing.assert_array_equal(rough.died.numpy(), exact.died.numpy())  # the same deaths
    controller = Controller("doom", "full", 64, 16)
    still = np.zeros((150, controller.num_params), np.float32)
    fast_returns = fast.returns(controller, still, np.arange(150))  # batches padded to 192, then fewer rows
    assert fast_returns.shape == (150,) and (fast_returns >= 1).all(), "every dream, and only those, has a return"
    assert stats.ks_2samp(fast_returns, dynamics.returns(controller, still, np.arange(150))).pvalue > 0.01


@pytest.mark.parametrize("cell, predict_done, predict_reward", [("lstm", True, False), ("gru", True, False),
                                                                ("lstm", False, True)])
def test_bfloat16_step_matches_the_float32_step_for_every_paper_m(cell, predict_done, predict_reward):
    """The fast path (stacked bfloat16 LSTM matmul or the GRU's bfloat16 recurrent one, XLA-fused gates and head)
    draws the float32 step's noise: over three steps from the same state, the same z, h, deaths and rewards
    within bfloat16's precision."""
    keras.utils.set_random_seed(3)
    rnn = MDNRNN(z_size=8, action_size=2, hidden_size=32, num_mixtures=1, predict_done=predict_done, cell=cell,
                 predict_reward=predict_reward)
    rnn.build()
    start = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)
    exact = DreamDynamics(rnn, temperature=1.0, max_steps=100)
    fast = DreamDynamics(rnn, temperature=1.0, max_steps=100, bfloat16=True)
    state_exact, state_fast = exact.start(start), fast.start(start)
    actions = np.random.default_rng(1).uniform(-1, 1, (5, 2)).astype(np.float32)
    for t in range(3):
        step_exact, step_fast = exact.step(state_exact, actions, (7, t)), fast.step(state_fast, actions, (7, t))
        for got, want in ((step_fast.state.h, step_exact.state.h), (step_fast.state.z, step_exact.state.z),
                          (step_fast.reward, step_exact.reward)):
            np.testing.assert_allclose(got.numpy(), want.numpy(), atol=5e-2, rtol=5e-2)
        np.testing.assert_array_equal(step_fast.died.numpy(), step_exact.died.numpy())
        state_exact, state_fast = step_exact.state, step_fast.state

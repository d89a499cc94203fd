"""The agent in the real games: one compiled graph plays an episode alone or several in lockstep, each row its
own C, seed and M state."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import envs
from controller import Controller
from controller.agent import Agent, play_episode, play_episodes
from rnn.model import MDNRNN
from vae import ConvVAE

SIZES = {"carracing": dict(z_size=32, hidden=256, actions=3, done=False),
         "doom": dict(z_size=64, hidden=512, actions=1, done=True)}


def _agent(env_name: str) -> Agent:
    sizes = SIZES[env_name]
    keras.utils.set_random_seed(0)
    rnn = MDNRNN(z_size=sizes["z_size"], action_size=sizes["actions"], hidden_size=sizes["hidden"], num_mixtures=5,
                 predict_done=sizes["done"])
    return Agent(ConvVAE(z_size=sizes["z_size"]), rnn, Controller(env_name, "full"))


def _tasks(agent: Agent, count: int) -> list[tuple[np.ndarray, int]]:
    rng = np.random.default_rng(1)
    return [(rng.normal(0, 0.5, agent.controller.num_params).astype(np.float32), seed) for seed in range(count)]


@pytest.mark.parametrize("env_name", ["carracing", "doom"])
def test_lockstep_episodes_are_the_episodes_played_alone(env_name):
    """Five episodes (each its own C and seed) on three environments, so two of them take a second episode (in
    Doom mid-way, while the others play on; its M zeroes the state at the restart) and one idles at the end.
    On one environment the totals are `play_episode`'s to the bit; on three, a row's floats differ from batch 1's
    in their last bits only (matrix kernels sum in a shape-dependent order), so the totals agree to 1e-3, and
    twice the same chunk gives the same totals."""
    agent = _agent(env_name)
    tasks = _tasks(agent, 5)
    environments = [envs.make_env(env_name) for _ in range(3)]
    alone = [play_episode(environments[0], agent, params, seed, 300) for params, seed in tasks]
    totals = [total for total, _ in alone]
    assert play_episodes(environments[:1], agent, tasks, 300) == totals
    lockstep = play_episodes(environments, agent, tasks, 300)
    np.testing.assert_allclose(lockstep, totals, rtol=0, atol=1e-3)
    assert play_episodes(environments, agent, tasks, 300) == lockstep
    assert len({round(total, 3) for total in totals}) > 1  # the Cs drive differently: agreement is no coincidence
    if env_name == "doom":
        assert len({steps for _, steps in alone}) > 1  # deaths at different steps: environments restart mid-way
    for environment in environments:
        environment.close()


def test_each_row_of_a_batch_is_its_own_agent():
    """One step of 3 rows (row 1 starts its episode, row 2's action is overridden) against each row alone:
    same actions, M states and z up to float rounding."""
    agent = _agent("doom")
    rng = np.random.default_rng(2)
    hidden = agent.rnn.hidden_size
    frames = rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    state = tuple(rng.normal(0, 0.5, (3, hidden)).astype(np.float32) for _ in range(2))
    params = np.stack([params for params, _ in _tasks(agent, 3)])
    first = np.array([0.0, 1.0, 0.0], np.float32)
    seeds = np.array([[5, 17], [6, 0], [7, 3]], np.int32)
    override = np.array([[0.0], [0.0], [-0.9]], np.float32)
    actions, (h, c), z = agent.act_batch(frames, state, params, first, seeds, override, np.array([False, False, True]))
    assert actions[2, 0] == np.float32(-0.9)
    for row in range(3):
        row_state = (state[0][row:row + 1], state[1][row:row + 1])
        alone = agent.act(frames[row], row_state, params[row], bool(first[row]), tuple(seeds[row]),
                          override[row] if row == 2 else None)
        np.testing.assert_allclose(actions[row], alone[0], atol=1e-5)
        np.testing.assert_allclose(h[row], alone[1][0][0], atol=1e-5)
        np.testing.assert_allclose(c[row], alone[1][1][0], atol=1e-5)
        np.testing.assert_allclose(z[row], alone[2], atol=1e-5)
    zero_state = agent.act(frames[1], agent.initial_state(), params[1], True, tuple(seeds[1]))
    np.testing.assert_allclose(h[1], zero_state[1][0][0], atol=1e-5)  # row 1's given state was zeroed

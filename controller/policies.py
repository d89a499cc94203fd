"""Exploration policies for collecting data without a trained controller.

A policy factory is made once per worker (`make_policy_factory`); it gives a fresh policy per episode from that
episode's random generator, so an episode is reproducible from its seed alone. A policy maps the current
64x64x3 frame to an action (float32 vector).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

Policy = Callable[[np.ndarray], np.ndarray]
PolicyFactory = Callable[[np.random.Generator], Policy]


def held_uniform_policy(rng: np.random.Generator, action_size: int = 1, min_hold: int = 1,
                        max_hold: int = 10) -> Policy:
    """The paper's Doom random policy: a uniform action in [-1, 1] held for 1-10 frames, then redrawn."""
    state = {"action": np.zeros(action_size, np.float32), "left": 0}

    def act(frame: np.ndarray) -> np.ndarray:
        if state["left"] == 0:
            state["action"] = rng.uniform(-1.0, 1.0, action_size).astype(np.float32)
            state["left"] = int(rng.integers(min_hold, max_hold + 1))
        state["left"] -= 1
        return state["action"].copy()

    return act


def constant_policy(value: float, rng: np.random.Generator | None = None, action_size: int = 1) -> Policy:
    """One action for the whole episode: the dream audit's "always left/right" and "stand still" probes, and the
    iterative procedure's real episodes of a policy the audit flagged as a hole in M."""
    action = np.full(action_size, value, np.float32)
    return lambda frame: action.copy()


def brownian_driving_policy(rng: np.random.Generator, steer_step: float = 0.1) -> Policy:
    """A CarRacing exploration policy that needs no model: steering is a random walk in [-1, 1] (step
    N(0, steer_step)), gas is a level in [0.3, 1] redrawn every 10-50 frames, and 5 % of frames start a short
    brake of 0.2-0.8 for 1-10 frames. It drives off and back onto the track often, which is what V needs to see.
    """
    state = {"steer": 0.0, "gas": 0.6, "gas_left": 0, "brake": 0.0, "brake_left": 0}

    def act(frame: np.ndarray) -> np.ndarray:
        state["steer"] = float(np.clip(state["steer"] + rng.normal(0.0, steer_step), -1.0, 1.0))
        if state["gas_left"] == 0:
            state["gas"], state["gas_left"] = float(rng.uniform(0.3, 1.0)), int(rng.integers(10, 51))
        state["gas_left"] -= 1
        if state["brake_left"] == 0 and rng.random() < 0.05:
            state["brake"], state["brake_left"] = float(rng.uniform(0.2, 0.8)), int(rng.integers(1, 11))
        braking = state["brake_left"] > 0
        state["brake_left"] = max(0, state["brake_left"] - 1)
        return np.array([state["steer"], 0.0 if braking else state["gas"],
                         state["brake"] if braking else 0.0], np.float32)

    return act


def agent_policy(agent, params: np.ndarray, rng: np.random.Generator, explore: float = 0.0,
                 explore_episodes: float = 1.0) -> Policy:
    """V + M + C acting on frames; with probability `explore` a step starts a random held action (1-10 frames,
    uniform in the action space) instead, in a share `explore_episodes` of the episodes (the others are C's own
    play to the end, so M also sees where C's habits lead). M always advances with the action actually taken."""
    import tensorflow as tf

    episode_seed = int(rng.integers(2**31 - 1))
    if explore_episodes < 1.0 and rng.random() >= explore_episodes:
        explore = 0.0
    params = tf.constant(np.asarray(params, np.float32))  # once an episode, not once a frame
    state = {"agent": agent.initial_state(), "t": 0, "random": None, "left": 0}
    random_actions = held_uniform_policy(rng, agent.controller.action_size)
    low = np.array([-1.0, 0.0, 0.0], np.float32) if agent.controller.env == "carracing" else None

    def act(frame: np.ndarray) -> np.ndarray:
        override = None
        if state["left"] == 0 and explore > 0 and rng.random() < explore:
            state["left"] = int(rng.integers(1, 11))
            state["random"] = random_actions(frame)
            if low is not None:  # CarRacing: gas and brake live in [0, 1]
                state["random"] = np.maximum(state["random"], low)
        if state["left"] > 0:
            override, state["left"] = state["random"], state["left"] - 1
        action, state["agent"], _ = agent.act(frame, state["agent"], params, state["t"] == 0,
                                              (episode_seed, state["t"]), override=override)
        state["t"] += 1
        return action

    return act


def random_weights_factory(env: str, seed: int = 0) -> PolicyFactory:
    """The 2018 CarRacing data policy: untrained V and M (seeded, the same in every worker) read by a controller
    whose weights are drawn per episode from a standard Cauchy distribution scaled by U(0, 0.01)."""
    import keras

    from controller import Controller
    from controller.agent import Agent
    from rnn.model import MDNRNN
    from vae import ConvVAE

    controller = Controller(env, "full")
    keras.utils.set_random_seed(seed)
    agent = Agent(ConvVAE(z_size=controller.z_size),
                  MDNRNN(z_size=controller.z_size, action_size=controller.action_size,
                         hidden_size=controller.hidden_size, num_mixtures=5, predict_done=env == "doom"),
                  controller)

    def factory(rng: np.random.Generator) -> Policy:
        params = (rng.standard_cauchy(controller.num_params) * rng.uniform(0.0, 0.01)).astype(np.float32)
        return agent_policy(agent, params, rng)

    return factory


def controller_factory(env: str, exp_dir: str, controller_file: str, explore: float = 0.0,
                       explore_episodes: float = 1.0) -> PolicyFactory:
    """A trained controller with the experiment's V and M, mixing in random held actions at rate `explore` in a
    share `explore_episodes` of the episodes (the iterative procedure's exploration: M must see what the
    controller does *and* what it avoids)."""
    from controller import Controller
    from controller.rollouts import RealSetup, load_agent

    controller, params = Controller.load(controller_file)
    if controller.env != env:
        raise ValueError(f"{controller_file}: a {controller.env} controller cannot collect {env} episodes")
    agent = load_agent(RealSetup(exp_dir, env, controller.get_config()))
    return lambda rng: agent_policy(agent, params, rng, explore, explore_episodes)


RANDOM_POLICIES: dict[str, dict[str, Callable[..., Policy]]] = {
    "doom": {"held_uniform": held_uniform_policy, "always_left": functools.partial(constant_policy, -1.0),
             "always_right": functools.partial(constant_policy, 1.0),
             "stand_still": functools.partial(constant_policy, 0.0)},
    "carracing": {"brownian": brownian_driving_policy},
}
MODEL_POLICIES = ("random_weights", "controller")  # need TensorFlow in the worker
DEFAULT_POLICY = {"doom": "held_uniform", "carracing": "brownian"}


def policy_names(env: str) -> list[str]:
    """The policies `run.collect --policy` accepts for `env`."""
    return sorted(RANDOM_POLICIES[env]) + list(MODEL_POLICIES)


def make_policy_factory(env: str, name: str, seed: int = 0, exp_dir: str | None = None,
                        controller_file: str | None = None, explore: float = 0.0,
                        explore_episodes: float = 1.0) -> PolicyFactory:
    """The factory of policy `name` for `env`; unknown names raise `ValueError` listing the known ones."""
    if name == "random_weights":
        return random_weights_factory(env, seed)
    if name == "controller":
        if not controller_file or not exp_dir:
            raise ValueError("the 'controller' policy needs a controller file and the experiment's V and M")
        return controller_factory(env, exp_dir, controller_file, explore, explore_episodes)
    policies = RANDOM_POLICIES[env]
    if name not in policies:
        raise ValueError(f"unknown policy {name!r} for {env}; choose from {policy_names(env)}")
    return policies[name]

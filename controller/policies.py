"""Collection policies that play V, M and C: a trained controller (the iterative procedure's data) and the 2018
CarRacing data policy of random controller weights. The model-free policies are in `envs.policies`.
"""

from __future__ import annotations

import keras
import numpy as np

from common.worker_files import WorkerFiles
from controller.agent import Agent
from controller.model import Controller
from controller.rollouts import agent_from_files
from envs.policies import Policy, PolicyFactory, held_uniform_policy, random_policy_factory
from rnn.model import MDNRNN
from vae import ConvVAE


def agent_policy(agent, params: np.ndarray, rng: np.random.Generator, explore: float = 0.0,
                 explore_episodes: float = 1.0) -> Policy:
    """V + M + C acting on frames; with probability `explore` a step starts a random held action (1-10 frames,
    uniform in the action space) instead, in a share `explore_episodes` of the episodes (the others are C's own
    play to the end, so M also sees where C's habits lead). M always advances with the action actually taken."""
    episode_seed = int(rng.integers(2**31 - 1))
    if explore_episodes < 1.0 and rng.random() >= explore_episodes:
        explore = 0.0
    params = np.asarray(params, np.float32)
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


def controller_factory(env: str, files: WorkerFiles, explore: float = 0.0,
                       explore_episodes: float = 1.0) -> PolicyFactory:
    """A trained controller (`files`: 'controller', with its experiment's 'vae' and 'rnn'), mixing in random held
    actions at rate `explore` in a share `explore_episodes` of the episodes (the iterative procedure's
    exploration: M must see what the controller does *and* what it avoids)."""
    controller, params = Controller.load(files.path("controller"))
    if controller.env != env:
        raise ValueError(f"{files.path('controller')}: a {controller.env} controller cannot collect {env} episodes")
    agent = agent_from_files(controller.get_config(), files)
    return lambda rng: agent_policy(agent, params, rng, explore, explore_episodes)


def make_policy_factory(env: str, name: str, seed: int = 0, files: WorkerFiles | None = None,
                        explore: float = 0.0, explore_episodes: float = 1.0) -> PolicyFactory:
    """The factory of policy `name` for `env`, model-free or not; unknown names raise `ValueError`. The
    'controller' policy reads `files` ('controller', 'vae', 'rnn')."""
    if name == "random_weights":
        return random_weights_factory(env, seed)
    if name == "controller":
        if files is None or not {"controller", "vae", "rnn"} <= set(files.paths):
            raise ValueError("the 'controller' policy needs a controller file and the experiment's V and M")
        return controller_factory(env, files, explore, explore_episodes)
    return random_policy_factory(env, name)

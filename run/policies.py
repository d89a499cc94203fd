"""Exploration policies for collecting data without a trained controller.

A policy factory is made once per worker (`make_policy_factory`); it gives a fresh policy per episode from that
episode's random generator, so an episode is reproducible from its seed alone. A policy maps the current
64x64x3 frame to an action (float32 vector).
"""

from __future__ import annotations

from typing import Callable

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


RANDOM_POLICIES: dict[str, dict[str, Callable[..., Policy]]] = {
    "doom": {"held_uniform": held_uniform_policy},
    "carracing": {"brownian": brownian_driving_policy},
}
DEFAULT_POLICY = {"doom": "held_uniform", "carracing": "brownian"}


def policy_names(env: str) -> list[str]:
    """The policies `run.collect --policy` accepts for `env`."""
    return sorted(RANDOM_POLICIES[env])


def make_policy_factory(env: str, name: str) -> PolicyFactory:
    """The factory of policy `name` for `env`; unknown names raise `ValueError` listing the known ones."""
    policies = RANDOM_POLICIES[env]
    if name not in policies:
        raise ValueError(f"unknown policy {name!r} for {env}; choose from {sorted(policies)}")
    return policies[name]

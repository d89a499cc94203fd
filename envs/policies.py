"""Policies that need no model: the paper's random data policies and the dream audit's fixed probes.

A policy factory gives a fresh policy per episode from that episode's random generator, so an episode is
reproducible from its seed alone. A policy maps the current 64x64x3 frame to an action (float32 vector). These
import no TensorFlow, so collection workers that play them start fast; the policies that play V, M and C live in
`controller.policies`.
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


def fixed_action_policy(values: tuple[float, ...], rng: np.random.Generator | None = None) -> Policy:
    """One action vector for the whole episode: the CarRacing dream audit's probes (full gas straight, steering
    left or right, braking)."""
    action = np.asarray(values, np.float32)
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


def road_centre(frame: np.ndarray, row: int) -> float | None:
    """The column of the middle of the road in one row of a 64x64 CarRacing frame, taking the run of grey
    (road) pixels nearest the car's column 32; None when the row shows no road."""
    pixels = frame[row].astype(np.int16)
    grey = (np.abs(pixels[:, 1] - pixels[:, 0]) < 25) & (pixels[:, 0] > 80) & (pixels[:, 0] < 140)
    columns = np.flatnonzero(grey)
    if columns.size == 0:
        return None
    runs = np.split(columns, np.flatnonzero(np.diff(columns) > 1) + 1)
    nearest = min(runs, key=lambda run: abs((run[0] + run[-1]) / 2 - 32))
    return float(nearest[0] + nearest[-1]) / 2


FAR_ROW, NEAR_ROW = 26, 42  # rows of the 64x64 frame the track follower reads (the car sits in rows 50-58)


def track_follower_policy(rng: np.random.Generator) -> Policy:
    """A scripted CarRacing driver with no model, for data: it steers towards the middle of the road ahead
    (`road_centre` of a far and a near row of the frame), at a speed, gain and steering noise drawn per episode,
    and 0.5 % of frames start 5-20 frames of random driving (a held uniform action) that it then recovers from.

    It drives along the track, off it and back: what M must see to predict the reward of driving well (new
    tiles) and badly (grass, leaving the playfield). Brownian driving rarely gets far along a track. Measured
    without noise at gas 0.1: 692-778 on three tracks. It does not train C: C learns only in M's dream."""
    gas, gain = float(rng.uniform(0.1, 0.3)), float(rng.uniform(0.07, 0.13))
    noise = float(rng.uniform(0.0, 0.15))
    random_actions = held_uniform_policy(rng, 3, min_hold=5, max_hold=20)
    state = {"left": 0, "action": np.zeros(3, np.float32)}

    def act(frame: np.ndarray) -> np.ndarray:
        if state["left"] == 0 and rng.random() < 0.005:
            state["left"] = int(rng.integers(5, 21))
            state["action"] = np.maximum(random_actions(frame), (-1.0, 0.0, 0.0)).astype(np.float32)
        if state["left"] > 0:
            state["left"] -= 1
            return state["action"].copy()
        far, near = road_centre(frame, FAR_ROW), road_centre(frame, NEAR_ROW)
        target = far if far is not None else near
        steer = 0.0 if target is None else gain * (target - 32) + (0.04 * (near - 32) if near is not None else 0.0)
        steer = float(np.clip(steer + rng.normal(0.0, noise), -1.0, 1.0))
        return np.array([steer, gas if abs(steer) < 0.5 else 0.05, 0.0], np.float32)

    return act


def mixed_driving_policy(rng: np.random.Generator) -> Policy:
    """Half the episodes Brownian driving, half the track follower (chosen per episode): CarRacing data that
    covers both wandering on the grass and driving along the track, for an M whose dream must pay rewards."""
    return brownian_driving_policy(rng) if rng.random() < 0.5 else track_follower_policy(rng)


RANDOM_POLICIES: dict[str, dict[str, Callable[..., Policy]]] = {
    "doom": {"held_uniform": held_uniform_policy, "always_left": functools.partial(constant_policy, -1.0),
             "always_right": functools.partial(constant_policy, 1.0),
             "stand_still": functools.partial(constant_policy, 0.0)},
    "carracing": {"brownian": brownian_driving_policy, "track_follower": track_follower_policy,
                  "mixed_driving": mixed_driving_policy,
                  "full_gas": functools.partial(fixed_action_policy, (0.0, 1.0, 0.0)),
                  "steer_left": functools.partial(fixed_action_policy, (-1.0, 0.5, 0.0)),
                  "steer_right": functools.partial(fixed_action_policy, (1.0, 0.5, 0.0)),
                  "brake": functools.partial(fixed_action_policy, (0.0, 0.0, 1.0))},
}
MODEL_POLICIES = ("random_weights", "controller")  # play V, M and C: they need TensorFlow (controller.policies)
DEFAULT_POLICY = {"doom": "held_uniform", "carracing": "brownian"}


def policy_names(env: str) -> list[str]:
    """The policies `run.collect --policy` accepts for `env`."""
    return sorted(RANDOM_POLICIES[env]) + list(MODEL_POLICIES)


def random_policy_factory(env: str, name: str) -> PolicyFactory:
    """The factory of the model-free policy `name` for `env`; unknown names raise `ValueError`."""
    policies = RANDOM_POLICIES[env]
    if name not in policies:
        raise ValueError(f"unknown policy {name!r} for {env}; choose from {policy_names(env)}")
    return policies[name]

"""Where candidate controllers are scored: real environments in a worker pool, or the batched dream.

Both evaluators take a population (N, P) and seeds (R,) and return returns (N, R): every candidate plays every
seed, so all candidates of a generation are ranked on the same episodes. The real one runs on either pool backend
(`common.backend`): worker processes on this machine, or Ray actors on a cluster's nodes, which receive V and M
through Ray's object store.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

import envs
from common.backend import Backend
from common.layout import experiment
from common.threads import limit_tensorflow_threads
from common.worker_files import WorkerFiles
from controller.agent import Agent, play_episodes
from controller.interface import controller_from_config
from controller.model import Controller
from envs.dream import DreamDynamics
from rnn.model import load_rnn
from vae.encode import load_vae

# Real episodes a worker plays at once, one V + C + M call a step for all of them. The chunks are cut by task index,
# never by worker count, so scores do not depend on how many workers play them.
LOCKSTEP_EPISODES = 4


@dataclasses.dataclass(frozen=True)
class RealSetup:
    """What a worker needs to build the agent and its environment."""

    exp_dir: str
    env: str  # 'carracing' or 'doom'
    controller: dict  # Controller config
    max_steps: int | None = None
    doom_resolution: str = "640x480"
    vae_path: str | None = None
    rnn_path: str | None = None
    lockstep_episodes: int = LOCKSTEP_EPISODES


def model_files(setup: RealSetup) -> WorkerFiles:
    """V's and M's files ('vae', 'rnn'): the setup's own paths, else the experiment's."""
    if setup.vae_path and setup.rnn_path:
        return WorkerFiles.of(vae=setup.vae_path, rnn=setup.rnn_path)
    layout = experiment(setup.exp_dir, create=False)
    return WorkerFiles.of(vae=setup.vae_path or layout.vae_model, rnn=setup.rnn_path or layout.rnn_model)


def agent_from_files(controller_config: dict, files: WorkerFiles):
    """V and M read from `files` ('vae', 'rnn') with C built from its config, as an `Agent` (which checks that
    they fit together)."""
    controller = controller_from_config(controller_config)
    return Agent(load_vae(files.path("vae")), load_rnn(files.path("rnn")), controller)


def load_agent(setup: RealSetup, files: WorkerFiles | None = None):
    """V, M and C of an experiment as an `Agent`; `files`: where V and M are (default: `model_files(setup)`)."""
    return agent_from_files(setup.controller, files or model_files(setup))


def make_real_env(setup: RealSetup):
    kwargs = {"resolution": setup.doom_resolution} if setup.env == "doom" else {}
    return envs.make_env(setup.env, **kwargs)


def _init_real_worker(setup: RealSetup, files: WorkerFiles) -> tuple[list, Any, RealSetup]:
    limit_tensorflow_threads(1)
    return [], load_agent(setup, files), setup  # environments are made as a chunk first needs them


def _play_real_episodes(state, tasks: list[tuple[np.ndarray, int]]) -> list[float]:
    environments, agent, setup = state
    while len(environments) < len(tasks):
        environments.append(make_real_env(setup))
    return play_episodes(environments[:len(tasks)], agent, tasks, setup.max_steps)


class RealEvaluator:
    """Plays candidates in the real environment on `workers` workers of `backend` (spawned processes by default;
    each loads V and M once). A worker's task is a chunk of `setup.lockstep_episodes` episodes played in lockstep.

    A worker that fails (e.g. CarRacing on a Doom experiment's V) stops the run with a one-line `WorkerError`;
    its traceback is appended to the experiment's `worker_errors.log`.
    """

    def __init__(self, setup: RealSetup, workers: int, episode_timeout: float = 900.0,
                 backend: Backend | None = None):
        self.setup = setup
        backend = backend or Backend()
        self.pool = backend.pool(workers, _play_real_episodes, _init_real_worker, (setup, model_files(setup)),
                                 task_timeout=episode_timeout * setup.lockstep_episodes,
                                 describe=lambda chunk: f"{setup.env} episodes with seeds "
                                                        f"{', '.join(str(seed) for _, seed in chunk)}",
                                 error_log=experiment(setup.exp_dir, create=False).worker_errors)

    def __call__(self, population: np.ndarray, seeds: np.ndarray) -> np.ndarray:
        population = np.asarray(population, np.float32)
        tasks = [(population[i], int(seed)) for i in range(len(population)) for seed in seeds]
        size = max(1, self.setup.lockstep_episodes)
        chunks = self.pool.map([tasks[start:start + size] for start in range(0, len(tasks), size)])
        returns = [total for chunk in chunks for total in chunk]
        return np.asarray(returns, np.float64).reshape(len(population), len(seeds))

    def close(self) -> None:
        self.pool.close()


class DreamEvaluator:
    """Plays candidates in the Doom dream: the whole population x seeds as one batch of dreams."""

    def __init__(self, dynamics: DreamDynamics, controller: Controller):
        self.dynamics, self.controller = dynamics, controller

    def __call__(self, population: np.ndarray, seeds: np.ndarray) -> np.ndarray:
        population = np.asarray(population, np.float32)
        params = np.repeat(population, len(seeds), axis=0)
        all_seeds = np.tile(np.asarray(seeds, np.int64), len(population))
        returns = self.dynamics.returns(self.controller, params, all_seeds)
        return returns.reshape(len(population), len(seeds))

    def close(self) -> None:
        pass


def default_workers() -> int:
    return max(1, os.cpu_count() or 1)

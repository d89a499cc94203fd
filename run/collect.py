"""Collects rollouts of a real environment into `DIR/rollouts/`, one compressed `.npz` per episode.

    python -m run.collect --env=doom --exp_dir=exp/doom --episodes=10000 --workers=2 --seed=0
    python -m run.collect --env=carracing --exp_dir=exp/car --episodes=10000 --workers=2 --policy=brownian

Episode i is seeded from (--seed, i) alone, so the same flags give the same files whatever the number of
workers, and a second run with the same flags skips the episodes already on disk: a killed collection resumes
without losing or duplicating anything. Doom episodes that die within 100 frames are dropped and redrawn with the
next seed of the same index, as the paper's data set did. Workers return each episode's file as bytes (the same
bytes for the same episode) and this process writes it atomically, so with `--backend=ray` they may run on other
machines, which need no shared filesystem:

    python -m run.collect --env=doom --exp_dir=exp/doom --episodes=10000 --workers=64 --backend=ray \
        --ray_address=auto

File format (`ep000123.npz`): obs (T,64,64,3) uint8, the frame seen before action t; action (T,A) float32;
reward (T,) float32; done (T,) bool, True on the episode's last step; truncated () bool, True when that end was
the step limit rather than the game (death, or a finished lap); seed () int64; env () str.
"""

from __future__ import annotations

import dataclasses
import io
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from absl import flags

import envs
from common.backend import Backend
from common.errors import UserError, run_main
from common.flags import ConfigFlags
from common.layout import ExperimentLayout, experiment
from common.paper import DOOM_RESOLUTION, EPISODE_STEPS, RANDOM_ROLLOUTS, TASKS
from common.progress import Progress
from common.seeding import derive_seed
from common.storage import ROLLOUT_SCHEMA, atomic_path, episode_name, file_digest, read_json, write_json
from common.worker_files import WorkerFiles
from envs.policies import DEFAULT_POLICY, MODEL_POLICIES, PolicyFactory, policy_names, random_policy_factory

MAX_ATTEMPTS = 100  # redraws of one index before giving up (a Doom episode dying within 100 frames is rare)


@dataclasses.dataclass(frozen=True)
class CollectConfig:
    """What to collect; the defaults are the paper's."""

    env: str = "doom"  # the task: doom or carracing
    episodes: int = RANDOM_ROLLOUTS  # episodes to collect (the paper: 10,000 random rollouts for each task)
    workers: int = 1  # spawned worker processes (one per core is right), or Ray actors with --backend=ray
    backend: str = "processes"  # where workers run: processes (this machine) or ray (a Ray cluster's nodes)
    ray_address: str | None = None  # --backend=ray: auto joins the cluster `ray start` runs; HOST:PORT a given
    # head; unset starts a local Ray
    seed: int = 0  # episode i is seeded from (seed, i, attempt) alone: the same flags give the same files
    max_steps: int | None = None  # step limit per episode; None: the task's own (CarRacing 1,000, Doom 2,100)
    policy: str | None = None  # None or random: the env's default: Doom held_uniform (the paper's uniform action
    # held 1-10 frames), CarRacing brownian (a steering random walk with gas); random_weights (the 2018 CarRacing
    # data policy: untrained V and M, Cauchy-random controller weights per episode); controller (--controller_file,
    # with --explore); or for Doom always_left, always_right, stand_still (the dream audit's probes)
    min_length: int = 100  # Doom: episodes that die within this many frames are redrawn (paper: <= 100)
    doom_resolution: str = DOOM_RESOLUTION  # Doom render size: the paper's 640x480; 320x240 is faster, same view
    legacy_preprocess: bool = False  # CarRacing: the 2018 min-max rescale and byte cast
    episode_timeout: float = 600.0  # seconds before a worker is presumed hung, killed and the episode re-run
    controller_file: str | None = None  # policy 'controller': the controller JSON to play
    explore: float = 0.0  # policy 'controller': chance a step starts a random action held 1-10 frames
    explore_episodes: float = 1.0  # policy 'controller': share of episodes that explore (the rest: C alone)
    models_dir: str | None = None  # policy 'controller': experiment folder with V and M (default: --exp_dir)

    def resolved(self) -> CollectConfig:
        """Validates the fields and fills in the env-dependent defaults; bad values raise `UserError`."""
        if self.env not in TASKS:
            raise UserError(f"--env={self.env}: unknown environment; choose from {', '.join(TASKS)}")
        for name in ("episodes", "workers"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name}={getattr(self, name)}: must be at least 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise UserError(f"--max_steps={self.max_steps}: must be at least 1")
        Backend.of(self).validated().check_workers(self.workers)
        policy = self.policy or DEFAULT_POLICY[self.env]
        if policy == "random":
            policy = DEFAULT_POLICY[self.env]
        if policy not in policy_names(self.env):
            raise UserError(f"--policy={policy}: unknown for {self.env}; "
                            f"choose from {', '.join(policy_names(self.env))}")
        if policy == "controller" and not self.controller_file:
            raise UserError("--policy=controller needs --controller_file")
        for name in ("explore", "explore_episodes"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise UserError(f"--{name}={getattr(self, name)}: must be in [0, 1]")
        return dataclasses.replace(self, policy=policy, max_steps=self.max_steps or EPISODE_STEPS[self.env])

    def env_kwargs(self) -> dict[str, Any]:
        if self.env == "doom":
            return {"resolution": self.doom_resolution, "max_steps": self.max_steps}
        return {"legacy_preprocess": self.legacy_preprocess}

    def identity(self) -> dict[str, Any]:
        """The fields that decide an episode's content: a resumed run must agree on all of them."""
        identity = {"env": self.env, "seed": self.seed, "max_steps": self.max_steps, "policy": self.policy,
                    "min_length": self.min_length, "env_kwargs": self.env_kwargs()}
        if self.policy == "controller":
            # the controller's content, not its path: a copied or moved experiment still resumes
            if not Path(self.controller_file).is_file():
                raise UserError(f"--controller_file={self.controller_file}: no such file")
            identity.update(controller_sha256=file_digest(self.controller_file), explore=self.explore,
                            explore_episodes=self.explore_episodes)
        return identity


def run_episode(env, policy, seed: int, max_steps: int) -> dict[str, np.ndarray]:
    """Plays one episode of `policy` in `env` from `env.reset(seed=seed)`; returns the rollout arrays."""
    observation, _ = env.reset(seed=seed)
    frames, actions, rewards = [], [], []
    terminated = truncated = False
    while not (terminated or truncated):
        action = np.asarray(policy(observation), np.float32)
        frames.append(observation)
        actions.append(action)
        observation, reward, terminated, truncated, _ = env.step(action)
        rewards.append(reward)
        truncated = truncated or (len(frames) >= max_steps and not terminated)
    done = np.zeros(len(frames), bool)
    done[-1] = True
    return {"obs": np.stack(frames).astype(np.uint8), "action": np.stack(actions).astype(np.float32),
            "reward": np.asarray(rewards, np.float32), "done": done, "truncated": np.bool_(truncated)}


def npz_bytes(arrays: Mapping[str, Any]) -> bytes:
    """A compressed `.npz` file's bytes (what `np.savez_compressed` writes), with every member dated 1980-01-01:
    the same episode gives the same bytes on any worker, so re-runs and backends can be compared file by file."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, value in arrays.items():
            member = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            member.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(member, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(value), allow_pickle=False)
    return buffer.getvalue()


def write_episode(path: Path, data: bytes) -> None:
    """Writes one episode's file atomically (this process, not the worker: workers may be on other machines)."""
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


@dataclasses.dataclass
class _WorkerState:
    env: Any
    policy_factory: PolicyFactory
    config: CollectConfig


def _init_worker(config: CollectConfig, files: WorkerFiles) -> _WorkerState:
    env = envs.make_env(config.env, **config.env_kwargs())
    if config.policy in MODEL_POLICIES:
        # Imported here, not at the top: only workers that play V, M and C should load TensorFlow.
        from controller.policies import make_policy_factory

        factory = make_policy_factory(config.env, config.policy, seed=config.seed, files=files,
                                      explore=config.explore, explore_episodes=config.explore_episodes)
    else:
        factory = random_policy_factory(config.env, config.policy)
    return _WorkerState(env, factory, config)


def _worker_files(config: CollectConfig, models_dir: str | os.PathLike) -> WorkerFiles:
    """What the workers read: the controller policy's C and its experiment's V and M; nothing otherwise."""
    if config.policy != "controller":
        return WorkerFiles()
    layout = experiment(models_dir, create=False)
    return WorkerFiles.of(controller=config.controller_file, vae=layout.vae_model, rnn=layout.rnn_model)


def _collect_episode(state: _WorkerState, index: int) -> tuple[int, int, int, bytes]:
    """Plays episode `index`; returns (index, steps, attempts, the episode's file as bytes)."""
    config = state.config
    for attempt in range(MAX_ATTEMPTS):
        seed = derive_seed(config.seed, index, attempt)
        policy = state.policy_factory(np.random.default_rng(derive_seed(seed, 1)))
        rollout = run_episode(state.env, policy, seed, config.max_steps)
        steps = len(rollout["reward"])
        died_early = config.env == "doom" and not rollout["truncated"] and steps <= config.min_length
        if not died_early:
            data = npz_bytes({"seed": np.int64(seed), "env": np.array(config.env), **rollout})
            return index, steps, attempt + 1, data
    raise RuntimeError(f"episode {index}: every one of {MAX_ATTEMPTS} attempts died within "
                       f"{config.min_length} frames")


def is_complete(path: Path) -> bool:
    """True when `path` is a readable zip holding every rollout array (a cheap check, no decompression)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = {name.removesuffix(".npy") for name in archive.namelist()}
    except (OSError, zipfile.BadZipFile):
        return False
    return set(ROLLOUT_SCHEMA) <= names


def _check_manifest(layout: ExperimentLayout, config: CollectConfig) -> None:
    folder, manifest = layout.rollouts, layout.collect_manifest
    identity = config.identity()
    if manifest.exists():
        recorded = read_json(manifest)
        # keys both know: a manifest written before a key was added (or renamed) is judged on the rest
        differing = sorted(key for key in identity.keys() & recorded.keys() if recorded[key] != identity[key])
        if differing:
            details = ", ".join(f"{key}={recorded.get(key)!r} there, {identity[key]!r} now" for key in differing)
            raise UserError(f"{folder}: collected with other settings ({details}); use another --exp_dir")
    else:
        write_json(manifest, identity)


def collect_rollouts(exp_dir: str | os.PathLike, config: CollectConfig | None = None,
                     verbose: bool = True, **fields: Any) -> list[Path]:
    """Collects `config.episodes` episodes into `exp_dir/rollouts/` (skipping those already there).

    Fields given as keyword arguments override `config`. Returns the episode files in index order.
    """
    config = dataclasses.replace(config or CollectConfig(), **fields).resolved()
    layout = experiment(exp_dir)
    folder = layout.rollouts
    folder.mkdir(parents=True, exist_ok=True)
    _check_manifest(layout, config)
    for stale in folder.glob(".ep*.tmp*"):  # temporary files of a killed run: never complete
        stale.unlink(missing_ok=True)
    paths = [folder / episode_name(index) for index in range(config.episodes)]
    todo = [index for index, path in enumerate(paths) if not is_complete(path)]
    progress = Progress("collect", config.episodes, "episodes", rate_unit="frames",
                        start_done=config.episodes - len(todo),
                        stream=None if verbose else io.StringIO())
    if todo:
        workers = min(config.workers, len(todo))
        files = _worker_files(config, config.models_dir or exp_dir)
        with Backend.of(config).pool(workers, _collect_episode, _init_worker, (config, files),
                                     task_timeout=config.episode_timeout, describe=lambda index: f"episode {index}",
                                     error_log=layout.worker_errors) as pool:
            for _, (index, steps, _, data) in pool.imap_unordered(todo):
                write_episode(paths[index], data)
                progress.update(1, rate_count=steps)
    progress.close()
    return paths


def main(argv) -> None:
    paths = collect_rollouts(flags.FLAGS.exp_dir, ConfigFlags(CollectConfig).parse())
    print(f"collect: {len(paths)} episodes in {Path(paths[0]).parent}")


def define_flags() -> None:
    flags.DEFINE_string("exp_dir", None, "Experiment folder; episodes go to EXP_DIR/rollouts/.", required=True)
    ConfigFlags(CollectConfig).define()


if __name__ == "__main__":
    define_flags()
    run_main(main)

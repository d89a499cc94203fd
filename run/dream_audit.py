"""Audits a dream for holes: fixed policies and the controller, their return in the dream vs. the real game.

    python -m run.dream_audit --exp_dir=DIR [--temperature=1.15] [--episodes=20]
    python -m run.dream_audit --exp_dir=DIR --env=carracing --temperature=1.0    # an M with a reward output

A hole is where the dream is much kinder than the game: a policy that survives far longer in M's dream than in
VizDoom (a prototype here found "always right" surviving 1,732 dream steps and 174 real ones after training on
random data only), or that earns far more of M's predicted reward on CarRacing's dream track than on a real one.
A controller trained in such a dream learns the exploit, not the game. Writes DIR/report/dream_audit.md (read by
run.report) and dream_audit.json.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np

import envs
from common.backend import Backend
from common.errors import UserError, run_main
from common.flags import ConfigFlags
from common.layout import experiment
from common.paper import DOOM_RESOLUTION, DOOM_TEMPERATURE, EPISODE_STEPS
from common.seeding import derive_seed
from common.storage import file_digest, write_json, write_text
from controller import Controller
from controller.evaluate import default_controller_file
from controller.pretrained import define_experiment_flags, experiment_from_flags
from controller.rollouts import DreamEvaluator, RealEvaluator, RealSetup
from envs.dream import DreamDynamics, load_dream
from envs.policies import RANDOM_POLICIES
from run.collect import run_episode

# The audit's fixed policies (their names in its tables) and their names in envs.policies (run.collect --policy).
POLICY_NAMES = {"always left": "always_left", "always right": "always_right", "stand still": "stand_still",
                "random, held 1-10 frames": "held_uniform"}
FIXED_POLICIES = tuple(POLICY_NAMES)
CARRACING_POLICY_NAMES = {"full gas straight": "full_gas", "steer left": "steer_left", "steer right": "steer_right",
                          "brake": "brake", "random driving": "brownian"}
TASK_POLICIES = {"doom": POLICY_NAMES, "carracing": CARRACING_POLICY_NAMES}
HOLE_RATIO = 2.0  # Doom: dream survival this many times the real one ...
HOLE_MARGIN = 100  # ... and at least this many steps longer: flagged as a hole
CARRACING_HOLE_MARGIN = 100.0  # CarRacing: a dream return this much above the real one (a third of a lap's tiles)


@dataclasses.dataclass(frozen=True)
class AuditConfig:
    """What the audit plays: fixed policies (and a controller) in the dream and in the real game, on the same
    seeds."""

    env: str = "doom"  # the task: doom, or carracing (its M must predict reward)
    episodes: int = 20  # episodes per policy, in the dream and in the game, on the same seeds
    temperature: float = DOOM_TEMPERATURE  # the dream's tau
    controller_file: str | None = None  # also audit this controller (default: the experiment's dream one)
    workers: int = 2  # processes playing the real game
    backend: str = "processes"  # where the real game runs: processes (this machine) or ray (a Ray cluster's nodes)
    ray_address: str | None = None  # --backend=ray: auto joins the cluster `ray start` runs; HOST:PORT a given
    # head; unset starts a local Ray
    seed: int = 0  # seed of the audit episodes
    max_steps: int | None = None  # episode cap, in the dream and the game; None: the task's (Doom 2,100,
    # CarRacing 1,000)
    doom_resolution: str = DOOM_RESOLUTION  # real Doom's render size


def _fixed_action(name: str, rng: np.random.Generator, env: str = "doom") -> Callable[[np.ndarray], np.ndarray]:
    return RANDOM_POLICIES[env][TASK_POLICIES[env][name]](rng)


def _init_game(env: str, resolution: str, max_steps: int):
    kwargs = {"resolution": resolution, "max_steps": max_steps} if env == "doom" else {}
    return env, envs.make_env(env, **kwargs), max_steps


def _play_fixed(state, task: tuple[str, int]) -> float:
    """One real episode of a fixed policy: its return (Doom: the steps survived)."""
    env_name, env, max_steps = state
    name, seed = task
    rollout = run_episode(env, _fixed_action(name, np.random.default_rng(seed), env_name), seed, max_steps)
    return float(len(rollout["reward"])) if env_name == "doom" else float(rollout["reward"].sum())


def real_fixed_policies(config: AuditConfig, seeds: np.ndarray,
                        error_log: Path | None = None) -> dict[str, np.ndarray]:
    """The return of each fixed policy in the real game (Doom: survival); a worker's traceback goes to
    `error_log`."""
    names = tuple(TASK_POLICIES[config.env])
    tasks = [(name, int(seed)) for name in names for seed in seeds]
    with Backend.of(config).pool(config.workers, _play_fixed, _init_game,
                                 (config.env, config.doom_resolution, config.max_steps),
                                 task_timeout=600, describe=lambda t: f"{t[0]} with seed {t[1]}",
                                 error_log=error_log) as pool:
        returns = np.asarray(pool.map(tasks), float).reshape(len(names), len(seeds))
    return dict(zip(names, returns))


def dream_fixed_policy(dynamics: DreamDynamics, name: str, seeds: np.ndarray, env: str = "doom") -> np.ndarray:
    """The return of one fixed policy in the dream (Doom: survival), all seeds as one batch."""
    policies = [_fixed_action(name, np.random.default_rng(int(seed)), env) for seed in seeds]
    return dynamics.survival(lambda state: np.stack([policy(None) for policy in policies]).astype(np.float32),
                             seeds, derive_seed(int(seeds[0]), len(seeds)))


def audit_dream(exp_dir, config: AuditConfig, verbose: bool = True) -> list[dict]:
    """Runs every policy in the dream and the game; writes the Markdown and JSON tables; returns the rows."""
    if config.env not in TASK_POLICIES:
        raise UserError(f"--env={config.env}: choose from {', '.join(TASK_POLICIES)}")
    if config.episodes < 1:
        raise UserError(f"--episodes={config.episodes}: must be at least 1")
    if not config.temperature > 0:
        raise UserError(f"--temperature={config.temperature}: must be positive")
    Backend.of(config).validated().check_workers(config.workers)
    config = dataclasses.replace(config, max_steps=config.max_steps or EPISODE_STEPS[config.env])
    layout = experiment(exp_dir, create=False)
    dynamics = load_dream(layout.root, config.temperature, config.max_steps, task=config.env)
    seeds = np.array([derive_seed(config.seed, 424242, i) for i in range(config.episodes)], np.int64)
    real = real_fixed_policies(config, seeds, layout.worker_errors)
    dream = {name: dream_fixed_policy(dynamics, name, seeds, config.env) for name in TASK_POLICIES[config.env]}
    controller_file = config.controller_file or _dream_controller(layout, config.env)
    if controller_file:
        controller, params = Controller.load(controller_file)
        dream["controller"] = DreamEvaluator(dynamics, controller)(params[None], seeds)[0]
        evaluator = RealEvaluator(RealSetup(str(layout.root), config.env, controller.get_config(), config.max_steps,
                                            config.doom_resolution), config.workers,
                                  backend=Backend.of(config))
        try:
            real["controller"] = evaluator(params[None], seeds)[0]
        finally:
            evaluator.close()
    rows = []
    for name in dream:
        dream_mean, real_mean = float(dream[name].mean()), float(real[name].mean())
        ratio, excess = dream_mean / max(real_mean, 1.0), dream_mean - real_mean
        hole = (ratio > HOLE_RATIO and excess > HOLE_MARGIN if config.env == "doom"
                else excess > CARRACING_HOLE_MARGIN)
        rows.append({"policy": name, "dream_mean": dream_mean, "dream_std": float(dream[name].std()),
                     "real_mean": real_mean, "real_std": float(real[name].std()), "ratio": ratio,
                     "excess": excess, "hole": bool(hole)})
    write_json(layout.report / "dream_audit.json", {
        "env": config.env, "temperature": config.temperature, "episodes": config.episodes,
        "controller_file": _within(controller_file, layout.root) if controller_file else None,
        "controller_sha256": file_digest(controller_file) if controller_file else None, "rows": rows})
    write_text(layout.report / "dream_audit.md", audit_markdown(rows, config))
    if verbose:
        print(audit_markdown(rows, config))
    return rows


def _within(path: str, root: Path) -> str:
    """`path` relative to the experiment folder `root` where it is inside it (a report copied elsewhere names no
    folder of this machine), else as given."""
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path


def _dream_controller(layout, env: str) -> str | None:
    """The experiment's controller trained in the dream (Doom: the paper's tau first; CarRacing: the full C first),
    if any."""
    if env == "carracing":
        runs = sorted(layout.controller.glob("carracingrnn_*/controller.json"))
        return str(runs[0]) if runs else None
    try:
        return str(default_controller_file(layout.root, "doom"))
    except UserError:
        return None


def audit_markdown(rows: list[dict], config: AuditConfig) -> str:
    """The audit's table. Doom compares survival as a ratio; CarRacing's returns go negative (-0.1 a frame, -100
    off the playfield), so it compares them by the difference its hole rule uses."""
    doom = config.env == "doom"
    measure, comparison = ("survival", "dream / real") if doom else ("return", "dream - real")
    lines = [f"### Dream audit (tau = {config.temperature:g}, {config.episodes} episodes per policy, same seeds)",
             "", f"| policy | dream {measure} | real {measure} | {comparison} | |", "|---|---|---|---|---|"]
    for row in rows:
        flag = "**hole**" if row["hole"] else ""
        compared = f"{row['ratio']:.2f}" if doom else f"{row['excess']:+.0f}"
        lines.append(f"| {row['policy']} | {row['dream_mean']:.0f} ± {row['dream_std']:.0f} | "
                     f"{row['real_mean']:.0f} ± {row['real_std']:.0f} | {compared} | {flag} |")
    rule = (f"the dream survives over {HOLE_RATIO:g}x and over {HOLE_MARGIN} steps longer than the game" if doom
            else f"the dream's return (M's predicted rewards) is over {CARRACING_HOLE_MARGIN:g} above the game's")
    lines += ["", f"A hole: {rule}. A controller trained there learns to exploit M, not to play.", ""]
    return "\n".join(lines)


def main(argv) -> None:
    audit_dream(*experiment_from_flags(ConfigFlags(AuditConfig).parse(), ("env", "doom_resolution")))


def define_flags() -> None:
    define_experiment_flags("Doom experiment with vae/, rnn/ and series/initial_z.npz.")
    ConfigFlags(AuditConfig).define()


if __name__ == "__main__":
    define_flags()
    run_main(main)

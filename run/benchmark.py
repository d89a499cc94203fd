"""Measures the project's hot paths in one run, so their ratios compare like with like on this machine.

    python -m run.benchmark                      # every case
    python -m run.benchmark --cases=env,collect  # some

Cases:
  env      raw environment steps/s (base env vs. the 64x64 wrapper), CarRacing and Doom at 640x480
  collect  Doom collection frames/s with 1 and with 2 worker processes, and their ratio (target >= 1.6)
  collect_ray  Doom collection frames/s with 2 Ray actors on a local Ray vs. 2 worker processes (target >= 0.9)
  vae      V's training step through its pipeline over 1,000 Take Cover episode files (doom_small's shape) vs. a
           bare reference step of the same model in memory (target >= 0.9)
  rnn      M's training step at paper sizes (Doom 100 x 100 with restarts, CarRacing 100 x 999) vs. a reference
           keras.layers.LSTM of the same size with the same mixture loss (Doom >= 0.8); pipeline vs. in memory
           (>= 0.9); next_state latency at batch 1
  agent    CarRacing steps/s of the full agent (V + M + C) vs. random actions, one episode at a time and in
           lockstep as the evaluator's one-thread workers play them; the models' share in lockstep (< 25 %)
  dream    real VizDoom steps/s at 640x480 vs. 1,024 batched dreams with the 512-unit M, float32 and bfloat16
           (the better >= 100x), and the wall time of one paper-scale CMA-ES generation in the dream, 64 x 16 dreams
  web      dream steps/s of the browser page (run.export_web) of a paper-size Doom world, uncapped, in headless
           Chromium (>= 30, the rate the page plays at); skipped without Chromium, playwright or npm

Results are printed and written to WORK_DIR/benchmark.json with the targets missed (TARGETS); `--check` exits 1
when one is.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from common.errors import UserError, run_main
from common.machine import cpu_description
from common.paper import DOOM_TEMPERATURE
from common.storage import write_json
from run.benchmark_game import env_steps_per_s, in_fresh_process, steps_per_second, vizdoom_steps_per_s


def benchmark_env(seconds: float = 5.0) -> dict:
    """Random-action steps/s of each real environment, bare and wrapped to 64x64 frames (a fresh process)."""
    return in_fresh_process(env_steps_per_s, seconds)


def benchmark_collect(work_dir: Path, episodes: int = 24) -> dict:
    """Doom collection frames/s (worker start-up included) with 1 and 2 workers, same episodes."""
    from run.collect import collect_rollouts

    results = {}
    for workers in (1, 2):
        exp_dir = work_dir / f"collect_{workers}"
        shutil.rmtree(exp_dir, ignore_errors=True)
        start = time.perf_counter()
        paths = collect_rollouts(exp_dir, env="doom", episodes=episodes, workers=workers, seed=0, verbose=False)
        seconds = time.perf_counter() - start
        frames = sum(int(np.load(path)["reward"].shape[0]) for path in paths)
        results[f"collect_{workers}_workers_frames_per_s"] = frames / seconds
    results["collect_ratio_2_vs_1"] = (results["collect_2_workers_frames_per_s"]
                                       / results["collect_1_workers_frames_per_s"])
    return results


def benchmark_collect_ray(work_dir: Path, episodes: int = 12) -> dict:
    """Doom collection frames/s with 2 Ray actors (one CPU each, on a local Ray started first: its start-up is not
    timed, the actors' is) vs. 2 worker processes, same episodes. Run in the order processes, ray, ray, processes
    and averaged, so a load that rises or falls during the case (a shared machine) favours neither."""
    import importlib.util

    from run.collect import collect_rollouts

    if importlib.util.find_spec("ray") is None:
        return {"skipped": "Ray is not installed (pip install -e .[ray])"}
    import ray

    from common.backend import Backend

    Backend("ray").default_workers()  # starts the local Ray
    rates: dict[str, list[float]] = {"processes": [], "ray": []}
    try:
        for run, backend in enumerate(("processes", "ray", "ray", "processes")):
            exp_dir = work_dir / f"collect_{backend}_{run}"
            shutil.rmtree(exp_dir, ignore_errors=True)
            start = time.perf_counter()
            paths = collect_rollouts(exp_dir, env="doom", episodes=episodes, workers=2, seed=0, backend=backend,
                                     verbose=False)
            seconds = time.perf_counter() - start
            rates[backend].append(sum(int(np.load(path)["reward"].shape[0]) for path in paths) / seconds)
    finally:
        ray.shutdown()
    results = {f"collect_{backend}_2_workers_frames_per_s": float(np.mean(rate)) for backend, rate in rates.items()}
    results["collect_ray_vs_processes_ratio"] = (results["collect_ray_2_workers_frames_per_s"]
                                                 / results["collect_processes_2_workers_frames_per_s"])
    return results


class _TimedEnv:
    """An environment whose `reset` and `step` add their wall time to `seconds`, to part the agent's time from
    the game's on the same steps."""

    def __init__(self, env):
        self.env, self.seconds, self.steps = env, 0.0, 0

    def reset(self, **kwargs):
        start = time.perf_counter()
        result = self.env.reset(**kwargs)
        self.seconds += time.perf_counter() - start
        return result

    def step(self, action):
        start = time.perf_counter()
        result = self.env.step(action)
        self.seconds += time.perf_counter() - start
        self.steps += 1
        return result


def benchmark_agent(seconds: float = 20.0, lockstep: int | None = None) -> dict:
    """CarRacing with random actions vs. the full agent acting, one episode at a time (one compiled V + C + M call
    a frame) and as the evaluator's workers play them, `lockstep` episodes at once (default: the evaluator's;
    one call a step for all of them). Run it in a process of one TensorFlow thread, as the workers are."""
    import keras

    import envs
    from controller import Controller
    from controller.agent import Agent, play_episode, play_episodes
    from controller.rollouts import LOCKSTEP_EPISODES
    from rnn.model import MDNRNN
    from vae import ConvVAE

    lockstep = lockstep or LOCKSTEP_EPISODES
    keras.utils.set_random_seed(0)
    agent = Agent(ConvVAE(z_size=32), MDNRNN(z_size=32, action_size=3, hidden_size=256, num_mixtures=5,
                                            predict_done=False), Controller("carracing", "full"))
    params = np.random.default_rng(0).normal(0, 0.1, agent.controller.num_params).astype(np.float32)
    env = envs.make_env("carracing")
    env.action_space.seed(0)

    def raw_step() -> bool:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        return terminated or truncated

    raw = steps_per_second(raw_step, lambda: env.reset(seed=0), seconds / 3)
    results = {"carracing_random_actions_steps_per_s": raw}
    envs_timed = [_TimedEnv(env)] + [_TimedEnv(envs.make_env("carracing")) for _ in range(lockstep - 1)]
    play_episode(env, agent, params, 0, 5)  # trace both calls once
    play_episodes(envs_timed, agent, [(params, 0)] * lockstep, 5)
    for name, batch in (("alone", 1), ("lockstep", lockstep)):
        for timed in envs_timed:
            timed.seconds, timed.steps = 0.0, 0
        start, seed = time.perf_counter(), 1
        while time.perf_counter() - start < seconds / 3:  # 250-step pieces of episodes on fresh tracks
            if batch == 1:
                play_episode(envs_timed[0], agent, params, seed, 250)
            else:
                play_episodes(envs_timed, agent, [(params, seed + i) for i in range(batch)], 250)
            seed += batch
        total = time.perf_counter() - start
        env_seconds = sum(timed.seconds for timed in envs_timed[:batch])
        steps = sum(timed.steps for timed in envs_timed[:batch])
        suffix = "" if name == "lockstep" else "_alone"
        results[f"carracing_full_agent_steps_per_s{suffix}"] = steps / total
        results[f"agent_model_ms_per_step{suffix}"] = 1000 * (total - env_seconds) / steps
        results[f"agent_model_share{suffix}"] = (total - env_seconds) / total
    results["agent_lockstep_episodes"] = lockstep
    for timed in envs_timed:
        timed.env.close()
    return results


def _agent_as_worker() -> dict:
    """The agent case in a process set up as `RealEvaluator`'s workers are (one TensorFlow thread)."""
    from common.threads import limit_tensorflow_threads

    limit_tensorflow_threads(1)
    return benchmark_agent()


def benchmark_dream(seconds: float = 5.0) -> dict:
    """Real VizDoom at 640x480 (bare, in a fresh process) vs. the batched dream (N = 1,024, LSTM 512), and a
    paper-scale generation.

    M is untrained with its death bias set far negative, so no dream dies: the generation time is the worst
    case, every one of the 1,024 dreams running all 2,100 steps.
    """
    import keras

    from controller import Controller
    from controller.rollouts import DreamEvaluator
    from envs.dream import DreamDynamics
    from rnn.model import MDNRNN

    real = in_fresh_process(vizdoom_steps_per_s, seconds)
    keras.utils.set_random_seed(0)
    rnn = MDNRNN(z_size=64, action_size=1, hidden_size=512, num_mixtures=5, predict_done=True)
    kernel, bias = rnn.head.get_weights()
    bias[-1] = -100.0
    rnn.head.set_weights([kernel, bias])
    rng = np.random.default_rng(0)
    dynamics = DreamDynamics(rnn, rng.normal(size=(100, 64)).astype(np.float32),
                             np.full((100, 64), -2.0, np.float32), temperature=DOOM_TEMPERATURE)
    controller = Controller("doom", "full")
    population = rng.normal(0, 0.1, (64, controller.num_params)).astype(np.float32)
    evaluate = DreamEvaluator(dynamics, controller)
    short = DreamDynamics(rnn, rng.normal(size=(100, 64)).astype(np.float32),
                          np.full((100, 64), -2.0, np.float32), temperature=DOOM_TEMPERATURE, max_steps=64)
    dream = _dream_chunk_steps_per_s(DreamEvaluator(short, controller), population)
    start = time.perf_counter()
    returns = evaluate(population, np.arange(16))
    generation = time.perf_counter() - start
    results = {"vizdoom_640x480_steps_per_s": real, "dream_1024_steps_per_s": dream,
               "dream_float32_vs_real_ratio": dream / real, "dream_generation_64x16_seconds": generation,
               "dream_generation_mean_steps": float(returns.mean())}
    # The same with the two large matmuls in bfloat16 (controller.train --dream_bfloat16).
    short = DreamDynamics(rnn, short.initial_mu, short.initial_logvar, temperature=DOOM_TEMPERATURE, max_steps=64,
                          bfloat16=True)
    results["dream_bfloat16_1024_steps_per_s"] = _dream_chunk_steps_per_s(DreamEvaluator(short, controller),
                                                                         population)
    results["dream_bfloat16_vs_real_ratio"] = results["dream_bfloat16_1024_steps_per_s"] / real
    full = DreamDynamics(rnn, short.initial_mu, short.initial_logvar, temperature=DOOM_TEMPERATURE, bfloat16=True)
    start = time.perf_counter()
    DreamEvaluator(full, controller)(population, np.arange(16))
    results["dream_bfloat16_generation_64x16_seconds"] = time.perf_counter() - start
    results["dream_vs_real_ratio"] = max(results["dream_float32_vs_real_ratio"],
                                         results["dream_bfloat16_vs_real_ratio"])
    return results


def _dream_chunk_steps_per_s(evaluate, population: np.ndarray, repeats: int = 3) -> float:
    """Dream steps a second of one 64-step chunk of 64 x 16 dreams, the median of `repeats` timed runs after one
    that traces (a single second-long run moved by up to 8 % from one benchmark to the next here)."""
    evaluate(population, np.arange(16))
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        evaluate(population, np.arange(16))
        seconds.append(time.perf_counter() - start)
    return len(population) * 16 * 64 / float(np.median(seconds))


def _case(name: str, work_dir: Path) -> dict:
    if name == "env":
        return benchmark_env()
    if name == "collect":
        return benchmark_collect(work_dir)
    if name == "collect_ray":
        return benchmark_collect_ray(work_dir)
    if name == "vae":
        from run.benchmark_vae import benchmark_vae

        return benchmark_vae(work_dir / "vae")
    if name == "rnn":
        from run.benchmark_rnn import benchmark_rnn

        return benchmark_rnn(work_dir / "rnn")
    if name == "agent":
        return in_fresh_process(_agent_as_worker)
    if name == "dream":
        return benchmark_dream()
    if name == "web":
        from run.benchmark_web import benchmark_web

        return benchmark_web(work_dir)
    raise ValueError(name)


CASES = ("env", "collect", "collect_ray", "vae", "rnn", "agent", "dream", "web")

# What the project is held to: (case, key, ">=" or "<", bound). `--check` fails the run when one is missed, so a
# regression shows up as a non-zero exit.
TARGETS = (
    ("collect", "collect_ratio_2_vs_1", ">=", 1.6),
    ("collect_ray", "collect_ray_vs_processes_ratio", ">=", 0.9),
    ("vae", "vae_files_vs_reference_ratio", ">=", 0.9),
    ("rnn", "rnn_doom_vs_reference_ratio", ">=", 0.8),
    ("rnn", "pipeline_ratio", ">=", 0.9),
    ("agent", "agent_model_share", "<", 0.25),
    ("dream", "dream_vs_real_ratio", ">=", 100.0),
    ("web", "web_page_steps_per_s", ">=", 30.0),
)


def missed_targets(results: dict) -> list[str]:
    """One line per target a measured case missed (cases not run are not judged)."""
    missed = []
    for case, key, relation, bound in TARGETS:
        value = results.get(case, {}).get(key)
        if value is not None and not (value >= bound if relation == ">=" else value < bound):
            missed.append(f"{case}: {key} = {value:.3f}, target {relation} {bound}")
    return missed


def run_benchmarks(cases: list[str], work_dir: Path) -> dict:
    """Runs the named cases in order and returns their figures by case."""
    results = {"machine": {"cpu": cpu_description(), "cores": os.cpu_count()}}
    for name in cases:
        start = time.perf_counter()
        results[name] = _case(name, work_dir)
        results[name]["case_seconds"] = time.perf_counter() - start
        print(f"[{name}]")
        for key, value in results[name].items():
            print(f"  {key:45s} {value:12,.3f}" if isinstance(value, float) else f"  {key:45s} {value}")
    return results


def main(argv) -> None:
    from absl import flags

    FLAGS = flags.FLAGS
    cases = [case for case in FLAGS.cases.split(",") if case]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        raise UserError(f"--cases: unknown {', '.join(unknown)}; choose from {', '.join(CASES)}")
    work_dir = Path(FLAGS.work_dir or tempfile.mkdtemp(prefix="worldmodels-benchmark-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    results = run_benchmarks(cases, work_dir)
    results["missed_targets"] = missed_targets(results)
    write_json(work_dir / "benchmark.json", results)
    print(f"benchmark: results in {work_dir / 'benchmark.json'}")
    for line in results["missed_targets"]:
        print(f"benchmark: missed target: {line}")
    if FLAGS.check and results["missed_targets"]:
        raise SystemExit(1)


if __name__ == "__main__":
    from absl import flags

    flags.DEFINE_string("cases", ",".join(CASES), f"Comma-separated cases: {', '.join(CASES)}.")
    flags.DEFINE_string("work_dir", None, "Folder for the benchmark's data (default: a new temporary one); "
                        "reusing one keeps its collected rollouts (the vae case collects 1,000 episodes).")
    flags.DEFINE_bool("check", False, "Exit 1 when a measured ratio misses its target (TARGETS), to catch "
                      "regressions; run it on an otherwise idle machine.")
    run_main(main)

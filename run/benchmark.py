"""Measures the project's hot paths in one run, so their ratios compare like with like on this machine.

    python -m run.benchmark                      # every case
    python -m run.benchmark --cases=env,collect  # some

Cases:
  env      raw environment steps/s (base env vs. the 64x64 wrapper), CarRacing and Doom at 640x480
  collect  Doom collection frames/s with 1 and with 2 worker processes, and their ratio (target >= 1.6)
  vae      ConvVAE training frames/s through the tf.data pipeline vs. in-memory tensors (target >= 0.9)
  rnn      MDN-RNN training sequences/s, pipeline vs. in-memory (>= 0.9), and next_state latency at batch 1

Results are printed and written to WORK_DIR/benchmark.json.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np


def _steps_per_second(step: Callable[[], bool], reset: Callable[[], None], seconds: float) -> float:
    reset()
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        if step():
            reset()
        steps += 1
    return steps / (time.perf_counter() - start)


def benchmark_env(seconds: float = 5.0) -> dict:
    """Random-action steps/s of each real environment, bare and wrapped to 64x64 frames."""
    import gymnasium as gym

    import envs
    from envs.doom import TakeCover64Env

    results = {}
    for name, make in [("carracing_v3_raw", lambda: gym.make("CarRacing-v3")),
                       ("carracing64", lambda: envs.make_env("carracing")),
                       ("doom64_640x480", lambda: envs.make_env("doom")),
                       ("doom64_320x240", lambda: envs.make_env("doom", resolution="320x240"))]:
        env = make()
        env.action_space.seed(0)

        def step() -> bool:
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            return terminated or truncated

        results[f"{name}_steps_per_s"] = _steps_per_second(step, lambda: env.reset(seed=0), seconds)
        env.close()
    # The bare game: what VizDoom itself costs at the paper's 640x480, without our frame preprocessing.
    game = TakeCover64Env()._start_game()

    def game_step() -> bool:
        game.make_action([0, 0], 1)
        return game.is_episode_finished()

    results["vizdoom_raw_640x480_steps_per_s"] = _steps_per_second(game_step, game.new_episode, seconds)
    game.close()
    return results


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


def _case(name: str, work_dir: Path) -> dict:
    if name == "env":
        return benchmark_env()
    if name == "collect":
        return benchmark_collect(work_dir)
    if name == "vae":
        from vae.benchmark import benchmark_vae

        return benchmark_vae(work_dir / "vae")
    if name == "rnn":
        from rnn.benchmark import benchmark_rnn

        return benchmark_rnn(work_dir / "rnn")
    raise ValueError(name)


CASES = ("env", "collect", "vae", "rnn")


def run_benchmarks(cases: list[str], work_dir: Path) -> dict:
    """Runs the named cases in order and returns their figures by case."""
    results = {"machine": {"cores": os.cpu_count()}}
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

    from run.errors import UserError
    from run.storage import write_json

    FLAGS = flags.FLAGS
    cases = [case for case in FLAGS.cases.split(",") if case]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        raise UserError(f"--cases: unknown {', '.join(unknown)}; choose from {', '.join(CASES)}")
    work_dir = Path(FLAGS.work_dir or tempfile.mkdtemp(prefix="worldmodels-benchmark-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    results = run_benchmarks(cases, work_dir)
    write_json(work_dir / "benchmark.json", results)
    print(f"benchmark: results in {work_dir / 'benchmark.json'}")


if __name__ == "__main__":
    from absl import flags

    from run.errors import run_main

    flags.DEFINE_string("cases", ",".join(CASES), f"Comma-separated cases: {', '.join(CASES)}.")
    flags.DEFINE_string("work_dir", None, "Folder for the benchmark's data (default: a new temporary one).")
    run_main(main)

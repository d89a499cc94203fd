"""CMA-ES over the controller's flat parameters, checkpointed every generation so a killed run resumes exactly.

The search is pycma's ask/tell with the paper's settings (x0 = 0, sigma0 = 0.1, population 64, 16 rollouts per
candidate). Fitness is the mean return minus a weight decay 0.01 * mean(theta^2) (the 2018 code's sign rewarded
large weights; here it penalises them, as intended). All candidates of a generation play the same 16 seeds
(common random numbers), so they are ranked on equal footing. pycma draws its samples from a generator of its own
(`NormalSource`), pickled with the strategy, so a resumed run follows the uninterrupted one exactly.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cma
import numpy as np

from common.errors import DataError
from common.paper import ES_EVAL_EVERY, ES_EVAL_ROLLOUTS, ES_GENERATIONS, ES_POPSIZE, ES_ROLLOUTS, ES_SIGMA
from common.progress import format_duration
from common.seeding import derive_seed
from common.storage import atomic_path, write_json

# evaluate(population (N, P), seeds (R,)) -> returns (N, R)
Evaluator = Callable[[np.ndarray, np.ndarray], np.ndarray]

EVAL_SEED_OFFSET = 1_000_000  # evaluation seeds never coincide with training seeds


@dataclasses.dataclass(frozen=True)
class ESConfig:
    """CMA-ES settings; defaults are the paper's."""

    popsize: int = ES_POPSIZE  # CMA-ES population: candidates per generation (paper: 64)
    rollouts: int = ES_ROLLOUTS  # episodes per candidate; fitness is their mean return (paper: 16)
    sigma: float = ES_SIGMA  # initial step size sigma0 (2018 code: 0.1)
    generations: int = ES_GENERATIONS  # the paper's CarRacing agent reached 900 after 1,800 generations
    weight_decay: float = 0.01  # fitness -= weight_decay * mean(theta^2)
    eval_every: int = ES_EVAL_EVERY  # generations between evaluations of the CMA mean (paper: 25)
    eval_rollouts: int = ES_EVAL_ROLLOUTS  # episodes of each evaluation, on fixed seeds (paper: 1,024)
    seed: int = 0  # seed of the search and of every episode


class NormalSource:
    """pycma's source of N(0, 1) numbers (its `randn` option): a seeded generator pickled with its state.

    pycma's default, `np.random.randn`, is a method bound to NumPy's global generator. Pickling the strategy
    pickles a detached copy of that generator, so a resumed strategy sampled from the copy while pycma's step-size
    rule (TPA's consistency check, from the 4th generation on) still drew from the global one: the two streams
    interleaved unlike in the uninterrupted run, which a resume left from its second generation on. With a source
    of its own, the strategy's samples depend on nothing outside the pickle, and NumPy's global state on nothing.
    """

    def __init__(self, seed: int):
        self.generator = np.random.default_rng(seed)

    def __call__(self, *shape: int) -> np.ndarray:
        return self.generator.standard_normal(shape)


@dataclasses.dataclass
class ESState:
    """Everything a resumed run needs: the strategy (with its random source), the history and the best."""

    strategy: Any
    generation: int = 0
    history: list[dict] = dataclasses.field(default_factory=list)
    evaluations: list[dict] = dataclasses.field(default_factory=list)
    best_params: np.ndarray | None = None
    best_fitness: float = -np.inf
    seconds: float = 0.0


def new_state(num_params: int, config: ESConfig, x0: np.ndarray | None = None) -> ESState:
    """A fresh search from `x0` (default zeros, the paper's), seeded by `config.seed`."""
    options = {"popsize": config.popsize, "randn": NormalSource(derive_seed(config.seed, 18)),
               "seed": float("nan"),  # pycma: leave NumPy's global generator alone
               "verbose": -9}
    start = np.zeros(num_params) if x0 is None else np.asarray(x0, float)
    return ESState(strategy=cma.CMAEvolutionStrategy(start, config.sigma, options))


def save_state(path: Path, state: ESState) -> None:
    """Pickles the state atomically: a reader sees the previous generation or this one, never half of one."""
    with atomic_path(path, suffix=".pkl") as tmp:
        with open(tmp, "wb") as f:
            pickle.dump(state, f, protocol=pickle.HIGHEST_PROTOCOL)
            f.flush()
            os.fsync(f.fileno())


def load_state(path: Path) -> ESState:
    try:
        with open(path, "rb") as f:
            state = pickle.load(f)
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError) as error:
        raise DataError(f"{path}: unreadable CMA-ES checkpoint ({type(error).__name__}: {error})") from None
    if not isinstance(state, ESState):
        raise DataError(f"{path}: not a CMA-ES checkpoint")
    return state


def training_seeds(config: ESConfig, generation: int) -> np.ndarray:
    return np.array([derive_seed(config.seed, generation, j) for j in range(config.rollouts)], np.int64)


def evaluation_seeds(config: ESConfig, count: int | None = None) -> np.ndarray:
    """The fixed seeds every evaluation of the CMA mean uses."""
    count = config.eval_rollouts if count is None else count
    return np.array([derive_seed(config.seed, EVAL_SEED_OFFSET, j) for j in range(count)], np.int64)


def fitness_of(returns: np.ndarray, population: np.ndarray, weight_decay: float) -> np.ndarray:
    """Mean return over the rollouts minus `weight_decay * mean(theta^2)` of each candidate."""
    return returns.mean(axis=1) - weight_decay * np.mean(np.square(population), axis=1)


def run_generation(state: ESState, config: ESConfig, evaluate: Evaluator) -> dict:
    """Asks for a population, evaluates it, tells the fitness back; returns the generation's record."""
    start = time.perf_counter()
    population = np.asarray(state.strategy.ask(), np.float64)
    returns = np.asarray(evaluate(population.astype(np.float32), training_seeds(config, state.generation)),
                         np.float64)
    fitness = fitness_of(returns, population, config.weight_decay)
    state.strategy.tell(list(population), list(-fitness))  # pycma minimises
    best = int(np.argmax(fitness))
    if fitness[best] > state.best_fitness:
        state.best_fitness, state.best_params = float(fitness[best]), population[best].astype(np.float32)
    seconds = time.perf_counter() - start
    state.seconds += seconds
    record = {"generation": state.generation, "best": float(returns.mean(axis=1)[best]),
              "worst": float(returns.mean(axis=1).min()), "mean": float(returns.mean()),
              "std": float(returns.mean(axis=1).std()), "fitness_best": float(fitness[best]),
              "sigma": float(state.strategy.sigma), "seconds": seconds, "fitness": fitness.tolist()}
    state.history.append(record)
    state.generation += 1
    return record


def evaluate_mean(state: ESState, config: ESConfig, evaluate: Evaluator) -> dict:
    """Scores the CMA mean (not the best sample) on the fixed evaluation seeds, as the paper did."""
    mean = np.asarray(state.strategy.mean, np.float32)[None]
    returns = np.asarray(evaluate(mean, evaluation_seeds(config)), np.float64)[0]
    record = {"generation": state.generation, "mean": float(returns.mean()), "std": float(returns.std()),
              "episodes": int(returns.size)}
    state.evaluations.append(record)
    return record


def generation_line(record: dict, state: ESState, config: ESConfig) -> str:
    done = state.generation
    per_generation = state.seconds / max(len(state.history), 1)
    eta = (config.generations - done) * per_generation
    return (f"generation {record['generation'] + 1}/{config.generations}: best {record['best']:.1f}, "
            f"mean {record['mean']:.1f}, worst {record['worst']:.1f}, sigma {record['sigma']:.4f}, "
            f"{record['seconds']:.1f}s, ETA {format_duration(eta)}")


def write_history(path: Path, state: ESState, selected: dict | None = None) -> None:
    """The generations' records and the evaluations (a controller run's `history.json`); `selected`: the real
    check whose CMA mean the run kept as its C (`--select_by_real_check`)."""
    write_json(path, {"generations": state.history, "evaluations": state.evaluations,
                      "best_fitness": state.best_fitness, **({"selected": selected} if selected else {})})


def kept_evaluation(history: dict) -> dict | None:
    """The CMA mean's evaluation that describes the C a run kept (from its `history.json`): the one at the
    selected real check's generation if the run kept that mean (the last before it if none was made there), else
    the last; None without evaluations."""
    evaluations = [e for e in history.get("evaluations", []) if "mean" in e]
    selected = history.get("selected")
    if selected:
        evaluations = [e for e in evaluations if e["generation"] <= selected["generation"]]
    return evaluations[-1] if evaluations else None

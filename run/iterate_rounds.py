"""The paper's iterative rounds (run.iterate): the config, each round's stage configs and steps, and the progress
table. Round k is an experiment folder of its own, `DIR/iterate/round_k/` (`ExperimentLayout.round(k)`)."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

from common.errors import UserError
from common.flags import ConfigFlags
from common.layout import DREAM_ENVS, ControllerRun, ExperimentLayout, experiment
from common.paper import DOOM_RESOLUTION, EPISODE_STEPS, EVAL_EPISODES
from common.seeding import derive_seed
from common.storage import file_digest, read_json, write_json, write_text
from controller.es import ESConfig, kept_evaluation
from controller.evaluate import EvaluateConfig, evaluate_controller
from controller.interface import CONTROLLERS
from controller.train import FINETUNE_FIELDS, ControllerTrainConfig, train_controller
from rnn.model import load_rnn
from rnn.train import RNNTrainConfig, train_rnn
from run.collect import CollectConfig, collect_rollouts
from run.dream_audit import TASK_POLICIES, AuditConfig, audit_dream
from run.report_tables import round_data, score
from vae.encode import encode_rollouts

TRAIN_ENV = {"doom": "doomrnn", "carracing": "carracing"}
# M's fine-tuning each round, where it differs from training from scratch: the prototype's one successful round
# (1,000 steps), validated every 100 steps on a tenth of the round's own episodes.
FINE_TUNE = RNNTrainConfig(steps=1000, eval_every=100, val_fraction=0.1)


@dataclasses.dataclass(frozen=True)
class IterateConfig:
    """The rounds' budget, and the M and C configs each round fine-tunes and retrains with (per round, the round
    sets their env, workers, episode cap, seeds, warm start and C's generations)."""

    env: str = "doom"  # doom (C retrained in M's dream) or carracing (C retrained in the real game on M's h)
    controller_env: str | None = None  # where C retrains; None: the task's (doomrnn, carracing), or carracingrnn:
    # CarRacing in the dream of an M with a reward output
    rounds: int = 1  # iterative rounds to run after round 0
    episodes_per_round: int = 600  # real episodes collected with the current controller each round
    explore: float = 0.3  # chance per step of starting a random action held 1-10 frames while collecting
    explore_episodes: float = 1.0  # share of those episodes that explore; the others are C's own play to the end
    generations: tuple[int, ...] = (40,)  # CMA-ES generations of C per round (20,60: the last value repeats)
    eval_episodes: int = EVAL_EPISODES  # real episodes scoring each round's controller
    audit_episodes: int = 0  # Doom: episodes per policy of a dream audit after each round (0: none)
    hole_episodes: int = 0  # real episodes of each fixed policy the last audit flagged as a hole (0: none)
    workers: int = 2  # processes playing real episodes
    backend: str = "processes"  # where real episodes run: processes (this machine) or ray (a Ray cluster's nodes)
    ray_address: str | None = None  # --backend=ray: auto joins the cluster `ray start` runs; HOST:PORT a given
    # head; unset starts a local Ray
    seed: int = 0  # round k's seeds are derived from (seed, k)
    max_steps: int | None = None  # episode cap in the game and while C trains; None: CarRacing 1,000, Doom 2,100
    doom_resolution: str = DOOM_RESOLUTION  # real Doom's render size
    rnn: RNNTrainConfig = FINE_TUNE  # M's fine-tuning (size and mixtures stay the last round's M's)
    controller: ControllerTrainConfig = ControllerTrainConfig()  # C's retraining: tau, CMA-ES, real checks
    round_controller: str | None = None  # C's variant in rounds >= 1 where it is not round 0's (z, z_hidden,
    # full): round 1 then trains it from scratch in its new dream
    round_temperature: float | None = None  # the dream's tau in rounds >= 1 where it is not round 0's

    def validated(self) -> IterateConfig:
        if self.env not in TRAIN_ENV:
            raise UserError(f"--env={self.env}: choose from {', '.join(TRAIN_ENV)}")
        allowed = (TRAIN_ENV[self.env], *(env for env, task in DREAM_ENVS.items() if task == self.env))
        if self.controller_env is not None and self.controller_env not in allowed:
            raise UserError(f"--controller_env={self.controller_env}: a {self.env} controller retrains in "
                            f"{' or '.join(dict.fromkeys(allowed))}")
        for name in ("rounds", "episodes_per_round", "eval_episodes", "workers"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name}={getattr(self, name)}: must be at least 1")
        if self.rnn.steps is None or self.rnn.steps < 1:
            raise UserError(f"--rnn_steps={self.rnn.steps}: must be at least 1")
        parse_generations(",".join(map(str, self.generations)))
        for name in ("explore", "explore_episodes"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise UserError(f"--{name}={getattr(self, name)}: must be in [0, 1]")
        if self.hole_episodes < 0:
            raise UserError(f"--hole_episodes={self.hole_episodes}: must be at least 0")
        if self.round_temperature is not None and not self.round_temperature > 0:
            raise UserError(f"--round_temperature={self.round_temperature}: must be positive")
        if self.round_controller is not None:  # an unknown name fails before any round runs
            try:
                CONTROLLERS.resolve(self.round_controller)
            except UserError as error:
                raise UserError(f"--round_controller: {error}") from None
        if self.hole_episodes and not (self.in_dream and self.audit_episodes):
            raise UserError(f"--hole_episodes={self.hole_episodes}: needs the dream audit (C trained in a dream "
                            "and --audit_episodes >= 1), which names the holes")
        return dataclasses.replace(self, max_steps=self.max_steps or EPISODE_STEPS[self.env])

    @property
    def train_env(self) -> str:
        """Where C trains: the dream for Doom (the paper's Take Cover procedure), the real game for CarRacing
        unless `controller_env` puts it in the dream too."""
        return self.controller_env or TRAIN_ENV[self.env]

    @property
    def in_dream(self) -> bool:
        return self.train_env in DREAM_ENVS

    @property
    def temperature(self) -> float:
        """The dream's tau in rounds >= 1 (C's training, the audit)."""
        return self.controller_of(1).temperature

    def controller_of(self, k: int) -> ControllerTrainConfig:
        """Round k's C: round 0's is `controller`; later rounds' take `round_controller` and `round_temperature`
        where given."""
        if k == 0:
            return self.controller
        return dataclasses.replace(
            self.controller, controller=self.round_controller or self.controller.controller,
            temperature=self.controller.temperature if self.round_temperature is None else self.round_temperature)

    def generations_of(self, k: int) -> int:
        """Round k's CMA-ES generations (k >= 1): the k-th value, or the last for rounds beyond the list."""
        return self.generations[min(k, len(self.generations)) - 1]


def parse_generations(text: str, flag: str = "generations") -> tuple[int, ...]:
    """'20,60,30' -> (20, 60, 30): generations per round, from the flag named `flag`."""
    try:
        generations = tuple(int(part) for part in str(text).split(","))
    except ValueError:
        generations = ()
    if not generations or min(generations) < 1:
        raise UserError(f"--{flag}={text}: give one whole number >= 1 per round, separated by commas")
    return generations


# A round's own episodes in its series/ (earlier rounds' are linked in as ep_rNN_*). M is validated, and the
# fine-tuned M picked, on these: on a validation set drawn from all data, mostly random play, round 0's M (which
# never saw the controller's wall-hugging) stayed the best and the hole stayed open.
OWN_EPISODES = "ep[0-9]*.npz"


def controller_run(layout: ExperimentLayout, config: IterateConfig, k: int) -> ControllerRun:
    """The C round k trains (the config's variant, the paper's full C by default): in the dream at its tau, or in
    the real game (CarRacing without --controller_env=carracingrnn)."""
    controller = config.controller_of(k)
    return layout.controller_run(config.train_env, controller.controller,
                                 controller.temperature if config.in_dream else None)


def _link(source: Path, target: Path) -> None:
    """A relative symlink, so that a moved or copied experiment still finds its earlier rounds."""
    if not target.exists() and not target.is_symlink():
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(source.resolve(), target.parent.resolve()), target)


def _link_series(base: ExperimentLayout, k: int) -> None:
    """Round k's series/ sees every earlier round's own episodes and every round's hole episodes, under names
    that cannot collide (and do not match OWN_EPISODES: M is validated on the controller's play only)."""
    series = base.round(k).series
    for j in range(k + 1):
        if j < k:
            for path in sorted(base.round(j).series.glob(OWN_EPISODES)):
                _link(path, series / f"ep_r{j:02d}_{path.name}")
        layout = base.round(j)
        hole_series = layout.holes("*").relative_to(layout.root) / "series" / OWN_EPISODES
        for path in sorted(layout.root.glob(str(hole_series))):
            _link(path, series / f"ep_r{j:02d}_{path.parent.parent.name}_{path.name}")


def flagged_holes(layout: ExperimentLayout, env: str = "doom") -> list[str]:
    """The fixed policies (envs.policies names) that the experiment's dream audit flagged as holes (the controller
    is not one: its episodes are each round's collection)."""
    rows = read_json(layout.dream_audit)["rows"] if layout.dream_audit.exists() else []
    names = TASK_POLICIES[env]
    return [names[row["policy"]] for row in rows if row["hole"] and row["policy"] in names]


def _collect_holes(base: ExperimentLayout, k: int, config: IterateConfig, say) -> list[str]:
    """Round k's real episodes of every fixed policy round k-1's audit flagged, each encoded by round 0's V."""
    holes = flagged_holes(base.round(k - 1), config.env) if config.hole_episodes else []
    for index, policy in enumerate(holes):
        say(f"iterate: round {k}: {config.hole_episodes} real episodes of '{policy}', a hole in round {k - 1}'s "
            "dream")
        folder = experiment(base.round(k).holes(policy))
        collect_rollouts(folder.root, CollectConfig(
            env=config.env, episodes=config.hole_episodes, workers=config.workers, backend=config.backend,
            ray_address=config.ray_address, seed=derive_seed(config.seed, k, 3, index), max_steps=config.max_steps,
            policy=policy,
            doom_resolution=config.doom_resolution), verbose=False)
        encode_rollouts(folder.root, model_path=base.vae_model, verbose=False)
    return holes


def _evaluate(layout: ExperimentLayout, config: IterateConfig, k: int, say) -> dict:
    run = controller_run(layout, config, k)
    if run.evaluation(config.env).exists():
        result = read_json(run.evaluation(config.env))
        if (result.get("episodes") == config.eval_episodes
                and result.get("controller_sha256") == file_digest(run.controller)):
            say(f"iterate: {layout.root.name}: real evaluation already done")
            return result
    return evaluate_controller(layout.root, EvaluateConfig(
        env=config.env, episodes=config.eval_episodes, controller_file=str(run.controller), workers=config.workers,
        backend=config.backend, ray_address=config.ray_address, seed=config.seed, max_steps=config.max_steps,
        doom_resolution=config.doom_resolution))


def _audit(layout: ExperimentLayout, config: IterateConfig, k: int, say) -> None:
    """Round k's dream audit (fixed policies and its controller, dream vs game), unless done or not asked."""
    if not config.in_dream:
        return  # C trained in the real game: no dream to audit
    recorded = read_json(layout.dream_audit) if layout.dream_audit.exists() else {}
    controller = controller_run(layout, config, k).controller
    temperature = config.controller_of(k).temperature
    wanted = {"episodes": config.audit_episodes, "temperature": temperature,
              "controller_sha256": file_digest(controller)}
    if not config.audit_episodes or all(recorded.get(key) == value for key, value in wanted.items()):
        return
    say(f"iterate: {layout.root.name}: dream audit, {config.audit_episodes} episodes per policy")
    audit_dream(layout.root, AuditConfig(env=config.env, episodes=config.audit_episodes,
                                         temperature=temperature, max_steps=config.max_steps,
                                         controller_file=str(controller),
                                         workers=config.workers, backend=config.backend,
                                         ray_address=config.ray_address, seed=config.seed,
                                         doom_resolution=config.doom_resolution), verbose=False)


def _dream_score(layout: ExperimentLayout, config: IterateConfig, k: int) -> dict | None:
    """The dream evaluation of the CMA mean round k kept (`kept_evaluation`); None for C trained in the real
    game."""
    history = controller_run(layout, config, k).history
    if not config.in_dream or not history.exists():
        return None
    return kept_evaluation(read_json(history))


# ---- round k's stage configs ----

def collect_config(base: ExperimentLayout, k: int, config: IterateConfig) -> CollectConfig:
    """Round k's real episodes: round k-1's C, exploring in a share of them, reading round k-1's V and M."""
    previous = base.round(k - 1)
    return CollectConfig(
        env=config.env, episodes=config.episodes_per_round, workers=config.workers, backend=config.backend,
        ray_address=config.ray_address, seed=derive_seed(config.seed, k),
        max_steps=config.max_steps, policy="controller",
        controller_file=str(controller_run(previous, config, k - 1).controller), explore=config.explore,
        explore_episodes=config.explore_episodes, models_dir=str(previous.root), doom_resolution=config.doom_resolution)


def rnn_config(base: ExperimentLayout, k: int, config: IterateConfig) -> RNNTrainConfig:
    """Round k's M: round k-1's, fine-tuned on every round's data, validated on round k's own episodes."""
    previous = base.round(k - 1).rnn_model
    # the paper's Doom M also predicts death; a CarRacing M may (the dream's), and keeps what it has
    previous_rnn = load_rnn(previous, expect={"predict_done": True} if config.env == "doom" else None)
    predict_done = previous_rnn.predict_done
    return dataclasses.replace(
        config.rnn, hidden=previous_rnn.hidden_size, num_mixtures=previous_rnn.num_mixtures,
        predict_done=predict_done, checkpoint_every=config.rnn.eval_every, val_pattern=OWN_EPISODES,
        seed=derive_seed(config.seed, k, 1), init_model=str(previous))


def controller_config(base: ExperimentLayout, k: int, config: IterateConfig) -> ControllerTrainConfig:
    """Round k's C: retrained with the new M, warm-started from round k-1's CMA mean (from scratch where round k-1
    trained another variant); in the dream (or game) only: the pipeline's finetune stage fine-tunes the last
    round's C in the real game, not every round's."""
    controller = config.controller_of(k)
    es = dataclasses.replace(controller.es, generations=config.generations_of(k),
                             seed=derive_seed(config.seed, k, 2))
    same_variant = config.controller_of(k - 1).controller == controller.controller
    return dataclasses.replace(
        controller.without_finetuning(), env=config.train_env, es=es, workers=config.workers,
        backend=config.backend, ray_address=config.ray_address,
        max_steps=config.max_steps, doom_resolution=config.doom_resolution,
        init_file=str(controller_run(base.round(k - 1), config, k - 1).controller) if same_variant else None)


def run_round(base: ExperimentLayout, k: int, config: IterateConfig, say=print) -> dict:
    """Round k (>= 1): collect with round k-1's controller, encode, fine-tune M, retrain C, evaluate."""
    layout = experiment(base.round(k).root)
    previous_controller = controller_run(base.round(k - 1), config, k - 1).controller
    if not previous_controller.exists():
        raise UserError(f"{previous_controller}: round {k - 1} has no controller; train it first")
    times = {}
    _link(base.vae_model, layout.vae_model)  # V stays round 0's

    start = time.perf_counter()
    say(f"iterate: round {k}: collecting {config.episodes_per_round} real episodes with round {k - 1}'s "
        f"controller (explore {config.explore:g} in {config.explore_episodes:.0%} of them)")
    collect_rollouts(layout.root, collect_config(base, k, config))
    holes = _collect_holes(base, k, config, say)
    times["collect"] = time.perf_counter() - start

    start = time.perf_counter()
    _link_series(base, k)
    encode_rollouts(layout.root, verbose=False)
    times["encode"] = time.perf_counter() - start

    start = time.perf_counter()
    say(f"iterate: round {k}: fine-tuning M from round {k - 1}'s on "
        f"{len(list(layout.series.glob('ep*.npz')))} episodes")
    train_rnn(layout.root, rnn_config(base, k, config), verbose=False)
    times["rnn"] = time.perf_counter() - start

    start = time.perf_counter()
    train_controller(layout.root, controller_config(base, k, config), verbose=False)
    times["controller"] = time.perf_counter() - start

    start = time.perf_counter()
    result = _evaluate(layout, config, k, say)
    times["evaluate"] = time.perf_counter() - start
    _audit(layout, config, k, say)
    return {"round": k, "real_mean": result["mean"], "real_std": result["std"], "real_episodes": result["episodes"],
            "dream": _dream_score(layout, config, k), "holes": holes, "seconds": times,
            "folder": str(layout.root)}


def _check_round_zero(base: ExperimentLayout, config: IterateConfig) -> None:
    needs = [base.vae_model, base.rnn_model, controller_run(base, config, 0).controller]
    for needed in needs + ([base.initial_z] if config.in_dream else []):
        if not needed.exists():
            where = f"in the dream at tau {config.controller.temperature:g}" if config.in_dream else "in the real game"
            raise UserError(f"{needed}: missing; round 0 needs V, M, series and a {config.controller.controller} C "
                            f"trained {where} (run.pipeline --config={config.env}_small makes them)")


def iterate(exp_dir, config: IterateConfig, verbose: bool = True) -> list[dict]:
    """Round 0's real score (evaluated if missing), then rounds 1..K; returns and writes the progression."""
    config = config.validated()
    say = print if verbose else (lambda *args, **kwargs: None)
    base = experiment(exp_dir, create=False)
    _check_round_zero(base, config)
    zero = _evaluate(base, config, 0, say)
    rounds = [{"round": 0, "real_mean": zero["mean"], "real_std": zero["std"], "real_episodes": zero["episodes"],
               "dream": _dream_score(base, config, 0), "seconds": {}, "folder": str(base.root)}]
    say(f"iterate: round 0 ({round_data(rounds[0], base)}): {zero['mean']:.0f} ± {zero['std']:.0f} real")
    _audit(base, config, 0, say)  # where round 0's controller exploits M, for comparison with later rounds
    for k in range(1, config.rounds + 1):
        rounds.append(run_round(base, k, config, say))
        say(f"iterate: round {k}: {rounds[-1]['real_mean']:.0f} ± {rounds[-1]['real_std']:.0f} real")
        # "temperature" at the top as well, the later rounds': the report reads it there (as in progress files
        # written before)
        write_json(base.iterate_progress, {"config": {**dataclasses.asdict(config), "temperature": config.temperature},
                                         "rounds": rounds})
        write_text(base.iterate_table, progress_markdown(rounds, base, dream=config.in_dream))
    return rounds


def _audit_cell(audit: Path, report_dir: Path) -> str:
    """A link when the audit sits beside the table (round 0), else its path in the experiment folder as text (the
    report inlines every round's audit; a committed copy of the report folder must hold no link out of it)."""
    if not audit.exists():
        return "not run"
    if audit.parent == report_dir:
        return f"[table]({audit.name})"
    return f"`{os.path.relpath(audit, report_dir.parent)}` (in the experiment folder)"


def progress_markdown(rounds: list[dict], base: ExperimentLayout, dream: bool = True) -> str:
    """The rounds of the experiment `base` as a Markdown table (with the dream's columns when C trains in one);
    links are relative to its report folder, where the file lives."""
    lines = ["| round | data | real score |" + (" dream score (CMA mean) | audit |" if dream else ""),
             "|---|---|---|" + ("---|---|" if dream else "")]
    for row in rounds:
        line = (f"| {row['round']} | {round_data(row, base)} | {row['real_mean']:.0f} ± {row['real_std']:.0f} "
                f"({row['real_episodes']} episodes) |")
        if dream:
            audit = ExperimentLayout(Path(row["folder"])).dream_audit_markdown
            line += f" {score(row.get('dream'))} | {_audit_cell(audit, base.report)} |"
        lines.append(line)
    return "\n".join(lines) + "\n"


# The entry point's defaults: the config's (the paper's), except C's evaluations during each round's short
# retraining, which are more frequent and smaller (every 10 generations on 256 episodes; the paper's 25 and
# 1,024 suit 1,800 generations, not 40).
ENTRY_DEFAULTS = IterateConfig(controller=ControllerTrainConfig(es=ESConfig(eval_every=10, eval_rollouts=256)))
ITERATE_FLAGS = ConfigFlags(
    IterateConfig, defaults=ENTRY_DEFAULTS, names={"rnn": "rnn_"},
    skip=frozenset({"rnn.hidden", "rnn.num_mixtures", "rnn.predict_done", "rnn.checkpoint_every", "rnn.val_pattern",
                    "rnn.seed", "rnn.resume", "rnn.init_model", "rnn.rnn", "rnn.rnn_cell",  # M follows the last round's
                    "controller.env",
                    "controller.workers", "controller.max_steps", "controller.doom_resolution",
                    "controller.backend", "controller.ray_address",
                    "controller.init_file", "controller.es.generations", "controller.es.seed",
                    *(f"controller.{name}" for name in FINETUNE_FIELDS),  # rounds train in the dream only
                    "controller_env"}))  # the pipeline sets it (--controller_env=carracingrnn)

"""The paper's iterative training (after Learning to Think): play the current controller in the real game,
improve M on what it saw, retrain C with the improved M, repeat.

    python -m run.iterate --exp_dir=DIR --rounds=2 --episodes_per_round=600 --explore=0.3 [--env=carracing]

DIR is round 0: an experiment trained on random data (V, M, series, and C: for Doom trained in the dream, e.g.
by `run.pipeline --config=doom_small`; for CarRacing the full [z, h] C trained in the real game). Round k lives
in DIR/iterate/round_k/, an experiment folder of its own:
  rollouts/  real episodes of round k-1's controller, with random held actions mixed in (`--explore`) in a
             share of them (`--explore_episodes`)
  holes/<policy>/ (Doom, `--hole_episodes`) real episodes of each fixed policy round k-1's audit flagged as
             a hole (e.g. always_right), so M learns what the game really does there, not only where C went
  series/    their encoding by V (V stays round 0's) plus links to every earlier round's series
  rnn/       M fine-tuned from round k-1's weights on all series so far
  controller/doomrnn_full_t<tau>/ (Doom: C retrained in the new dream) or carracing_full/ (CarRacing: C retrained
             in the real game on the new M's h), warm-started from round k-1's CMA mean, with its real evaluation
and, for Doom with --audit_episodes, report/dream_audit.md. Each step resumes or is skipped when done, so a
killed round resumes. DIR/iterate/progress.json and DIR/report/iterate.md sum the rounds up: real (and dream)
scores per round, beside round 0's (random data only).

Why: a Doom prototype here scored 163 ± 45 with random data only (M had learnt that hugging a wall is safe) and
768 ± 498 after one round. In CarRacing, random driving rarely goes fast along the track: M sees that only in
the controller's episodes.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

from common.errors import UserError
from common.layout import ExperimentLayout, experiment
from common.seeding import derive_seed
from common.storage import file_digest, read_json, write_json, write_text

TRAIN_ENV = {"doom": "doomrnn", "carracing": "carracing"}


@dataclasses.dataclass(frozen=True)
class IterateConfig:
    env: str = "doom"  # doom (C trains in M's dream) or carracing (C trains in the real game on M's h)
    rounds: int = 1
    episodes_per_round: int = 600  # the prototype's one successful round
    explore: float = 0.3  # chance a step starts a random action held 1-10 frames
    explore_episodes: float = 1.0  # share of the round's episodes that explore; the rest are C's own play
    temperature: float = 1.15  # Doom: the dream's tau
    rnn_steps: int = 1000  # fine-tuning steps of M per round
    rnn_learning_rate: float = 1e-3  # Adam's starting rate when fine-tuning M (2018 code's rate)
    rnn_eval_every: int = 100  # steps between M's validations on the round's own episodes
    rnn_val_fraction: float = 0.1  # share of the round's own episodes held out to pick M
    rnn_batch_size: int | None = None  # None: the paper's (100)
    rnn_seq_len: int | None = None  # None: the paper's (CarRacing 999, Doom 500)
    popsize: int = 64
    rollouts: int = 16
    generations: tuple[int, ...] = (40,)  # CMA-ES generations of C, per round; the last value repeats
    sigma: float = 0.1
    eval_every: int = 10
    eval_rollouts: int = 256
    real_eval_every: int = 0  # Doom: also play the CMA mean in the real game every K generations (0: never)
    eval_episodes: int = 100  # real episodes scoring each round's controller
    audit_episodes: int = 0  # Doom: episodes per policy of a dream audit; 0: no audit
    hole_episodes: int = 0  # Doom: real episodes of each fixed policy the last audit flagged as a hole (0: none)
    workers: int = 2
    seed: int = 0
    max_steps: int | None = None  # None: the task's limit (CarRacing 1,000, Doom 2,100)
    doom_resolution: str = "640x480"

    def validated(self) -> IterateConfig:
        from run.collect import MAX_STEPS

        if self.env not in TRAIN_ENV:
            raise UserError(f"--env={self.env}: choose from {', '.join(TRAIN_ENV)}")
        for name in ("rounds", "episodes_per_round", "rnn_steps", "eval_episodes", "workers"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name}={getattr(self, name)}: must be at least 1")
        parse_generations(",".join(map(str, self.generations)))
        for name in ("explore", "explore_episodes"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise UserError(f"--{name}={getattr(self, name)}: must be in [0, 1]")
        if self.hole_episodes < 0:
            raise UserError(f"--hole_episodes={self.hole_episodes}: must be at least 0")
        if self.hole_episodes and not (self.env == "doom" and self.audit_episodes):
            raise UserError(f"--hole_episodes={self.hole_episodes}: needs the Doom dream audit "
                            "(--env=doom and --audit_episodes >= 1), which names the holes")
        return dataclasses.replace(self, max_steps=self.max_steps or MAX_STEPS[self.env])

    @property
    def train_env(self) -> str:
        """Where C trains: the dream for Doom (the paper's Take Cover procedure), the real game for CarRacing."""
        return TRAIN_ENV[self.env]

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


def controller_folder(layout: ExperimentLayout, config: IterateConfig) -> Path:
    from controller.rollouts import controller_dir

    return controller_dir(layout.controller, config.train_env, "full", config.temperature)


def round_dir(root: Path, k: int) -> Path:
    return root if k == 0 else root / "iterate" / f"round_{k:02d}"


def _link(source: Path, target: Path) -> None:
    """A relative symlink, so that a moved or copied experiment still finds its earlier rounds."""
    if not target.exists() and not target.is_symlink():
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(source.resolve(), target.parent.resolve()), target)


def _link_series(root: Path, k: int, series: Path) -> None:
    """Round k's series/ sees every earlier round's own episodes and every round's hole episodes, under names
    that cannot collide (and do not match OWN_EPISODES: M is validated on the controller's play only)."""
    for j in range(k + 1):
        if j < k:
            for path in sorted((round_dir(root, j) / "series").glob(OWN_EPISODES)):
                _link(path, series / f"ep_r{j:02d}_{path.name}")
        for path in sorted((round_dir(root, j) / "holes").glob(f"*/series/{OWN_EPISODES}")):
            _link(path, series / f"ep_r{j:02d}_{path.parent.parent.name}_{path.name}")


def flagged_holes(layout: ExperimentLayout) -> list[str]:
    """The fixed policies (controller.policies names) that the experiment's dream audit flagged as holes."""
    from run.dream_audit import POLICY_NAMES

    audit = layout.report / "dream_audit.json"
    rows = read_json(audit)["rows"] if audit.exists() else []
    return [POLICY_NAMES[row["policy"]] for row in rows if row["hole"] and row["policy"] in POLICY_NAMES]


def _collect_holes(root: Path, k: int, previous: ExperimentLayout, config: IterateConfig, say) -> list[str]:
    """Round k's real episodes of every fixed policy round k-1's audit flagged, each encoded by round 0's V."""
    from run.collect import CollectConfig, collect_rollouts
    from vae.encode import encode_rollouts

    holes = flagged_holes(previous) if config.hole_episodes else []
    for index, policy in enumerate(holes):
        say(f"iterate: round {k}: {config.hole_episodes} real episodes of '{policy}', a hole in round {k - 1}'s "
            "dream")
        folder = experiment(round_dir(root, k) / "holes" / policy)
        collect_rollouts(folder.root, CollectConfig(
            env="doom", episodes=config.hole_episodes, workers=config.workers,
            seed=derive_seed(config.seed, k, 3, index), max_steps=config.max_steps, policy=policy,
            doom_resolution=config.doom_resolution), verbose=False)
        encode_rollouts(folder.root, model_path=experiment(root, create=False).vae_model, verbose=False)
    return holes


def _evaluate(layout: ExperimentLayout, config: IterateConfig, say) -> dict:
    from controller.evaluate import EvaluateConfig, evaluate_controller

    controller_file = controller_folder(layout, config) / "controller.json"
    result_file = controller_file.parent / f"evaluation_{config.env}.json"
    if result_file.exists():
        result = read_json(result_file)
        if (result.get("episodes") == config.eval_episodes
                and result.get("controller_sha256") == file_digest(controller_file)):
            say(f"iterate: {layout.root.name}: real evaluation already done")
            return result
    return evaluate_controller(layout.root, EvaluateConfig(
        env=config.env, episodes=config.eval_episodes, controller_file=str(controller_file), workers=config.workers,
        seed=config.seed, max_steps=config.max_steps, doom_resolution=config.doom_resolution))


def _audit(layout: ExperimentLayout, config: IterateConfig, say) -> None:
    """The round's dream audit (fixed policies and its controller, dream vs game), unless done or not asked."""
    from run.dream_audit import AuditConfig, audit_dream

    if config.env != "doom":
        return  # CarRacing's C does not train in a dream
    done = layout.report / "dream_audit.json"
    recorded = read_json(done) if done.exists() else {}
    wanted = {"episodes": config.audit_episodes, "temperature": config.temperature,
              "controller_sha256": file_digest(controller_folder(layout, config) / "controller.json")}
    if not config.audit_episodes or all(recorded.get(key) == value for key, value in wanted.items()):
        return
    say(f"iterate: {layout.root.name}: dream audit, {config.audit_episodes} episodes per policy")
    audit_dream(layout.root, AuditConfig(episodes=config.audit_episodes, temperature=config.temperature,
                                         workers=config.workers, seed=config.seed,
                                         doom_resolution=config.doom_resolution), verbose=False)


def _dream_score(layout: ExperimentLayout, config: IterateConfig) -> dict | None:
    """The CMA mean's last evaluation in the dream (Doom); None for C trained in the real game."""
    history = controller_folder(layout, config) / "history.json"
    if config.env != "doom" or not history.exists():
        return None
    evaluations = [e for e in read_json(history)["evaluations"] if "mean" in e]
    return evaluations[-1] if evaluations else None


def run_round(root: Path, k: int, config: IterateConfig, say=print) -> dict:
    """Round k (>= 1): collect with round k-1's controller, encode, fine-tune M, retrain C, evaluate."""
    from controller.es import ESConfig
    from controller.train import ControllerTrainConfig, train_controller
    from rnn.model import load_rnn
    from rnn.train import RNNTrainConfig, train_rnn
    from run.collect import CollectConfig, collect_rollouts
    from vae.encode import encode_rollouts

    previous = experiment(round_dir(root, k - 1), create=False)
    layout = experiment(round_dir(root, k))
    previous_controller = controller_folder(previous, config) / "controller.json"
    if not previous_controller.exists():
        raise UserError(f"{previous_controller}: round {k - 1} has no controller; train it first")
    times = {}
    _link(experiment(root, create=False).vae_model, layout.vae_model)  # V stays round 0's

    start = time.perf_counter()
    say(f"iterate: round {k}: collecting {config.episodes_per_round} real episodes with round {k - 1}'s "
        f"controller (explore {config.explore:g} in {config.explore_episodes:.0%} of them)")
    collect_rollouts(layout.root, CollectConfig(
        env=config.env, episodes=config.episodes_per_round, workers=config.workers, seed=derive_seed(config.seed, k),
        max_steps=config.max_steps, policy="controller", controller_file=str(previous_controller),
        explore=config.explore, explore_episodes=config.explore_episodes, models_dir=str(previous.root),
        doom_resolution=config.doom_resolution))
    holes = _collect_holes(root, k, previous, config, say)
    times["collect"] = time.perf_counter() - start

    start = time.perf_counter()
    _link_series(root, k, layout.series)
    encode_rollouts(layout.root, verbose=False)
    times["encode"] = time.perf_counter() - start

    start = time.perf_counter()
    predict_done = config.env == "doom"  # the paper's Doom M also predicts death; its CarRacing M does not
    previous_rnn = load_rnn(previous.rnn_model, expect={"predict_done": predict_done})
    say(f"iterate: round {k}: fine-tuning M from round {k - 1}'s on "
        f"{len(list(layout.series.glob('ep*.npz')))} episodes")
    train_rnn(layout.root, RNNTrainConfig(
        steps=config.rnn_steps, batch_size=config.rnn_batch_size, seq_len=config.rnn_seq_len,
        hidden=previous_rnn.hidden_size, num_mixtures=previous_rnn.num_mixtures, predict_done=predict_done,
        learning_rate=config.rnn_learning_rate, eval_every=config.rnn_eval_every,
        checkpoint_every=config.rnn_eval_every, val_fraction=config.rnn_val_fraction, val_pattern=OWN_EPISODES,
        seed=derive_seed(config.seed, k, 1), init_model=str(previous.rnn_model)), verbose=False)
    times["rnn"] = time.perf_counter() - start

    start = time.perf_counter()
    es = ESConfig(popsize=config.popsize, rollouts=config.rollouts, sigma=config.sigma,
                  generations=config.generations_of(k), eval_every=config.eval_every,
                  eval_rollouts=config.eval_rollouts, seed=derive_seed(config.seed, k, 2))
    train_controller(layout.root, ControllerTrainConfig(
        env=config.train_env, es=es, workers=config.workers, temperature=config.temperature,
        max_steps=config.max_steps, doom_resolution=config.doom_resolution,
        real_eval_every=config.real_eval_every, init_file=str(previous_controller)), verbose=False)
    times["controller"] = time.perf_counter() - start

    start = time.perf_counter()
    result = _evaluate(layout, config, say)
    times["evaluate"] = time.perf_counter() - start
    _audit(layout, config, say)
    return {"round": k, "real_mean": result["mean"], "real_std": result["std"], "real_episodes": result["episodes"],
            "dream": _dream_score(layout, config), "holes": holes, "seconds": times,
            "folder": str(layout.root)}


def iterate(exp_dir, config: IterateConfig, verbose: bool = True) -> list[dict]:
    """Round 0's real score (evaluated if missing), then rounds 1..K; returns and writes the progression."""
    config = config.validated()
    say = print if verbose else (lambda *args, **kwargs: None)
    root = experiment(exp_dir, create=False).root
    base = experiment(root, create=False)
    needs = [base.vae_model, base.rnn_model, controller_folder(base, config) / "controller.json"]
    for needed in needs + ([base.initial_z] if config.env == "doom" else []):
        if not needed.exists():
            where = f"in the dream at tau {config.temperature:g}" if config.env == "doom" else "in the real game"
            raise UserError(f"{needed}: missing; round 0 needs V, M, series and a full C trained {where} "
                            f"(run.pipeline --config={config.env}_small makes them)")
    zero = _evaluate(base, config, say)
    rounds = [{"round": 0, "real_mean": zero["mean"], "real_std": zero["std"], "real_episodes": zero["episodes"],
               "dream": _dream_score(base, config), "seconds": {}, "folder": str(root)}]
    say(f"iterate: round 0 (random data only): {zero['mean']:.0f} ± {zero['std']:.0f} real")
    _audit(base, config, say)  # where round 0's controller exploits M, for comparison with later rounds
    for k in range(1, config.rounds + 1):
        rounds.append(run_round(root, k, config, say))
        say(f"iterate: round {k}: {rounds[-1]['real_mean']:.0f} ± {rounds[-1]['real_std']:.0f} real")
        write_json(root / "iterate" / "progress.json", {"config": dataclasses.asdict(config), "rounds": rounds})
        write_text(base.report / "iterate.md", progress_markdown(rounds, base.report, dream=config.env == "doom"))
    return rounds


def _audit_cell(audit: Path, report_dir: Path) -> str:
    """A link when the audit sits beside the table (round 0), else its path (the report inlines every round's
    audit, and a committed copy of the report folder must not hold dead links)."""
    if not audit.exists():
        return "not run"
    relative = os.path.relpath(audit, report_dir)
    return f"[table]({relative})" if os.sep not in relative else f"`{relative}`"


def progress_markdown(rounds: list[dict], report_dir: Path, dream: bool = True) -> str:
    """The rounds as a Markdown table (with the dream's columns when C trains in one); links are relative to
    `report_dir`, where the file lives."""
    lines = ["| round | data | real score |" + (" dream score (CMA mean) | audit |" if dream else ""),
             "|---|---|---|" + ("---|---|" if dream else "")]
    for row in rounds:
        data = "random policy" if row["round"] == 0 else f"+ round {row['round'] - 1} controller"
        if row.get("holes"):
            data += " + " + ", ".join(row["holes"])
        line = (f"| {row['round']} | {data} | {row['real_mean']:.0f} ± {row['real_std']:.0f} "
                f"({row['real_episodes']} episodes) |")
        if dream:
            score = row.get("dream")
            score_text = f"{score['mean']:.0f} ± {score['std']:.0f}" if score else "not run"
            audit = Path(row["folder"]) / "report" / "dream_audit.md"
            line += f" {score_text} | {_audit_cell(audit, report_dir)} |"
        lines.append(line)
    return "\n".join(lines) + "\n"


def main(argv) -> None:
    from absl import flags

    FLAGS = flags.FLAGS
    fields = {field.name: getattr(FLAGS, field.name) for field in dataclasses.fields(IterateConfig)}
    fields["generations"] = parse_generations(",".join(fields["generations"]))
    iterate(FLAGS.exp_dir, IterateConfig(**fields))


def define_flags() -> None:
    from absl import flags

    defaults = IterateConfig()
    help_text = {"env": "doom (C retrained in M's dream) or carracing (C retrained in the real game on M's h).",
                 "rounds": "Iterative rounds to run after round 0.",
                 "episodes_per_round": "Real episodes collected with the current controller per round.",
                 "explore": "Chance per step of starting a random action held 1-10 frames while collecting.",
                 "explore_episodes": "Share of the collected episodes that explore; the others are the "
                                     "controller's own play to the end.",
                 "temperature": "The dream's tau.", "rnn_steps": "Fine-tuning steps of M per round.",
                 "rnn_learning_rate": "Adam's starting rate when fine-tuning M.",
                 "rnn_eval_every": "Steps between M's validations on the round's own episodes.",
                 "rnn_val_fraction": "Share of the round's own episodes held out to pick the fine-tuned M.",
                 "generations": "CMA-ES generations of C per round: one value for all rounds, or one "
                                "per round (e.g. 20,60: the last value serves the later rounds).",
                 "eval_episodes": "Real episodes scoring each round's controller.",
                 "audit_episodes": "Episodes per policy of a dream audit after each round (0: none).",
                 "hole_episodes": "Doom: real episodes of each fixed policy (always left, always right, stand "
                                  "still) the last round's audit flagged as a hole, added to the round's data "
                                  "(0: none; needs --audit_episodes)."}
    for field in dataclasses.fields(IterateConfig):
        value = getattr(defaults, field.name)
        text = help_text.get(field.name, field.name.replace("_", " ").capitalize() + ".")
        if isinstance(value, tuple):
            flags.DEFINE_list(field.name, [str(v) for v in value], text)
        elif isinstance(value, bool):
            flags.DEFINE_bool(field.name, value, text)
        elif isinstance(value, int) or field.type == "int | None":
            flags.DEFINE_integer(field.name, value, text)
        elif isinstance(value, float):
            flags.DEFINE_float(field.name, value, text)
        else:
            flags.DEFINE_string(field.name, value, text)
    flags.DEFINE_string("exp_dir", None, "Round 0's experiment folder.", required=True)


if __name__ == "__main__":
    from common.errors import run_main

    define_flags()
    run_main(main)

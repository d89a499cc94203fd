"""Trains M (the MDN-RNN) on the encoded series of `DIR/series/`; writes the best model to `DIR/rnn/rnn.keras`.

    python -m rnn.train --exp_dir=exp/doom                     # the paper's settings for the series' env
    python -m rnn.train --exp_dir=exp/doom --steps=2000 --seq_len=100 --early_stop_patience=5

Paper defaults, picked from the series' `env`: CarRacing: LSTM 256, batches of 100 episodes of 999 steps,
4,000 steps. Doom: LSTM 512 with the restart flag and death output, episodes concatenated into 100 streams cut
into chunks of 500 steps with the LSTM state carried from chunk to chunk, ~24,000 steps. Both: 5 mixtures, Adam
with lr = (1e-3 - 1e-5) * 0.99999^step + 1e-5, gradients clipped to +-1, z drawn afresh from N(mu, sigma^2) for
every batch.

A held-out set of episodes is scored every `--eval_every` steps (z NLL and death loss separately, each episode
whole from a zero state); the model with the best validation loss is saved to `rnn.keras` (M's validation
death loss can bottom out early and rise again while the training loss falls). Running the same command again
resumes from `DIR/rnn/checkpoints/` (model, Adam, step, carried stream state; batches are a function of the
step, so the data position resumes too); `--noresume` starts over. TensorBoard: `tensorboard --logdir DIR/rnn/logs`.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import io
import json
import math
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from common.errors import DataError, UserError, sigterm_as_interrupt
from common.layout import ExperimentLayout, experiment
from common.progress import Progress
from common.storage import atomic_path, read_json, write_json
from rnn.data import BATCH_KEYS, EpisodeBatches, SeriesSet, StreamBatches, load_series, split_episodes
from rnn.model import MDNRNN, MixtureParams, done_loss, load_rnn, mixture_distribution

# The paper's settings per task (appendix; the Doom step count follows the 2018 code's ~24,000).
PAPER_DEFAULTS = {
    "carracing": {"steps": 4000, "batch_size": 100, "seq_len": 999, "hidden": 256, "predict_done": False},
    "doom": {"steps": 24000, "batch_size": 100, "seq_len": 500, "hidden": 512, "predict_done": True},
}
BEST_METRICS = ("total", "z_nll", "restart")


@dataclasses.dataclass(frozen=True)
class RNNTrainConfig:
    """How to train M; None means the paper's value for the series' env (see PAPER_DEFAULTS)."""

    steps: int | None = None  # total optimiser steps (CarRacing 4,000, Doom 24,000)
    batch_size: int | None = None  # sequences (CarRacing) or streams (Doom) per batch: 100
    seq_len: int | None = None  # steps per sequence / chunk (CarRacing 999, Doom 500)
    hidden: int | None = None  # LSTM units (CarRacing 256, Doom 512)
    predict_done: bool | None = None  # restart input, death output and streams (Doom)
    num_mixtures: int = 5  # Gaussians per latent dimension (paper)
    learning_rate: float = 1e-3  # Adam's starting rate (2018 code)
    min_learning_rate: float = 1e-5  # the rate it decays to
    decay_rate: float = 0.99999  # lr = (start - min) * decay_rate^step + min
    grad_clip: float = 1.0  # gradients clipped by value to +-grad_clip
    restart_weight: float = 10.0  # weight of positive (death) targets in the restart loss (2018 Doom code)
    val_episodes: int = 0  # held-out episodes; 0: use val_fraction
    val_fraction: float = 0.05  # share of episodes held out when val_episodes is 0 (0: no validation)
    val_pattern: str | None = None  # hold out only episodes whose file name matches this glob (iterative
    # training validates on the new round's own episodes, where the old M is wrong); None: any episode
    eval_every: int = 200  # steps between validations (and best-model checks)
    checkpoint_every: int = 200  # steps between checkpoints (also saved at the end and on Ctrl-C)
    log_every: int = 10  # steps between TensorBoard scalars
    early_stop_patience: int = 0  # stop after this many validations without a better death loss (z NLL for
    # CarRacing); 0 = off
    best_metric: str = "total"  # which validation loss picks rnn.keras: total, z_nll or restart
    seed: int = 0  # drives the weights, the split, the batch order and the sampled z
    resume: bool = True  # continue from the last checkpoint; False discards the old run
    init_model: str | None = None  # fine-tune: start from this rnn.keras's weights (iterative training)

    def resolved(self, env: str) -> RNNTrainConfig:
        """The config with every None replaced by the paper's value for `env`, validated."""
        filled = {k: v for k, v in PAPER_DEFAULTS[env].items() if getattr(self, k) is None}
        config = dataclasses.replace(self, **filled)
        for name in ("steps", "batch_size", "seq_len", "hidden", "num_mixtures", "eval_every",
                     "checkpoint_every", "log_every"):
            if getattr(config, name) < 1:
                raise UserError(f"--{name}={getattr(config, name)}: must be at least 1")
        for name in ("learning_rate", "grad_clip", "restart_weight"):
            value = getattr(config, name)
            if not (value > 0 and math.isfinite(value)):
                raise UserError(f"--{name}={value}: must be a positive number")
        if not 0 <= config.val_fraction < 1 or config.val_episodes < 0:
            raise UserError(f"--val_fraction={config.val_fraction} must be in [0, 1), --val_episodes >= 0")
        if config.early_stop_patience < 0:
            raise UserError(f"--early_stop_patience={config.early_stop_patience}: must be >= 0")
        if config.best_metric not in BEST_METRICS:
            raise UserError(f"--best_metric={config.best_metric}: must be one of {', '.join(BEST_METRICS)}")
        if config.best_metric == "restart" and not config.predict_done:
            raise UserError("--best_metric=restart needs the death output (Doom)")
        return config


class TrainingInterrupted(UserError):
    """Ctrl-C or SIGTERM: a checkpoint was saved and the same command resumes."""


@keras.saving.register_keras_serializable(package="worldmodels")
class PaperDecay(keras.optimizers.schedules.LearningRateSchedule):
    """lr(step) = (initial - minimum) * decay_rate^step + minimum: the 2018 code's exponential decay to 1e-5."""

    def __init__(self, initial: float = 1e-3, minimum: float = 1e-5, decay_rate: float = 0.99999):
        self.initial, self.minimum, self.decay_rate = initial, minimum, decay_rate

    def __call__(self, step: Any) -> tf.Tensor:
        step = tf.cast(step, tf.float32)
        return (self.initial - self.minimum) * tf.pow(self.decay_rate, step) + self.minimum

    def get_config(self) -> dict[str, float]:
        return {"initial": self.initial, "minimum": self.minimum, "decay_rate": self.decay_rate}


def sample_z(mu: tf.Tensor, logvar: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """z ~ N(mu, exp(logvar)) with a stateless seed: a fresh draw for every batch (paper), repeatable."""
    return mu + tf.exp(0.5 * logvar) * tf.random.stateless_normal(tf.shape(mu), seed=seed)


def loss_sums(model: MDNRNN, batch: dict[str, tf.Tensor], seed: tf.Tensor, initial_state: Any = None,
              restart_weight: float = 10.0) -> tuple[dict[str, tf.Tensor], tuple[tf.Tensor, tf.Tensor]]:
    """Teacher forcing on one batch (see rnn.data): sums and counts of the z NLL (over valid steps and
    dimensions) and of the weighted death cross-entropy (over real steps), and the final LSTM state."""
    z = sample_z(batch["mu"], batch["logvar"], seed)
    inputs = {"z": z[:, :-1], "action": batch["action"], "restart": batch["restart"]}
    outputs, state = model(inputs, initial_state=initial_state, training=True)
    params = MixtureParams(outputs["logits"], outputs["mu"], outputs["log_sigma"])
    nll = -mixture_distribution(*params).log_prob(z[:, 1:])  # (B, T, Z)
    sums = {"z_nll": tf.reduce_sum(nll * batch["z_mask"][..., None]),
            "z_count": tf.reduce_sum(batch["z_mask"]) * model.z_size,
            "restart": tf.constant(0.0), "restart_count": tf.reduce_sum(batch["step_mask"])}
    if model.predict_done:
        count = tf.maximum(sums["restart_count"], 1.0)
        sums["restart"] = done_loss(outputs["done_logit"], batch["done"], batch["step_mask"],
                                    restart_weight) * count
    return sums, state


def mean_losses(sums: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """{z_nll, restart, total} means from `loss_sums`."""
    z_nll = sums["z_nll"] / tf.maximum(sums["z_count"], 1.0)
    restart = sums["restart"] / tf.maximum(sums["restart_count"], 1.0)
    return {"z_nll": z_nll, "restart": restart, "total": z_nll + restart}


def make_train_step(model: MDNRNN, optimizer: keras.optimizers.Optimizer, step: tf.Variable,
                    carried: tuple[tf.Variable, tf.Variable] | None, config: RNNTrainConfig) -> Callable:
    """A compiled step on a batch dict (plus "reset", 1.0 where carried streams restart) -> losses, finite.

    The update, the step count and the carried state advance together, and only when the loss and every
    gradient are finite, so a NaN never reaches the weights (or a checkpoint); the caller stops on it.
    """
    variables = model.trainable_variables

    @tf.function
    def train_step(batch: dict[str, tf.Tensor]) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        seed = tf.stack([tf.constant(config.seed, tf.int64), step])
        initial = None
        if carried is not None:
            keep = 1.0 - batch["reset"]
            initial = (carried[0] * keep, carried[1] * keep)  # truncated backprop: the state is a constant
        with tf.GradientTape() as tape:
            sums, state = loss_sums(model, batch, seed, initial, config.restart_weight)
            losses = mean_losses(sums)
        gradients = tape.gradient(losses["total"], variables)
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in gradients + [losses["total"]]])

        def apply() -> tf.Tensor:
            clipped = [tf.clip_by_value(g, -config.grad_clip, config.grad_clip) for g in gradients]
            optimizer.apply_gradients(zip(clipped, variables))
            step.assign_add(1)
            if carried is not None:
                carried[0].assign(state[0])
                carried[1].assign(state[1])
            return tf.constant(True)

        return losses, tf.cond(finite, apply, lambda: tf.constant(False))

    return train_step


def make_eval_step(model: MDNRNN) -> Callable:
    """A compiled forward pass on a validation batch -> `loss_sums` (any batch and sequence length)."""

    @tf.function(reduce_retracing=True)
    def eval_step(batch: dict[str, tf.Tensor], seed: tf.Tensor) -> dict[str, tf.Tensor]:
        return loss_sums(model, batch, seed)[0]

    return eval_step


def evaluate(eval_step: Callable, batches: EpisodeBatches, seed: int) -> dict[str, float]:
    """Validation losses over whole episodes, with the same z draws every time (comparable across steps)."""
    totals: dict[str, float] = {}
    for i, batch in enumerate(batches.full_episodes()):
        sums = eval_step(batch, tf.constant([seed + 1_000_003, i], tf.int64))
        for key, value in sums.items():
            totals[key] = totals.get(key, 0.0) + float(value)
    return {k: float(v) for k, v in mean_losses({k: tf.constant(v) for k, v in totals.items()}).items()}


def _summary(tag: str, value: Any, step: int, plugin: str = "scalars") -> None:
    """A TensorBoard scalar or text record through core `tf.summary.write` (the `tensorboard` package that
    `tf.summary.scalar` needs may be absent)."""
    data_class = summary_pb2.DATA_CLASS_SCALAR if plugin == "scalars" else summary_pb2.DATA_CLASS_TENSOR
    metadata = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=plugin), data_class=data_class)
    tensor = tf.constant(float(value), tf.float32) if plugin == "scalars" else tf.constant(str(value))
    tf.summary.write(tag, tensor, step=step, metadata=metadata)


def save_model(model: MDNRNN, path: Path) -> None:
    """Saves `model` as a `.keras` file, atomically."""
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)


def _split(layout: ExperimentLayout, data: SeriesSet, config: RNNTrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """The train/validation split: the one in rnn/split.json when resuming (so a resumed run keeps its
    validation set), else a fresh seeded one."""
    path = layout.rnn / "split.json"
    if config.resume and path.exists():
        names = set(read_json(path).get("validation", []))
        val = np.array([i for i, f in enumerate(data.files) if f.name in names], np.int64)
        if len(val) != len(names):
            raise DataError(f"{path}: validation episodes missing from {layout.series}; --noresume starts over")
        return np.setdiff1d(np.arange(data.num_episodes), val), val
    if config.val_pattern is None:
        return split_episodes(data.num_episodes, config.val_episodes, config.val_fraction, config.seed)
    candidates = np.array([i for i, f in enumerate(data.files) if fnmatch.fnmatch(f.name, config.val_pattern)],
                          np.int64)
    if len(candidates) < 2:
        raise UserError(f"--val_pattern={config.val_pattern}: matches {len(candidates)} of {layout.series}'s "
                        f"episodes; validation needs at least 2")
    _, picked = split_episodes(len(candidates), config.val_episodes, config.val_fraction, config.seed)
    val = candidates[picked]
    return np.setdiff1d(np.arange(data.num_episodes), val), val


MODEL_FIELDS = ("hidden", "num_mixtures", "predict_done", "z_size", "action_size")


def _check_resumable(layout: ExperimentLayout, run_config: dict[str, Any]) -> None:
    """A resumed run must build the same model (and streams) as its checkpoint."""
    path = layout.rnn / "config.json"
    if not path.exists() or not tf.train.latest_checkpoint(layout.rnn / "checkpoints"):
        return
    recorded = read_json(path)
    fields = MODEL_FIELDS + (("batch_size",) if run_config["predict_done"] else ())
    for name in fields:
        if recorded.get(name) != run_config[name]:
            raise UserError(f"{layout.rnn / 'checkpoints'} holds a run with {name}={recorded.get(name)}, not "
                            f"{run_config[name]}; pass --{name}={recorded.get(name)} or --noresume to start over")


def _improved(value: float, best: float | None) -> bool:
    return math.isfinite(value) and (best is None or value < best)


def train_rnn(exp_dir: str | Path, config: RNNTrainConfig = RNNTrainConfig(), verbose: bool = True) -> Path:
    """Trains M on `exp_dir/series/` and saves the best model to `exp_dir/rnn/rnn.keras`; returns that path.

    Resumes from `exp_dir/rnn/checkpoints/` unless `config.resume` is False. Validation history goes to
    `rnn/validation.json`, the best model's step and losses to `rnn/best.json`. Raises `DataError` for bad
    series, `UserError` on a non-finite loss (the last good checkpoint is kept), `TrainingInterrupted` on
    Ctrl-C / SIGTERM after saving a checkpoint.
    """
    layout = experiment(exp_dir)
    data = load_series(layout.series, verbose)
    config = config.resolved(data.env)
    log = print if verbose else (lambda *args, **kwargs: None)
    checkpoint_dir = layout.rnn / "checkpoints"
    history_path, best_path = layout.rnn / "validation.json", layout.rnn / "best.json"
    run_config = {**dataclasses.asdict(config), "env": data.env, "z_size": data.z_size,
                  "action_size": data.action_size, "episodes": data.num_episodes,
                  "frames": int(data.lengths.sum())}
    if config.resume:
        _check_resumable(layout, run_config)
    train_episodes, val_episodes = _split(layout, data, config)
    batch_layout = StreamBatches if config.predict_done else EpisodeBatches
    batches = batch_layout(data, train_episodes, config.batch_size, config.seq_len, config.seed)
    if not config.resume:  # only now that the new run's settings are known to work
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
        for path in (history_path, best_path):
            path.unlink(missing_ok=True)
    write_json(layout.rnn / "split.json", {"validation": [data.files[i].name for i in val_episodes]})
    run_config.update(train_episodes=len(train_episodes), val_episodes=len(val_episodes))
    write_json(layout.rnn / "config.json", run_config)

    keras.utils.set_random_seed(config.seed)
    model = MDNRNN(z_size=data.z_size, action_size=data.action_size, hidden_size=config.hidden,
                   num_mixtures=config.num_mixtures, predict_done=config.predict_done)
    optimizer = keras.optimizers.Adam(
        learning_rate=PaperDecay(config.learning_rate, config.min_learning_rate, config.decay_rate))
    optimizer.build(model.trainable_variables)  # Adam's slots exist before a restore, so they are restored
    step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    carried = None
    items: dict[str, Any] = {}
    if config.predict_done:
        carried = tuple(tf.Variable(tf.zeros([config.batch_size, config.hidden]), trainable=False, name=name)
                        for name in ("carried_h", "carried_c"))
        items = {"carried_h": carried[0], "carried_c": carried[1]}
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step, **items)
    manager = tf.train.CheckpointManager(checkpoint, checkpoint_dir, max_to_keep=3, step_counter=step)
    if manager.latest_checkpoint:
        try:
            checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        except (ValueError, AssertionError, tf.errors.OpError) as error:
            raise DataError(f"{manager.latest_checkpoint}: cannot restore this checkpoint ({type(error).__name__}: "
                            f"{str(error).splitlines()[0]}); --noresume starts over") from None
    elif config.init_model:
        source = load_rnn(config.init_model, expect={"z_size": model.z_size, "action_size": model.action_size,
                                                     "hidden_size": model.hidden_size,
                                                     "num_mixtures": model.num_mixtures,
                                                     "predict_done": model.predict_done})
        model.set_weights(source.get_weights())
        log(f"rnn: starting from the weights of {config.init_model}")
    start = int(step.numpy())
    # Without a checkpoint the run starts over: older validation records do not apply.
    resumed = manager.latest_checkpoint is not None
    history = [h for h in (read_json(history_path) if resumed and history_path.exists() else [])
               if h["step"] <= start]
    best = read_json(best_path) if resumed and best_path.exists() else None

    val_batches = (EpisodeBatches(data, val_episodes, config.batch_size, config.seq_len, config.seed)
                   if len(val_episodes) else None)
    train_step = make_train_step(model, optimizer, step, carried, config)
    eval_step = make_eval_step(model)
    writer = tf.summary.create_file_writer(str(layout.rnn / "logs"))
    if start:
        log(f"rnn: resuming at step {start:,} from {manager.latest_checkpoint}")
    log(f"rnn: {data.env}, {data.num_episodes:,} episodes ({len(train_episodes):,} train, {len(val_episodes):,} "
        f"validation), z {data.z_size}, action {data.action_size}, LSTM {config.hidden}, "
        f"{config.batch_size} x {config.seq_len} steps a batch, {config.steps:,} steps")
    with writer.as_default():
        _summary("config/hyperparameters", "```\n" + json.dumps(run_config, indent=2) + "\n```", start, "text")

    stop_metric = "restart" if config.predict_done else "z_nll"

    def validate(current: int) -> bool:
        """Scores the validation set, keeps the best model; True when early stopping says stop."""
        nonlocal best
        losses = evaluate(eval_step, val_batches, config.seed)
        history.append({"step": current, **losses})
        write_json(history_path, history)
        with writer.as_default():
            for name, value in losses.items():
                _summary(f"val/{name}", value, current)
        line = f"rnn: step {current:,} validation z_nll {losses['z_nll']:.4f}"
        if config.predict_done:
            line += f", restart {losses['restart']:.4f}"
        if _improved(losses[config.best_metric], best and best[config.best_metric]):
            best = {"step": current, **losses, "metric": config.best_metric}
            save_model(model, layout.rnn_model)
            write_json(best_path, best)
            line += " (best)"
        log(line)
        return should_stop()

    def should_stop() -> bool:
        """Early stopping: `early_stop_patience` validations since the best `stop_metric`."""
        values = [h[stop_metric] for h in history]
        if not config.early_stop_patience or not values:
            return False
        best_at = int(np.nanargmin(values)) if np.isfinite(values).any() else 0
        return len(values) - 1 - best_at >= config.early_stop_patience

    def save_checkpoint() -> None:
        manager.save(checkpoint_number=step)
        writer.flush()

    def batch_stream() -> Iterator[dict[str, np.ndarray]]:
        for s in range(start, config.steps):
            batch = batches.batch(s)
            batch["reset"] = np.float32(batches.is_epoch_start(s))
            yield batch

    spec = {k: tf.TensorSpec((config.batch_size, None) + ((None,) if k in ("mu", "logvar", "action") else ()),
                             tf.float32) for k in BATCH_KEYS}
    spec["reset"] = tf.TensorSpec((), tf.float32)
    dataset = tf.data.Dataset.from_generator(batch_stream, output_signature=spec).prefetch(2)

    progress = Progress("rnn", config.steps, "steps", rate_unit="sequences", start_done=start,
                        stream=None if verbose else io.StringIO())
    sums, logged_steps, logged_time = np.zeros(3), 0, time.monotonic()
    stopped_early = False
    try:
        with sigterm_as_interrupt():
            if val_batches is not None and not history:
                validate(start)  # the untrained model's losses: the baseline of the curve
            current = start
            stopped_early = should_stop()  # a resumed run that had already stopped early stays stopped
            for batch in (dataset if start < config.steps and not stopped_early else ()):
                losses, finite = train_step(batch)
                losses = {k: float(v) for k, v in losses.items()}
                if not bool(finite):
                    raise UserError(
                        f"non-finite loss at step {current + 1:,} (z_nll={losses['z_nll']}, "
                        f"restart={losses['restart']}); stopped without saving, the last good checkpoint "
                        f"({manager.latest_checkpoint or 'none'}) is kept; try a lower --learning_rate")
                current = int(step.numpy())
                sums += (losses["z_nll"], losses["restart"], losses["total"])
                logged_steps += 1
                progress.update(1, rate_count=config.batch_size, loss=f"{losses['total']:.4f}")
                if logged_steps >= config.log_every or current == config.steps:
                    now = time.monotonic()
                    with writer.as_default():
                        for name, value in zip(("z_nll", "restart", "total"), sums / logged_steps):
                            _summary(f"losses/{name}", value, current)
                        _summary("train/learning_rate", optimizer.learning_rate.numpy(), current)
                        _summary("perf/sequences_per_s",
                                 logged_steps * config.batch_size / max(now - logged_time, 1e-9), current)
                    sums[:], logged_steps, logged_time = 0, 0, now
                if val_batches is not None and (current % config.eval_every == 0 or current == config.steps):
                    stopped_early = validate(current)
                if current % config.checkpoint_every == 0 or current == config.steps or stopped_early:
                    save_checkpoint()
                if stopped_early:
                    log(f"rnn: early stop at step {current:,}: validation {stop_metric} did not improve in "
                        f"{config.early_stop_patience} validations")
                    break
    except KeyboardInterrupt:
        save_checkpoint()
        progress.close()
        raise TrainingInterrupted(f"interrupted at step {int(step.numpy()):,} of {config.steps:,}; checkpoint "
                                  f"saved in {checkpoint_dir}; run the same command to resume") from None
    except tf.errors.OpError as error:
        raise DataError(f"{layout.series}: batch pipeline failed ({str(error).splitlines()[0]})") from None
    progress.close()
    writer.close()
    if val_batches is None or not layout.rnn_model.exists():
        save_model(model, layout.rnn_model)  # no validation: the final model
    if best is not None:
        log(f"rnn: saved {layout.rnn_model} (step {best['step']:,}, validation {config.best_metric} "
            f"{best[config.best_metric]:.4f})")
    return layout.rnn_model


def main(argv: Any) -> None:
    from absl import flags, logging

    logging.set_verbosity(logging.WARNING)  # TF's checkpoint saver logs a line at INFO on every save
    FLAGS = flags.FLAGS
    config = RNNTrainConfig(
        steps=FLAGS.steps, batch_size=FLAGS.batch_size, seq_len=FLAGS.seq_len, hidden=FLAGS.hidden,
        num_mixtures=FLAGS.num_mixtures, learning_rate=FLAGS.learning_rate, val_episodes=FLAGS.val_episodes,
        val_fraction=FLAGS.val_fraction, val_pattern=FLAGS.val_pattern, eval_every=FLAGS.eval_every,
        checkpoint_every=FLAGS.checkpoint_every,
        early_stop_patience=FLAGS.early_stop_patience, best_metric=FLAGS.best_metric, seed=FLAGS.seed,
        resume=FLAGS.resume, init_model=FLAGS.init_model)
    train_rnn(FLAGS.exp_dir, config)


def define_flags() -> None:
    from absl import flags

    defaults = RNNTrainConfig()
    flags.DEFINE_string("exp_dir", None, "Experiment folder: reads EXP_DIR/series/, writes EXP_DIR/rnn/.",
                        required=True)
    flags.DEFINE_integer("steps", None, "Total training steps (default: CarRacing 4,000, Doom 24,000).")
    flags.DEFINE_integer("batch_size", None, "Sequences (CarRacing) or streams (Doom) a batch (default 100).")
    flags.DEFINE_integer("seq_len", None, "Steps a sequence / chunk (default: CarRacing 999, Doom 500).")
    flags.DEFINE_integer("hidden", None, "LSTM units (default: CarRacing 256, Doom 512).")
    flags.DEFINE_integer("num_mixtures", defaults.num_mixtures, "Gaussians per latent dimension (paper: 5).")
    flags.DEFINE_float("learning_rate", defaults.learning_rate, "Adam's starting learning rate; it decays as "
                       "(lr - 1e-5) * 0.99999^step + 1e-5 (2018 code: 1e-3).")
    flags.DEFINE_integer("val_episodes", defaults.val_episodes, "Held-out episodes (0: use --val_fraction).")
    flags.DEFINE_float("val_fraction", defaults.val_fraction, "Share of episodes held out for validation.")
    flags.DEFINE_string("val_pattern", None, "Hold out only episodes whose file name matches this glob, e.g. "
                        "'ep[0-9]*.npz' (a round's own episodes in run.iterate).")
    flags.DEFINE_integer("eval_every", defaults.eval_every, "Steps between validations.")
    flags.DEFINE_integer("checkpoint_every", defaults.checkpoint_every, "Steps between checkpoints.")
    flags.DEFINE_integer("early_stop_patience", defaults.early_stop_patience, "Stop after this many validations "
                         "without a better validation death loss (z NLL for CarRacing); 0 = off.")
    flags.DEFINE_enum("best_metric", defaults.best_metric, list(BEST_METRICS),
                      "Validation loss that picks the saved model.")
    flags.DEFINE_integer("seed", defaults.seed, "Seed of the weights, split, batch order and sampled z.")
    flags.DEFINE_bool("resume", defaults.resume, "Continue from the last checkpoint; --noresume starts over.")
    flags.DEFINE_string("init_model", None, "Fine-tune: start from this rnn.keras's weights (when no checkpoint "
                        "exists yet).")


if __name__ == "__main__":
    from common.errors import run_main

    define_flags()
    run_main(main)

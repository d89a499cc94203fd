"""Trains M (the MDN-RNN) on the encoded series of `DIR/series/`; writes the best model to `DIR/rnn/rnn.keras`.

    python -m rnn.train --exp_dir=exp/doom                     # the paper's settings for the series' env
    python -m rnn.train --exp_dir=exp/doom --steps=2000 --seq_len=100 --early_stop_patience=5
    python -m rnn.train --exp_dir=exp/doom --rnn_cell=gru                  # a GRU under the same mixture head
    python -m rnn.train --exp_dir=exp/doom --rnn=examples.custom_m:KerasCellM  # your own M (rnn/interface.py)

Paper defaults, picked from the series' `env`: CarRacing: LSTM 256, batches of 100 episodes of 999 steps,
4,000 steps. Doom: LSTM 512 with the restart flag and death output, episodes concatenated into 100 streams cut
into chunks of 500 steps with the LSTM state carried from chunk to chunk, ~24,000 steps. Both: 5 mixtures, Adam
with lr = (1e-3 - 1e-5) * 0.99999^step + 1e-5, gradients clipped to +-1, z drawn afresh from N(mu, sigma^2) for
every batch.

A held-out set of episodes is scored every `--eval_every` steps (z NLL and death loss separately, each episode
whole from a zero state); the model with the best validation loss is saved to `rnn.keras` (M's validation
death loss can bottom out early and rise again while the training loss falls). Running the same command again
resumes from `DIR/rnn/checkpoints/` (model, Adam, step, carried stream state; batches are a function of the
step, so the data position resumes too); `--noresume` starts over. TensorBoard: `tensorboard --logdir
DIR/rnn/tensorboard`.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import io
import math
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from absl import flags, logging

from common.errors import DataError, UserError, run_main
from common.flags import ConfigFlags
from common.layout import ExperimentLayout, experiment
from common.progress import Progress
from common.registry import spec_of
from common.storage import read_json, write_json
from common.tensorboard import SummaryWriter, TrainingScalars
from common.training import TrainingCheckpoint, check_finite, checkpoint_on_interrupt
from rnn.config import RNNTrainConfig
from rnn.data import BATCH_KEYS, EpisodeBatches, SeriesSet, StreamBatches, load_series, split_episodes
from rnn.interface import MemoryModel, build_rnn, memory_model_problem
from rnn.model import MDNRNN, load_rnn
from rnn.steps import PaperDecay, evaluate, make_eval_step, make_train_step, save_model

# ---- the data: series, split and batches ----

def _split(layout: ExperimentLayout, data: SeriesSet, config: RNNTrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """The train/validation split: the one in rnn/split.json when resuming (so a resumed run keeps its
    validation set), else a fresh seeded one."""
    path = layout.rnn_split
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


MODEL_FIELDS = ("rnn_class", "rnn_cell", "hidden", "num_mixtures", "predict_done", "predict_reward", "z_size",
                "action_size")
# what runs recorded before these fields
RECORDED_BEFORE = {"rnn_class": spec_of(MDNRNN), "rnn_cell": "lstm", "predict_reward": False}
FIELD_FLAGS = {"rnn_class": "rnn"}  # the flag that sets a recorded field, where its name differs


def _check_resumable(layout: ExperimentLayout, run_config: dict[str, Any]) -> None:
    """A resumed run must build the same model (and streams) as its checkpoint."""
    path = layout.run_config("rnn")
    if not path.exists() or not tf.train.latest_checkpoint(layout.checkpoints("rnn")):
        return
    recorded = read_json(path)
    fields = MODEL_FIELDS + (("batch_size",) if run_config["predict_done"] else ())
    for name in fields:
        value = recorded.get(name, RECORDED_BEFORE.get(name))
        if value != run_config[name]:
            raise UserError(f"{layout.checkpoints('rnn')} holds a run with {name}={value}, not "
                            f"{run_config[name]}; pass --{FIELD_FLAGS.get(name, name)}={value} or --noresume to "
                            "start over")


def _given_or_built(config: RNNTrainConfig, data: SeriesSet, model: MemoryModel | None) -> tuple[MemoryModel, str]:
    """(the M this run trains, where it came from): `model` if given, else a copy of `init_model` (fine-tuning
    keeps its class, sizes and weights), else `config.rnn` built with the series' sizes."""
    if model is not None:
        problem = memory_model_problem(model)
        if problem:
            raise UserError(f"train_rnn(model=...): {problem}")
        return model, f"the given {type(model).__name__}"
    if config.init_model:
        return load_rnn(config.init_model), config.init_model
    sizes = dict(z_size=data.z_size, action_size=data.action_size, hidden_size=config.hidden,
                 num_mixtures=config.num_mixtures, predict_done=config.predict_done)
    if config.rnn_cell != "lstm":
        sizes["cell"] = config.rnn_cell
    if config.predict_reward:
        sizes["predict_reward"] = True
    return build_rnn(config.rnn, **sizes), f"--rnn={config.rnn}"


def make_model(config: RNNTrainConfig, data: SeriesSet, model: MemoryModel | None = None) -> MemoryModel:
    """The M to train, seeded by `config.seed`, checked against the interface and the series' sizes (a mismatch
    is a one-line `UserError`)."""
    keras.utils.set_random_seed(config.seed)
    model, source = _given_or_built(config, data, model)
    if getattr(model, "predict_reward", False) and np.ptp(data.reward) == 0:
        raise UserError(f"{source}: predicts reward, but every reward in the {data.env} series is "
                        f"{data.reward[0]:g}: nothing to predict (Doom's dream pays +1 a step survived; its death "
                        "output says when it ends)")
    for name, want in (("z_size", data.z_size), ("action_size", data.action_size),
                       ("predict_done", config.predict_done)):
        if getattr(model, name) != want:
            raise UserError(f"{source}: {type(model).__name__} has {name}={getattr(model, name)}, but the "
                            f"{data.env} series need {want}")
    return model


def describe_model(model: MemoryModel) -> str:
    """'LSTM 512', 'GRU 512' (the MDN-RNN) or 'MyM 256'."""
    core = model.cell.upper() if isinstance(model, MDNRNN) else type(model).__name__
    return f"{core} {model.hidden_size}"


@dataclasses.dataclass(frozen=True)
class SeriesPlan:
    """What a run trains and validates on: the series, the resolved config, the split, the batches and M."""

    data: SeriesSet
    config: RNNTrainConfig  # every None replaced by the paper's value for the series' env
    train_episodes: np.ndarray
    val_episodes: np.ndarray
    batches: EpisodeBatches | StreamBatches
    run_config: dict[str, Any]  # what rnn/config.json records
    model: MemoryModel  # the M being trained

    def validation_batches(self) -> EpisodeBatches | None:
        if not len(self.val_episodes):
            return None
        config = self.config
        return EpisodeBatches(self.data, self.val_episodes, config.batch_size, config.seq_len, config.seed)


def plan_run(layout: ExperimentLayout, config: RNNTrainConfig, verbose: bool,
             model: MemoryModel | None = None) -> SeriesPlan:
    """Reads the series, resolves the config, builds M (or takes `model`), splits the episodes and records the
    run in rnn/ (split.json, config.json; --noresume first discards the old checkpoints and validation records)."""
    data = load_series(layout.series, verbose)
    config = config.resolved(data.env)
    model = make_model(config, data, model)
    config = dataclasses.replace(config, hidden=model.hidden_size, num_mixtures=model.num_mixtures,
                                 predict_reward=bool(getattr(model, "predict_reward", False)))
    run_config = {**dataclasses.asdict(config), "rnn_class": spec_of(type(model)),
                  "rnn_cell": model.cell if isinstance(model, MDNRNN) else config.rnn_cell,
                  "env": data.env, "z_size": data.z_size,
                  "action_size": data.action_size, "episodes": data.num_episodes,
                  "frames": int(data.lengths.sum())}
    if config.resume:
        _check_resumable(layout, run_config)
    train_episodes, val_episodes = _split(layout, data, config)
    batch_layout = StreamBatches if config.predict_done else EpisodeBatches
    batches = batch_layout(data, train_episodes, config.batch_size, config.seq_len, config.seed)
    if not config.resume:  # only now that the new run's settings are known to work
        shutil.rmtree(layout.checkpoints("rnn"), ignore_errors=True)
        for path in (layout.rnn_validation, layout.rnn_best):
            path.unlink(missing_ok=True)
    write_json(layout.rnn_split, {"validation": [data.files[i].name for i in val_episodes]})
    run_config.update(train_episodes=len(train_episodes), val_episodes=len(val_episodes))
    write_json(layout.run_config("rnn"), run_config)
    return SeriesPlan(data, config, train_episodes, val_episodes, batches, run_config, model)


def batch_dataset(batches: EpisodeBatches | StreamBatches, start: int, steps: int,
                  batch_size: int) -> tf.data.Dataset:
    """The batches of steps start .. steps - 1 (each with its "reset" flag), prepared ahead by tf.data."""
    spec = {k: tf.TensorSpec((batch_size, None) + ((None,) if k in ("mu", "logvar", "action") else ()),
                             tf.float32) for k in BATCH_KEYS}
    spec["reset"] = tf.TensorSpec((), tf.float32)
    return tf.data.Dataset.from_generator(functools.partial(_batch_stream, batches, start, steps),
                                          output_signature=spec).prefetch(2)


def _batch_stream(batches: EpisodeBatches | StreamBatches, start: int,
                  steps: int) -> Iterator[dict[str, np.ndarray]]:
    for s in range(start, steps):
        batch = batches.batch(s)
        batch["reset"] = np.float32(batches.is_epoch_start(s))
        yield batch


# ---- the model, its checkpoint, and the best model ----

def _carried_state(config: RNNTrainConfig, model: MemoryModel) -> dict[str, tf.Variable]:
    """Doom's streams carry M's state (h, c) from chunk to chunk; it is checkpointed with the model."""
    if not config.predict_done:
        return {}
    return {name: tf.Variable(tf.zeros_like(part), trainable=False, name=name)
            for name, part in zip(("carried_h", "carried_c"), model.initial_state(config.batch_size))}


def _improved(value: float, best: float | None) -> bool:
    return math.isfinite(value) and (best is None or value < best)


class Validation:
    """Scores the held-out episodes (`evaluate`), keeps their history in rnn/validation.json, saves the model
    with the lowest `best_metric` to rnn.keras (its step and losses in rnn/best.json), and says when early
    stopping ends the run. A run without a checkpoint starts over: older validation records do not apply."""

    def __init__(self, layout: ExperimentLayout, model: MemoryModel, batches: EpisodeBatches | None,
                 config: RNNTrainConfig, writer: SummaryWriter, log: Callable[[str], None], start: int,
                 resumed: bool):
        self.layout, self.model, self.batches, self.config, self.writer, self.log = (layout, model, batches,
                                                                                    config, writer, log)
        self.eval_step = make_eval_step(model, config.reward_weight, config.reward_overestimate_weight)
        self.stop_metric = "restart" if config.predict_done else "z_nll"
        history = read_json(layout.rnn_validation) if resumed and layout.rnn_validation.exists() else []
        self.history = [h for h in history if h["step"] <= start]
        self.best = read_json(layout.rnn_best) if resumed and layout.rnn_best.exists() else None

    def due(self, step: int) -> bool:
        return self.batches is not None and (step % self.config.eval_every == 0 or step == self.config.steps)

    def validate(self, step: int) -> bool:
        """Scores the validation set, keeps the best model; True when early stopping says stop."""
        config = self.config
        losses = evaluate(self.eval_step, self.batches, config.seed)
        self.history.append({"step": step, **losses})
        write_json(self.layout.rnn_validation, self.history)
        self.writer.scalars(step, {f"val/{name}": value for name, value in losses.items()})
        line = f"rnn: step {step:,} validation z_nll {losses['z_nll']:.4f}"
        if config.predict_done:
            line += f", restart {losses['restart']:.4f}"
        if config.predict_reward:
            line += f", reward {losses['reward']:.4f}"
        if _improved(losses[config.best_metric], self.best and self.best[config.best_metric]):
            self.best = {"step": step, **losses, "metric": config.best_metric}
            save_model(self.model, self.layout.rnn_model)
            write_json(self.layout.rnn_best, self.best)
            line += " (best)"
        self.log(line)
        return self.should_stop()

    def should_stop(self) -> bool:
        """Early stopping: `early_stop_patience` validations since the best `stop_metric`."""
        values = [h[self.stop_metric] for h in self.history]
        if not self.config.early_stop_patience or not values:
            return False
        best_at = int(np.nanargmin(values)) if np.isfinite(values).any() else 0
        return len(values) - 1 - best_at >= self.config.early_stop_patience


# ---- the loop ----

class TrainingLoop:
    """M's training loop from the checkpoint's step: the compiled train step on prefetched batches, TensorBoard
    scalars and a progress line, validation every `eval_every` steps (with early stopping) and a checkpoint every
    `checkpoint_every` steps, at the end and on Ctrl-C / SIGTERM."""

    def __init__(self, model: MemoryModel, optimizer: keras.optimizers.Optimizer, checkpoint: TrainingCheckpoint,
                 carried: dict[str, tf.Variable], plan: SeriesPlan, validation: Validation, writer: SummaryWriter,
                 verbose: bool):
        config = plan.config
        self.checkpoint, self.plan, self.config, self.validation, self.writer = (checkpoint, plan, config,
                                                                                validation, writer)
        carried_state = (carried["carried_h"], carried["carried_c"]) if carried else None
        self.train_step = make_train_step(model, optimizer, checkpoint.step, carried_state, config)
        self.scalars = TrainingScalars(writer, config.log_every, optimizer, config.batch_size, "sequences")
        self.progress = Progress("rnn", config.steps, "steps", rate_unit="sequences",
                                 start_done=checkpoint.current_step, stream=None if verbose else io.StringIO())

    def save_checkpoint(self) -> None:
        self.checkpoint.save()
        self.writer.flush()

    def _save_on_interrupt(self) -> None:
        self.save_checkpoint()
        self.progress.close()

    def run(self) -> None:
        """Trains to `config.steps` or an early stop. Raises `UserError` on a non-finite loss (nothing saved),
        `TrainingInterrupted` after saving a checkpoint, `DataError` when the batch pipeline fails."""
        start, steps = self.checkpoint.current_step, self.config.steps
        with checkpoint_on_interrupt(self._save_on_interrupt, self.checkpoint, steps) as signal_received:
            if self.validation.batches is not None and not self.validation.history:
                self.validation.validate(start)  # the untrained model's losses: the baseline of the curve
            if start < steps and not self.validation.should_stop():  # a run stopped early stays stopped
                for batch in batch_dataset(self.plan.batches, start, steps, self.config.batch_size):
                    signal_received.raise_if_received()
                    if self._step(batch):
                        break
        self.progress.close()

    def _step(self, batch: dict[str, tf.Tensor]) -> bool:
        """One train step and what follows it (scalars, validation, checkpoint); True when training stops early."""
        config = self.config
        previous = self.checkpoint.current_step
        losses, finite = self.train_step(batch)
        losses = {k: float(v) for k, v in losses.items()}
        check_finite(finite, previous + 1, {k: losses[k] for k in ("z_nll", "restart", "reward")}, self.checkpoint)
        current = self.checkpoint.current_step
        self.progress.update(1, rate_count=config.batch_size, loss=f"{losses['total']:.4f}")
        self.scalars.add(current, losses, last=current == config.steps)
        stopped_early = self.validation.validate(current) if self.validation.due(current) else False
        if current % config.checkpoint_every == 0 or current == config.steps or stopped_early:
            self.save_checkpoint()
        if stopped_early:
            self.validation.log(f"rnn: early stop at step {current:,}: validation {self.validation.stop_metric} "
                                f"did not improve in {config.early_stop_patience} validations")
        return stopped_early


def train_rnn(exp_dir: str | Path, config: RNNTrainConfig = RNNTrainConfig(), verbose: bool = True,
              model: MemoryModel | None = None) -> Path:
    """Trains M on `exp_dir/series/` and saves the best model to `exp_dir/rnn/rnn.keras`; returns that path.

    M is `config.rnn` (a registered name or module:Class, see rnn.interface) built with the series' sizes, or
    `model`, any Keras model providing `rnn.interface.MemoryModel` (its sizes must fit the series).

    Resumes from `exp_dir/rnn/checkpoints/` unless `config.resume` is False. Validation history goes to
    `rnn/validation.json`, the best model's step and losses to `rnn/best.json`. Raises `DataError` for bad
    series, `UserError` on a non-finite loss (the last good checkpoint is kept), `TrainingInterrupted` on
    Ctrl-C / SIGTERM after saving a checkpoint.
    """
    layout = experiment(exp_dir)
    plan = plan_run(layout, config, verbose, model)
    config, data, model = plan.config, plan.data, plan.model
    log = print if verbose else (lambda *args, **kwargs: None)

    optimizer = keras.optimizers.Adam(
        learning_rate=PaperDecay(config.learning_rate, config.min_learning_rate, config.decay_rate))
    carried = _carried_state(config, model)
    checkpoint = TrainingCheckpoint(layout.checkpoints("rnn"), model, optimizer, **carried)
    resumed = checkpoint.restore_latest() is not None
    if not resumed and config.init_model:
        log(f"rnn: starting from the weights of {config.init_model}")
    start = checkpoint.current_step
    if start:
        log(f"rnn: resuming at step {start:,} from {checkpoint.latest}")
    log(f"rnn: {data.env}, {data.num_episodes:,} episodes ({len(plan.train_episodes):,} train, "
        f"{len(plan.val_episodes):,} validation), z {data.z_size}, action {data.action_size}, {describe_model(model)}, "
        f"{config.batch_size} x {config.seq_len} steps a batch, {config.steps:,} steps")

    writer = SummaryWriter(layout.tensorboard("rnn"))
    writer.hyperparameters(plan.run_config, start)
    validation = Validation(layout, model, plan.validation_batches(), config, writer, log, start, resumed)
    try:
        TrainingLoop(model, optimizer, checkpoint, carried, plan, validation, writer, verbose).run()
    except tf.errors.OpError as error:
        raise DataError(f"{layout.series}: batch pipeline failed ({str(error).splitlines()[0]})") from None
    finally:
        writer.close()
    if validation.batches is None or not layout.rnn_model.exists():
        save_model(model, layout.rnn_model)  # no validation: the final model
    if validation.best is not None:
        log(f"rnn: saved {layout.rnn_model} (step {validation.best['step']:,}, validation {config.best_metric} "
            f"{validation.best[config.best_metric]:.4f})")
    return layout.rnn_model


def main(argv: Any) -> None:
    logging.set_verbosity(logging.WARNING)  # TF's checkpoint saver logs a line at INFO on every save
    train_rnn(flags.FLAGS.exp_dir, ConfigFlags(RNNTrainConfig).parse())


def define_flags() -> None:
    flags.DEFINE_string("exp_dir", None, "Experiment folder: reads EXP_DIR/series/, writes EXP_DIR/rnn/.",
                        required=True)
    ConfigFlags(RNNTrainConfig).define()


if __name__ == "__main__":
    define_flags()
    run_main(main)

"""M's training computation: the 2018 learning-rate decay, the teacher-forced losses and the compiled train and
validation steps (`rnn.train` runs them over the data; `run.benchmark_rnn` times them)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from common.storage import atomic_path
from common.training import apply_if_finite
from rnn.config import RNNTrainConfig
from rnn.data import EpisodeBatches
from rnn.model import MDNRNN, MixtureParams, done_loss, mixture_nll_sum


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
              restart_weight: float = 10.0, reward_weight: float = 1.0,
              reward_overestimate_weight: float = 1.0) -> tuple[dict[str, tf.Tensor], tuple[tf.Tensor, tf.Tensor]]:
    """Teacher forcing on one batch (see rnn.data): sums and counts of the z NLL (`mixture_nll_sum`, over valid
    steps and dimensions), of the weighted death cross-entropy (over real steps) and, for an M with a reward
    output, of `reward_weight` x its squared error, and the final LSTM state.

    The reward loss is the squared error (its minimiser is the expected reward, what a dream's return needs) over
    the steps that did not end the episode: an ending's reward (CarRacing's -100 for leaving the playfield) is the
    death output's to predict, and would dominate a squared error 1,000 times over. With
    `reward_overestimate_weight` k > 1, errors where M's reward exceeds the real one weigh k times: the minimiser
    is then an expectile below the mean, a pessimistic reward where M is unsure, which is where a controller
    trained in the dream finds returns the game does not pay (a JAX reimplementation used k = 5)."""
    z = sample_z(batch["mu"], batch["logvar"], seed)
    inputs = {"z": z[:, :-1], "action": batch["action"], "restart": batch["restart"]}
    outputs, state = model(inputs, initial_state=initial_state, training=True)
    params = MixtureParams(outputs["logits"], outputs["mu"], outputs["log_sigma"])
    z_nll, z_count = mixture_nll_sum(params, z[:, 1:], batch["z_mask"])
    sums = {"z_nll": z_nll, "z_count": z_count,
            "restart": tf.constant(0.0), "restart_count": tf.reduce_sum(batch["step_mask"]),
            "reward": tf.constant(0.0), "reward_count": tf.constant(0.0)}
    if model.predict_done:
        count = tf.maximum(sums["restart_count"], 1.0)
        sums["restart"] = done_loss(outputs["done_logit"], batch["done"], batch["step_mask"],
                                    restart_weight) * count
    if getattr(model, "predict_reward", False):
        mask = batch["step_mask"] * (1.0 - batch["done"])
        difference = outputs["reward"] - batch["reward"]
        error = tf.square(difference) * tf.where(difference > 0, reward_overestimate_weight, 1.0)
        sums["reward"] = reward_weight * tf.reduce_sum(error * mask)
        sums["reward_count"] = tf.reduce_sum(mask)
    return sums, state


def mean_losses(sums: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """{z_nll, restart, reward, total} means from `loss_sums` (reward: weighted; 0 without a reward output)."""
    z_nll = sums["z_nll"] / tf.maximum(sums["z_count"], 1.0)
    restart = sums["restart"] / tf.maximum(sums["restart_count"], 1.0)
    reward = sums["reward"] / tf.maximum(sums["reward_count"], 1.0)
    return {"z_nll": z_nll, "restart": restart, "reward": reward, "total": z_nll + restart + reward}


def make_train_step(model: MDNRNN, optimizer: keras.optimizers.Optimizer, step: tf.Variable,
                    carried: tuple[tf.Variable, tf.Variable] | None, config: RNNTrainConfig) -> Callable:
    """A compiled step on a batch dict (plus "reset", 1.0 where carried streams restart) -> losses, finite.

    The update, the step count and the carried state advance together, and only when the loss and every
    gradient are finite (`apply_if_finite`), so a NaN never reaches the weights (or a checkpoint); the caller
    stops on it.
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
            sums, state = loss_sums(model, batch, seed, initial, config.restart_weight, config.reward_weight,
                                    config.reward_overestimate_weight)
            losses = mean_losses(sums)
        gradients = tape.gradient(losses["total"], variables)

        def advance() -> None:
            step.assign_add(1)
            if carried is not None:
                carried[0].assign(state[0])
                carried[1].assign(state[1])

        return losses, apply_if_finite(optimizer, gradients, variables, losses["total"], config.grad_clip, advance)

    return train_step


def make_eval_step(model: MDNRNN, reward_weight: float = 1.0, reward_overestimate_weight: float = 1.0) -> Callable:
    """A compiled forward pass on a validation batch -> `loss_sums` (any batch and sequence length)."""

    @tf.function(reduce_retracing=True)
    def eval_step(batch: dict[str, tf.Tensor], seed: tf.Tensor) -> dict[str, tf.Tensor]:
        return loss_sums(model, batch, seed, reward_weight=reward_weight,
                         reward_overestimate_weight=reward_overestimate_weight)[0]

    return eval_step


def evaluate(eval_step: Callable, batches: EpisodeBatches, seed: int) -> dict[str, float]:
    """Validation losses over whole episodes, with the same z draws every time (comparable across steps)."""
    totals: dict[str, float] = {}
    for i, batch in enumerate(batches.full_episodes()):
        sums = eval_step(batch, tf.constant([seed + 1_000_003, i], tf.int64))
        for key, value in sums.items():
            totals[key] = totals.get(key, 0.0) + float(value)
    return {k: float(v) for k, v in mean_losses({k: tf.constant(v) for k, v in totals.items()}).items()}


def save_model(model: MDNRNN, path: Path) -> None:
    """Saves `model` as a `.keras` file, atomically."""
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)

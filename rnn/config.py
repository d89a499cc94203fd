"""How M is trained: `RNNTrainConfig`, with the paper's settings per task as its defaults."""

from __future__ import annotations

import dataclasses
import math

from common.errors import UserError
from common.paper import LSTM_UNITS, NUM_MIXTURES, RNN_TRAINING

# The paper's settings per task (appendix; the Doom step count follows the 2018 code's ~24,000).
PAPER_DEFAULTS = {env: {**RNN_TRAINING[env], "hidden": LSTM_UNITS[env], "predict_done": env == "doom"}
                  for env in ("carracing", "doom")}
BEST_METRICS = ("total", "z_nll", "restart", "reward")
RNN_CELLS = ("lstm", "gru")  # rnn.model.CELLS (not imported: the config loads no TensorFlow)


@dataclasses.dataclass(frozen=True)
class RNNTrainConfig:
    """How to train M; None means the paper's value for the series' env (see PAPER_DEFAULTS)."""

    rnn: str = "mdnrnn"  # which M: a registered name (mdnrnn: the paper's MDN-RNN) or module:Class of your own
    # (rnn/interface.py says what it must provide; examples/custom_m.py is one)
    rnn_cell: str = "lstm"  # the MDN-RNN's recurrent core: lstm (paper) or gru (same mixture head)
    steps: int | None = None  # total optimiser steps (CarRacing 4,000, Doom 24,000)
    batch_size: int | None = None  # sequences (CarRacing) or streams (Doom) per batch: 100
    seq_len: int | None = None  # steps per sequence / chunk (CarRacing 999, Doom 500)
    hidden: int | None = None  # LSTM units (CarRacing 256, Doom 512)
    predict_done: bool | None = None  # restart input, death output and streams (Doom; CarRacing's dream may add
    # them: leaving the playfield ends its episodes)
    predict_reward: bool = False  # a reward output (the CarRacing dream pays it); none in the paper's Ms
    reward_weight: float = 1.0  # weight of the reward's squared error in the loss (z NLL and death have 1)
    reward_overestimate_weight: float = 1.0  # k: errors where M's reward exceeds the real one weigh k times (1:
    # the plain squared error, M predicts the expected reward; > 1: a pessimistic reward the dream's C cannot milk)
    num_mixtures: int = NUM_MIXTURES  # Gaussians per latent dimension (paper)
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
    init_model: str | None = None  # fine-tune: start from this rnn.keras (its class, sizes and weights: --rnn,
    # --rnn_cell, --hidden and --num_mixtures follow it; iterative training)

    def resolved(self, env: str) -> RNNTrainConfig:
        """The config with every None replaced by the paper's value for `env`, validated."""
        filled = {k: v for k, v in PAPER_DEFAULTS[env].items() if getattr(self, k) is None}
        config = dataclasses.replace(self, **filled)
        for name in ("steps", "batch_size", "seq_len", "hidden", "num_mixtures", "eval_every",
                     "checkpoint_every", "log_every"):
            if getattr(config, name) < 1:
                raise UserError(f"--{name}={getattr(config, name)}: must be at least 1")
        for name in ("learning_rate", "grad_clip", "restart_weight", "reward_weight", "reward_overestimate_weight"):
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
        if config.best_metric == "reward" and not config.predict_reward:
            raise UserError("--best_metric=reward needs the reward output (--predict_reward)")
        if config.rnn_cell not in RNN_CELLS:
            raise UserError(f"--rnn_cell={config.rnn_cell}: choose from {', '.join(RNN_CELLS)}")
        if config.rnn_cell != "lstm" and config.rnn != "mdnrnn":
            raise UserError(f"--rnn_cell={config.rnn_cell}: only the MDN-RNN (--rnn=mdnrnn) has a cell option, "
                            f"not --rnn={config.rnn}")
        return config

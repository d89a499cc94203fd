"""The training plumbing V and M share: the checkpoint a killed run resumes from, the update that is skipped when
a loss or gradient is not finite, and Ctrl-C / SIGTERM -> checkpoint -> `TrainingInterrupted`.

    checkpoint = TrainingCheckpoint(layout.checkpoints("vae"), model, optimizer, epoch=epoch)
    checkpoint.restore_latest()
    with checkpoint_on_interrupt(save, checkpoint, total_steps) as signal_received:
        for batch in batches:
            signal_received.raise_if_received()     # a SIGTERM whose KeyboardInterrupt a finalizer swallowed
            losses, finite = train_step(batch)       # built with `apply_if_finite`
            check_finite(finite, step, losses, checkpoint)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from common.errors import DataError, SignalReceived, TrainingInterrupted, UserError, sigterm_as_interrupt

__all__ = ["TrainingCheckpoint", "TrainingInterrupted", "apply_if_finite", "check_finite", "checkpoint_on_interrupt"]


class TrainingCheckpoint:
    """Everything a resumed run needs in one `tf.train.Checkpoint`: the model, the optimizer's slots, the step, and
    whatever data position the trainer keeps (`position`: named variables, e.g. the epoch or a carried LSTM state).

    Kept by a `tf.train.CheckpointManager` (the last `max_to_keep`, numbered by the step): a checkpoint counts once
    its index file names it, so a run killed while saving resumes from the one before.
    """

    def __init__(self, directory: str | Path, model: keras.Model, optimizer: keras.optimizers.Optimizer,
                 max_to_keep: int = 3, **position: Any):
        optimizer.build(model.trainable_variables)  # Adam's slots must exist to be restored
        self.directory = Path(directory)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, step=self.step, **position)
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(self.directory), max_to_keep=max_to_keep,
                                                  step_counter=self.step)

    @property
    def latest(self) -> str | None:
        """The path of the newest complete checkpoint, or None."""
        return self.manager.latest_checkpoint

    @property
    def current_step(self) -> int:
        return int(self.step.numpy())

    def restore_latest(self) -> str | None:
        """Restores the newest checkpoint, if any; returns its path. One that does not fit raises `DataError`."""
        latest = self.latest
        if latest:
            try:
                self.checkpoint.restore(latest).assert_existing_objects_matched()
            except (ValueError, AssertionError, tf.errors.OpError) as error:
                raise DataError(f"{latest}: cannot restore this checkpoint ({type(error).__name__}: "
                                f"{str(error).splitlines()[0]}); --noresume starts over") from None
        return latest

    def save(self) -> None:
        self.manager.save(checkpoint_number=self.step)


def apply_if_finite(optimizer: keras.optimizers.Optimizer, gradients: Sequence[tf.Tensor],
                    variables: Sequence[tf.Variable], loss: tf.Tensor, clip_value: float | None = None,
                    on_apply: Callable[[], None] | None = None) -> tf.Tensor:
    """Inside a compiled train step: applies `gradients` (clipped to +-clip_value if given) and runs `on_apply`
    only when `loss` and every gradient are finite, so a NaN never reaches the weights or a checkpoint.

    Returns the boolean tensor `finite`; the caller stops on False (`check_finite`).
    """
    gradients = list(gradients)
    finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in gradients + [loss]])

    def apply() -> tf.Tensor:
        updates = gradients if clip_value is None else [tf.clip_by_value(g, -clip_value, clip_value)
                                                        for g in gradients]
        optimizer.apply_gradients(zip(updates, variables))
        if on_apply is not None:
            on_apply()
        return tf.constant(True)

    return tf.cond(finite, apply, lambda: tf.constant(False))


def check_finite(finite: Any, step: int, losses: Mapping[str, Any], checkpoint: TrainingCheckpoint) -> None:
    """Raises `UserError` naming the step and its losses when a train step was skipped as non-finite: training
    stops without saving, so the last good checkpoint stays the one a rerun resumes from."""
    if bool(finite):
        return
    values = ", ".join(f"{name}={value}" for name, value in losses.items())
    raise UserError(f"non-finite loss at step {step:,} ({values}); stopped without saving, the last good "
                    f"checkpoint ({checkpoint.latest or 'none'}) is kept; try a lower --learning_rate")


@contextlib.contextmanager
def checkpoint_on_interrupt(save: Callable[[], None], checkpoint: TrainingCheckpoint,
                            total_steps: int) -> Iterator[SignalReceived]:
    """Ctrl-C or SIGTERM inside the block calls `save` (which writes `checkpoint` and whatever goes with it), then
    raises `TrainingInterrupted` naming the step reached, so the same command resumes there. The loop inside calls
    the yielded `raise_if_received()` each step (see `common.errors.SignalReceived`)."""
    try:
        with sigterm_as_interrupt() as received:
            yield received
    except KeyboardInterrupt:
        save()
        raise TrainingInterrupted(f"interrupted at step {checkpoint.current_step:,} of {total_steps:,}; checkpoint "
                                  f"saved in {checkpoint.directory}; run the same command to resume") from None

"""One TensorBoard writer for V, M and C, through `tf.summary`: grouped scalar tags (`losses/recon`, `es/best`,
`eval/return_mean`, `perf/steps_per_s`, ...), images, and the run's hyperparameters as text at its start.

Each stage writes to its own `tensorboard/` folder (`ExperimentLayout.tensorboard(stage)`,
`ControllerRun.tensorboard`), so `tensorboard --logdir DIR` shows every stage of an experiment side by side.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

HYPERPARAMETERS_TAG = "config/hyperparameters"


class SummaryWriter:
    """Writes one run's TensorBoard event file into `folder` (created if missing)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self._writer = tf.summary.create_file_writer(str(self.folder))

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        """One point per tag at `step`, e.g. {"losses/kl": 4.1, "perf/steps_per_s": 12.0}."""
        with self._writer.as_default(step=int(step)):
            for tag, value in values.items():
                tf.summary.scalar(tag, float(value))

    def image(self, tag: str, picture: np.ndarray, step: int) -> None:
        """One (H, W, 3) uint8 image, shown in TensorBoard's Images tab."""
        with self._writer.as_default(step=int(step)):
            tf.summary.image(tag, np.asarray(picture, np.uint8)[None])

    def hyperparameters(self, config: Mapping[str, Any], step: int = 0) -> None:
        """The run's settings as JSON in TensorBoard's Text tab, so a curve can be traced back to its flags."""
        text = "```\n" + json.dumps(dict(config), indent=2, default=str) + "\n```"
        with self._writer.as_default(step=int(step)):
            tf.summary.text(HYPERPARAMETERS_TAG, text)
        self._writer.flush()

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class TrainingScalars:
    """Averages a trainer's per-step losses over `every` steps and writes them as `losses/<name>`, with the
    learning rate (`train/learning_rate`) and the speed (`perf/steps_per_s`, `perf/<unit>_per_s`)."""

    def __init__(self, writer: SummaryWriter, every: int, optimizer: Any, batch_size: int, unit: str):
        self.writer, self.every, self.optimizer = writer, every, optimizer
        self.batch_size, self.unit = batch_size, unit
        self.sums: dict[str, float] = {}
        self.count, self.since = 0, time.monotonic()

    def add(self, step: int, losses: Mapping[str, float], last: bool = False) -> None:
        """Adds one step's losses; writes the averages every `every` steps and at the `last` step."""
        for name, value in losses.items():
            self.sums[name] = self.sums.get(name, 0.0) + float(value)
        self.count += 1
        if self.count < self.every and not last:
            return
        now = time.monotonic()
        steps_per_s = self.count / max(now - self.since, 1e-9)
        values = {f"losses/{name}": total / self.count for name, total in self.sums.items()}
        values.update({"train/learning_rate": float(self.optimizer.learning_rate), "perf/steps_per_s": steps_per_s,
                       f"perf/{self.unit}_per_s": steps_per_s * self.batch_size})
        self.writer.scalars(step, values)
        self.sums, self.count, self.since = {}, 0, now

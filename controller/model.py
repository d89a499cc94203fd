"""C: the paper's controller, a flat parameter vector that CMA-ES searches, and its action mappings.

CarRacing: a = tanh(W [z, h] + b), then steering = a0, gas = (a1 + 1) / 2, brake = clip(a2, 0, 1) (867 params).
Doom: a = tanh(w [z, c, h]) without bias, read in thirds as left / stay / right by the environment (1,088).
Ablations (CarRacing in the paper): `z` only (99), and `z_hidden`, z through 40 tanh units (1,443).

The action is a pure TensorFlow function of (parameters, features) that also takes a *batch* of parameter
vectors, one per row, so the dream can step many candidates of a CMA-ES population at once.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import numpy as np
import tensorflow as tf

from common.errors import DataError, UserError
from common.storage import write_text

ENVS = ("carracing", "doom")
VARIANTS = ("full", "z", "z_hidden")
PAPER_SIZES = {"carracing": {"z_size": 32, "hidden_size": 256, "action_size": 3},
               "doom": {"z_size": 64, "hidden_size": 512, "action_size": 1}}
HIDDEN_UNITS = 40  # the paper's z + hidden-layer ablation


@dataclasses.dataclass(frozen=True)
class Controller:
    """The controller's architecture; its weights live in a flat float32 vector of `num_params` values.

    Args:
      env: 'carracing' or 'doom' (Doom reads both the LSTM's cell c and output h, and has no bias).
      variant: 'full' ([z, h] or [z, c, h]), 'z' (z only) or 'z_hidden' (z, 40 tanh units, then the action).
      z_size, hidden_size: V's latent size and M's LSTM size (default: the paper's for `env`).
    """

    env: str = "carracing"
    variant: str = "full"
    z_size: int | None = None
    hidden_size: int | None = None

    def __post_init__(self):
        if self.env not in ENVS:
            raise UserError(f"controller env must be one of {', '.join(ENVS)}, got {self.env!r}")
        if self.variant not in VARIANTS:
            raise UserError(f"--controller={self.variant}: choose from {', '.join(VARIANTS)}")
        sizes = PAPER_SIZES[self.env]
        object.__setattr__(self, "z_size", self.z_size or sizes["z_size"])
        object.__setattr__(self, "hidden_size", self.hidden_size or sizes["hidden_size"])

    @property
    def action_size(self) -> int:
        return PAPER_SIZES[self.env]["action_size"]

    @property
    def use_bias(self) -> bool:
        return self.env != "doom"

    @property
    def input_size(self) -> int:
        if self.variant != "full":
            return self.z_size
        return self.z_size + (2 if self.env == "doom" else 1) * self.hidden_size

    def _shapes(self) -> list[tuple[int, ...]]:
        bias = self.use_bias
        if self.variant == "z_hidden":
            shapes = [(self.input_size, HIDDEN_UNITS), (HIDDEN_UNITS,) if bias else None,
                      (HIDDEN_UNITS, self.action_size), (self.action_size,) if bias else None]
        else:
            shapes = [(self.input_size, self.action_size), (self.action_size,) if bias else None]
        return [shape for shape in shapes if shape is not None]

    @property
    def num_params(self) -> int:
        return sum(int(np.prod(shape)) for shape in self._shapes())

    def get_config(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def features(self, z: tf.Tensor, h: tf.Tensor, c: tf.Tensor) -> tf.Tensor:
        """C's input: [z, h] for CarRacing, [z, c, h] for Doom, z alone for the ablations."""
        if self.variant != "full":
            return z
        return tf.concat([z, c, h] if self.env == "doom" else [z, h], axis=-1)

    def act(self, params: tf.Tensor, features: tf.Tensor) -> tf.Tensor:
        """tanh outputs in [-1, 1], shape (B, action_size).

        `params` is one vector (num_params,) shared by the batch, or (B, num_params), one per row.
        """
        params = tf.convert_to_tensor(params, tf.float32)
        features = tf.convert_to_tensor(features, tf.float32)
        batched = params.shape.rank == 2
        x = features
        offset = 0
        layers = self._shapes()
        step = 2 if self.use_bias else 1
        for layer in range(0, len(layers), step):
            weight_shape = layers[layer]
            size = int(np.prod(weight_shape))
            weight = params[..., offset:offset + size]
            offset += size
            weight = tf.reshape(weight, ([-1] if batched else []) + list(weight_shape))
            x = tf.einsum("bi,bio->bo", x, weight) if batched else tf.matmul(x, weight)
            if self.use_bias:
                units = weight_shape[1]
                x = x + params[..., offset:offset + units]  # (B, units) per row, or (units,) shared
                offset += units
            x = tf.tanh(x)
        return x

    def env_action_tensor(self, output: tf.Tensor) -> tf.Tensor:
        """Maps tanh outputs to the environment's action: CarRacing steering a0, gas (a1 + 1) / 2, brake
        clip(a2, 0, 1); Doom the raw value in [-1, 1], which the environment reads in thirds."""
        if self.env == "doom":
            return output
        return tf.stack([output[..., 0], (output[..., 1] + 1.0) / 2.0, tf.clip_by_value(output[..., 2], 0.0, 1.0)],
                        axis=-1)

    def env_action(self, output: np.ndarray) -> np.ndarray:
        """`env_action_tensor` for NumPy arrays."""
        return self.env_action_tensor(tf.convert_to_tensor(output, tf.float32)).numpy()

    def check_params(self, params: np.ndarray, source: str = "parameters") -> np.ndarray:
        params = np.asarray(params, np.float32).reshape(-1)
        if params.size != self.num_params:
            raise DataError(f"{source}: {params.size} parameters, but the {self.env} '{self.variant}' "
                            f"controller has {self.num_params}")
        if not np.all(np.isfinite(params)):
            raise DataError(f"{source}: parameters are not all finite")
        return params

    def save(self, path: str | os.PathLike, params: np.ndarray, **info: Any) -> None:
        """Writes the architecture and the flat parameters as a small JSON file, atomically."""
        params = self.check_params(params)
        write_text(path, json.dumps({"controller": self.get_config(), "params": params.tolist(), **info}) + "\n")

    @staticmethod
    def load(path: str | os.PathLike) -> tuple[Controller, np.ndarray]:
        """Reads a controller JSON file; problems raise a one-line `DataError` naming the file."""
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            controller = Controller(**data["controller"])
            params = data["params"]
        except FileNotFoundError:
            raise DataError(f"{path}: controller file not found") from None
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as error:
            raise DataError(f"{path}: not a controller file ({type(error).__name__}: {error})") from None
        return controller, controller.check_params(params, str(path))

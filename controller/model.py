"""C: the paper's controller, a flat parameter vector that CMA-ES searches, and its action mappings.

CarRacing: a = tanh(W [z, h] + b), then steering = a0, gas = (a1 + 1) / 2, brake = clip(a2, 0, 1) (867 params).
Doom: a = tanh(w [z, c, h]) without bias, read in thirds as left / stay / right by the environment (1,088).
Ablations (CarRacing in the paper): `z` only (99), and `z_hidden`, z through 40 tanh units (1,443).
Beyond the paper: `full_hidden` (`HiddenLayerController`), the full C plus a small tanh layer on z.

Each is registered by its name in `controller.interface.CONTROLLERS` (`--controller=NAME`), which users extend
with their own C's (`controller.interface.ControllerModel` lists what one provides). `save_controller` and
`load_controller` write and read any registered C.

The action is a pure TensorFlow function of (parameters, features) that also takes a *batch* of parameter
vectors, one per row, so the dream can step many candidates of a CMA-ES population at once.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, ClassVar

import numpy as np
import tensorflow as tf

from common.errors import DataError, UserError
from common.storage import write_text
from controller.interface import ControllerModel, controller_from_config, register_controller

ENVS = ("carracing", "doom")
VARIANTS = ("full", "z", "z_hidden")
PAPER_SIZES = {"carracing": {"z_size": 32, "hidden_size": 256, "action_size": 3},
               "doom": {"z_size": 64, "hidden_size": 512, "action_size": 1}}
HIDDEN_UNITS = 40  # the paper's z + hidden-layer ablation
SMALL_HIDDEN_UNITS = 8  # full_hidden's extra tanh layer on z


def _dense(params: tf.Tensor, offset: int, x: tf.Tensor, shape: tuple[int, int], use_bias: bool,
           batched: bool) -> tuple[tf.Tensor, int]:
    """x @ W (+ b) with W (and b) read from the flat `params` at `offset`: (result, offset after them). `params`
    is one vector shared by the batch, or one row per example when `batched`."""
    size = shape[0] * shape[1]
    weight = tf.reshape(params[..., offset:offset + size], ([-1] if batched else []) + list(shape))
    offset += size
    x = tf.einsum("bi,bio->bo", x, weight) if batched else tf.matmul(x, weight)
    if use_bias:
        x = x + params[..., offset:offset + shape[1]]  # (B, units) per row, or (units,) shared
        offset += shape[1]
    return x, offset


@register_controller("z_hidden")
@register_controller("z")
@register_controller("full")
@dataclasses.dataclass(frozen=True)
class Controller:
    """The controller's architecture; its weights live in a flat float32 vector of `num_params` values.

    Args:
      env: 'carracing' or 'doom' (Doom reads both the LSTM's cell c and output h, and has no bias).
      variant: 'full' ([z, h] or [z, c, h]), 'z' (z only) or 'z_hidden' (z, 40 tanh units, then the action).
      z_size, hidden_size: V's latent size and M's LSTM size (default: the paper's for `env`).
    """

    variants: ClassVar[tuple[str, ...]] = VARIANTS  # the variants this class builds

    env: str = "carracing"
    variant: str = "full"
    z_size: int | None = None
    hidden_size: int | None = None

    def __post_init__(self):
        if self.env not in ENVS:
            raise UserError(f"controller env must be one of {', '.join(ENVS)}, got {self.env!r}")
        if self.variant not in self.variants:
            raise UserError(f"--controller={self.variant}: {type(self).__name__} builds {', '.join(self.variants)}")
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
        x = tf.convert_to_tensor(features, tf.float32)
        batched = params.shape.rank == 2
        offset = 0
        layers = self._shapes()
        for weight_shape in layers[::2 if self.use_bias else 1]:
            x, offset = _dense(params, offset, x, weight_shape, self.use_bias, batched)
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
        return check_params(self, params, source)

    def save(self, path: str | os.PathLike, params: np.ndarray, **info: Any) -> None:
        """Writes the architecture and the flat parameters as a small JSON file, atomically."""
        save_controller(self, path, params, **info)

    @staticmethod
    def load(path: str | os.PathLike) -> tuple[ControllerModel, np.ndarray]:
        """`load_controller`: any registered C, not only this class."""
        return load_controller(path)


@register_controller("full_hidden")
@dataclasses.dataclass(frozen=True)
class HiddenLayerController(Controller):
    """The paper's full C plus a small nonlinear path on z, beyond the paper: a = tanh(W [z, h] + b + V tanh(U z
    + d)) (Doom: [z, c, h], no biases), with `units` tanh units (8: CarRacing 867 + 288 = 1,155 parameters, Doom
    1,088 + 520 = 1,608, small enough for CMA-ES's full covariance, unlike a hidden layer on all of [z, c, h]).
    With V zero it is the paper's C.
    """

    variants: ClassVar[tuple[str, ...]] = ("full_hidden",)
    variant: str = "full_hidden"
    units: int = SMALL_HIDDEN_UNITS

    @property
    def input_size(self) -> int:
        return self.z_size + (2 if self.env == "doom" else 1) * self.hidden_size

    def _shapes(self) -> list[tuple[int, ...]]:
        bias = self.use_bias
        shapes = [(self.input_size, self.action_size), (self.action_size,) if bias else None,
                  (self.z_size, self.units), (self.units,) if bias else None, (self.units, self.action_size)]
        return [shape for shape in shapes if shape is not None]

    def features(self, z: tf.Tensor, h: tf.Tensor, c: tf.Tensor) -> tf.Tensor:
        """[z, h] for CarRacing, [z, c, h] for Doom (z first: the hidden path reads it from there)."""
        return tf.concat([z, c, h] if self.env == "doom" else [z, h], axis=-1)

    def act(self, params: tf.Tensor, features: tf.Tensor) -> tf.Tensor:
        params = tf.convert_to_tensor(params, tf.float32)
        x = tf.convert_to_tensor(features, tf.float32)
        batched = params.shape.rank == 2
        linear, offset = _dense(params, 0, x, (self.input_size, self.action_size), self.use_bias, batched)
        hidden, offset = _dense(params, offset, x[:, :self.z_size], (self.z_size, self.units), self.use_bias,
                                batched)
        extra, _ = _dense(params, offset, tf.tanh(hidden), (self.units, self.action_size), False, batched)
        return tf.tanh(linear + extra)


def check_params(controller: ControllerModel, params: np.ndarray, source: str = "parameters") -> np.ndarray:
    """`params` as a flat float32 vector of C's size; a wrong size or a non-finite value raises `DataError`."""
    params = np.asarray(params, np.float32).reshape(-1)
    if params.size != controller.num_params:
        raise DataError(f"{source}: {params.size} parameters, but the {controller.env} '{controller.variant}' "
                        f"controller has {controller.num_params}")
    if not np.all(np.isfinite(params)):
        raise DataError(f"{source}: parameters are not all finite")
    return params


def save_controller(controller: ControllerModel, path: str | os.PathLike, params: np.ndarray, **info: Any) -> None:
    """Writes C's config and its flat parameters as a small JSON file, atomically."""
    params = check_params(controller, params)
    write_text(path, json.dumps({"controller": controller.get_config(), "params": params.tolist(), **info}) + "\n")


def load_controller(path: str | os.PathLike) -> tuple[ControllerModel, np.ndarray]:
    """Reads a controller JSON file: (C, found by its `variant` in the registry, and its parameters). Problems,
    an unknown or unimportable C among them, raise a one-line `DataError` naming the file."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        config, params = data["controller"], data["params"]
        controller = controller_from_config(config)
    except FileNotFoundError:
        raise DataError(f"{path}: controller file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as error:
        raise DataError(f"{path}: not a controller file ({type(error).__name__}: {error})") from None
    except UserError as error:
        raise DataError(f"{path}: {error}") from None
    return controller, check_params(controller, params, str(path))

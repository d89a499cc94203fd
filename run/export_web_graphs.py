"""The world model's computations as ONNX graphs for the browser (Keras 3's ONNX export, through tf2onnx), and the
Keras outputs the page is checked against.

    rnn_step.onnx    z (B, Z), action (B, A), h, c (B, H)[, restart (B,)] -> h_next, c_next, logits, mu,
                     log_sigma (B, Z, K)[, done_logit (B,)][, reward (B,)]
    decoder.onnx     z (B, Z) -> frame (B, 64, 64, 3) in [0, 1]
    controller.onnx  z, h, c -> action (B, A): the environment's action made from C's tanh outputs

M's graph is the dream's step (`envs.dream.dream_step`): M's `advance` (restart 1 zeroes the state first), then
`split_head` of its `head` on the new h (the logits normalised) and, for an M that predicts reward (CarRacing's
dream), `predicted_reward`; these are all it uses of M, so an M other than the paper's MDNRNN that provides them
exports too. The restart input and the done logit exist where M has them (`predict_done`: Doom's M always, a
CarRacing M optionally); `rnn_step_outputs` names the outputs of a given M. Drawing z' from the mixture stays in
the page's JavaScript, which owns the noise; it follows `rnn.model.sample_mixture_from_noise`, and
`reference_cases` gives the page fixed noise and the Keras results for it, so the page can show that both agree.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from common.storage import atomic_path
from controller.model import Controller
from rnn.model import MDNRNN, MixtureParams, sample_mixture_from_noise
from vae.model import ConvVAE

MIXTURE_STEP_OUTPUTS = ("h_next", "c_next", "logits", "mu", "log_sigma")  # every M's step gives these
CHECK_TEMPERATURES = (0.3, 1.15, 2.0)  # one chained step at each: the check covers tau's two roles


class _Graph(keras.Model):
    """A function of named float32 tensors as a Keras model, the form Keras' ONNX export traces. `parts` are the
    models whose weights the function reads (attributes, so Keras tracks their variables)."""

    def __init__(self, function: Callable[..., Sequence[tf.Tensor]], parts: Sequence[keras.Model], name: str):
        super().__init__(name=name)
        self.function = function
        self.parts = list(parts)

    def call(self, inputs: Sequence[tf.Tensor]) -> list[tf.Tensor]:
        return list(self.function(*inputs))


@contextlib.contextmanager
def _quiet_converter() -> Iterator[None]:
    """tf2onnx logs every pass at INFO and Keras' numpy-2 patch warns: the export prints one line of ours."""
    logger = logging.getLogger("tf2onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _rename_outputs(path: Path, names: Sequence[str]) -> None:
    """Gives the graph's outputs (tf2onnx names them Identity:0, ...) the names the page reads."""
    import onnx

    model = onnx.load(str(path))
    mapping = {output.name: name for output, name in zip(model.graph.output, names, strict=True)}
    for node in model.graph.node:
        node.output[:] = [mapping.get(name, name) for name in node.output]
        node.input[:] = [mapping.get(name, name) for name in node.input]
    for output in model.graph.output:
        output.name = mapping[output.name]
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def export_graph(function: Callable[..., Sequence[tf.Tensor]], parts: Sequence[keras.Model],
                 inputs: dict[str, tuple[int, ...]], outputs: Sequence[str], path: str | os.PathLike) -> Path:
    """Writes `function` of float32 inputs {name: shape without the batch axis} as an ONNX graph with the given
    output names, atomically; any batch size."""
    graph = _Graph(function, parts, Path(path).stem)
    graph([tf.zeros((1, *shape)) for shape in inputs.values()])  # Keras exports only a model that has run
    signature = [[tf.TensorSpec((None, *shape), tf.float32, name=name) for name, shape in inputs.items()]]
    with atomic_path(path, suffix=".onnx") as tmp, _quiet_converter():
        graph.export(str(tmp), format="onnx", input_signature=signature, verbose=False)
        _rename_outputs(tmp, outputs)
    return Path(path)


def predicts_reward(rnn: MDNRNN) -> bool:
    """Whether M has a reward output (`MDNRNN(predict_reward=True)`: the CarRacing dream pays it)."""
    return bool(getattr(rnn, "predict_reward", False))


def rnn_step_outputs(rnn: MDNRNN) -> tuple[str, ...]:
    """The names of M's step outputs: the state and mixture, then done_logit (`predict_done`), then reward."""
    return (MIXTURE_STEP_OUTPUTS + (("done_logit",) if rnn.predict_done else ())
            + (("reward",) if predicts_reward(rnn) else ()))


def _rnn_step(rnn: MDNRNN, z: Any, action: Any, h: Any, c: Any, restart: Any = None) -> list[tf.Tensor]:
    """M's part of `envs.dream.dream_step` with its outputs in `rnn_step_outputs` order."""
    h, c = rnn.advance(z, action, (h, c), restart)
    out = rnn.head(h)
    params, done_logit = rnn.split_head(out)
    extra = [done_logit] if rnn.predict_done else []
    if predicts_reward(rnn):
        extra.append(rnn.predicted_reward(out))
    return [h, c, *params, *extra]


def export_rnn_step(rnn: MDNRNN, path: str | os.PathLike) -> Path:
    """M's step with its head: (z, action, h, c[, restart]) -> `rnn_step_outputs(rnn)`. Doom's M (restart input,
    death output) or an M that predicts reward (CarRacing's dream); any other M has no dream to export."""
    if not (rnn.predict_done or predicts_reward(rnn)):
        raise ValueError("M has no dream to export: it predicts neither death (Doom) nor reward (CarRacing)")
    inputs = {"z": (rnn.z_size,), "action": (rnn.action_size,), "h": (rnn.hidden_size,), "c": (rnn.hidden_size,)}
    if rnn.predict_done:  # only such an M reads the restart flag
        inputs["restart"] = ()
    return export_graph(lambda *tensors: _rnn_step(rnn, *tensors), [rnn], inputs, rnn_step_outputs(rnn), path)


def export_decoder(vae: ConvVAE, path: str | os.PathLike) -> Path:
    """V's decoder: z -> frame (B, 64, 64, 3) in [0, 1]."""
    return export_graph(lambda z: [vae.decode(z)], [vae], {"z": (vae.z_size,)}, ("frame",), path)


def controller_action(controller: Controller, params: Any, z: Any, h: Any, c: Any) -> tf.Tensor:
    """The environment's action C takes on (z, h, c): what the dream and the page feed M."""
    return controller.env_action_tensor(controller.act(params, controller.features(z, h, c)))


def export_controller(controller: Controller, params: np.ndarray, path: str | os.PathLike) -> Path:
    """C with its parameters built in: (z, h, c) -> the environment's action (B, A)."""
    weights = np.asarray(params, np.float32)  # a NumPy array becomes a constant inside the graph (a tensor made
    # outside it would be captured, and tf2onnx would make it an input)
    inputs = {"z": (controller.z_size,), "h": (controller.hidden_size,), "c": (controller.hidden_size,)}
    return export_graph(lambda z, h, c: [controller_action(controller, weights, z, h, c)], [], inputs, ("action",),
                        path)


def reference_cases(rnn: MDNRNN, vae: ConvVAE, z0: np.ndarray, seed: int = 0,
                    controller: Controller | None = None, params: np.ndarray | None = None,
                    temperatures: Sequence[float] = CHECK_TEMPERATURES,
                    action_ranges: Sequence[tuple[float, float]] | None = None) -> list[dict[str, Any]]:
    """Steps of one dream from z0 (Z,) with fixed noise, one per temperature, and what Keras computes for each.

    Each case: inputs z, h, c, restart (1 on the first step), action (what M is fed: uniform in each value's
    `action_ranges`, default [-1, 1]), temperature, uniform (Z, K) and normal (Z,) (the sampling's noise); outputs
    `rnn_step_outputs(rnn)`, z_next (V's mixture sampled with that noise), frame (V's decoding of z) and, with a
    controller, controller_action (C on z, h, c). Each step continues from the previous one's z_next, h and c.
    """
    rng = np.random.default_rng(seed)
    ranges = np.asarray(action_ranges or [(-1.0, 1.0)] * rnn.action_size, np.float64)
    z = np.asarray(z0, np.float32)[None]
    state = rnn.initial_state(1)
    cases = []
    for step, temperature in enumerate(temperatures):
        action = rng.uniform(ranges[:, 0], ranges[:, 1], (1, rnn.action_size)).astype(np.float32)
        restart = np.array([1.0 if step == 0 else 0.0], np.float32)
        uniform = rng.uniform(1e-20, 1.0, (1, rnn.z_size, rnn.num_mixtures)).astype(np.float32)
        normal = rng.standard_normal((1, rnn.z_size)).astype(np.float32)
        h, c = (np.asarray(part) for part in state)
        results = _rnn_step(rnn, tf.constant(z), tf.constant(action), *state, tf.constant(restart))
        new_state, params_m = tuple(results[:2]), MixtureParams(*results[2:5])
        z_next = sample_mixture_from_noise(params_m, temperature, uniform, normal).numpy()
        outputs = dict(zip(rnn_step_outputs(rnn), results, strict=True))
        case = {"inputs": {"z": z[0], "h": h[0], "c": c[0], "restart": restart[0], "action": action[0],
                           "temperature": np.float32(temperature), "uniform": uniform[0], "normal": normal[0]},
                "outputs": {**{name: np.asarray(value)[0] for name, value in outputs.items()},
                            "z_next": z_next[0], "frame": vae.decode(tf.constant(z)).numpy()[0]}}
        if controller is not None:
            case["outputs"]["controller_action"] = controller_action(controller, params, z, h, c).numpy()[0]
        cases.append(case)
        z, state = z_next, new_state
    return cases


def as_json(value: Any) -> Any:
    """Arrays and NumPy scalars as nested lists of floats, for JSON; each float reads back as the same float32."""
    if isinstance(value, dict):
        return {key: as_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [as_json(item) for item in value]
    if isinstance(value, np.ndarray | np.generic):
        array = np.asarray(value, np.float32)
        # The shortest decimal that reads back as the same float32 (a float64 repr would be twice as long).
        return np.array([float(str(item)) for item in array.ravel()]).reshape(array.shape).tolist()
    return value

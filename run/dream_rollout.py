"""One dream people can watch: V, M's dream (`envs.dream`) and a driver, stepped one frame at a time.

z_0 is drawn from N(mu, sigma^2) of a real first frame (`series/initial_z.npz`, which Doom needs; CarRacing
falls back to the first frame of a random `series/ep*.npz`). At every step the driver acts on z_t and M's state
(C, fixed actions, or held keys overriding either), the dream's one step (`envs.dream.dream_step`) advances M
and draws z_{t+1} at tau, and V decodes the frames.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

from common.errors import DataError, UserError
from common.layout import ExperimentLayout, experiment
from common.storage import episode_files, read_series
from controller.agent import check_compatible
from controller.evaluate import default_controller_file
from controller.model import Controller
from envs.dream import DreamDynamics, DreamState, load_initial_z, sample_start
from rnn.model import load_rnn
from run.dream_config import ACTION_SIZES, DEFAULT_ACTIONS, DreamConfig
from vae.encode import load_vae

DECODE_BATCH = 256  # V decodes a batch ~6x faster per frame than one frame at a time (7 ms a call on 2 cores)


class StartFrames:
    """Where dreams start: (mu, logvar) of real first frames, from `initial_z.npz` or (CarRacing) series files."""

    def __init__(self, layout: ExperimentLayout, env: str):
        self._files: list[Path] = []
        if env == "doom" or layout.initial_z.exists():
            if not layout.initial_z.exists():
                raise DataError(f"{layout.initial_z}: file not found (the Doom dream starts from it; write it "
                                "with python -m vae.encode)")
            self._mu, self._logvar = load_initial_z(layout.initial_z)
            self.source, self.z_size = layout.initial_z, self._mu.shape[1]
        else:
            self._files = episode_files(layout.series, "series")
            self.source, self.z_size = layout.series, read_series(self._files[0])["mu"].shape[1]

    def sample(self, seed: int) -> np.ndarray:
        """z_0 (Z,) for `seed`: a random stored first frame, then a draw from N(mu, sigma^2) (as DreamDynamics)."""
        if self._files:
            arrays = read_series(self._files[np.random.default_rng(int(seed)).integers(len(self._files))])
            return sample_start(arrays["mu"][:1], arrays["logvar"][:1], seed)
        return sample_start(self._mu, self._logvar, seed)


class Dream(NamedTuple):
    """One dream in progress: M's dream state (a batch of 1), the steps dreamt, and its seed (step t samples
    with the stateless seed (seed, t))."""

    state: DreamState
    step: int
    seed: int


class StepOutput(NamedTuple):
    """What one dream step did, for the caller to show, record or stop on."""

    z: np.ndarray  # (Z,) the z acted on (the frame shown is V's decoding of it)
    action: np.ndarray  # (A,) the action taken (controller's, fixed, or overridden by keys)
    death_probability: float  # Doom: sigmoid of the death logit after the step; CarRacing: 0
    died: bool  # Doom: the death logit > 0
    ended: bool  # died, or the step cap reached


@dataclasses.dataclass(frozen=True)
class DreamRollout:
    """One dream: per step the frame, z and action; `steps` = len(frames); `died` if Doom's M ended it."""

    frames: np.ndarray  # (T, 64, 64, 3) uint8
    latents: np.ndarray  # (T, Z) float32
    actions: np.ndarray  # (T, A) float32
    death_probabilities: np.ndarray  # (T,) float32
    steps: int
    died: bool
    temperature: float
    driver: str  # "controller <file>" or "actions <values>"


class Dreamer:
    """V, M's dream and the driver: `step` (act, then the dream's step at tau) and `decode` (z -> frames).

    `step` takes a key override per action value (mask, value), so --play and videos share one code path.
    """

    def __init__(self, vae, dynamics: DreamDynamics, starts: StartFrames, controller: Controller | None = None,
                 params: np.ndarray | None = None, actions: tuple[float, ...] | None = None, driver: str = ""):
        rnn = dynamics.rnn
        self.vae, self.dynamics, self.starts, self.controller = vae, dynamics, starts, controller
        size = rnn.action_size
        actions = actions if actions is not None else DEFAULT_ACTIONS["doom" if size == 1 else "carracing"]
        fixed = tf.constant(np.asarray(actions, np.float32).reshape(1, size))
        self.driver = driver or (f"controller ({controller.env}, {controller.variant})" if controller is not None
                                 else "actions " + ",".join(f"{a:g}" for a in actions))
        params_t = None if controller is None else tf.constant(np.asarray(params, np.float32))

        def act(z, h, c, mask, value):
            if controller is None:
                base = fixed
            else:
                base = controller.env_action_tensor(controller.act(params_t, controller.features(z, h, c)))
            return mask * value + (1.0 - mask) * base

        def decode(z):
            return tf.cast(tf.round(tf.clip_by_value(vae.decode(z) * 255.0, 0.0, 255.0)), tf.uint8)

        spec = tf.TensorSpec
        self._act = tf.function(act, input_signature=[
            spec([1, rnn.z_size], tf.float32), spec([1, rnn.hidden_size], tf.float32),
            spec([1, rnn.hidden_size], tf.float32), spec([size], tf.float32), spec([size], tf.float32)])
        self._decode = tf.function(decode, input_signature=[spec([None, rnn.z_size], tf.float32)])
        self._no_override = np.zeros(size, np.float32)

    def reset(self, seed: int) -> Dream:
        """A new dream: z_0 from a real first frame drawn with `seed`, M's state zero."""
        return Dream(self.dynamics.start(self.starts.sample(seed)[None]), 0, int(seed) & 0x7FFFFFFF)

    def step(self, dream: Dream, temperature: float, mask: np.ndarray | None = None,
             value: np.ndarray | None = None) -> tuple[StepOutput, Dream]:
        """Acts on z_t and dreams z_{t+1}: action values where `mask` is 1 come from `value` (the keys)."""
        state = dream.state
        action = self._act(state.z, state.h, state.c,
                           tf.constant(self._no_override if mask is None else mask, tf.float32),
                           tf.constant(self._no_override if value is None else value, tf.float32))
        result = self.dynamics.step(state, action, (dream.seed, dream.step), temperature)
        died = bool(result.died[0])
        output = StepOutput(state.z.numpy()[0], action.numpy()[0], float(tf.sigmoid(result.death_logit[0])), died,
                            died or bool(result.truncated[0]))
        return output, Dream(result.state, dream.step + 1, dream.seed)

    def decode(self, latents: Any) -> np.ndarray:
        """V's frames (T, 64, 64, 3) uint8 of latents (T, Z), in compiled batches."""
        latents = np.asarray(latents, np.float32)
        return np.concatenate([self._decode(latents[start:start + DECODE_BATCH]).numpy()
                               for start in range(0, len(latents), DECODE_BATCH)])

    def rollout(self, seed: int, temperature: float) -> DreamRollout:
        """One dream from `seed` until Doom's M predicts death or the step cap, then its frames."""
        dream, outputs = self.reset(seed), []
        while not outputs or not outputs[-1].ended:
            output, dream = self.step(dream, temperature)
            outputs.append(output)
        latents = np.stack([o.z for o in outputs])
        return DreamRollout(self.decode(latents), latents, np.stack([o.action for o in outputs]),
                            np.array([o.death_probability for o in outputs], np.float32),
                            len(outputs), outputs[-1].died, float(temperature), self.driver)


def _driver(exp_dir: str | os.PathLike, config: DreamConfig) -> tuple[Path | None, Controller | None, Any]:
    """(file, C, its parameters) driving the dream, or Nones where fixed actions drive it."""
    path = Path(config.controller_file) if config.controller_file else None
    if path is None and config.actions is None:
        try:
            path = default_controller_file(exp_dir, config.env)
        except UserError:  # no trained controller yet: fixed actions drive the dream
            return None, None, None
    if path is None:
        return None, None, None
    controller, params = Controller.load(path)
    if controller.env != config.env:
        raise UserError(f"{path}: a {controller.env} controller cannot drive the {config.env} dream")
    return path, controller, params


def load_dreamer(exp_dir: str | os.PathLike, config: DreamConfig) -> Dreamer:
    """V, M, the start frames and the driver (C or fixed actions) of `exp_dir` for a resolved `config`."""
    layout = experiment(exp_dir, create=False)
    path, controller, params = _driver(exp_dir, config)
    starts = StartFrames(layout, config.env)
    rnn = load_rnn(layout.rnn_model)
    if (config.env == "doom" and not rnn.predict_done) or rnn.action_size != ACTION_SIZES[config.env]:
        raise DataError(f"{layout.rnn_model}: not a {config.env} M (action size {rnn.action_size}, "
                        f"{'with' if rnn.predict_done else 'without'} the death output)")
    if starts.z_size != rnn.z_size:
        raise DataError(f"{starts.source}: start frames have z size {starts.z_size} but M has {rnn.z_size}")
    vae = load_vae(layout.vae_model, z_size=rnn.z_size)
    if controller is not None:
        check_compatible(vae, rnn, controller)
    dynamics = DreamDynamics(rnn, temperature=config.temperature, max_steps=config.max_steps, batch_size=1)
    return Dreamer(vae, dynamics, starts, controller, params, config.actions,
                   driver=f"controller {path}" if controller is not None else "")


def dream_rollout(exp_dir: str | os.PathLike, config: DreamConfig) -> DreamRollout:
    """Dreams one episode of `exp_dir` with `config`; no files are written."""
    config = config.resolved()
    return load_dreamer(exp_dir, config).rollout(config.seed, config.temperature)

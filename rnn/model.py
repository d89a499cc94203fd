"""M: the MDN-RNN of World Models (Ha & Schmidhuber, 2018), in Keras 3.

An LSTM reads (z_t, a_t[, restart_t]) and a Dense head maps its output h_{t+1} to a mixture of K Gaussians for
every dimension of z_{t+1} (diagonal: each dimension has its own K-component mixture) and, for Doom, one logit
predicting that the next frame is a restart (the agent died). Paper sizes: 422,368 parameters for CarRacing
(z 32, action 3, LSTM 256) and 1,678,785 for Doom (z 64, action 1, restart flag, LSTM 512).

The model keeps no recurrent state. State is the tuple (h, c) of (B, hidden) tensors:

    state = model.initial_state(batch)
    state = model.next_state(z, action, state, restart)            # controller hot path (tf.function)
    state, params, done_logit = model.step(state, z, action, restart)   # next_state + head: MixtureParams, each
                                                                   # (B, Z, K), and the death logit (B,) or None
    z_next = sample_mixture(params, temperature, seed)             # (B, Z); seed: [2] ints or tf.random.Generator

Inside another tf.function (the dream's while loop, an agent's compiled act) the same parts are plain ops:
`model.advance(z, action, state, restart)`, `model.split_head(model.head(h))` -> (MixtureParams, done_logit),
`model.sample(params, temperature, seed)`.

`call` unrolls a whole sequence (teacher forcing) from an optional initial state and returns the final state.

`MDNRNN(cell="gru")` (`rnn.train --rnn_cell=gru`) replaces the LSTM by a GRU (`rnn.cells.ResettableGRU`) under the
same head; its state is still (h, c), with c zero. Any other M that provides `rnn.interface.MemoryModel` trains,
dreams and plays the same way; `load_rnn` loads any of them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from common.errors import DataError
from common.interfaces import import_saved_module
from rnn.cells import ResettableGRU
from rnn.interface import MemoryModel, memory_model_problem, register_rnn

tfd = tfp.distributions

State = tuple[tf.Tensor, tf.Tensor]  # (h, c), each (B, hidden)
MIN_TEMPERATURE = 1e-6  # tau is clamped here so that tau = 0 picks the most likely component's mean


class MixtureParams(NamedTuple):
    """Parameters of one K-component Gaussian mixture per latent dimension, each (..., Z, K).

    logits are log pi, already normalised (logsumexp over K is 0); sigma = exp(log_sigma).
    """

    logits: tf.Tensor
    mu: tf.Tensor
    log_sigma: tf.Tensor


def mixture_distribution(logits: Any, mu: Any, log_sigma: Any,
                         temperature: Any = 1.0) -> tfd.MixtureSameFamily:
    """The mixture p(z) of every dimension: Categorical(logits / tau) over Normal(mu, exp(log_sigma) sqrt(tau)).

    Args have shape (..., K); the distribution's batch shape is (...) and its events are scalars. With
    temperature 1 this is the model's density (used by the loss); other temperatures follow the paper's
    sampling (the 2018 code divides the mixture logits by tau and scales the noise by sqrt(tau)).
    """
    temperature = tf.maximum(tf.cast(temperature, tf.float32), MIN_TEMPERATURE)
    return tfd.MixtureSameFamily(
        mixture_distribution=tfd.Categorical(logits=logits / temperature),
        components_distribution=tfd.Normal(loc=mu, scale=tf.exp(log_sigma) * tf.sqrt(temperature)))


def mixture_nll_sum(params: MixtureParams, target: Any, mask: Any = None) -> tuple[tf.Tensor, tf.Tensor]:
    """(Sum, count) of the negative log-likelihoods of `target` (..., Z) under `params` over all (masked) entries:
    M's z loss. Sums, so that validation over many batches weights every entry alike; `mixture_nll` is the mean.

    `mask` (...) without the Z axis marks the valid steps (1) and the ignored ones (0).
    """
    nll = -mixture_distribution(*params).log_prob(target)  # (..., Z)
    if mask is None:
        return tf.reduce_sum(nll), tf.cast(tf.size(nll), nll.dtype)
    mask = tf.cast(mask, nll.dtype)
    return tf.reduce_sum(nll * mask[..., None]), tf.reduce_sum(mask) * tf.cast(tf.shape(nll)[-1], nll.dtype)


def mixture_nll(params: MixtureParams, target: Any, mask: Any = None) -> tf.Tensor:
    """Mean negative log-likelihood of `target` (..., Z) under `params`, over all (masked) entries."""
    total, count = mixture_nll_sum(params, target, mask)
    return total / tf.maximum(count, 1.0)


def done_loss(done_logit: Any, target: Any, mask: Any = None, positive_weight: float = 10.0) -> tf.Tensor:
    """Sigmoid cross-entropy of the restart (death) logit, positives weighted x10 as in the 2018 Doom code."""
    loss = tf.nn.weighted_cross_entropy_with_logits(
        labels=tf.cast(target, tf.float32), logits=done_logit, pos_weight=positive_weight)
    if mask is None:
        return tf.reduce_mean(loss)
    mask = tf.cast(mask, loss.dtype)
    return tf.reduce_sum(loss * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)


def as_stateless_seed(seed: Any) -> tf.Tensor:
    """A stateless seed (shape [2] int) from an int, a [2] tensor, or a `tf.random.Generator` (which advances)."""
    if isinstance(seed, tf.random.Generator):
        return seed.uniform_full_int([2], tf.int32)
    if isinstance(seed, int):
        return tf.constant([seed, 0], tf.int32)
    return tf.cast(seed, tf.int32)


def sample_mixture(params: MixtureParams, temperature: Any, seed: Any) -> tf.Tensor:
    """Draws z' (..., Z): per dimension one component k ~ softmax(logits / tau), then mu_k + sigma_k eps sqrt(tau).

    This samples exactly the distribution `mixture_distribution(*params, temperature)` describes, but draws the
    component by the Gumbel-max trick and only that component's noise: in the 1,024-dream loop it is ~1.5x
    faster than `MixtureSameFamily.sample`, which draws every component. `seed` is a stateless seed ([2] ints,
    so this works inside `tf.function` and `tf.while_loop`) or a `tf.random.Generator`.
    """
    return sample_mixture_from_noise(params, temperature, *mixture_noise(tf.shape(params.logits), seed))


def mixture_noise(shape: Any, seed: Any) -> tuple[tf.Tensor, tf.Tensor]:
    """The noise `sample_mixture` draws from `seed` for mixtures of shape (..., Z, K): uniform (..., Z, K) in
    (0, 1) and standard normal (..., Z)."""
    choice_seed, noise_seed = tf.unstack(tf.random.experimental.stateless_split(as_stateless_seed(seed), 2))
    uniform = tf.random.stateless_uniform(shape, choice_seed, minval=1e-20, maxval=1.0)
    return uniform, tf.random.stateless_normal(shape[:-1], noise_seed)


def sample_mixture_from_noise(params: MixtureParams, temperature: Any, uniform: Any, normal: Any) -> tf.Tensor:
    """`sample_mixture` with its noise given: uniform (..., Z, K) in (0, 1) picks each dimension's component k =
    argmax(logits / tau - log(-log uniform)) (Gumbel-max), normal (..., Z) gives z' = mu_k + sigma_k sqrt(tau)
    normal. The definition other runtimes of the dream (the web page of `run.export_web`) must match."""
    temperature = tf.maximum(tf.cast(temperature, tf.float32), MIN_TEMPERATURE)
    component = tf.argmax(params.logits / temperature - tf.math.log(-tf.math.log(uniform)), axis=-1)
    chosen = tf.one_hot(component, tf.shape(params.logits)[-1], dtype=params.mu.dtype)
    mu = tf.reduce_sum(params.mu * chosen, axis=-1)
    sigma = tf.exp(tf.reduce_sum(params.log_sigma * chosen, axis=-1))
    return mu + sigma * tf.sqrt(temperature) * tf.cast(normal, mu.dtype)


def _forget_bias_ones(shape: Any, dtype: Any = None) -> tf.Tensor:
    """LSTM bias initialiser: zeros but ones on the forget gate (Keras' `unit_forget_bias`)."""
    units = shape[0] // 4
    return tf.concat([tf.zeros([units]), tf.ones([units]), tf.zeros([2 * units])], 0)


def lstm_gates(gates: tf.Tensor, c: tf.Tensor) -> State:
    """The LSTM's cell update from its gate pre-activations (B, 4 units) in Keras' i-f-c-o order and the cell c:
    the new (h, c)."""
    i, f, g, o = tf.split(gates, 4, axis=-1)
    c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
    return tf.sigmoid(o) * tf.tanh(c), c


@keras.saving.register_keras_serializable(package="worldmodels")
class ResettableLSTM(keras.layers.Layer):
    """An LSTM (Keras' gates and initialisers, i-f-c-o order, one bias) whose state can be zeroed mid-sequence.

    `keep` (B, T) is 1 where the state carries over and 0 where it is reset before the step consuming that
    input (Doom's restart flag). `call` unrolls the steps in a `tf.scan` over time-major inputs, each step
    projecting its own input (as keras.layers.LSTM does); `run.benchmark --cases=rnn` times it against that
    plain LSTM.
    """

    def __init__(self, units: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape: Any) -> None:
        input_size = int(input_shape[-1])
        self.kernel = self.add_weight(shape=(input_size, 4 * self.units), initializer="glorot_uniform",
                                      name="kernel")
        self.recurrent_kernel = self.add_weight(shape=(self.units, 4 * self.units), initializer="orthogonal",
                                                name="recurrent_kernel")
        self.bias = self.add_weight(shape=(4 * self.units,), initializer=_forget_bias_ones, name="bias")
        self.built = True

    def _cell(self, projected: tf.Tensor, h: tf.Tensor, c: tf.Tensor, recurrent_kernel: tf.Tensor) -> State:
        # A bfloat16 recurrent kernel (the dream's fast path) multiplies in bfloat16; float32 casts are no-ops.
        return lstm_gates(projected + tf.cast(tf.matmul(tf.cast(h, recurrent_kernel.dtype), recurrent_kernel),
                                              projected.dtype), c)

    def step(self, x: tf.Tensor, state: State, keep: tf.Tensor | None = None,
             recurrent_kernel: tf.Tensor | None = None) -> State:
        """One step: x (B, in), state (h, c), keep (B,) or None -> new (h, c). `recurrent_kernel` replaces the
        layer's own (e.g. a bfloat16 copy)."""
        h, c = state
        if keep is not None:
            h, c = h * keep[:, None], c * keep[:, None]
        projected = tf.matmul(x, self.kernel) + self.bias
        kernel = tf.convert_to_tensor(self.recurrent_kernel) if recurrent_kernel is None else recurrent_kernel
        return self._cell(projected, h, c, kernel)

    def call(self, x: tf.Tensor, keep: tf.Tensor | None = None,
             initial_state: State | None = None) -> tuple[tf.Tensor, State]:
        """Unrolls x (B, T, in) -> (outputs h (B, T, units), final state (h, c))."""
        batch = tf.shape(x)[0]
        if initial_state is None:
            initial_state = (tf.zeros([batch, self.units]), tf.zeros([batch, self.units]))
        steps = tf.transpose(x, [1, 0, 2])  # time-major (T, B, in)
        kernel, bias = tf.convert_to_tensor(self.kernel), tf.convert_to_tensor(self.bias)
        recurrent_kernel = tf.convert_to_tensor(self.recurrent_kernel)

        # Each step projects its own input: a projection of the whole sequence at once is a (T, B, 4 units)
        # tensor (80 MB at Doom's 100 x 100 x 2,048) that the scan and its gradient stream through memory;
        # measured 20% slower for the whole forward and backward pass.
        if keep is None:
            def body(state: State, x_t: tf.Tensor) -> State:
                return self._cell(tf.matmul(x_t, kernel) + bias, *state, recurrent_kernel)

            hs, cs = tf.scan(body, steps, initializer=tuple(initial_state))
        else:
            def body(state: State, inputs: tuple[tf.Tensor, tf.Tensor]) -> State:
                (h, c), (x_t, keep_t) = state, inputs
                return self._cell(tf.matmul(x_t, kernel) + bias, h * keep_t, c * keep_t, recurrent_kernel)

            keep = tf.transpose(tf.cast(keep, x.dtype))[:, :, None]
            hs, cs = tf.scan(body, (steps, keep), initializer=tuple(initial_state))
        return tf.transpose(hs, [1, 0, 2]), (hs[-1], cs[-1])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.units}


def _spec(*shape: int | None) -> tf.TensorSpec:
    return tf.TensorSpec(shape, tf.float32)


_STATE_SPEC = (_spec(None, None), _spec(None, None))


def _step_function(*signature: Any) -> Any:
    """`tf.function` for the step API: XLA-compiled, any batch size. Measured at batch 1 on 2 cores: XLA and
    calling the concrete function (not the polymorphic one) each halve the ~0.7 ms of a plain tf.function."""
    return tf.function(input_signature=list(signature), jit_compile=True)


class _ConcreteFunctions:
    """The step API's concrete functions, traced on first use (a plain object, so Keras does not track it)."""

    def __init__(self) -> None:
        self.functions: dict[str, Any] = {}

    def get(self, name: str, function: Any) -> Any:
        if name not in self.functions:
            self.functions[name] = function.get_concrete_function()
        return self.functions[name]


def split_mixture_output(out: tf.Tensor, z_size: int, num_mixtures: int,
                         predict_done: bool) -> tuple[MixtureParams, tf.Tensor | None]:
    """Head outputs (..., 3 K Z [+ 1] [+ 1]) -> (MixtureParams each (..., Z, K) with normalised logits, death logit
    (...) or None): per dimension [log pi (K), mu (K), log sigma (K)], then the death logit (then, for an M that
    predicts reward, the reward: `MDNRNN.predicted_reward`). Any M's `split_head` may use it."""
    k, z = num_mixtures, z_size
    mixture = tf.reshape(out[..., :3 * k * z], tf.concat([tf.shape(out)[:-1], [z, 3, k]], 0))
    log_pi, mu, log_sigma = tf.unstack(mixture, axis=-2)
    log_pi = log_pi - tf.reduce_logsumexp(log_pi, axis=-1, keepdims=True)
    done_logit = out[..., 3 * k * z] if predict_done else None
    return MixtureParams(log_pi, mu, log_sigma), done_logit


CELLS = ("lstm", "gru")  # MDNRNN's recurrent cores: the paper's LSTM, or a GRU


@register_rnn("mdnrnn")
@keras.saving.register_keras_serializable(package="worldmodels")
class MDNRNN(keras.Model):
    """LSTM (or GRU) + mixture density head over z_{t+1} (and, for Doom, the restart/death logit).

    Args:
      z_size: latent size Z (32 CarRacing, 64 Doom).
      action_size: action size A (3 CarRacing, 1 Doom).
      hidden_size: LSTM units (256 CarRacing, 512 Doom).
      num_mixtures: Gaussians per latent dimension K (5 in the paper).
      predict_done: the Doom variant: a restart flag is the last input (input size Z + A + 1), where it is 1
        the LSTM state is zeroed before the step, and the head has one extra output, the death logit.
      predict_reward: one more head output, the reward of the step (`predicted_reward`): what the CarRacing
        dream pays (the paper's Ms have none; the 2018 code's iterative procedure describes one).
      cell: 'lstm' (the paper's) or 'gru' (`ResettableGRU`: the same head; the state's c stays zero).

    The head's outputs are, per dimension, [log pi (K), mu (K), log sigma (K)], then the death logit, then the
    reward.
    """

    def __init__(self, z_size: int = 32, action_size: int = 3, hidden_size: int = 256, num_mixtures: int = 5,
                 predict_done: bool = False, cell: str = "lstm", predict_reward: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        if cell not in CELLS:
            raise ValueError(f"MDNRNN cell must be one of {', '.join(CELLS)}, got {cell!r}")
        self.cell = cell
        self.z_size, self.action_size = int(z_size), int(action_size)
        self.hidden_size, self.num_mixtures = int(hidden_size), int(num_mixtures)
        self.predict_done = bool(predict_done)
        self.predict_reward = bool(predict_reward)
        self.input_size = self.z_size + self.action_size + int(self.predict_done)
        self.output_size = 3 * self.num_mixtures * self.z_size + int(self.predict_done) + int(self.predict_reward)
        if cell == "lstm":
            self.lstm = ResettableLSTM(self.hidden_size, name="lstm")
        else:  # another attribute: an LSTM model's saved weights keep their place
            self.gru = ResettableGRU(self.hidden_size, name="gru")
        self.head = keras.layers.Dense(self.output_size, name="mdn")
        self._concrete = _ConcreteFunctions()
        self.build()

    def recurrent_layer(self) -> ResettableLSTM | ResettableGRU:
        """The recurrent core (a method, not a property: Keras' saving walks properties and would file the
        weights under a second name)."""
        return self.lstm if self.cell == "lstm" else self.gru

    def build(self, input_shape: Any = None) -> None:
        if not self.recurrent_layer().built:
            self.recurrent_layer().build((None, self.input_size))
        if not self.head.built:
            self.head.build((None, self.hidden_size))
        self.built = True

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "z_size": self.z_size, "action_size": self.action_size,
                "hidden_size": self.hidden_size, "num_mixtures": self.num_mixtures,
                "predict_done": self.predict_done, "cell": self.cell, "predict_reward": self.predict_reward}

    # ---- pure building blocks (usable inside any tf.function) ----

    def _inputs(self, z: tf.Tensor, action: tf.Tensor, restart: tf.Tensor | None) -> tf.Tensor:
        parts = [tf.cast(z, tf.float32), tf.cast(action, tf.float32)]
        if self.predict_done:
            flag = tf.zeros_like(parts[0][..., :1]) if restart is None else tf.cast(restart, tf.float32)[..., None]
            parts.append(flag)
        return tf.concat(parts, axis=-1)

    def _keep(self, restart: tf.Tensor | None) -> tf.Tensor | None:
        if not self.predict_done or restart is None:
            return None
        return 1.0 - tf.cast(restart, tf.float32)

    def cell_inputs(self, z: Any, action: Any, restart: Any = None) -> tuple[tf.Tensor, tf.Tensor | None]:
        """What the recurrent core reads at a step: x (B, in) = [z_t, a_t(, restart_t)] and keep (B,), 0 where the
        state is zeroed first (None for an M without restarts); `advance` steps the core with them."""
        return self._inputs(z, action, restart), self._keep(restart)

    def split_head(self, out: tf.Tensor) -> tuple[MixtureParams, tf.Tensor | None]:
        """Head outputs (..., output_size) -> (MixtureParams each (..., Z, K), death logit (...) or None)."""
        return split_mixture_output(out, self.z_size, self.num_mixtures, self.predict_done)

    def predicted_reward(self, out: tf.Tensor) -> tf.Tensor | None:
        """Head outputs (..., output_size) -> the reward M expects for the step (...), or None without
        `predict_reward`."""
        return out[..., -1] if self.predict_reward else None

    def advance(self, z: Any, action: Any, state: State, restart: Any = None,
                recurrent_kernel: tf.Tensor | None = None) -> State:
        """`next_state` as plain TF ops, to build into another compiled function (the dream's while loop, an
        agent's jit-compiled act): z_t (B, Z), a_t (B, A), (h_t, c_t), restart_t (B,) or None -> (h, c).
        `recurrent_kernel` may be a bfloat16 copy of the LSTM's (the dream's optional fast path)."""
        return self.recurrent_layer().step(self._inputs(z, action, restart), tuple(state), self._keep(restart),
                                           recurrent_kernel)

    # ---- step API ----

    def initial_state(self, batch: int) -> State:
        """The zero state (h, c), each (batch, hidden)."""
        return tf.zeros([batch, self.hidden_size]), tf.zeros([batch, self.hidden_size])

    def next_state(self, z: Any, action: Any, state: State, restart: Any = None) -> State:
        """h_{t+1}, c_{t+1} from z_t (B, Z), a_t (B, A), (h_t, c_t) and, for Doom, restart_t (B,) (1 zeroes the
        state first). Compiled; float32 inputs of any batch size."""
        if restart is None:
            return self._concrete.get("next_state", self._next_state)(z, action, tuple(state))
        return self._concrete.get("next_state_restart", self._next_state_restart)(z, action, tuple(state), restart)

    @_step_function(_spec(None, None), _spec(None, None), _STATE_SPEC)
    def _next_state(self, z: tf.Tensor, action: tf.Tensor, state: State) -> State:
        return self.advance(z, action, state, None)

    @_step_function(_spec(None, None), _spec(None, None), _STATE_SPEC, _spec(None))
    def _next_state_restart(self, z: tf.Tensor, action: tf.Tensor, state: State, restart: tf.Tensor) -> State:
        return self.advance(z, action, state, restart)

    def step(self, state: State, z: Any, action: Any,
             restart: Any = None) -> tuple[State, MixtureParams, tf.Tensor | None]:
        """`next_state` then the head on the new h: (new state, MixtureParams of z_{t+1}, death logit or None)."""
        if restart is None:
            state, params, done_logit = self._concrete.get("step", self._step)(tuple(state), z, action)
        else:
            state, params, done_logit = self._concrete.get("step_restart", self._step_restart)(
                tuple(state), z, action, restart)
        return tuple(state), MixtureParams(*params), done_logit

    @_step_function(_STATE_SPEC, _spec(None, None), _spec(None, None))
    def _step(self, state: State, z: tf.Tensor, action: tf.Tensor) -> tuple[State, MixtureParams, Any]:
        state = self.advance(z, action, state, None)
        return (state, *self.split_head(self.head(state[0])))

    @_step_function(_STATE_SPEC, _spec(None, None), _spec(None, None), _spec(None))
    def _step_restart(self, state: State, z: tf.Tensor, action: tf.Tensor,
                      restart: tf.Tensor) -> tuple[State, MixtureParams, Any]:
        state = self.advance(z, action, state, restart)
        return (state, *self.split_head(self.head(state[0])))

    sample = staticmethod(sample_mixture)

    # ---- whole sequences (training) ----

    def call(self, inputs: Mapping[str, Any], initial_state: State | None = None,
             training: bool | None = None) -> tuple[dict[str, tf.Tensor], State]:
        """Teacher forcing over a sequence.

        Args:
          inputs: {"z": (B, T, Z), "action": (B, T, A)} and, for Doom, "restart": (B, T) (1 on an episode's
            first frame; the state is zeroed before that step).
          initial_state: (h, c) carried in from the previous chunk; zeros if None.
        Returns:
          ({"logits", "mu", "log_sigma"}: (B, T, Z, K), plus "done_logit": (B, T) for Doom and "reward": (B, T)
          with `predict_reward`), final (h, c).
        """
        restart = inputs.get("restart") if self.predict_done else None
        x = self._inputs(inputs["z"], inputs["action"], restart)
        hs, state = self.recurrent_layer()(x, keep=self._keep(restart), initial_state=initial_state)
        out = self.head(hs)
        params, done_logit = self.split_head(out)
        outputs = params._asdict()
        if done_logit is not None:
            outputs["done_logit"] = done_logit
        if self.predict_reward:
            outputs["reward"] = self.predicted_reward(out)
        return outputs, state


def load_rnn(path: str | Path, expect: Mapping[str, Any] | None = None) -> MemoryModel:
    """Loads an `.keras` M: the paper's MDNRNN or any model providing `rnn.interface.MemoryModel` (its module is
    imported first, so that Keras finds the class). A missing or corrupt file, a class that cannot be imported, a
    model lacking part of the interface, or a size differing from `expect` (e.g. {"z_size": 64,
    "predict_done": True}) raises a one-line `DataError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    import_saved_module(path, "M")
    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as error:  # Keras raises many types for bad archives
        reason = " ".join(str(error).split())[:200]
        raise DataError(f"{path}: not a loadable Keras model ({type(error).__name__}: {reason})") from None
    problem = memory_model_problem(model)
    if problem:
        raise DataError(f"{path}: holds a {type(model).__name__}, not an MDNRNN or another M: {problem}")
    for name, want in (expect or {}).items():
        got = getattr(model, name, None)
        if got != want:
            raise DataError(f"{path}: {type(model).__name__} has {name}={got}, expected {want}")
    return model


def parameter_count(model: keras.Model) -> int:
    """Number of trainable parameters."""
    return int(sum(math.prod(v.shape) for v in model.trainable_weights))

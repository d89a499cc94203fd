"""Recurrent cores for M beside the paper's LSTM (`rnn.model.ResettableLSTM`): `ResettableGRU`, behind
`python -m rnn.train --rnn_cell=gru`, with the same step and sequence API, so the same mixture head, the dream
and the agent use it unchanged."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

State = tuple[tf.Tensor, tf.Tensor]  # (h, c); a GRU has no cell, its c is always zero


@keras.saving.register_keras_serializable(package="worldmodels")
class ResettableGRU(keras.layers.Layer):
    """A GRU (Keras' z-r-h gate order with the reset gate applied after the recurrent matmul, as Keras' default
    `reset_after=True`; an input and a recurrent bias) whose state can be zeroed mid-sequence.

    It keeps ResettableLSTM's interface: the state is the pair (h, c) with c always zero, `keep` (B, T) is 0 where
    the state is reset before a step, `step` takes an optional low-precision `recurrent_kernel`. With u units and
    n inputs it has 3u(n + u + 2) parameters: 3/4 of an LSTM's recurrent weights.
    """

    def __init__(self, units: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape: Any) -> None:
        input_size = int(input_shape[-1])
        self.kernel = self.add_weight(shape=(input_size, 3 * self.units), initializer="glorot_uniform",
                                      name="kernel")
        self.recurrent_kernel = self.add_weight(shape=(self.units, 3 * self.units), initializer="orthogonal",
                                                name="recurrent_kernel")
        self.bias = self.add_weight(shape=(3 * self.units,), initializer="zeros", name="bias")
        self.recurrent_bias = self.add_weight(shape=(3 * self.units,), initializer="zeros", name="recurrent_bias")
        self.built = True

    def _cell(self, projected: tf.Tensor, h: tf.Tensor, recurrent_kernel: tf.Tensor) -> tf.Tensor:
        recurrent = tf.cast(tf.matmul(tf.cast(h, recurrent_kernel.dtype), recurrent_kernel), projected.dtype)
        x_z, x_r, x_h = tf.split(projected, 3, axis=-1)
        r_z, r_r, r_h = tf.split(recurrent + self.recurrent_bias, 3, axis=-1)
        update = tf.sigmoid(x_z + r_z)
        reset = tf.sigmoid(x_r + r_r)
        candidate = tf.tanh(x_h + reset * r_h)
        return update * h + (1.0 - update) * candidate

    def step(self, x: tf.Tensor, state: State, keep: tf.Tensor | None = None,
             recurrent_kernel: tf.Tensor | None = None) -> State:
        """One step: x (B, in), state (h, c), keep (B,) or None -> new (h, zeros)."""
        h = state[0] if keep is None else state[0] * keep[:, None]
        kernel = tf.convert_to_tensor(self.recurrent_kernel) if recurrent_kernel is None else recurrent_kernel
        h = self._cell(tf.matmul(x, self.kernel) + self.bias, h, kernel)
        return h, tf.zeros_like(h)

    def call(self, x: tf.Tensor, keep: tf.Tensor | None = None,
             initial_state: State | None = None) -> tuple[tf.Tensor, State]:
        """Unrolls x (B, T, in) -> (outputs h (B, T, units), final state (h, zeros))."""
        batch = tf.shape(x)[0]
        h0 = tf.zeros([batch, self.units]) if initial_state is None else initial_state[0]
        projected = tf.einsum("bti,ij->tbj", x, self.kernel) + self.bias  # time-major (T, B, 3 units)
        keep = (tf.ones(tf.shape(projected)[:2]) if keep is None
                else tf.transpose(tf.cast(keep, projected.dtype)))[:, :, None]
        recurrent_kernel = tf.convert_to_tensor(self.recurrent_kernel)

        def body(h: tf.Tensor, inputs: tuple[tf.Tensor, tf.Tensor]) -> tf.Tensor:
            projected_t, keep_t = inputs
            return self._cell(projected_t, h * keep_t, recurrent_kernel)

        hs = tf.scan(body, (projected, keep), initializer=h0)
        return tf.transpose(hs, [1, 0, 2]), (hs[-1], tf.zeros_like(hs[-1]))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.units}

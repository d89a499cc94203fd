"""A new M in 40 lines of Keras: a stock Keras RNN cell under the paper's mixture head, registered, trained by name.

    python -m rnn.train --exp_dir=DIR --rnn=examples.custom_m:KerasCellM        # any process finds it by this
    python -m controller.train --exp_dir=DIR --env=doomrnn                        # the dream, C, the report: as usual

`rnn/interface.py` lists what an M provides; `load_rnn` imports this module to find the class again. Swap the
GRUCell for another Keras cell with one state vector (SimpleRNNCell, ...); c, the state's second half, stays zero.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from rnn.interface import register_rnn
from rnn.model import sample_mixture, split_mixture_output


@register_rnn("keras_cell")  # in-process: RNNTrainConfig(rnn="keras_cell") once this module is imported
@keras.saving.register_keras_serializable(package="examples")
class KerasCellM(keras.Model):
    """Keras' GRUCell reads [z, a] (its state zeroed where restart = 1); a Dense head gives the mixture (+ death)."""

    def __init__(self, z_size=32, action_size=3, hidden_size=256, num_mixtures=5, predict_done=False, **kwargs):
        super().__init__(**kwargs)
        self.z_size, self.action_size, self.hidden_size = z_size, action_size, hidden_size
        self.num_mixtures, self.predict_done = num_mixtures, predict_done
        self.core = keras.layers.GRUCell(hidden_size)
        self.head = keras.layers.Dense(3 * num_mixtures * z_size + int(predict_done))
        self.core.build((None, z_size + action_size))
        self.head.build((None, hidden_size))
        self.built = True  # every weight exists now: parameter counts and saving work before any call

    def get_config(self):
        return {**super().get_config(), "z_size": self.z_size, "action_size": self.action_size,
                "hidden_size": self.hidden_size, "num_mixtures": self.num_mixtures, "predict_done": self.predict_done}

    def initial_state(self, batch):
        return tf.zeros([batch, self.hidden_size]), tf.zeros([batch, self.hidden_size])

    def advance(self, z, action, state, restart=None):
        h = state[0] if restart is None else state[0] * (1.0 - tf.cast(restart, tf.float32))[:, None]
        h, _ = self.core(tf.concat([tf.cast(z, tf.float32), tf.cast(action, tf.float32)], axis=-1), h)
        return h, tf.zeros_like(h)

    def split_head(self, out):
        return split_mixture_output(out, self.z_size, self.num_mixtures, self.predict_done)

    sample = staticmethod(sample_mixture)

    def call(self, inputs, initial_state=None, training=None):
        z, action = (tf.transpose(tf.cast(inputs[key], tf.float32), [1, 0, 2]) for key in ("z", "action"))
        restart = tf.transpose(inputs["restart"]) if self.predict_done else tf.zeros(tf.shape(z)[:2])
        state = tuple(initial_state) if initial_state is not None else self.initial_state(tf.shape(z)[1])
        hs, cs = tf.scan(lambda s, x: self.advance(x[0], x[1], s, x[2]), (z, action, restart), initializer=state)
        params, done_logit = self.split_head(self.head(tf.transpose(hs, [1, 0, 2])))
        outputs = params._asdict() | ({"done_logit": done_logit} if done_logit is not None else {})
        return outputs, (hs[-1], cs[-1])

"""M: the MDN-RNN that predicts the next latent z (and, for Doom, death) of World Models (Ha & Schmidhuber, 2018)."""

from common.startup import quiet_tensorflow_startup

quiet_tensorflow_startup()  # before anything loads TensorFlow: its start-up lines stay off the screen

from rnn.model import MDNRNN, MixtureParams, done_loss, load_rnn, mixture_distribution, mixture_nll, sample_mixture  # noqa: E402

__all__ = ["MDNRNN", "MixtureParams", "done_loss", "load_rnn", "mixture_distribution", "mixture_nll",
           "sample_mixture"]

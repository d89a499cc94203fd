"""M: the MDN-RNN that predicts the next latent z (and, for Doom, death) of World Models (Ha & Schmidhuber, 2018)."""

from rnn.model import MDNRNN, MixtureParams, done_loss, load_rnn, mixture_distribution, mixture_nll, sample_mixture

__all__ = ["MDNRNN", "MixtureParams", "done_loss", "load_rnn", "mixture_distribution", "mixture_nll",
           "sample_mixture"]

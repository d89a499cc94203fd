"""V: the ConvVAE that compresses each 64x64x3 frame to a latent z (Ha & Schmidhuber, 2018)."""

from common.startup import quiet_tensorflow_startup

quiet_tensorflow_startup()  # before anything loads TensorFlow: its start-up lines stay off the screen

from vae.model import ConvVAE, frames_to_inputs, inputs_to_frames, kl_divergence, vae_loss  # noqa: E402

__all__ = ["ConvVAE", "frames_to_inputs", "inputs_to_frames", "kl_divergence", "vae_loss"]

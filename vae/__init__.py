"""V: the ConvVAE that compresses each 64x64x3 frame to a latent z (Ha & Schmidhuber, 2018)."""

from vae.model import ConvVAE, frames_to_inputs, inputs_to_frames, kl_divergence, vae_loss

__all__ = ["ConvVAE", "frames_to_inputs", "inputs_to_frames", "kl_divergence", "vae_loss"]

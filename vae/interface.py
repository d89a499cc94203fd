"""What a V must provide (`VisionModel`) so that `vae.train` trains it, `vae.encode` encodes the rollouts with it
and the agent plays with it.

The paper's V is `vae.model.ConvVAE`. The quickest other V is a ConvVAE with another encoder or decoder
(`ConvVAE(z_size=64, encoder=..., decoder=...)`) or a subclass overriding `encode` / `decode` / `loss_terms`;
any Keras model with the members below works, saved as `.keras` (registered with
`keras.saving.register_keras_serializable`, with a `get_config`):

    train_vae(exp_dir, config, model=MyV(z_size=64))     # vae.train; python -m vae.train --beta=4 for a beta-VAE

Training minimises, per batch, mean(recon) + beta * mean(max(kl, kl_tolerance * z_size)) over the two per-image
terms `loss_terms` returns (`--beta`, `--kl_tolerance`: the paper's 1 and 0.5).
"""

from __future__ import annotations

from typing import Any, Protocol

from common.interfaces import interface_problem


class VisionModel(Protocol):
    """V: compresses a 64x64x3 frame to a Gaussian over z and decodes z back to a frame."""

    z_size: int  # Z, the latent size M and C read

    def encode(self, images: Any, training: bool = False) -> tuple[Any, Any]:
        """Images (B, 64, 64, 3) float32 in [0, 1] -> (mu, logvar), each (B, Z) float32 (plain TF ops: the agent
        compiles them into its per-frame step)."""

    def decode(self, z: Any, training: bool = False) -> Any:
        """z (B, Z) -> images (B, 64, 64, 3) float32 in [0, 1]."""

    def encode_frames(self, frames: Any) -> tuple[Any, Any]:
        """Compiled batch encoding of uint8 frames (B, 64, 64, 3) -> (mu, logvar) (what vae.encode calls)."""

    def call(self, images: Any, training: bool = False) -> tuple[Any, Any, Any]:
        """(reconstruction, mu, logvar) with z sampled from N(mu, sigma^2): a training step's forward pass."""

    def loss_terms(self, images: Any, reconstruction: Any, mu: Any, logvar: Any) -> tuple[Any, Any]:
        """Per image (B,): (reconstruction error, KL(N(mu, sigma^2) || N(0, I))); the paper's are the summed
        squared error and the closed-form KL."""

    def get_config(self) -> dict[str, Any]:
        """The constructor's arguments (Keras saving)."""


def vision_model_problem(model: Any) -> str | None:
    """None when `model` is a V, else one line naming it and what it lacks."""
    return interface_problem(model, VisionModel, "a V")

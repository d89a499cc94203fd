"""V: the convolutional variational autoencoder of World Models (Ha & Schmidhuber, 2018), in Keras 3.

The layers are exactly the paper's (appendix "Variational Autoencoder"): 4,348,547 parameters with z = 32
(CarRacing) and 4,446,915 with z = 64 (Doom). Inputs are 64x64x3 floats in [0, 1]; `frames_to_inputs` converts
the uint8 frames stored in rollouts.

Another encoder or decoder plugs in without touching the training script, either by passing Keras layers:

    vae = ConvVAE(z_size=32, encoder=my_encoder, decoder=my_decoder)

(the encoder maps (B, 64, 64, 3) to a (B, F) feature vector, on which ConvVAE keeps its two Dense heads for
mu and log sigma^2; the decoder maps (B, z) to (B, 64, 64, 3) values in [0, 1]), or by subclassing and
overriding `encode` / `decode` / `loss_terms` (`vae.interface.VisionModel` lists what any V provides). A beta-VAE
is this model trained with `python -m vae.train --beta=4` (the KL term weighted by beta; the paper's is 1).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

FRAME_SHAPE = (64, 64, 3)
KL_TOLERANCE = 0.5  # free bits per latent dimension: KL below 0.5 * z_size nats costs nothing (2018 code)


def paper_encoder(dtype: Any = None) -> keras.Sequential:
    """Four 4x4 stride-2 valid ReLU convolutions, 32-64-128-256 filters (64->31->14->6->2), flattened to 1024."""
    return keras.Sequential(
        [keras.Input(FRAME_SHAPE)]
        + [layers.Conv2D(filters, 4, strides=2, padding="valid", activation="relu", name=f"conv{i}", dtype=dtype)
           for i, filters in enumerate((32, 64, 128, 256), start=1)]
        + [layers.Flatten(name="flatten", dtype=dtype)],
        name="encoder")


def paper_decoder(z_size: int, dtype: Any = None) -> keras.Sequential:
    """Dense 1024 (no activation) reshaped to 1x1x1024, then stride-2 transposed convolutions 1->5->13->30->64.

    Kernels 5, 5, 6, 6 with 128, 64, 32 filters and ReLU, and a final 3-channel sigmoid, as in the paper.
    """
    return keras.Sequential(
        [keras.Input((z_size,)),
         layers.Dense(1024, name="dense", dtype=dtype),
         layers.Reshape((1, 1, 1024), name="reshape", dtype=dtype)]
        + [layers.Conv2DTranspose(filters, kernel, strides=2, padding="valid", activation=activation,
                                  name=f"deconv{i}", dtype=dtype)
           for i, (filters, kernel, activation) in enumerate(
               ((128, 5, "relu"), (64, 5, "relu"), (32, 6, "relu"), (3, 6, "sigmoid")), start=1)],
        name="decoder")


def frames_to_inputs(frames: Any) -> tf.Tensor:
    """uint8 frames (..., 64, 64, 3) in [0, 255] -> float32 model inputs in [0, 1]."""
    return ops.cast(frames, "float32") / 255.0


def inputs_to_frames(images: Any) -> np.ndarray:
    """Model outputs in [0, 1] -> uint8 frames (rounded and clipped), e.g. to save reconstructions."""
    return np.clip(np.round(np.asarray(images, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


@keras.saving.register_keras_serializable(package="worldmodels")
class ConvVAE(keras.Model):
    """The paper's V: encode a 64x64x3 frame to (mu, log sigma^2) of a z_size Gaussian and decode z back.

    Args:
      z_size: latent size; the paper uses 32 for CarRacing and 64 for Doom.
      encoder: a Keras layer (B, 64, 64, 3) -> (B, F); default: the paper's four convolutions.
      decoder: a Keras layer (B, z_size) -> (B, 64, 64, 3) in [0, 1]; default: the paper's deconvolutions.
      seed: seed of the generator that draws z in `sample` and `call`.
      dtype: a Keras dtype policy, e.g. "mixed_bfloat16"; outputs are always float32.

    `call(images)` returns (reconstruction, mu, logvar) with z sampled; the public methods are `encode`,
    `sample`, `decode`, `reconstruct`, `loss_terms` and the compiled `encode_frames` for uint8 frames: it
    provides `vae.interface.VisionModel`.
    """

    def __init__(self, z_size: int = 32, encoder: layers.Layer | None = None,
                 decoder: layers.Layer | None = None, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if int(z_size) < 1:
            raise ValueError(f"z_size must be positive, got {z_size}")
        self.z_size = int(z_size)
        self.seed = seed
        # Only custom parts are serialized: the paper's are rebuilt from z_size and the dtype policy.
        self._custom_encoder = encoder is not None
        self._custom_decoder = decoder is not None
        self.encoder = encoder if encoder is not None else paper_encoder(self.dtype_policy)
        self.decoder = decoder if decoder is not None else paper_decoder(self.z_size, self.dtype_policy)
        self.mu_head = layers.Dense(self.z_size, name="mu", dtype=self.dtype_policy)
        self.logvar_head = layers.Dense(self.z_size, name="logvar", dtype=self.dtype_policy)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self._encode_frames_fn = None
        self.build((None, *FRAME_SHAPE))

    def build(self, input_shape: tuple[int | None, ...] = (None, *FRAME_SHAPE)) -> None:
        """Creates every weight up front, so the parameter count and `summary()` work before any call."""
        if not self.encoder.built:
            self.encoder.build(tuple(input_shape))
        feature_shape = self.encoder.compute_output_shape(tuple(input_shape))
        if len(feature_shape) != 2:
            raise ValueError(f"the encoder must output (batch, features), got shape {feature_shape}")
        self.mu_head.build(feature_shape)
        self.logvar_head.build(feature_shape)
        if not self.decoder.built:
            self.decoder.build((input_shape[0], self.z_size))
        self.built = True

    def encode(self, images: Any, training: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
        """Images (B, 64, 64, 3) in [0, 1] -> (mu, logvar), each (B, z_size) float32."""
        features = self.encoder(images, training=training)
        mu = ops.cast(self.mu_head(features), "float32")
        logvar = ops.cast(self.logvar_head(features), "float32")
        return mu, logvar

    def sample(self, mu: Any, logvar: Any, seed: Any = None) -> tf.Tensor:
        """z = mu + exp(logvar / 2) * eps with eps ~ N(0, I) (the reparameterisation trick)."""
        eps = keras.random.normal(ops.shape(mu), dtype="float32",
                                  seed=self.seed_generator if seed is None else seed)
        return mu + ops.exp(logvar / 2.0) * eps

    def decode(self, z: Any, training: bool = False) -> tf.Tensor:
        """Latents (B, z_size) -> images (B, 64, 64, 3) float32 in [0, 1]."""
        return ops.cast(self.decoder(z, training=training), "float32")

    def reconstruct(self, images: Any, sample: bool = False) -> tf.Tensor:
        """Decodes the encoding of `images`: from mu (deterministic) or, with `sample=True`, from a drawn z."""
        mu, logvar = self.encode(images)
        return self.decode(self.sample(mu, logvar) if sample else mu)

    def call(self, images: Any, training: bool = False) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """(reconstruction, mu, logvar) with z sampled from N(mu, sigma^2), as in training."""
        mu, logvar = self.encode(images, training=training)
        return self.decode(self.sample(mu, logvar), training=training), mu, logvar

    def encode_frames(self, frames: Any) -> tuple[tf.Tensor, tf.Tensor]:
        """Compiled batch encoding of uint8 frames (B, 64, 64, 3) -> (mu, logvar), for per-step use.

        One `tf.function` with a fixed input signature (any batch size): it traces once, and a call costs
        well under a millisecond per frame, unlike `model.predict` (~40 ms a call).
        """
        if self._encode_frames_fn is None:
            self._encode_frames_fn = tf.function(
                lambda x: self.encode(frames_to_inputs(x)),
                input_signature=[tf.TensorSpec((None, *FRAME_SHAPE), tf.uint8)], reduce_retracing=True)
        return self._encode_frames_fn(tf.convert_to_tensor(frames, dtype=tf.uint8))

    def loss_terms(self, images: Any, reconstruction: Any, mu: Any, logvar: Any) -> tuple[tf.Tensor, tf.Tensor]:
        """The paper's per-image loss terms (B,): (summed squared error, KL divergence); see `vae_loss`."""
        return reconstruction_error(images, reconstruction), kl_divergence(mu, logvar)

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.saving.serialize_keras_object(self.dtype_policy),
            "z_size": self.z_size,
            "seed": self.seed,
            "encoder": keras.saving.serialize_keras_object(self.encoder) if self._custom_encoder else None,
            "decoder": keras.saving.serialize_keras_object(self.decoder) if self._custom_decoder else None,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ConvVAE:
        config = dict(config)
        for part in ("encoder", "decoder"):
            if config.get(part) is not None:
                config[part] = keras.saving.deserialize_keras_object(config[part])
        if isinstance(config.get("dtype"), dict):
            config["dtype"] = keras.saving.deserialize_keras_object(config["dtype"])
        return cls(**config)


def kl_divergence(mu: Any, logvar: Any) -> tf.Tensor:
    """KL(N(mu, sigma^2) || N(0, I)) per example: -1/2 * sum(1 + logvar - mu^2 - exp(logvar)), shape (B,)."""
    return -0.5 * ops.sum(1.0 + logvar - ops.square(mu) - ops.exp(logvar), axis=-1)


def reconstruction_error(images: Any, reconstruction: Any) -> tf.Tensor:
    """Per image (B,): the sum of squared errors over all pixels and channels."""
    images = ops.cast(images, "float32")
    reconstruction = ops.cast(reconstruction, "float32")
    return ops.sum(ops.square(images - reconstruction), axis=(1, 2, 3))


def combine_losses(recon: Any, kl: Any, z_size: Any, kl_tolerance: float = KL_TOLERANCE,
                   beta: float = 1.0) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Per-image terms (B,) -> (total, recon, kl) batch means: total = recon + beta * kl, with each example's kl
    clamped from below at `kl_tolerance * z_size` ("free bits": an example whose KL is under the floor adds
    nothing to the gradient, which keeps the latent from collapsing). beta = 1 is the paper's VAE; beta > 1 a
    beta-VAE (Higgins et al., 2017), which trades reconstruction for a latent closer to the prior."""
    recon = ops.mean(recon)
    floor = ops.cast(kl_tolerance * z_size, "float32")
    kl = ops.mean(ops.maximum(kl, floor))
    return recon + beta * kl, recon, kl


def vae_loss(images: Any, reconstruction: Any, mu: Any, logvar: Any, kl_tolerance: float = KL_TOLERANCE,
             beta: float = 1.0) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """The paper's loss (beta = 1): returns (total, recon, kl), each a scalar averaged over the batch.

    recon: per image, the sum of squared errors over all pixels and channels.
    kl: per image, the KL divergence clamped from below at `kl_tolerance * z_size` (see `combine_losses`).
    """
    return combine_losses(reconstruction_error(images, reconstruction), kl_divergence(mu, logvar),
                          ops.shape(mu)[-1], kl_tolerance, beta)

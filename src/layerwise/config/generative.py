"""Config models of the generative and unsupervised families.

A generative model learns from its inputs alone: its config has no ``outputs``. Two
inputs may have roles instead of being modelled:

- ``condition``: a category input that the model is conditioned on (class-conditional
  generation, a conditional VAE); ``layerwise sample --class K`` picks its value.
- ``quality_label``: a class column used only to judge samples (see
  evaluation/generative.py); the model never reads it.
- ``anomaly.label`` (autoencoders): a column that tells normal rows from anomalies. The model
  never sees it; training keeps the normal rows only, and evaluation scores all rows.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from layerwise.config.base import _Family, _Strict


class AnomalyConfig(_Strict):
    """Anomaly detection with an autoencoder: the score is the reconstruction error."""

    label: str = Field(min_length=1, description="a category input telling normal rows from "
                       "anomalies; the model never reads it")
    normal: list[str] = Field(min_length=1, description="the values of `label` that are "
                              "normal (compared as text); training uses these rows only")
    fpr: float = Field(0.05, gt=0.0, lt=1.0, description="the threshold flags this share of "
                       "the normal validation rows (a target false-positive rate)")


class _Generative(_Family):
    # one image input or the tabular ones; category inputs only with a role (above)
    input_kinds: ClassVar[tuple[str, ...]] = ("numeric", "binary", "category", "image")
    output_kinds: ClassVar[tuple[str, ...]] = ()
    generative: ClassVar[bool] = True

    condition: str | None = Field(None, description="a category input to condition on "
                                  "(class-conditional models)")
    quality_label: str | None = Field(None, description="a category input used only to judge "
                                      "samples (a classifier of its classes scores them); "
                                      "the model never reads it; default: `condition`")
    channels: list[int] = Field(default_factory=lambda: [32, 64], description="image models: "
                                "convolution widths per resolution (each halves the size)")
    hidden: list[int] = Field(default_factory=lambda: [256, 128], description="tabular "
                              "models: hidden widths of the MLP encoder (the decoder mirrors)")
    activation: Literal["relu", "gelu", "silu", "leaky_relu"] = "relu"


class AutoencoderConfig(_Generative):
    """Compress and reconstruct; denoise; score anomalies by reconstruction error."""

    family: Literal["autoencoder"]
    bottleneck: int = Field(32, gt=0, description="width of the code")
    denoise: float = Field(0.0, ge=0.0, description="std of Gaussian noise added to the "
                           "inputs in training (normalised units); the target stays clean")
    loss: Literal["mse", "mae"] = "mse"
    anomaly: AnomalyConfig | None = None


class VAEConfig(_Generative):
    """A variational autoencoder: Gaussian latent, ELBO with a KL weight and warm-up."""

    family: Literal["vae"]
    latent: int = Field(16, gt=0, description="latent dimensions")
    beta: float = Field(1.0, gt=0.0, description="weight of the KL term (beta-VAE)")
    kl_warmup_steps: int = Field(0, ge=0, description="the KL weight rises linearly from 0 "
                                 "to beta over this many optimizer steps")
    likelihood: Literal["gaussian", "bernoulli"] = Field(
        "bernoulli", description="bernoulli: pixels in [0, 1] (binary cross-entropy); "
        "gaussian: squared error in normalised units")


class GANConfig(_Generative):
    """DCGAN-style generator and discriminator trained against each other."""

    family: Literal["gan"]
    latent: int = Field(64, gt=0, description="noise dimensions")
    loss: Literal["non_saturating", "hinge"] = "non_saturating"
    spectral_norm: bool = Field(False, description="spectral normalisation in the "
                                "discriminator")
    minibatch_std: bool = Field(False, description="images: the discriminator also sees the "
                                "spread of its batch (a minibatch standard-deviation feature "
                                "map), which penalises generators that make one image")
    discriminator_steps: int = Field(1, gt=0, description="discriminator updates per "
                                     "generator update")
    ema: float | None = Field(0.999, gt=0.0, lt=1.0, description="decay of an exponential "
                              "moving average of the generator's weights, used for sampling")


class DiffusionConfig(_Generative):
    """DDPM training, DDIM sampling, a small U-Net with a time embedding."""

    family: Literal["diffusion"]
    timesteps: int = Field(1000, gt=1, description="noising steps of the forward process")
    noise_schedule: Literal["linear", "cosine"] = "cosine"
    prediction: Literal["eps", "v"] = Field("eps", description="what the network predicts")
    res_blocks: int = Field(1, gt=0, description="U-Net residual blocks per resolution "
                            "(each side)")
    attention: bool = Field(True, description="self-attention at the lowest U-Net "
                            "resolution")
    patch: int = Field(1, gt=0, description="pixel (un)shuffle factor: the U-Net works on "
                       "p*p*C channels at H/p x W/p (2 halves the cost of a 28x28 model)")
    sample_steps: int = Field(50, gt=0, description="DDIM steps when sampling")
    ema: float | None = Field(0.999, gt=0.0, lt=1.0, description="decay of the weights' "
                              "exponential moving average, used for sampling")
    condition_dropout: float = Field(0.1, ge=0.0, lt=1.0, description="share of training "
                                     "rows whose class is dropped (classifier-free guidance)")
    guidance: float = Field(2.0, ge=0.0, description="classifier-free guidance weight when "
                            "sampling (0: unguided)")

    @model_validator(mode="after")
    def _steps(self) -> DiffusionConfig:
        if self.sample_steps > self.timesteps:
            raise ValueError(f"sample_steps ({self.sample_steps}) cannot exceed timesteps "
                             f"({self.timesteps})")
        return self

"""Variational autoencoder (β-VAE, optionally class-conditional).

    x [B, C, H, W] or [B, k]  (⊕ one-hot class)  → encoder → (μ, log σ²)   [B, 2·latent]
    z = μ + σ · ε,  ε ~ N(0, I)                                               [B, latent]
    z (⊕ one-hot class)                          → decoder → likelihood parameters for x

    loss per row = recon + w · KL(q(z|x) ‖ N(0, I)),   w = β · min(1, step / kl_warmup_steps)

``recon`` is the negative log-likelihood of the row, summed over its values (nats):
``bernoulli`` reads the decoder's output as logits of pixels in [0, 1] (binary
cross-entropy against the image's pixel values); ``gaussian`` as means in normalised units,
with a learned scale per channel (images) or per column (tabular). With β = 1 the mean loss
is the negative ELBO. The warm-up counts optimizer steps in the buffer ``kl_steps`` (saved
and checkpointed, so a resumed run continues the schedule exactly); evaluation uses the full
β. In eval mode ε comes from a fixed-seed generator, so the validation loss is a
deterministic single-sample estimate.

The encoder and decoder are the autoencoder's blocks (models/autoencoder.py). A
class-conditional VAE (``condition``) feeds the one-hot class to every stage of both: as
constant feature maps joined to the input of each (transposed) convolution, and as
features of the linear layers (every layer of the MLP blocks). No stage has to read the
class out of z, so the latent need not carry it and can hold the style (stroke, slant,
width); ``β`` and ``latent`` set how much it holds.

    >>> from layerwise.config import VAEConfig
    >>> desc = {"numeric_dim": 4, "category_sizes": [], "images": {}}
    >>> vae = VAE(VAEConfig(family="vae", hidden=[8], latent=2, likelihood="gaussian"), desc)
    >>> vae.sample(5, generator=torch.Generator().manual_seed(0)).shape
    torch.Size([5, 4])
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from layerwise.config import VAEConfig
from layerwise.errors import ConfigError
from layerwise.models.autoencoder import make_decoder, make_encoder
from layerwise.models.generative import GenerativeModel
from layerwise.models.registry import register_model

EVAL_SEED = 0  # the noise of the validation ELBO estimate


@register_model("vae")
class VAE(GenerativeModel):
    config_class = VAEConfig
    kl_steps: torch.Tensor

    def __init__(self, cfg: VAEConfig, desc: dict[str, Any]) -> None:
        super().__init__(cfg, desc)
        if cfg.likelihood == "bernoulli" and not self.spec.is_image:
            raise ConfigError("model.likelihood bernoulli models pixels in [0, 1]; use "
                              "likelihood: gaussian for numeric inputs")
        k = self.spec.classes  # one-hot width of the class (0: unconditional)
        self.encoder = make_encoder(self.spec, cfg, 2 * cfg.latent, cond=k)
        self.decoder = make_decoder(self.spec, cfg, cfg.latent, cond=k)
        if cfg.likelihood == "gaussian":  # a learned scale per channel / per column
            shape = (1, self.spec.shape[0], 1, 1) if self.spec.is_image \
                else (1, self.spec.shape[0])
            self.log_scale = nn.Parameter(torch.zeros(shape))
        self.register_buffer("kl_steps", torch.zeros((), dtype=torch.long))

    @classmethod
    def from_config(cls, cfg: VAEConfig, desc: dict[str, Any]) -> VAE:
        return cls(cfg, desc)

    # -- pieces ------------------------------------------------------------------------------
    def _onehot(self, labels: torch.Tensor | None) -> torch.Tensor | None:
        if labels is None:
            return None
        return F.one_hot(labels.long(), self.spec.classes).float()

    def _posterior(self, inputs: dict[str, torch.Tensor]
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """μ and log σ² of q(z | x) ``[B, latent]`` each, and the one-hot class."""
        c = self._onehot(self.spec.labels(inputs))
        h = self.encoder(self.spec.data(inputs), c).float()
        mu, logvar = h.chunk(2, dim=1)
        return mu, logvar.clamp(-30.0, 20.0), c

    def _decode(self, z: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        return self.decoder(z, None if c is None else c.to(z.dtype))

    def _to_data(self, out: torch.Tensor) -> torch.Tensor:
        """Decoder output → the likelihood's mean in data units (pixels for images)."""
        if self.cfg.likelihood == "bernoulli":
            return torch.sigmoid(out.float())
        return self.spec.to_pixels(out.float())

    def _recon(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood per row ``[B]`` (nats, summed over the row's values)."""
        out = out.float()
        if self.cfg.likelihood == "bernoulli":
            target = self.spec.to_pixels(x.float())
            nll = F.binary_cross_entropy_with_logits(out, target, reduction="none")
        else:
            z = (x.float() - out) * torch.exp(-self.log_scale)
            nll = 0.5 * z.square() + self.log_scale + 0.5 * math.log(2 * math.pi)
        return nll.flatten(1).sum(dim=1)

    def kl_weight(self) -> float:
        """β, ramped linearly over the first ``kl_warmup_steps`` optimizer steps (training)."""
        beta, warm = self.cfg.beta, self.cfg.kl_warmup_steps
        if not self.training or warm == 0:
            return beta
        return beta * min(1.0, float(self.kl_steps) / warm)

    def on_step_end(self) -> None:
        self.kl_steps += 1

    # -- training ------------------------------------------------------------------------------
    def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x = self.spec.data(inputs)
        mu, logvar, c = self._posterior(inputs)
        if self.training:
            eps = torch.randn_like(mu)  # the global RNG: seeded and checkpointed by the Trainer
        else:
            g = torch.Generator().manual_seed(EVAL_SEED)
            eps = torch.randn(mu.shape, generator=g).to(mu.device)
        z = mu + torch.exp(0.5 * logvar) * eps
        recon = self._recon(self._decode(z, c), x)
        kl = 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar).sum(dim=1)  # [B]
        return {"loss": recon + self.kl_weight() * kl, "recon": recon, "kl": kl}

    # -- what the rest of layerwise calls ---------------------------------------------------
    @torch.no_grad()
    def encode(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The posterior mean of each row, ``[B, latent]``."""
        return self._posterior(inputs)[0]

    @torch.no_grad()
    def reconstruct(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Decoded posterior means: pixels in [0, 1] (images) or standardised rows."""
        mu, _, c = self._posterior(inputs)
        return self._to_data(self._decode(mu, c))

    @torch.no_grad()
    def sample(self, n: int, *, labels: torch.Tensor | int | None = None,
               steps: int | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` rows decoded from the prior N(0, I). A class-conditional model takes one
        class for all or one per sample (encoded indices, ``spec.class_ids``); without
        ``labels`` the classes are drawn uniformly."""
        device = next(self.parameters()).device
        gdev = generator.device if generator is not None else torch.device("cpu")
        y = self.check_labels(n, labels)
        if y is None and self.spec.classes:
            y = torch.randint(1, self.spec.classes, (n,), generator=generator, device=gdev)
        z = torch.randn(n, self.cfg.latent, generator=generator, device=gdev).to(device)
        c = self._onehot(y.to(device)) if y is not None else None
        return self._to_data(self._decode(z, c))

    @torch.no_grad()
    def interpolate(self, inputs_a: dict[str, torch.Tensor], inputs_b: dict[str, torch.Tensor],
                    steps: int = 8) -> torch.Tensor:
        """Decode ``steps`` points on the line between the posterior means of rows a and b:
        ``[B, steps, C, H, W]`` pixels (or ``[B, steps, k]``). A conditional model blends
        the two classes' one-hot vectors along the same line."""
        if steps < 2:
            raise ConfigError(f"interpolate needs at least 2 steps; got {steps}")
        mu_a, _, c_a = self._posterior(inputs_a)
        mu_b, _, c_b = self._posterior(inputs_b)
        if mu_a.shape != mu_b.shape:
            raise ConfigError(f"interpolate needs as many rows in a as in b; got "
                              f"{mu_a.shape[0]} and {mu_b.shape[0]}")
        t = torch.linspace(0.0, 1.0, steps, device=mu_a.device).view(1, steps, 1)
        z = torch.lerp(mu_a[:, None], mu_b[:, None], t).flatten(0, 1)  # [B * steps, latent]
        c = None
        if c_a is not None and c_b is not None:
            c = torch.lerp(c_a[:, None], c_b[:, None], t).flatten(0, 1)
        out = self._to_data(self._decode(z, c))
        return out.view(mu_a.shape[0], steps, *out.shape[1:])

"""A GAN: a generator and a discriminator trained against each other (DCGAN-style).

    generator      z [B, latent] (+ class embedding) → Linear → [B, C_top, H/2^L, W/2^L]
                   → L transposed convs (4x4, stride 2; BatchNorm + ReLU between)
                   → tanh in [-1, 1], read as pixels in [0, 1] → normalised units
    discriminator  image [B, C, H, W] → L strided convs (4x4, stride 2) + LeakyReLU(0.2)
                   → flatten → Linear → score [B]   (+ a class projection, see below)

``model.channels`` gives the discriminator's widths per resolution (each halves the size;
the generator mirrors them), so 28x28 images with ``channels: [32, 64]`` go 28 → 14 → 7.
Tabular data (the standardised numeric block) gets MLPs of ``model.hidden`` instead.

Training runs in phases through the shared Trainer (``phases``, ``phase_parameters``,
``phase_loss``; see training/phases.py): per batch the discriminator takes
``discriminator_steps`` updates (on the same real rows, with fresh noise each time), then
the generator one. Each phase has its own optimizer and schedule, so
``train.optimizers: {generator: {...}, discriminator: {...}}`` sets separate learning rates.

Losses (``model.loss``), with s = discriminator score (a logit):
    non_saturating  D: softplus(-s_real) + softplus(s_fake)   G: softplus(-s_fake)
    hinge           D: relu(1 - s_real) + relu(1 + s_fake)    G: -s_fake

Class-conditional (``model.condition``): the generator reads a learned class embedding
concatenated to the noise; the discriminator is a projection discriminator (its score adds
<embed(y), features>). ``model.spectral_norm`` normalises every discriminator weight.
``model.ema`` keeps an exponential moving average of the generator, used by ``sample``.

Telemetry (per step, averaged per epoch into history.csv as ``train_<name>``):
``d_real_acc`` / ``d_fake_acc`` (share of real / fake rows the discriminator gets right;
both near 1 for long = the generator has lost), ``loss_ratio`` (generator loss /
discriminator loss, both logistic whatever ``loss`` trains; growing without bound =
divergence) and ``diversity`` (mean pairwise
distance of a batch of fakes over that of the real batch, within each class for a
conditional model; falling towards 0 = mode collapse).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from layerwise.config import GANConfig
from layerwise.errors import ConfigError
from layerwise.models.generative import EMA, GenerativeModel
from layerwise.models.registry import register_model

EVAL_SEED = 20240  # the noise of validation forward passes (eval mode)


def discriminator_loss(kind: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Per-row discriminator loss from scores (logits) of real and fake rows ``[B]``."""
    if kind == "hinge":
        return F.relu(1.0 - real) + F.relu(1.0 + fake)
    return F.softplus(-real) + F.softplus(fake)  # -log σ(real) - log(1 - σ(fake))


def generator_loss(kind: str, fake: torch.Tensor) -> torch.Tensor:
    """Per-row generator loss from the discriminator's scores of fakes ``[B]``."""
    if kind == "hinge":
        return -fake
    return F.softplus(-fake)  # non-saturating: -log σ(fake)


def mean_pairwise_distance(x: torch.Tensor, labels: torch.Tensor | None = None
                           ) -> torch.Tensor:
    """Mean Euclidean distance between the rows of ``x`` (flattened) — a diversity measure.
    With ``labels``, only pairs of the same class count: a conditional generator that
    ignores its noise makes one image per class, which all-pairs distances would hide."""
    flat = x.detach().flatten(1).float()
    pairs = ~torch.eye(len(flat), dtype=torch.bool, device=flat.device)
    if labels is not None:
        pairs &= labels[:, None] == labels[None, :]
    if not bool(pairs.any()):
        return flat.new_zeros(())
    return torch.cdist(flat, flat)[pairs].mean()


class Generator(nn.Module):
    """Noise (and a class) → normalised data; the module the EMA averages."""

    def __init__(self, latent: int, shape: tuple[int, ...], channels: list[int],
                 hidden: list[int], classes: int) -> None:
        super().__init__()
        self.shape = shape
        self.embed = nn.Embedding(classes, latent) if classes else None
        width = latent * (2 if classes else 1)
        if len(shape) == 3:  # images: project to the smallest resolution, then upsample
            c, h, w = shape
            scale = 2 ** len(channels)
            self.top = (channels[-1], h // scale, w // scale)
            self.project = nn.Sequential(
                nn.Linear(width, channels[-1] * self.top[1] * self.top[2], bias=False),
                nn.BatchNorm1d(channels[-1] * self.top[1] * self.top[2]), nn.ReLU())
            layers: list[nn.Module] = []
            widths = [*channels[::-1], c]  # e.g. 64 → 32 → 1
            for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
                last = i == len(widths) - 2
                layers.append(nn.ConvTranspose2d(a, b, 4, stride=2, padding=1, bias=last))
                if not last:
                    layers += [nn.BatchNorm2d(b), nn.ReLU()]
            self.body = nn.Sequential(*layers)
        else:  # tabular: an MLP to the numeric block
            layers, a = [], width
            for b in hidden[::-1]:
                layers += [nn.Linear(a, b, bias=False), nn.BatchNorm1d(b), nn.ReLU()]
                a = b
            layers.append(nn.Linear(a, shape[0]))
            self.project, self.body = nn.Sequential(*layers), nn.Identity()

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """``z [B, latent]`` → images ``[B, C, H, W]`` in [-1, 1] or rows ``[B, k]``."""
        if self.embed is not None and labels is not None:
            z = torch.cat([z, self.embed(labels)], 1)
        h = self.project(z)
        if len(self.shape) == 3:
            return torch.tanh(self.body(h.view(len(h), *self.top)))
        return h


class MinibatchStd(nn.Module):
    """Appends one feature map: the mean over features of the standard deviation across
    groups of rows (Karras et al. 2018). A batch of near-identical fakes has a spread unlike
    real data's, so the discriminator can tell, and the generator is pushed to vary."""

    def __init__(self, group: int = 4) -> None:
        super().__init__()
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        g = math.gcd(b, self.group)  # rows i, i+m, i+2m, ... form a group (m = b / g)
        spread = x.float().view(g, b // g, c, h, w).var(0, unbiased=False).add(1e-8).sqrt()
        feat = spread.mean(dim=(1, 2, 3)).repeat(g).to(x.dtype)  # [b], row order kept
        return torch.cat([x, feat.view(b, 1, 1, 1).expand(b, 1, h, w)], 1)


class Discriminator(nn.Module):
    """Data (and a class) → one score (a logit) per row ``[B]``."""

    def __init__(self, shape: tuple[int, ...], channels: list[int], hidden: list[int],
                 classes: int, sn: bool, minibatch_std: bool = False) -> None:
        super().__init__()
        norm = spectral_norm if sn else (lambda m: m)
        layers: list[nn.Module] = []
        if len(shape) == 3:
            a = shape[0]
            for b in channels:  # each halves the size: 28 → 14 → 7
                layers += [norm(nn.Conv2d(a, b, 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
                a = b
            scale = 2 ** len(channels)
            top = channels[-1] + (1 if minibatch_std else 0)
            if minibatch_std:
                layers.append(MinibatchStd())
            features = top * (shape[1] // scale) * (shape[2] // scale)
            layers.append(nn.Flatten())
        else:
            a = shape[0]
            for b in hidden:
                layers += [norm(nn.Linear(a, b)), nn.LeakyReLU(0.2)]
                a = b
            features = a
        self.body = nn.Sequential(*layers)
        self.head = norm(nn.Linear(features, 1))
        # projection discriminator (Miyato & Koyama 2018): score += <embed(y), features>
        self.embed: nn.Module | None = None
        if classes:
            embed = nn.Embedding(classes, features)
            nn.init.normal_(embed.weight, std=0.02)  # start near the unconditional score
            self.embed = norm(embed)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        h = self.body(x)                                    # [B, features]
        score = self.head(h).squeeze(1)                     # [B]
        if self.embed is not None and labels is not None:
            score = score + (self.embed(labels) * h).sum(1)
        return score


@register_model("gan")
class GAN(GenerativeModel):
    """A DCGAN-style generator and discriminator; see the module docstring."""

    config_class = GANConfig

    def __init__(self, cfg: Any, desc: dict[str, Any]) -> None:
        super().__init__(cfg, desc)
        shape, classes = self.spec.shape, self.spec.classes
        if self.spec.is_image:
            scale = 2 ** len(cfg.channels)
            if shape[1] % scale or shape[2] % scale or not cfg.channels:
                raise ConfigError(f"model.channels has {len(cfg.channels)} levels, each "
                                  f"halving the image; the image sides ({shape[1]}x{shape[2]})"
                                  f" must be divisible by {scale}: use fewer levels")
        self.generator = Generator(cfg.latent, shape, list(cfg.channels), list(cfg.hidden),
                                   classes)
        self.discriminator = Discriminator(shape, list(cfg.channels), list(cfg.hidden),
                                           classes, cfg.spectral_norm, cfg.minibatch_std)
        self.ema = EMA(self.generator, cfg.ema) if cfg.ema else None
        # the discriminator takes `discriminator_steps` updates per generator update
        self.phases = ("discriminator",) * cfg.discriminator_steps + ("generator",)
        self._d_loss: torch.Tensor | None = None  # this batch's, for the loss ratio

    @classmethod
    def from_config(cls, cfg: Any, desc: dict[str, Any]) -> GAN:
        return cls(cfg, desc)

    # -- generation --------------------------------------------------------------------
    def _fake(self, labels: torch.Tensor | None, n: int, net: nn.Module | None = None,
              generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` fakes in normalised units (the discriminator's input space)."""
        ref = next(self.generator.parameters())
        z = torch.randn(n, self.cfg.latent, generator=generator, device=ref.device)
        out = (net or self.generator)(z, labels)
        return self.spec.from_pixels((out + 1.0) / 2.0) if self.spec.is_image else out

    @torch.no_grad()
    def sample(self, n: int, *, labels: torch.Tensor | int | None = None,
               steps: int | None = None, generator: torch.Generator | None = None
               ) -> torch.Tensor:
        """``n`` new images ``[n, C, H, W]`` in [0, 1] (or rows ``[n, k]``), from the EMA
        generator when there is one. ``steps`` does not apply to a GAN (one pass)."""
        y = self.check_labels(n, labels)
        ref = next(self.generator.parameters())
        if y is None and self.spec.classes:  # a conditional model: random classes (0 is
            y = torch.randint(1, self.spec.classes, (n,), generator=generator)  # "unknown")
        net = self.ema.shadow if self.ema is not None else self.generator
        was = net.training
        net.eval()
        try:
            x = self._fake(y.to(ref.device) if y is not None else None, n, net, generator)
        finally:
            net.train(was)
        return self.spec.to_pixels(x)

    # -- training: phases ----------------------------------------------------------------
    def phase_parameters(self, phase: str) -> list[nn.Parameter]:
        if phase == "generator":
            return list(self.generator.parameters())
        if phase == "discriminator":
            return list(self.discriminator.parameters())
        raise ConfigError(f"unknown GAN phase {phase!r}; phases: discriminator, generator")

    def phase_loss(self, phase: str, inputs: dict[str, torch.Tensor]
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        real, y = self.spec.data(inputs), self.spec.labels(inputs)
        kind = self.cfg.loss
        if phase == "discriminator":
            with torch.no_grad():  # no gradient reaches the generator in this phase
                fake = self._fake(y, len(real))
            both = torch.cat([real, fake.to(memory_format=_format(real))])
            scores = self.discriminator(both, None if y is None else torch.cat([y, y]))
            s_real, s_fake = scores[:len(real)], scores[len(real):]
            loss = discriminator_loss(kind, s_real, s_fake).mean()
            # the loss ratio compares logistic losses whatever loss trains: hinge losses
            # reach 0 (D) or go negative (G), which would make a ratio of them meaningless
            self._d_loss = discriminator_loss("non_saturating", s_real, s_fake).mean().detach()
            return loss, {"d_real_acc": (s_real > 0).float().mean(),
                          "d_fake_acc": (s_fake < 0).float().mean(),
                          "d_real": s_real.detach().mean(), "d_fake": s_fake.detach().mean()}
        if phase != "generator":
            raise ConfigError(f"unknown GAN phase {phase!r}; phases: discriminator, generator")
        d_params = list(self.discriminator.parameters())
        for p in d_params:  # the graph needs gradients w.r.t. the fakes only
            p.requires_grad_(False)
        try:
            fake = self._fake(y, len(real))
            s_fake = self.discriminator(fake, y)
            loss = generator_loss(kind, s_fake).mean()
        finally:
            for p in d_params:
                p.requires_grad_(True)
        d_loss = self._d_loss if self._d_loss is not None else loss.new_ones(())
        diversity = mean_pairwise_distance(fake, y) \
            / mean_pairwise_distance(real, y).clamp_min(1e-8)
        ratio = generator_loss("non_saturating", s_fake.detach()).mean() / d_loss.clamp_min(1e-8)
        return loss, {"loss_ratio": ratio,
                      "diversity": diversity}

    def on_step_end(self) -> None:
        if self.ema is not None:
            self.ema.update(self.generator)

    # -- the usual path: validation ------------------------------------------------------
    def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-row terms on a batch of real rows and as many fakes (noise from torch's
        global RNG in training, a fixed seed in eval mode): ``loss`` (the discriminator's),
        ``generator_loss``, the scores ``d_real`` and ``d_fake``, and whether each was
        classified right (``d_real_acc``, ``d_fake_acc``)."""
        real, y = self.spec.data(inputs), self.spec.labels(inputs)
        # validation draws its noise from a fixed seed: the loss is comparable across epochs,
        # identical for identical weights, and leaves the training random stream alone
        gen = None if self.training else torch.Generator(real.device).manual_seed(EVAL_SEED)
        fake = self._fake(y, len(real), generator=gen)
        s_real = self.discriminator(real, y)
        s_fake = self.discriminator(fake.to(memory_format=_format(real)), y)
        kind = self.cfg.loss
        return {"loss": discriminator_loss(kind, s_real, s_fake),
                "generator_loss": generator_loss(kind, s_fake),
                "d_real": s_real, "d_fake": s_fake,
                "d_real_acc": (s_real > 0).float(), "d_fake_acc": (s_fake < 0).float()}


def _format(x: torch.Tensor) -> torch.memory_format:
    """Keep fakes in the real batch's memory layout (channels_last on CPU convolutions)."""
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) \
            and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format

"""Autoencoder: compress rows to a small code and reconstruct them; denoise; score anomalies.

    images  [B, C, H, W] → (conv 3x3 stride 2 → act) per width in `channels`   (each halves)
                         → flatten → linear → code [B, bottleneck]
            code → linear → (transposed conv stride 2 → act) per width, reversed
                         → transposed conv to C channels → sigmoid → pixels [B, C, H, W]
    tabular [B, k]       → (linear → act) per width in `hidden` → linear → code
            code → (linear → act) per width, reversed → linear → [B, k]

The encoder and decoder blocks (:class:`ConvEncoder`, :class:`ConvDecoder`,
:class:`MLPEncoder`, :class:`MLPDecoder`) are shared with the VAE (models/vae.py).

Reconstruction loss per type: images are compared in pixel units ([0, 1]), the numeric block
in standardised units (every column weighs the same); ``loss`` picks squared (mse) or
absolute (mae) error, averaged over a row's values. Denoising (``denoise > 0``) adds
Gaussian noise of that std (normalised units) to the inputs in training only; the target
stays clean. The anomaly score is the clean reconstruction error of a row (deterministic);
``threshold`` is a buffer (NaN until set after training) saved with the weights.

    >>> from layerwise.config import AutoencoderConfig
    >>> desc = {"numeric_dim": 4, "category_sizes": [], "images": {}}
    >>> ae = Autoencoder(AutoencoderConfig(family="autoencoder", hidden=[8], bottleneck=2), desc)
    >>> ae({"numeric": torch.zeros(3, 4)})["recon_error"].shape
    torch.Size([3])
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from layerwise.config import AutoencoderConfig
from layerwise.errors import ConfigError
from layerwise.models.generative import DataSpec, GenerativeModel
from layerwise.models.layers import activation
from layerwise.models.registry import register_model


def _halve(n: int) -> int:
    return (n + 1) // 2  # a 3x3 convolution with stride 2 and padding 1


def _join(h: torch.Tensor, cond: torch.Tensor | None, width: int) -> torch.Tensor:
    """Append the condition ``[B, width]`` to ``h``: as extra features of a vector
    ``[B, F]``, or as ``width`` constant feature maps of a map ``[B, C, H, W]``."""
    if not width:
        return h
    if cond is None or cond.shape != (h.shape[0], width):
        got = None if cond is None else tuple(cond.shape)
        raise ConfigError(f"this block is conditioned on a [{h.shape[0]}, {width}] class "
                          f"vector; got {got}")
    cond = cond.to(h.dtype)
    if h.dim() == 4:
        cond = cond[:, :, None, None].expand(-1, -1, h.shape[2], h.shape[3])
    return torch.cat([h, cond], dim=1)


class ConvEncoder(nn.Module):
    """Images ``[B, C, H, W]`` (+ an optional condition ``[B, cond]``) → ``[B, out_features]``.

    Every width in ``channels`` is one stride-2 convolution (the image halves, rounding up);
    the feature map is flattened before the last linear layer. With ``cond`` (a one-hot
    class), the condition joins every stage: as constant feature maps concatenated to the
    input of each convolution and as features before the last linear layer.
    """

    def __init__(self, shape: tuple[int, ...], channels: list[int], act: str,
                 out_features: int, cond: int = 0) -> None:
        super().__init__()
        if not channels:
            raise ConfigError("model.channels needs at least one width for image inputs")
        c, h, w = shape
        layers: list[nn.Module] = []
        self.sizes = [(h, w)]  # the spatial size before each stage (the decoder mirrors it)
        for width in channels:
            layers += [nn.Conv2d(c + cond, width, 3, 2, 1), activation(act)]
            c, h, w = width, _halve(h), _halve(w)
            self.sizes.append((h, w))
        self.convs = nn.Sequential(*layers)
        self.cond = cond
        self.out = nn.Linear(c * h * w + cond, out_features)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        h = x
        for layer in self.convs:
            if isinstance(layer, nn.Conv2d):
                h = _join(h, cond, self.cond)              # [B, C + cond, H, W]
            h = layer(h)
        return self.out(_join(h.flatten(1), cond, self.cond))  # [B, F + cond] → out


class ConvDecoder(nn.Module):
    """A vector ``[B, in_features]`` (+ an optional condition ``[B, cond]``) → images
    ``[B, C, H, W]`` (raw values: the caller maps them to pixels, logits or normalised
    units). Mirrors a :class:`ConvEncoder`; with ``cond`` the condition joins the first
    linear layer's input and, as constant feature maps, the input of every transposed
    convolution, so no stage has to carry the class forward on its own."""

    def __init__(self, shape: tuple[int, ...], channels: list[int], act: str,
                 in_features: int, cond: int = 0) -> None:
        super().__init__()
        c = shape[0]
        sizes = [tuple(shape[1:])]
        for _ in channels:
            sizes.append((_halve(sizes[-1][0]), _halve(sizes[-1][1])))
        widths = list(reversed(channels))                  # e.g. [64, 32]
        self.cond = cond
        self.start = (widths[0], *sizes[-1])               # [C', H', W'] after the linear
        self.inp = nn.Sequential(nn.Linear(in_features + cond, widths[0] * sizes[-1][0] *
                                            sizes[-1][1]), activation(act))
        layers: list[nn.Module] = []
        targets = list(reversed(sizes[:-1]))              # the sizes each stage must reach
        for i, (th, tw) in enumerate(targets):
            hh, ww = sizes[len(sizes) - 1 - i]
            last = i == len(targets) - 1
            out = c if last else widths[i + 1]
            # output_padding makes 2n-1 or 2n, whichever the encoder halved from
            pad = (th - (2 * hh - 1), tw - (2 * ww - 1))
            layers.append(nn.ConvTranspose2d(widths[i] + cond, out, 3, 2, 1,
                                             output_padding=pad))
            if not last:
                layers.append(activation(act))
        self.convs = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        h = self.inp(_join(z, cond, self.cond)).view(z.shape[0], *self.start)  # [B, C', H', W']
        for layer in self.convs:
            if isinstance(layer, nn.ConvTranspose2d):
                h = _join(h, cond, self.cond)              # [B, C' + cond, H', W']
            h = layer(h)
        return h                                           # [B, C, H, W]


class MLPEncoder(nn.Module):
    """Rows ``[B, k]`` (+ an optional condition ``[B, cond]``, joined to the input of every
    linear layer) → ``[B, out_features]``."""

    def __init__(self, in_features: int, hidden: list[int], act: str, out_features: int,
                 cond: int = 0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width + cond, h), activation(act)]
            width = h
        layers.append(nn.Linear(width + cond, out_features))
        self.cond = cond
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self.body:
            if isinstance(layer, nn.Linear):
                x = _join(x, cond, self.cond)
            x = layer(x)
        return x


class MLPDecoder(MLPEncoder):
    """A vector ``[B, in_features]`` (+ an optional condition ``[B, cond]``, joined to the
    input of every linear layer) → rows ``[B, k]``: an :class:`MLPEncoder` over the hidden
    widths in reverse."""

    def __init__(self, out_features: int, hidden: list[int], act: str,
                 in_features: int, cond: int = 0) -> None:
        super().__init__(in_features, list(reversed(hidden)), act, out_features, cond)


def make_encoder(spec: DataSpec, cfg: Any, out_features: int, cond: int = 0) -> nn.Module:
    """The encoder for the data ``spec`` models: convolutional for images, else an MLP;
    ``cond``: the width of a condition vector joined at every stage (0: none)."""
    if spec.is_image:
        return ConvEncoder(spec.shape, list(cfg.channels), cfg.activation, out_features, cond)
    return MLPEncoder(spec.shape[0], list(cfg.hidden), cfg.activation, out_features, cond)


def make_decoder(spec: DataSpec, cfg: Any, in_features: int, cond: int = 0) -> nn.Module:
    if spec.is_image:
        return ConvDecoder(spec.shape, list(cfg.channels), cfg.activation, in_features, cond)
    return MLPDecoder(spec.shape[0], list(cfg.hidden), cfg.activation, in_features, cond)


def row_mean(x: torch.Tensor) -> torch.Tensor:
    """``[B, ...]`` → ``[B]``: the mean over everything but the batch."""
    return x.flatten(1).mean(dim=1)


@register_model("autoencoder")
class Autoencoder(GenerativeModel):
    config_class = AutoencoderConfig
    threshold: torch.Tensor

    def __init__(self, cfg: AutoencoderConfig, desc: dict[str, Any]) -> None:
        super().__init__(cfg, desc)
        if cfg.condition is not None:
            raise ConfigError("model.condition is for generative models (vae, gan, diffusion); "
                              "an autoencoder reconstructs its inputs unconditioned")
        self.encoder = make_encoder(self.spec, cfg, cfg.bottleneck)
        self.decoder = make_decoder(self.spec, cfg, cfg.bottleneck)
        # the anomaly threshold on score(); chosen on validation data after training
        self.register_buffer("threshold", torch.tensor(float("nan")))

    @classmethod
    def from_config(cls, cfg: AutoencoderConfig, desc: dict[str, Any]) -> Autoencoder:
        return cls(cfg, desc)

    def _decode(self, code: torch.Tensor) -> torch.Tensor:
        """Code → reconstruction: pixels in [0, 1] (images) or standardised rows."""
        out = self.decoder(code)
        return torch.sigmoid(out) if self.spec.is_image else out

    def _target(self, x: torch.Tensor) -> torch.Tensor:
        return self.spec.to_pixels(x) if self.spec.is_image else x

    def _error(self, recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        diff = recon.float() - target.float()
        return row_mean(diff.square() if self.cfg.loss == "mse" else diff.abs())  # [B]

    def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x = self.spec.data(inputs)                         # [B, C, H, W] or [B, k]
        noisy = x
        if self.training and self.cfg.denoise > 0:         # corrupt the input, not the target
            noisy = x + self.cfg.denoise * torch.randn_like(x)
        err = self._error(self._decode(self.encoder(noisy)), self._target(x))
        return {"loss": err, "recon_error": err}

    # -- what the rest of layerwise calls ---------------------------------------------------
    @torch.no_grad()
    def encode(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The code of each row, ``[B, bottleneck]``."""
        return self.encoder(self.spec.data(inputs))

    @torch.no_grad()
    def reconstruct(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Clean reconstructions: pixels in [0, 1] (images) or standardised rows."""
        return self._decode(self.encoder(self.spec.data(inputs)))

    @torch.no_grad()
    def score(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The anomaly score ``[B]``: each row's clean reconstruction error (no noise, so the
        same row always scores the same, in train or eval mode)."""
        x = self.spec.data(inputs)
        return self._error(self._decode(self.encoder(x)), self._target(x))

    @torch.no_grad()
    def flag(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """``score > threshold`` per row (bool ``[B]``); the threshold must be set."""
        if torch.isnan(self.threshold):
            raise ConfigError("this autoencoder has no anomaly threshold (train it with "
                              "model.anomaly to choose one)")
        return self.score(inputs) > self.threshold

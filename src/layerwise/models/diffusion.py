"""A denoising diffusion model: DDPM training, DDIM sampling, a small U-Net.

Training (DDPM, Ho et al. 2020): pick a step ``t`` and noise ``eps`` at random, mix the
clean image ``x0`` (pixels scaled to [-1, 1]) into

    x_t = sqrt(abar_t) * x0 + sqrt(1 - abar_t) * eps        abar_t = prod_{s<=t} (1 - beta_s)

and train the U-Net to predict ``eps`` (``prediction: eps``) or the velocity
``v = sqrt(abar_t) * eps - sqrt(1 - abar_t) * x0`` (``prediction: v``, Salimans & Ho 2022)
with a squared error. ``beta`` follows the linear schedule of DDPM or the cosine schedule of
Nichol & Dhariwal (2021).

Sampling (DDIM, Song et al. 2021, eta = 0): start from noise and walk ``steps`` of the
``timesteps`` backwards; each step predicts x0 and eps and moves deterministically to the
previous noise level, so a seeded generator gives the same images every time.

Class conditions and classifier-free guidance (Ho & Salimans 2021): the class embedding is
added to the time embedding; in training a share ``condition_dropout`` of the rows see a
"null" class instead, so one network learns both eps(x, c) and eps(x, null). Sampling uses

    eps = (1 + w) * eps(x, c) - w * eps(x, null)             w = guidance (0: no guidance)

EMA weights (``ema``) are updated after every optimizer step and used for sampling.

    image [B, C, H, W] -> pixel unshuffle by `patch` -> conv_in
      -> per width: ResBlock x res_blocks -> keep a skip -> downsample (stride-2 conv)
      -> middle: ResBlock (+ self-attention)
      -> per width, reversed: upsample (nearest) -> concat skip -> ResBlock x res_blocks
      -> GroupNorm -> act -> conv_out -> pixel shuffle -> [B, C, H, W]
    (every ResBlock also reads the time embedding + class embedding as a channel shift)
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from layerwise.config.generative import DiffusionConfig
from layerwise.errors import ConfigError
from layerwise.models.generative import EMA, GenerativeModel
from layerwise.models.layers import activation
from layerwise.models.registry import register_model

# the validation loss draws its steps and noise from this fixed seed, so that it is
# comparable across epochs and leaves the training random stream alone
EVAL_SEED = 0


# -- noise schedules ---------------------------------------------------------------------
def noise_schedule(name: str, timesteps: int) -> torch.Tensor:
    """``abar[t]`` for t = 0..T-1 (after t+1 noising steps), float64, strictly decreasing."""
    if name == "linear":
        # DDPM's 1e-4 .. 0.02 for T = 1000, rescaled so that other T keep the same end
        scale = 1000.0 / timesteps
        betas = torch.linspace(1e-4 * scale, 0.02 * scale, timesteps, dtype=torch.float64)
        return torch.cumprod(1.0 - betas.clamp(max=0.999), 0)
    if name == "cosine":
        s = 0.008
        f = torch.cos((torch.arange(timesteps + 1, dtype=torch.float64) / timesteps + s)
                      / (1 + s) * math.pi / 2) ** 2
        betas = (1.0 - f[1:] / f[:-1]).clamp(max=0.999)  # the clip keeps the last step finite
        return torch.cumprod(1.0 - betas, 0)
    raise ConfigError(f"model.noise_schedule must be linear or cosine; got {name!r}")


def eps_from_v(x_t: torch.Tensor, v: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    return abar.sqrt() * v + (1 - abar).sqrt() * x_t


def x0_from_v(x_t: torch.Tensor, v: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    return abar.sqrt() * x_t - (1 - abar).sqrt() * v


def v_from(x0: torch.Tensor, eps: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    return abar.sqrt() * eps - (1 - abar).sqrt() * x0


# -- the U-Net ---------------------------------------------------------------------------
def _groups(ch: int) -> int:
    return math.gcd(ch, 8)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of (float) steps ``t`` [B] -> [B, dim], as in transformers."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([args.sin(), args.cos()], dim=1)
    return F.pad(emb, (0, dim % 2))


class ResBlock(nn.Module):
    """GroupNorm -> act -> conv, plus the embedding as a per-channel shift, twice; a skip."""

    def __init__(self, cin: int, cout: int, emb: int, act: str) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb, cout)
        self.norm2 = nn.GroupNorm(_groups(cout), cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.act = activation(act)
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(self.act(self.norm1(x)))            # [B, cout, H, W]
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(self.act(self.norm2(h)))
        return h + self.skip(x)


class Attention(nn.Module):
    """Single-head self-attention over the pixels of a (small) feature map."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(_groups(ch), ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).transpose(2, 3).unbind(1)
        y = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
        return x + self.proj(y.transpose(1, 2).reshape(b, c, h, w))


class UNet(nn.Module):
    """Predicts eps (or v) from a noisy image, its step and its class."""

    def __init__(self, in_ch: int, widths: list[int], res_blocks: int, attention: bool,
                 classes: int, act: str, patch: int = 1) -> None:
        super().__init__()
        # pixel unshuffle: [B, C, H, W] -> [B, C*p*p, H/p, W/p] (and back at the end)
        self.patch = patch
        in_ch *= patch * patch
        self.width0 = widths[0]
        emb = 4 * widths[0]
        self.time = nn.Sequential(nn.Linear(widths[0], emb), activation(act),
                                  nn.Linear(emb, emb))
        # index 0 (the category encoder's "unknown" value) is the null class of
        # classifier-free guidance; the real classes are 1..classes-1
        self.label = nn.Embedding(classes, emb) if classes else None
        self.conv_in = nn.Conv2d(in_ch, widths[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        ch = widths[0]
        for i, w in enumerate(widths):
            blocks = []
            for _ in range(res_blocks):
                blocks.append(ResBlock(ch, w, emb, act))
                ch = w
            self.down.append(nn.ModuleList(blocks))
            last = i == len(widths) - 1
            self.downsample.append(nn.Identity() if last else nn.Conv2d(w, w, 3, 2, 1))
        self.mid = ResBlock(ch, ch, emb, act)
        self.attn = Attention(ch) if attention else nn.Identity()
        self.up = nn.ModuleList()
        for w in reversed(widths):
            blocks = [ResBlock(ch + w, w, emb, act)]  # reads the skip of this resolution
            blocks += [ResBlock(w, w, emb, act) for _ in range(res_blocks - 1)]
            self.up.append(nn.ModuleList(blocks))
            ch = w
        self.norm_out = nn.GroupNorm(_groups(ch), ch)
        self.act = activation(act)
        self.conv_out = nn.Conv2d(ch, in_ch, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)  # start as "predict zero": a stable first step
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor,
                labels: torch.Tensor | None) -> torch.Tensor:
        emb = self.time(timestep_embedding(t, self.width0))     # [B, E]
        if self.label is not None and labels is not None:
            emb = emb + self.label(labels)
        h = self.conv_in(F.pixel_unshuffle(x, self.patch) if self.patch > 1 else x)
        skips = []
        for blocks, down in zip(self.down, self.downsample):
            for block in blocks:
                h = block(h, emb)
            skips.append(h)
            h = down(h)                                          # halves H and W
        h = self.attn(self.mid(h, emb))
        for blocks in self.up:
            skip = skips.pop()
            if h.shape[-2:] != skip.shape[-2:]:  # nearest upsampling to the skip's size
                h = F.interpolate(h, size=skip.shape[-2:], mode="nearest")
            h = blocks[0](torch.cat([h, skip], dim=1), emb)
            for block in blocks[1:]:
                h = block(h, emb)
        out = self.conv_out(self.act(self.norm_out(h)))
        return F.pixel_shuffle(out, self.patch) if self.patch > 1 else out


# -- the model ---------------------------------------------------------------------------
@register_model("diffusion")
class Diffusion(GenerativeModel):
    """DDPM-trained, DDIM-sampled U-Net over one image input (optionally class-conditional).

        >>> import torch
        >>> from layerwise.config.generative import DiffusionConfig
        >>> cfg = DiffusionConfig(family="diffusion", channels=[8, 16], timesteps=50)
        >>> m = Diffusion(cfg, {"images": {"image": (1, 8, 8)}})
        >>> m.sample(2, steps=5, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([2, 1, 8, 8])
    """

    config_class = DiffusionConfig

    def __init__(self, cfg: DiffusionConfig, desc: dict[str, Any]) -> None:
        super().__init__(cfg, desc)
        if not self.spec.is_image:
            raise ConfigError("model family diffusion models one image input; got numeric "
                              "inputs only (use vae or gan for tabular data)")
        if not cfg.channels:
            raise ConfigError("model.channels must name at least one U-Net width")
        c, h, w = self.spec.shape
        if h % cfg.patch or w % cfg.patch:
            raise ConfigError(f"model.patch ({cfg.patch}) must divide the image size "
                              f"({h}x{w})")
        self.net = UNet(c, list(cfg.channels), cfg.res_blocks, cfg.attention,
                        self.spec.classes, cfg.activation, cfg.patch)
        self.ema = EMA(self.net, cfg.ema) if cfg.ema else None
        self.null_class = 0  # the unknown value doubles as "no class" (guidance)
        self.register_buffer("abar", noise_schedule(cfg.noise_schedule, cfg.timesteps).float(),
                             persistent=False)

    @classmethod
    def from_config(cls, cfg: DiffusionConfig, desc: dict[str, Any]) -> Diffusion:
        return cls(cfg, desc)

    def on_step_end(self) -> None:
        if self.ema is not None:
            self.ema.update(self.net)

    # -- training ----------------------------------------------------------------------
    def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-row DDPM loss at a random step; ``mse`` is the error in eps units."""
        x0 = self.spec.to_pixels(self.spec.data(inputs)) * 2 - 1     # [B, C, H, W] in [-1, 1]
        b = x0.shape[0]
        gen = None if self.training else torch.Generator(x0.device).manual_seed(EVAL_SEED)
        t = torch.randint(0, self.cfg.timesteps, (b,), device=x0.device, generator=gen)
        eps = torch.randn(x0.shape, device=x0.device, generator=gen)
        labels = self.spec.labels(inputs)
        if labels is not None and self.training and self.cfg.condition_dropout > 0:
            drop = torch.rand(b, device=x0.device) < self.cfg.condition_dropout
            labels = labels.masked_fill(drop, self.null_class)
        abar = self.abar[t].view(b, 1, 1, 1)
        x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
        pred = self.net(x_t, t, labels)
        if self.cfg.prediction == "v":
            loss = (pred - v_from(x0, eps, abar)).pow(2).flatten(1).mean(1)
            mse = (eps_from_v(x_t, pred, abar) - eps).pow(2).flatten(1).mean(1)
        else:
            loss = (pred - eps).pow(2).flatten(1).mean(1)
            mse = loss.detach()
        return {"loss": loss, "mse": mse.detach()}

    # -- sampling -------------------------------------------------------------------------
    def denoise(self, net: nn.Module, x: torch.Tensor, t: torch.Tensor,
                labels: torch.Tensor | None, guidance: float) -> tuple[torch.Tensor, ...]:
        """(x0, eps) predicted at step ``t`` [B], with classifier-free guidance."""
        null = torch.full_like(t, self.null_class) if self.spec.classes else None
        if labels is None:  # the unconditional model (the null class, if conditional)
            pred = net(x, t, null)
        elif guidance == 0:  # the conditional model alone: one pass
            pred = net(x, t, labels)
        else:  # both passes in one batch
            cond, uncond = net(torch.cat([x, x]), torch.cat([t, t]),
                               torch.cat([labels, null])).chunk(2)
            pred = (1 + guidance) * cond - guidance * uncond
        abar = self.abar[t].view(-1, 1, 1, 1)
        if self.cfg.prediction == "v":
            x0 = x0_from_v(x, pred, abar)
        else:
            x0 = (x - (1 - abar).sqrt() * pred) / abar.sqrt()
        # keep x0 in the data range and make eps agree with it (stabilises few-step DDIM)
        x0 = x0.clamp(-1.0, 1.0)
        eps = (x - abar.sqrt() * x0) / (1 - abar).sqrt()
        return x0, eps

    @torch.no_grad()
    def sample(self, n: int, *, labels: torch.Tensor | int | None = None,
               steps: int | None = None, generator: torch.Generator | None = None,
               guidance: float | None = None) -> torch.Tensor:
        """``n`` images [n, C, H, W] in [0, 1] by DDIM (eta = 0) with the EMA weights.

        ``labels``: one class index for all or one per image (class-conditional models);
        ``steps``: DDIM steps (default ``model.sample_steps``); ``guidance``: overrides
        ``model.guidance``. The only randomness is the starting noise, drawn from
        ``generator``.
        """
        cls = self.check_labels(n, labels)
        steps = self.cfg.sample_steps if steps is None else int(steps)
        if not 0 < steps <= self.cfg.timesteps:
            raise ConfigError(f"steps must be in [1, {self.cfg.timesteps}]; got {steps}")
        w = self.cfg.guidance if guidance is None else float(guidance)
        if w < 0:
            raise ConfigError(f"guidance must be >= 0; got {w}")
        net = self.ema.shadow if self.ema is not None else self.net
        was = net.training
        net.eval()
        device = self.abar.device
        cls = cls.to(device) if cls is not None else None
        x = torch.randn((n, *self.spec.shape), generator=generator,
                        device=generator.device if generator is not None else device).to(device)
        # evenly spaced steps from T-1 down to 0 (all of them when steps == timesteps)
        ts = torch.linspace(self.cfg.timesteps - 1, 0, steps).round().long().tolist()
        for i, t in enumerate(ts):
            x0, eps = self.denoise(net, x, torch.full((n,), t, device=device), cls, w)
            if i + 1 == len(ts):
                x = x0
            else:
                prev = self.abar[ts[i + 1]]
                x = prev.sqrt() * x0 + (1 - prev).sqrt() * eps
        net.train(was)
        return ((x + 1) / 2).clamp(0.0, 1.0).contiguous()


"""Low-rank adapters for Linear layers (LoRA; Hu et al., 2021), small and native.

    x [.., in] ──▶ base (frozen W, b) ───────────────────────────▶ (+) ──▶ [.., out]
               └─▶ dropout ──▶ A [rank, in] ──▶ B [out, rank] ──▶ × alpha / rank

``B`` starts at zero, so an adapted model starts as the pre-trained one; only ``A`` and
``B`` train. :func:`merge_lora` folds ``s · B A`` into ``W`` and puts plain ``nn.Linear``
layers back: the same function, at the original speed, with the original state-dict keys.
Native rather than PEFT: forty lines, the same state-dict keys on every path, and nothing
wrapped around the model that the Trainer, checkpoints or export would have to know about.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from layerwise.errors import ConfigError


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trained low-rank update."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0
                 ) -> None:
        super().__init__()
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.scale = alpha / rank
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))  # as nn.Linear's own weight
        self.drop = nn.Dropout(dropout) if dropout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        update = self.drop(x) @ self.lora_a.t().to(x.dtype) @ self.lora_b.t().to(x.dtype)
        return self.base(x) + self.scale * update

    def merged(self) -> nn.Linear:
        """A plain Linear computing the same function: ``W + s · B A``."""
        out = nn.Linear(self.base.in_features, self.base.out_features,
                        bias=self.base.bias is not None)
        with torch.no_grad():
            delta = self.scale * (self.lora_b.float() @ self.lora_a.float())
            out.weight.copy_(self.base.weight.float() + delta)
            if self.base.bias is not None:
                out.bias.copy_(self.base.bias)
        return out.to(self.base.weight.device)


def apply_lora(module: nn.Module, targets: list[str], rank: int, alpha: float,
               dropout: float = 0.0) -> int:
    """Replace every ``nn.Linear`` under ``module`` whose name ends in one of ``targets``
    by a :class:`LoRALinear`, in place; returns how many were adapted (none is an error
    naming the Linear layers there are)."""
    found = [(name, m) for name, m in module.named_modules() if isinstance(m, nn.Linear)]
    hits = [(name, m) for name, m in found if name.rsplit(".", 1)[-1] in targets]
    if not hits:
        names = sorted({n.rsplit(".", 1)[-1] for n, _ in found})
        raise ConfigError(f"model.lora.targets {targets} match no Linear layer of the "
                          f"encoder; its Linear layers end in: {', '.join(names) or 'none'}")
    for name, lin in hits:
        _set(module, name, LoRALinear(lin, rank, alpha, dropout))
    return len(hits)


def merge_lora(module: nn.Module) -> int:
    """Fold every adapter under ``module`` into its base layer, in place; returns how many."""
    adapted = [(name, m) for name, m in module.named_modules() if isinstance(m, LoRALinear)]
    for name, m in adapted:
        _set(module, name, m.merged())
    return len(adapted)


def _set(root: nn.Module, dotted: str, new: nn.Module) -> None:
    parent_name, _, leaf = dotted.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, leaf, new)

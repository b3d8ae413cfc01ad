"""Settings of the step strategies that change what a batch trains on: adversarial
examples (training/adversarial.py) and mixup / CutMix (training/mixup.py); and the moving
average of the weights that validation scores (training/averaging.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from layerwise.config.base import _Strict


class AdversarialConfig(_Strict):
    """Adversarial training: each batch is replaced by its worst case within ``eps``."""

    method: Literal["fgsm", "pgd"] = "pgd"
    eps: float = Field(0.1, gt=0.0, description="the L-infinity radius, in raw input units "
                       "(pixels in [0, 1]; standardised units for numeric columns)")
    steps: int = Field(7, gt=0, description="pgd: gradient-sign steps (fgsm takes one)")
    alpha: float | None = Field(None, gt=0.0, description="pgd: step size (default "
                                "2.5 * eps / steps)")


class MixupConfig(_Strict):
    """Mixup / CutMix: each batch blended with a shuffled copy of itself, the loss alike."""

    alpha: float = Field(0.2, ge=0.0, description="mixup: lam ~ Beta(alpha, alpha); 0: off")
    cutmix_alpha: float = Field(0.0, ge=0.0, description="CutMix of image inputs: lam ~ "
                                "Beta(a, a); with alpha too, each batch uses one, half the "
                                "time each")
    prob: float = Field(1.0, gt=0.0, le=1.0, description="share of batches blended")

    @model_validator(mode="after")
    def _one(self) -> MixupConfig:
        if not self.alpha and not self.cutmix_alpha:
            raise ValueError("mixup needs alpha > 0 or cutmix_alpha > 0 (or drop train.mixup)")
        return self


class EMAConfig(_Strict):
    """An exponential moving average of the weights: validation scores it and the run ends
    with it (training/averaging.py)."""

    decay: float = Field(0.999, gt=0.0, lt=1.0, description="each step keeps this share of "
                         "the average; about 1 / (1 - decay) steps are remembered (0.999: "
                         "~1,000, for runs of many thousand steps; 0.99 for short fine-tunes)")
    warmup: bool = Field(True, description="use min(decay, (1 + n) / (10 + n)) at update n, "
                         "so the first weights fade fast")

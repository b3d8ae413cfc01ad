"""Mixup and CutMix (train.mixup): the blend, the blended loss, exactness and the errors."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from safetensors.torch import load_file

from layerwise.api import train
from layerwise.config import TrainConfig
from layerwise.errors import ConfigError
from layerwise.training import Trainer
from layerwise.training.mixup import Blend, MixupStep, blend, draw
from tests.model_helpers import Crash

pytestmark = pytest.mark.usefixtures("one_thread")


def _cfg(**mixup: Any) -> Any:
    return TrainConfig(mixup=mixup).mixup


def test_mixup_blends_every_float_input_with_the_partner_rows() -> None:
    x = {"img": torch.arange(8.0).view(2, 1, 2, 2), "num": torch.tensor([[1.0], [3.0]])}
    out = blend(x, Blend(0.25, torch.tensor([1, 0])))
    assert torch.equal(out["num"], torch.tensor([[2.5], [1.5]]))
    assert torch.equal(out["img"][0], 0.25 * x["img"][0] + 0.75 * x["img"][1])


def test_cutmix_pastes_a_box_and_lam_is_the_share_left() -> None:
    cfg = _cfg(alpha=0.0, cutmix_alpha=1.0)
    seen = 0
    for seed in range(30):
        b = draw(cfg, 4, (8, 10), seed)
        assert b is not None and b.box is not None
        top, left, h, w = b.box
        assert b.lam == pytest.approx(1 - h * w / 80)
        x = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 1, 8, 10).contiguous()
        out = blend(x, b)
        inside = torch.zeros(8, 10, dtype=torch.bool)
        inside[top:top + h, left:left + w] = True
        for r in range(4):
            assert torch.all(out[r, 0][inside] == float(b.perm[r]))
            assert torch.all(out[r, 0][~inside] == float(r))
        seen += h * w > 0
    assert seen > 20  # boxes of every size, not just empty ones


def test_both_kinds_are_drawn_and_prob_leaves_batches_alone() -> None:
    both = [draw(_cfg(alpha=0.4, cutmix_alpha=1.0), 4, (8, 8), s) for s in range(60)]
    kinds = {b.box is None for b in both if b is not None}
    assert kinds == {True, False}
    some = [draw(_cfg(alpha=0.4, prob=0.5), 4, None, s) for s in range(200)]
    assert 60 < sum(b is None for b in some) < 140


def test_the_loss_is_blended_with_the_same_weight() -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 4)
    cfg = TrainConfig(seed=5, mixup={"alpha": 0.4})
    trainer = SimpleNamespace(config=cfg, state=SimpleNamespace(step=2, batch=3),
                              forward_module=model, replicas=1,
                              compute_loss=lambda m, out, y: F.cross_entropy(out, y))
    step = MixupStep.__new__(MixupStep)
    step.trainer = trainer
    x, y = torch.randn(6, 3), torch.tensor([0, 1, 2, 3, 0, 1])
    got = step.loss(x, y)
    b = draw(cfg.mixup, 6, None, 5 * 1_000_003 + 2 * 7919 + 3 * 31 + 17)
    assert b is not None
    out = model(b.lam * x + (1 - b.lam) * x[b.perm])
    want = b.lam * F.cross_entropy(out, y) + (1 - b.lam) * F.cross_entropy(out, y[b.perm])
    assert torch.allclose(got, want)
    assert 0 < b.lam < 1 and not torch.equal(b.perm, torch.arange(6))


def test_config_needs_one_kind() -> None:
    with pytest.raises(ValidationError, match="alpha > 0 or cutmix_alpha > 0"):
        TrainConfig(mixup={"alpha": 0.0})


def test_integer_inputs_and_replicas_are_refused() -> None:
    cfg = TrainConfig(epochs=1, batch_size=4, progress="quiet", checkpoint_every=0,
                      mixup={"alpha": 0.2})
    emb = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Flatten(), torch.nn.Linear(8, 2))
    ids, y = torch.randint(0, 10, (8, 2)), torch.randint(0, 2, (8,))
    with pytest.raises(ConfigError, match="holds integers"):
        Trainer(cfg, loss_fn=F.cross_entropy).fit(emb, (ids, y))
    many = cfg.model_copy(update={"replicas": 2})
    with pytest.raises(ConfigError, match="without train.replicas"):
        Trainer(many, loss_fn=F.cross_entropy).fit(torch.nn.Linear(3, 2),
                                                   (torch.randn(8, 3), y))


def _weights(r: Any) -> dict[str, torch.Tensor]:
    return load_file(str(Path(r.model_dir) / "model.safetensors"))


def test_mixup_runs_are_exact_and_resume_exactly(tiny_cnn: dict[str, Any],
                                                 tmp_path: Path) -> None:
    tiny_cnn["train"].update(epochs=2, checkpoint_every=2, precision="fp32",
                             mixup={"alpha": 0.4, "cutmix_alpha": 1.0})
    ref = train(tiny_cnn, output=tmp_path / "ref")
    again = train(tiny_cnn, output=tmp_path / "again")
    a, b = _weights(ref), _weights(again)
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(tiny_cnn, output=tmp_path / "run", callbacks=[Crash(5)])
    resumed = _weights(train(tiny_cnn, output=tmp_path / "run", resume=True))
    assert all(torch.equal(a[k], resumed[k]) for k in a)
    plain = dict(tiny_cnn, train={**tiny_cnn["train"], "mixup": None})
    c = _weights(train(plain, output=tmp_path / "plain"))
    assert any(not torch.equal(a[k], c[k]) for k in a)  # the blend changed training

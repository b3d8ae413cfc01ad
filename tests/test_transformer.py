"""The transformer family: masking, positions, attention maps that match the fused path."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from pydantic import TypeAdapter

from layerwise.config import CategoryOutput, ModelConfig
from layerwise.models import build_model
from layerwise.models.transformer import rotate, sinusoidal

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


DESC: dict[str, Any] = {
    "numeric_dim": 0, "category_sizes": [], "category_dims": [], "images": {},
    "texts": {"text": {"vocab_size": 30, "max_length": 10, "pad_id": 0}},
    "outputs": {"y": ("category", 3)},
}
OUT = [CategoryOutput(name="y", type="category")]


def model(**kw: Any) -> torch.nn.Module:
    cfg = TypeAdapter(ModelConfig).validate_python(
        {"family": "transformer", "d_model": 8, "heads": 2, "layers": 2, **kw})
    torch.manual_seed(0)
    return build_model(cfg, OUT, DESC).eval()


def batch() -> dict[str, Any]:
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([10, 4, 1, 7])
    ids = torch.randint(2, 30, (4, 10), generator=g)
    ids[torch.arange(10)[None, :] >= lengths[:, None]] = 0
    return {"text": {"ids": ids, "lengths": lengths}}


@pytest.mark.parametrize("positions", ["learned", "sinusoidal", "rotary"])
@pytest.mark.parametrize("pooling", ["mean", "max", "cls"])
def test_padding_is_masked_out(positions: str, pooling: str) -> None:
    m = model(positions=positions, pooling=pooling)
    x = batch()
    noisy = {"text": {"ids": x["text"]["ids"].clone(), "lengths": x["text"]["lengths"]}}
    noisy["text"]["ids"][1, 4:] = 7
    with torch.no_grad():
        a, b = m(x)["y"], m(noisy)["y"]
        alone = m({"text": {"ids": x["text"]["ids"][1:2, :4],
                            "lengths": torch.tensor([4])}})["y"]
    assert torch.allclose(a, b, atol=1e-6)
    assert torch.allclose(a[1:2], alone, atol=1e-5)


def test_attention_maps_are_the_weights_the_fused_path_uses() -> None:
    m = model(positions="rotary", pooling="cls")
    x = batch()
    maps = m.backbone.attention_maps(x)["text"]
    assert len(maps) == 2 and maps[0].shape == (4, 2, 11, 11)  # cls token: T + 1
    assert torch.allclose(maps[0].sum(-1), torch.ones(4, 2, 11), atol=1e-5)
    assert (maps[0][1, :, :, 5:] == 0).all()  # row 1 has 4 tokens (+cls): no weight on pads
    enc = m.backbone.encoders["text"]
    with torch.no_grad():
        h, mask = enc._embed(x["text"])
        for block in enc.blocks:
            fused, _ = block(h, mask)
            explicit, _ = block(h, mask, weights=True)
            assert torch.allclose(fused, explicit, atol=1e-5)
            h = fused


def test_positions_matter_and_rotary_depends_on_relative_position_only() -> None:
    m = model(positions="learned")
    x = batch()
    rev = {"text": {"ids": x["text"]["ids"][:, :10].flip(1)[:1], "lengths": torch.tensor([10])}}
    with torch.no_grad():
        assert not torch.allclose(m(x)["y"][:1], m(rev)["y"], atol=1e-4)
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(1, 1, 1, 8, generator=g), torch.randn(1, 1, 1, 8, generator=g)
    qs, ks = q.expand(1, 1, 6, 8), k.expand(1, 1, 6, 8)
    dots = (rotate(qs)[0, 0, 3] @ rotate(ks)[0, 0, 1], rotate(qs)[0, 0, 5] @ rotate(ks)[0, 0, 3])
    assert torch.allclose(*dots, atol=1e-5)
    assert sinusoidal(4, 6).shape == (4, 6)


def test_training_reduces_the_loss_on_a_learnable_task() -> None:
    # label = whether token 3 appears: attention must find it wherever it is
    m = model(positions="rotary", pooling="mean").train()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(4, 30, (64, 10), generator=g)
    y = torch.randint(0, 2, (64,), generator=g)
    ids[y == 1, torch.randint(0, 10, (int((y == 1).sum()),), generator=g)] = 3
    x = {"text": {"ids": ids, "lengths": torch.full((64,), 10)}}
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        loss = m.loss(m(x), {"y": y})
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first

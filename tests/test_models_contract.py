"""One contract over the whole model registry: builds, shapes, finite gradients,
safetensors round trip, determinism under a seed."""

from __future__ import annotations

import io
from typing import Any

import pytest
import torch
from pydantic import TypeAdapter
from safetensors.torch import load, save

from layerwise.config import CategoryOutput, ModelConfig, NumericOutput
from layerwise.errors import ConfigError, UnknownNameError
from layerwise.models import build_model, get_model, model_names, register_model

DESC: dict[str, Any] = {
    "numeric_dim": 3, "category_sizes": [5], "category_dims": [None],
    "images": {"image": (1, 12, 12)},
    "outputs": {"label": ("category", 4), "value": ("numeric", 1)},
}
# text families read text (and tabular) inputs; image families read images (and tabular)
TEXT_DESC: dict[str, Any] = {
    **{k: v for k, v in DESC.items() if k != "images"}, "images": {},
    "texts": {"text": {"vocab_size": 20, "max_length": 9, "pad_id": 0}},
}
TEXT_FAMILIES = {"bag", "rnn", "transformer"}

# one small config per registered family; a new family must add its case here
CASES: dict[str, dict[str, Any]] = {
    "mlp": {"family": "mlp", "hidden": [8, 8], "norm": "batch", "dropout": 0.1},
    "cnn": {"family": "cnn", "blocks": [{"filters": 4, "pool": "max"},
                                        {"filters": 8, "layers": 2}],
            "residual": True, "dense": [8], "dropout": 0.1},
    "rnn": {"family": "rnn", "cell": "lstm", "embedding_dim": 8, "hidden": 8, "layers": 2,
            "bidirectional": True, "pooling": "attention", "dense": [8], "dropout": 0.1},
    "transformer": {"family": "transformer", "d_model": 8, "heads": 2, "layers": 2,
                    "positions": "rotary", "pooling": "cls", "dense": [8], "dropout": 0.1},
    "bag": {"family": "bag", "embedding_dim": 8, "ngrams": 3, "buckets": 64,
            "pooling": "sqrt", "dense": [8], "dropout": 0.1},
    "pretrained": {"family": "pretrained", "encoder": "efficientnet-lite0", "image_size": 32,
                   "dense": [8], "dropout": 0.1},
    "seq2seq": {"family": "seq2seq", "d_model": 8, "heads": 2, "encoder_layers": 1,
                "decoder_layers": 2, "positions": "rotary", "dropout": 0.1},
}
# families with category/numeric heads; seq2seq's contract is test_seq2seq_contract
HEADED = sorted(set(CASES) - {"seq2seq"})
OUTPUTS = [CategoryOutput(name="label", type="category"),
           NumericOutput(name="value", type="numeric")]


def batch(n: int = 6, seed: int = 0) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    inputs = {"numeric": torch.randn(n, 3, generator=g),
              "category": torch.randint(0, 5, (n, 1), generator=g),
              "image": torch.randn(n, 1, 12, 12, generator=g),
              "text": {"ids": torch.randint(1, 20, (n, 9), generator=g),
                       "lengths": torch.randint(1, 10, (n,), generator=g)}}
    targets = {"label": torch.randint(0, 4, (n,), generator=g),
               "value": torch.randn(n, generator=g)}
    return inputs, targets


def build(family: str, seed: int = 0) -> torch.nn.Module:
    cfg = TypeAdapter(ModelConfig).validate_python(CASES[family])
    torch.manual_seed(seed)
    return build_model(cfg, OUTPUTS, TEXT_DESC if family in TEXT_FAMILIES else DESC)


def test_every_registered_family_has_a_contract_case() -> None:
    # generative families (no heads, per-row outputs) have theirs in test_generative_contract
    assert sorted(CASES) == [n for n in model_names()
                             if not getattr(get_model(n), "generative", False)]


@pytest.mark.parametrize("family", HEADED)
def test_contract(family: str) -> None:
    model = build(family)
    inputs, targets = batch()
    out = model(inputs)
    assert out["label"].shape == (6, 4) and out["value"].shape == (6,)

    loss = model.loss(out, targets)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)

    # safetensors round trip into a fresh build gives the same outputs
    model.eval()
    blob = save({k: v.contiguous() for k, v in model.state_dict().items()})
    other = build(family, seed=123)
    other.load_state_dict(load(blob))
    other.eval()
    with torch.no_grad():
        a, b = model(inputs), other(inputs)
    assert all(torch.equal(a[k], b[k]) for k in a)

    # determinism: the same seed builds the same weights
    w1, w2 = build(family).state_dict(), build(family).state_dict()
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    w3 = build(family, seed=1).state_dict()
    assert any(not torch.equal(w1[k], w3[k]) for k in w1)
    assert isinstance(io.BytesIO(blob).getvalue(), bytes)


@pytest.mark.parametrize("family", HEADED)
def test_channels_last_gives_the_same_outputs(family: str) -> None:
    model = build(family).eval()
    inputs, _ = batch()
    with torch.no_grad():
        ref = model(inputs)
        model.to(memory_format=torch.channels_last)
        cl = dict(inputs, image=inputs["image"].contiguous(memory_format=torch.channels_last))
        cl["text"] = {k: v.clone() for k, v in inputs["text"].items()}
        got = model(cl)
    assert all(torch.allclose(ref[k], got[k], atol=1e-5) for k in ref)


def test_registry_rejects_duplicates_and_lists_names_on_a_miss() -> None:
    with pytest.raises(ConfigError, match="already registered"):
        register_model("mlp")(type("Dup", (torch.nn.Module,), {"from_config": classmethod(
            lambda cls, c, d: cls())}))
    with pytest.raises(UnknownNameError, match="registered: .*cnn, .*mlp, pretrained, rnn, "
                                               "seq2seq, transformer"):
        get_model("resnet9000")


def test_pool_before_norm_keeps_shapes_and_rejects_residual() -> None:
    base = {"family": "cnn", "blocks": [{"filters": 4, "pool": "max", "layers": 2},
                                        {"filters": 8, "pool": "max"}], "dense": []}
    late = build_model(TypeAdapter(ModelConfig).validate_python(base), OUTPUTS, DESC)
    for b in base["blocks"]:
        b["pool_before_norm"] = True
    early = build_model(TypeAdapter(ModelConfig).validate_python(base), OUTPUTS, DESC)
    inputs, _ = batch()
    assert early(inputs)["label"].shape == late(inputs)["label"].shape
    names = [type(m).__name__ for m in early.backbone.stages[0].convs]
    assert names.index("MaxPool2d") < names.index("BatchNorm2d", names.index("Conv2d", 2))
    with pytest.raises(Exception, match="residual"):
        TypeAdapter(ModelConfig).validate_python(dict(base, residual=True))


def test_cnn_needs_one_image_and_rejects_blocks_that_shrink_to_nothing() -> None:
    desc = dict(DESC, images={})
    cfg = TypeAdapter(ModelConfig).validate_python(CASES["cnn"])
    with pytest.raises(ConfigError, match="exactly one image input"):
        build_model(cfg, OUTPUTS, desc)
    tiny = dict(DESC, images={"image": (1, 4, 4)})
    cfg = TypeAdapter(ModelConfig).validate_python(
        {"family": "cnn", "blocks": [{"filters": 4, "pool": "max"}] * 4})
    with pytest.raises(ConfigError, match="shrink"):
        build_model(cfg, OUTPUTS, tiny)


@pytest.mark.parametrize("family", sorted(CASES))
def test_families_refuse_inputs_they_cannot_read(family: str) -> None:
    cfg = TypeAdapter(ModelConfig).validate_python(CASES[family])
    both = dict(DESC, texts=TEXT_DESC["texts"])
    with pytest.raises(ConfigError, match="cannot read (text|image) inputs"):
        build_model(cfg, OUTPUTS, both)


# sequence inputs and outputs of the text families: a timeseries input with a forecast
# head, and a tags head over per-token states (contract: shapes, finite gradients,
# safetensors round trip, determinism)
SEQUENCE_CASES = {
    ("rnn", "forecast"): {"family": "rnn", "cell": "gru", "hidden": 8, "layers": 2,
                          "bidirectional": True, "pooling": "attention", "dense": [8]},
    ("transformer", "forecast"): {"family": "transformer", "d_model": 8, "heads": 2,
                                  "layers": 1, "positions": "rotary", "pooling": "cls"},
    ("rnn", "tags"): {"family": "rnn", "cell": "lstm", "embedding_dim": 8, "hidden": 8,
                      "bidirectional": True, "pooling": "mean"},
    ("transformer", "tags"): {"family": "transformer", "d_model": 8, "heads": 2, "layers": 2,
                              "positions": "learned"},
}


def sequence_build(family: str, kind: str, seed: int = 0) -> torch.nn.Module:
    from layerwise.config import ForecastOutput, TagsOutput

    cfg = TypeAdapter(ModelConfig).validate_python(SEQUENCE_CASES[(family, kind)])
    if kind == "forecast":
        desc = {"numeric_dim": 0, "category_sizes": [], "category_dims": [], "images": {},
                "texts": {}, "series": {"history": {"channels": 2, "lookback": 7}},
                "outputs": {"y": ("forecast", 3)}}
        outputs = [ForecastOutput(name="y", type="forecast", input="history", horizon=3)]
    else:
        desc = {**TEXT_DESC, "numeric_dim": 0, "category_sizes": [],
                "outputs": {"y": ("tags", 5)}}
        outputs = [TagsOutput(name="y", type="tags", input="text")]
    torch.manual_seed(seed)
    return build_model(cfg, outputs, desc)


def sequence_batch(kind: str, n: int = 6) -> tuple[dict[str, Any], dict[str, Any]]:
    g = torch.Generator().manual_seed(0)
    if kind == "forecast":
        return ({"history": torch.randn(n, 7, 2, generator=g)},
                {"y": {"values": torch.randn(n, 3, generator=g),
                       "naive": torch.randn(n, 3, generator=g)}})
    inputs, _ = batch(n)
    lengths = inputs["text"]["lengths"]
    y = torch.randint(0, 5, (n, 9), generator=g)
    y[torch.arange(9)[None, :] >= lengths[:, None]] = -100  # no tag past a text's end
    return {"text": inputs["text"]}, {"y": y}


@pytest.mark.parametrize("family,kind", sorted(SEQUENCE_CASES))
def test_sequence_contract(family: str, kind: str) -> None:
    model = sequence_build(family, kind)
    inputs, targets = sequence_batch(kind)
    out = model(inputs)["y"]
    assert out.shape == ((6, 3) if kind == "forecast" else (6, 9, 5))
    model.loss(model(inputs), targets).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    model.eval()
    blob = save({k: v.contiguous() for k, v in model.state_dict().items()})
    other = sequence_build(family, kind, seed=123)
    other.load_state_dict(load(blob))
    other.eval()
    with torch.no_grad():
        assert torch.equal(model(inputs)["y"], other(inputs)["y"])
    w1, w2 = (sequence_build(family, kind).state_dict() for _ in range(2))
    assert all(torch.equal(w1[k], w2[k]) for k in w1)


def test_families_without_sequence_support_refuse_a_timeseries() -> None:
    cfg = TypeAdapter(ModelConfig).validate_python(CASES["mlp"])
    desc = dict(DESC, series={"history": {"channels": 1, "lookback": 4}})
    with pytest.raises(ConfigError, match="cannot read timeseries inputs"):
        build_model(cfg, OUTPUTS, desc)


def seq2seq_build(seed: int = 0) -> torch.nn.Module:
    from layerwise.config import SequenceOutput

    cfg = TypeAdapter(ModelConfig).validate_python(CASES["seq2seq"])
    desc = {**TEXT_DESC, "numeric_dim": 0, "category_sizes": [], "outputs": {"y": ("sequence", 1)},
            "sequences": {"y": {"vocab_size": 7, "max_length": 4, "pad_id": 0, "bos_id": 5,
                                "eos_id": 6}}}
    torch.manual_seed(seed)
    return build_model(cfg, [SequenceOutput(name="y", type="sequence", max_length=4)], desc)


def test_seq2seq_contract() -> None:
    model = seq2seq_build()
    inputs, _ = batch()
    y = torch.tensor([[5, 1, 2, 6, 0, 0]] * 3 + [[5, 3, 4, 2, 1, 0]] * 3)  # <bos> .. <eos>
    inputs = {"text": inputs["text"], "y": y}  # teacher forcing reads the targets
    out = model(inputs)["y"]
    assert out.shape == (6, 5, 7)  # [B, max_length + 1, vocab]
    model.loss(model(inputs), {"y": y}).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert all(g.abs().sum() > 0 for g in grads if g.ndim > 1)
    model.eval()
    blob = save({k: v.contiguous() for k, v in model.state_dict().items()})
    other = seq2seq_build(seed=123)
    other.load_state_dict(load(blob))
    other.eval()
    with torch.no_grad():
        assert torch.equal(model(inputs)["y"], other(inputs)["y"])
    assert model.backbone.generate(inputs["text"]) == other.backbone.generate(inputs["text"])
    w1, w2 = seq2seq_build().state_dict(), seq2seq_build().state_dict()
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    w3 = seq2seq_build(seed=1).state_dict()
    assert any(not torch.equal(w1[k], w3[k]) for k in w1)

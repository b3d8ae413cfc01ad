"""Self-supervised pre-training (issue 16): few labels, masking, contrastive loss, init_from."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

from layerwise.config import parse
from layerwise.data.build import build
from layerwise.errors import ConfigError, DataError

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def _digits(labelled: Any = None, unlabelled: bool = False) -> dict[str, Any]:
    from tests.conftest import TINY_CNN

    cfg = copy.deepcopy(TINY_CNN)
    cfg["data"] = {"dataset": "digits", "limit": 500,
                   "split": {"labelled": labelled, "unlabelled": unlabelled, "seed": 3}}
    return cfg


# ------------------------------------------------------------------ data.split.labelled


def test_labelled_keeps_n_stratified_training_rows_and_leaves_other_splits_alone() -> None:
    full = build(parse(_digits()))
    few = build(parse(_digits(labelled=50)))
    rest = build(parse(_digits(labelled=50, unlabelled=True)))
    assert len(few.train) == 50
    assert len(rest.train) == len(full.train) - 50
    for part in ("validation", "test"):  # untouched by labelled
        assert getattr(few, part).targets["label"].tolist() == \
            getattr(full, part).targets["label"].tolist()
    counts = np.bincount(few.train.targets["label"].numpy(), minlength=10)
    assert counts.min() >= 4 and counts.max() <= 6  # stratified: ~5 of each of 10 classes
    # the labelled part and the unlabelled rest are disjoint and together the training split
    def rows(d: Any) -> set[bytes]:
        return {r.tobytes() for r in d.raw_train["image"]}
    assert rows(few) | rows(rest) == rows(full) and not rows(few) & rows(rest)


def test_labelled_share_and_seed() -> None:
    full = build(parse(_digits()))
    tenth = build(parse(_digits(labelled=0.1)))
    assert len(tenth.train) == round(0.1 * len(full.train))
    again = build(parse(_digits(labelled=0.1)))
    assert (again.train.inputs["image"] == tenth.train.inputs["image"]).all()
    other = _digits(labelled=0.1)
    other["data"]["split"]["seed"] = 4
    assert not (build(parse(other)).train.inputs["image"] == tenth.train.inputs["image"]).all()


def test_labelled_errors_name_the_field() -> None:
    with pytest.raises(DataError, match=r"data\.split\.labelled: 100000 training rows"):
        build(parse(_digits(labelled=100000)))
    with pytest.raises(ConfigError, match="labelled"):
        parse(_digits(labelled=1.5))
    with pytest.raises(ConfigError, match="unlabelled"):
        parse(_digits(unlabelled=True))


# ------------------------------------------------------------------ the objectives


def test_masking_statistics_follow_80_10_10() -> None:
    import torch

    from layerwise.pretrain.objectives import IGNORE, MASK_ID, mask_tokens

    g = torch.Generator().manual_seed(0)
    n, t, vocab = 2000, 50, 1000
    ids = torch.randint(2, vocab, (n, t), generator=g)
    lengths = torch.randint(1, t + 1, (n,), generator=g)
    real = torch.arange(t)[None, :] < lengths[:, None]
    ids[~real] = 0
    masked, labels = mask_tokens(ids, lengths, 0.15, vocab, g)
    chosen = labels != IGNORE
    assert not (chosen & ~real).any()                      # padding is never chosen
    assert torch.equal(labels[chosen], ids[chosen])        # labels: the original tokens
    assert torch.equal(masked[~chosen], ids[~chosen])      # the rest is untouched
    share = chosen.sum().item() / real.sum().item()
    assert 0.14 < share < 0.16
    c = chosen.sum().item()
    as_mask = (masked[chosen] == MASK_ID).sum().item() / c
    kept = (masked[chosen] == ids[chosen]).sum().item() / c
    swapped = 1 - as_mask - kept
    assert 0.78 < as_mask < 0.82 and 0.085 < kept < 0.115 and 0.085 < swapped < 0.115  # ~4σ
    assert masked[chosen & (masked != MASK_ID)].min() >= 2  # never <pad> or <unk>


def test_nt_xent_matches_a_hand_computation() -> None:
    import math

    import torch

    from layerwise.pretrain.objectives import nt_xent

    z = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.8, 0.6], [0.0, 2.0]])  # views: (0,2), (1,3)
    tau = 0.5
    unit = [[v / math.hypot(*r) for v in r] for r in z.tolist()]

    def cos(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    total = 0.0
    for i in range(4):
        pos = (i + 2) % 4
        denom = sum(math.exp(cos(unit[i], unit[k]) / tau) for k in range(4) if k != i)
        total += -math.log(math.exp(cos(unit[i], unit[pos]) / tau) / denom)
    assert nt_xent(z, tau).item() == pytest.approx(total / 4, rel=1e-6)
    # the two views agreeing lowers the loss; swapping the pairs raises it
    assert nt_xent(torch.cat([z[:2], z[:2]]), tau) < nt_xent(z, tau) < \
        nt_xent(torch.cat([z[:2], z[[1, 0]]]), tau)


# ------------------------------------------------------------------ pretrain → init_from


def _simclr(tmp_path: Any, **train: Any) -> dict[str, Any]:
    cfg = _digits(labelled=60, unlabelled=True)
    cfg["inputs"][0]["augment"] = {"shift": 2, "noise": 0.3}
    cfg["pretrain"] = {"objective": "contrastive", "projection_dim": 8}
    cfg["train"].update({"epochs": 2, "batch_size": 64, **train})
    return cfg


@pytest.fixture(scope="module")
def simclr_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from layerwise.pretrain.runner import pretrain

    out = tmp_path_factory.mktemp("simclr")
    return pretrain(_simclr(out), output=out / "pre")


def test_pretrain_writes_an_encoder_artifact_without_the_head(simclr_run: Any) -> None:
    import json

    from layerwise.files import load_safetensors

    meta = json.loads((simclr_run.model_dir / "layerwise.json").read_text())
    assert meta["kind"] == "encoder" and meta["objective"] == "contrastive"
    assert [s["name"] for s in meta["schema"]["inputs"]] == ["image"]
    names = load_safetensors(simclr_run.model_dir / "model.safetensors")
    assert names and all(k.startswith("backbone.") for k in names)  # projection dropped
    assert simclr_run.metrics["pretrain"]["rows"] == len(build(parse(_digits(
        labelled=60, unlabelled=True))).train)
    h = simclr_run.history
    assert h[-1]["train_loss"] < h[0]["train_loss"]  # the views learn to agree


def test_init_from_copies_the_encoder_and_changes_the_starting_weights(simclr_run: Any
                                                                       ) -> None:
    import torch

    from layerwise.api import build_for
    from layerwise.files import load_safetensors

    saved = load_safetensors(simclr_run.model_dir / "model.safetensors")
    cfg = parse(_digits(labelled=60))
    scratch = build_for(cfg, build(cfg))
    cfg.model.init_from = str(simclr_run.model_dir)
    ds = build(cfg)
    warm = build_for(cfg, ds)
    assert ds.info["init_from"]["copied"] == len(saved)
    pre = simclr_run.config  # the image statistics are the pre-training's, not refitted
    pre_stats = build(pre).schema.images[0]
    assert (ds.schema.images[0].mean, ds.schema.images[0].std) == (pre_stats.mean,
                                                                   pre_stats.std)
    assert ds.schema.images[0].mean != build(parse(_digits(labelled=60))).schema.images[0].mean
    sd, sd0 = warm.state_dict(), scratch.state_dict()
    for k, v in saved.items():
        assert torch.equal(sd[k], v)
    conv = "backbone.stages.0.convs.0.weight"
    assert not torch.equal(sd[conv], sd0[conv])  # the starting weights changed
    heads = [k for k in sd if k.startswith("heads.")]
    assert heads and all(torch.equal(sd[k], sd0[k]) for k in heads)  # heads start fresh


def test_init_lr_gives_the_copied_tensors_their_own_rate(simclr_run: Any) -> None:
    from layerwise.api import build_for
    from layerwise.files import load_safetensors

    saved = load_safetensors(simclr_run.model_dir / "model.safetensors")
    cfg = parse(_digits(labelled=60))
    cfg.model.init_from, cfg.model.init_lr = str(simclr_run.model_dir), 0.1
    model = build_for(cfg, build(cfg))
    fresh, warm = model.param_groups(1e-3)
    params = dict(model.named_parameters())
    assert fresh["lr"] == 1e-3 and warm["lr"] == pytest.approx(1e-4)
    assert {id(p) for p in warm["params"]} == {id(params[k]) for k in saved if k in params}
    assert {id(p) for p in fresh["params"]} == {id(p) for k, p in params.items()
                                                if k not in saved}  # the heads
    plain = parse(_digits(labelled=60))  # the default: one rate, no groups
    plain.model.init_from = str(simclr_run.model_dir)
    assert build_for(plain, build(plain)).param_groups(1e-3) is None


def test_init_frozen_epochs_keep_the_encoder_fixed_then_train_it(simclr_run: Any,
                                                                 tmp_path: Any) -> None:
    import torch

    from layerwise.api import build_for, train
    from layerwise.files import load_safetensors

    saved = load_safetensors(simclr_run.model_dir / "model.safetensors")
    cfg = _digits(labelled=60)
    cfg["model"].update(init_from=str(simclr_run.model_dir), init_frozen_epochs=1,
                        init_lr=0.5)
    cfg["train"].update(epochs=1, precision="fp32")
    first = load_safetensors(train(cfg, output=tmp_path / "one").model_dir
                             / "model.safetensors")
    start = build_for(parse(cfg), build(parse(cfg)))
    weights = [k for k, _ in start.named_parameters() if k in saved]  # not the BN buffers
    assert weights and all(torch.equal(first[k], saved[k]) for k in weights)  # fixed
    heads = [k for k, _ in start.named_parameters() if k.startswith("heads.")]
    assert heads and not any(torch.equal(first[k], start.state_dict()[k]) for k in heads)
    cfg["train"]["epochs"] = 2  # epoch 2 trains the copied tensors too
    second = load_safetensors(train(cfg, output=tmp_path / "two").model_dir
                              / "model.safetensors")
    assert not any(torch.equal(second[k], saved[k]) for k in weights)


def test_a_run_with_frozen_epochs_resumes_exactly(simclr_run: Any, tmp_path: Any) -> None:
    from layerwise.api import train
    from tests.model_helpers import Crash
    from tests.test_training_exact import assert_identical, weights

    cfg = _digits(labelled=60)  # 2 steps per epoch; a checkpoint at step 3 (epoch 2)
    cfg["model"].update(init_from=str(simclr_run.model_dir), init_frozen_epochs=1,
                        init_lr=0.3)
    cfg["train"].update(epochs=3, precision="fp32")
    ref = train(cfg, output=tmp_path / "ref")
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg, output=tmp_path / "run", callbacks=[Crash(5)])
    resumed = train(cfg, output=tmp_path / "run", resume=True)
    assert_identical(weights(ref.model_dir), weights(resumed.model_dir))


def test_init_from_refuses_other_shapes_naming_the_tensor(simclr_run: Any) -> None:
    from layerwise.api import build_for

    cfg = _digits(labelled=60)
    cfg["model"]["blocks"][0]["filters"] = 12
    cfg["model"]["init_from"] = str(simclr_run.model_dir)
    c = parse(cfg)
    with pytest.raises(ConfigError, match=r"tensor backbone\.stages\.0\.convs\.0\.weight has "
                       r"shape \[8, 1, 3, 3\] in .* but \[12, 1, 3, 3\] in this model"):
        build_for(c, build(c))


def test_init_from_refuses_an_artifact_where_nothing_matches(simclr_run: Any,
                                                             tiny_mlp: dict[str, Any]) -> None:
    from layerwise.api import build_for

    tiny_mlp["model"]["init_from"] = str(simclr_run.model_dir)
    c = parse(tiny_mlp)
    with pytest.raises(ConfigError, match="no tensor of .* matches this model"):
        build_for(c, build(c))


def test_init_from_a_missing_folder_is_a_clear_error(tmp_path: Any) -> None:
    cfg = _digits()
    cfg["model"]["init_from"] = str(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="model.init_from: .*nowhere is not a model folder"):
        build(parse(cfg))


def test_a_pretrain_crash_then_resume_is_exact(tmp_path: Any) -> None:
    from layerwise.files import load_safetensors
    from layerwise.pretrain.runner import pretrain
    from tests.model_helpers import Crash

    cfg = _simclr(tmp_path, epochs=3, checkpoint_every=2)
    ref = pretrain(cfg, output=tmp_path / "ref")
    with pytest.raises(RuntimeError, match="simulated crash"):
        pretrain(cfg, output=tmp_path / "run", callbacks=[Crash(5)])
    resumed = pretrain(cfg, output=tmp_path / "run", resume=True)
    a = load_safetensors(ref.model_dir / "model.safetensors")
    b = load_safetensors(resumed.model_dir / "model.safetensors")
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
    assert [h["train_loss"] for h in ref.history] == [h["train_loss"] for h in resumed.history]


# ------------------------------------------------------------------ text: masked tokens


def _texts(tmp_path: Any, n: int = 240) -> Any:
    import csv
    import random

    rnd = random.Random(0)
    good, bad, filler = ["great", "lovely", "happy"], ["awful", "sad", "bad"], \
        ["the", "a", "day", "film", "was", "is", "very", "so", "and", "it", "this", "food"]
    path = tmp_path / "texts.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "mood"])
        for i in range(n):
            mood = "pos" if i % 2 else "neg"
            words = rnd.choices(filler, k=rnd.randint(3, 9)) + [rnd.choice(
                good if mood == "pos" else bad)]
            rnd.shuffle(words)
            w.writerow([" ".join(words), mood])
    return path


def _mlm(path: Any, **split: Any) -> dict[str, Any]:
    return {"name": "mlm", "seed": 0,
            "data": {"path": str(path), "split": {"labelled": 40, **split}},
            "inputs": [{"name": "text", "type": "text", "max_length": 12}],
            "outputs": [{"name": "mood", "type": "category"}],
            "model": {"family": "transformer", "d_model": 16, "heads": 2, "layers": 1,
                      "mlp_ratio": 2},
            "train": {"epochs": 2, "batch_size": 32, "progress": "quiet",
                      "checkpoint_every": 5}}


def test_masked_token_pretraining_and_the_tokenizer_travels(tmp_path: Any) -> None:
    import torch

    from layerwise.api import build_for
    from layerwise.files import load_safetensors
    from layerwise.pretrain.runner import pretrain

    path = _texts(tmp_path)
    run = pretrain(_mlm(path, unlabelled=True), output=tmp_path / "mlm")
    assert run.metrics["pretrain"]["objective"] == "masked_tokens"
    saved = load_safetensors(run.model_dir / "model.safetensors")
    assert "backbone.encoders.text.tokens.weight" in saved
    assert not any("head" in k or k.endswith("bias") and "backbone" not in k for k in saved)
    # fine-tuning on the 40 labelled rows reuses the pre-training's tokenizer, whose
    # vocabulary was fitted on the 128 unlabelled rows, not on its own 40
    alone = build(parse(_mlm(path)))
    cfg = _mlm(path)
    cfg["model"]["init_from"] = str(run.model_dir)
    c = parse(cfg)
    ds = build(c)
    pre_schema = __import__("json").loads((run.model_dir / "layerwise.json").read_text())
    vocab = pre_schema["schema"]["inputs"][0]["state"]["vocab"]
    assert ds.schema.texts[0].vocab == vocab != alone.schema.texts[0].vocab
    model = build_for(c, ds)
    assert torch.equal(model.state_dict()["backbone.encoders.text.tokens.weight"],
                       saved["backbone.encoders.text.tokens.weight"])
    # another tokenizer would give the ids other meanings: refused, naming the field
    cfg["inputs"][0].update(tokenizer="char", max_length=80)
    with pytest.raises(ConfigError, match=r"inputs\.text\.tokenizer: the pre-trained encoder"):
        build(parse(cfg))


def test_pretrain_refuses_a_family_the_objective_cannot_train(tmp_path: Any,
                                                              tiny_mlp: dict[str, Any]) -> None:
    from layerwise.pretrain.runner import pretrain

    with pytest.raises(ConfigError, match="no objective fits"):
        pretrain(tiny_mlp, output=tmp_path / "x")
    cfg = _mlm(_texts(tmp_path), unlabelled=True)
    cfg["pretrain"] = {"objective": "contrastive"}
    with pytest.raises(ConfigError, match="contrastive pre-trains model family cnn"):
        pretrain(cfg, output=tmp_path / "y")
    img = _simclr(tmp_path)
    img["inputs"][0]["augment"] = {}
    with pytest.raises(ConfigError, match=r"set inputs\.image\.augment"):
        pretrain(img, output=tmp_path / "z")
    assert not (tmp_path / "z").exists()  # nothing written before the checks pass


def test_the_pretrain_command(tmp_path: Any) -> None:
    import yaml
    from typer.testing import CliRunner

    from layerwise.cli import app

    cfg = tmp_path / "mlm.yaml"
    cfg.write_text(yaml.safe_dump(_mlm(_texts(tmp_path), unlabelled=True)))
    out = CliRunner().invoke(app, ["pretrain", str(cfg), "--output", str(tmp_path / "r"),
                                   "-q"])
    assert out.exit_code == 0, out.output
    assert "masked_tokens pre-training on 128 rows" in out.output
    assert f"model.init_from: {tmp_path / 'r' / 'model'}" in out.output


def test_init_from_a_registry_alias(simclr_run: Any, tmp_path: Any,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from layerwise.api import build_for
    from layerwise.tracking.registry import register, set_alias
    from layerwise.tracking.store import open_store

    monkeypatch.setenv("LAYERWISE_TRACKING_URI", f"sqlite:///{tmp_path / 'lw.db'}")
    store = open_store()
    set_alias(store, "digits_simclr", "best",
              register(store, str(simclr_run.model_dir), "digits_simclr"))
    cfg = _digits(labelled=60)
    cfg["model"]["init_from"] = "models:/digits_simclr@best"
    c = parse(cfg)
    ds = build(c)
    build_for(c, ds)
    assert ds.info["init_from"]["path"] == str(simclr_run.model_dir.absolute())


def test_an_encoder_artifact_is_not_a_model_to_predict_with(simclr_run: Any) -> None:
    from layerwise.artifact import load
    from layerwise.errors import ArtifactError

    with pytest.raises(ArtifactError, match="holds a pre-trained encoder .* model.init_from"):
        load(simclr_run.model_dir)


def test_init_from_is_found_beside_the_config_file(simclr_run: Any, tmp_path: Any) -> None:
    import shutil

    import yaml

    folder = tmp_path / "configs"
    shutil.copytree(simclr_run.model_dir, folder / "enc")
    cfg = _digits(labelled=60)
    cfg["model"]["init_from"] = "enc"  # relative: the config's folder, then the current one
    (folder / "ft.yaml").write_text(yaml.safe_dump(cfg))
    assert parse(folder / "ft.yaml").model.init_from == str(folder / "enc")


def test_init_lr_is_refused_by_a_family_with_its_own_rates() -> None:
    from torch import nn

    from layerwise.models.model import LayerwiseModel

    class ByDepth(nn.Linear):  # a backbone that sets its rates itself (as pretrained)
        def param_groups(self, lr: float) -> list[dict[str, Any]]:
            return [{"params": list(self.parameters()), "lr": lr}]

    model = LayerwiseModel(ByDepth(2, 2), [])
    model.warm_settings(["backbone.weight"], 1.0, 0)  # the defaults: nothing to refuse
    with pytest.raises(ConfigError, match="sets its own rates by depth"):
        model.warm_settings(["backbone.weight"], 0.5, 0)

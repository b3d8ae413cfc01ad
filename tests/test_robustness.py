"""Adversarial examples (FGSM, PGD), corruption robustness, ``layerwise attack`` and
adversarial training as a Trainer step strategy."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import torch

import layerwise as lw
from layerwise.cli import main
from layerwise.errors import ConfigError
from layerwise.explain.robustness import attack_accuracy, corrupt, labelled
from layerwise.training.adversarial import AdversarialStep, Box, attack, boxes_for
from layerwise.training.steps import PlainStep

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def cnn(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.conftest import TINY_CNN

    cfg = copy.deepcopy(TINY_CNN)
    cfg["data"]["limit"] = 600
    cfg["inputs"][0].pop("augment")
    cfg["model"]["dropout"] = 0.0
    cfg["train"].update(epochs=15, batch_size=16, optimizer={"lr": 0.01})  # test acc ~0.6
    out = tmp_path_factory.mktemp("robust") / "run"
    lw.train(cfg, output=out)
    return out


@pytest.mark.parametrize("method", ["fgsm", "pgd"])
def test_attacks_stay_in_the_ball_and_the_pixel_range(method: str) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    x = torch.rand(8, 1, 4, 4)
    y = torch.randint(0, 3, (8,))
    box = Box(scale=1.0, low=torch.tensor(0.0), high=torch.tensor(1.0))

    def loss(v: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(model(v), y)

    adv = attack(loss, x, eps=0.1, method=method, steps=5, boxes={"": box})
    assert (adv - x).abs().max() <= 0.1 + 1e-6
    assert adv.min() >= 0.0 and adv.max() <= 1.0
    assert loss(adv) > loss(x)
    assert model[1].weight.grad is None  # gradients reach the inputs only


def test_integer_inputs_are_refused() -> None:
    with pytest.raises(ConfigError, match="image or numeric"):
        attack(lambda v: v["ids"].sum().float(), {"ids": torch.ones(2, 3, dtype=torch.long)},
               eps=0.1)
    with pytest.raises(ConfigError, match="fgsm or pgd"):
        attack(lambda v: v.sum(), torch.ones(2), eps=0.1, method="cw")


def test_pgd_lowers_accuracy_more_than_fgsm_and_eps_orders_it(cnn: Path) -> None:
    model = lw.load(cnn / "model")
    data = labelled(model)
    pgd = attack_accuracy(model, data, method="pgd", eps=[0.02, 0.1], steps=10)
    fgsm = attack_accuracy(model, data, method="fgsm", eps=[0.1])
    clean = pgd["clean_accuracy"]
    assert clean > 0.4
    assert pgd["accuracy"]["0.1"] <= pgd["accuracy"]["0.02"] <= clean
    assert pgd["accuracy"]["0.1"] <= fgsm["accuracy"]["0.1"] + 0.02
    assert pgd["accuracy"]["0.1"] < clean - 0.1


def test_corruptions_keep_pixels_valid(cnn: Path) -> None:
    model = lw.load(cnn / "model")
    enc = model.schema.images[0]
    x = labelled(model).inputs["image"][:4]
    g = torch.Generator().manual_seed(0)
    for kind, level in (("noise", 0.2), ("blur", 2.0), ("brightness", 0.3)):
        out = corrupt(x, kind, level, enc, g)
        pixels = out * torch.tensor(enc.std).view(1, -1, 1, 1) + \
            torch.tensor(enc.mean).view(1, -1, 1, 1)
        assert out.shape == x.shape and pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5
        assert not torch.allclose(out, x)
    with pytest.raises(ConfigError, match="corruption must be"):
        corrupt(x, "fog", 1.0, enc, g)


def test_attack_cli_writes_json_and_pictures(cnn: Path, tmp_path: Path) -> None:
    out = tmp_path / "attack"
    assert main(["attack", str(cnn / "model"), "--method", "pgd", "--eps", "0.05", "--eps",
                 "0.1", "--steps", "3", "--corruptions", "-o", str(out)]) == 0
    doc = json.loads((out / "attack.json").read_text())
    assert set(doc["accuracy"]) == {"0.05", "0.1"}
    assert set(doc["corruptions"]) == {"noise", "blur", "brightness"}
    assert (out / "examples.png").stat().st_size > 1000
    assert (out / "accuracy_vs_eps.png").stat().st_size > 1000
    assert main(["attack", str(cnn / "model"), "--method", "cw"]) == 2


def test_adversarial_training_is_a_step_strategy(tmp_path: Path) -> None:
    """train.adversarial selects AdversarialStep; without it the plain step runs."""
    from tests.conftest import TINY_MLP

    plain = lw.train(copy.deepcopy(TINY_MLP), output=tmp_path / "plain")
    cfg = copy.deepcopy(TINY_MLP)
    cfg["train"]["adversarial"] = {"method": "pgd", "eps": 0.3, "steps": 2}
    seen: list[type] = []

    class Spy(lw.Callback):
        def on_fit_start(self, trainer: Any, model: Any) -> None:
            seen.append(type(trainer.strategy))

    lw.train(copy.deepcopy(TINY_MLP), output=tmp_path / "p2", callbacks=[Spy()])
    adv = lw.train(cfg, output=tmp_path / "adv", callbacks=[Spy()])
    assert seen == [PlainStep, AdversarialStep]
    assert adv.metrics["test"]["accuracy"] > 0.3
    # the same seed gives the same adversarial run
    again = lw.train(cfg, output=tmp_path / "adv2")
    assert again.history[-1]["train_loss"] == adv.history[-1]["train_loss"]
    assert adv.history[-1]["train_loss"] != plain.history[-1]["train_loss"]


def test_adversarial_training_raises_robust_accuracy(tmp_path: Path) -> None:
    """On a tabular task, PGD accuracy (eps 0.5 in standardised units) of an
    adversarially trained model beats that of the same model trained plainly."""
    from tests.test_doctor import config, write_rows

    cfg = config(write_rows(tmp_path / "rows.csv", 500), epochs=15)
    adv_cfg = copy.deepcopy(cfg)
    adv_cfg["train"]["adversarial"] = {"method": "pgd", "eps": 0.5, "steps": 3}
    scores = []
    for name, c in (("plain", cfg), ("adv", adv_cfg)):
        model = lw.load(lw.train(c, output=tmp_path / name).model_dir)
        scores.append(attack_accuracy(model, labelled(model), method="pgd", eps=[0.5],
                                      steps=10)["accuracy"]["0.5"])
    assert scores[1] > scores[0] + 0.05, scores


def test_boxes_map_pixels_to_model_units(cnn: Path) -> None:
    model = lw.load(cnn / "model")
    enc = model.schema.images[0]
    box = boxes_for(model.schema)["image"]
    assert float(box.low.flatten()[0]) == pytest.approx(-enc.mean[0] / enc.std[0])
    assert float(box.high.flatten()[0]) == pytest.approx((1 - enc.mean[0]) / enc.std[0])

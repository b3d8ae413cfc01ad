"""The config's ``card:`` section: the model card's own words, left out of the run's
identity (its hash and the resume comparison)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

import layerwise as lw
from layerwise.config import config_hash, parse
from layerwise.errors import ConfigError
from layerwise.tracking.card import DEFAULT_USE, card_fields
from tests.conftest import TINY_MLP


def test_card_fields_in_order_with_the_default_use() -> None:
    assert card_fields({}) == [("Intended use", DEFAULT_USE)]
    got = card_fields({"card": {"limitations": "small data", "description": "a demo",
                                "owners": ["a", "b"]}})
    assert got == [("Description", "a demo"), ("Owners", "a, b"),
                   ("Limitations", "small data"), ("Intended use", DEFAULT_USE)]


def test_an_unknown_card_field_is_refused() -> None:
    with pytest.raises(ConfigError, match="card"):
        parse({**TINY_MLP, "card": {"intended": "typo"}})


def test_the_card_is_not_part_of_the_config_hash() -> None:
    a = parse(TINY_MLP)
    b = parse({**TINY_MLP, "card": {"intended_use": "teaching", "license": "MIT"}})
    assert config_hash(a) == config_hash(b)
    other = copy.deepcopy(TINY_MLP)
    other["seed"] = 7
    assert config_hash(parse(other)) != config_hash(a)


def test_a_run_resumes_after_its_card_was_edited(tmp_path: Path) -> None:
    cfg = copy.deepcopy(TINY_MLP)
    cfg["train"]["epochs"] = 1
    lw.train(cfg, output=tmp_path / "r")
    cfg["train"]["epochs"] = 2
    cfg["card"] = {"limitations": "written after the first epoch"}
    run = lw.train(cfg, output=tmp_path / "r", resume=True)
    card = (run.dir / "model" / "card.md").read_text(encoding="utf-8")
    assert "- Limitations: written after the first epoch" in card

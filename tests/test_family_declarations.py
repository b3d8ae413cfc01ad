"""One contract over every model family's declarations (config/base.py ``_Family``): what
it reads and predicts, whether it is generative, its train defaults; and error messages
that name keys as the user wrote them, whatever union the key sits in.

Families, feature types and agents come from the config unions, never from a list here;
each needs an example config in examples/ (which the parametrisation finds)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from layerwise.config import (
    FAMILY_CONFIGS,
    GENERATIVE_FAMILIES,
    AgentConfig,
    InputFeature,
    MLPConfig,
    OutputFeature,
    TrainConfig,
    parse,
)
from layerwise.config.base import tags, union_members
from layerwise.errors import ConfigError
from layerwise.models import build_model, get_model, model_names

EXAMPLES = {p.name: yaml.safe_load(p.read_text(encoding="utf-8")) for p in
            sorted((Path(__file__).parent.parent / "examples").glob("*.yaml"))}
SUPERVISED = {n: c for n, c in EXAMPLES.items() if "env" not in c and "interactions" not in c}
RL = {n: c for n, c in EXAMPLES.items() if "env" in c}
INPUT_TYPES = [t for m in union_members(InputFeature) for t in tags(m, "type")]
OUTPUT_TYPES = [t for m in union_members(OutputFeature) for t in tags(m, "type")]
AGENTS = [t for m in union_members(AgentConfig) for t in tags(m, "algo")]


def example(where: str, tag: str) -> dict[str, Any]:
    """A copy of the first example with a model family / input / output of type ``tag``
    (that feature moved to index 0)."""
    for cfg in SUPERVISED.values():
        if where == "model" and cfg["model"]["family"] == tag:
            return copy.deepcopy(cfg)
        kinds = [f["type"] for f in cfg.get(where, [])] if where != "model" else []
        if tag in kinds:
            cfg = copy.deepcopy(cfg)
            cfg[where].insert(0, cfg[where].pop(kinds.index(tag)))
            return cfg
    raise AssertionError(f"no example in examples/ has a {where} of type {tag!r}; add one")


def message(raw: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse(raw)
    return str(info.value)


def test_the_unions_are_found() -> None:
    # guards the parametrisations below against walking an empty union
    assert {"mlp", "rnn", "diffusion", "seq2seq"} <= set(FAMILY_CONFIGS)
    assert {"numeric", "text", "timeseries"} <= set(INPUT_TYPES)
    assert {"category", "forecast", "sequence"} <= set(OUTPUT_TYPES)
    assert {"dqn", "ppo"} <= set(AGENTS)


# ---------------------------------------------------------------------------- error locations


@pytest.mark.parametrize("family", sorted(FAMILY_CONFIGS))
def test_an_unknown_model_key_is_named_without_the_family_tag(family: str) -> None:
    raw = example("model", family)
    raw["model"]["timestepz"] = 1
    msg = message(raw)
    assert "unknown key 'model.timestepz'" in msg and f"model.{family}." not in msg


@pytest.mark.parametrize("family", sorted(FAMILY_CONFIGS))
def test_an_unknown_network_key_is_named_without_the_family_tag(family: str) -> None:
    raw = copy.deepcopy(next(iter(RL.values())))
    raw["network"] = dict(example("model", family)["model"], timestepz=1)
    msg = message(raw)
    assert "unknown key 'network.timestepz'" in msg and f"network.{family}." not in msg


@pytest.mark.parametrize(("section", "kind"), [("inputs", k) for k in INPUT_TYPES] +
                         [("outputs", k) for k in OUTPUT_TYPES])
def test_an_unknown_feature_key_is_named_without_the_type_tag(section: str, kind: str) -> None:
    raw = example(section, kind)
    raw[section][0]["foo"] = 1
    msg = message(raw)
    assert f"unknown key '{section}.0.foo'" in msg and f"{section}.0.{kind}." not in msg


@pytest.mark.parametrize("algo", AGENTS)
def test_an_unknown_agent_key_is_named_without_the_algo_tag(algo: str) -> None:
    raw = copy.deepcopy(next(c for c in RL.values() if c["agent"]["algo"] == algo))
    raw["agent"]["foo"] = 1
    msg = message(raw)
    assert "unknown key 'agent.foo'" in msg and f"agent.{algo}." not in msg


def test_a_bad_value_is_named_without_the_tag_too() -> None:
    raw = example("model", "diffusion")
    raw["model"]["timesteps"] = -3
    assert "model.timesteps: Input should be greater than 1" in message(raw)


# ---------------------------------------------------------------------------- declarations


def test_every_family_config_names_a_registered_family_built_from_it() -> None:
    assert set(FAMILY_CONFIGS) <= set(model_names())
    for tag, config in FAMILY_CONFIGS.items():
        assert get_model(tag).config_class is config


def test_the_generative_set_is_what_the_declarations_say() -> None:
    declared = {tag for tag, c in FAMILY_CONFIGS.items() if c.generative}
    assert set(GENERATIVE_FAMILIES) == declared
    assert {n for n in FAMILY_CONFIGS if getattr(get_model(n), "generative", False)} == declared


@pytest.mark.parametrize("family", sorted(FAMILY_CONFIGS))
def test_declarations_name_real_kinds_and_train_fields(family: str) -> None:
    config = FAMILY_CONFIGS[family]
    assert config.input_kinds and set(config.input_kinds) <= set(INPUT_TYPES)
    assert set(config.output_kinds) <= set(OUTPUT_TYPES)
    assert config.generative == (not config.output_kinds)  # a generative family has no heads
    for key, (value, reason) in config.train_defaults.items():
        assert key in TrainConfig.model_fields and reason
        assert getattr(TrainConfig(**{key: value}), key) == value


@pytest.mark.parametrize("name", sorted(SUPERVISED))
def test_every_example_stays_within_its_family_declarations(name: str) -> None:
    cfg = parse(SUPERVISED[name])
    assert {f.type for f in cfg.inputs} <= set(cfg.model.input_kinds)
    assert all(cfg.model.accepts_output(o.type) for o in cfg.outputs)


@pytest.mark.parametrize("family", sorted(FAMILY_CONFIGS))
def test_family_defaults_apply_what_the_family_declares(family: str) -> None:
    from layerwise.api import family_defaults

    cfg = parse(example("model", family))
    declared = FAMILY_CONFIGS[family].train_defaults
    unset = {k for k in declared if k not in cfg.train.model_fields_set}
    done = family_defaults(cfg)
    assert set(done) == {f"train.{k}" for k in unset}
    assert all(getattr(cfg.train, k) == declared[k][0] for k in unset)


def test_recurrent_networks_clip_gradients_by_default() -> None:
    from layerwise.api import family_defaults

    raw = example("model", "rnn")
    raw.setdefault("train", {}).pop("grad_clip", None)
    cfg = parse(raw)
    assert family_defaults(cfg) == {"train.grad_clip": "1.0: the default for recurrent "
                                                       "models (exploding gradients)"}
    assert cfg.train.grad_clip == 1.0


def test_the_validators_read_the_declarations(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = example("model", "mlp")
    kinds = [o["type"] for o in raw["outputs"]]
    monkeypatch.setattr(MLPConfig, "output_kinds",
                        tuple(k for k in MLPConfig.output_kinds if k != kinds[0]))
    assert f"model family mlp cannot predict a {kinds[0]} output" in message(raw)


def test_build_model_reads_the_declarations(monkeypatch: pytest.MonkeyPatch) -> None:
    from layerwise.config import CategoryOutput

    cfg = parse(example("model", "mlp")).model
    desc = {"numeric_dim": 0, "category_sizes": [], "category_dims": [],
            "images": {"image": (1, 4, 4)}, "outputs": {"y": ("category", 2)}}
    build_model(cfg, [CategoryOutput(name="y", type="category")], desc)
    monkeypatch.setattr(MLPConfig, "input_kinds",
                        tuple(k for k in MLPConfig.input_kinds if k != "image"))
    with pytest.raises(ConfigError, match=r"model mlp cannot read image inputs \(image\); "
                                          "use family cnn or pretrained$"):
        build_model(cfg, [CategoryOutput(name="y", type="category")], desc)

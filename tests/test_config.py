"""Config: validated once, unknown keys named with a suggestion, overrides, JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from layerwise.config import Config, apply_overrides, json_schema, parse
from layerwise.errors import ConfigError
from tests.rl_helpers import CORRIDOR_DQN, config

EXAMPLES = sorted(Path(__file__).parent.parent.joinpath("examples").glob("*.yaml"))


def test_a_dict_a_yaml_file_and_an_object_parse_alike(tiny_mlp: dict[str, Any],
                                                       tmp_path: Path) -> None:
    import yaml

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny_mlp))
    a, b = parse(tiny_mlp), parse(path)
    assert a == b
    assert parse(a) is a


@pytest.mark.parametrize("mutate, key, suggestion", [
    (lambda c: c.update(trian={}), "trian", "train"),
    (lambda c: c["train"].update(epoch=3), "train.epoch", "epochs"),
    (lambda c: c["train"]["optimizer"].update(learning_rate=1) if "optimizer" in c["train"]
     else c["train"].update(optimizer={"lr": 0.1, "wieght_decay": 0.1}),
     "train.optimizer.wieght_decay", "weight_decay"),
    (lambda c: c["inputs"][0].update(normalise="none"), "inputs.0.normalise", "normalize"),
    (lambda c: c["model"].update(hiden=[3]), "model.hiden", "hidden"),
])
def test_unknown_keys_are_named_with_the_closest_valid_one(
        tiny_mlp: dict[str, Any], mutate: Any, key: str, suggestion: str) -> None:
    mutate(tiny_mlp)
    with pytest.raises(ConfigError) as info:
        parse(tiny_mlp)
    assert type(info.value) is ConfigError
    msg = str(info.value)
    assert f"unknown key {key!r}" in msg and f"did you mean {suggestion!r}" in msg


def test_bad_values_name_field_expectation_and_value(tiny_mlp: dict[str, Any]) -> None:
    tiny_mlp["train"]["optimizer"] = {"lr": -1}
    with pytest.raises(ConfigError, match=r"train\.optimizer\.lr.*greater than 0.*got -1"):
        parse(tiny_mlp)


def test_unknown_family_and_feature_type_list_the_valid_ones(tiny_mlp: dict[str, Any]) -> None:
    tiny_mlp["model"]["family"] = "transformerz"
    with pytest.raises(ConfigError, match="model.family must be one of 'mlp', 'cnn'"):
        parse(tiny_mlp)


def test_data_needs_exactly_one_source(tiny_mlp: dict[str, Any]) -> None:
    tiny_mlp["data"] = {"dataset": "wine", "path": "x.csv"}
    with pytest.raises(ConfigError, match="exactly one of 'dataset'"):
        parse(tiny_mlp)


def test_duplicate_feature_names_are_rejected(tiny_mlp: dict[str, Any]) -> None:
    tiny_mlp["inputs"].append(dict(tiny_mlp["inputs"][0]))
    with pytest.raises(ConfigError, match="unique"):
        parse(tiny_mlp)


def test_overrides_set_nested_values_and_list_items(tiny_mlp: dict[str, Any]) -> None:
    cfg = parse(tiny_mlp, ["train.epochs=7", "train.optimizer.lr=0.5",
                           "inputs.0.normalize=minmax", "model.hidden=[4, 2]"])
    assert cfg.train.epochs == 7 and cfg.train.optimizer.lr == 0.5
    assert cfg.inputs[0].normalize == "minmax" and cfg.model.hidden == [4, 2]
    with pytest.raises(ConfigError, match="key.path=value"):
        apply_overrides({}, ["novalue"])
    with pytest.raises(ConfigError, match="not an index"):
        parse(tiny_mlp, ["inputs.9.type=numeric"])


def test_run_seed_flows_into_train_unless_set(tiny_mlp: dict[str, Any]) -> None:
    tiny_mlp["seed"] = 42
    assert parse(tiny_mlp).train.seed == 42
    tiny_mlp["train"]["seed"] = 3
    assert parse(tiny_mlp).train.seed == 3


def test_yaml_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        parse(bad)
    with pytest.raises(ConfigError, match="not found"):
        parse(tmp_path / "missing.yaml")


def test_a_yaml_error_names_the_file_line_and_column(tmp_path: Path) -> None:
    # regression: the message said in "<unicode string>" (PyYAML's name for a string)
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: x\ndata:\n  dataset: wine\n  split: [0.1, 0.2\nmodel: {}\n")
    with pytest.raises(ConfigError) as info:
        parse(bad)
    msg = str(info.value)
    assert "<unicode string>" not in msg
    assert msg.startswith(f"{bad}, line 5, column 6: not valid YAML: ")
    assert "starts at line 4, column 10" in msg  # where the unclosed list began
    assert "model: {}" in msg  # the offending line, with a caret under the column


def test_a_yaml_error_without_a_position_still_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "control.yaml"
    bad.write_text("name: \x07\n")
    with pytest.raises(ConfigError) as info:
        parse(bad)
    assert str(bad) in str(info.value) and "<unicode string>" not in str(info.value)


WIDTH_LISTS = [  # every width list of every family, in a config that is otherwise valid
    ("mlp", "hidden"), ("cnn", "dense"), ("rnn", "dense"), ("transformer", "dense"),
    ("autoencoder", "hidden"), ("autoencoder", "channels"), ("vae", "hidden"),
    ("vae", "channels"), ("gan", "hidden"), ("diffusion", "channels"),
]


@pytest.mark.parametrize("family, key", WIDTH_LISTS, ids=[f"{f}.{k}" for f, k in WIDTH_LISTS])
@pytest.mark.parametrize("bad", [[0], [8, -1]])
def test_every_width_is_at_least_one(tiny_mlp: dict[str, Any], family: str, key: str,
                                     bad: list[int]) -> None:
    # regression: model.hidden: [0] was accepted and trained a zero-width layer
    if family in ("autoencoder", "vae", "gan", "diffusion"):
        tiny_mlp.pop("outputs")
    tiny_mlp["model"] = {"family": family, key: [4]}
    parse(tiny_mlp)
    tiny_mlp["model"][key] = bad
    with pytest.raises(ConfigError) as info:
        parse(tiny_mlp)
    assert f"model.{key}: every width must be at least 1; got {bad}" in str(info.value)


def test_block_filters_and_agent_networks_need_widths_too(tiny_mlp: dict[str, Any]) -> None:
    tiny_mlp["model"] = {"family": "cnn", "blocks": [{"filters": 0}]}
    with pytest.raises(ConfigError, match=r"model\.blocks\.0\.filters: .*greater than 0"):
        parse(tiny_mlp)
    with pytest.raises(ConfigError, match=r"network\.hidden: every width must be at least 1"):
        parse(config(CORRIDOR_DQN, network={"hidden": [0]}))


def test_the_delimiter_is_one_character(tiny_mlp: dict[str, Any]) -> None:
    tiny_mlp["data"] = {"path": "x.csv", "delimiter": ";;"}
    with pytest.raises(ConfigError, match=r"data\.delimiter: .*at most 1 character"):
        parse(tiny_mlp)
    tiny_mlp["data"]["delimiter"] = ";"
    assert parse(tiny_mlp).data.delimiter == ";"  # type: ignore[union-attr]


def test_json_schema_describes_the_config() -> None:
    schema = json_schema()
    json.dumps(schema)
    assert set(schema["properties"]) == set(Config.model_fields)
    assert schema["additionalProperties"] is False


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_config_is_valid(path: Path) -> None:
    parse(path)


def test_there_are_examples() -> None:
    names = {p.name for p in EXAMPLES}
    assert {"digits_cnn.yaml", "fashion_cnn.yaml", "breast_cancer_mlp.yaml",
            "wine_mlp.yaml", "diabetes_mlp.yaml"} <= names

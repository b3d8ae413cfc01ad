"""Config: validated once, unknown keys named with a suggestion, overrides, JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from layerwise.config import Config, apply_overrides, json_schema, parse
from layerwise.errors import ConfigError

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

"""Parsing: YAML / dict / object → validated config, with errors that name keys."""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from layerwise.config.base import tags, union_members
from layerwise.config.recommend import RecommendConfig
from layerwise.config.rl import RLConfig
from layerwise.config.supervised import Config
from layerwise.errors import ConfigError

# ---------------------------------------------------------------------------- parsing


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML file into a dict, with errors that name the file and line."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not UTF-8 text (byte {e.start}); is this a YAML file?") \
            from None
    except yaml.YAMLError as e:
        raise ConfigError(_yaml_error(p, e)) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level; got "
                          f"{type(data).__name__}")
    return data


def _yaml_error(path: Path, err: yaml.YAMLError) -> str:
    """``file, line L, column C: not valid YAML: problem`` and the line with a caret.

    PyYAML names a string it parsed ``"<unicode string>"`` and counts from 0; the message
    names the file and counts from 1, as an editor does."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None)
    if mark is None or not problem:  # a ReaderError (a control character) has no mark
        return f"{path}: not valid YAML: {str(err).replace('<unicode string>', str(path))}"
    text = f"{path}, line {mark.line + 1}, column {mark.column + 1}: not valid YAML: {problem}"
    context, start = getattr(err, "context", None), getattr(err, "context_mark", None)
    if context:
        text += f" ({context}" + (f" that starts at line {start.line + 1}, column "
                                  f"{start.column + 1}" if start is not None else "") + ")"
    snippet = mark.get_snippet()
    return f"{text}\n{snippet}" if snippet and snippet.strip() else text


def parse(source: Config | RLConfig | RecommendConfig | dict[str, Any] | str | Path,
          overrides: list[str] | None = None) -> Config | RLConfig | RecommendConfig:
    """Validate a config given as a :class:`Config`, a dict or a YAML path.

    A config with an ``env`` key is a reinforcement-learning run and becomes an
    :class:`RLConfig`; any other becomes a :class:`Config`.

    The file paths under ``data`` are expanded (``$VAR``, ``${VAR}``, ``~``) and made
    absolute: a relative one is looked for next to the config file, then in the current
    folder (see :func:`resolve_paths`).
    """
    base: Path | None = None  # the config file's folder; None: only the current folder
    if isinstance(source, Config | RLConfig | RecommendConfig):
        if not overrides:
            if isinstance(source, Config):  # in place, so that `parse(cfg) is cfg`
                _resolve_object(source)
            return source
        raw: dict[str, Any] = source.model_dump(mode="json", exclude_unset=True)
    elif isinstance(source, dict):
        raw = json.loads(json.dumps(source, default=str))  # deep copy, plain types
    else:
        raw = load_yaml(source)
        base = Path(source).parent
    if overrides:
        apply_overrides(raw, overrides)
    looked_in = resolve_paths(raw, base)
    # a recommendation run names its interactions (config/recommend.py)
    root: type[Config] | type[RLConfig] | type[RecommendConfig] = RLConfig if "env" in raw \
        else RecommendConfig if "interactions" in raw else Config
    try:
        cfg = root.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_explain(e, root)) from None
    if isinstance(cfg, Config):
        cfg.data._looked_in = looked_in
    return cfg


# ---------------------------------------------------------------------------- paths

PATH_FIELDS = ("path", "validation_path", "test_path")  # the file fields of `data`
_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+))")  # $NAME or ${NAME}; any other `$` stays


def resolve_paths(raw: dict[str, Any], base: Path | None) -> dict[str, tuple[str, ...]]:
    """Expand and resolve the file fields of ``raw["data"]`` in place.

    ``$VAR`` / ``${VAR}`` and ``~`` are expanded (an unset variable is a ConfigError). An
    absolute path is kept; a relative one becomes the absolute path of the first place it
    exists: ``base`` (the config file's folder), then the current folder. One found nowhere
    stays as written, and is returned (field → the places tried) for the reader's message.
    """
    model = raw.get("model")  # model.init_from: a folder, found the same way (issue 16)
    if isinstance(model, dict) and isinstance(model.get("init_from"), str) \
            and model["init_from"] and not model["init_from"].startswith("models:"):
        model["init_from"] = _resolve(model["init_from"], base, "model.init_from")[0]
    data = raw.get("data")
    looked_in: dict[str, tuple[str, ...]] = {}
    if not isinstance(data, dict):
        return looked_in  # no data section, or a wrong one that validation will report
    for field in PATH_FIELDS:
        value = data.get(field)
        if isinstance(value, str) and value:
            data[field], places = _resolve(value, base, f"data.{field}")
            if places:
                looked_in[field] = places
    return looked_in


def _resolve(value: str, base: Path | None, field: str) -> tuple[str, tuple[str, ...]]:
    """``(path, ())`` when ``value`` is absolute or found; ``(value, places)`` when not."""
    def var(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name not in os.environ:
            raise ConfigError(f"{field}: environment variable ${name} is not set; got "
                              f"{value!r}")
        return os.environ[name]

    try:
        p = Path(_VAR.sub(var, value)).expanduser()
    except RuntimeError as e:  # ~ with no home folder to expand to
        raise ConfigError(f"{field}: cannot expand '~' ({e}); got {value!r}") from None
    if p.is_absolute():
        return str(p), ()
    places = [Path(os.path.abspath(b / p)) for b in ([base] if base else []) + [Path.cwd()]]
    places = list(dict.fromkeys(places))  # a config in the current folder: look once
    found = next((q for q in places if q.exists() or _matches(q)), None)
    return (str(found), ()) if found else (str(p), tuple(str(q) for q in places))


def _matches(p: Path) -> bool:
    """Whether ``p`` is a glob (``shards/*.parquet``) that matches a file."""
    import glob

    return any(c in str(p) for c in "*?[") and bool(glob.glob(str(p)))


def _resolve_object(cfg: Config) -> None:
    """:func:`resolve_paths` for a config given as an object: against the current folder."""
    fields = {f: getattr(cfg.data, f) for f in PATH_FIELDS}
    raw = {"data": dict(fields)}
    cfg.data._looked_in = resolve_paths(raw, None)
    for f, value in raw["data"].items():
        if value != fields[f]:
            setattr(cfg.data, f, value)


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> None:
    """Apply ``key.path=value`` strings (values parsed as YAML) to a raw config dict."""
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key.path=value; got {item!r}")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text
        parts = key.strip().split(".")
        node: Any = raw
        for i, part in enumerate(parts[:-1]):
            node = _child(node, part, ".".join(parts[: i + 1]), create=True)
        last = parts[-1]
        if isinstance(node, list):
            idx = _index(node, last, key)
            node[idx] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise ConfigError(f"--set {key}: {'.'.join(parts[:-1])} is not a mapping")


def _index(node: list[Any], part: str, path: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(f"--set {path}: {part!r} is not an index of a list of {len(node)}")
    return int(part)


def _child(node: Any, part: str, path: str, create: bool) -> Any:
    if isinstance(node, list):
        return node[_index(node, part, path)]
    if not isinstance(node, dict):
        raise ConfigError(f"--set: {path} is not a mapping")
    if part not in node or node[part] is None:
        node[part] = {}
    return node[part]


def _explain(err: ValidationError, root: type[BaseModel] = Config) -> str:
    """Turn pydantic's report into messages that name the key and suggest fixes."""
    lines = []
    seen = set()
    for item in err.errors():
        loc = list(item["loc"])
        where = _dotted(_display(item["loc"], root))
        if item["type"] == "extra_forbidden":
            parent = loc[:-1]
            valid = _valid_keys(parent, root)
            key = str(loc[-1])
            close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            msg = f"unknown key {where!r}{hint} (valid keys here: {', '.join(sorted(valid))})"
        elif item["type"] == "union_tag_invalid":
            ctx = item.get("ctx", {})
            msg = (f"{where}.{ctx.get('discriminator', '').strip(chr(39))} must be one of "
                   f"{ctx.get('expected_tags')}; got {ctx.get('tag')!r}")
        elif item["type"] == "missing":
            msg = f"{where} is required"
        else:
            text = item["msg"].removeprefix("Value error, ")
            msg = f"{where or 'config'}: {text}; got {_short(item.get('input'))}"
        if msg not in seen:
            seen.add(msg)
            lines.append(msg)
    head = "invalid config: " if len(lines) == 1 else "invalid config:\n  "
    return head + "\n  ".join(lines)


def _walk(loc: list[Any] | tuple[Any, ...], root: type[BaseModel]) -> tuple[list[Any], Any]:
    """Follow a pydantic loc through the config models from ``root``: the loc without the
    union tags pydantic inserts (``inputs.0.numeric.x`` → ``inputs.0.x``), and the model
    at its end (None once the loc leaves the models).

    A tag is recognised by the union it follows, read off the union's discriminator, so
    every family, feature type and agent is covered without a list of names."""
    shown: list[Any] = []
    model: Any = root
    for part in loc:
        member = model.member(part) if isinstance(model, _UnionOf) else None
        if member is not None:  # pydantic's tag, not a key of the user's
            model = member
            continue
        shown.append(part)
        if not isinstance(part, int):  # a list index keeps the element type
            model = _field_model(model, part)
    return shown, model


def _display(loc: tuple[Any, ...], root: type[BaseModel] = Config) -> list[Any]:
    """A loc as the user wrote it: without union tags."""
    return _walk(loc, root)[0]


def _dotted(loc: list[Any]) -> str:
    out = ""
    for p in loc:
        out += f".{p}" if out else str(p)
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _valid_keys(parent: list[Any], root: type[BaseModel] = Config) -> list[str]:
    """The field names allowed at ``parent`` (a pydantic loc without the bad key)."""
    model = _walk(parent, root)[1]
    return list(getattr(model, "model_fields", {}).keys())


def _field_model(model: Any, part: Any) -> Any:
    """The model (or union of models) of field ``part`` of ``model``; None for a value."""
    fields = getattr(model, "model_fields", None)
    if not fields or part not in fields:
        return None
    info = fields[part]
    ann, discriminator = info.annotation, info.discriminator
    # unwrap Optional / list / Annotated unions down to a model or a union of models
    for _ in range(5):
        origin = typing.get_origin(ann)
        if origin is typing.Annotated:
            ann, *meta = typing.get_args(ann)
            discriminator = next((m.discriminator for m in meta
                                  if isinstance(m, FieldInfo) and m.discriminator),
                                 discriminator)
        elif origin in (list, tuple):
            ann = typing.get_args(ann)[0]
        elif origin is Union or str(origin) == "<class 'types.UnionType'>":
            models = union_members(ann)
            if len(models) == 1:
                ann = models[0]
            else:
                return _UnionOf(models, discriminator)
        else:
            break
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None


class _UnionOf:
    """A union field in the walk: no fields of its own; the next loc part is a tag."""

    def __init__(self, models: list[type[BaseModel]], discriminator: Any) -> None:
        self.by_tag = {tag: m for m in models
                       for tag in (tags(m, discriminator) if isinstance(discriminator, str)
                                   else ())}
        self.model_fields: dict[str, Any] = {}

    def member(self, part: Any) -> type[BaseModel] | None:
        return self.by_tag.get(part) if isinstance(part, str) else None


def json_schema(kind: Literal["supervised", "rl", "recommend"] = "supervised"
                ) -> dict[str, Any]:
    """The JSON Schema of a config file, for editors: a supervised, RL or recommendation
    run."""
    root = {"rl": RLConfig, "recommend": RecommendConfig}.get(kind, Config)
    schema = root.model_json_schema()  # type: ignore[attr-defined]
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = {"rl": "layerwise RL config", "recommend": "layerwise recommendation "
                       "config"}.get(kind, "layerwise config")
    return schema


def config_hash(cfg: Config | RLConfig | RecommendConfig) -> str:
    """A stable hash of the resolved config (for lineage)."""
    d = cfg.model_dump(mode="json")
    d.pop("card", None)  # documentation: a card edit is the same run
    text = json.dumps(d, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]

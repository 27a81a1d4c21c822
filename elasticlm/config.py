"""Configs are one tree of typed dataclasses; this turns them into plain dicts and back.

    to_dict(cfg)                      nested dataclasses -> JSON/YAML-able dict
    from_dict(Cls, data)              dict -> Cls, rejecting unknown keys and wrong types by name
    override(cfg, ["train.lr=3e-4"])  `key=value` overrides of any field (values parsed as YAML)
    assign(cfg, [("train.lr", 3e-4)]) the same with values already parsed (the CLI's options)

Errors are one line naming the key (`train.lr: expected float, got 'fast'`).

A config class may name fields of its sub-configs that it fills itself from one of its own fields
(`DERIVED = {"pretrain.train.seed": "seed"}`; a source in brackets, `"[task]"`, is a one-item list of it):
they are not part of its dict form, setting one is an error naming its source, and an input dict that
still holds one (an older file) is accepted only where it agrees with its source.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from elasticlm.errors import ElasticLMError


def to_dict(cfg) -> dict[str, Any]:
    """Nested dataclasses -> plain dict (tuples become lists), without the DERIVED fields."""
    out = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            value = to_dict(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    for path in derived(type(cfg)):
        *parents, name = path.split(".")
        _lookup(out, parents).pop(name, None)
    return out


def derived(cls) -> dict[str, str]:
    """Dotted field -> the field it is filled from, of config class `cls` (see the module docstring)."""
    return getattr(cls, "DERIVED", {})


def _lookup(data: dict, parts: list[str], default=None):
    for part in parts:
        if not isinstance(data, dict) or part not in data:
            return default
        data = data[part]
    return data


def _take_derived(cls, data: dict, base: dict, where: str) -> dict:
    """`data` without the DERIVED fields it holds, each checked against its source (in `data`, else `base`)."""
    data = _copy_dicts(data)
    for path, source in derived(cls).items():
        *parents, name = path.split(".")
        node = _lookup(data, parents)
        if not isinstance(node, dict) or name not in node:
            continue
        value = node.pop(name)
        src = source.strip("[]")
        want = _lookup(data, src.split("."), _lookup(base, src.split(".")))
        if value != ([want] if source.startswith("[") else want):
            raise ElasticLMError(f"{where}{path} is set by {src!r}: set {src}: {value} there instead (every "
                                 f"stage takes it from there)")
    return data


def _copy_dicts(data):
    return {k: _copy_dicts(v) for k, v in data.items()} if isinstance(data, dict) else data


def _check(value, hint, key: str):
    """`value` coerced to the annotation `hint` (ints are accepted for floats), or an error."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check(value, arg, key)
            except ElasticLMError as err:
                errors.append(str(err))
        raise ElasticLMError(errors[0] if errors else f"{key}: bad value {value!r}")
    if dataclasses.is_dataclass(hint):
        if dataclasses.is_dataclass(value):
            return value
        if not isinstance(value, dict):
            raise ElasticLMError(f"{key}: expected a mapping of {hint.__name__} fields, got {value!r}")
        return from_dict(hint, value, prefix=key + ".")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ElasticLMError(f"{key}: expected a list, got {value!r}")
        (inner, *_) = typing.get_args(hint) or (Any,)
        items = [_check(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if hint is Any:
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ElasticLMError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise ElasticLMError(f"{key}: expected an integer, got {value!r}")
        return int(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ElasticLMError(f"{key}: expected true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ElasticLMError(f"{key}: expected a string, got {value!r}")
        return value
    if origin is dict:
        if not isinstance(value, dict):
            raise ElasticLMError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    return value


def from_dict(cls, data: dict[str, Any], *, prefix: str = ""):
    """Build dataclass `cls` from `data`; every key must be a field (named in the error if not)."""
    if not isinstance(data, dict):
        raise ElasticLMError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
    if derived(cls):
        data = _take_derived(cls, data, to_dict(cls()), prefix)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ElasticLMError(f"unknown config key {prefix}{unknown[0]}; known keys: {', '.join(fields)}")
    kwargs = {name: _check(value, hints[name], prefix + name) for name, value in data.items()}
    return cls(**kwargs)


def override(cfg, assignments: list[str]):
    """A copy of `cfg` with `dotted.key=value` assignments applied (values parsed as YAML scalars)."""
    import yaml

    values = []
    for item in assignments:
        if "=" not in item:
            raise ElasticLMError(f"override {item!r} must look like key=value (e.g. train.lr=3e-4)")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        if isinstance(value, str):
            try:  # YAML 1.1 reads 3e-4 as a string
                value = float(value) if any(c in value for c in "eE.") else value
            except ValueError:
                pass
        values.append((key.strip(), value))
    return assign(cfg, values)


def assign(cfg, values: list[tuple[str, Any]]):
    """A copy of `cfg` with each `(dotted.key, value)` set in turn (unknown keys and wrong types are
    one-line errors naming the key)."""
    data = to_dict(cfg)
    for key, value in values:
        if key in derived(type(cfg)):
            source = derived(type(cfg))[key].strip("[]")
            raise ElasticLMError(f"{key} is set by {source!r}: set {source} instead (every stage takes it from there)")
        node, parts = data, key.split(".")
        for i, part in enumerate(parts[:-1]):
            if not isinstance(node.get(part), dict):
                raise ElasticLMError(f"unknown config key {key}: no section {'.'.join(parts[:i + 1])}; known "
                                     f"keys here: {', '.join(node)}")
            node = node[part]
        if parts[-1] not in node and not _free_form(type(cfg), parts[:-1]):
            raise ElasticLMError(f"unknown config key {key}; known keys here: {', '.join(node)}")
        node[parts[-1]] = value
    return from_dict(type(cfg), data)


def _free_form(cls, parts: list[str]) -> bool:
    """Whether the field at dotted `parts` of config class `cls` is a free-form mapping (`dict`), whose
    keys its own consumer checks (e.g. `pretrain.space`, checked by `SearchSpace.from_dict`)."""
    hint: Any = cls
    for part in parts:
        if not dataclasses.is_dataclass(hint):
            return False
        hint = typing.get_type_hints(hint).get(part)
        if typing.get_origin(hint) in (typing.Union, types.UnionType):
            hint = next((a for a in typing.get_args(hint) if a is not type(None)), None)
    return bool(parts) and (hint is dict or typing.get_origin(hint) is dict)


def apply_yaml(cfg, path: str):
    """A copy of `cfg` with the fields of the YAML file `path` applied (unknown keys and wrong types are
    one-line errors naming the key)."""
    import yaml

    from elasticlm.data.textfile import read_text

    try:
        data = yaml.safe_load(read_text(path)) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        what = getattr(err, "problem", None) or type(err).__name__
        raise ElasticLMError(f"{path}: not valid YAML ({what}{where})") from None
    merged = to_dict(cfg)
    if derived(type(cfg)) and isinstance(data, dict):
        data = _take_derived(type(cfg), data, merged, f"{path}: ")
    _deep_update(merged, data, path)
    return from_dict(type(cfg), merged)


def _deep_update(base: dict, new: dict, where: str, prefix: str = "") -> None:
    if not isinstance(new, dict):
        raise ElasticLMError(f"{where}: expected a mapping of config fields")
    for k, v in new.items():
        if k not in base:
            raise ElasticLMError(f"{where}: unknown config key {prefix}{k}; known keys: {', '.join(base)}")
        if isinstance(base[k], dict) and isinstance(v, dict) and base[k]:
            _deep_update(base[k], v, where, f"{prefix}{k}.")
        else:
            base[k] = v

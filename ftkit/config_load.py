"""Loading a run config: a parsed YAML mapping -> a typed, checked `RunConfig` (ftkit.config holds
the schema), and the `--set key=value` overrides applied on top of one.

Each value is checked against its key's declared type and converted where the intent is clear
(YAML 1.1 reads `2e-5` as a string and `no` as false); an unknown key or a value of the wrong
type is a one-line error naming the dotted key, the value and the valid choices.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any, Literal

# load_yaml_file is imported from here by the modules that read a recipe or a run's config.yaml
from ftkit.bounded import cut, load_yaml_file, shown, yaml_load  # noqa: F401
from ftkit.config import OneOf, RunConfig
from ftkit.errors import FtkitError, closest

# ---------------------------------------------------------------------------- building from dicts


def from_dict(data: Any, source: str) -> RunConfig:
    """Build a RunConfig from a parsed YAML mapping; `source` names the file in errors."""
    if not isinstance(data, dict):
        raise FtkitError(f"{source}: expected a YAML mapping of config keys, got {_kind(data)}")
    return _build(RunConfig, data, source, prefix="")


def _build(cls: type, data: dict, source: str, prefix: str) -> Any:
    """One dataclass of the schema from its mapping; nested sections recurse with a dotted prefix."""
    hints = typing.get_type_hints(cls, include_extras=True)  # extras: the registry a key's value must be in
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in fields:
            raise _unknown_key(key, dotted, list(fields), source, prefix)
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            if value is None:
                continue
            if not isinstance(value, dict):
                raise FtkitError(f"{source}: '{dotted}' must be a mapping, got {_kind(value)}")
            kwargs[key] = _build(hint, value, source, prefix=f"{dotted}.")
        else:
            kwargs[key] = coerce(value, hint, dotted, source)
    missing = [n for n, f in fields.items() if n not in kwargs and _required(f)]
    if missing:
        raise FtkitError(f"{source}: missing required key(s): {', '.join(prefix + m for m in missing)}")
    try:
        return cls(**kwargs)  # RunConfig's __post_init__ runs ftkit.checks.check
    except FtkitError as err:
        raise FtkitError(f"{source}: {err.message}") from None


def _unknown_key(key: Any, dotted: str, valid: list[str], source: str, prefix: str) -> FtkitError:
    return FtkitError(
        f"{source}: unknown key {shown(dotted)}.{closest(cut(str(key), 60), valid)} "
        f"Valid keys{' under ' + prefix[:-1] if prefix else ''}: {', '.join(valid)}"
    )


def _required(field: dataclasses.Field) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


# ---------------------------------------------------------------------------- one value, by type


def coerce(value: Any, hint: Any, key: str, source: str) -> Any:
    """Check `value` against the declared type `hint`, converting where the intent is clear."""
    if dataclasses.is_dataclass(hint):  # a mapping's values may be sections (sweep.space's ranges)
        if not isinstance(value, dict):
            raise FtkitError(f"{source}: '{key}' must be a mapping, got {_kind(value)}")
        return _build(hint, value, source, prefix=f"{key}.")
    origin = typing.get_origin(hint)
    coercer = _BY_ORIGIN.get(origin) if origin is not None else _BY_TYPE.get(hint)
    if coercer is None:
        raise TypeError(f"unsupported config type {hint!r} for {key}")  # a bug in ftkit, not input
    return coercer(value, hint, key, source)


def _optional(value: Any, hint: Any, key: str, source: str) -> Any:
    """`X | None`: null (or the text null/none/~) is None; anything else must be an X."""
    args = typing.get_args(hint)
    if _is_null(value) and type(None) in args:
        return None
    inner = [a for a in args if a is not type(None)]
    return coerce(value, inner[0], key, source)


def _is_null(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.lower() in ("null", "none", "~"))


def _literal(value: Any, hint: Any, key: str, source: str) -> Any:
    return _one_of(value, typing.get_args(hint), key, source)


def _annotated(value: Any, hint: Any, key: str, source: str) -> Any:
    """`Annotated[str, OneOf(...)]`: one of the names a registry holds now; other extras: the base type."""
    base, *extras = typing.get_args(hint)
    for extra in extras:
        if isinstance(extra, OneOf):
            return _one_of(value, extra.choices(), key, source)
    return coerce(value, base, key, source)


def _one_of(value: Any, choices: tuple[Any, ...], key: str, source: str) -> Any:
    """One of `choices` exactly, or an error listing them (with a did-you-mean for a text)."""
    if value is False and "no" in choices:  # YAML 1.1 reads a bare `no` as false
        return "no"
    if value not in choices:
        raise FtkitError(
            f"{source}: '{key}' must be one of {', '.join(map(str, choices))}; got {shown(value)}."
            # str() of a list or mapping can be any size (a YAML alias bomb): only texts get a hint
            f"{closest(value, [str(a) for a in choices]) if isinstance(value, str) else ''}"
        )
    return value


def _list(value: Any, hint: Any, key: str, source: str) -> list[Any]:
    """A list, or a comma-separated text of its items (from `--set` or a flag)."""
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list):
        raise FtkitError(f"{source}: '{key}' must be a list, got {_kind(value)}")
    item = typing.get_args(hint)[0]
    return [coerce(v, item, f"{key}[{i}]", source) for i, v in enumerate(value)]


def _mapping(value: Any, hint: Any, key: str, source: str) -> dict[str, Any]:
    """A mapping with text keys; each value checked against the declared value type."""
    if not isinstance(value, dict):
        raise FtkitError(f"{source}: '{key}' must be a mapping, got {_kind(value)}")
    item = typing.get_args(hint)[1]
    return {str(k): coerce(v, item, f"{key}.{cut(str(k), 60)}", source) for k, v in value.items()}


def _bool(value: Any, hint: Any, key: str, source: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
        return value.lower() in ("true", "yes", "1")
    raise FtkitError(f"{source}: '{key}' must be true or false, got {shown(value)}")


_INTEGER = re.compile(r"[+-]?\d+")


def _int(value: Any, hint: Any, key: str, source: str) -> int:
    """An integer; a whole float (3.0) or a text of digits ('3') is taken as one."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        try:
            return int(value)
        except ValueError:  # more digits than Python converts
            pass
    raise FtkitError(f"{source}: '{key}' must be an integer, got {shown(value)}")


def _float(value: Any, hint: Any, key: str, source: str) -> float:
    """A finite number; a text is read as one (YAML 1.1 reads "2e-5" as a string)."""
    number = None
    try:
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            number = float(value)
    except (ValueError, OverflowError):
        pass
    # nan slips through every `<= 0` in check(), and no setting means anything at inf
    if number is not None and math.isfinite(number):
        return number
    raise FtkitError(f"{source}: '{key}' must be a finite number, got {shown(value)}")


def _str(value: Any, hint: Any, key: str, source: str) -> str:
    """A text; a number is taken as its spelling, a boolean is refused (YAML's bare yes/no)."""
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    hint_quote = " (YAML reads bare yes/no/true/false as booleans: quote it, e.g. 'no')" if isinstance(value, bool) else ""
    raise FtkitError(f"{source}: '{key}' must be a string, got {_kind(value)}{hint_quote}")


def _scalar(value: Any, hint: Any, key: str, source: str) -> Any:
    """`Any`: one YAML scalar, whose type another key decides later (a sweep's choices)."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise FtkitError(f"{source}: '{key}' must be a single value (text, number or true/false), got {_kind(value)}")


Coercer = Callable[[Any, Any, str, str], Any]  # (value, hint, dotted key, source) -> the typed value

# The declared type's origin (X | None, Literal[...], list[X], ...) or the plain type -> its coercer.
_BY_ORIGIN: dict[Any, Coercer] = {
    typing.Union: _optional,
    types.UnionType: _optional,
    Literal: _literal,
    Annotated: _annotated,
    list: _list,
    dict: _mapping,
}
_BY_TYPE: dict[Any, Coercer] = {bool: _bool, int: _int, float: _float, str: _str, Any: _scalar}


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


# ------------------------------------------------------------------------------- overrides


def all_keys(cls: type = RunConfig, prefix: str = "") -> dict[str, Any]:
    """Every settable dotted key with its declared type, e.g. {'train.learning_rate': float}."""
    keys: dict[str, Any] = {}
    for name, hint in typing.get_type_hints(cls).items():
        if dataclasses.is_dataclass(hint):
            keys.update(all_keys(hint, f"{prefix}{name}."))
        else:
            keys[f"{prefix}{name}"] = hint
    return keys


def flatten(data: dict[str, Any], prefix: str = "", whole: tuple[str, ...] = ("expect",)) -> dict[str, Any]:
    """A config dict as dotted keys ('train.learning_rate'); the `whole` sections stay one mapping
    (expect: its metric names hold dots). An empty mapping leaves no key."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and key not in whole:
            out.update(flatten(value, f"{prefix}{key}.", whole))
        else:
            out[f"{prefix}{key}"] = value
    return out


def resolve_key(key: str) -> str:
    """Map a `--set` key to its dotted form; a unique leaf name ('learning_rate') is enough."""
    keys = all_keys()
    if key in keys or key.split(".")[0] == "expect":
        return key
    leaf = [k for k in keys if k.rsplit(".", 1)[-1] == key]
    if len(leaf) == 1:
        return leaf[0]
    hint = closest(cut(key, 60), list(keys) + [k.rsplit(".", 1)[-1] for k in keys])
    raise FtkitError(f"unknown config key {shown(key)}.{hint} Valid keys: {', '.join(keys)}")


def apply_overrides(config: RunConfig, overrides: dict[str, Any], source: str) -> RunConfig:
    """Return a new config with dotted-key overrides applied and every check run again."""
    data = config.to_dict()
    for key, value in overrides.items():
        dotted = resolve_key(key)
        # metric names hold dots ('per_class.spam.f1'): all after 'expect.' is one key
        parts = dotted.split(".", 1) if dotted.startswith("expect.") else dotted.split(".")
        node = data
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):  # e.g. `--set expect=1 --set expect.f1=...`
                raise FtkitError(f"{source}: '{part}' was set to {shown(node)}, so {shown(key)} cannot be set inside it; set one of them")
        node[parts[-1]] = value
    return from_dict(data, source)


def parse_set(pairs: list[str]) -> dict[str, Any]:
    """Parse repeated `--set key=value`; values are YAML scalars or lists ('[a, b]')."""
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise FtkitError(f"--set expects key=value, got {shown(pair)} (e.g. --set train.warmup_ratio=0.06)")
        try:
            out[key.strip()] = yaml_load(raw) if raw.strip() else None
        # YAML that cannot be built (a date like 2024-13-45) or is beyond the bounds (YamlTooBig,
        # a ValueError: an alias bomb) stays the text typed, which the key's type check then judges
        except (yaml.YAMLError, ValueError):
            out[key.strip()] = raw
    return out

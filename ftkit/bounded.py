"""Bounds on what ftkit reads from a user's YAML and on what it echoes back in a message.

Recipes, a run's config.yaml and `--set` values are YAML, and YAML aliases let a few hundred
bytes stand for billions of values (`b: &b [*a, *a, ...]`, the "billion laughs"). The loader
here refuses a file over MAX_YAML_BYTES, and a document that, counting every use of an alias
again, holds more than MAX_YAML_NODES values or nests deeper than MAX_YAML_DEPTH, before any
Python object is built. `shown()` is how a user's value goes into a message: a few items and
characters of it, whatever its size.
"""

from __future__ import annotations

import functools
import os
import reprlib
import stat
from pathlib import Path
from typing import Any

from ftkit.errors import FtkitError, first_line

MAX_YAML_BYTES = 1_000_000  # recipes and a run's config.yaml are a few KB
MAX_YAML_NODES = 100_000  # scalars, lists and mappings; room for a data.labels list of ~99,000 names
MAX_YAML_DEPTH = 50  # a config nests 3 levels (section, key, list)

SHOWN_CHARS = 500  # the most of one value a message shows: a number just past a float's range (10**400) fits
_REPR = reprlib.Repr()
_REPR.maxlevel = 2
_REPR.maxstring = _REPR.maxother = 60
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = _REPR.maxfrozenset = _REPR.maxdeque = 4
_REPR.maxlong = SHOWN_CHARS


def shown(value: Any) -> str:
    """repr(value) with strings cut to 60 characters, 4 items per level, 2 levels, at most
    SHOWN_CHARS: bounded at any size, also for a structure that shares itself a billion times over."""
    try:
        return cut(_REPR.repr(value), SHOWN_CHARS)
    except ValueError:  # an int past Python's 4,300-digit str() limit
        return f"<an integer of {value.bit_length()} bits>" if isinstance(value, int) else f"<{type(value).__name__}>"


def cut(text: str, limit: int = 200) -> str:
    """`text` whole, or its first `limit` characters and '...' (for library messages that quote input)."""
    return text if len(text) <= limit else text[:limit] + "..."


class YamlTooBig(ValueError):
    """A YAML document beyond the node or depth bound; the message says which."""


def yaml_load(text: str) -> Any:
    """yaml.safe_load within MAX_YAML_NODES / MAX_YAML_DEPTH (YamlTooBig otherwise); YAML's own
    errors (yaml.YAMLError, ValueError for `!!int x`) pass through."""
    loader = _loader_class()(text)
    try:
        node = loader.get_single_node()
        if node is None:  # an empty document
            return None
        _measure(node, depth=1, memo={})
        return loader.construct_document(node)
    finally:
        loader.dispose()


@functools.cache
def _loader_class() -> type:
    """yaml.SafeLoader that stops composing past the bounds (built on first use: yaml is not
    imported with the CLI)."""
    import yaml

    class BoundedLoader(yaml.SafeLoader):
        def __init__(self, stream: str) -> None:
            super().__init__(stream)
            self.depth = self.nodes = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            # Distinct nodes only (an alias returns its anchor's node): bounds the composing
            # work; _measure() then counts each alias use.
            self.nodes += 1
            self.depth += 1
            try:
                _within(nodes=self.nodes, depth=self.depth)
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

    return BoundedLoader


def _within(nodes: int = 1, depth: int = 1) -> None:
    """Raise YamlTooBig when a count of values or a nesting depth is past its bound."""
    if depth > MAX_YAML_DEPTH:
        raise YamlTooBig(f"it nests deeper than {MAX_YAML_DEPTH} levels (or an alias holds itself)")
    if nodes > MAX_YAML_NODES:
        raise YamlTooBig(f"it holds more than {MAX_YAML_NODES:,} values once its aliases (*name) are expanded")


def _measure(node: Any, depth: int, memo: dict[int, tuple[int, int]]) -> tuple[int, int]:
    """(values, levels) under `node` with every alias use counted, each node measured once."""
    if id(node) not in memo:
        # A node still being measured is not in memo yet: an alias inside its own anchor recurses
        # here until the depth bound stops it.
        _within(depth=depth)
        children = node.value if isinstance(node.value, list) else []
        size, levels = 1, 0
        for child in children:
            for part in child if isinstance(child, tuple) else (child,):  # mappings: (key, value)
                part_size, part_levels = _measure(part, depth + 1, memo)
                size, levels = size + part_size, max(levels, part_levels)
                _within(nodes=size)
        memo[id(node)] = (size, levels + 1)
    size, levels = memo[id(node)]
    _within(nodes=size, depth=depth + levels - 1)  # a shared node used deeper than where it was measured
    return size, levels


def load_yaml_file(path: Path) -> Any:
    """Read a YAML file; any problem (syntax, encoding, size) is one line naming the file."""
    import yaml

    text = _read_text(path)
    try:
        return yaml_load(text)
    except YamlTooBig as err:
        raise FtkitError(f"{path}: refused: {err}, where a config holds a few hundred values in 3 levels") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(err, "problem", None) or first_line(err)
        raise FtkitError(f"{path}: invalid YAML{where}: {cut(problem)}") from None
    except ValueError as err:  # a scalar YAML types but cannot build: `seed: 2024-13-45`, `!!float abc`
        raise FtkitError(f"{path}: invalid YAML: a value reads as a date or number but is not one ({cut(str(err))}); quote it") from None


def _read_text(path: Path) -> str:
    """The file's text, refusing what is not a regular file (a FIFO would block) or is too big."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise FtkitError(f"{path}: not a regular file; give a YAML file")
        with open(path, "rb") as handle:
            data = handle.read(MAX_YAML_BYTES + 1)
    except FileNotFoundError:
        raise FtkitError(f"{path}: no such file") from None
    except OSError as err:
        raise FtkitError(f"{path}: cannot read it ({err.strerror or err})") from None
    if len(data) > MAX_YAML_BYTES:
        raise FtkitError(f"{path}: refused: larger than {MAX_YAML_BYTES:,} bytes, and a config file is a few KB; is it the right file?")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise FtkitError(f"{path}: not valid UTF-8 text (byte 0x{err.object[err.start]:02x}), an encoding problem; save the file as UTF-8") from None

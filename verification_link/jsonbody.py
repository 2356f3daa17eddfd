"""JSON that comes from outside — callback and webhook bodies, provider answers, API input — parsed
strictly, and made safe to keep.

``json.loads`` alone lets through what later becomes a server error:

- ``NaN``, ``Infinity`` and numbers such as ``1e400`` (which parse to ``inf``): not finite, so not
  JSON that a database stores (PostgreSQL's ``jsonb`` refuses them; the INSERT fails);
- nesting deeper than the interpreter can walk: up to Python 3.12 ``json`` itself raises
  ``RecursionError`` (not a ``ValueError``) on it; 3.13 parses 5,000 levels, and every recursive
  walk of the value afterwards overflows instead.

So :func:`parse_json` refuses both at parse time (one depth limit, ``MAX_DEPTH``, checked before
``json`` recurses), and the walkers here (:func:`storable`, :func:`without_keys`) are iterative and
refuse values deeper than the same limit, whatever produced them.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

#: Deepest nesting of arrays and objects accepted from outside, or walked. Provider results nest a
#: handful of levels; a limit far below the interpreter's keeps every walk safe on every version.
MAX_DEPTH = 64

#: Longest integer literal accepted (digits): larger ones are no identifier or score any provider
#: sends, and turning them into a float (a score shown in the admin) overflows.
MAX_INTEGER_DIGITS = 100

_STRING_LITERAL = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in b"[]{}")
_OPENING = frozenset(b"[{")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class InvalidJSON(ValueError):
    """Not JSON that may be kept: malformed, non-finite, out of range, or nested too deeply."""


def reject_json_constant(name: str) -> Any:
    """``parse_constant`` for ``json.loads``: refuse ``NaN``, ``Infinity`` and ``-Infinity``."""
    raise InvalidJSON(f"invalid JSON constant {name}")


def finite_float(text: str) -> float:
    """``parse_float`` for ``json.loads``: refuse numbers that overflow to infinity (``1e400``)."""
    value = float(text)
    if not math.isfinite(value):
        raise InvalidJSON("JSON number out of range")
    return value


def bounded_int(text: str) -> int:
    """``parse_int`` for ``json.loads``: refuse integers of more than ``MAX_INTEGER_DIGITS`` digits."""
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise InvalidJSON("JSON number out of range")
    return int(text)


def nesting_depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in the JSON text ``data``, without recursion.
    Brackets inside string literals do not count."""
    if data.count(b"[") + data.count(b"{") <= MAX_DEPTH:
        return 0  # cannot be deeper than the limit: the common case costs two counts
    depth = deepest = 0
    for byte in _STRING_LITERAL.sub(b"", data).translate(None, _NOT_BRACKETS):
        if byte in _OPENING:
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def parse_json(data: bytes | str) -> Any:
    """The JSON value of ``data``; ``InvalidJSON`` (a ``ValueError``) for anything that is not
    standard JSON a database can store: constants JSON does not have, numbers out of range, and
    nesting deeper than ``MAX_DEPTH``."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    if nesting_depth(raw) > MAX_DEPTH:
        raise InvalidJSON("JSON nested too deeply")
    try:
        return json.loads(data, parse_constant=reject_json_constant, parse_float=finite_float, parse_int=bounded_int)
    except InvalidJSON:
        raise
    except RecursionError:  # a limit of the interpreter below ours: still the sender's fault
        raise InvalidJSON("JSON nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, int digit limits
        raise InvalidJSON(f"malformed JSON: {type(exc).__name__}") from None


def _storable_text(value: str) -> str:
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            value = _LONE_SURROGATE.sub("\ufffd", value)
    return value


def _storable_leaf(value: Any) -> Any:
    if isinstance(value, str):
        return _storable_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidJSON("non-finite number")
    return value


def _rebuild(value: Any, leaf: Callable[[Any], Any], drop: Iterable[str] = ()) -> Any:
    """A copy of ``value`` — mappings become dicts, lists and tuples lists — with ``leaf`` applied
    to every key and scalar, and the keys in ``drop`` left out at any depth. Iterative (an explicit
    stack): the value may come from outside. ``InvalidJSON`` past ``MAX_DEPTH`` (a cycle, too)."""
    dropped = frozenset(drop)

    def container(source: Any) -> Any:
        return {} if isinstance(source, Mapping) else []

    if not isinstance(value, (Mapping, list, tuple)):
        return leaf(value)
    root = container(value)
    stack: list[tuple[Any, Any, int]] = [(value, root, 1)]
    while stack:
        source, target, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise InvalidJSON("value nested too deeply")
        items = source.items() if isinstance(source, Mapping) else enumerate(source)
        for key, item in items:
            if isinstance(source, Mapping) and key in dropped:
                continue
            if isinstance(item, (Mapping, list, tuple)):
                child = container(item)
                stack.append((item, child, depth + 1))
            else:
                child = leaf(item)
            if isinstance(target, dict):
                target[leaf(key)] = child
            else:
                target.append(child)
    return root


def storable(value: Any) -> Any:
    """``value`` with what a database cannot store replaced by U+FFFD, at any depth: NUL characters
    (refused by PostgreSQL in text and ``jsonb``) and lone surrogates (JSON's ``"\\ud800"`` decodes to
    one; no UTF-8 encodes it). Outside input — a provider's answer, a webhook, a site's metadata —
    must not be able to turn into a database error. ``InvalidJSON`` for a non-finite float or a
    value nested deeper than ``MAX_DEPTH``."""
    return _rebuild(value, _storable_leaf)


def without_keys(value: Any, keys: Iterable[str]) -> Any:
    """A copy of ``value`` without the mapping keys ``keys`` at any depth (iterative)."""
    return _rebuild(value, lambda leaf: leaf, keys)

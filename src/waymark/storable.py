"""What every store can hold: the one check of a JSON document before anything is built
from it.

Every way in (``/v1``, the okdata, GSM and OpenLineage doors, and the collector reading
the bus) parses its JSON with :func:`load`, so that a document refused in one mode is
refused in every mode, before it is acknowledged:

- **no NUL character** in any text, keys included: PostgreSQL cannot store one in
  ``text`` or ``jsonb``;
- **no integer beyond signed 64 bits** (``-2**63`` to ``2**63 - 1``) anywhere: neither
  SQLite's ``INTEGER`` nor PostgreSQL's ``bigint`` holds one, and the JSON parser would
  read a longer one as an inexact float;
- **at most** :data:`MAX_DEPTH` **levels of nesting**, counted from the document's top
  (the request body; a bus message, :data:`BUS_DEPTH`): deeper documents cannot be
  encoded again (the JSON encoder stops at 255 levels) and no pipeline status needs them.

A refusal is :class:`~waymark.errors.InvalidFields` naming the first offending field
(``body.0.meta.a``), answered 422 in each door's shape, and parked with that reason by
the collector.

The check costs little on the usual document: it walks the parsed value only when the
raw bytes hold an escaped NUL, a run of 19 digits, or more than :data:`MAX_DEPTH`
opening brackets.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import orjson

from waymark.errors import BadRequest, InvalidFields

#: the deepest a JSON document may nest (objects and arrays, the outermost counted as 1)
MAX_DEPTH = 64
#: the deepest a bus message may nest: it wraps two levels around what a door accepted
#: (``{"events": [...]}`` around one event, ``{"message": {"data": [...]}}`` around GSM's
#: list), and a collector stores whatever a door accepted.
BUS_DEPTH = MAX_DEPTH + 2
INT_MIN = -(2**63)
INT_MAX = 2**63 - 1

_NUL = b"\\u0000"
#: every ASCII digit to "9", every other byte to " ": a run of 19 digits (2**63 has 19; a
#: shorter run is in range) is then found by a substring search, not a regular expression
_DIGITS = bytes(ord("9") if chr(b).isdigit() and b < 128 else ord(" ") for b in range(256))
_LONG_NUMBER = b"9" * 19


def load(
    raw: bytes,
    where: Sequence[Any] = ("body",),
    not_json: str = "body is not valid JSON",
    depth: int = MAX_DEPTH,
) -> Any:
    """Parse ``raw`` and check it (:func:`check`); :class:`BadRequest` (400, ``not_json``
    and the parser's reason) if it is not JSON, :class:`InvalidFields` (422, naming the
    field under ``where``) if a store cannot hold it."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"{not_json}: {exc}") from exc
    check(raw, data, where, depth)
    return data


def check(raw: bytes, data: Any, where: Sequence[Any] = ("body",), depth: int = MAX_DEPTH) -> None:
    """Refuse ``data`` (parsed from ``raw``) if a store cannot hold it, or if it nests
    deeper than ``depth``; see the module."""
    nul = _NUL in raw
    big = _LONG_NUMBER in raw.translate(_DIGITS)
    deep = raw.count(b"{") + raw.count(b"[") > depth
    if not (nul or big or (deep and _deeper_than(data, depth))):
        return
    found = _first_problem(data, nul, big, depth)
    if found is _INEXACT:  # maybe an integer past unsigned 64 bits: read the document exactly
        found = _first_problem(_exact(raw, data), nul, big, depth, floats=False)
    if found is None:
        return
    loc, msg = found
    loc = tuple(_clip(part) for part in loc)
    errors: list[dict[str, Any]] = [{"loc": [*where, *loc], "msg": msg}]
    raise InvalidFields(f"{'.'.join(str(p) for p in errors[0]['loc'])}: {msg}", errors)


def _deeper_than(data: Any, depth: int) -> bool:
    """Whether ``data`` nests deeper than ``depth``: its containers, a level at a time."""
    level = [data] if type(data) is dict or type(data) is list else []
    for _ in range(depth):
        if not level:
            return False
        level = [
            item
            for container in level
            for item in (container.values() if type(container) is dict else container)
            if type(item) is dict or type(item) is list
        ]
    return bool(level)


Problem = tuple[tuple[Any, ...], str]

#: a float that may have been an integer literal past unsigned 64 bits (which the parser
#: reads as a float): integral, and at least 2**63 in magnitude
_INEXACT: Problem = ((), "")


def _first_problem(
    data: Any, nul: bool, big: bool, depth: int, *, floats: bool = True
) -> Problem | None:
    """The location and reason of the first value no store can hold, :data:`_INEXACT`
    (with ``floats`` and ``big``) for a float that may hide one, or None. Iterative: a
    document nested as deep as the parser allows (1,024 levels) costs no recursion."""
    floats = floats and big
    if type(data) is not dict and type(data) is not list:
        return _scalar_problem(data, nul, big, floats, ())
    stack: list[tuple[Any, tuple[Any, ...]]] = [(data, ())]
    while stack:
        value, loc = stack.pop()
        if len(loc) >= depth:
            return loc, f"nests deeper than {depth} levels of objects and arrays"
        items = value.items() if type(value) is dict else enumerate(value)
        for key, item in items:
            if nul and type(key) is str and "\x00" in key:
                return (*loc, key), "a key must not contain a NUL character (\\u0000)"
            kind = type(item)
            if kind is dict or kind is list:
                stack.append((item, (*loc, key)))
            elif kind is str or kind is int or kind is float:
                found = _scalar_problem(item, nul, big, floats, (*loc, key))
                if found is not None:
                    return found
    return None


def _exact(raw: bytes, data: Any) -> Any:
    """``raw`` parsed with every integer exact, however long; ``data`` where the standard
    parser cannot go as deep (it recurses), which only a document far too deep can be."""
    try:
        return json.loads(raw)
    except RecursionError:
        return data


def _clip(part: Any) -> Any:
    """A key as an error names it: a long one cut, so that the answer stays small."""
    if type(part) is str and len(part) > _KEY_SHOWN:
        return part[:_KEY_SHOWN] + "..."
    return part


_KEY_SHOWN = 100


def _scalar_problem(
    value: Any, nul: bool, big: bool, floats: bool, loc: tuple[Any, ...]
) -> Problem | None:
    kind = type(value)
    if nul and kind is str and "\x00" in value:
        return loc, "must not contain a NUL character (\\u0000)"
    if big and kind is int and not INT_MIN <= value <= INT_MAX:
        return loc, "must be an integer from -2**63 to 2**63 - 1"
    if floats and kind is float and abs(value) >= 2.0**63 and value.is_integer():
        return _INEXACT
    return None

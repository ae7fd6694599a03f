"""Check a settings dataclass's values against its annotations, so a wrong type is refused up front.

Settings arrive from JSON (the studio), from Python callers and from flags; a `seed` of "abc" must be
refused when the settings are made, naming the field, not fail later inside training. Only the
simple types settings use are understood: int, float, str, bool, None, dict, list, tuple and unions
of them. A bool is not accepted as a number, an int is accepted as a float.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing

from .errors import FieldError

_WORDS = {int: "a whole number", float: "a number", str: "text", bool: "true or false", type(None): "empty"}


def check_field_types(obj: object) -> None:
    """Raise FieldError for the first field of the dataclass `obj` whose value does not fit its annotation."""
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        want = hints[f.name]
        if not fits(value, want):
            raise FieldError(f.name, f"must be {describe(want)}, got {_shown(value)}")


def fits(value: object, want: object) -> bool:
    origin = typing.get_origin(want)
    if origin in (typing.Union, types.UnionType):
        return any(fits(value, option) for option in typing.get_args(want))
    if want is typing.Any:
        return True
    if want is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if want is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if want is type(None):
        return value is None
    if origin is not None:  # dict[str, str], tuple[str, ...]: the container's type only
        return isinstance(value, origin)
    return isinstance(value, want) if isinstance(want, type) else True


def describe(want: object) -> str:
    if typing.get_origin(want) in (typing.Union, types.UnionType):
        options = [o for o in typing.get_args(want) if o is not type(None)]
        return " or ".join(describe(o) for o in options) + (
            " or empty" if len(options) < len(typing.get_args(want)) else ""
        )
    origin = typing.get_origin(want) or want
    return _WORDS.get(origin, "a JSON object" if origin is dict else "a list" if origin in (list, tuple) else str(want))


@functools.cache
def _hints(cls: type) -> dict[str, object]:
    return typing.get_type_hints(cls)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."

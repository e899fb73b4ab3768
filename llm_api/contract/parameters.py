"""Parameter text to typed values, the way openapi-core reads it (so the two never disagree).

Query, path and cookie values arrive as text. They are cast by the JSON type the spec gives them
(``int("5")``; booleans from the same words openapi-core knows) and then validated strictly, so a
value like ``5.0`` for an integer is refused here exactly as it is by the spec. A value that does
not cast stays text and fails validation with a clear message.
"""

from __future__ import annotations

from collections.abc import Callable

_TRUE = {"y", "yes", "t", "true", "on", "1"}
_FALSE = {"n", "no", "f", "false", "off", "0"}


def cast(value: str | list[str], json_type: str) -> object:
    if json_type.startswith("array:"):
        item_type = json_type.removeprefix("array:")
        return [cast(item, item_type) for item in value] if isinstance(value, list) else value
    caster = _CASTERS.get(json_type)
    if caster is None or not isinstance(value, str):
        return value
    try:
        return caster(value)
    except ValueError:
        return value


def _boolean(text: str) -> bool:
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(text)


_CASTERS: dict[str, Callable[[str], object]] = {"integer": int, "number": float, "boolean": _boolean}

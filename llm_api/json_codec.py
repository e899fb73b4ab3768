"""JSON to and from bytes on the hot path: orjson, with the standard library for what orjson refuses.

orjson parses and writes in a fraction of the standard library's time (a streamed answer is hundreds
of small documents), but it is stricter in two ways that must not change what callers see:
- it refuses lone surrogate escapes (``"\\ud800"``) and numbers beyond a double (``1e400``), which
  providers do send and ``json`` reads (the store then replaces what PostgreSQL cannot keep);
- it cannot write a ``str`` holding a lone surrogate, or a dict with non-string keys; ``json`` writes
  the first as an escape (still valid UTF-8 on the wire) and turns keys into strings.
The fallbacks run only for such documents. One difference is kept: orjson reads an integer beyond 64
bits as a float, which no field of a chat completion holds.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def loads(data: bytes | str) -> Any:
    """Raises ``ValueError`` for what is not JSON, ``RecursionError`` for what is nested too deep."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        # Not JSON for orjson: maybe only a lone surrogate, an infinite number or invalid UTF-8 that
        # ``json`` takes (UTF-8 errors replaced, as a provider's text always was).
        text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
        return json.loads(text)


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON (``ensure_ascii=False``, no spaces), as OpenAI writes it."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, separators=(",", ":")).encode()

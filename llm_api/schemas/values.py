"""Reading optional fields of the generated models, where absent (pydantic's MISSING) and null differ."""

from __future__ import annotations

from typing import Any

from pydantic import MISSING, RootModel


def given(value: Any) -> Any:
    """The value (a root model's own value), or None when the field was absent."""
    if value is MISSING:
        return None
    return value.root if isinstance(value, RootModel) else value


def first_given(*values: Any) -> Any:
    """The first of several spellings of one field that was sent, or None."""
    return next((value for value in values if value is not MISSING), None)

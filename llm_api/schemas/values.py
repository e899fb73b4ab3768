"""Values of the generated models: reading optional fields, where absent (pydantic's MISSING) and null
differ, and the timestamps they carry (Unix seconds)."""

from __future__ import annotations

from datetime import datetime
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


def unix(moment: datetime | None) -> int | None:
    """A stored time as the API's timestamps carry it: whole Unix seconds (None stays None)."""
    return None if moment is None else int(moment.timestamp())

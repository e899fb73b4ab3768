"""The contract document shipped with the package."""

from __future__ import annotations

from importlib.resources import files


def spec_bytes() -> bytes:
    """openapi.yaml exactly as written (``llm_api/openapi.yaml`` links to the top-level file)."""
    return (files("llm_api") / "openapi.yaml").read_bytes()

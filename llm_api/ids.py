"""Public ids: a prefix and 16 random lowercase letters and digits (about 83 bits)."""

import secrets

_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


def new_id(prefix: str, length: int = 16) -> str:
    """``new_id("conv")`` -> ``conv_k2j9x0q1w8e7r6t4``. Unbiased: ``secrets.choice`` per character."""
    return f"{prefix}_{''.join(secrets.choice(_ALPHABET) for _ in range(length))}"

"""What a successful login or refresh hands back to the client."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TokenSet:
    access_token: str
    refresh_token: str
    expires_in: int
    expires_at: int
    refresh_expires_in: int
    user_id: str
    username: str

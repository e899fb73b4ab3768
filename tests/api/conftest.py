"""Fixtures shared by the API tests: two unrelated guests."""

from __future__ import annotations

import pytest

from tests.api.callers import Caller
from tests.api.test_builtin_auth import guest


@pytest.fixture
async def me(client) -> Caller:
    return Caller(client, await guest(client))


@pytest.fixture
async def someone_else(client) -> Caller:
    return Caller(client, await guest(client))

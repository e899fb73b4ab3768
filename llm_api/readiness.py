"""Readiness: named checks that must all pass before the service should get traffic."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

Check = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class CheckResult:
    name: str
    duration_ms: float
    error: str | None


class Readiness:
    """Runs every registered check concurrently, each bounded by a timeout."""

    def __init__(self, timeout: float = 2.0) -> None:
        self._timeout = timeout
        self._checks: dict[str, Check] = {}

    def add(self, name: str, check: Check) -> None:
        """Register a check: a coroutine function that raises when the dependency is not usable."""
        self._checks[name] = check

    async def run(self) -> list[CheckResult]:
        return list(await asyncio.gather(*(self._run_one(name, check) for name, check in self._checks.items())))

    async def _run_one(self, name: str, check: Check) -> CheckResult:
        started = time.perf_counter()
        try:
            await asyncio.wait_for(check(), self._timeout)
            error = None
        except TimeoutError:
            error = f"no answer within {self._timeout:g} s"
        except Exception as exc:  # a readiness check reports any failure, it never raises
            error = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        return CheckResult(name, round((time.perf_counter() - started) * 1000, 3), error)

"""Per-minute request limits, shared by every worker and instance through PostgreSQL.

Counting in the database on every request would cost every request a round trip (the largest
part of the service's own latency). So each worker counts locally and settles its counts with the
shared row in the background every ``SETTLE_INTERVAL``; the database is asked at once only when a
caller is new to this worker, when this worker's view of the shared count is older than ``FRESHNESS``,
when its window has closed, or when the local count says the budget is spent — a refusal is always
confirmed against the shared count. Within one worker the count is exact; across workers a caller
can get past the limit by what it sent to the other workers within the last ``FRESHNESS``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from datetime import timedelta

from llm_api.db import rate_limits
from llm_api.db.pool import Database, DatabaseUnavailable

log = logging.getLogger(__name__)

WINDOW = timedelta(minutes=1)
SETTLE_INTERVAL = 0.1  # s
FRESHNESS = 2 * SETTLE_INTERVAL  # a busy caller's view is refreshed by the settlements in the background


@dataclass(frozen=True, slots=True)
class RateDecision:
    limit: int
    remaining: int
    retry_after: int  # seconds until the window closes

    @property
    def allowed(self) -> bool:
        return self.remaining >= 0


@dataclass(slots=True)
class _Window:
    count: int  # in the shared row when last settled
    ends: float  # time.monotonic() when the window closes
    settled: float  # time.monotonic() of the last settlement
    unsettled: int = 0  # counted here, not sent yet
    settling: int = 0  # counted here, being sent

    @property
    def used(self) -> int:
        return self.count + self.settling + self.unsettled


class RateLimiter:
    def __init__(self, db: Database, per_minute: int) -> None:
        self._db = db
        self.per_minute = per_minute
        self._windows: dict[str, _Window] = {}

    async def hit(self, key: str) -> RateDecision | None:
        """Count a request; None when the count could not be kept (the request is let through)."""
        window = self._windows.get(key)
        now = time.monotonic()
        if window is not None and now < window.ends and now - window.settled < FRESHNESS and window.used < self.per_minute:
            window.unsettled += 1
            return self._decision(window, now)
        return await self._settle(key, extra=1)

    async def run(self) -> None:
        """Settle every window's local counts, every SETTLE_INTERVAL, until cancelled (then once more)."""
        try:
            while True:
                await asyncio.sleep(SETTLE_INTERVAL)
                await self.settle_all()
        finally:
            await asyncio.shield(self.settle_all())

    async def settle_all(self) -> None:
        now = time.monotonic()
        for key, window in list(self._windows.items()):
            if window.unsettled:
                await self._settle(key, extra=0)
            elif now >= window.ends:
                del self._windows[key]  # closed and nothing left to tell: forget the caller

    async def _settle(self, key: str, *, extra: int) -> RateDecision | None:
        """Add what was counted here (and ``extra`` requests) to the shared row; the decision it gives."""
        window = self._windows.get(key)
        counted = window.unsettled if window is not None else 0
        if window is not None:  # requests counted while the statement runs wait for the next settlement
            window.unsettled, window.settling = 0, window.settling + counted
        try:
            count, seconds_left = await rate_limits.hit(self._db, key, WINDOW, counted + extra)
        except DatabaseUnavailable as error:
            if window is not None:
                window.settling, window.unsettled = window.settling - counted, window.unsettled + counted
            # Failing open: a database outage must not turn into a refusal of everything, including
            # routes that do not need the database; those that do will answer 503 themselves.
            log.warning("rate limit not counted: %s", error.message)
            return None
        now = time.monotonic()
        ends = now + seconds_left
        window = self._windows.setdefault(key, _Window(count, ends, now))
        window.settling -= counted
        window.settled = now
        # Two settlements may come back in either order: within a window the larger count is the later
        # one; a window that ends later than the one known is a new window.
        if count >= window.count or ends > window.ends + 1:
            window.count, window.ends = count, ends
        return self._decision(window, now)

    def _decision(self, window: _Window, now: float) -> RateDecision:
        return RateDecision(self.per_minute, self.per_minute - window.used, max(1, math.ceil(window.ends - now)))

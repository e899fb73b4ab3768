"""Per-minute request limits, shared by every worker and instance through PostgreSQL."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import timedelta

from llm_api.db import rate_limits
from llm_api.db.pool import Database, DatabaseUnavailable

log = logging.getLogger(__name__)

WINDOW = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class RateDecision:
    limit: int
    remaining: int
    retry_after: int  # seconds until the window closes

    @property
    def allowed(self) -> bool:
        return self.remaining >= 0


class RateLimiter:
    """One counter per caller in PostgreSQL, so the limit holds however many workers serve the caller."""

    def __init__(self, db: Database, per_minute: int) -> None:
        self._db = db
        self.per_minute = per_minute

    async def hit(self, key: str) -> RateDecision | None:
        """Count a request; None when the count could not be kept (the request is let through)."""
        try:
            count, seconds_left = await rate_limits.hit(self._db, key, WINDOW)
        except DatabaseUnavailable as error:
            # Failing open: a database outage must not turn into a refusal of everything, including
            # routes that do not need the database; those that do will answer 503 themselves.
            log.warning("rate limit not counted: %s", error.message)
            return None
        return RateDecision(self.per_minute, self.per_minute - count, max(1, math.ceil(seconds_left)))

"""Rate-limit windows shared by every worker: one row per caller, one statement per settlement."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from llm_api.db.pool import Database
from llm_api.db.sql import Query
from llm_api.db.tables import rate_limits

_window = sa.bindparam("window", type_=sa.Interval)
_new = insert(rate_limits).values(key=sa.bindparam("key"), window_start=sa.func.now(), count=sa.bindparam("requests"))
_expired = rate_limits.c.window_start <= sa.func.now() - _window
# A window opens with the caller's first request and lasts `window`; the next request after it opens a new one.
_HIT = Query(
    _new.on_conflict_do_update(
        index_elements=[rate_limits.c.key],
        set_={
            "window_start": sa.case((_expired, sa.func.now()), else_=rate_limits.c.window_start),
            "count": sa.case((_expired, _new.excluded.count), else_=rate_limits.c.count + _new.excluded.count),
        },
    ).returning(
        rate_limits.c.count,
        sa.func.extract("epoch", rate_limits.c.window_start + _window - sa.func.now()).label("seconds_left"),
    )
)


async def hit(db: Database, key: str, window, requests: int = 1) -> tuple[int, float]:
    """Count ``requests`` more for ``key``; (requests in the current window, seconds until it closes)."""
    row = (await db.execute(_HIT, key=key, window=window, requests=requests))[0]
    return row["count"], float(row["seconds_left"])

"""Changes announced to every worker and instance through PostgreSQL's LISTEN/NOTIFY.

A write that other processes may have cached sends ``pg_notify(channel, key)`` inside its
transaction (PostgreSQL delivers it at commit, and not at all on rollback). ``ChangeFeed`` keeps
one connection listening and tells the subscribers of a channel which key changed.

A notification can be lost only while the feed is not listening, so caches must be trusted only
while ``live`` is true; and when the feed (re)starts listening, subscribers are told that anything
may have changed (``None``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import aiopg
import sqlalchemy as sa

from llm_api.db.pool import first_line
from llm_api.db.sql import Query

log = logging.getLogger(__name__)

USER_SETTINGS = "llm_api_user_settings"
CHANNELS = (USER_SETTINGS,)
_RETRY_PAUSE = 1.0  # s between attempts to listen again

Subscriber = Callable[[str | None], None]  # the changed key, or None: anything may have changed


def notify_query(channel: str) -> Query:
    """The statement announcing a change of ``key`` on ``channel`` (run it in the writing transaction)."""
    return Query(sa.select(sa.func.pg_notify(channel, sa.bindparam("key"))))


class ChangeFeed:
    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._subscribers: dict[str, list[Subscriber]] = {channel: [] for channel in CHANNELS}
        self.live = False
        self.listening = asyncio.Event()  # set while live (tests and start-up can wait for it)

    def subscribe(self, channel: str, subscriber: Subscriber) -> None:
        self._subscribers[channel].append(subscriber)

    async def run(self) -> None:
        """Listen until cancelled, reconnecting after a lost connection."""
        while True:
            try:
                await self._listen()
            except Exception as error:
                log.warning("not listening for changes (caches bypassed until it is back): %s", first_line(error))
            finally:
                self._set_live(False)
            await asyncio.sleep(_RETRY_PAUSE)

    async def _listen(self) -> None:
        async with aiopg.connect(self._dsn, enable_hstore=False) as conn:
            async with conn.cursor() as cur:
                for channel in CHANNELS:
                    await cur.execute(f'LISTEN "{channel}"')  # channel names are our constants
            self._set_live(True)
            while True:
                notification = await conn.notifies.get()
                self._tell(notification.channel, notification.payload)

    def _set_live(self, live: bool) -> None:
        if live != self.live:
            self.live = live
            for channel in CHANNELS:  # whatever was cached may have changed unseen
                self._tell(channel, None)
        if live:
            self.listening.set()
        else:
            self.listening.clear()

    def _tell(self, channel: str, key: str | None) -> None:
        for subscriber in self._subscribers.get(channel, ()):
            subscriber(key)

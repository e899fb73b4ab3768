"""The memory service (Jan's memory-tools): what it recalls before a chat, and what it is told after.

Wire format as the original calls it: ``POST {MEMORY_BASE_URL}/v1/memory/load`` with the user, project,
conversation, the query (the last user message) and the limits from the user's ``memory_config``; the
answer's user memory, project facts and recent events become lines of the memory prompt, each group
only when its ``inject_*`` flag is on. ``POST /v1/memory/observe`` receives a finished exchange.

Memory helps an answer; it must never cost one. Every failure (down, slow, an odd answer) is logged
and the chat goes on without memory; observing happens after the answer, in the background.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp

log = logging.getLogger(__name__)


class MemoryService:
    def __init__(self, session: aiohttp.ClientSession, base_url: str, timeout: float) -> None:
        self._session = session
        self._base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._observing: set[asyncio.Task] = set()

    async def recall(
        self,
        config: Mapping[str, Any],
        *,
        user_id: str,
        project_id: str | None,
        conversation_id: str | None,
        query: str,
    ) -> tuple[str, ...]:
        """Memory lines for this request; none when the service fails."""
        request = {
            "user_id": user_id,
            "query": query,
            "options": {
                name: config[name] for name in ("max_user_items", "max_project_items", "max_episodic_items", "min_similarity")
            },
            **({"project_id": project_id} if project_id else {}),
            **({"conversation_id": conversation_id} if conversation_id else {}),
        }
        try:
            answer = await self._post("/v1/memory/load", request)
            return _lines(answer, config)
        except (TimeoutError, aiohttp.ClientError, ValueError, TypeError, KeyError, AttributeError) as error:
            log.warning("memory load failed, answering without memory: %s", str(error) or type(error).__name__)
            return ()

    def observe(self, *, user_id: str, project_id: str | None, conversation_id: str, exchange: list[tuple[str, str]]) -> None:
        """Send a finished exchange ([(role, text)]) in the background."""
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        request = {
            "user_id": user_id,
            "conversation_id": conversation_id,
            "messages": [{"role": role, "content": text, "created_at": now} for role, text in exchange],
            **({"project_id": project_id} if project_id else {}),
        }
        task = asyncio.create_task(self._observe(request))
        self._observing.add(task)
        task.add_done_callback(self._observing.discard)

    async def close(self) -> None:
        """Let observations under way finish (they are bounded by the timeout)."""
        if self._observing:
            await asyncio.gather(*self._observing, return_exceptions=True)

    async def _observe(self, request: dict[str, Any]) -> None:
        try:
            await self._post("/v1/memory/observe", request)
        except (TimeoutError, aiohttp.ClientError, ValueError) as error:
            log.warning("memory observe failed: %s", str(error) or type(error).__name__)

    async def _post(self, path: str, body: dict[str, Any]) -> Any:
        async with self._session.post(f"{self._base_url}{path}", json=body, timeout=self._timeout) as response:
            if response.status != 200:
                raise ValueError(f"{path} answered {response.status}: {(await response.text())[:200]}")
            return await response.json(content_type=None)


def _lines(answer: Mapping[str, Any], config: Mapping[str, Any]) -> tuple[str, ...]:
    lines = []
    if config.get("inject_user_core"):
        lines += [f"User memory: {item['text']}" for item in answer.get("core_memory") or [] if item.get("text")]
    if config.get("inject_semantic"):
        lines += [
            f"Project fact - {fact['title']}: {fact['text']}" if fact.get("title") else f"Project fact: {fact['text']}"
            for fact in answer.get("semantic_memory") or []
            if fact.get("text")
        ]
    if config.get("inject_episodic"):
        lines += [f"Recent event: {event['text']}" for event in answer.get("episodic_memory") or [] if event.get("text")]
    return tuple(lines)

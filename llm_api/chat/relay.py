"""What a streamed answer becomes on its way to the client: the chunks it sees, and the answer kept.

The chunks a provider sends are fresh objects parsed for this stream alone, so they are rewritten in
place: only the fields that change are touched (one ``id`` and ``created`` for the whole stream, the
public model id, finish reasons the contract knows, no null fields in a delta), and no copy is made
of a chunk that needs nothing more. Keys keep their order, as they did when each chunk was copied.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from llm_api.chat.answers import GatheredAnswer, finish_reason
from llm_api.errors import ApiError


@dataclass(frozen=True)
class StreamEnd:
    """The last event of a streamed answer: the conversation chunk to send (when the answer was kept in
    a conversation), or the error that ended the stream (sent as an error event); then ``[DONE]``."""

    conversation_chunk: dict[str, Any] | None = None
    error: ApiError | None = None


class ChunkRelay:
    """One stream's chunks, normalised for the client and gathered into the answer to store."""

    def __init__(self, first: dict[str, Any], public_id: str, *, include_usage: bool) -> None:
        self.stream_id = str(first.get("id") or "chatcmpl-stream")
        self.created = int(first.get("created") or time.time())
        self.public_id = public_id
        self.include_usage = include_usage
        self.gathered = GatheredAnswer()

    def take(self, chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The chunks to send of those that arrived, each gathered first (as the provider sent it)."""
        outgoing = []
        for chunk in chunks:
            self.gathered.add(chunk)
            if self._normalize(chunk):
                outgoing.append(chunk)
        return outgoing

    def conversation_chunk(self, summary: dict[str, Any]) -> dict[str, Any]:
        """The chunk that tells the client where the answer was kept (``{id, title}``)."""
        return {
            "id": self.stream_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.public_id,
            "choices": [],
            "conversation": summary,
        }

    def _normalize(self, chunk: dict[str, Any]) -> bool:
        """Rewrites ``chunk`` for the client; False for one that carries nothing the client asked for
        (a usage-only chunk when it did not ask for usage)."""
        chunk["id"] = self.stream_id
        chunk["object"] = "chat.completion.chunk"
        chunk["created"] = self.created
        chunk["model"] = self.public_id
        choices = chunk.get("choices")
        if not self.include_usage:
            chunk.pop("usage", None)
            if not choices:
                return False
        if not choices:
            chunk["choices"] = []
            return True
        for choice in choices:
            reason = choice.get("finish_reason")
            choice["finish_reason"] = finish_reason(reason) if reason is not None else None
            delta = choice.get("delta")
            if not delta:
                choice["delta"] = {}
            elif None in delta.values():
                # vLLM sends ``tool_calls: null``, ``reasoning_content: null``... where OpenAI sends a
                # value or nothing, and the SDKs expect one or the other.
                choice["delta"] = {name: value for name, value in delta.items() if value is not None}
        return True

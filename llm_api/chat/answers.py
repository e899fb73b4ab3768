"""Provider answers in the shapes the contract promises, and streamed chunks gathered into one answer.

Providers differ in small ways: vLLM omits ``refusal``, some servers send ``finish_reason: "abort"``
or ``"eos"``, most put their own model id in ``model``. Fields the contract does not name are passed
through.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

_FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter", "function_call"})


def normalized_completion(answer: dict[str, Any], public_id: str) -> dict[str, Any]:
    answer = {**answer, "object": "chat.completion", "model": public_id}
    answer.setdefault("created", 0)
    answer.setdefault("id", "chatcmpl-unknown")
    choices = []
    for index, choice in enumerate(answer.get("choices") or []):
        message = {"content": None, "refusal": None, **_without_nulls(choice.get("message") or {}), "role": "assistant"}
        choices.append({
            **choice, "index": choice.get("index", index), "message": message, "logprobs": choice.get("logprobs"),
            "finish_reason": _finish_reason(choice.get("finish_reason")) or "stop",
        })
    answer["choices"] = choices
    if answer.get("usage") is None:
        answer.pop("usage", None)
    return answer


def normalized_chunk(chunk: dict[str, Any], *, stream_id: str, created: int, public_id: str, include_usage: bool) -> dict[str, Any] | None:
    """The chunk to send; None for one that carries nothing the client asked for (a usage-only chunk
    when it did not ask for usage). ``id`` and ``created`` are the same on every chunk of a stream."""
    chunk = {**chunk, "id": stream_id, "object": "chat.completion.chunk", "created": created, "model": public_id}
    if not include_usage:
        chunk.pop("usage", None)
        if not chunk.get("choices"):
            return None
    chunk["choices"] = [
        {**choice, "finish_reason": _finish_reason(choice.get("finish_reason")), "delta": _without_nulls(choice.get("delta") or {})}
        for choice in chunk.get("choices") or []
    ]
    return chunk


def _without_nulls(fields: dict[str, Any]) -> dict[str, Any]:
    """Null fields dropped: vLLM sends ``annotations: null``, ``tool_calls: null``... where OpenAI sends
    a list or nothing, and the SDKs expect one or the other."""
    return {name: value for name, value in fields.items() if value is not None}


def _finish_reason(reason: Any) -> str | None:
    if reason is None:
        return None
    return reason if reason in _FINISH_REASONS else "stop"


@dataclass
class GatheredAnswer:
    """The first choice of a streamed answer, as it arrives."""

    content: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    refusal: list[str] = field(default_factory=list)
    tool_calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None

    def add(self, chunk: dict[str, Any]) -> None:
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            for name, parts in (("content", self.content), ("reasoning_content", self.reasoning), ("refusal", self.refusal)):
                if isinstance(delta.get(name), str):
                    parts.append(delta[name])
            if isinstance(delta.get("reasoning"), str):  # vLLM's newer name for it
                self.reasoning.append(delta["reasoning"])
            for call in delta.get("tool_calls") or []:
                gathered = self.tool_calls.setdefault(call.get("index", 0), {"id": "", "name": "", "arguments": ""})
                gathered["id"] = call.get("id") or gathered["id"]
                function = call.get("function") or {}
                gathered["name"] = function.get("name") or gathered["name"]
                gathered["arguments"] += function.get("arguments") or ""
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]

    @property
    def started(self) -> bool:
        """Whether anything worth keeping arrived."""
        return bool(self.content or self.refusal or self.tool_calls or self.reasoning)

    def message(self) -> dict[str, Any]:
        """The answer as a chat-completion message."""
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self.content) or None,
                                   "refusal": "".join(self.refusal) or None}
        if self.reasoning:
            message["reasoning_content"] = "".join(self.reasoning)
        if self.tool_calls:
            message["tool_calls"] = [
                {"id": call["id"], "type": "function", "function": {"name": call["name"], "arguments": call["arguments"]}}
                for _, call in sorted(self.tool_calls.items())
            ]
        return message

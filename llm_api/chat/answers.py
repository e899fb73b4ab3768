"""Provider answers in the shapes the contract promises, and streamed chunks gathered into one answer.

Providers differ in small ways: vLLM omits ``refusal``, some servers send ``finish_reason: "abort"``
or ``"eos"``, most put their own model id in ``model``. Fields the contract does not name are passed
through.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

_FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter", "function_call"})


# Fields of a chat completion that OpenAI's schema (CreateChatCompletionResponse) does not let be null, where
# vLLM sends ``"system_fingerprint": null``: left out when null. The nullable ones (``service_tier``,
# ``metadata``...) and those OpenAI does not name (vLLM's ``prompt_logprobs``...) are passed as they are.
_NOT_NULLABLE = ("id", "created", "system_fingerprint", "usage")


def normalized_completion(answer: dict[str, Any], public_id: str) -> dict[str, Any]:
    answer = {**_without_nulls(answer, _NOT_NULLABLE), "object": "chat.completion", "model": public_id}
    answer.setdefault("created", 0)
    answer.setdefault("id", "chatcmpl-unknown")
    choices = []
    for index, choice in enumerate(answer.get("choices") or []):
        message = {"content": None, "refusal": None, **_without_nulls(choice.get("message") or {}), "role": "assistant"}
        choices.append(
            {
                **choice,
                "index": choice.get("index", index),
                "message": message,
                "logprobs": choice.get("logprobs"),
                "finish_reason": finish_reason(choice.get("finish_reason")) or "stop",
            }
        )
    answer["choices"] = choices
    if isinstance(answer.get("usage"), dict):
        answer["usage"] = _usage(answer["usage"])
    return answer


def _usage(usage: dict[str, Any]) -> dict[str, Any]:
    """Usage without nulls, in its details too: none of OpenAI's ``CompletionUsage`` fields is nullable, and
    vLLM sends ``"prompt_tokens_details": null`` (some servers ``{"cached_tokens": null}``)."""
    return {name: _without_nulls(value) if isinstance(value, dict) else value for name, value in _without_nulls(usage).items()}


def _without_nulls(fields: dict[str, Any], names: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Null fields dropped (only those of ``names`` when given): vLLM sends ``annotations: null``,
    ``tool_calls: null``... where OpenAI sends a list or nothing, and the SDKs expect one or the other."""
    return {name: value for name, value in fields.items() if value is not None or (names is not None and name not in names)}


def finish_reason(reason: Any) -> str | None:
    """A provider's finish reason as the contract knows them: others (``abort``, ``eos``) are a stop."""
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
        usage = chunk.get("usage")
        if usage:
            self.usage = usage
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if delta:
                content = delta.get("content")
                if isinstance(content, str):
                    self.content.append(content)
                if len(delta) > (2 if "role" in delta else 1) or content is None:  # more than content (rare)
                    self._add_other_fields(delta)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]

    def _add_other_fields(self, delta: dict[str, Any]) -> None:
        for name, parts in (("reasoning_content", self.reasoning), ("reasoning", self.reasoning), ("refusal", self.refusal)):
            if isinstance(delta.get(name), str):  # "reasoning": vLLM's newer name for reasoning_content
                parts.append(delta[name])
        for call in delta.get("tool_calls") or []:
            gathered = self.tool_calls.setdefault(call.get("index", 0), {"id": "", "name": "", "arguments": ""})
            gathered["id"] = call.get("id") or gathered["id"]
            function = call.get("function") or {}
            gathered["name"] = function.get("name") or gathered["name"]
            gathered["arguments"] += function.get("arguments") or ""

    @property
    def started(self) -> bool:
        """Whether anything worth keeping arrived."""
        return bool(self.content or self.refusal or self.tool_calls or self.reasoning)

    def message(self) -> dict[str, Any]:
        """The answer as a chat-completion message."""
        message: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(self.content) or None,
            "refusal": "".join(self.refusal) or None,
        }
        if self.reasoning:
            message["reasoning_content"] = "".join(self.reasoning)
        if self.tool_calls:
            message["tool_calls"] = [
                {"id": call["id"], "type": "function", "function": {"name": call["name"], "arguments": call["arguments"]}}
                for _, call in sorted(self.tool_calls.items())
            ]
        return message

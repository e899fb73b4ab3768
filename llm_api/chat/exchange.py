"""One exchange as conversation items, in the OpenAI Conversations API's shapes.

The request's last message is the new input (clients send the history they already have, as the
Jan apps do; storing only the last message keeps a conversation free of duplicates). The answer
becomes an assistant message (``incomplete`` when it was cut short), followed by a
``function_call`` item per tool call.
"""

from __future__ import annotations

import re
from typing import Any

from llm_api.ids import new_id
from llm_api.providers.messages import text_of

_TITLE_LENGTH = 60
# What PostgreSQL cannot store in text or jsonb: U+0000, and lone surrogates (not UTF-8). Requests are
# refused with them (the contract's patterns, the JSON parser), but a provider's answer may hold them;
# storing it as it was failed the whole chat (a 500, or a stream left without its end).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def input_items(message: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows for the request's last message."""
    role = message["role"]
    if role == "tool":
        return [
            _row(
                "function_call_output",
                None,
                "completed",
                {"call_id": message["tool_call_id"], "output": text_of(message["content"])},
            )
        ]
    rows = []
    parts = _parts(role, message.get("content"))
    if role == "assistant" and message.get("refusal"):
        parts.append({"type": "refusal", "refusal": message["refusal"]})
    if parts or role != "assistant":
        rows.append(_row("message", role, "completed", {"content": parts}))
    for call in message.get("tool_calls") or []:
        rows.append(_function_call(call["id"], call["function"]["name"], call["function"]["arguments"], "completed"))
    return rows


def answer_items(message: dict[str, Any], *, complete: bool, store_reasoning: bool) -> list[dict[str, Any]]:
    """The rows for the assistant's answer (a chat-completion message)."""
    status = "completed" if complete else "incomplete"
    parts: list[dict[str, Any]] = []
    if store_reasoning and message.get("reasoning_content"):
        parts.append({"type": "reasoning_text", "text": message["reasoning_content"]})
    if message.get("content"):
        parts.append(_text_part("assistant", message["content"]))
    if message.get("refusal"):
        parts.append({"type": "refusal", "refusal": message["refusal"]})
    calls = message.get("tool_calls") or []
    rows = [_row("message", "assistant", status, {"content": parts})] if parts or not calls else []
    rows += [_function_call(call["id"], call["function"]["name"], call["function"]["arguments"], status) for call in calls]
    return [_storable(row) for row in rows]


def title_from(messages: list[dict[str, Any]]) -> str | None:
    """A conversation title from the first user message: its first line, cut at a word near 60 characters."""
    text = next((text_of(message["content"]) for message in messages if message["role"] == "user"), "")
    line = " ".join(text.strip().split("\n", 1)[0].split())
    if not line:
        return None
    if len(line) <= _TITLE_LENGTH:
        return line
    head = line[: _TITLE_LENGTH + 1]  # one more: a space right after the limit ends a whole word
    cut = head.rsplit(" ", 1)[0] if " " in head else line[:_TITLE_LENGTH]
    return cut.rstrip(" ,.;:-") + "…"


def last_user_text(messages: list[dict[str, Any]]) -> str:
    """The text of the last user message (what the memory service searches with); empty when none."""
    return next((text_of(message["content"]).strip() for message in reversed(messages) if message["role"] == "user"), "")


def _storable(value: Any) -> Any:
    """``value`` with every character PostgreSQL cannot store replaced by U+FFFD."""
    if isinstance(value, str):
        return _UNSTORABLE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {key: _storable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_storable(item) for item in value]
    return value


def _row(item_type: str, role: str | None, status: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"id": new_id("msg"), "type": item_type, "role": role, "status": status, "body": body}


def _function_call(call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    return _row("function_call", None, status, {"call_id": call_id, "name": name, "arguments": arguments})


def _parts(role: str, content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [_text_part(role, content)]
    return [_part(role, part) for part in content]


def _part(role: str, part: dict[str, Any]) -> dict[str, Any]:
    kind = part["type"]
    if kind == "text":
        return _text_part(role, part["text"])
    if kind == "refusal":
        return {"type": "refusal", "refusal": part["refusal"]}
    if kind == "image_url":
        image = part["image_url"]
        return {"type": "input_image", "image_url": image["url"], "file_id": None, "detail": image.get("detail", "auto")}
    if kind == "file":  # what it does not give is left out (OpenAI's input_file allows no null but file_id's)
        file = part["file"]
        return {
            "type": "input_file",
            **{name: file[name] for name in ("file_id", "file_data", "filename") if file.get(name) is not None},
        }
    # input_audio: kept as a file, so the item stays one the Conversations API can show
    audio = part["input_audio"]
    return {
        "type": "input_file",
        "filename": f"audio.{audio['format']}",
        "file_data": f"data:audio/{audio['format']};base64,{audio['data']}",
    }


def _text_part(role: str, text: str) -> dict[str, Any]:
    if role == "assistant":  # annotations and logprobs: OpenAI requires both
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    return {"type": "input_text", "text": text}

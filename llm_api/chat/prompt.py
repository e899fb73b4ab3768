"""Prompt assembly: the system messages the service adds to a conversation's requests.

For now one module, the project instruction (profile and memory arrive with the settings issue).
It becomes the first system message, exactly once: a request that already carries the same text
in a system or developer message (a client that assembles its own prompt) gets no second copy.
"""

from __future__ import annotations

from typing import Any

PROJECT_INSTRUCTION = "project_instruction"


def assemble(
    messages: list[dict[str, Any]], *, project_instruction: str | None, skipped: frozenset[str]
) -> tuple[list[dict[str, Any]], list[str]]:
    """The messages to send, and the names of the modules applied."""
    applied: list[str] = []
    instruction = (project_instruction or "").strip()
    if instruction and PROJECT_INSTRUCTION not in skipped and not _already_there(messages, instruction):
        messages = [{"role": "system", "content": instruction}, *messages]
        applied.append(PROJECT_INSTRUCTION)
    return messages, applied


def _already_there(messages: list[dict[str, Any]], text: str) -> bool:
    return any(
        message["role"] in ("system", "developer") and _text(message.get("content")).strip() == text
        for message in messages
    )


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content or [] if isinstance(part, dict))

"""The text of a chat message, as every adapter receives it (the OpenAI chat format, as plain data).

The one reader of a message's text: the adapters (Anthropic's text blocks and tool results) and, above
them, the chat use case (a conversation's title, the memory query, a tool's stored output, the prompt's
check for a text the client already sent) read it here.
"""

from __future__ import annotations

from typing import Any


def texts_of(content: Any) -> list[str]:
    """The texts of a message's ``content``, part by part: a string is one text; of a list of parts, each
    ``text`` part's text and each ``refusal`` part's refusal (an assistant's), in order. Images, audio and
    files have no text; ``None`` (an assistant message with tool calls only) has none."""
    if content is None:
        return []
    if isinstance(content, str):
        return [content]
    return [part["text"] if part["type"] == "text" else part["refusal"] for part in content if part.get("type") in _TEXTUAL]


def text_of(content: Any, *, separator: str = "\n") -> str:
    """The text of a message's ``content``: its texts (``texts_of``) joined by ``separator``; a line break by
    default, so that words of two parts stay apart (a title, a search query)."""
    return separator.join(texts_of(content))


_TEXTUAL = frozenset({"text", "refusal"})

"""Prompt assembly: the system messages the service adds to a chat, in one place and a fixed order.

1. the instruction of the conversation's project;
2. the user's profile (style, custom instructions, how to address them, occupation, about them);
3. what the memory service recalled for this request.

Each is its own system message, placed right after the client's own leading system (or developer)
message, which stays first, or at the very start when there is none. A part is added only when it
has content and was not switched off (``disable_prompt_modules``); a text the request already
carries in a system or developer message (a client assembling its own prompt) is not added again.
The profile and memory texts are the original's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from llm_api.providers.messages import text_of

PROJECT_INSTRUCTION = "project_instruction"
PROFILE = "profile"
MEMORY = "memory"

_STYLES = {
    "Concise": "Use a concise style: brief, direct answers with minimal filler.",
    "Friendly": "Use a friendly, warm, and encouraging tone while staying helpful.",
    "Professional": "Use a professional, clear, and structured tone appropriate for business settings.",
}
_DEFAULT_STYLE = "Friendly"
_PROFILE_PRECEDENCE = (
    "User-level settings are preferences for style and context. If they ever conflict with explicit project or "
    "system instructions, always follow the project or system instructions."
)
_MEMORY_INTRO = "Use the following personal memory for this user when helpful, without overriding project or system instructions:"


@dataclass(frozen=True)
class PromptContext:
    project_instruction: str | None = None
    profile: Mapping[str, Any] = field(default_factory=dict)  # the profile_settings group of the user's settings
    memory: tuple[str, ...] = ()  # lines such as "User memory: likes tea"


def assemble(
    messages: list[dict[str, Any]], context: PromptContext, *, skipped: frozenset[str]
) -> tuple[list[dict[str, Any]], list[str]]:
    """The messages to send, and the names of the parts added."""
    parts = [
        (PROJECT_INSTRUCTION, (context.project_instruction or "").strip()),
        (PROFILE, profile_text(context.profile)),
        (MEMORY, memory_text(context.memory)),
    ]
    added = [(name, text) for name, text in parts if text and name not in skipped and not _already_there(messages, text)]
    at = 1 if messages and messages[0]["role"] in ("system", "developer") else 0
    system = [{"role": "system", "content": text} for _, text in added]
    return [*messages[:at], *system, *messages[at:]], [name for name, _ in added]


def profile_text(profile: Mapping[str, Any]) -> str:
    """The profile as guidance; empty when the user personalised nothing (the default style alone is not
    worth a system message on every request)."""
    style = profile.get("base_style") or _DEFAULT_STYLE
    custom = (profile.get("custom_instructions") or "").strip()
    details = [
        template.format(value)
        for template, key in (
            ('Address the user as "{}".', "nick_name"),
            ("Occupation: {}", "occupation"),
            ("About the user: {}", "more_about_you"),
        )
        if (value := (profile.get(key) or "").strip())
    ]
    if style == _DEFAULT_STYLE and not custom and not details:
        return ""
    sections = [_PROFILE_PRECEDENCE, _STYLES.get(style, f"Use the user's preferred style: {style}.")]
    if custom:
        sections.append(f"Custom instructions from the user:\n{custom}")
    if details:
        sections.append("User context:\n" + "\n".join(f"- {detail}" for detail in details))
    return "\n\n".join(sections)


def memory_text(lines: tuple[str, ...]) -> str:
    if not lines:
        return ""
    return "\n".join([_MEMORY_INTRO, *(f"- {line}" for line in lines)])


def _already_there(messages: list[dict[str, Any]], text: str) -> bool:
    # Parts joined with nothing between them (not text_of's line break): a client that sends one of our texts
    # split over several parts sends pieces of that one text, which joined as they are give it back.
    return any(
        message["role"] in ("system", "developer") and text_of(message.get("content"), separator="").strip() == text
        for message in messages
    )

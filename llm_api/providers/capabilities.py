"""What a model can do, as far as the service can tell without asking it.

Providers do not describe their models' capabilities in any common way, so the answer is the
vendor's usual one, overridden by the provider's metadata: ``vision``, ``tools``, ``reasoning`` and
``audio`` set to ``"true"`` or ``"false"`` (``POST|PATCH /v1/admin/providers``, or ``metadata:`` in the
providers file).
"""

from __future__ import annotations

from llm_api.providers.anthropic import NO_COUNTERPART
from llm_api.providers.openai_compatible import SUPPORTED_BY
from llm_api.providers.registry import Provider

_VISION_VENDORS = {"openai", "anthropic", "gemini", "openrouter"}
_COMMON_PARAMETERS = (
    "temperature",
    "top_p",
    "n",
    "stop",
    "max_tokens",
    "max_completion_tokens",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "seed",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "reasoning_effort",
    "verbosity",
    "modalities",
    "metadata",
    "user",
    "safety_identifier",
    "prompt_cache_key",
    "stream",
    "stream_options",
)


def capabilities(provider: Provider) -> dict[str, bool]:
    defaults = {
        "vision": provider.vendor in _VISION_VENDORS,
        "tools": True,
        "reasoning": False,
        "audio": False,
    }
    return {name: _flag(provider.metadata.get(name), default) for name, default in defaults.items()}


def supported_parameters(provider: Provider) -> list[str]:
    if provider.vendor == "anthropic":
        unsupported = set(NO_COUNTERPART) | {"n", "response_format"}
        return [name for name in _COMMON_PARAMETERS if name not in unsupported] + ["top_k"]
    return list(_COMMON_PARAMETERS) + [name for name, vendors in SUPPORTED_BY.items() if provider.vendor in vendors]


def _flag(value: str | None, default: bool) -> bool:
    if value is None:
        return default
    return value.strip().lower() in ("true", "1", "yes")

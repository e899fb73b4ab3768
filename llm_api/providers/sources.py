"""Providers declared outside the database: the PROVIDERS_CONFIG_FILE and environment shortcuts.

The file::

    providers:
      - name: local-vllm
        vendor: vllm              # openai | anthropic | vllm | ollama | openai_compatible | ...
        base_url: http://127.0.0.1:8001/v1
        api_key: ${VLLM_API_KEY:-}
        models: [jan-v1-4b]       # optional; otherwise listed from GET {base_url}/models
        aliases: {fast: jan-v1-4b}

``${VAR}`` and ``${VAR:-default}`` are replaced from the environment the settings were read from
(``Settings.environment``). Each entry is checked by the same rules as ``POST /v1/admin/providers``; a
bad entry stops start-up with one line naming it: ``llm-api`` reads the file with the rest of its
configuration, before anything starts, and each app reads it again when its providers start
(``configured``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from pydantic import MISSING, ValidationError

from llm_api.config import Settings
from llm_api.contract.input_errors import invalid_input
from llm_api.schemas import models
from llm_api.schemas.values import given

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ProviderConfigError(ValueError):
    """The providers file is unusable; the message names the file and the entry."""


@dataclass(frozen=True)
class ProviderSpec:
    name: str
    vendor: str
    base_url: str
    api_key: str | None
    models: tuple[str, ...] | None
    aliases: dict[str, str] = field(default_factory=dict)
    # active and metadata apply when the provider is first created; after that the admin API owns them.
    active: bool = True
    metadata: dict[str, str] = field(default_factory=dict)
    source: str = "config_file"
    position: int = 0


def configured(settings: Settings) -> list[ProviderSpec]:
    """The providers the settings declare: the PROVIDERS_CONFIG_FILE's, then the environment shortcuts'.
    Raises ProviderConfigError (one line) for an unusable file."""
    in_file = from_file(settings.providers_config_file, settings.environment) if settings.providers_config_file else ()
    return [*in_file, *from_environment(settings)]


def from_file(path: Path, environ: Mapping[str, str]) -> tuple[ProviderSpec, ...]:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ProviderConfigError(f"PROVIDERS_CONFIG_FILE {path}: {str(error).splitlines()[0]}") from None
    entries = document.get("providers") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ProviderConfigError(f"PROVIDERS_CONFIG_FILE {path}: expected a top-level 'providers:' list")
    specs = []
    for position, entry in enumerate(entries):
        expanded = _expand(entry, environ)
        if isinstance(expanded, dict) and expanded.get("api_key") == "":
            expanded["api_key"] = None  # `${VLLM_API_KEY:-}` with the variable unset: no key
        try:
            request = models.ProviderCreateRequest.model_validate(expanded, strict=True)
        except ValidationError as error:
            problem = invalid_input(error, entry)
            raise ProviderConfigError(f"PROVIDERS_CONFIG_FILE {path}: providers[{position}]: {problem.message}") from None
        specs.append(spec_of(request, source="config_file", position=position))
    names = [spec.name for spec in specs]
    if len(names) != len(set(names)):
        raise ProviderConfigError(f"PROVIDERS_CONFIG_FILE {path}: two providers share a name")
    return tuple(specs)


def spec_of(request: models.ProviderCreateRequest, *, source: str, position: int = 0) -> ProviderSpec:
    fields = plain(request)
    return ProviderSpec(
        name=fields["name"],
        vendor=fields["vendor"],
        base_url=fields["base_url"],
        api_key=fields.get("api_key"),
        models=fields.get("models"),
        aliases=fields.get("aliases", {}),
        active=fields["active"],
        metadata=fields.get("metadata", {}),
        source=source,
        position=position,
    )


def plain(request: models.ProviderCreateRequest | models.ProviderUpdateRequest) -> dict[str, Any]:
    """The fields a request sent, as plain values (absent ones left out; ``models`` as a tuple)."""
    fields = {name: getattr(request, name) for name in type(request).model_fields if getattr(request, name) is not MISSING}
    if fields.get("models") is not None:
        fields["models"] = tuple(dict.fromkeys(model.root for model in fields["models"]))
    for name in ("aliases", "metadata"):
        if name in fields:
            fields[name] = {key: given(value) for key, value in fields[name].root.items()}
    return fields


def from_environment(settings: Settings) -> list[ProviderSpec]:
    """The providers the OPENAI_API_KEY, ANTHROPIC_API_KEY, VLLM_BASE_URL and OLLAMA_BASE_URL shortcuts declare."""
    specs = []
    if settings.openai_api_key:
        specs.append(
            ProviderSpec(
                "openai", "openai", settings.openai_base_url or "https://api.openai.com/v1", settings.openai_api_key, None
            )
        )
    if settings.anthropic_api_key:
        specs.append(
            ProviderSpec(
                "anthropic",
                "anthropic",
                settings.anthropic_base_url or "https://api.anthropic.com/v1",
                settings.anthropic_api_key,
                None,
            )
        )
    if settings.vllm_base_url:
        specs.append(ProviderSpec("vllm", "vllm", settings.vllm_base_url, settings.vllm_api_key, None))
    if settings.ollama_base_url:
        base = settings.ollama_base_url.rstrip("/")
        # Ollama's OpenAI-compatible API lives under /v1 of its address.
        specs.append(ProviderSpec("ollama", "ollama", base if base.endswith("/v1") else f"{base}/v1", None, None))
    return [replace(spec, source="environment", position=index) for index, spec in enumerate(specs)]


def _expand(value, environ: Mapping[str, str]):
    if isinstance(value, str):
        return _VARIABLE.sub(lambda match: environ.get(match.group(1), match.group(2) or ""), value)
    if isinstance(value, list):
        return [_expand(item, environ) for item in value]
    if isinstance(value, dict):
        return {key: _expand(item, environ) for key, item in value.items()}
    return value

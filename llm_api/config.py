"""Settings: one typed, immutable object built from the environment and passed to ``create_app``.

Variable names and defaults follow the original Jan Server where it has one (``HTTP_PORT``,
``DB_POSTGRESQL_WRITE_DSN``, ``LOG_LEVEL`` ...). An invalid value stops start-up with one line that
names the variable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def _duration_seconds(value: object) -> object:
    """Accept Go-style durations as the original does (``5s``, ``500ms``, ``1m``) and plain seconds."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError("expected a duration such as 5, 5s, 500ms or 1m")
        return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    return value


def _blank_is_unset(value: object) -> object:
    """``FOO=`` in an env file means "not set", not "set to the empty string"."""
    return None if isinstance(value, str) and not value.strip() else value


def _http_url(value: str | None) -> str | None:
    if value is not None and not re.match(r"^https?://[^\s/]+", value):
        raise ValueError("expected an http:// or https:// URL")
    return value


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


Seconds = Annotated[float, BeforeValidator(_duration_seconds), Field(gt=0)]
OptionalText = Annotated[str | None, BeforeValidator(_blank_is_unset)]
OptionalUrl = Annotated[str | None, BeforeValidator(_blank_is_unset), AfterValidator(_http_url)]


class SettingsError(ValueError):
    """The environment holds an invalid value; the message is one line naming the variable."""


class Settings(BaseModel):
    """Every setting of the service. Field aliases are the environment variable names."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    # HTTP
    http_host: str = Field("0.0.0.0", alias="HTTP_HOST")
    http_port: int = Field(8080, alias="HTTP_PORT", ge=1, le=65535)
    max_request_body_bytes: int = Field(16 * 1024 * 1024, alias="MAX_REQUEST_BODY_BYTES", ge=1024)

    # Database. No DSN means "start an embedded PostgreSQL in data_dir" (done by the CLI, not by create_app).
    db_dsn: OptionalText = Field(None, alias="DB_POSTGRESQL_WRITE_DSN")
    db_pool_min_size: int = Field(1, alias="DB_POOL_MIN_SIZE", ge=0, le=100)
    db_pool_max_size: int = Field(10, alias="DB_POOL_MAX_SIZE", ge=1, le=500)
    db_timeout: Seconds = Field(10.0, alias="DB_TIMEOUT")
    db_startup_timeout: Seconds = Field(30.0, alias="DB_STARTUP_TIMEOUT")
    auto_migrate: bool = Field(True, alias="AUTO_MIGRATE")
    data_dir: Path = Field(Path(".llm-api"), alias="LLM_API_DATA_DIR")

    # Logging
    log_level: Annotated[Literal["debug", "info", "warning", "error"], BeforeValidator(_lower)] = Field(
        "info", alias="LOG_LEVEL"
    )
    log_format: Annotated[Literal["json", "text"], BeforeValidator(_lower)] = Field("text", alias="LOG_FORMAT")

    # Identity (Keycloak mode when set; otherwise the built-in issuer)
    keycloak_base_url: OptionalUrl = Field(None, alias="KEYCLOAK_BASE_URL")
    jwks_url: OptionalUrl = Field(None, alias="JWKS_URL")
    issuer: OptionalText = Field(None, alias="ISSUER")
    account: str = Field("account", alias="ACCOUNT", min_length=1)

    # Tracing
    otel_enabled: bool = Field(False, alias="OTEL_ENABLED")
    otel_service_name: str = Field("llm-api", alias="OTEL_SERVICE_NAME", min_length=1)
    otel_exporter_otlp_endpoint: OptionalUrl = Field(None, alias="OTEL_EXPORTER_OTLP_ENDPOINT")

    # Media ids (jan_*) in chat messages
    media_resolve_url: OptionalUrl = Field(None, alias="MEDIA_RESOLVE_URL")
    media_resolve_timeout: Seconds = Field(5.0, alias="MEDIA_RESOLVE_TIMEOUT")

    # Contract enforcement: openapi-core checks every request and response against openapi.yaml.
    # It costs milliseconds per request, so it is on in tests and CI and off by default in production,
    # where the generated models enforce the same rules (the tests prove they agree).
    strict_contract: bool = Field(False, alias="OPENAPI_STRICT_VALIDATION")

    # Build information, normally set by the image build; a source checkout reports its git commit.
    build_commit: OptionalText = Field(None, alias="BUILD_COMMIT")
    build_time: OptionalText = Field(None, alias="BUILD_TIME")

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Build settings from environment variables; raise SettingsError naming the first bad one."""
        names = {field.alias for field in cls.model_fields.values()}
        try:
            settings = cls.model_validate({key: value for key, value in environ.items() if key in names})
        except ValidationError as error:
            raise SettingsError(_first_problem(cls, error)) from None
        if settings.db_pool_min_size > settings.db_pool_max_size:
            raise SettingsError("DB_POOL_MIN_SIZE: must not exceed DB_POOL_MAX_SIZE")
        return settings


def _first_problem(cls: type[Settings], error: ValidationError) -> str:
    problem = error.errors()[0]
    field = str(problem["loc"][0]) if problem["loc"] else ""
    variable = cls.model_fields[field].alias if field in cls.model_fields else field
    return f"{variable}: {problem['msg']} (got {problem.get('input')!r})"

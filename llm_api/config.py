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

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def _duration_seconds(value: object) -> object:
    """Accept Go-style durations as the original does (``5s``, ``500ms``, ``1m``) and plain seconds."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError("expected a duration such as 5, 5s, 500ms, 1m, 2h or 30d")
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
# Secrets must be long enough that guessing is hopeless; a short one is a configuration mistake.
OptionalSecret = Annotated[Annotated[str, Field(min_length=32)] | None, BeforeValidator(_blank_is_unset)]


class SettingsError(ValueError):
    """The environment holds an invalid value; the message is one line naming the variable."""


class Settings(BaseModel):
    """Every setting of the service. Field aliases are the environment variable names."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    # HTTP
    http_host: str = Field("0.0.0.0", alias="HTTP_HOST")
    http_port: int = Field(8080, alias="HTTP_PORT", ge=1, le=65535)
    max_request_body_bytes: int = Field(16 * 1024 * 1024, alias="MAX_REQUEST_BODY_BYTES", ge=1024)
    # Per header line. aiohttp's 8 KiB default is below what Keycloak tokens with many groups reach,
    # and a longer header is refused by the HTTP parser itself, before any envelope can be written.
    max_header_bytes: int = Field(128 * 1024, alias="MAX_HEADER_BYTES", ge=8 * 1024, le=16 * 1024 * 1024)

    # Worker processes of `llm-api serve` (--workers wins), and how long a stopping worker lets running
    # requests and streams finish before it closes them.
    workers: int = Field(1, alias="WORKERS", ge=1, le=64)
    shutdown_grace_period: Seconds = Field(30.0, alias="SHUTDOWN_GRACE_PERIOD")

    # Database. No DSN means "start an embedded PostgreSQL in data_dir" (done by the CLI, not by create_app).
    db_dsn: OptionalText = Field(None, alias="DB_POSTGRESQL_WRITE_DSN")
    db_pool_min_size: int = Field(1, alias="DB_POOL_MIN_SIZE", ge=0, le=100)
    db_pool_max_size: int = Field(10, alias="DB_POOL_MAX_SIZE", ge=1, le=500)
    db_timeout: Seconds = Field(10.0, alias="DB_TIMEOUT")
    db_startup_timeout: Seconds = Field(30.0, alias="DB_STARTUP_TIMEOUT")
    auto_migrate: bool = Field(True, alias="AUTO_MIGRATE")
    data_dir: Path = Field(Path(".llm-api"), alias="LLM_API_DATA_DIR")

    # Logging
    log_level: Annotated[Literal["debug", "info", "warning", "error"], BeforeValidator(_lower)] = Field("info", alias="LOG_LEVEL")
    log_format: Annotated[Literal["json", "text"], BeforeValidator(_lower)] = Field("text", alias="LOG_FORMAT")

    # The master secret: keyed hashes of API keys and refresh tokens, encryption of signing and provider
    # keys. Required with an external database; the embedded mode keeps a generated one in LLM_API_DATA_DIR.
    secret_key: OptionalSecret = Field(None, alias="LLM_API_SECRET_KEY")

    # Identity: Keycloak mode when KEYCLOAK_BASE_URL or JWKS_URL is set; otherwise the built-in issuer.
    keycloak_base_url: OptionalUrl = Field(None, alias="KEYCLOAK_BASE_URL")
    keycloak_realm: str = Field("jan", alias="KEYCLOAK_REALM", min_length=1)
    jwks_url: OptionalUrl = Field(None, alias="JWKS_URL")
    issuer: OptionalText = Field(None, alias="ISSUER")
    account: str = Field("account", alias="ACCOUNT", min_length=1)
    client_id: str = Field("jan-client", alias="CLIENT", min_length=1)
    keycloak_admin: OptionalText = Field(None, alias="KEYCLOAK_ADMIN")
    keycloak_admin_password: OptionalText = Field(None, alias="KEYCLOAK_ADMIN_PASSWORD")
    keycloak_admin_realm: str = Field("master", alias="KEYCLOAK_ADMIN_REALM", min_length=1)
    keycloak_admin_client_id: str = Field("admin-cli", alias="KEYCLOAK_ADMIN_CLIENT_ID", min_length=1)
    backend_client_id: OptionalText = Field(None, alias="BACKEND_CLIENT_ID")
    backend_client_secret: OptionalText = Field(None, alias="BACKEND_CLIENT_SECRET")
    guest_role: str = Field("guest", alias="GUEST_ROLE", min_length=1)
    auth_clock_skew: Seconds = Field(60.0, alias="AUTH_CLOCK_SKEW")
    jwks_refresh_interval: Seconds = Field(300.0, alias="JWKS_REFRESH_INTERVAL")
    access_token_ttl: Seconds = Field(3600.0, alias="ACCESS_TOKEN_TTL")
    refresh_token_ttl: Seconds = Field(30 * 86400.0, alias="REFRESH_TOKEN_TTL")
    signing_key_rotation: Seconds = Field(30 * 86400.0, alias="SIGNING_KEY_ROTATION")

    # API keys, the bootstrap admin key, the gateway, rate limits
    api_key_max_per_user: int = Field(5, alias="API_KEY_MAX_PER_USER", ge=1, le=1000)
    api_key_default_ttl: Seconds = Field(90 * 86400.0, alias="API_KEY_DEFAULT_TTL")
    api_key_max_ttl: Seconds = Field(365 * 86400.0, alias="API_KEY_MAX_TTL")
    admin_api_key: OptionalSecret = Field(None, alias="ADMIN_API_KEY")
    gateway_shared_secret: OptionalSecret = Field(None, alias="GATEWAY_SHARED_SECRET")
    rate_limit_per_minute: int = Field(100, alias="RATE_LIMIT_PER_MINUTE", ge=0)

    # Providers: a YAML file, environment shortcuts, and the admin API (all merged). The file belongs to
    # providers/ (``providers.sources.configured`` reads it); here is only its name.
    providers_config_file: Annotated[Path | None, BeforeValidator(_blank_is_unset)] = Field(None, alias="PROVIDERS_CONFIG_FILE")
    #: The variables these settings were read from (not one itself): the providers file's ``${VAR}`` are
    #: replaced from them, so that the file sees the same environment as every other setting.
    environment: Mapping[str, str] = Field(default_factory=dict, exclude=True, repr=False)
    openai_api_key: OptionalText = Field(None, alias="OPENAI_API_KEY")
    openai_base_url: OptionalUrl = Field(None, alias="OPENAI_BASE_URL")
    anthropic_api_key: OptionalText = Field(None, alias="ANTHROPIC_API_KEY")
    anthropic_base_url: OptionalUrl = Field(None, alias="ANTHROPIC_BASE_URL")
    vllm_base_url: OptionalUrl = Field(None, alias="VLLM_BASE_URL")
    vllm_api_key: OptionalText = Field(None, alias="VLLM_API_KEY")
    ollama_base_url: OptionalUrl = Field(None, alias="OLLAMA_BASE_URL")
    model_sync_interval: Seconds = Field(600.0, alias="MODEL_SYNC_INTERVAL")
    provider_refresh_interval: Seconds = Field(30.0, alias="PROVIDER_REFRESH_INTERVAL")

    # Calls to providers
    upstream_connect_timeout: Seconds = Field(10.0, alias="UPSTREAM_CONNECT_TIMEOUT")
    upstream_timeout: Seconds = Field(600.0, alias="UPSTREAM_TIMEOUT")
    stream_timeout: Seconds = Field(600.0, alias="STREAM_TIMEOUT")
    upstream_retries: int = Field(2, alias="UPSTREAM_RETRIES", ge=0, le=10)
    sse_keepalive_interval: Seconds = Field(15.0, alias="SSE_KEEPALIVE_INTERVAL")

    # Tracing
    otel_enabled: bool = Field(False, alias="OTEL_ENABLED")
    otel_service_name: str = Field("llm-api", alias="OTEL_SERVICE_NAME", min_length=1)
    otel_exporter_otlp_endpoint: OptionalUrl = Field(None, alias="OTEL_EXPORTER_OTLP_ENDPOINT")

    # Metrics. Set by `llm-api serve --workers N` (N > 1) for its workers: each writes its samples
    # there and /metrics adds up every worker's (prometheus-client's multiprocess mode).
    prometheus_multiproc_dir: Annotated[Path | None, BeforeValidator(_blank_is_unset)] = Field(
        None, alias="PROMETHEUS_MULTIPROC_DIR"
    )

    # Memory (Jan's memory-tools): recalled before a chat, told about it after
    memory_base_url: OptionalUrl = Field(None, alias="MEMORY_BASE_URL")
    memory_timeout: Seconds = Field(2.0, alias="MEMORY_TIMEOUT")

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
        if settings.jwks_url and not settings.keycloak_base_url and not settings.issuer:
            raise SettingsError("ISSUER: required when JWKS_URL is set without KEYCLOAK_BASE_URL")
        return settings.model_copy(update={"environment": dict(environ)})

    @property
    def keycloak_mode(self) -> bool:
        """Tokens come from Keycloak (verified against its JWKS) rather than from the built-in issuer."""
        return bool(self.keycloak_base_url or self.jwks_url)

    @property
    def keycloak_realm_url(self) -> str | None:
        if not self.keycloak_base_url:
            return None
        return f"{self.keycloak_base_url.rstrip('/')}/realms/{self.keycloak_realm}"

    @property
    def token_issuer(self) -> str:
        """The ``iss`` tokens carry: ISSUER, else the Keycloak realm's URL, else ``llm-api`` (built-in)."""
        return self.issuer or self.keycloak_realm_url or "llm-api"

    @property
    def effective_jwks_url(self) -> str | None:
        if self.jwks_url:
            return self.jwks_url
        return f"{self.keycloak_realm_url}/protocol/openid-connect/certs" if self.keycloak_realm_url else None


def _first_problem(cls: type[Settings], error: ValidationError) -> str:
    problem = error.errors()[0]
    field = str(problem["loc"][0]) if problem["loc"] else ""
    variable = cls.model_fields[field].alias if field in cls.model_fields else field
    if _SECRET_VARIABLE.search(variable):  # start-up errors end up in logs: never echo a secret
        return f"{variable}: {problem['msg']}"
    return f"{variable}: {problem['msg']} (got {problem.get('input')!r})"


_SECRET_VARIABLE = re.compile(r"KEY|SECRET|PASSWORD|TOKEN|DSN")

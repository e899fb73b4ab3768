"""Settings from the environment: the seed's names and defaults, one-line errors naming the variable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from llm_api.config import Settings, SettingsError


def test_defaults_follow_the_seed():
    settings = Settings.from_env({})
    assert settings.http_port == 8080
    assert settings.db_dsn is None  # -> embedded PostgreSQL
    assert settings.log_level == "info" and settings.log_format == "text"
    assert settings.account == "account"
    assert settings.otel_enabled is False and settings.otel_service_name == "llm-api"
    assert settings.media_resolve_timeout == 5.0
    assert settings.auto_migrate is True
    assert settings.data_dir == Path(".llm-api")
    assert settings.strict_contract is False


def test_environment_values_are_parsed():
    settings = Settings.from_env(
        {
            "HTTP_PORT": "9000",
            "DB_POSTGRESQL_WRITE_DSN": "postgres://u:p@db:5432/x?sslmode=disable",
            "LOG_LEVEL": "DEBUG",
            "LOG_FORMAT": "JSON",
            "AUTO_MIGRATE": "false",
            "OTEL_ENABLED": "1",
            "MEDIA_RESOLVE_TIMEOUT": "1500ms",
            "KEYCLOAK_BASE_URL": "http://keycloak:8085",
            "ISSUER": "http://keycloak:8085/realms/jan",
            "LLM_API_DATA_DIR": "/var/lib/llm-api",
            "UNRELATED": "ignored",
        }
    )
    assert settings.http_port == 9000
    assert settings.db_dsn.startswith("postgres://")
    assert (settings.log_level, settings.log_format) == ("debug", "json")
    assert settings.auto_migrate is False and settings.otel_enabled is True
    assert settings.media_resolve_timeout == 1.5
    assert settings.data_dir == Path("/var/lib/llm-api")


@pytest.mark.parametrize("value,seconds", [("5", 5.0), ("5s", 5.0), ("250ms", 0.25), ("1m", 60.0), ("1.5s", 1.5)])
def test_durations_accept_go_style_and_plain_seconds(value, seconds):
    assert Settings.from_env({"MEDIA_RESOLVE_TIMEOUT": value}).media_resolve_timeout == seconds


def test_blank_optional_values_mean_unset():
    settings = Settings.from_env(
        {
            "DB_POSTGRESQL_WRITE_DSN": "",
            "JWKS_URL": "  ",
            "ADMIN_API_KEY": "",
            "GATEWAY_SHARED_SECRET": " ",
            "LLM_API_SECRET_KEY": "",
        }
    )
    assert settings.db_dsn is None and settings.jwks_url is None
    assert settings.admin_api_key is None and settings.gateway_shared_secret is None and settings.secret_key is None


@pytest.mark.parametrize("name", ["ADMIN_API_KEY", "GATEWAY_SHARED_SECRET", "LLM_API_SECRET_KEY"])
def test_a_secret_too_short_is_refused_without_echoing_it(name):
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({name: "hunter2-but-short"})
    assert str(caught.value) == f"{name}: String should have at least 32 characters"


@pytest.mark.parametrize(
    "name,value",
    [
        ("HTTP_PORT", "eighty"),
        ("HTTP_PORT", "70000"),
        ("LOG_FORMAT", "xml"),
        ("LOG_LEVEL", "loud"),
        ("MEDIA_RESOLVE_TIMEOUT", "soon"),
        ("MEDIA_RESOLVE_TIMEOUT", "0"),
        ("AUTO_MIGRATE", "perhaps"),
        ("JWKS_URL", "ftp://x"),
        ("DB_POOL_MAX_SIZE", "0"),
    ],
)
def test_an_invalid_value_is_one_line_naming_the_variable(name, value):
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({name: value})
    message = str(caught.value)
    assert message.startswith(f"{name}: ")
    assert "\n" not in message


def test_pool_bounds_are_consistent():
    with pytest.raises(SettingsError, match="DB_POOL_MIN_SIZE"):
        Settings.from_env({"DB_POOL_MIN_SIZE": "5", "DB_POOL_MAX_SIZE": "2"})


def test_the_cli_stops_with_one_line_and_exit_code_2():
    result = subprocess.run(
        [sys.executable, "-m", "llm_api", "serve"],
        env={"HTTP_PORT": "nope", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "HTTP_PORT" in result.stderr


def test_the_readme_documents_every_setting():
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    table = readme[readme.index("## Configuration") :].split("\n## ", 1)[0]
    undocumented = [field.alias for field in Settings.model_fields.values() if field.alias and f"`{field.alias}`" not in table]
    assert undocumented == []

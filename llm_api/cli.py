"""``llm-api serve`` and ``llm-api migrate``.

The CLI is the only place that reads the process environment and owns process-level concerns:
logging set-up, signals, and the embedded PostgreSQL used when no database is configured.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import os
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aiohttp import web

from llm_api.build_info import build_info, package_version
from llm_api.config import Settings, SettingsError
from llm_api.db.lifecycle import DatabaseStartupError, migrate_patiently
from llm_api.db.migrate import MigrationError
from llm_api.embedded_pg import EmbeddedPostgres, EmbeddedPostgresError, find_pg_bindir
from llm_api.observability.logging import configure_logging
from llm_api.providers.sources import ProviderConfigError, configured
from llm_api.server.routing import RoutingError
from llm_api.server.workers import serve_workers

log = logging.getLogger("llm_api")


class ListenError(RuntimeError):
    """The HTTP port cannot be bound (in use, not permitted, no such address)."""


class MissingSecret(RuntimeError):
    """LLM_API_SECRET_KEY is required outside the embedded mode."""


# Failures that stop start-up with a one-line message rather than a traceback.
_STARTUP_ERRORS = (
    EmbeddedPostgresError,
    DatabaseStartupError,
    MigrationError,
    RoutingError,
    ListenError,
    MissingSecret,
    ProviderConfigError,
)
_LISTEN_ERRNOS = (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env(os.environ)
        configured(settings)  # an unusable providers file is bad configuration too: one line before anything starts
    except (SettingsError, ProviderConfigError) as error:
        print(f"llm-api: invalid configuration: {error}", file=sys.stderr)
        return 2
    if args.command == "serve":  # command-line options win over the environment
        options = {"http_host": args.host, "http_port": args.port, "workers": args.workers}
        settings = settings.model_copy(update={name: value for name, value in options.items() if value is not None})
    configure_logging(settings.log_level, settings.log_format)
    try:
        with _database(settings) as dsn:
            embedded = not settings.db_dsn
            settings = settings.model_copy(update={"db_dsn": dsn})
            if args.command == "migrate":
                return _migrate(settings)
            return _serve(settings.model_copy(update={"secret_key": _master_secret(settings, embedded)}))
    except _STARTUP_ERRORS as error:
        print(f"llm-api: {error}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llm-api", description="An OpenAI-compatible LLM gateway.")
    parser.add_argument("--version", action="version", version=f"llm-api {package_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP service (HTTP_HOST, HTTP_PORT)")
    serve.add_argument("--host", help="overrides HTTP_HOST")
    serve.add_argument("--port", type=int, help="overrides HTTP_PORT")
    serve.add_argument("--workers", type=_worker_count, help="worker processes on the one port (overrides WORKERS; default 1)")
    commands.add_parser("migrate", help="apply pending database migrations and exit")
    return parser


def _worker_count(text: str) -> int:
    count = int(text)
    if not 1 <= count <= 64:
        raise argparse.ArgumentTypeError("must be between 1 and 64")
    return count


@contextmanager
def _database(settings: Settings) -> Iterator[str]:
    """The configured DSN, or an embedded PostgreSQL in LLM_API_DATA_DIR for as long as the block runs."""
    if settings.db_dsn:
        yield settings.db_dsn
        return
    data_dir = settings.data_dir.resolve()
    log.info("DB_POSTGRESQL_WRITE_DSN is not set: using an embedded PostgreSQL in %s", data_dir)
    with EmbeddedPostgres(data_dir, bindir=find_pg_bindir(os.environ)) as dsn:
        yield dsn


def _master_secret(settings: Settings, embedded: bool) -> str:
    """LLM_API_SECRET_KEY; in the embedded mode, one generated on first start and kept beside the data.

    With an external database there is no safe default: a secret that is not configured would
    either be shared by every installation or change on restart, making stored keys unusable.
    """
    if settings.secret_key:
        return settings.secret_key
    if not embedded:
        raise MissingSecret(
            "LLM_API_SECRET_KEY must be set (32 or more random characters, e.g. `openssl rand -base64 48`) "
            "when DB_POSTGRESQL_WRITE_DSN is set; keep it: stored keys are sealed with it"
        )
    path = Path(settings.data_dir).resolve() / "secret.key"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="utf-8").strip()
    secret = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(secret + "\n")
    log.info("generated the master secret in %s", path)
    return secret


def _serve(settings: Settings) -> int:
    address = f"http://{settings.http_host}:{settings.http_port}"
    try:
        if settings.workers > 1:
            _migrate(settings)  # once, here: a database problem is one line, not N workers failing to boot
            log.info("llm-api %s listening on %s with %d workers", build_info(settings).version, address, settings.workers)
            serve_workers(settings)
            return 0
        from llm_api.app import create_app  # imported late: `llm-api migrate` does not need the web app

        web.run_app(
            create_app(settings),
            host=settings.http_host,
            port=settings.http_port,
            access_log=None,  # our access-log middleware writes one line per request
            shutdown_timeout=settings.shutdown_grace_period,
            print=lambda _: log.info("llm-api %s listening on %s", build_info(settings).version, address),
        )
    except OSError as error:
        if error.errno not in _LISTEN_ERRNOS:
            raise
        raise ListenError(f"cannot listen on {settings.http_host}:{settings.http_port}: {os.strerror(error.errno)}") from None
    return 0


def _migrate(settings: Settings) -> int:
    applied = asyncio.run(migrate_patiently(settings))
    if applied:
        for migration in applied:
            log.info("applied migration %04d_%s", migration.version, migration.name)
    else:
        log.info("the database schema is up to date")
    return 0

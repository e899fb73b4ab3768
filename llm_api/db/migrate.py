"""Applying migrations/NNNN_name.sql in order, once each, safely from several processes at once.

Every migration runs in its own transaction together with the row that records it. A PostgreSQL
advisory lock serialises concurrent runs (two workers starting together): the second waits, then
finds nothing left to do. A migration file edited after it was applied is refused, because the
database would no longer match what the file says.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import aiopg

log = logging.getLogger(__name__)

# An arbitrary 64-bit constant naming "llm-api schema migrations" among advisory locks.
_LOCK_KEY = 7_316_202_611_254_001
_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_BOOTSTRAP = """
CREATE SCHEMA IF NOT EXISTS llm_api;
CREATE TABLE IF NOT EXISTS llm_api.schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
"""


class MigrationError(RuntimeError):
    """The migrations on disk and in the database disagree, or one failed."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()


def default_directory() -> Path:
    """The migrations shipped with the package (``llm_api/migrations`` links to ``migrations/``)."""
    return Path(str(files("llm_api") / "migrations"))


def discover(directory: Path) -> list[Migration]:
    """The migration files, ordered; versions must run 1, 2, 3 ... without gaps."""
    found = []
    for path in sorted(directory.iterdir()):
        match = _FILE_NAME.match(path.name)
        if match is None:
            if path.suffix == ".sql":
                raise MigrationError(f"{path.name}: migration files are named NNNN_lowercase_name.sql")
            continue
        # Bytes, not read_text(): newline translation would make the checksum differ from the file's own.
        found.append(Migration(int(match.group(1)), match.group(2), path.read_bytes().decode("utf-8")))
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise MigrationError(f"migration {expected:04d} is missing (found {migration.version:04d})")
    return found


async def migrate(dsn: str, directory: Path | None = None) -> list[Migration]:
    """Apply the pending migrations; return the ones applied now (empty when already up to date)."""
    migrations = discover(directory or default_directory())
    async with aiopg.connect(dsn, enable_hstore=False) as conn, conn.cursor() as cur:
        await cur.execute("SELECT pg_advisory_lock(%(key)s)", {"key": _LOCK_KEY})
        try:
            await cur.execute(_BOOTSTRAP)
            await cur.execute("SELECT version, name, checksum FROM llm_api.schema_migrations ORDER BY version")
            applied = {row[0]: (row[1], row[2]) for row in await cur.fetchall()}
            _check_history(migrations, applied)
            pending = [m for m in migrations if m.version not in applied]
            for migration in pending:
                await _apply(cur, migration)
            return pending
        finally:
            await cur.execute("SELECT pg_advisory_unlock(%(key)s)", {"key": _LOCK_KEY})


def _check_history(migrations: list[Migration], applied: dict[int, tuple[str, str]]) -> None:
    known = {m.version: m for m in migrations}
    newer = sorted(set(applied) - set(known))
    if newer:
        raise MigrationError(
            f"the database has migration {newer[-1]:04d}, which this version of llm-api does not know; "
            "run a newer llm-api or restore a matching backup"
        )
    for version, (name, checksum) in applied.items():
        if known[version].checksum != checksum:
            raise MigrationError(
                f"migration {version:04d}_{name}.sql changed after it was applied; "
                "add a new migration instead of editing an applied one"
            )


async def _apply(cur: aiopg.Cursor, migration: Migration) -> None:
    label = f"{migration.version:04d}_{migration.name}"
    log.info("applying migration %s", label)
    await cur.execute("BEGIN")
    try:
        await cur.execute(migration.sql)
        await cur.execute(
            "INSERT INTO llm_api.schema_migrations (version, name, checksum) VALUES (%(v)s, %(n)s, %(c)s)",
            {"v": migration.version, "n": migration.name, "c": migration.checksum},
        )
    except Exception as error:
        await cur.execute("ROLLBACK")
        raise MigrationError(f"migration {label} failed: {error}".strip()) from error
    await cur.execute("COMMIT")

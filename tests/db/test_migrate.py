"""Migrations against fresh databases: applied once, safe from concurrent runs, refused when inconsistent."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import psycopg2
import pytest

from llm_api.db.migrate import _LOCK_KEY, MigrationError, default_directory, discover, migrate
from tests.sql import query

INITIAL = Path(__file__).resolve().parents[2] / "migrations" / "0001_initial.sql"
#: Every migration shipped, in order: what a fresh database ends up with.
SHIPPED = discover(default_directory())


def applied_rows(dsn: str) -> list[tuple]:
    return query(dsn, "SELECT version, name, checksum FROM llm_api.schema_migrations ORDER BY version")


def installation_ids(dsn: str) -> list[str]:
    return [row[0] for row in query(dsn, "SELECT value FROM llm_api.service_state WHERE key = 'installation_id'")]


def table_exists(dsn: str, name: str) -> bool:
    return query(dsn, "SELECT to_regclass(%s) IS NOT NULL", name)[0][0]


@contextmanager
def holding_migration_lock(dsn: str):
    """Hold the migrations' advisory lock, so concurrent runs queue up behind it; yields a waiter counter."""
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))

        def waiting() -> int:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                )
                return cur.fetchone()[0]

        yield waiting
    finally:
        conn.close()  # releases the lock


def migrations_dir(tmp_path: Path, files: dict[str, str]) -> Path:
    directory = tmp_path / "migrations"
    directory.mkdir(exist_ok=True)
    for name, sql in files.items():
        (directory / name).write_text(sql, encoding="utf-8")
    return directory


def with_initial(tmp_path: Path, **more: str) -> Path:
    directory = migrations_dir(tmp_path, more)
    shutil.copy(INITIAL, directory / INITIAL.name)
    return directory


# --- the shipped migrations ----------------------------------------------------------------------


async def test_fresh_database_gets_the_initial_migration(make_database):
    dsn = make_database()
    applied = await migrate(dsn)
    assert [(m.version, m.name) for m in applied] == [(m.version, m.name) for m in SHIPPED]
    assert applied[0].name == "initial"
    assert default_directory().resolve() == INITIAL.parent.resolve()
    checksum = hashlib.sha256(INITIAL.read_bytes()).hexdigest()
    assert applied_rows(dsn)[0] == (1, "initial", checksum)
    assert [row[0] for row in applied_rows(dsn)] == [m.version for m in SHIPPED]
    [installation_id] = installation_ids(dsn)
    assert re.fullmatch(r"inst_[0-9a-f]{16}", installation_id)


async def test_running_again_applies_nothing_and_keeps_the_installation(make_database):
    dsn = make_database()
    await migrate(dsn)
    before_rows, before_ids = applied_rows(dsn), installation_ids(dsn)
    assert await migrate(dsn) == []
    assert applied_rows(dsn) == before_rows
    assert installation_ids(dsn) == before_ids


def test_two_migrate_processes_at_once(make_database):
    dsn = make_database()
    env = {**os.environ, "DB_POSTGRESQL_WRITE_DSN": dsn, "LOG_LEVEL": "info", "LOG_FORMAT": "text"}
    with holding_migration_lock(dsn) as waiting:
        processes = [
            subprocess.Popen(
                [sys.executable, "-m", "llm_api", "migrate"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            for _ in range(2)
        ]
        try:
            deadline = time.monotonic() + 30
            while waiting() < 2:  # both are queued on the lock: they really run at the same time
                assert all(p.poll() is None for p in processes), [p.communicate() for p in processes]
                assert time.monotonic() < deadline, "the migrate processes never reached the lock"
                time.sleep(0.05)
        except BaseException:
            for p in processes:
                p.kill()
            raise
    outputs = [p.communicate(timeout=30)[0] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    assert sum("applied migration 0001_initial" in out for out in outputs) == 1, outputs
    assert sum("up to date" in out for out in outputs) == 1, outputs
    assert [row[0] for row in applied_rows(dsn)] == [m.version for m in SHIPPED]
    assert len(installation_ids(dsn)) == 1


async def test_two_migrate_coroutines_at_once(make_database):
    dsn = make_database()
    with holding_migration_lock(dsn) as waiting:
        runs = [asyncio.create_task(migrate(dsn)) for _ in range(2)]
        deadline = time.monotonic() + 10
        while waiting() < 2:
            assert not any(run.done() for run in runs)
            assert time.monotonic() < deadline, "the migrations never reached the lock"
            await asyncio.sleep(0.05)
    results = await asyncio.wait_for(asyncio.gather(*runs), 10)
    assert sorted(len(result) for result in results) == [0, len(SHIPPED)]
    assert [row[0] for row in applied_rows(dsn)] == [m.version for m in SHIPPED]
    assert len(installation_ids(dsn)) == 1


# --- refusing inconsistent histories -------------------------------------------------------------


async def test_an_applied_migration_edited_afterwards_is_refused(make_database, tmp_path):
    dsn = make_database()
    directory = with_initial(tmp_path)
    await migrate(dsn, directory)
    (directory / INITIAL.name).write_text(INITIAL.read_text() + "\n-- edited\n", encoding="utf-8")
    with pytest.raises(MigrationError, match="changed"):
        await migrate(dsn, directory)
    assert [row[0] for row in applied_rows(dsn)] == [1]


async def test_a_database_ahead_of_the_code_is_refused(make_database, tmp_path):
    dsn = make_database()
    newer = with_initial(tmp_path, **{"0002_extra.sql": "CREATE TABLE llm_api.extra (id int);"})
    assert len(await migrate(dsn, newer)) == 2
    (newer / "0002_extra.sql").unlink()
    with pytest.raises(MigrationError, match="does not know"):
        await migrate(dsn, newer)
    assert [row[0] for row in applied_rows(dsn)] == [1, 2]


async def test_a_gap_in_the_versions_is_refused(make_database, tmp_path):
    dsn = make_database()
    directory = with_initial(tmp_path, **{"0003_later.sql": "SELECT 1;"})
    with pytest.raises(MigrationError, match="missing"):
        await migrate(dsn, directory)
    assert not table_exists(dsn, "llm_api.schema_migrations")  # refused before touching the database


async def test_a_failing_migration_rolls_back_entirely(make_database, tmp_path):
    dsn = make_database()
    broken = "CREATE TABLE llm_api.partial (id int);\nINSERT INTO llm_api.partial VALUES (1);\nSELECT * FROM no_such_table;\n"
    directory = with_initial(tmp_path, **{"0002_partial.sql": broken})
    with pytest.raises(MigrationError, match="0002_partial"):
        await migrate(dsn, directory)
    assert [row[0] for row in applied_rows(dsn)] == [1]  # 0001 stays applied
    assert not table_exists(dsn, "llm_api.partial")  # none of 0002's effects survive
    assert len(installation_ids(dsn)) == 1

    # The lock was released and the database is usable: a fixed 0002 applies on the next run.
    (directory / "0002_partial.sql").write_text("CREATE TABLE llm_api.partial (id int);\n", encoding="utf-8")
    assert [m.version for m in await migrate(dsn, directory)] == [2]
    assert table_exists(dsn, "llm_api.partial")


@pytest.mark.parametrize("name", ["1_initial.sql", "0002-extra.sql", "0002_Extra.sql", "00002_extra.sql"])
async def test_a_badly_named_sql_file_is_refused(make_database, tmp_path, name):
    dsn = make_database()
    directory = with_initial(tmp_path, **{name: "SELECT 1;"})
    with pytest.raises(MigrationError, match="NNNN_lowercase_name"):
        await migrate(dsn, directory)
    assert not table_exists(dsn, "llm_api.schema_migrations")


def test_files_other_than_sql_are_ignored(tmp_path):
    directory = with_initial(tmp_path, **{"README.md": "notes", "0002_draft.sql.bak": "junk"})
    assert [(m.version, m.name) for m in discover(directory)] == [(1, "initial")]

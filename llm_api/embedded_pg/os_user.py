"""The operating-system user the PostgreSQL binaries run as, and what that user can reach.

PostgreSQL refuses to run as root; when llm-api runs as root, every PostgreSQL binary runs as
the unprivileged user ``nobody`` instead, which must be able to enter every directory on the way
to the binaries and the data.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from llm_api.embedded_pg.errors import EmbeddedPostgresError

UNPRIVILEGED_USER = "nobody"


@dataclass(frozen=True)
class PgUser:
    """The OS user the PostgreSQL binaries run as.

    ``switch`` is None when running as the invoking (non-root) user; otherwise the argv
    prefix that switches to the unprivileged user.
    """

    name: str
    uid: int
    gid: int
    switch: tuple[str, ...] | None

    @classmethod
    def for_current_process(cls) -> PgUser:
        if os.geteuid() != 0:
            # No passwd lookup: containers often run under a uid that has no entry.
            return cls(str(os.geteuid()), os.geteuid(), os.getegid(), None)
        # PostgreSQL refuses to run as root (a server bug would otherwise own the machine).
        try:
            entry = pwd.getpwnam(UNPRIVILEGED_USER)
        except KeyError:
            raise EmbeddedPostgresError(
                f"llm-api runs as root, so the embedded PostgreSQL must run as the unprivileged "
                f"user '{UNPRIVILEGED_USER}', which does not exist on this system. Create it, run "
                "llm-api as a non-root user, or configure an external database DSN."
            ) from None
        runuser = shutil.which("runuser") or shutil.which("runuser", path="/usr/sbin:/sbin")
        if runuser is None:
            raise EmbeddedPostgresError(
                "llm-api runs as root and needs `runuser` (util-linux) to start the embedded "
                f"PostgreSQL as '{UNPRIVILEGED_USER}', but it is not installed. Install "
                "util-linux, run llm-api as a non-root user, or configure an external database DSN."
            )
        return cls(entry.pw_name, entry.pw_uid, entry.pw_gid, (runuser, "-u", entry.pw_name, "--"))

    def argv(self, argv: Sequence[str]) -> list[str]:
        return [*(self.switch or ()), *argv]

    def give(self, path: Path) -> None:
        """chown *path* to this user when we are root (otherwise it is already ours)."""
        if self.switch is not None:
            os.chown(path, self.uid, self.gid)


def child_env() -> dict[str, str]:
    # PG* variables (PGDATA, PGPORT, PGOPTIONS, ...) from the operator's shell would silently
    # change what initdb/pg_ctl/postgres do; this cluster is fully described by its arguments.
    return {key: value for key, value in os.environ.items() if not key.startswith("PG")}


def first_unreachable(pg_user: PgUser, leaves: Iterable[Path]) -> str | None:
    """The first directory on the way to any of *leaves* that *pg_user* cannot enter, or None.

    Asked of the kernel as that user (`test -x`), so ACLs, root-squashed NFS etc. count.
    Parents come before children, so the first failure is the directory to fix.
    """
    if pg_user.switch is None:
        return None
    dirs: list[str] = []
    for leaf in leaves:
        for directory in [*reversed(leaf.parents), leaf]:
            if str(directory) not in dirs:
                dirs.append(str(directory))
    script = 'for d do test -x "$d" || { printf "%s" "$d"; exit 1; }; done'
    result = subprocess.run(
        pg_user.argv(["/bin/sh", "-c", script, "sh", *dirs]),
        check=False,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        cwd="/",
        env=child_env(),
        timeout=60,
    )
    return None if result.returncode == 0 else (result.stdout.strip() or "?")

"""Zero-setup mode: a private PostgreSQL cluster inside the service's data directory.

When no database DSN is configured, ``llm-api serve`` uses :class:`EmbeddedPostgres` to run
its own PostgreSQL server: the cluster lives in ``<data_dir>/postgres`` (so data survives
restarts), the server log in ``<data_dir>/postgres.log`` and the generated password of the
``llm_api`` role in ``<data_dir>/postgres.password``.

The server listens on a fresh free port on 127.0.0.1 only and has no unix socket (socket
paths under a deep data dir can exceed the 107-byte limit). PostgreSQL refuses to run as
root, so when llm-api runs as root every PostgreSQL binary runs as ``nobody`` instead.

Typical use::

    with EmbeddedPostgres(Path(".llm-api"), bindir=find_pg_bindir(os.environ)) as dsn:
        ...  # connect with psycopg2/aiopg using dsn
"""

from llm_api.embedded_pg.binaries import find_pg_bindir
from llm_api.embedded_pg.errors import EmbeddedPostgresError
from llm_api.embedded_pg.server import EmbeddedPostgres

__all__ = ["EmbeddedPostgres", "EmbeddedPostgresError", "find_pg_bindir"]

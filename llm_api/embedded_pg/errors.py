"""The one error of the embedded PostgreSQL."""


class EmbeddedPostgresError(RuntimeError):
    """Any failure of the embedded PostgreSQL; the message says what happened and what to do."""

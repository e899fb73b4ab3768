"""The tables, as SQLAlchemy Core objects, for building statements. migrations/ holds the DDL."""

import sqlalchemy as sa

SCHEMA = "llm_api"
metadata = sa.MetaData(schema=SCHEMA)

#: Facts about this installation that never change once written (its id, when it was set up).
service_state = sa.Table(
    "service_state",
    metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

schema_migrations = sa.Table(
    "schema_migrations",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("checksum", sa.Text, nullable=False),
    sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
)

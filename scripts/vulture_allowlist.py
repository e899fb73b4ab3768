"""Names vulture reports as unused that a framework uses by name (read by scripts/dead_code.py, never run)."""

# ruff: noqa: B018, F821 -- bare names for vulture to see used
# pydantic reads a model's configuration from its class attribute.
model_config
# datamodel-code-generator names these in the generated models (pyproject.toml's base-class, type-overrides).
ApiModel
UriText
# openapi-core reads a request's host_url from the view we give it (contract/strict.py).
host_url
# psycopg2 connection attribute, set to take statements out of a transaction.
_.autocommit
# gunicorn calls its application's load_config, and aiohttp's worker reads _access_log_enabled.
_.load_config
_._access_log_enabled
# asyncio calls a protocol's connection_made, connection_lost and data_received.
_.connection_made
_.connection_lost
_.data_received
# aiohttp sends a response's content_length as its Content-Length header.
_.content_length
# pytest skips collecting a function whose __test__ is False.
_.__test__

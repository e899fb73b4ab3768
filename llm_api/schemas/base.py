"""The base class of every generated model.

datamodel-code-generator writes the models (``models.py``); this hand-written base carries the
configuration they all share, so the generated file never needs editing.
"""

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict
from rfc3986_validator import validate_rfc3986


class ApiModel(BaseModel):
    """Base of the generated request and response models.

    ``allow_inf_nan=False``: JSON has no NaN or Infinity, PostgreSQL's JSONB cannot store them, and
    the JSON Schema in openapi.yaml does not admit them; a body that smuggles one in (Python's and
    pydantic's parsers both accept the bare tokens) must be refused, not stored or forwarded.
    """

    model_config = ConfigDict(allow_inf_nan=False)


def _rfc3986_uri(value: str) -> str:
    # The check openapi-core applies to `format: uri` (jsonschema's, with rfc3986-validator): the models must
    # refuse what it refuses, or strict mode answers 500 and production stores a base URL that is no URI.
    if not validate_rfc3986(value, rule="URI"):
        raise ValueError("not a URI (RFC 3986: ASCII only, non-ASCII characters percent-encoded)")
    return value


# `format: uri` strings (datamodel-codegen's type-overrides in pyproject.toml put it on the fields that have it).
UriText = Annotated[str, AfterValidator(_rfc3986_uri)]

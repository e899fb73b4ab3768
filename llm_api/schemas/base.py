"""The base class of every generated model.

datamodel-code-generator writes the models (``models.py``); this hand-written base carries the
configuration they all share, so the generated file never needs editing.
"""

from pydantic import BaseModel, ConfigDict


class ApiModel(BaseModel):
    """Base of the generated request and response models.

    ``allow_inf_nan=False``: JSON has no NaN or Infinity, PostgreSQL's JSONB cannot store them, and
    the JSON Schema in openapi.yaml does not admit them; a body that smuggles one in (Python's and
    pydantic's parsers both accept the bare tokens) must be refused, not stored or forwarded.
    """

    model_config = ConfigDict(allow_inf_nan=False)

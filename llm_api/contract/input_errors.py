"""Turning a pydantic ValidationError into one clear 400 that names the offending field.

pydantic reports every branch of a failed union; the caller needs the one error that explains the
problem, with a ``param`` path such as ``messages[0].role``.
"""

from __future__ import annotations

import inspect

from pydantic import BaseModel, ValidationError

from llm_api.errors import InvalidRequest
from llm_api.schemas import models

# Location parts pydantic adds for union branches and dict keys; they are not field names.
_MODEL_NAMES = frozenset(
    name for name, value in vars(models).items() if inspect.isclass(value) and issubclass(value, BaseModel)
)
_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "none", "list", "dict", "[key]"})


def invalid_input(error: ValidationError, *, root: str | None = None) -> InvalidRequest:
    """The most specific problem in ``error`` as an InvalidRequest.

    ``root`` is the param to name when the problem is the input as a whole (``body``).
    """
    problems = [(_clean_location(problem), problem) for problem in error.errors()]
    location, problem = max(problems, key=lambda item: len(item[0]))  # the deepest is the most specific
    kind = problem["type"]
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        location = (*location, problem["ctx"]["discriminator"].strip("'\""))
    param = format_location(location) or root
    if kind == "json_invalid":
        return InvalidRequest(f"The body is not valid JSON: {problem['ctx']['error']}.", param=root, code="invalid_json")
    if kind == "missing":
        return InvalidRequest(f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter")
    if kind == "extra_forbidden":
        return InvalidRequest(f"Unrecognized argument: '{param}'.", param=param, code="unknown_parameter")
    subject = f"'{param}'" if param else "the request"
    return InvalidRequest(f"Invalid value for {subject}: {problem['msg']}.", param=param, code="invalid_value")


def format_location(location: tuple) -> str | None:
    """``("messages", 0, "role")`` -> ``messages[0].role``."""
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or None


def _clean_location(problem: dict) -> tuple:
    return tuple(part for part in problem["loc"] if not _is_branch_tag(part))


def _is_branch_tag(part: object) -> bool:
    if not isinstance(part, str):
        return False
    return part in _MODEL_NAMES or part in _TYPE_TAGS or "[" in part or part.startswith(("constrained-", "function-"))

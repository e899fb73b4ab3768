"""Turning a pydantic ValidationError into one clear 400 that names the offending field.

pydantic reports every branch of a failed union, and its error locations mix field names with
union branch labels (``str``, ``ChatUserMessage``, a discriminator's value such as ``user``). The
caller needs the one error that explains the problem, with a ``param`` path such as
``messages[0].role``: the location is cleaned by walking the input itself and keeping only the
parts that lead somewhere in it.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from llm_api.errors import InvalidRequest

_NOWHERE = object()


def invalid_input(error: ValidationError, data: Any, *, root: str | None = None) -> InvalidRequest:
    """The most specific problem in ``error`` as an InvalidRequest.

    ``data`` is the input that was validated (parsed JSON, or the parameter dict); ``root`` is the
    param to name when the problem is the input as a whole (``body``).
    """
    errors = error.errors()
    # Problems of union branches the input's tag rules out say nothing about the input: a function_call
    # item with a bad `name` was reported as "items[0].type: Input should be 'message'".
    wrong = _wrong_branches(data, errors)
    errors = [problem for problem in errors if not any(problem["loc"][: len(branch)] == branch for branch in wrong)] or errors
    problems = [(_location_in(data, problem), problem) for problem in errors]
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


def integral_floats(error: ValidationError) -> bool:
    """True when some error is an integer field given a number like ``5.0``."""
    return any(_is_integral_float(problem) for problem in error.errors())


def with_integral_floats_as_ints(data: Any, error: ValidationError) -> Any:
    """``data`` (parsed JSON) with every integral float that an error points at turned into an int."""
    for problem in error.errors():
        if _is_integral_float(problem):
            location = _location_in(data, problem)
            if location:
                container = data
                for part in location[:-1]:
                    container = container[part]
                container[location[-1]] = int(problem["input"])
    return data


def _is_integral_float(problem: dict) -> bool:
    value = problem.get("input")
    return problem["type"] == "int_type" and isinstance(value, float) and value.is_integer()


def format_location(location: tuple) -> str | None:
    """``("messages", 0, "role")`` -> ``messages[0].role``."""
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or None


def _location_in(data: Any, problem: dict) -> tuple:
    """The parts of pydantic's location that are keys or indexes of the input, in order."""
    kept: list = []
    current = data
    parts = problem["loc"]
    for index, part in enumerate(parts):
        step = _step(current, part)
        if step is not _NOWHERE:
            kept.append(part)
            current = step
        elif problem["type"] == "missing" and index == len(parts) - 1 and isinstance(part, str):
            kept.append(part)  # a missing field is, by definition, not in the input
    return tuple(kept)


def _wrong_branches(data: Any, errors: list[dict]) -> set[tuple]:
    """Union branches whose constant tag (``"type": "function_call"``) the input does not have, when a
    sibling branch of the same union fits the tag and has a problem inside one of its fields."""
    mismatched = {
        problem["loc"][:-1]
        for problem in errors
        if problem["type"] == "literal_error" and len(problem["loc"]) >= 2 and _ends_in_label(data, problem["loc"][:-1])
    }
    fitting_unions = set()
    for problem in errors:
        loc = problem["loc"]
        for end in range(2, len(loc)):  # loc[:end] is a branch with a field after it
            branch = loc[:end]
            if branch not in mismatched and _ends_in_label(data, branch):
                fitting_unions.add(branch[:-1])
    return {branch for branch in mismatched if branch[:-1] in fitting_unions}


def _ends_in_label(data: Any, loc: tuple) -> bool:
    """True when the last part of ``loc`` is no key or index of the input: a union branch's label."""
    current, stepped = data, True
    for part in loc:
        step = _step(current, part)
        stepped = step is not _NOWHERE
        if stepped:
            current = step
    return not stepped


def _step(current: Any, part: Any) -> Any:
    if isinstance(current, dict) and isinstance(part, str) and part in current:
        return current[part]
    if isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
        return current[part]
    return _NOWHERE

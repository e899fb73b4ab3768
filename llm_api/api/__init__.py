"""HTTP handlers, one module per resource.

A handler is a public coroutine function named after its operationId in snake_case
(``getHealth`` -> ``get_health``); routing finds them by that name. Helpers in these modules are
private (``_name``), so that every public function is an operation.
"""

from __future__ import annotations

import inspect
from types import ModuleType

from llm_api.api import admin_providers, auth, chat, conversations, health, meta, models, projects, settings

MODULES: tuple[ModuleType, ...] = (admin_providers, auth, chat, conversations, health, meta, models, projects, settings)


def handlers(modules: tuple[ModuleType, ...] = MODULES) -> dict:
    """The handlers of the given modules, by function name."""
    found = {}
    for module in modules:
        for name, value in vars(module).items():
            if inspect.iscoroutinefunction(value) and value.__module__ == module.__name__ and not name.startswith("_"):
                if name in found:
                    raise ValueError(f"two handlers are named {name}()")
                found[name] = value
    return found

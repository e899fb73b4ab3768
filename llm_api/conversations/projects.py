"""Projects of one user: names unique among the user's active projects, soft deletion."""

from __future__ import annotations

from typing import Any

from pydantic import MISSING

from llm_api.db import projects
from llm_api.db.paging import Page
from llm_api.db.pool import Database
from llm_api.errors import NotFound
from llm_api.ids import new_id
from llm_api.schemas import models
from llm_api.schemas.values import first_given, given


class Projects:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, user_id: str, request: models.ProjectCreateRequest) -> dict:
        return await projects.insert(
            self._db,
            project_id=new_id("proj"),
            user_id=user_id,
            name=_name(request.name),
            instruction=given(request.instruction),
            is_favorite=given(request.is_favorite) or False,
        )

    async def get(self, user_id: str, project_id: str) -> dict:
        project = await projects.get(self._db, user_id=user_id, project_id=project_id)
        if project is None:
            raise _missing(project_id)
        return project

    async def instruction(self, user_id: str, project_id: str) -> str | None:
        """The project's instruction; None when it has none or is gone (deleted since it was filed)."""
        project = await projects.get(self._db, user_id=user_id, project_id=project_id)
        return project["instruction"] if project is not None else None

    async def page(self, user_id: str, params: models.ListProjectsParams) -> tuple[Page, int]:
        """A page of the user's projects, and how many they have in all."""
        return await projects.page(self._db, user_id=user_id, after=given(params.after), order=params.order, limit=params.limit)

    async def update(self, user_id: str, project_id: str, request: models.ProjectUpdateRequest) -> dict:
        changes: dict[str, Any] = {}
        if request.name is not MISSING:
            changes["name"] = _name(request.name)
        if request.instruction is not MISSING:
            changes["instruction"] = request.instruction
        favorite = first_given(request.is_favorite, request.favorite)
        if favorite is not None:
            changes["is_favorite"] = favorite
        archived = first_given(request.is_archived, request.archived)
        if archived is not None:
            changes["archived"] = archived
        updated = await projects.update(self._db, user_id=user_id, project_id=project_id, changes=changes)
        if updated is None:
            raise _missing(project_id)
        return updated

    async def delete(self, user_id: str, project_id: str) -> None:
        async with self._db.transaction() as tx:
            if not await projects.delete(tx, user_id=user_id, project_id=project_id):
                raise _missing(project_id)


def _name(name: str) -> str:
    # Only plain spaces: the spec's pattern guarantees a character that is neither a control
    # character nor a space, so the trimmed name is never empty.
    return name.strip(" ")


def _missing(project_id: str) -> NotFound:
    return NotFound(f"Project {project_id} not found.", param="project_id", code="project_not_found")

"""Projects: a name and an instruction shared by the conversations filed under them."""

from __future__ import annotations

from aiohttp import web

from llm_api.app_keys import PRINCIPAL, PROJECTS
from llm_api.schemas import models
from llm_api.schemas.values import unix
from llm_api.server.responses import json_response
from llm_api.server.validation import body_of, params_of


async def create_project(request: web.Request) -> web.Response:
    project = await request.app[PROJECTS].create(request[PRINCIPAL].user_id, body_of(request, models.ProjectCreateRequest))
    return json_response(_project(project), status=201)


async def list_projects(request: web.Request) -> web.Response:
    params = params_of(request, models.ListProjectsParams)
    page, total = await request.app[PROJECTS].page(request[PRINCIPAL].user_id, params)
    return json_response(
        models.ProjectList(
            object="list",
            data=[_project(row) for row in page.rows],
            has_more=page.has_more,
            total=total,
            first_id=page.first_id,
            last_id=page.last_id,
        )
    )


async def get_project(request: web.Request) -> web.Response:
    project_id = params_of(request, models.GetProjectParams).project_id
    return json_response(_project(await request.app[PROJECTS].get(request[PRINCIPAL].user_id, project_id)))


async def update_project(request: web.Request) -> web.Response:
    project_id = params_of(request, models.UpdateProjectParams).project_id
    body = body_of(request, models.ProjectUpdateRequest)
    return json_response(_project(await request.app[PROJECTS].update(request[PRINCIPAL].user_id, project_id, body)))


async def delete_project(request: web.Request) -> web.Response:
    project_id = params_of(request, models.DeleteProjectParams).project_id
    await request.app[PROJECTS].delete(request[PRINCIPAL].user_id, project_id)
    return json_response(models.ProjectDeleted(id=project_id, object="project.deleted", deleted=True))


def _project(row: dict) -> models.Project:
    return models.Project(
        id=row["id"],
        object="project",
        name=row["name"],
        instruction=row["instruction"],
        is_favorite=row["is_favorite"],
        is_archived=row["archived_at"] is not None,
        archived_at=unix(row["archived_at"]),
        created_at=unix(row["created_at"]),
        updated_at=unix(row["updated_at"]),
    )

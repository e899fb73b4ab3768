"""Admin: the providers behind the models, from every source (file, environment, this API)."""

from __future__ import annotations

from aiohttp import web

from llm_api.app_keys import PROVIDERS
from llm_api.schemas import models
from llm_api.server.responses import json_response
from llm_api.server.validation import body_of, params_of


async def create_provider(request: web.Request) -> web.Response:
    providers = request.app[PROVIDERS]
    row = await providers.create(body_of(request, models.ProviderCreateRequest))
    return json_response(providers.view(row), status=201)


async def list_providers(request: web.Request) -> web.Response:
    providers = request.app[PROVIDERS]
    return json_response(models.ProviderList(object="list", data=[providers.view(row) for row in await providers.all()]))


async def get_provider(request: web.Request) -> web.Response:
    providers = request.app[PROVIDERS]
    return json_response(providers.view(await providers.get(params_of(request, models.GetProviderParams).provider_id)))


async def update_provider(request: web.Request) -> web.Response:
    providers = request.app[PROVIDERS]
    provider_id = params_of(request, models.UpdateProviderParams).provider_id
    return json_response(providers.view(await providers.update(provider_id, body_of(request, models.ProviderUpdateRequest))))


async def delete_provider(request: web.Request) -> web.Response:
    provider_id = params_of(request, models.DeleteProviderParams).provider_id
    await request.app[PROVIDERS].delete(provider_id)
    return json_response(models.ProviderDeleted(id=provider_id, object="provider.deleted", deleted=True))

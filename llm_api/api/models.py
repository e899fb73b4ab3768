"""Models the caller can use, as the active providers serve them.

With no provider configured the list is empty, which is an answer, not an error (OpenAI clients
list models on start-up).
"""

from __future__ import annotations

from aiohttp import web

from llm_api.app_keys import PRINCIPAL, PROVIDERS
from llm_api.errors import NotFound
from llm_api.providers.capabilities import capabilities, supported_parameters
from llm_api.providers.registry import Registry, Route
from llm_api.schemas import models
from llm_api.schemas.values import given
from llm_api.server.responses import json_response
from llm_api.server.validation import params_of


async def list_models(request: web.Request) -> web.Response:
    registry = request.app[PROVIDERS].registry
    if given(params_of(request, models.ListModelsParams).X_Provider_Data):
        # Jan's variant: one entry per provider serving the model, with the provider named.
        data = [
            _model(route, provider_id=route.provider.id, provider_vendor=route.provider.vendor, provider_name=route.provider.name)
            for _, routes in registry.models()
            for route in routes
        ]
    else:
        data = [_model(routes[0]) for _, routes in registry.models()]
    return json_response(models.ModelList(object="list", data=data))


async def retrieve_model(request: web.Request) -> web.Response:
    model_id = params_of(request, models.RetrieveModelParams).model_id
    return json_response(_model(_routes(request.app[PROVIDERS].registry, model_id, "model_id")[0]))


async def get_model_catalog(request: web.Request) -> web.Response:
    model_id = params_of(request, models.GetModelCatalogParams).model_public_id
    registry = request.app[PROVIDERS].registry
    routes = _routes(registry, model_id, "model_public_id")
    first = routes[0]
    return json_response(
        models.ModelCatalogEntry(
            id=first.public_id,
            object="model.catalog",
            display_name=first.upstream_id,
            owned_by=first.provider.name,
            created=first.provider.created,
            context_length=None,
            max_completion_tokens=None,
            capabilities=models.ModelCapabilities(**capabilities(first.provider)),
            aliases=registry.aliases_of(first.public_id),
            supported_parameters=supported_parameters(first.provider),
            providers=[
                models.ModelProviderRef(
                    id=route.provider.id,
                    name=route.provider.name,
                    vendor=route.provider.vendor,
                    upstream_model_id=route.upstream_id,
                )
                for route in routes
            ],
        )
    )


async def list_model_providers(request: web.Request) -> web.Response:
    """Active providers and their models; internal addresses only for admins, secrets never."""
    is_admin = request[PRINCIPAL].is_admin
    registry = request.app[PROVIDERS].registry
    served = {provider.id: [] for provider in registry.active}
    for public_id, routes in registry.models():
        for route in routes:
            served[route.provider.id].append(public_id)
    data = []
    for provider in registry.active:
        extra = {"base_url": provider.base_url} if is_admin else {}
        data.append(
            models.ProviderSummary(
                id=provider.id,
                object="provider",
                name=provider.name,
                vendor=provider.vendor,
                active=provider.active,
                models=served[provider.id],
                **extra,
            )
        )
    return json_response(models.ProviderSummaryList(object="list", data=data))


def _model(route: Route, **provider_data: str) -> models.Model:
    return models.Model(
        id=route.public_id,
        object="model",
        created=route.provider.created,
        owned_by=route.provider.name,
        display_name=route.upstream_id,
        **provider_data,
    )


def _routes(registry: Registry, model_id: str, param: str) -> list[Route]:
    routes = registry.resolve(model_id)
    if not routes:
        raise NotFound(
            f"The model '{model_id}' does not exist or no active provider serves it.", param=param, code="model_not_found"
        )
    return routes

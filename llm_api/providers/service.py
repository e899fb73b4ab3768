"""Providers: where they come from, what they serve, and the adapter that calls each.

Every source ends up as a row of ``llm_api.providers``: the configuration file and the environment
shortcuts are written there at start-up (so the admin API and every worker see one list), and the
admin API writes there directly. Each worker keeps an immutable ``Registry`` built from the rows and
replaces it whole: at once after its own admin changes, and every PROVIDER_REFRESH_INTERVAL for
changes made through other workers.

A provider configured without ``models`` is asked for its list (``GET {base_url}/models``): at
start-up (waiting a few seconds at most, so a provider that is down does not hold start-up), then
every MODEL_SYNC_INTERVAL, and every PROVIDER_REFRESH_INTERVAL while its last attempt failed. The
answer is kept in the database, so a restart while the provider is down still knows its models.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol

import aiohttp

from llm_api.config import Settings
from llm_api.crypto import Keyring, SealError
from llm_api.db import providers as rows
from llm_api.db.pool import Database
from llm_api.errors import ApiError, Conflict, NotFound, UpstreamError
from llm_api.ids import new_id
from llm_api.providers.anthropic import Anthropic
from llm_api.providers.openai_compatible import OpenAICompatible
from llm_api.providers.registry import Provider, Registry, Route
from llm_api.providers.sources import ProviderConfigError, ProviderSpec, configured, plain, spec_of
from llm_api.providers.upstream import UpstreamCalls
from llm_api.schemas import models
from llm_api.schemas.values import unix

log = logging.getLogger(__name__)

_KEY_PURPOSE = "provider-api-key"
# Fields of a provider defined in the configuration file or the environment that its source owns.
_SOURCE_OWNED = ("name", "base_url", "api_key", "models", "aliases")
_SOURCE_NAMES = {"config_file": "PROVIDERS_CONFIG_FILE", "environment": "the environment"}


class Adapter(Protocol):
    def check(self, provider: Provider, body: dict[str, Any]) -> None: ...
    async def list_models(self, provider: Provider) -> list[str]: ...
    async def complete(self, route: Route, body: dict[str, Any]) -> dict[str, Any]: ...
    def stream(self, route: Route, body: dict[str, Any]) -> Any: ...


class Providers:
    def __init__(self, db: Database, keyring: Keyring, settings: Settings, session: aiohttp.ClientSession) -> None:
        self._db = db
        self._keyring = keyring
        self._settings = settings
        calls = UpstreamCalls(session, settings)
        self._anthropic = Anthropic(calls)
        self._openai_compatible = OpenAICompatible(calls)
        self._registry = Registry.of(())
        self._sync_due: dict[str, float] = {}  # provider id -> when (monotonic) to read its model list next

    @property
    def registry(self) -> Registry:
        return self._registry

    def adapter(self, provider: Provider) -> Adapter:
        return self._anthropic if provider.vendor == "anthropic" else self._openai_compatible

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Write the configured providers, load every provider, and read the model lists due."""
        specs = configured(self._settings)
        try:
            async with self._db.transaction() as tx:
                await rows.apply_configured(tx, [{"id": new_id("prov"), **self._spec_row(spec)} for spec in specs])
        except Conflict as conflict:
            raise ProviderConfigError(conflict.message) from None
        await self.reload()
        await self._sync_due_models(wait=min(self._settings.upstream_connect_timeout, 5.0))

    async def run(self) -> None:
        """Keep the registry and the model lists fresh; runs until cancelled."""
        while True:
            await asyncio.sleep(self._settings.provider_refresh_interval)
            try:
                await self.reload()
                await self._sync_due_models(wait=self._settings.upstream_timeout)
            except asyncio.CancelledError:
                raise
            except Exception:  # the next round tries again; serving goes on with what is known
                log.exception("refreshing the providers failed")

    async def reload(self) -> None:
        self._registry = Registry.of(self._provider(row) for row in await rows.all_providers(self._db))

    async def _sync_due_models(self, *, wait: float) -> None:
        now = time.monotonic()
        due = [p for p in self._registry.active if p.configured_models is None and self._sync_due.get(p.id, 0.0) <= now]
        if not due:
            return
        await asyncio.gather(*(self._sync(provider, wait) for provider in due))
        await self.reload()

    async def _sync(self, provider: Provider, wait: float) -> None:
        try:
            found = await asyncio.wait_for(self.adapter(provider).list_models(provider), wait)
        except (TimeoutError, ApiError) as error:
            reason = error.message if isinstance(error, ApiError) else "no answer in time"
            log.warning("cannot list the models of provider %s: %s", provider.name, reason)
            self._sync_due[provider.id] = time.monotonic() + self._settings.provider_refresh_interval
            return
        await rows.record_models(self._db, provider.id, found)
        self._sync_due[provider.id] = time.monotonic() + self._settings.model_sync_interval
        log.info("provider %s serves %d models", provider.name, len(found))

    # ------------------------------------------------------------------ admin API

    async def all(self) -> list[dict]:
        return await rows.all_providers(self._db)

    async def get(self, provider_id: str) -> dict:
        row = await rows.get(self._db, provider_id)
        if row is None:
            raise _missing(provider_id)
        return row

    async def create(self, request: models.ProviderCreateRequest) -> dict:
        spec = spec_of(request, source="api")
        if any(provider.name == spec.name for provider in self._registry.providers):
            raise rows.duplicate_name(spec.name)  # before reading its models: the name is the problem
        values = self._spec_row(spec)
        discovered = await self._listed_models(self._provider(values)) if spec.active and spec.models is None else None
        row = await rows.insert_provider(self._db, id=new_id("prov"), **values)
        if discovered is not None:
            await rows.record_models(self._db, row["id"], discovered)
        await self.reload()
        return await self.get(row["id"])

    async def update(self, provider_id: str, request: models.ProviderUpdateRequest) -> dict:
        current = await self.get(provider_id)
        fields = plain(request)
        owned = [name for name in _SOURCE_OWNED if name in fields]
        if current["source"] != "api" and owned:
            raise Conflict(
                f"Provider {current['name']} is defined in {_SOURCE_NAMES[current['source']]}: change its {owned[0]} there "
                "(only active and metadata can be changed here).",
                param=owned[0],
                code="provider_managed_by_config",
            )
        changes: dict[str, Any] = {
            name: fields[name] for name in ("name", "base_url", "aliases", "active", "metadata") if name in fields
        }
        if "models" in fields:
            changes["models"] = list(fields["models"]) if fields["models"] is not None else None
        if "api_key" in fields:
            changes["api_key_sealed"], changes["api_key_hint"] = self._sealed(fields["api_key"])
        candidate = self._provider({**current, **changes})
        connection_changed = any(name in changes for name in ("base_url", "api_key_sealed", "models", "active"))
        discovered = None
        if candidate.active and candidate.configured_models is None and connection_changed:
            discovered = await self._listed_models(candidate)
        updated = await rows.update(self._db, provider_id, changes)
        if updated is None:
            raise _missing(provider_id)
        if discovered is not None:
            await rows.record_models(self._db, provider_id, discovered)
        await self.reload()
        return await self.get(provider_id)

    async def delete(self, provider_id: str) -> None:
        current = await self.get(provider_id)
        if current["source"] != "api":
            raise Conflict(
                f"Provider {current['name']} is defined in {_SOURCE_NAMES[current['source']]}: remove it there, "
                "or deactivate it here.",
                code="provider_managed_by_config",
            )
        if not await rows.delete(self._db, provider_id):
            raise _missing(provider_id)
        await self.reload()

    def view(self, row: dict) -> models.Provider:
        """A provider as the admin API shows it: never the key, only its last four characters."""
        return models.Provider.model_validate(
            {
                "id": row["id"],
                "object": "provider",
                "name": row["name"],
                "vendor": row["vendor"],
                "base_url": row["base_url"],
                "has_api_key": row["api_key_sealed"] is not None,
                "api_key_hint": row["api_key_hint"],
                "source": row["source"],
                "active": row["active"],
                "models": row["models"] if row["models"] is not None else row["discovered_models"],
                "aliases": row["aliases"],
                "metadata": row["metadata"],
                "last_synced_at": unix(row["last_synced_at"]),
                "created_at": unix(row["created_at"]),
                "updated_at": unix(row["updated_at"]),
            }
        )

    async def _listed_models(self, provider: Provider) -> list[str]:
        """The provider's model list, for an admin who just pointed us at it: failing is a 502 saying why."""
        try:
            return await self.adapter(provider).list_models(provider)
        except ApiError as error:
            raise UpstreamError(
                f"Cannot list the models of provider {provider.name} ({error.message}); fix base_url or api_key, "
                "or give its models explicitly.",
                code="model_listing_failed",
            ) from None

    # ------------------------------------------------------------------ rows

    def _spec_row(self, spec: ProviderSpec) -> dict[str, Any]:
        sealed, hint = self._sealed(spec.api_key)
        return {
            "name": spec.name,
            "vendor": spec.vendor,
            "base_url": spec.base_url,
            "api_key_sealed": sealed,
            "api_key_hint": hint,
            "models": list(spec.models) if spec.models is not None else None,
            "aliases": spec.aliases,
            "metadata": spec.metadata,
            "active": spec.active,
            "source": spec.source,
            "source_position": spec.position,
        }

    def _sealed(self, api_key: str | None) -> tuple[bytes | None, str | None]:
        if api_key is None:
            return None, None
        return self._keyring.seal(_KEY_PURPOSE, api_key.encode()), api_key[-4:]

    def _provider(self, row: dict[str, Any]) -> Provider:
        api_key = None
        if row.get("api_key_sealed") is not None:
            try:
                api_key = self._keyring.unseal(_KEY_PURPOSE, bytes(row["api_key_sealed"])).decode()
            except SealError as error:
                log.error("provider %s: %s; calling it without a key", row["name"], error)
        return Provider(
            id=row.get("id", ""),
            name=row["name"],
            vendor=row["vendor"],
            base_url=row["base_url"],
            api_key=api_key,
            configured_models=tuple(row["models"]) if row.get("models") is not None else None,
            discovered_models=tuple(row.get("discovered_models") or ()),
            aliases=dict(row.get("aliases") or {}),
            metadata=dict(row.get("metadata") or {}),
            active=row["active"],
            source=row["source"],
            created=unix(row.get("created_at")) or int(time.time()),
        )


def _missing(provider_id: str) -> NotFound:
    return NotFound(f"Provider {provider_id} not found.", param="provider_id", code="provider_not_found")

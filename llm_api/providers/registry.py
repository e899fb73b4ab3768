"""Which provider serves which model: an immutable snapshot, replaced whole when providers change.

A model has a public id, ``<vendor>/<provider's own id>`` (or the provider's own id as it is when
that already contains a ``/``, as Hugging Face and OpenRouter ids do). A request's ``model`` is
looked up as a public id, then as an alias, then as a provider's own id; every active provider that
serves it is a candidate, in failover order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Provider:
    id: str
    name: str
    vendor: str
    base_url: str
    api_key: str | None
    configured_models: tuple[str, ...] | None
    discovered_models: tuple[str, ...]
    aliases: dict[str, str]
    metadata: dict[str, str]
    active: bool
    source: str
    created: int  # Unix seconds

    @property
    def models(self) -> tuple[str, ...]:
        """The provider's own ids of the models it serves: as configured, else as it last listed them."""
        return self.configured_models if self.configured_models is not None else self.discovered_models


@dataclass(frozen=True)
class Route:
    """One way to serve a model: a provider and the id that provider knows it by."""

    public_id: str
    upstream_id: str
    provider: Provider


def public_id(vendor: str, upstream_id: str) -> str:
    return upstream_id if "/" in upstream_id else f"{vendor}/{upstream_id}"


@dataclass
class Registry:
    providers: tuple[Provider, ...]  # every provider, in failover order
    _by_public: dict[str, list[Route]] = field(default_factory=dict, repr=False)
    _by_alias: dict[str, list[Route]] = field(default_factory=dict, repr=False)
    _by_upstream: dict[str, list[Route]] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, providers: Iterable[Provider]) -> Registry:
        registry = cls(tuple(providers))
        for provider in registry.providers:
            if not provider.active:
                continue
            for upstream_id in provider.models:
                route = Route(public_id(provider.vendor, upstream_id), upstream_id, provider)
                registry._by_public.setdefault(route.public_id, []).append(route)
                registry._by_upstream.setdefault(upstream_id, []).append(route)
            for alias, upstream_id in provider.aliases.items():
                route = Route(public_id(provider.vendor, upstream_id), upstream_id, provider)
                registry._by_alias.setdefault(alias, []).append(route)
        return registry

    def resolve(self, model: str) -> list[Route]:
        """The candidates for a request's ``model``, in failover order; empty when nothing serves it."""
        return self._by_public.get(model) or self._by_alias.get(model) or self._by_upstream.get(model) or []

    def models(self) -> list[tuple[str, list[Route]]]:
        """Every public model id with its routes, in the order providers list them."""
        return list(self._by_public.items())

    def aliases_of(self, public: str) -> list[str]:
        return sorted(alias for alias, routes in self._by_alias.items() if any(r.public_id == public for r in routes))

    @property
    def active(self) -> tuple[Provider, ...]:
        return tuple(provider for provider in self.providers if provider.active)

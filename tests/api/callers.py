"""A guest talking to the app, for the conversation and project tests."""

from __future__ import annotations

from tests.api.test_builtin_auth import bearer
from tests.api.test_error_surface import error_of


class Caller:
    """One guest talking to the app; ``call`` checks the status and answers the JSON body."""

    def __init__(self, client, tokens: dict) -> None:
        self.client = client
        self.headers = bearer(tokens)
        self.user_id = tokens["user_id"]

    async def call(self, method: str, path: str, *, json=None, params=None, status: int = 200) -> dict:
        response = await self.client.request(method, path, json=json, params=params, headers=self.headers)
        assert response.status == status, await response.text()
        return await response.json()

    async def error(self, method: str, path: str, status: int, *, json=None, params=None) -> dict:
        response = await self.client.request(method, path, json=json, params=params, headers=self.headers)
        return await error_of(response, status)

    async def conversation(self, **body) -> dict:
        return await self.call("POST", "/v1/conversations", json=body)

    async def project(self, name: str) -> dict:
        return await self.call("POST", "/v1/projects", json={"name": name}, status=201)

    async def add(self, conversation_id: str, items: list[dict]) -> list[dict]:
        page = await self.call("POST", f"/v1/conversations/{conversation_id}/items", json={"items": items})
        return page["data"]

    async def items(self, conversation_id: str, **params) -> dict:
        return await self.call("GET", f"/v1/conversations/{conversation_id}/items", params=params)

    async def walk(self, path: str, **params) -> list[str]:
        """Every id of a paged list, following `after=<last_id>` while `has_more`."""
        ids: list[str] = []
        after = None
        while True:
            page = await self.call("GET", path, params={**params, **({"after": after} if after else {})})
            assert "has_more" in page
            ids += [row["id"] for row in page["data"]]
            if not page["has_more"]:
                return ids
            assert page["last_id"] == page["data"][-1]["id"]
            after = page["last_id"]

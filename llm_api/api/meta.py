"""The contract itself, a page to explore it, and the metrics."""

from __future__ import annotations

from aiohttp import web

from llm_api.app_keys import METRICS, SPEC_DOCUMENT
from llm_api.observability.metrics import CONTENT_TYPE

# Swagger UI 5 (the first major version that renders OpenAPI 3.1), pinned, with subresource
# integrity so a tampered CDN file is refused by the browser. The spec URL is relative, so the page
# works under the /llm prefix too.
_SWAGGER_UI = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5.35.0"
_DOCS_PAGE = f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>llm-api</title>
  <link rel="stylesheet" href="{_SWAGGER_UI}/swagger-ui.css"
        integrity="sha384-WlYgdmXYOOBWL5apwjDEZwN+U3HmXSSu5R6V5aGxEcf7z+KuRNwBhoxKVN1i3D5I" crossorigin="anonymous">
</head>
<body>
  <noscript>This page needs JavaScript; the contract itself is at <a href="openapi.yaml">openapi.yaml</a>.</noscript>
  <div id="swagger-ui"></div>
  <script src="{_SWAGGER_UI}/swagger-ui-bundle.js"
          integrity="sha384-gjRm0bEPMeTmMh5jT2cHccIwCUZSTd8YC+j0d0sXw0MdGEfScduGpSyF3ZSSLkX9" crossorigin="anonymous"></script>
  <script>
    window.onload = () => {{ window.ui = SwaggerUIBundle({{ url: "openapi.yaml", dom_id: "#swagger-ui" }}); }};
  </script>
</body>
</html>
""".encode()


async def get_open_api_document(request: web.Request) -> web.Response:
    return web.Response(body=request.app[SPEC_DOCUMENT], content_type="text/yaml", charset="utf-8")


async def get_api_docs(request: web.Request) -> web.Response:
    return web.Response(body=_DOCS_PAGE, content_type="text/html")


async def get_metrics(request: web.Request) -> web.Response:
    return web.Response(body=request.app[METRICS].exposition(), headers={"Content-Type": CONTENT_TYPE})

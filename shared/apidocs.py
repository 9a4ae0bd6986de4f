"""The interactive API docs (Swagger UI at ``/docs``), served entirely by the service itself.

Nothing is fetched from a third party: a city intranet often has no route to a CDN, and staff browsers
must not call one. Swagger UI's JS and CSS (5.x, which reads OpenAPI 3.1) come from the static files of the
installed ``fastapi-offline`` package (only the files the page uses, under ``/docs/static/swagger-ui/``);
the page starts the UI with a small script of
ours (``/docs/static/init.js``) instead of FastAPI's inline ``<script>``, so that the page's
Content-Security-Policy (:data:`DOCS_CSP`) allows scripts from the service's own origin only. ReDoc
(which loads from a CDN) is not offered.
"""

from __future__ import annotations

import html
import json
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse, HTMLResponse, Response

# Swagger UI's distribution files as fastapi-offline ships them (tests/foundation/test_api_docs.py
# fetches each one the page uses).
SWAGGER_UI_FILES = Path(str(files("fastapi_offline") / "static"))
DOCS_URL = "/docs"
STATIC_URL = "/docs/static"
SWAGGER_UI_URL = f"{STATIC_URL}/swagger-ui"
INIT_JS_URL = f"{STATIC_URL}/init.js"
# The bundle's files the page loads, with their media types.
ASSETS = {
    "swagger-ui.css": "text/css; charset=utf-8",
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}
# The assets change only with the package's version; browsers may keep them a day.
ASSET_CACHE_CONTROL = "public, max-age=86400"

# Everything the docs page loads comes from the service: its scripts, its stylesheet, the OpenAPI
# document (fetched by script) and "Try it out" requests. Swagger UI's stylesheet draws its icons as
# data: images. No inline script, no eval, no framing.
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)

_INIT_JS = """\
// Starts Swagger UI on the docs page; a file of its own so that the page needs no inline script.
window.addEventListener("load", function () {
  var config = JSON.parse(document.getElementById("swagger-ui").getAttribute("data-config"));
  window.ui = SwaggerUIBundle({
    url: config.openapiUrl,
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    // No badge from the public validator service: it would send the API description to a third party.
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  });
});
"""


def docs_page(title: str, openapi_url: str) -> str:
    """The HTML of ``/docs``: the bundle's stylesheet and script and our starter, nothing inline."""
    config = html.escape(json.dumps({"openapiUrl": openapi_url}), quote=True)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>{html.escape(title)} – API</title>
<link rel="stylesheet" href="{SWAGGER_UI_URL}/swagger-ui.css">
<link rel="icon" type="image/png" href="{SWAGGER_UI_URL}/favicon.png">
</head>
<body>
<div id="swagger-ui" data-config="{config}"></div>
<script src="{SWAGGER_UI_URL}/swagger-ui-bundle.js"></script>
<script src="{INIT_JS_URL}"></script>
</body>
</html>
"""


def install_api_docs(app: FastAPI, title: str) -> None:
    """``/docs`` and its assets on ``app`` (which must be made with ``docs_url=None, redoc_url=None``)."""
    page = docs_page(title, app.openapi_url or "/openapi.json")

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get(INIT_JS_URL, include_in_schema=False)
    async def swagger_ui_init() -> Response:
        return Response(_INIT_JS, media_type="text/javascript; charset=utf-8")

    @app.get(SWAGGER_UI_URL + "/{name}", include_in_schema=False)
    async def swagger_ui_asset(name: str) -> FileResponse:
        media_type = ASSETS.get(name)
        if media_type is None:
            raise HTTPException(404, "Not Found")
        return FileResponse(
            str(SWAGGER_UI_FILES / name),
            media_type=media_type,
            headers={"Cache-Control": ASSET_CACHE_CONTROL},
        )

"""The web console: GET / (the page) and GET /console/<name> (its scripts, styles and
the chart library installed from npm, see proxy/assets.py).

The page is static: it holds no data and no key. Its script asks the public API for
everything, with the API key the user typed once (kept in the tab's sessionStorage,
sent as ``Authorization: Bearer``; never in a URL). So the console needs no scope and
no route of its own beyond these files; what it shows is what the key may read.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, request, send_file

from proxy import assets
from proxy.errors import ApiError, error_response

bp = Blueprint("console", __name__)

# Only the console's own files, by name (no directory walking).
_OWN = {"app.js": "text/javascript", "app.css": "text/css", "favicon.svg": "image/svg+xml"}

# The page loads only its own files; the API is same-origin. No inline script.
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; img-src 'self' data:; style-src 'self'; "
                                "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
                                "form-action 'self'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

_MISSING_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pgpulse console: not installed</title></head>
<body><main><h1>pgpulse console</h1>
<p>The console's chart library ({files}) is not installed. It comes from npm at install
time: run <code>make console</code> in the pgpulse checkout (or
<code>python -m proxy.assets</code>), then reload this page.</p>
<p>The API works without it: <a href="/api/openapi.json">/api/openapi.json</a>.</p>
</main></body></html>
"""


def _file(path: Path, mimetype: str, max_age: int) -> Response:
    response = send_file(path, mimetype=mimetype, max_age=max_age, conditional=True)
    response.headers.update(SECURITY_HEADERS)
    return response


@bp.get("/")
def index() -> Response:
    lacking = assets.missing()
    if lacking:
        message = ("the console's chart library is not installed: run `make console` "
                   "(npm ci in proxy/console), then reload")
        if request.accept_mimetypes.accept_html:
            return Response(_MISSING_PAGE.format(files=", ".join(lacking)), status=503,
                            mimetype="text/html", headers=SECURITY_HEADERS)
        return error_response(503, message, missing=lacking)
    # The page changes with each version: revalidated every time (it is small).
    return _file(assets.STATIC_DIR / "index.html", "text/html", 0)


@bp.get("/console/<name>")
def static_file(name: str) -> Response:
    if name in _OWN:
        return _file(assets.STATIC_DIR / name, _OWN[name], 0)
    path = assets.vendor_path(name)
    if path is None:
        raise ApiError(404, "no such console file", name=name[:100])
    if not path.is_file():
        raise ApiError(503, "the console's chart library is not installed: run `make console`",
                       name=name)
    mimetype = "text/css" if name.endswith(".css") else "text/javascript"
    return _file(path, mimetype, 3600)


_ERROR = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
OPENAPI = {
    "/": {"get": {
        "tags": ["console"], "operationId": "console", "security": [],
        "summary": "The web console (an HTML page; it reads the API with the key typed into it)",
        "responses": {
            "200": {"description": "The console page", "content": {"text/html": {
                "schema": {"type": "string"}}}},
            "503": {"description": "The console's chart library is not installed (`make console`): "
                                   "an HTML page for browsers, the JSON error otherwise",
                    "content": {"text/html": {"schema": {"type": "string"}},
                                **_ERROR["content"]}},
        },
    }},
    "/console/{name}": {"get": {
        "tags": ["console"], "operationId": "consoleFile", "security": [],
        "summary": "A file of the console: its script and style, the chart library",
        "parameters": [{"name": "name", "in": "path", "required": True,
                        "description": "app.js, app.css, favicon.svg, uPlot.iife.min.js, uPlot.min.css",
                        "schema": {"type": "string"}}],
        "responses": {
            "200": {"description": "The file", "content": {
                "text/javascript": {"schema": {"type": "string"}},
                "text/css": {"schema": {"type": "string"}},
                "image/svg+xml": {"schema": {"type": "string"}}}},
            "404": {"description": "No such file", **_ERROR},
            "503": {"description": "The chart library is not installed", **_ERROR},
        },
    }},
}

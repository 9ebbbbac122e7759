"""The web console's static files (``server/console/``), served with a strict CSP.

``GET /`` is the console's page; ``GET /console/<path>`` its scripts, styles and
vendored libraries. They are package data: no build step, nothing fetched from
elsewhere at run time. No token is needed to load them (the page asks for one and
sends it to the API itself). Every response carries a Content-Security-Policy that
allows only the console's own scripts and styles (no inline script or style, no
``eval``), API calls to this origin only, and no framing, plus ``nosniff`` and
``no-referrer``, so even a message that slipped past the sanitiser could not run.
Errors under these paths (a 404 for ``/console/nope.js``) carry the same headers.
"""

from __future__ import annotations

import mimetypes
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Final

from quart import Response, request
from quart_trio import QuartTrio

from ._errors import ApiError

CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
_HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    # The page is small and changes with the package: revalidate, never stale.
    "Cache-Control": "no-cache",
}
_TYPES: Final = {".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css"}


def console_root() -> Traversable:
    return resources.files("server").joinpath("console")


def _file(path: str) -> Traversable | None:
    """The console file at *path* (``a/b.js``), or ``None``; never outside the folder."""
    parts = [part for part in path.split("/") if part]
    if not parts or any(part in (".", "..") or part.startswith(".") for part in parts):
        return None
    node = console_root()
    for part in parts:
        node = node.joinpath(part)
    return node if node.is_file() else None


def _serve(node: Traversable, name: str) -> Response:
    suffix = name[name.rfind(".") :] if "." in name else ""
    content_type = _TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"
    if content_type.startswith("text/") and "charset" not in content_type:
        content_type += "; charset=utf-8"
    return Response(node.read_bytes(), content_type=content_type, headers=_HEADERS)


def _is_console_path(path: str) -> bool:
    return path in ("/", "/console") or path.startswith("/console/")


def register(app: QuartTrio) -> None:
    @app.after_request
    async def console_headers(response: Response) -> Response:
        # The app's error handlers build 404s and 405s for every route alike; a
        # console URL's error must be as locked down as its files (and a JSON
        # body that echoes the path must never be sniffed as a page).
        if _is_console_path(request.path):
            for name, value in _HEADERS.items():
                response.headers.setdefault(name, value)
        return response

    @app.get("/")
    async def console_page() -> Response:
        node = _file("index.html")
        if node is None:
            raise ApiError(404, "not_found", "the web console is not installed with this package")
        return _serve(node, "index.html")

    @app.get("/console/<path:path>")
    async def console_file(path: str) -> Response:
        node = _file(path)
        if node is None:
            raise ApiError(404, "not_found", f"no console file {path!r}")
        return _serve(node, path)

"""The status page: static files shipped in the package, served by every member at ``/ui``.

The page holds no data of its own: it asks the members' API for everything with the token the
operator types in (kept in the browser session only), so its routes are open. It follows the
members the cluster names, and keeps working through a failover by asking another member; the
cross-origin requests that takes are allowed by :mod:`hacoord.server.cors`.
"""

from importlib import resources

from fastapi import FastAPI
from fastapi.responses import Response

from hacoord.server.auth import Permission as P
from hacoord.server.auth import needs
from hacoord.server.context import ApiContext
from hacoord.server.cors import member_origins

#: The page's files and their media types (nothing else is served under ``/ui``).
ASSETS = {"index.html": "text/html; charset=utf-8",
          "app.js": "text/javascript; charset=utf-8",
          "style.css": "text/css; charset=utf-8"}


def _load() -> dict[str, bytes]:
    folder = resources.files("hacoord.server") / "ui"
    return {name: (folder / name).read_bytes() for name in ASSETS}


def install(app: FastAPI, ctx: ApiContext) -> None:
    """Add ``/ui`` (the page) and its two assets."""
    files = _load()
    replicator = ctx.replicator

    def serve(name: str) -> Response:
        origins = " ".join(sorted(member_origins(replicator)))
        headers = {
            # Scripts and styles from this member only; the API of any member of the cluster.
            "Content-Security-Policy": (f"default-src 'none'; script-src 'self'; style-src 'self'; "
                                        f"img-src 'self' data:; connect-src 'self' {origins}; "
                                        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache",
        }
        return Response(files[name], media_type=ASSETS[name], headers=headers)

    @app.get("/ui", dependencies=[needs(P.OPEN)], include_in_schema=False)
    async def page() -> Response:
        """The status page."""
        return serve("index.html")

    @app.get("/ui/app.js", dependencies=[needs(P.OPEN)], include_in_schema=False)
    async def script() -> Response:
        """The status page's script."""
        return serve("app.js")

    @app.get("/ui/style.css", dependencies=[needs(P.OPEN)], include_in_schema=False)
    async def style() -> Response:
        """The status page's style sheet."""
        return serve("style.css")

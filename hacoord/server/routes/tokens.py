"""API tokens: create, list and revoke them (admins), and ask who a token is (anyone with one).

See :mod:`hacoord.core.access` for the model and :mod:`hacoord.server.auth` for how requests are
judged. A token's secret is shown once, in the answer that creates it; the state keeps its
digest only.
"""

import time
from typing import Annotated, Any

from fastapi import FastAPI, Path, Request, Response

from hacoord.core.access import token_hash
from hacoord.protocol import responses as r
from hacoord.protocol.formats import ID
from hacoord.protocol.requests import TokenCreate
from hacoord.protocol.tokens import new_token
from hacoord.server.auth import Permission as P
from hacoord.server.auth import needs
from hacoord.server.context import ApiContext, request_id

TokenName = Annotated[str, Path(pattern=ID, description="a token's name")]


def install(app: FastAPI, ctx: ApiContext) -> None:
    """Add this area's routes to ``app``."""
    replicator, coordinator, leading = ctx.replicator, ctx.coordinator, ctx.leading

    @app.post("/v1/tokens", dependencies=[needs(P.ADMIN)], tags=["tokens"], status_code=201,
              response_model=r.TokenCreatedAnswer)
    @leading
    async def create_token(body: TokenCreate, request: Request) -> Response:
        """Create a token. The answer's ``secret`` is the only copy of the token there is. Answers
        once every member has applied it (or 2 s passed: ``unconfirmed`` then
        names the members that did not say so), so that the token works on any member."""
        secret = body.token or new_token()
        expires_at = time.time() + body.expires_in if body.expires_in is not None else None
        applied = await coordinator.create_token(await request_id(request), body.name, body.role,
                                                 token_hash(secret), body.node, expires_at)
        # A retried request is answered from the log; a secret drawn here now would be another.
        shown = secret if body.token is not None or not applied.duplicate else None
        confirmed, unconfirmed = await ctx.applied_everywhere(applied.revision)
        return ctx.written(applied, 201, secret=shown, applied_on=confirmed, unconfirmed=unconfirmed)

    @app.get("/v1/tokens", dependencies=[needs(P.ADMIN)], tags=["tokens"],
             response_model=r.TokenList)
    @ctx.reading
    async def list_tokens(request: Request, consistent: bool = False) -> Response:
        """Every token (never its secret or digest), and whether it has expired."""
        state, now = replicator.state, request.app.state.auth.clock()
        tokens = [{**t.public(), "expired": t.expired(now)} for t in state.tokens.values()]
        return ctx.reply({"revision": state.revision, "tokens": tokens})

    @app.delete("/v1/tokens/{name}", dependencies=[needs(P.ADMIN)], tags=["tokens"],
                response_model=r.TokenRevokedAnswer)
    @leading
    async def revoke_token(name: TokenName, request: Request) -> Response:
        """Revoke a token. Answers once every member has applied the revocation (or
        2 s passed: ``unconfirmed`` then names the members that did not say so)."""
        applied = await coordinator.revoke_token(await request_id(request), name)
        confirmed, unconfirmed = await ctx.applied_everywhere(applied.revision)
        return ctx.written(applied, applied_on=confirmed, unconfirmed=unconfirmed)

    @app.get("/v1/whoami", dependencies=[needs(P.ROUTE)], tags=["tokens"],
             response_model=r.WhoAmI)
    async def whoami(request: Request) -> dict[str, Any]:
        """The token's name, role and node, as this member knows it."""
        principal = request.state.principal
        return principal.to_dict()

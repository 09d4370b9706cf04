"""Health probes, the member's status, and whether a write landed."""

import json
import os
from typing import Any

from fastapi import FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse

from hacoord.core.codec import digest as state_digest
from hacoord.core.model import REQUEST_RETENTION
from hacoord.protocol import responses as r
from hacoord.server.auth import Permission as P
from hacoord.server.auth import needs
from hacoord.server.context import ApiContext, RequestIdPath
from hacoord.server.coordinator import replica_count


def install(app: FastAPI, ctx: ApiContext) -> None:
    """Add this area's routes to ``app``."""
    replicator = ctx.replicator

    @app.get("/livez", dependencies=[needs(P.OPEN)], tags=["health"], response_model=r.Live)
    async def livez() -> dict[str, str]:
        """The process and its event loop answer."""
        return {"status": "ok"}

    @app.get("/readyz", dependencies=[needs(P.OPEN)], tags=["health"], response_model=r.Ready)
    async def readyz() -> JSONResponse:
        """Ready: in a quorum, a leader known, applied index caught up, Raft ticking."""
        status = replicator.status()
        body = {"ready": status.ready, "member": status.to_dict()}
        return JSONResponse(body, status_code=200 if status.ready else 503)

    @app.get("/v1/status", dependencies=[needs(P.READ)], tags=["status"], response_model=r.Status)
    async def get_status(digest: bool = False, lag: bool = False,
                         lag_since: float = Query(0.0, ge=0, le=1e10, description=(
                             "with lag=true: only samples after this time (seconds since the "
                             "epoch)"))) -> JSONResponse:
        """This member's Raft view and the configured members; with ``digest=true`` also the
        digest of its applied state (equal on members at the same revision). ``bootstrapped``:
        the first admin token is in the log (until then members accept the one they were
        started with). ``cluster_id``: the cluster's id (None until its first leader named it).
        With ``lag=true`` also ``loop_lag``: how late this member's event loop
        ran, as its samples over 20 ms with their times (the last 10,000 kept), the worst, and
        the stalls over 100 ms that it logged."""
        status = replicator.status()
        members = {m.id: {"api_url": m.api_url, "raft_address": m.raft_address}
                   for m in replicator.members.values()}
        body = {"revision": status.revision, "member": status.to_dict(), "leader": status.leader_id,
                "members": members, "pid": os.getpid(), "health": await ctx.health.current(),
                "bootstrapped": replicator.state.auth_bootstrapped,
                "cluster_id": replicator.state.cluster_id or None}
        if lag and ctx.lag is not None:
            body["loop_lag"] = ctx.lag.report(lag_since)
        if digest:
            state = replicator.state
            answer = await ctx.heavy.answer(("digest",), state.revision, _digest_body, state,
                                            size=replica_count(state), name="read digest")
            body["revision"], body["digest"] = answer[0], json.loads(answer[1])["digest"]
        return ctx.reply(body)

    @app.get("/v1/requests/{request_id}", dependencies=[needs(P.ROUTE)],
             tags=["status"], response_model=r.RequestStatus)
    @ctx.reading
    async def request_status(request_id: RequestIdPath, request: Request,
                             consistent: bool = False) -> Response:
        """Whether the write with this request id was applied, and at which revision: the
        answer to "did my write land?" after a timeout. Request ids are remembered for
        ``retention`` seconds of leader time (at most 50,000 of them); an older or unknown id is
        ``applied: false``. With ``consistent=true`` the answer covers every write committed
        before the question (a read index from the leader)."""
        state = replicator.state
        record = state.requests.get(request_id)
        body: dict[str, Any] = {"revision": state.revision, "request_id": request_id,
                                "applied": record is not None, "retention": REQUEST_RETENTION}
        if record is not None:
            body["applied_revision"] = record["revision"]
            body["applied_at"] = record["time"]
        return ctx.reply(body)



def _digest_body(state: Any) -> dict[str, Any]:
    return {"revision": state.revision, "digest": state_digest(state)}

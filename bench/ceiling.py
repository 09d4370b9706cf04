"""The HTTP ceiling under hacoord's own: ``GET /livez`` through each layer of the stack, one after
the other on this machine with the same wrk load (32 connections, plain HTTP unless said).

* a raw ASGI app under uvicorn (httptools, uvloop), one process;
* the same route in Starlette, and in FastAPI (an ``async def`` route);
* a hacoord member (the leader of a 3-member cluster), plain HTTP and HTTPS;
* and beside each of those, the member's hot route ``GET /v1/nodes/{id}`` with its token (a
  read of the member's own state, served past FastAPI: :mod:`hacoord.server.hot`).

Each is printed with its ratio to the raw app: what the framework and hacoord's middleware cost
per request, before any Raft work. Run: ``python -m bench.ceiling [--seconds 5]``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from hacoord.testing.cluster import free_ports, running_cluster, wait_for


async def raw(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The least an ASGI app can do: a fixed JSON answer."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"status":"ok"}'})


async def _livez(_request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


starlette_app = Starlette(routes=[Route("/livez", _livez)])
fastapi_app = FastAPI()


@fastapi_app.get("/livez")
async def livez() -> dict[str, str]:
    """The same answer through FastAPI."""
    return {"status": "ok"}


def wrk(url: str, seconds: float, headers: dict[str, str] | None = None) -> float:
    """Requests per second of ``GET url`` at 32 connections, with ``headers``."""
    argv = ["wrk", "-t2", "-c32", f"-d{max(1, round(seconds))}s", url]
    for name, value in (headers or {}).items():
        argv += ["-H", f"{name}: {value}"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60).stdout
    line = next(x for x in out.splitlines() if x.startswith("Requests/sec:"))
    return float(line.split()[1])


def framework(app: str, seconds: float) -> float:
    """``app`` (``bench.ceiling:NAME``) under uvicorn in a process of its own."""
    port = free_ports(1)[0]
    server = subprocess.Popen([sys.executable, "-m", "uvicorn", app, "--port", str(port),
                               "--log-level", "warning", "--no-access-log", "--http", "httptools",
                               "--loop", "uvloop"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/livez"
        wait_for(f"{app} up", lambda: httpx.get(url, timeout=1.0).status_code == 200, timeout=30)
        return wrk(url, seconds)
    finally:
        server.terminate()
        server.wait(timeout=10)


def member(tls: bool, seconds: float) -> tuple[float, float]:
    """A hacoord leader's ``/livez``, and a node's read from it (the hot route)."""
    with tempfile.TemporaryDirectory() as root, running_cluster(Path(root), tls=tls) as cluster:
        leader = cluster.members[cluster.leader()]
        with cluster.http(base_url=leader.url, timeout=10) as http:
            http.post("/v1/nodes", json={"id": "bench-1", "address": "127.0.0.1:1"}
                      ).raise_for_status()
        return (wrk(leader.url + "/livez", seconds),
                wrk(leader.url + "/v1/nodes/bench-1", seconds, cluster.headers))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per point")
    args = parser.parse_args()
    plain, tls = member(False, args.seconds), member(True, args.seconds)
    rows = [("raw ASGI under uvicorn", framework("bench.ceiling:raw", args.seconds)),
            ("Starlette", framework("bench.ceiling:starlette_app", args.seconds)),
            ("FastAPI (async route)", framework("bench.ceiling:fastapi_app", args.seconds)),
            ("hacoord member, plain HTTP", plain[0]),
            ("  its node read (hot route)", plain[1]),
            ("hacoord member, HTTPS", tls[0]),
            ("  its node read (hot route)", tls[1])]
    base = rows[0][1]
    print(f"{'GET /livez, 32 connections':<30} {'requests/s':>11} {'of raw':>7}")
    for name, rate in rows:
        print(f"{name:<30} {rate:>11,.0f} {rate / base:>7.2f}")


if __name__ == "__main__":
    main()

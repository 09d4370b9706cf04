"""The example key-value data node: a FastAPI app over :class:`KVService`, run by uvicorn, kept in the
cluster by a :class:`~hacoord.agent.NodeAgent`.

Run one per node (``hacoord-kvnode --help``)::

    hacoord-kvnode --id kv1 --listen 127.0.0.1:9701 --zone a --resource kv --partitions 8 --replicas 3

It calls the coordinator with the API token of ``--token-file`` (or ``HACOORD_TOKEN_FILE``, or
``HACOORD_TOKEN``), over HTTPS verified with ``--ca`` (or ``HACOORD_CA``); its own routes below
take none.

Routes (``epoch`` is the partition epoch the caller acts under; see :mod:`hacoord.examples.kvhttp`
for the refusals):

- ``GET /v1/kv/{resource}/{partition}/{key}?epoch=E``: read, on the partition's leader or a follower;
- ``PUT /v1/kv/{resource}/{partition}/{key}?epoch=E`` with ``{"value": ...}``: write, on its leader;
- ``POST /v1/internal/replicate/...`` and ``GET /v1/internal/dump/...``: between kv nodes;
- ``GET /v1/node``: the node, its agent's state and the partitions it holds.

Data lives in memory only: a restarted node is assigned its partitions again, but empty. (A real
data node keeps its data, or comes back under a new node id and is filled by moves.)
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import click
import tenacity
import uvicorn
from fastapi import FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from hacoord.agent import NodeAgent
from hacoord.client import Client, Conflict, UnavailableError
from hacoord.client.credentials import TlsFileError, TokenFileError
from hacoord.examples.kvhttp import DUMP_ROUTE, KV_ROUTE, NODE_ROUTE, REPLICATE_ROUTE, KVNodeCaller
from hacoord.examples.kvservice import KVError, KVService
from hacoord.examples.kvstore import Entry

log = logging.getLogger("hacoord.kvnode")

#: How long a node keeps trying to create its ``--resource`` (it waits for enough nodes).
CREATE_FOR = 300.0


class PutBody(BaseModel):
    value: str


class ReplicateBody(BaseModel):
    key: str
    value: str
    version: tuple[int, int]


def create_app(service: KVService, agent: NodeAgent,
               on_started: Callable[[], None] | None = None) -> FastAPI:
    """The node's HTTP API. Its lifespan starts ``agent`` (registration, session, assignments;
    then ``on_started()`` in a thread of its own, if given) and stops it at shutdown."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(agent.start)
        if on_started is not None:
            threading.Thread(target=on_started, name="kvnode-started", daemon=True).start()
        try:
            yield
        finally:
            await run_in_threadpool(agent.stop)

    app = FastAPI(title="hacoord example kv node", lifespan=lifespan)
    epoch_query = Query(..., ge=0, description="the partition epoch the caller acts under")

    @app.exception_handler(KVError)
    async def refused(_: Request, exc: KVError) -> JSONResponse:
        return JSONResponse(exc.to_json(), status_code=exc.status)

    @app.get(KV_ROUTE)
    def get_key(resource: str, partition: int, key: str, epoch: int = epoch_query) -> dict[str, Any]:
        return {"key": key, **service.get(resource, partition, key, epoch).to_json()}

    @app.put(KV_ROUTE)
    def put_key(resource: str, partition: int, key: str, body: PutBody,
                epoch: int = epoch_query) -> dict[str, Any]:
        return {"key": key, **service.put(resource, partition, key, body.value, epoch).to_json()}

    @app.post(REPLICATE_ROUTE)
    def replicate(resource: str, partition: int, body: ReplicateBody,
                  epoch: int = epoch_query) -> dict[str, Any]:
        service.replicate(resource, partition, epoch, body.key, Entry(body.value, body.version))
        return {"ok": True}

    @app.get(DUMP_ROUTE)
    def dump(resource: str, partition: int, epoch: int = epoch_query) -> dict[str, Any]:
        entries = service.dump(resource, partition, epoch)
        return {"epoch": epoch, "entries": {k: e.to_json() for k, e in entries.items()}}

    @app.get(NODE_ROUTE)
    def node() -> dict[str, Any]:
        return {"id": service.node_id, "agent": agent.stats().to_dict(),
                "partitions": service.partitions()}

    return app


def ensure_resource(client: Client, name: str, partitions: int, replicas: int,
                    stopping: threading.Event) -> None:
    """Create resource ``name`` unless it exists, waiting (up to :data:`CREATE_FOR` seconds) for
    enough nodes to place its replicas."""

    def create() -> None:
        try:
            client.resource_create(name, partitions, replicas)
            log.info("resource %s created: %d partitions x %d replicas", name, partitions, replicas)
        except Conflict as exc:
            if exc.code != "already_exists":
                raise

    def waiting(exc: BaseException) -> bool:
        return isinstance(exc, UnavailableError) or (
            isinstance(exc, Conflict) and exc.code == "not_enough_nodes")

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(waiting),
        stop=tenacity.stop_after_delay(CREATE_FOR) | tenacity.stop_when_event_set(stopping),
        wait=tenacity.wait_fixed(0.5), sleep=stopping.wait, reraise=True)
    try:
        retrying(create)
    except Exception as exc:
        log.error("resource %s not created: %s", name, exc)


def _listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise click.BadParameter(f"expected HOST:PORT, got {value!r}")
    return host, int(port)


@click.command()
@click.option("--id", "node_id", required=True, help="This node's id.")
@click.option("--listen", default="127.0.0.1:9701", show_default=True, help="HOST:PORT to serve on.")
@click.option("--advertise", default=None, help="HOST:PORT others reach this node at [default: --listen].")
@click.option("--endpoints", envvar="HACOORD_ENDPOINTS", default=None,
              help="Coordinator API URLs, comma-separated [default: the local cluster].")
@click.option("--token-file", envvar="HACOORD_TOKEN_FILE", default=None, metavar="FILE",
              help="File holding the coordinator API token to send [default: HACOORD_TOKEN, or the "
                   "local cluster's admin token for members on this host].")
@click.option("--ca", envvar="HACOORD_CA", default=None, metavar="FILE",
              help="CA (PEM) the coordinator's HTTPS is verified with [default: the local "
                   "cluster's for members on this host, else the system's].")
@click.option("--zone", default=None, help="Zone, when registering the node.")
@click.option("--capacity", type=float, default=None, help="Capacity, when registering the node.")
@click.option("--tag", "tags", multiple=True, help="KEY=VALUE tag, when registering (repeat).")
@click.option("--resource", default=None, help="Create this resource if missing (once enough nodes).")
@click.option("--partitions", type=int, default=8, show_default=True,
              help="Partitions of --resource, if created.")
@click.option("--replicas", type=int, default=3, show_default=True,
              help="Copies of each partition of --resource, if created.")
@click.option("--heartbeat-interval", type=float, default=1.0, show_default=True, help="Seconds.")
@click.option("--metrics-interval", type=float, default=10.0, show_default=True, help="Seconds.")
@click.option("--watch-poll", type=float, default=5.0, show_default=True,
              help="Seconds each long poll of the change feed may last.")
@click.option("--copy-delay", type=float, default=0.0, show_default=True,
              help="Seconds to spend after copying a partition for a move, as a large copy would.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
def main(node_id: str, listen: str, advertise: str | None, endpoints: str | None,
         token_file: str | None, ca: str | None, zone: str | None, capacity: float | None,
         tags: tuple[str, ...],
         resource: str | None, partitions: int, replicas: int, heartbeat_interval: float,
         metrics_interval: float, watch_poll: float, copy_delay: float, log_level: str) -> None:
    """Run an example key-value data node until interrupted."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request otherwise
    host, port = _listen(listen)
    tag_map = {}
    for tag in tags:
        key, sep, value = tag.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {tag!r}", param_hint="'--tag'")
        tag_map[key] = value
    try:
        client = Client(endpoints, timeout=2.0, deadline=10.0, token_file=token_file, ca=ca)
    except TokenFileError as exc:
        raise click.BadParameter(str(exc), param_hint="'--token-file'") from None
    except TlsFileError as exc:
        raise click.BadParameter(str(exc), param_hint="'--ca'") from None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--endpoints'") from None
    peers = KVNodeCaller()
    service = KVService(node_id, peers, copy_delay)
    agent = NodeAgent(node_id, advertise or listen, service, client=client, zone=zone,
                      capacity=capacity, tags=tag_map, heartbeat_interval=heartbeat_interval,
                      metrics=service.metrics, metrics_interval=metrics_interval, watch_poll=watch_poll)
    service.bind(agent.address_of)
    stopping = threading.Event()
    on_started = None
    if resource is not None:
        def on_started() -> None:
            ensure_resource(client, resource, partitions, replicas, stopping)
    try:
        uvicorn.run(create_app(service, agent, on_started), host=host, port=port, access_log=False,
                    log_level="warning")
    finally:
        stopping.set()
        peers.close()
        client.close()


if __name__ == "__main__":  # pragma: no cover
    main()

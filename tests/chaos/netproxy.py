"""A userspace TCP proxy on the Raft links between members: ``python -m tests.chaos.netproxy``.

One process (so the test process's client threads do not hold up Raft traffic) serving every
link of a cluster. A link is one listening port that forwards to one member's Raft port; the
member at the other end (the *initiator*, see :mod:`tests.chaos.network`) is the only one that
connects through it. PySyncObj frames every message (a 4-byte native ``int`` length, then an
independently encrypted token), so the proxy moves whole frames.

It models what TCP does on a bad network, not what IP does: a TCP stream never loses a message
and keeps going, it retransmits. So rules, per direction (``src`` member -> ``dst`` member), only
ever hold frames back, keeping their order (a late frame holds up the ones behind it):

* ``delay``: ``[low, high]`` seconds, each frame held for a uniform draw in that range;
* ``loss``: probability that a frame's first transmission is lost; it then arrives one
  retransmission timeout (``rto``, default 0.2-0.4 s) late;
* ``cut``: nothing gets through (a partition). Frames, and the close of a connection, wait
  until the direction passes again, as TCP's retransmissions would deliver them after the heal.

Control protocol, one JSON object a line: the first line on stdin is ``{"links": [...], "seed":
N}`` with links ``{"listen": PORT, "target": "HOST:PORT", "initiator": ID, "receiver": ID}``; the
proxy answers ``{"ready": true}`` on stdout once every port listens. Then each line is a command,
answered by one line:

* ``{"cmd": "rules", "rules": [{"src": ID, "dst": ID, "cut": BOOL, "loss": P, "delay": [LO,
  HI]}]}`` replaces every rule (an empty list heals the network);
* ``{"cmd": "stats"}``: per direction ``"SRC>DST"`` the frames and bytes that went that way, how
  many were held by a cut, retransmitted after a loss, or delayed, and the connections opened.

The process exits when stdin closes (its parent went away).
"""

from __future__ import annotations

import asyncio
import json
import random
import struct
import sys
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

HEADER = struct.Struct("i")  # PySyncObj's TcpConnection: struct.pack('i', len(data)) + data
MAX_FRAME = 1 << 30


@dataclass(frozen=True)
class Rule:
    """What happens to frames going one way."""

    cut: bool = False
    loss: float = 0.0
    delay: tuple[float, float] = (0.0, 0.0)
    rto: tuple[float, float] = (0.2, 0.4)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Rule:
        low, high = data.get("delay", (0.0, 0.0))
        rto_low, rto_high = data.get("rto", (0.2, 0.4))
        return cls(bool(data.get("cut", False)), float(data.get("loss", 0.0)),
                   (float(low), float(high)), (float(rto_low), float(rto_high)))


PASS = Rule()


@dataclass
class Counters:
    """Traffic seen in one direction."""

    frames: int = 0
    bytes: int = 0
    held_frames: int = 0
    retransmitted_frames: int = 0
    delayed_frames: int = 0
    connections: int = 0


Item = bytes | None  # a frame, or None: the sender closed the connection


@dataclass(eq=False)
class _Side:
    """One end of a proxied connection and the frames on their way to it (``direction``: from
    the other end to this one)."""

    writer: asyncio.StreamWriter
    direction: tuple[str, str]
    queue: asyncio.Queue[tuple[float, Item]] = field(default_factory=asyncio.Queue)
    held: list[Item] = field(default_factory=list)  # waiting for a cut to heal, in order
    last_release: float = 0.0
    closed: bool = False


class Proxy:
    """Every link of one cluster, with the current rules."""

    def __init__(self, links: list[dict[str, Any]], seed: int) -> None:
        self.links = links
        self.rng = random.Random(seed)
        self.rules: dict[tuple[str, str], Rule] = {}
        self.counters: dict[tuple[str, str], Counters] = {}
        self.sides: set[_Side] = set()
        self.servers: list[asyncio.Server] = []

    async def start(self) -> None:
        for link in self.links:
            server = await asyncio.start_server(
                lambda r, w, link=link: self._accept(link, r, w), "127.0.0.1", int(link["listen"]),
                reuse_address=True)
            self.servers.append(server)
            for direction in ((link["initiator"], link["receiver"]),
                              (link["receiver"], link["initiator"])):
                self.counters.setdefault(direction, Counters())

    def set_rules(self, rules: list[dict[str, Any]]) -> None:
        self.rules = {(r["src"], r["dst"]): Rule.from_dict(r) for r in rules}
        now = asyncio.get_running_loop().time()
        for side in self.sides:  # what a cut held back goes now, in order
            if side.held and not self.rules.get(side.direction, PASS).cut:
                side.last_release = max(side.last_release, now)
                for item in side.held:
                    side.queue.put_nowait((side.last_release, item))
                side.held.clear()

    def stats(self) -> dict[str, Any]:
        return {f"{src}>{dst}": asdict(c) for (src, dst), c in sorted(self.counters.items())}

    async def _accept(self, link: dict[str, Any], reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        a, b = link["initiator"], link["receiver"]
        self.counters[(a, b)].connections += 1
        host, port = link["target"].rsplit(":", 1)
        try:
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
        except OSError:  # the receiver is down: as if it refused the connection itself
            writer.close()
            return
        initiator, receiver = _Side(writer, (b, a)), _Side(up_writer, (a, b))
        self.sides |= {initiator, receiver}
        loop = asyncio.get_running_loop()
        deliveries = [loop.create_task(self._deliver(side)) for side in (initiator, receiver)]
        try:
            await asyncio.gather(self._pump(reader, receiver), self._pump(up_reader, initiator))
        finally:
            for side in (initiator, receiver):
                self._close(side)
                self.sides.discard(side)
            for task in deliveries:
                task.cancel()

    async def _pump(self, source: asyncio.StreamReader, dst: _Side) -> None:
        """Read frames from ``source`` and send each on towards ``dst``, then the close."""
        buffer = bytearray()
        try:
            for _ in range(1 << 40):  # until the connection ends
                chunk = await source.read(1 << 16)
                if not chunk:
                    break
                buffer += chunk
                while len(buffer) >= HEADER.size:
                    (length,) = HEADER.unpack_from(buffer)
                    if not 0 <= length <= MAX_FRAME:
                        raise ConnectionError(f"not a PySyncObj frame (length {length})")
                    if len(buffer) < HEADER.size + length:
                        break
                    self._route(dst, bytes(buffer[:HEADER.size + length]))
                    del buffer[:HEADER.size + length]
        except (ConnectionError, OSError):
            pass
        self._route(dst, None)

    def _route(self, dst: _Side, item: Item) -> None:
        rule = self.rules.get(dst.direction, PASS)
        counters = self.counters[dst.direction]
        if item is not None:
            counters.frames += 1
            counters.bytes += len(item)
        if rule.cut or dst.held:
            counters.held_frames += item is not None
            dst.held.append(item)
            return
        hold = self.rng.uniform(*rule.delay) if rule.delay[1] > 0 else 0.0
        counters.delayed_frames += hold > 0 and item is not None
        if rule.loss and item is not None and self.rng.random() < rule.loss:
            counters.retransmitted_frames += 1
            hold += self.rng.uniform(*rule.rto)
        dst.last_release = max(dst.last_release, asyncio.get_running_loop().time() + hold)
        dst.queue.put_nowait((dst.last_release, item))

    async def _deliver(self, side: _Side) -> None:
        """Write the frames queued for ``side`` at their release times, in order; close it
        when the other end's close comes through."""
        loop = asyncio.get_running_loop()
        for _ in range(1 << 40):  # until the connection ends
            release, item = await side.queue.get()
            wait = release - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if item is None:
                self._close(side)
                return
            if side.closed:
                continue
            try:
                side.writer.write(item)
                await side.writer.drain()
            except (ConnectionError, OSError):
                self._close(side)

    @staticmethod
    def _close(side: _Side) -> None:
        if not side.closed:
            side.closed = True
            side.writer.close()


def _control(proxy: Proxy, loop: asyncio.AbstractEventLoop, done: asyncio.Future[None]) -> None:
    """Stdin commands, run on the event loop; one answer line each."""
    for line in sys.stdin:
        if not line.strip():
            continue
        command = json.loads(line)

        async def handle(command: dict[str, Any] = command) -> dict[str, Any]:
            if command["cmd"] == "rules":
                proxy.set_rules(command["rules"])
                return {"ok": True}
            if command["cmd"] == "stats":
                return {"ok": True, "stats": proxy.stats()}
            return {"ok": False, "error": f"unknown command {command['cmd']!r}"}

        answer = asyncio.run_coroutine_threadsafe(handle(), loop).result(timeout=10)
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    loop.call_soon_threadsafe(done.set_result, None)


async def main() -> None:
    setup = json.loads(sys.stdin.readline())
    proxy = Proxy(setup["links"], int(setup.get("seed", 0)))
    await proxy.start()
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    threading.Thread(target=_control, args=(proxy, loop, done), daemon=True).start()
    sys.stdout.write(json.dumps({"ready": True}) + "\n")
    sys.stdout.flush()
    await done


if __name__ == "__main__":
    asyncio.run(main())

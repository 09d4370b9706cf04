"""Network faults between members without root: every Raft link goes through :mod:`netproxy`.

PySyncObj keeps one TCP connection per pair of members, opened by the member whose own address
string compares greater (``TCPTransport._shouldConnect``); the opener first sends its own address,
which the other side looks up among the partner addresses it was configured with. So the layout
is, for each pair with ``A.raft_address > B.raft_address``:

* A is told that B lives at a proxy port P (``--peer B=127.0.0.1:P,...``), and P forwards to B's
  real Raft port. Every proxy port sorts below every member address, so A still opens the link;
* B is told A's real address, which is what A announces through the proxy; since B's own address
  sorts below A's, B never dials A directly.

So every Raft connection crosses a proxy port (``Network.stats`` counts the bytes to prove it),
while the HTTP API stays direct: clients and forwarded requests reach every member as before.
"""

from __future__ import annotations

import itertools
import json
import select
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hacoord.testing.cluster import LocalCluster, Member, free_ports


@dataclass(frozen=True)
class Link:
    """The proxy port ``listen`` that ``initiator`` dials to reach ``receiver``."""

    initiator: str
    receiver: str
    listen: int
    target: str

    def to_dict(self) -> dict[str, Any]:
        return {"initiator": self.initiator, "receiver": self.receiver, "listen": self.listen,
                "target": self.target}


def raft_address(port: int) -> str:
    return f"127.0.0.1:{port}"


class ProxiedCluster(LocalCluster):
    """A :class:`LocalCluster` whose Raft links all go through one :class:`Network` proxy."""

    def __init__(self, root: Path, size: int = 3, extra_args: tuple[str, ...] = (),
                 seed: int = 0) -> None:
        super().__init__(root, size, extra_args)
        pairs = size * (size - 1) // 2
        taken = {m.api_port for m in self.members.values()}
        ports: list[int] = []
        for _ in range(20):  # the kernel may hand back a port the API already uses
            ports = [p for p in free_ports(size + pairs + len(taken)) if p not in taken]
            if len(ports) >= size + pairs:
                break
        ports = sorted(ports[:size + pairs], key=lambda p: raft_address(p))
        proxy_ports, member_ports = ports[:pairs], ports[pairs:]
        for member, port in zip(self.members.values(), member_ports, strict=True):
            member.raft_port = port
        self.links: dict[tuple[str, str], Link] = {}
        members = sorted(self.members.values(), key=lambda m: raft_address(m.raft_port))
        for (low, high), port in zip(itertools.combinations(members, 2), proxy_ports, strict=True):
            assert raft_address(port) < raft_address(high.raft_port)  # high still initiates
            self.links[(high.id, low.id)] = Link(high.id, low.id, port, raft_address(low.raft_port))
        self.network = Network(list(self.links.values()), root / "netproxy.log", seed)

    def peer_spec_for(self, member: Member, peer: Member) -> str:
        link = self.links.get((member.id, peer.id))
        if link is None:  # peer dials member: member must know peer's own address
            return peer.peer_spec
        return f"{peer.id}=127.0.0.1:{link.listen},{peer.url}"

    def start(self, member_id: str | None = None) -> None:
        self.network.start()
        super().start(member_id)

    def stop_all(self) -> None:
        super().stop_all()
        self.network.close()


class Network:
    """The proxy process and the rules it applies (see :mod:`tests.chaos.netproxy`)."""

    def __init__(self, links: list[Link], log_path: Path, seed: int = 0) -> None:
        self.links = links
        self.log_path = log_path
        self.seed = seed
        self.proc: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 10.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        log = open(self.log_path, "a")  # noqa: SIM115 (the child owns it)
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.chaos.netproxy"], text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
        log.close()
        self._send({"links": [link.to_dict() for link in self.links], "seed": self.seed})
        answer = self._receive(timeout)
        assert answer.get("ready"), f"proxy did not start: {answer}"

    def close(self) -> None:
        if self.proc is None:
            return
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None

    # --- faults -------------------------------------------------------------------------------

    def set_rules(self, rules: list[dict[str, Any]]) -> None:
        self._call({"cmd": "rules", "rules": rules})

    def heal(self) -> None:
        self.set_rules([])

    def partition(self, side: set[str], other: set[str]) -> None:
        """Nothing crosses between ``side`` and ``other``, either way, until the heal."""
        self.set_rules([{"src": a, "dst": b, "cut": True}
                        for x, y in ((side, other), (other, side)) for a in sorted(x) for b in sorted(y)])

    def one_way(self, src: str, dst: str) -> None:
        """Nothing from ``src`` reaches ``dst`` until the heal; the other way passes."""
        self.set_rules([{"src": src, "dst": dst, "cut": True}])

    def degrade(self, members: list[str], delay: tuple[float, float], loss: float) -> None:
        """Every direction between ``members``: frames held ``delay`` seconds (uniform, order
        kept), and with probability ``loss`` one retransmission timeout more."""
        self.set_rules([{"src": a, "dst": b, "loss": loss, "delay": list(delay)}
                        for a, b in itertools.permutations(sorted(members), 2)])

    def stats(self) -> dict[str, dict[str, int]]:
        """Per direction ``"SRC>DST"``: frames and bytes, frames held by a cut, retransmitted
        after a loss and delayed, connections opened."""
        return self._call({"cmd": "stats"})["stats"]

    # --- plumbing -----------------------------------------------------------------------------

    def _call(self, command: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        self._send(command)
        answer = self._receive(timeout)
        assert answer.get("ok"), f"proxy refused {command}: {answer}"
        return answer

    def _send(self, message: dict[str, Any]) -> None:
        assert self.proc is not None and self.proc.stdin is not None, "proxy not started"
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()

    def _receive(self, timeout: float) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        readable: list[Any] = []
        while time.monotonic() < deadline and not readable:
            readable, _, _ = select.select([self.proc.stdout], [], [], 0.1)
            if self.proc.poll() is not None:
                break
        if not readable:
            raise AssertionError(f"the proxy did not answer within {timeout}s "
                                 f"(exit status {self.proc.poll()}; log {self.log_path})")
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"the proxy exited (log {self.log_path})")
        return json.loads(line)

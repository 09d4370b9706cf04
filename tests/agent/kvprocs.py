"""Example kv node processes on 127.0.0.1 (``python -m hacoord.examples.kvnode``), beside a
:class:`~hacoord.testing.cluster.LocalCluster` of coordinator members."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from hacoord.testing.cluster import free_ports, wait_for


class KVNodeProcess:
    """One kv node process, its log under ``root``; it calls the coordinator with the token in
    ``token_file``, if given."""

    def __init__(self, node_id: str, port: int, root: Path, endpoints: list[str], *extra: str,
                 token_file: Path | None = None, ca: Path | None = None) -> None:
        self.id = node_id
        self.address = f"127.0.0.1:{port}"
        self.log_path = root / f"{node_id}.log"
        self.argv = [sys.executable, "-m", "hacoord.examples.kvnode", "--id", node_id,
                     "--listen", self.address, "--endpoints", ",".join(endpoints), *extra]
        if token_file is not None:
            self.argv += ["--token-file", str(token_file)]
        if ca is not None:
            self.argv += ["--ca", str(ca)]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 (the child owns it)
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def state(self) -> dict[str, Any]:
        """``GET /v1/node``: the agent's stats and the partitions held."""
        assert self.alive(), f"{self.id} exited: {self.log()}"
        response = httpx.get(f"http://{self.address}/v1/node", timeout=2)
        response.raise_for_status()
        return response.json()

    def held(self) -> dict[tuple[str, int], dict[str, Any]]:
        return {(p["resource"], p["partition"]): p for p in self.state()["partitions"]}

    def terminate(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.terminate()

    def wait(self) -> None:
        """Wait for the process to exit after :meth:`terminate` (killing it after 15 s)."""
        if self.proc is not None:
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""


def start_kv_nodes(root: Path, endpoints: list[str], ids: list[str], *extra: str,
                   token_file: Path | None = None, ca: Path | None = None) -> dict[str, KVNodeProcess]:
    """Start kv nodes ``ids`` (zones a, b, c... in turn), calling the coordinator with the token in
    ``token_file`` (over HTTPS verified with ``ca``), and wait until each agent runs (the
    coordinator need not have a leader yet: an agent's start waits for one, within its
    deadline)."""
    root.mkdir(parents=True, exist_ok=True)
    ports = free_ports(len(ids))
    nodes = {node_id: KVNodeProcess(node_id, port, root, endpoints, "--zone", "abcdef"[i % 6], *extra,
                                    token_file=token_file, ca=ca)
             for i, (node_id, port) in enumerate(zip(ids, ports, strict=True))}
    for node in nodes.values():
        node.start()
    for node in nodes.values():
        wait_for(f"kv node {node.id} running", lambda n=node: n.state()["agent"]["running"], timeout=30)
    return nodes


def stop_kv_nodes(nodes: dict[str, KVNodeProcess]) -> None:
    """SIGTERM every node, then wait for them all (they shut down in parallel)."""
    for node in nodes.values():
        node.terminate()
    for node in nodes.values():
        node.wait()

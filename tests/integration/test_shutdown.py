"""A member stops cleanly on SIGTERM as on SIGINT, even with thousands of open long polls: the
polls are answered, the replicator stops (journal synced), the process exits 0, and the
stopping member starts no election on its way out."""

from __future__ import annotations

import asyncio
import re
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from hacoord.testing.cluster import running_cluster, wait_for

pytestmark = pytest.mark.integration

POLLS = 5000


async def open_polls(port: int, count: int,
                     token: str) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """``count`` connections, each with a long poll on /v1/watch in flight."""
    request = (b"GET /v1/watch?timeout=60 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               b"Authorization: Bearer " + token.encode() + b"\r\nConnection: close\r\n\r\n")
    streams = []
    for start in range(0, count, 500):
        batch = await asyncio.gather(*(asyncio.open_connection("127.0.0.1", port)
                                       for _ in range(start, min(count, start + 500))))
        for _, writer in batch:
            writer.write(request)
        streams.extend(batch)
    await asyncio.gather(*(writer.drain() for _, writer in streams))
    return streams


async def answers(streams: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]) -> list[bytes]:
    async def first_line(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
        try:
            return await asyncio.wait_for(reader.readline(), 30)
        except (TimeoutError, ConnectionError):
            return b""
        finally:
            writer.close()

    return await asyncio.gather(*(first_line(r, w) for r, w in streams))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_member_stops_cleanly_with_thousands_of_long_polls(tmp_path: Path, sig: int) -> None:
    limits = ("--max-watches", str(2 * POLLS), "--max-watches-per-client", str(2 * POLLS))
    # Plain HTTP: the test speaks HTTP/1.1 on raw sockets (5,000 of them).
    with running_cluster(tmp_path, extra_args=limits, tls=False) as cluster:
        leader = cluster.leader()
        stopping = next(m for m in cluster.members if m != leader)
        member = cluster.members[stopping]
        term = cluster.status(leader)["member"]["term"]

        async def scenario() -> tuple[list[bytes], float]:
            streams = await open_polls(member.api_port, POLLS, cluster.token)
            wait_for(f"{POLLS} open long polls on {stopping}",
                     lambda: _open_watches(member.url, cluster.headers) >= POLLS, timeout=60)
            assert member.proc is not None
            started = time.monotonic()
            member.proc.send_signal(sig)
            replies = await answers(streams)
            await asyncio.get_running_loop().run_in_executor(None, member.proc.wait, 30)
            return replies, time.monotonic() - started

        replies, took = asyncio.run(scenario())
        assert member.proc is not None and member.proc.returncode == 0
        answered = sum(1 for line in replies if line.startswith(b"HTTP/1.1 200"))
        assert answered == POLLS, f"{answered} of {POLLS} long polls answered"
        log = member.log_path.read_text()
        after = log[log.rindex("stopping: answering open long polls"):]
        assert "replicator stopped: journal synced through index" in after
        assert "stopped" in after and "Traceback" not in log
        assert not re.search(r"role \w+ -> candidate", after), after
        # The others keep their leader and term: the stopping member started no election.
        survivors = [m for m in cluster.members if m != stopping]
        assert {cluster.status(m)["member"]["term"] for m in survivors} == {term}
        print(f"{signal.Signals(sig).name} with {POLLS} long polls: exit 0 after {took:.2f}s")


def _open_watches(url: str, headers: dict[str, str]) -> int:
    text = httpx.get(url + "/metrics", timeout=5, headers=headers).text
    match = re.search(r"^hacoord_watchers (\d+(?:\.\d+)?)", text, re.M)
    return int(float(match.group(1))) if match else 0


#: Longer than a member's connection timeout (1 s by default), after which PySyncObj drops a
#: connection it has heard nothing on, losing the message it was about to send or had read.
QUIET_LINKS = 1.5


@pytest.mark.parametrize("size", [3, 5])
def test_a_leader_stopping_cleanly_hands_over_in_one_election(tmp_path: Path, size: int) -> None:
    with running_cluster(tmp_path, size=size) as cluster:
        leader = cluster.leader()
        term = cluster.status(leader)["member"]["term"]
        with cluster.client(timeout=2.0, deadline=20.0) as client:
            for k in range(20):
                client.node_add(f"n{k}", address=f"127.0.0.1:{9000 + k}")
            # Followers have nothing to say to each other while the leader is healthy, and
            # the successor's vote requests go over those links: they must still arrive
            # (with 5 members the successor needs more than the outgoing leader's vote).
            time.sleep(QUIET_LINKS)
            cluster.kill(leader, signal.SIGTERM)
            written = client.node_add("after", address="127.0.0.1:9999")
        successor = cluster.leader(among=[m for m in cluster.members if m != leader])
        log = cluster.members[leader].log_path.read_text()
        assert f"handed leadership over to {successor} before stopping" in log
        # TimeoutNow: the successor stood once, with the whole log, and won that term.
        assert cluster.status(successor)["member"]["term"] == term + 1
        assert written.revision > 20
        # No member sent on a link before its key exchange ended (the peer drops such a link).
        dropped = [m.id for m in cluster.members.values()
                   if "dropped a connection (undecodable)" in m.log_path.read_text()]
        assert dropped == []


#: Slow elections (a leader cut off steps down after twice the longest), so that nothing but
#: the stop ends the requests these tests leave waiting.
SLOW_ELECTIONS = ("--election-timeout-min", "9", "--election-timeout-max", "10",
                  "--submit-timeout", "60")


@pytest.mark.parametrize("role", ["leader", "follower"])
def test_a_stopping_member_answers_the_requests_it_cannot_finish(tmp_path: Path, role: str) -> None:
    """Writes and consistent reads a member cannot finish (a leader cut off from its followers,
    or a follower whose leader hangs) are answered 503/504 with the JSON error body, saying
    the member is stopping, when it is told to stop, instead of being cut off by the HTTP
    server's shutdown (which answered 500 and logged a traceback for each)."""
    with running_cluster(tmp_path, extra_args=SLOW_ELECTIONS) as cluster:
        leader = cluster.leader()
        followers = [m for m in cluster.members if m != leader]
        stopping = leader if role == "leader" else followers[0]
        paused = followers if role == "leader" else [leader]
        member = cluster.members[stopping]
        assert member.proc is not None
        for other in paused:
            cluster.members[other].proc.send_signal(signal.SIGSTOP)  # type: ignore[union-attr]
        try:
            async def scenario() -> list[httpx.Response | BaseException]:
                async with cluster.async_http(timeout=60) as http:
                    requests = [http.post(member.url + "/v1/nodes",
                                          json={"id": f"w{k}", "address": f"127.0.0.1:{7000 + k}"})
                                for k in range(3)]
                    requests += [http.get(member.url + "/v1/nodes?consistent=true")
                                 for _ in range(2)]
                    pending = [asyncio.ensure_future(r) for r in requests]
                    # Every one of them in flight (and the scrape that counts them).
                    await asyncio.to_thread(
                        wait_for, "the requests in flight",
                        lambda: _in_flight(member.url, cluster) >= len(pending) + 1, 30)
                    member.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
                    return await asyncio.gather(*pending, return_exceptions=True)

            answers = asyncio.run(scenario())
            assert member.proc.wait(timeout=30) == 0
        finally:
            for other in paused:
                cluster.members[other].proc.send_signal(signal.SIGCONT)  # type: ignore[union-attr]
        for answer in answers:
            assert isinstance(answer, httpx.Response), f"no answer: {answer!r}"
            assert answer.status_code in (503, 504), answer.text
            assert answer.json()["code"] in ("unavailable", "timeout"), answer.text
            assert "is stopping" in answer.json()["message"], answer.text
        log = member.log_path.read_text()
        assert "Traceback" not in log, log


def _in_flight(url: str, cluster: Any) -> int:
    text = httpx.get(url + "/metrics", timeout=5, headers=cluster.headers,
                     verify=cluster.verify).text
    match = re.search(r"^hacoord_api_requests_in_flight (\d+(?:\.\d+)?)", text, re.M)
    return int(float(match.group(1))) if match else 0


def test_a_member_with_idle_tls_clients_stops_without_running_out_its_grace(
        tmp_path: Path) -> None:
    """A client keeping an idle TLS connection open (the client library, an agent) does not
    hold a stopping member: closing such a connection the TLS way waited for the client's own
    close, which it never sent, until uvicorn's grace ran out with an error logged."""
    with running_cluster(tmp_path) as cluster:
        member = next(m for m in cluster.members.values() if m.id != cluster.leader())
        assert member.proc is not None
        with cluster.http(timeout=5) as http:
            assert http.get(member.url + "/v1/status").status_code == 200  # kept alive
            member.proc.send_signal(signal.SIGTERM)
            assert member.proc.wait(timeout=30) == 0
        log = member.log_path.read_text()
        assert "stopped" in log[log.rindex("stopping: answering open long polls"):]
        assert "graceful shutdown exceeded" not in log, log

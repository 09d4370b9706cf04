"""Benchmark a local 3-member cluster: write throughput/latency and leader-kill failover.

Run with ``make bench`` (or ``python -m bench.run --help``). It starts real members on
127.0.0.1 in a temporary directory, exactly as ``hacoord serve`` runs them, and reports:

* committed writes/s with p50/p99 latency for 1, 8 and 32 concurrent HTTP connections (wrk,
  small ``PATCH /v1/nodes/{id}`` writes with unique request ids), each against a baseline
  measured in the same run on the same leader: ``GET /livez`` at the same concurrency (the HTTP
  stack without Raft), so the ratio shows what replication costs here;
* what security costs: the same writes at 1 and 32 connections on three fresh clusters in a
  row: HTTPS with tokens (the default), plain HTTP with tokens, and plain HTTP asking for no
  token (the hidden ``--unsafe-no-auth``, loopback only);
* failover: SIGKILL the leader while a client writes, time from the kill to the first
  acknowledged write (min/median/max over ``--kills`` rounds), the killed member restarted
  between rounds; the same with SIGSTOP;
* a follower's start to ready: stopped (SIGTERM and SIGKILL in turn) and started again, the
  time from its process start to ``/readyz`` answering ready.
* side by side with a local 3-member etcd when one is installed (the same wrk load, one after
  the other on the same machine): writes at 1, 8 and 32 connections, linearizable reads at the
  leader and at a follower, local (serializable) reads at a follower, and leader-kill failover,
  each with its hacoord / etcd ratio.

The machine is shared and noisy: compare ratios, not absolute figures across runs.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench import etcd
from bench.plots import plot_file
from hacoord.testing.cluster import LocalCluster, wait_for

WRK_DIR = Path(__file__).parent / "wrk"


def _wrk(url: str, clients: int, seconds: float, mode: str, token: str,
         script: str = "load.lua", headers: dict[str, str] | None = None) -> dict[str, float]:
    """One wrk run (C load generator: the client must not eat the members' CPU); ``headers``
    go with every request (``-H``)."""
    argv = ["wrk", "-t1", f"-c{clients}", f"-d{max(1, round(seconds))}s"]
    for name, value in (headers or {}).items():
        argv += ["-H", f"{name}: {value}"]
    argv += ["-s", str(WRK_DIR / script), url, "--", mode, token]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60).stdout
    line = next((x for x in out.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result: {out[-500:]}")
    raw = json.loads(line.removeprefix("RESULT "))
    return {
        "ops_per_s": (raw["requests"] - raw["non_2xx"]) / (raw["duration_us"] / 1e6),
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "ops": raw["requests"],
        "failures": raw["non_2xx"] + raw["socket_errors"],
    }


def throughput(cluster: LocalCluster, seconds: float) -> list[dict[str, Any]]:
    leader = cluster.members[cluster.leader()]
    with cluster.http(base_url=leader.url, timeout=10) as http:
        for w in range(16):
            http.post("/v1/nodes", json={"id": f"bench-{w}", "address": "127.0.0.1:1"})
    rows = []
    token = uuid.uuid4().hex[:8]
    for clients in (1, 8, 32):
        writes = _wrk(leader.url, clients, seconds, "write", f"{token}-{clients}", headers=cluster.headers)
        baseline = _wrk(leader.url + "/livez", clients, seconds, "read", token, headers=cluster.headers)
        rows.append({"clients": clients, "writes": writes, "baseline_livez": baseline,
                     "write_vs_livez_throughput": writes["ops_per_s"] / baseline["ops_per_s"]})
    return rows


#: Concurrencies of the security-cost comparison.
SECURITY_CLIENTS = (1, 32)


def security_cost(seconds: float, member_args: list[str]) -> list[dict[str, Any]]:
    """Writes at :data:`SECURITY_CLIENTS` on three fresh clusters, one after the other: HTTPS
    with tokens (the default), plain HTTP with tokens, plain HTTP asking for none; each as a
    ratio to the last."""
    measured: dict[str, dict[int, dict[str, float]]] = {}
    for mode, tls, extra in (("https+tokens", True, ()), ("http+tokens", False, ()),
                             ("http, no auth", False, ("--unsafe-no-auth",))):
        with tempfile.TemporaryDirectory(prefix="hacoord-bench-sec-") as tmp:
            cluster = LocalCluster(Path(tmp), 3, ("--writes-per-client", "0", *member_args, *extra),
                                   tls=tls)
            cluster.start()
            try:
                leader = cluster.members[cluster.leader()]
                with cluster.http(base_url=leader.url, timeout=10) as http:
                    for w in range(16):
                        http.post("/v1/nodes", json={"id": f"bench-{w}", "address": "127.0.0.1:1"})
                token = uuid.uuid4().hex[:8]
                measured[mode] = {c: _wrk(leader.url, c, seconds, "write", f"{token}-{c}",
                                          headers=cluster.headers) for c in SECURITY_CLIENTS}
            finally:
                cluster.stop_all()
    base = measured["http, no auth"]
    return [{"mode": mode, "clients": c, "writes": points[c],
             "vs_no_auth_throughput": points[c]["ops_per_s"] / base[c]["ops_per_s"],
             "vs_no_auth_p50": points[c]["p50_ms"] / base[c]["p50_ms"]}
            for mode, points in measured.items() for c in SECURITY_CLIENTS]


#: Concurrencies of the side-by-side comparison (writes), and of its linearizable reads.
SIDE_BY_SIDE = (1, 8, 32)
READ_CLIENTS = 32


def hacoord_points(cluster: LocalCluster, seconds: float) -> dict[str, Any]:
    """What the side-by-side table compares, on hacoord: writes at each concurrency (as in
    :func:`throughput`), linearizable reads (``consistent=true``) of one node at the leader and
    at a follower, and local reads of it at a follower (its own state, tagged with the
    revision)."""
    leader = cluster.members[cluster.leader()]
    follower = next(m for m in cluster.members.values() if m.id != leader.id)
    token = uuid.uuid4().hex[:8]
    writes = {c: _wrk(leader.url, c, seconds, "write", f"{token}-side-{c}", headers=cluster.headers)
              for c in SIDE_BY_SIDE}
    reads, follower_reads = (_wrk(m.url + "/v1/nodes/bench-1?consistent=true", READ_CLIENTS,
                                  seconds, "read", token, headers=cluster.headers)
                             for m in (leader, follower))
    local_reads = _wrk(follower.url + "/v1/nodes/bench-1", READ_CLIENTS, seconds, "read", token,
                       headers=cluster.headers)
    return {"writes": writes, "reads": reads, "follower_reads": follower_reads,
            "local_reads": local_reads}


def etcd_points(seconds: float, rounds: int = 0) -> dict[str, Any]:
    """The same load against a local 3-member etcd: puts of 16 keys, linearizable ranges, and
    serializable ranges at a follower."""
    with tempfile.TemporaryDirectory(prefix="hacoord-bench-etcd-") as tmp:
        cluster = etcd.EtcdCluster(Path(tmp))
        cluster.start()
        try:
            url = cluster.leader_url()
            assert url is not None
            token = uuid.uuid4().hex[:8]
            writes = {c: _wrk(url, c, seconds, "write", f"{token}-{c}", "etcd.lua")
                      for c in SIDE_BY_SIDE}
            follower = next(u for u in cluster.urls if u != url)
            reads, follower_reads = (_wrk(u, READ_CLIENTS, seconds, "read", token, "etcd.lua")
                                     for u in (url, follower))
            local_reads = _wrk(follower, READ_CLIENTS, seconds, "local", token, "etcd.lua")
            failover_s = [_etcd_failover(cluster, k) for k in range(rounds)]
        finally:
            cluster.stop()
    return {"version": etcd.version(), "writes": writes, "reads": reads,
            "follower_reads": follower_reads, "local_reads": local_reads,
            "failover": _summary(failover_s, "kill") if failover_s else None}


def _etcd_put(http: httpx.Client, url: str, value: str) -> bool:
    """One put through etcd's gateway; whether it was acknowledged (a refused connection, a
    timeout or an error answer is a no)."""
    try:
        answer = http.post(url + "/v3/kv/put",
                           json={"key": "Zm8=", "value": base64.b64encode(value.encode()).decode()})
        return answer.status_code == 200 and "error" not in answer.json()
    except (httpx.HTTPError, ValueError):
        return False


def _etcd_failover(cluster: etcd.EtcdCluster, round_no: int) -> float:
    """SIGKILL etcd's leader; seconds to the first put acknowledged by a survivor (the same
    tight loop as hacoord's: 0.1 s per attempt, 5 ms between); the member restarted after."""
    leader = cluster.leader_url()
    assert leader is not None
    index = cluster.urls.index(leader)
    others = [u for u in cluster.urls if u != leader]
    started = time.monotonic()
    cluster.kill(index)
    took = None
    with httpx.Client(timeout=0.1) as http:
        for attempt in range(6000):  # 30 s at most
            if _etcd_put(http, others[attempt % len(others)], f"{round_no}-{attempt}"):
                took = time.monotonic() - started
                break
            time.sleep(0.005)
    cluster.restart(index)
    if took is None:
        raise RuntimeError("etcd acknowledged no put within 30 s of its leader's kill")
    return took


def side_by_side(ours: dict[str, Any], theirs: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of the comparison: each point's figures on both and the hacoord / etcd ratio."""
    rows = []
    points = [(f"writes/s, {c} connection{'s' if c > 1 else ''}", ours["writes"][c],
               theirs["writes"][c]) for c in SIDE_BY_SIDE]
    points.append((f"linearizable reads/s, {READ_CLIENTS} connections", ours["reads"],
                   theirs["reads"]))
    points.append((f"linearizable reads/s at a follower, {READ_CLIENTS} connections",
                   ours["follower_reads"], theirs["follower_reads"]))
    points.append((f"local reads/s at a follower, {READ_CLIENTS} connections",
                   ours["local_reads"], theirs["local_reads"]))
    for name, a, b in points:
        rows.append({"measure": name, "hacoord": a, "etcd": b,
                     "ratio": a["ops_per_s"] / b["ops_per_s"] if b["ops_per_s"] else None})
    if theirs.get("failover") and ours.get("failover"):
        a, b = ours["failover"], theirs["failover"]
        rows.append({"measure": f"leader SIGKILL to first write, median of {a['rounds']} (s)",
                     "hacoord": a, "etcd": b, "ratio": a["median_s"] / b["median_s"]})
    return rows


def _first_ack_after(cluster: LocalCluster, killed: str, t_kill: float, round_no: str) -> float:
    urls = [m.url for m in cluster.members.values() if m.id != killed]
    i = 0
    # A short timeout: a follower still forwarding to a paused leader must not hide the moment
    # the new leader answers (a healthy write takes milliseconds).
    with cluster.http(timeout=0.1) as http:
        while time.monotonic() - t_kill < 30:
            url = urls[i % len(urls)]
            i += 1
            try:
                r = http.post(url + "/v1/nodes", json={"id": f"fo-{round_no}-{i}",
                                                       "address": "127.0.0.1:1"})
                if r.status_code == 201:
                    return time.monotonic() - t_kill
            except httpx.HTTPError:
                pass
            time.sleep(0.005)
    raise RuntimeError("no write acknowledged within 30 s of the kill")


def failover(cluster: LocalCluster, rounds: int, fault: str = "kill") -> dict[str, Any]:
    """``fault`` kill: SIGKILL the leader (its connections drop at once); pause: SIGSTOP it
    (connections stay open, only the election timeout notices). The leader is restarted or
    resumed, and caught up, between rounds."""
    samples = []
    for round_no in range(rounds):
        leader = cluster.leader()
        with cluster.http(timeout=2) as http:  # the cluster is writable before the fault
            r = http.post(cluster.members[leader].url + "/v1/nodes",
                          json={"id": f"pre-{fault}-{round_no}", "address": "127.0.0.1:1"})
            assert r.status_code == 201, r.text
        proc = cluster.members[leader].proc
        assert proc is not None
        t_fault = time.monotonic()
        if fault == "kill":
            cluster.kill(leader, signal.SIGKILL)
        else:
            proc.send_signal(signal.SIGSTOP)
        samples.append(_first_ack_after(cluster, leader, t_fault, f"{fault}{round_no}"))
        if fault == "kill":
            cluster.start(leader)
        else:
            proc.send_signal(signal.SIGCONT)
        wait_for("the old leader to catch up", lambda: cluster.converged(), timeout=30)
    return _summary(samples, fault)


#: What a member logs of its own start: when it has loaded (imports, state, the app; it binds its
#: port right after) and when it is ready, in seconds since its process started.
_LOADED = re.compile(r"; ([0-9.]+) s after the process started, imports")
_READY = re.compile(r"serving reads \(([0-9.]+) s after the process started\)")


def start_to_ready(cluster: LocalCluster, rounds: int) -> dict[str, Any]:
    """Stop a follower (SIGTERM and SIGKILL in turn) and start it again: seconds from its
    process start to its ``/readyz`` answering ready (imports, state load, first contact with
    the leader, caught up); with the times its own log gives for loaded and ready."""
    leader = cluster.leader()
    member = next(m for m in cluster.members.values() if m.id != leader)
    samples: list[float] = []
    own: dict[str, list[float]] = {"loaded_s": [], "ready_s": []}
    for round_no in range(rounds):
        cluster.kill(member.id, signal.SIGTERM if round_no % 2 == 0 else signal.SIGKILL)
        logged = member.log_path.stat().st_size if member.log_path.exists() else 0
        started = time.monotonic()
        cluster.start(member.id)

        def ready() -> bool | None:
            try:
                return member.get("/readyz", timeout=0.5)["ready"] or None
            except (httpx.HTTPError, ValueError, KeyError):
                return None

        wait_for(f"{member.id} ready", ready, timeout=30)
        samples.append(time.monotonic() - started)
        with open(member.log_path, "rb") as log:
            log.seek(logged)
            text = log.read().decode(errors="replace")
        for key, pattern in (("loaded_s", _LOADED), ("ready_s", _READY)):
            found = pattern.findall(text)
            if found:
                own[key].append(float(found[-1]))
    summary = _summary(samples, "restart")
    for key, values in own.items():
        summary[f"own_{key}_median"] = statistics.median(values) if values else None
    return summary


def _summary(samples: list[float], fault: str) -> dict[str, Any]:
    """Failover samples with their min, median, p99 and max."""
    ordered = sorted(samples)
    return {"fault": fault, "rounds": len(samples), "min_s": ordered[0],
            "median_s": statistics.median(ordered),
            "p99_s": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
            "max_s": ordered[-1], "samples_s": samples}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per throughput point")
    parser.add_argument("--kills", type=int, default=20, help="rounds of each failover fault")
    parser.add_argument("--out", type=Path, default=Path("bench/results/latest.json"))
    parser.add_argument("--member-arg", action="append", default=[],
                        help="extra argument for every member (e.g. --member-arg=--no-fsync)")
    parser.add_argument("--etcd", choices=("auto", "on", "off"), default="auto",
                        help="the same load against a local 3-member etcd, side by side "
                             "(auto: when an etcd binary is installed)")
    args = parser.parse_args()
    with_etcd = args.etcd == "on" or (args.etcd == "auto" and etcd.available())
    if args.etcd == "on" and not etcd.available():
        raise SystemExit("--etcd on needs etcd (Debian package 'etcd-server')")
    if not with_etcd:
        print("etcd is not installed (Debian package 'etcd-server'): hacoord figures only")
    if shutil.which("wrk") is None:
        raise SystemExit("bench needs wrk (Debian package 'wrk'); `make bench` installs it as root")
    with tempfile.TemporaryDirectory(prefix="hacoord-bench-") as tmp:
        # wrk stands for many clients from one address: lift the per-client write limit.
        cluster = LocalCluster(Path(tmp), 3, ("--writes-per-client", "0", *args.member_arg))
        cluster.start()
        try:
            cluster.leader()
            term_before = cluster.status(cluster.leader())["member"]["term"]
            rows = throughput(cluster, args.seconds)
            ours = hacoord_points(cluster, args.seconds) if with_etcd else None
            term_after = cluster.status(cluster.leader())["member"]["term"]
            result = {
                "machine": {"python": platform.python_version(), "platform": platform.platform(),
                            "cpus": os.cpu_count()},
                "member_args": args.member_arg,
                "throughput": rows,
                "elections_during_load": term_after - term_before,
                "failover": failover(cluster, args.kills, "kill"),
                "failover_pause": failover(cluster, args.kills, "pause"),
                "start_to_ready": start_to_ready(cluster, max(2, args.kills // 2)),
            }
        finally:
            cluster.stop_all()
    result["security_cost"] = security_cost(args.seconds, args.member_arg)
    if ours is not None:  # hacoord's members are stopped: etcd gets the machine to itself too
        ours["failover"] = result["failover"]
        theirs = etcd_points(args.seconds, args.kills)
        result["etcd_version"] = theirs["version"]
        result["side_by_side"] = side_by_side(ours, theirs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"{'clients':>7} {'writes/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'livez/s':>8} {'ratio':>6}")
    for row in result["throughput"]:
        w, b = row["writes"], row["baseline_livez"]
        print(f"{row['clients']:>7} {w['ops_per_s']:>9.0f} {w['p50_ms']:>7.1f} {w['p99_ms']:>7.1f} "
              f"{b['ops_per_s']:>8.0f} {row['write_vs_livez_throughput']:>6.2f}")
    print(f"elections during the fault-free load: {result['elections_during_load']}")
    print(f"{'security':<14} {'clients':>7} {'writes/s':>9} {'p50 ms':>7} {'vs no auth':>10} {'p50 vs':>7}")
    for row in result["security_cost"]:
        w = row["writes"]
        print(f"{row['mode']:<14} {row['clients']:>7} {w['ops_per_s']:>9.0f} {w['p50_ms']:>7.2f} "
              f"{row['vs_no_auth_throughput']:>10.2f} {row['vs_no_auth_p50']:>7.2f}")
    for key, what in (("failover", "SIGKILLs"), ("failover_pause", "SIGSTOPs")):
        fo = result[key]
        print(f"failover over {fo['rounds']} leader {what}: min {fo['min_s']:.3f}s "
              f"median {fo['median_s']:.3f}s p99 {fo['p99_s']:.3f}s max {fo['max_s']:.3f}s")
    st = result["start_to_ready"]
    print(f"a follower's start to ready over {st['rounds']} restarts: min {st['min_s']:.3f}s "
          f"median {st['median_s']:.3f}s max {st['max_s']:.3f}s")
    if st.get("own_loaded_s_median") is not None and st.get("own_ready_s_median") is not None:
        print(f"  by its own log (median): loaded {st['own_loaded_s_median']:.2f}s, "
              f"ready {st['own_ready_s_median']:.2f}s after its process started")
    if "side_by_side" in result:
        print(f"side by side ({result['etcd_version']}), the same wrk load, one machine:")
        print(f"{'measure':<52} {'hacoord (p99 ms)':>18} {'etcd (p99 ms)':>16} {'ratio':>6}")
        for row in result["side_by_side"]:
            a, b = row["hacoord"], row["etcd"]
            if "median_s" in a:
                print(f"{row['measure']:<52}\n{'':<52} {a['median_s']:>9.3f} (max {a['max_s']:.2f}) "
                      f"{b['median_s']:>6.3f} (max {b['max_s']:.2f}) {row['ratio']:>6.2f}")
                continue
            print(f"{row['measure']:<52} {a['ops_per_s']:>9.0f} ({a['p99_ms']:>5.1f}) "
                  f"{b['ops_per_s']:>8.0f} ({b['p99_ms']:>5.1f}) {row['ratio']:>6.2f}")
    print(f"written to {args.out}")
    for written in plot_file(args.out):
        print(f"plotted {written}")


if __name__ == "__main__":
    main()

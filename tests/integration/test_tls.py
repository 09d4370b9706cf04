"""HTTPS on real members: the API is served over TLS with certificates from the cluster's CA,
clients verify it (a client trusting another CA is refused), a follower forwards to the leader
over verified TLS, and under mutual TLS a client without a certificate from the client CA
cannot even connect."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import pytest

from hacoord.client import UnavailableError
from hacoord.server.certs import ensure_ca, issue
from hacoord.testing.cluster import running_cluster

pytestmark = pytest.mark.integration


def test_the_api_is_https_verified_against_the_cluster_ca(tmp_path: Path) -> None:
    with running_cluster(tmp_path / "c") as cluster:
        leader = cluster.leader()
        follower = next(m for m in cluster.members.values() if m.id != leader)
        assert follower.url.startswith("https://")
        # Written through a follower: it forwards to the leader over verified HTTPS.
        with cluster.http(timeout=5) as http:
            answer = http.post(follower.url + "/v1/nodes", json={"id": "n1", "address": "h:1"})
        assert answer.status_code == 201, answer.text
        other_ca = ensure_ca(tmp_path / "other")[0]
        with pytest.raises(UnavailableError, match="CERTIFICATE_VERIFY_FAILED"):
            cluster.client(ca=str(other_ca), deadline=2.0).node_list()
        with pytest.raises(httpx.RemoteProtocolError):  # plain HTTP to the HTTPS port
            httpx.get(follower.url.replace("https://", "http://") + "/livez", timeout=5)


def test_mutual_tls_accepts_the_client_ca_and_refuses_the_rest(tmp_path: Path) -> None:
    root = tmp_path / "c"
    ca = ensure_ca(root)  # the members' CA, made before the cluster so it can be the client CA
    with running_cluster(root, extra_args=("--tls-client-ca", str(ca[0]))) as cluster:
        leader = cluster.leader()  # the testing kit's probes show the m1 certificate...
        client_cert = issue(ca, tmp_path / "ops", "ops", ["ops.example"])
        outsider = issue(ensure_ca(tmp_path / "elsewhere"), tmp_path / "outsider", "x", ["x"])
        endpoints = [m.url for m in cluster.members.values()]
        with cluster.client(endpoints=endpoints, cert=(str(client_cert[0]), str(client_cert[1])),
                            timeout=2.0, deadline=20.0) as ops:
            follower = next(m for m in cluster.members if m != leader)
            assert ops.node_add("n1", address="h:1").revision >= 1
        with cluster.client(endpoints=[cluster.members[follower].url],
                            cert=(str(client_cert[0]), str(client_cert[1])), deadline=5.0) as via:
            assert via.node_add("n2", address="h:2").revision >= 1  # forwarded under mTLS
        for cert in (None, (str(outsider[0]), str(outsider[1]))):
            with pytest.raises(UnavailableError):
                cluster.client(cert=cert, timeout=1.0, deadline=2.0).node_list()
        context = ssl.create_default_context(cafile=str(ca[0]))
        with pytest.raises(httpx.HTTPError):
            httpx.get(cluster.members[leader].url + "/livez", verify=context, timeout=5)

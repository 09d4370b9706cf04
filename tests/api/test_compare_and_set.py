"""Compare-and-set on node tags through the API and the client."""

from __future__ import annotations

import pytest

from hacoord.client import Client, Conflict
from hacoord.testing.inprocess import InProcessCluster


def test_cas_through_the_client() -> None:
    with InProcessCluster(3, leader="m2") as cluster:
        client = Client(cluster.urls, timeout=2, deadline=5, transport=cluster.transport)
        client.node_add("reg", address="127.0.0.1:1")
        client.node_set_state("reg", tags={"v": "1"}, expect_tags={"v": None})
        with pytest.raises(Conflict) as refused:
            client.node_set_state("reg", tags={"v": "2"}, expect_tags={"v": "0"})
        assert refused.value.code == "precondition_failed" and refused.value.status == 409
        assert client.node_show("reg", consistent=True).tags == {"v": "1"}
        client.node_set_state("reg", tags={"v": "2"}, expect_tags={"v": "1"})
        assert client.node_show("reg", consistent=True).tags == {"v": "2"}

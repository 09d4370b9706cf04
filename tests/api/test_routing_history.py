"""Routing as of a past revision, and the diff between two revisions (from the change feed)."""

from __future__ import annotations

import httpx

from hacoord.testing.inprocess import InProcessCluster


def test_past_routing_matches_what_was_read_then_and_diffs_name_the_changes() -> None:
    with InProcessCluster(1) as cluster, httpx.Client(transport=cluster.transport,
                                                      base_url=cluster.url("m1")) as api:
        for i in range(4):
            api.post("/v1/nodes", json={"id": f"n{i}", "address": f"127.0.0.1:{i + 1}"})
        api.post("/v1/resources", json={"name": "a", "partitions": 3, "replicas": 2})
        seen = {}

        def remember() -> int:
            table = api.get("/v1/routing").json()
            seen[table["revision"]] = table
            return table["revision"]

        r1 = remember()
        part0 = seen[r1]["resources"]["a"]["partitions"][0]
        spare = next(f"n{i}" for i in range(4) if f"n{i}" not in part0["replicas"])
        api.post("/v1/resources/a/partitions/0/move",
                 json={"from": part0["replicas"][0], "to": spare})
        r2 = remember()
        api.patch(f"/v1/nodes/{spare}", json={"status": "down"})
        api.post("/v1/resources", json={"name": "b", "partitions": 1, "replicas": 1})
        r3 = remember()
        api.delete("/v1/resources/a")
        r4 = remember()

        for revision in (r1, r2, r3):
            past = api.get("/v1/routing", params={"revision": revision}).json()
            assert past["resources"] == seen[revision]["resources"], revision
        assert "a" not in api.get("/v1/routing", params={"revision": r4}).json()["resources"]
        gone = api.get("/v1/routing", params={"revision": r4, "resource": "a"})
        assert gone.status_code == 404

        diff = api.get("/v1/routing/diff", params={"from": r1, "to": r2}).json()
        assert [(c["resource"], c["partition"]) for c in diff["changes"]] == [("a", 0)]
        change = diff["changes"][0]
        assert change["before"]["epoch"] + 1 == change["after"]["epoch"]
        assert spare in change["after"]["replicas"] and spare not in change["before"]["replicas"]
        created = api.get("/v1/routing/diff", params={"from": r2, "to": r3}).json()["changes"]
        b = next(c for c in created if c["resource"] == "b")
        then = seen[r3]["resources"]["b"]["partitions"][0]
        assert b["before"] is None
        assert b["after"] == {k: then[k] for k in ("replicas", "leader", "epoch", "adding")}

        future = api.get("/v1/routing", params={"revision": r4 + 5})
        assert future.status_code == 404 and "ahead of this member" in future.json()["message"]
        forwards = api.get("/v1/routing/diff", params={"from": r1, "to": r3}).json()["changes"]
        backwards = api.get("/v1/routing/diff", params={"from": r3, "to": r1}).json()["changes"]
        assert [(c["resource"], c["partition"], c["before"], c["after"]) for c in backwards] == \
            [(c["resource"], c["partition"], c["after"], c["before"]) for c in forwards]
        cluster.replicators["m1"].feed.reset(r4, cluster.replicators["m1"].state)
        compacted = api.get("/v1/routing", params={"revision": r1})
        assert compacted.status_code == 410 and compacted.json()["code"] == "compacted"
        assert api.get("/v1/routing", params={"revision": r4}).json()["revision"] == r4

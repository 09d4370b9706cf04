"""The status page's routes (``/ui``) and the cross-origin reads it makes between members.

The page itself is driven in a real browser by ``tests/browser``; here: what is served, with
which headers, and which origins may read another member's answers.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from hacoord.server.routes.ui import ASSETS
from hacoord.testing.inprocess import InProcessCluster


@pytest.fixture
def cluster() -> Iterator[InProcessCluster]:
    with InProcessCluster(3) as running:
        yield running


@pytest.fixture
def anonymous(cluster: InProcessCluster) -> Iterator[httpx.Client]:
    """A client that sends no token."""
    with httpx.Client(transport=cluster.transport_as(None)) as client:
        yield client


@pytest.mark.parametrize(("path", "name"), [("/ui", "index.html"), ("/ui/app.js", "app.js"),
                                            ("/ui/style.css", "style.css")])
def test_the_page_and_its_assets_are_served_without_a_token(cluster: InProcessCluster,
                                                            anonymous: httpx.Client,
                                                            path: str, name: str) -> None:
    answer = anonymous.get(cluster.url("m2") + path)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == ASSETS[name]
    assert answer.headers["x-content-type-options"] == "nosniff"
    policy = answer.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy
    assert "frame-ancestors 'none'" in policy
    # The page may read every member's API, and nothing else.
    connect = next(d for d in policy.split(";") if d.strip().startswith("connect-src")).split()
    assert sorted(connect[2:]) == sorted(cluster.urls)
    assert answer.content  # not empty


def test_the_page_loads_only_its_own_files(cluster: InProcessCluster, anonymous: httpx.Client) -> None:
    page = anonymous.get(cluster.url("m1") + "/ui").text
    assert 'src="/ui/app.js"' in page and 'href="/ui/style.css"' in page
    assert "http://" not in page and "https://" not in page  # no CDN, nothing from elsewhere
    assert anonymous.get(cluster.url("m1") + "/ui/other.js").status_code == 404
    assert anonymous.get(cluster.url("m1") + "/ui/../v1/nodes").status_code in (401, 404)


def test_data_still_needs_a_token(cluster: InProcessCluster, anonymous: httpx.Client) -> None:
    answer = anonymous.get(cluster.url("m1") + "/v1/nodes",
                           headers={"Origin": cluster.url("m2")})
    assert answer.status_code == 401
    # The refusal is readable by the page of another member (it shows the token prompt).
    assert answer.headers["access-control-allow-origin"] == cluster.url("m2")


def test_another_member_s_page_may_read_with_a_token(cluster: InProcessCluster) -> None:
    with httpx.Client(transport=cluster.transport) as http:
        preflight = http.options(cluster.url("m1") + "/v1/status", headers={
            "Origin": cluster.url("m3"), "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization"})
        assert preflight.status_code == 200, preflight.text
        assert preflight.headers["access-control-allow-origin"] == cluster.url("m3")
        assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
        answer = http.get(cluster.url("m1") + "/v1/status", headers={"Origin": cluster.url("m3")})
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == cluster.url("m3")
        assert "access-control-allow-credentials" not in answer.headers


@pytest.mark.parametrize("origin", ["http://evil.test", "http://m1.test.evil.test", "null"])
def test_other_origins_may_not_read(cluster: InProcessCluster, origin: str) -> None:
    with httpx.Client(transport=cluster.transport) as http:
        preflight = http.options(cluster.url("m1") + "/v1/status", headers={
            "Origin": origin, "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization"})
        assert preflight.status_code == 400
        assert "access-control-allow-origin" not in preflight.headers
        answer = http.get(cluster.url("m1") + "/v1/status", headers={"Origin": origin})
        assert "access-control-allow-origin" not in answer.headers


def test_writes_are_not_allowed_across_origins(cluster: InProcessCluster) -> None:
    with httpx.Client(transport=cluster.transport) as http:
        preflight = http.options(cluster.url("m1") + "/v1/nodes", headers={
            "Origin": cluster.url("m2"), "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type"})
        assert preflight.status_code == 400

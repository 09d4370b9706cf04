"""What :class:`~hacoord.client.Client` and :class:`~hacoord.client.AsyncClient` share, without
I/O: endpoints, one logical call (:class:`Call`) and how its answer is read (:class:`Op`), where
the next attempt goes (:class:`Router`), how an answer becomes a result or a typed error, and how
the members' status answers add up (:func:`cluster_status`).

Routing. The client keeps the base URLs it was given, plus member URLs it learns from
``/v1/status``. Reads go to the last endpoint that answered; writes and consistent reads go straight
to the leader once it is known (from a ``not_leader`` hint, an ``X-Hacoord-Leader`` header or
``status()``), and to the last endpoint that answered otherwise (any member forwards them to its
leader). An endpoint that fails is passed over: the next attempt goes to the next known endpoint.
"""

from __future__ import annotations

import inspect
import os
import threading
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar
from urllib.parse import quote

import httpx

from hacoord import __version__
from hacoord.client.credentials import learnable
from hacoord.client.errors import ApiError, ProtocolError, UnavailableError, error_for
from hacoord.client.models import ClusterStatus, MemberStatus
from hacoord.protocol import REQUEST_ID_HEADER, parse_members

#: Environment variable read when no endpoints are given: base URLs separated by commas.
ENDPOINTS_ENV = "HACOORD_ENDPOINTS"
#: The local cluster ``hacoord cluster up`` starts (members m1..m3, API port 7400 + k).
DEFAULT_ENDPOINTS = ("https://127.0.0.1:7401", "https://127.0.0.1:7402", "https://127.0.0.1:7403")

#: Backoff between attempts: a random wait in [0, initial * 2**n], capped at max (seconds).
BACKOFF_INITIAL = 0.05
BACKOFF_MAX = 1.0
#: Leader redirects in a row followed without waiting (more means the hints go round in circles).
FREE_REDIRECTS = 2
#: No attempt gets less time than this, even at the very end of the deadline.
MIN_ATTEMPT_TIMEOUT = 0.05
#: Seconds a member URL that could not be reached is not taken as the leader's (a URL the
#: cluster names may not be reachable from this client: another network's names, say).
UNREACHABLE_FOR = 10.0
#: The same for a URL that has answered this client before: it was restarted or crashed, and is
#: soon worth trying again (a restarted leader would otherwise see its clients' writes go
#: through a follower for 10 s).
UNREACHABLE_AFTER_ANSWERING = 2.0
#: Headers every request carries.
BASE_HEADERS = {"User-Agent": f"hacoord-client/{__version__}", "Accept": "application/json"}

T = TypeVar("T")
P = ParamSpec("P")


def parse_endpoints(endpoints: str | Iterable[str] | None) -> list[str]:
    """Normalise endpoints into base URLs. A string is split on commas; ``host:port`` gets
    ``https://``; duplicates are dropped. ``None`` reads ``HACOORD_ENDPOINTS``, then falls back on
    :data:`DEFAULT_ENDPOINTS`. Raises ``ValueError`` when nothing usable remains."""
    if endpoints is None:
        endpoints = os.environ.get(ENDPOINTS_ENV, "").strip() or DEFAULT_ENDPOINTS
    items = endpoints.split(",") if isinstance(endpoints, str) else list(endpoints)
    urls: list[str] = []
    for item in items:
        text = item.strip()
        if not text:
            continue
        if "://" not in text:
            text = "https://" + text
        try:
            url = httpx.URL(text)
        except httpx.InvalidURL as exc:
            raise ValueError(f"bad endpoint {item.strip()!r}: {exc}") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"bad endpoint {item.strip()!r}: expected http(s)://host:port")
        base = str(url).rstrip("/")
        if base not in urls:
            urls.append(base)
    if not urls:
        raise ValueError("no endpoints given")
    return urls


def segment(value: str | int) -> str:
    """``value`` as one URL path segment."""
    return quote(str(value), safe="")


def retryable(exc: BaseException) -> bool:
    """Whether another attempt may succeed: a transport error, or an answer that says so."""
    return isinstance(exc, httpx.TransportError) or (isinstance(exc, ApiError) and exc.retryable)


def describe(exc: BaseException, where: bool = False) -> str:
    """One line for ``exc`` (with the URL it came from, if ``where``)."""
    if isinstance(exc, ApiError):
        text, url = f"{exc.code}: {exc.message}", exc.endpoint
    else:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        try:
            url = str(exc.request.url) if isinstance(exc, httpx.RequestError) else None
        except RuntimeError:  # an error raised without its request
            url = None
    return f"{text} (from {url})" if where and url else text


def unavailable(call: Call, exc: BaseException) -> UnavailableError:
    """What the caller gets when ``call``'s retries are spent."""
    elapsed = time.monotonic() - call.started
    return UnavailableError(f"cluster unavailable after {call.attempts} attempt(s) in {elapsed:.1f}s: "
                            f"{describe(exc, where=True)}", cause=exc, attempts=call.attempts)


@dataclass
class Call:
    """One logical call and the state shared by its attempts."""

    method: str
    path: str
    params: dict[str, Any] | None = None
    body: Any = None
    to_leader: bool = False
    request_id: str | None = None
    attempt_timeout: float | None = None
    #: Seconds the call may take beyond the client's deadline: a long poll's hold.
    extra_time: float = 0.0
    #: When the call began (time.monotonic, looked up at each call so that a test can set it).
    started: float = field(default_factory=lambda: time.monotonic())
    attempts: int = 0
    redirects: int = 0
    redirected: bool = False

    def headers(self) -> dict[str, str] | None:
        """The request id header of a write (the same on every attempt)."""
        return {REQUEST_ID_HEADER: self.request_id} if self.request_id else None

    def attempt_timeout_now(self, timeout: float, deadline: float) -> float:
        """The next attempt's timeout: the call's or the client's, within what is left."""
        remaining = deadline - (time.monotonic() - self.started)
        return max(MIN_ATTEMPT_TIMEOUT, min(self.attempt_timeout or timeout, remaining))


@dataclass(frozen=True)
class Op(Generic[T]):
    """A call and how its JSON answer becomes the method's result."""

    call: Call
    parse: Callable[[dict[str, Any]], T]

    def result(self, response: httpx.Response) -> T:
        """The result read from a successful ``response`` (:class:`ProtocolError` if malformed)."""
        data = json_of(response)
        return parsed(lambda: self.parse(data))


@dataclass(frozen=True)
class FileOp(Op[bytes]):
    """A call whose answer is a file, not JSON: the result is its bytes."""

    parse: Callable[[dict[str, Any]], bytes] = field(default=lambda _data: b"")

    def result(self, response: httpx.Response) -> bytes:
        return response.content


def error_of(response: httpx.Response, endpoint: str) -> ApiError:
    """The typed error an unsuccessful ``response`` stands for."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {}
    code = str(body.get("code") or f"http_{response.status_code}")
    message = str(body.get("message") or response.reason_phrase or code)
    leader = body.get("leader") if isinstance(body.get("leader"), str) else None
    return error_for(code, message, response.status_code, leader=leader, endpoint=endpoint)


def json_of(response: httpx.Response) -> dict[str, Any]:
    """The JSON object ``response`` carries (:class:`ProtocolError` otherwise)."""
    try:
        data = response.json()
    except ValueError:
        raise ProtocolError(f"{response.request.url}: answer is not JSON") from None
    if not isinstance(data, dict):
        raise ProtocolError(f"{response.request.url}: answer is not a JSON object")
    return data


def parsed(build: Callable[[], T]) -> T:
    """``build()``, with a malformed answer's error turned into :class:`ProtocolError`."""
    try:
        return build()
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ProtocolError(f"unexpected answer shape: {type(exc).__name__}: {exc}") from None


# --- member status ---------------------------------------------------------------------------

PROBE_ERRORS = (httpx.TransportError, ApiError, ProtocolError, KeyError, TypeError, AttributeError)


def probe_answer(endpoint: str, response: httpx.Response) -> tuple[MemberStatus, dict[str, str]]:
    """A member's ``/v1/status`` answer: its status and the member URLs it names."""
    if not response.is_success:
        raise error_of(response, endpoint)
    data = json_of(response)
    status = MemberStatus.from_api(endpoint, data)
    members = {m: str(info["api_url"]).rstrip("/") for m, info in data.get("members", {}).items()}
    return status, members


def probe_failed(endpoint: str, exc: BaseException) -> tuple[MemberStatus, dict[str, str]]:
    """A member that did not answer ``/v1/status`` usably."""
    return MemberStatus(endpoint, False, error=describe(exc)), {}


Probes = dict[str, tuple[MemberStatus, dict[str, str]]]


def members_named(probes: Probes) -> dict[str, str]:
    """Every member URL the answers name, by member id."""
    urls: dict[str, str] = {}
    for _, members in probes.values():
        urls.update(members)
    return urls


def unasked(probes: Probes) -> list[str]:
    """The URLs of members the answers name that were not asked yet (and did not answer)."""
    urls = members_named(probes)
    answered = {s.member_id for s, _ in probes.values() if s.reachable}
    return [u for m, u in sorted(urls.items()) if m not in answered and u not in probes]


def cluster_status(probes: Probes) -> ClusterStatus:
    """The cluster as the probed members see it; :class:`UnavailableError` if none answered."""
    urls = members_named(probes)
    by_url = {u: m for m, u in urls.items()}
    members = []
    for endpoint, (member, _) in probes.items():
        if not member.reachable and member.member_id is None and endpoint in by_url:
            member = MemberStatus(endpoint, False, member_id=by_url[endpoint], error=member.error)
        members.append(member)
    members.sort(key=lambda m: (m.member_id is None, m.member_id or "", m.endpoint))
    reachable = [m for m in members if m.reachable]
    if not reachable:
        errors = "; ".join(f"{m.endpoint}: {m.error}" for m in members)
        raise UnavailableError(f"no coordinator member answered ({errors})", attempts=len(members))
    leaders = [m for m in reachable if m.role == "leader"]
    if leaders:
        leader = max(leaders, key=lambda m: m.term or 0).member_id
    else:
        leader = max(reachable, key=lambda m: m.term or 0).leader
    revision = max(m.revision or 0 for m in reachable)
    return ClusterStatus(members=tuple(members), leader=leader, revision=revision,
                         member_urls=dict(sorted(urls.items())))


# --- where the next attempt goes -------------------------------------------------------------

class Router:
    """The endpoints a client knows, the one that answered last, and the leader it believes in.
    Thread-safe (a :class:`~hacoord.client.Client` may be shared by threads)."""

    def __init__(self, endpoints: list[str]) -> None:
        self.known = list(endpoints)
        self.configured = tuple(endpoints)
        self.current = endpoints[0]
        self.leader_id: str | None = None
        self.leader_url: str | None = None
        self.member_urls: dict[str, str] = {}
        #: The last members header learned from (:meth:`learn_endpoints`).
        self.members_seen = ""
        #: Which member URLs may become endpoints (:func:`~hacoord.client.credentials.learnable`).
        self.learnable = learnable(endpoints)
        #: When each URL last failed to connect (monotonic seconds).
        self.unreachable: dict[str, float] = {}
        #: URLs that have answered this client at least once.
        self.answered_once: set[str] = set()
        self._lock = threading.Lock()

    def known_endpoints(self) -> tuple[str, ...]:
        """Every endpoint known, configured first."""
        with self._lock:
            return tuple(self.known)

    def endpoint_for(self, call: Call) -> str:
        """Where ``call``'s next attempt goes."""
        with self._lock:
            return self.leader_url if call.to_leader and self.leader_url else self.current

    def answered(self, endpoint: str) -> None:
        """``endpoint`` answered (successfully, or with an error that is the caller's)."""
        with self._lock:
            self.current = endpoint
            self.unreachable.pop(endpoint, None)
            self.answered_once.add(endpoint)

    def unreached(self, endpoint: str) -> None:
        """``endpoint`` could not be reached at all: pass it over, and for
        :data:`UNREACHABLE_FOR` seconds (:data:`UNREACHABLE_AFTER_ANSWERING` if it answered
        before) do not follow hints to it."""
        with self._lock:
            self.unreachable[endpoint] = time.monotonic()
        self.passed_over(endpoint)

    def reachable(self, url: str) -> bool:
        """Whether ``url`` has not failed to connect lately (see :meth:`unreached`)."""
        with self._lock:
            return not self._failed_lately(url, time.monotonic())

    def _failed_lately(self, url: str, now: float) -> bool:
        """Whether ``url`` failed to connect lately before ``now`` (the caller holds the lock)."""
        failed = self.unreachable.get(url)
        if failed is None:
            return False
        window = UNREACHABLE_AFTER_ANSWERING if url in self.answered_once else UNREACHABLE_FOR
        return now - failed <= window

    def passed_over(self, endpoint: str) -> None:
        """``endpoint`` failed: forget it as leader, and move on from it."""
        with self._lock:
            if self.leader_url == endpoint:
                self.leader_id = self.leader_url = None
            if self.current == endpoint:
                # The next endpoint that has not failed to connect lately (the next one at all
                # if every one has).
                at = self.known.index(endpoint) if endpoint in self.known else -1
                order = self.known[at + 1:] + self.known[:at + 1]
                now = time.monotonic()
                self.current = next((url for url in order if not self._failed_lately(url, now)),
                                    order[0])

    def member_url(self, member_id: str) -> str | None:
        with self._lock:
            return self.member_urls.get(member_id)

    def learn_members(self, urls: dict[str, str]) -> None:
        with self._lock:
            self.member_urls.update(urls)

    def learn_endpoints(self, members: str) -> None:
        """An answer named the coordinator's members (``X-Hacoord-Members``): each that
        :attr:`learnable` accepts becomes an endpoint to try when the ones known fail, so a
        client given one endpoint fails over to the others."""
        with self._lock:
            if members == self.members_seen:
                return
            self.members_seen = members
            urls = {member: url for member, url in parse_members(members).items()
                    if self.learnable(url)}
            self.member_urls.update(urls)
            self.known.extend(url for url in urls.values() if url not in self.known)

    def set_leader(self, member_id: str | None, url: str) -> None:
        """Send the next leader calls to ``url`` (``member_id``'s), unless it could not be
        reached lately (they then go where the others go, to be forwarded)."""
        if not self.reachable(url):
            return
        with self._lock:
            self.leader_id, self.leader_url = member_id, url
            if url not in self.known:
                self.known.append(url)

    def learn_status(self, status: ClusterStatus) -> None:
        """What ``status()`` found: the members' URLs, and the leader if it answered."""
        urls = status.member_urls
        self.learn_members(urls)
        leader = status.leader
        if leader is not None and leader in urls and \
                any(m.member_id == leader and m.reachable for m in status.members):
            self.set_leader(leader, urls[leader])

    def redirect(self, call: Call, endpoint: str, leader: str | None, url: str | None) -> None:
        """A ``not_leader`` answer from ``endpoint`` named ``leader`` (at ``url``, if known):
        follow it, or pass ``endpoint`` over if it names no usable member."""
        if url is None or url == endpoint or not self.reachable(url):
            self.passed_over(endpoint)
            return
        self.set_leader(leader, url)
        call.redirects += 1
        call.redirected = True


# --- the clients' methods --------------------------------------------------------------------

def _named_like(method: Callable[..., Any], build: Callable[..., Any]) -> None:
    """Give ``method`` the name, docstring and signature (with ``self``) of ``build``."""
    method.__name__ = method.__qualname__ = build.__name__
    method.__doc__ = build.__doc__
    method.__module__ = build.__module__
    signature = inspect.signature(build)
    self_param = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    method.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[self_param, *signature.parameters.values()])


def sync_method(build: Callable[P, Op[T]]) -> Callable[Concatenate[Any, P], T]:
    """A :class:`~hacoord.client.Client` method that runs the op ``build`` makes."""
    def method(self: Any, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._perform(build(*args, **kwargs))

    _named_like(method, build)
    return method


def async_method(build: Callable[P, Op[T]]) -> Callable[Concatenate[Any, P], Coroutine[Any, Any, T]]:
    """An :class:`~hacoord.client.AsyncClient` coroutine method that runs the op ``build`` makes."""
    async def method(self: Any, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._perform(build(*args, **kwargs))

    _named_like(method, build)
    return method

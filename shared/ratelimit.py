"""Per-client request limits for public endpoints (per process; put the same limit on the city's proxy
for a cap across replicas): a short one per minute against bursts, and hourly budgets for the requests
that make the city send a mail, which come before any global cap (so one client cannot exhaust it).

The client is the connection's peer address. ``X-Forwarded-For`` is believed only when that peer is one
of the configured proxies (``FORWARDED_ALLOW_IPS``; none by default, 127.0.0.1 included): then the client
is the rightmost address of the header that is not itself a configured proxy — the hop our own proxy
appended, never a value the client wrote further left.

An IPv6 client is its /64 network: one home or mobile connection gets a whole /64, so counting single
addresses would give each person 2^64 allowances. Memory is bounded: at most ``max_clients`` are
tracked; when the table is full, idle clients go first, then the least recently seen.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict, deque
from collections.abc import Iterable

from fastapi import Request

from shared.http import Problem


def client_key(host: str) -> str:
    """The unit a limit counts: an IPv4 address, or the /64 network of an IPv6 address."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host[:64]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


ProxyNetworks = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]


def trusted_proxies(setting: str | Iterable[str]) -> ProxyNetworks:
    """The networks of ``FORWARDED_ALLOW_IPS``: addresses or CIDR networks, comma-separated. Empty: none.
    A value that is neither is refused (a typo must not silently trust nobody, or everybody)."""
    items = setting.split(",") if isinstance(setting, str) else setting
    networks = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        if item == "*":
            raise ValueError("FORWARDED_ALLOW_IPS: '*' would trust every client's X-Forwarded-For")
        networks.append(ipaddress.ip_network(item, strict=False))
    return tuple(networks)


def _is_trusted(host: str, proxies: ProxyNetworks) -> bool:
    if not proxies:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in proxies)


def client_address(request: Request, proxies: ProxyNetworks = ()) -> str:
    """The client a limit counts: the peer, or — when the peer is a configured proxy — the rightmost
    address of ``X-Forwarded-For`` that is not a configured proxy."""
    peer = request.client.host if request.client else "unknown"
    if not _is_trusted(peer, proxies):
        return peer
    hops = [
        _host_of(hop)
        for value in request.headers.getlist("x-forwarded-for")
        for hop in value.split(",")
        if hop.strip()
    ]
    for hop in reversed(hops):
        if hop is None:
            return peer  # not an address: count the request as the proxy's (never a budget of its own)
        if not _is_trusted(hop, proxies):
            return hop
    return peer  # only proxies (or no header): the request came from the proxy itself


def _host_of(hop: str) -> str | None:
    """The address of one X-Forwarded-For hop (some proxies add the port: ``192.0.2.1:5000``,
    ``[2001:db8::1]:5000``; a port must not make a new client), or None when it is no address."""
    hop = hop.strip()
    if hop.startswith("["):
        hop = hop[1:].partition("]")[0]
    elif hop.count(":") == 1:
        hop = hop.partition(":")[0]
    try:
        return str(ipaddress.ip_address(hop))
    except ValueError:
        return None


class ClientRateLimiter:
    """At most ``per_minute`` requests per client in a sliding window of ``window_seconds`` (a minute
    unless told otherwise: an hourly budget is ``ClientRateLimiter(n, window_seconds=3600)``)."""

    def __init__(
        self,
        per_minute: int,
        max_clients: int = 100_000,
        *,
        window_seconds: float = 60.0,
        proxies: ProxyNetworks = (),
    ) -> None:
        self.per_minute = per_minute
        self.max_clients = max(1, max_clients)
        self.window = window_seconds
        self.proxies = proxies
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._hits)

    def check(self, client: str) -> None:
        if self.per_minute <= 0:
            return
        now = time.monotonic()
        key = client_key(client)
        hits = self._hits.get(key)
        if hits is None:
            if len(self._hits) >= self.max_clients:
                self._evict(now)
            hits = self._hits[key] = deque()
        else:
            self._hits.move_to_end(key)
        while hits and now - hits[0] >= self.window:
            hits.popleft()
        if len(hits) >= self.per_minute:
            retry_after = max(1, int(self.window - (now - hits[0])) + 1)
            period = (
                "requests per minute" if self.window == 60.0 else f"such requests in {self.window / 3600:g} h"
            )
            raise Problem(
                429,
                "Too many requests",
                f"At most {self.per_minute} {period}. Please try again later.",
                headers={"Retry-After": str(retry_after)},
            )
        hits.append(now)

    def _evict(self, now: float) -> None:
        for key in [k for k, v in self._hits.items() if not v or now - v[-1] >= self.window]:
            del self._hits[key]
        while len(self._hits) >= self.max_clients:  # still full: the least recently seen go
            self._hits.popitem(last=False)

    def __call__(self, request: Request) -> None:
        self.check(client_address(request, self.proxies))


async def rate_limited(request: Request) -> None:
    """A route dependency: the app's ``state.rate_limiter`` decides (429 with Retry-After)."""
    request.app.state.rate_limiter(request)

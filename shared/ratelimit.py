"""A per-client request limit for public endpoints (per process; put the same limit on the city's proxy
for a cap across replicas). The client is the connection's address — run uvicorn with
``--proxy-headers`` behind a trusted proxy so that this is the resident's address, not the proxy's.

An IPv6 client is its /64 network: one home or mobile connection gets a whole /64, so counting single
addresses would give each person 2^64 allowances. Memory is bounded: at most ``max_clients`` are
tracked; when the table is full, idle clients go first, then the least recently seen.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict, deque

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


class ClientRateLimiter:
    def __init__(self, per_minute: int, max_clients: int = 100_000) -> None:
        self.per_minute = per_minute
        self.max_clients = max(1, max_clients)
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
        while hits and now - hits[0] >= 60.0:
            hits.popleft()
        if len(hits) >= self.per_minute:
            retry_after = max(1, int(60.0 - (now - hits[0])) + 1)
            raise Problem(
                429,
                "Too many requests",
                f"At most {self.per_minute} requests per minute. Please try again later.",
                headers={"Retry-After": str(retry_after)},
            )
        hits.append(now)

    def _evict(self, now: float) -> None:
        for key in [k for k, v in self._hits.items() if not v or now - v[-1] >= 60.0]:
            del self._hits[key]
        while len(self._hits) >= self.max_clients:  # still full: the least recently seen go
            self._hits.popitem(last=False)

    def __call__(self, request: Request) -> None:
        self.check(request.client.host if request.client else "unknown")


async def rate_limited(request: Request) -> None:
    """A route dependency: the app's ``state.rate_limiter`` decides (429 with Retry-After)."""
    request.app.state.rate_limiter(request)

"""A per-client request limit for public endpoints (per process; put the same limit on the city's proxy
for a hard cap across replicas). The client is the connection's address — run uvicorn with
``--proxy-headers`` behind a trusted proxy so that this is the resident's address, not the proxy's."""

from __future__ import annotations

import time
from collections import deque

from fastapi import Request

from shared.http import Problem


class ClientRateLimiter:
    def __init__(self, per_minute: int, max_clients: int = 100_000) -> None:
        self.per_minute = per_minute
        self.max_clients = max_clients
        self._hits: dict[str, deque[float]] = {}

    def check(self, client: str) -> None:
        if self.per_minute <= 0:
            return
        now = time.monotonic()
        hits = self._hits.get(client)
        if hits is None:
            if len(self._hits) >= self.max_clients:
                self._evict(now)
            hits = self._hits[client] = deque()
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

    def __call__(self, request: Request) -> None:
        self.check(request.client.host if request.client else "unknown")


async def rate_limited(request: Request) -> None:
    """A route dependency: the app's ``state.rate_limiter`` decides (429 with Retry-After)."""
    request.app.state.rate_limiter(request)

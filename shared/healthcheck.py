"""The container's health check: ``python -m shared.healthcheck [PATH]`` (standard library only).

Asks the service running in this container for ``PATH`` (``/healthz`` by default; compose asks for
``/readyz``) on 127.0.0.1 and exits 0 on a 200, 1 otherwise. One image runs every role, so the port is
found from the running process: the service named after ``serve`` in a process's command line, and its
``<SERVICE>_PORT`` (or the service's default port).
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path

# The same as shared.settings.DEFAULT_PORTS (tests/deploy checks): not imported, so that the check
# stays a fraction of a second of standard library.
DEFAULT_PORTS = {"registration": 8001, "notification": 8002, "proposals": 8003, "console": 8005}
TIMEOUT_SECONDS = 3.0


def served_service(cmdlines: Iterable[list[str]]) -> str | None:
    """The service of the first ``mitwirkung serve SERVICE`` among the command lines."""
    for argv in cmdlines:
        for i, arg in enumerate(argv[:-1]):
            if arg == "serve" and argv[i + 1] in DEFAULT_PORTS:
                return argv[i + 1]
    return None


def service_port(service: str, environ: Mapping[str, str]) -> int:
    return int(environ.get(f"{service.upper()}_PORT") or DEFAULT_PORTS[service])


def _cmdlines(proc: Path = Path("/proc")) -> Iterable[list[str]]:
    for entry in sorted(proc.glob("[0-9]*"), key=lambda p: int(p.name)):
        try:
            raw = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        yield [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def healthy(url: str, timeout: float = TIMEOUT_SECONDS) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (our own http URL)
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def main(
    argv: list[str] | None = None, proc: Path = Path("/proc"), environ: Mapping[str, str] = os.environ
) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = args[0] if args else "/healthz"
    service = served_service(_cmdlines(proc))
    if service is None:
        print("healthcheck: no `mitwirkung serve SERVICE` process in this container", file=sys.stderr)
        return 1
    url = f"http://127.0.0.1:{service_port(service, environ)}{path}"
    if healthy(url):
        return 0
    print(f"healthcheck: {url} did not answer 200", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())

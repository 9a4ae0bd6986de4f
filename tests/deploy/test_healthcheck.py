"""The image's HEALTHCHECK (``python -m shared.healthcheck``): finds the service this container serves
and its port, and answers 0 only for a 200."""

from __future__ import annotations

import http.server
import socket
import subprocess
import sys
import threading
from pathlib import Path

from shared import healthcheck
from shared.settings import DEFAULT_PORTS

ROOT = Path(__file__).resolve().parents[2]


def test_the_ports_are_the_services_defaults():
    assert healthcheck.DEFAULT_PORTS == DEFAULT_PORTS


def test_the_served_service_is_found_in_the_process_list():
    cmdlines = [
        ["/usr/bin/tini", "--"],
        ["/opt/mitwirkung/bin/python", "/opt/mitwirkung/bin/mitwirkung", "serve", "notification"],
    ]
    assert healthcheck.served_service(cmdlines) == "notification"
    assert healthcheck.served_service([["mitwirkung", "setup"], ["sleep", "serve"]]) is None
    assert healthcheck.service_port("notification", {}) == 8002
    assert healthcheck.service_port("notification", {"NOTIFICATION_PORT": "8004"}) == 8004


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 503)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_only_a_200_is_healthy():
    server = http.server.HTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        assert healthcheck.healthy(base + "/healthz")
        assert not healthcheck.healthy(base + "/readyz")
    finally:
        server.shutdown()
        server.server_close()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        free = sock.getsockname()[1]
    assert not healthcheck.healthy(f"http://127.0.0.1:{free}/healthz", timeout=1)


def _proc(tmp_path: Path, *cmdlines: list[str]) -> Path:
    for pid, argv in enumerate(cmdlines, start=1):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    return tmp_path


def test_the_check_asks_the_served_service_on_its_port(tmp_path, capsys):
    server = http.server.HTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        proc = _proc(tmp_path, ["python", "/opt/mitwirkung/bin/mitwirkung", "serve", "proposals"])
        environ = {"PROPOSALS_PORT": str(server.server_port)}
        assert healthcheck.main([], proc, environ) == 0
        assert healthcheck.main(["/readyz"], proc, environ) == 1
        assert healthcheck.main([], proc, {"REGISTRATION_PORT": str(server.server_port)}) == 1
    finally:
        server.shutdown()
        server.server_close()


def test_a_container_serving_nothing_is_unhealthy(tmp_path, capsys):
    assert healthcheck.main([], _proc(tmp_path, ["python", "-m", "shared.cli", "setup"]), {}) == 1
    assert "no `mitwirkung serve SERVICE` process" in capsys.readouterr().err


def test_the_module_runs_as_the_image_calls_it():
    # As the HEALTHCHECK runs it; on this machine other processes may be serving, so only the exit
    # code's range and a clean run (no traceback) are certain.
    result = subprocess.run(
        [sys.executable, "-m", "shared.healthcheck", "/healthz"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        env={
            "PATH": "/usr/bin:/bin",
            "REGISTRATION_PORT": "1",
            "NOTIFICATION_PORT": "1",
            "PROPOSALS_PORT": "1",
        },
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr

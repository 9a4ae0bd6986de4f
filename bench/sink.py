"""The benchmarks' SMTP sink, in a process of its own (an aiosmtpd sink sharing a process with the load
generator competes with it for the GIL and became the slowest part of the system it measured).

    python -m bench.sink --port 2525 --out arrivals.tsv

Answers 250 to everything and writes one line per mail: the arrival time (``time.monotonic()``, the same
clock in every process of the machine), the first recipient, the Message-ID and the size in bytes. Lines
are flushed every 0.1 s, so a reader sees each mail within that time. ``spawn`` starts it for a benchmark;
``Arrivals`` reads what it recorded.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field

from aiosmtpd.smtp import SMTP

_MESSAGE_ID = re.compile(rb"^Message-ID:\s*(<[^>\r\n]+>)", re.MULTILINE | re.IGNORECASE)


class Recorder:
    def __init__(self, path: str) -> None:
        self.out = open(path, "w", buffering=1 << 16)  # noqa: SIM115 (closed on exit)

    async def handle_DATA(self, server, session, envelope) -> str:
        found = _MESSAGE_ID.search(envelope.original_content or b"")
        message_id = found.group(1).decode() if found else "<none>"
        recipient = (envelope.rcpt_tos or ["-"])[0].lower()
        size = len(envelope.original_content or b"")
        self.out.write(f"{time.monotonic():.6f}\t{recipient}\t{message_id}\t{size}\n")
        return "250 OK"


async def serve(host: str, port: int, path: str) -> None:
    recorder = Recorder(path)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(recorder, hostname="bench-sink", data_size_limit=1 << 22), host, port
    )
    stopped = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopped.set)
    print("ready", flush=True)
    while not stopped.is_set():
        recorder.out.flush()
        try:
            await asyncio.wait_for(stopped.wait(), 0.1)
        except TimeoutError:
            pass
    server.close()
    recorder.out.flush()
    recorder.out.close()


def spawn(stack: ExitStack, port: int, path: str) -> subprocess.Popen:
    """The sink as a process of its own, ready to take mail; stopped when ``stack`` closes."""
    from bench.registration_throughput import _stop  # here: the sink's own process need not load it

    process = subprocess.Popen(
        [sys.executable, "-m", "bench.sink", "--port", str(port), "--out", path],
        stdout=subprocess.PIPE,
        text=True,
    )
    stack.callback(_stop, process)
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    return process


@dataclass
class Arrivals:
    """What the sink process recorded: read from its file as it grows. Mails are counted by Message-ID;
    the first mail of each recipient is noted with its arrival time."""

    path: str
    arrivals: list[float] = field(default_factory=list)
    message_ids: dict[str, int] = field(default_factory=dict)
    first_mail_at: dict[str, float] = field(default_factory=dict)
    last_size: int = 0
    _offset: int = 0
    _rest: bytes = b""

    def refresh(self) -> None:
        with open(self.path, "rb") as handle:
            handle.seek(self._offset)
            chunk = handle.read()
        self._offset += len(chunk)
        lines = (self._rest + chunk).split(b"\n")
        self._rest = lines.pop()
        for line in lines:
            at, recipient, message_id, size = line.decode().split("\t")
            arrived = float(at)
            self.arrivals.append(arrived)
            self.message_ids[message_id] = self.message_ids.get(message_id, 0) + 1
            self.first_mail_at.setdefault(recipient, arrived)
            self.last_size = int(size)

    def count(self) -> int:
        self.refresh()
        return len(self.arrivals)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        pass
    asyncio.run(serve(args.host, args.port, args.out))


if __name__ == "__main__":
    main()

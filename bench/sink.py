"""The benchmarks' SMTP sink, in a process of its own (an aiosmtpd sink sharing a process with the load
generator competes with it for the GIL and became the slowest part of the system it measured).

    python -m bench.sink --port 2525 --out arrivals.tsv

Answers 250 to everything and writes one line per mail: the arrival time (``time.monotonic()``, the same
clock in every process of the machine), the first recipient and the Message-ID. Lines are flushed every
0.1 s, so a reader sees each mail within that time.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import time

from aiosmtpd.smtp import SMTP

_MESSAGE_ID = re.compile(rb"^Message-ID:\s*(<[^>\r\n]+>)", re.MULTILINE | re.IGNORECASE)


class Recorder:
    def __init__(self, path: str) -> None:
        self.out = open(path, "w", buffering=1 << 16)  # noqa: SIM115 (closed on exit)

    async def handle_DATA(self, server, session, envelope) -> str:
        found = _MESSAGE_ID.search(envelope.original_content or b"")
        message_id = found.group(1).decode() if found else "<none>"
        recipient = (envelope.rcpt_tos or ["-"])[0].lower()
        self.out.write(f"{time.monotonic():.6f}\t{recipient}\t{message_id}\n")
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

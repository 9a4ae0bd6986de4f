"""The failover drill: the whole system on a 3-node RabbitMQ cluster (behind HAProxy) and a Postgres primary
with a streaming standby, all started here on ports of their own; during a registration burst the node
that leads the queues is killed (SIGKILL), then the Postgres primary is stopped and the standby promoted.

    .venv/bin/python -m bench.failover_drill [--registrations 10000] [--crash]

What it counts (at the SMTP sink, `bench/sink.py`, by Message-ID and by recipient): every registration
answered 202 must be mailed exactly once — ``missing`` (accepted, no mail), ``twice`` (a Message-ID
delivered more than once), and nothing in any ``*.dlq`` (listed on the surviving nodes). A POST answered
503 (or not at all) is retried after a second, as a form would be; the 503s are counted. Recovery: the
longest pause in mail arrival, and the seconds from the primary's stop to the first accepted write.

The services reach the broker through HAProxy (TCP, health-checked: the stand-in for a Kubernetes
Service) and the database through one multi-host URL with ``target_session_attrs=read-write``: the client
itself finds the host that takes writes, so it never writes to a standby that is not promoted yet (a TCP
proxy would only know that a port answers). ``--crash`` kills the primary (SIGKILL, its backends too)
instead of a fast shutdown. Never touches the machine's own Postgres (5432) or RabbitMQ (5672): own node
names, ports, data directories and Erlang cookie, all under one temporary directory that is removed at
the end, with every process started here, also on failure or Ctrl-C.

Prints JSON on its last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
import psutil

from bench.registration_throughput import wait_until_up
from bench.sink import Arrivals
from bench.sink import spawn as spawn_sink
from shared.cli import PROCESSES, SERVICES
from shared.db import asyncpg_dsn
from tests.support.smtp import free_port

ROOT = Path(__file__).resolve().parents[1]
PG_BIN = Path("/usr/lib/postgresql/15/bin")
RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")  # not /usr/sbin: that wrapper switches to the rabbitmq user
QUEUE = "notification.mail"


def log(message: str) -> None:
    print(f"[drill {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _kill_group(process: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


# --- RabbitMQ ---------------------------------------------------------------------------------------------


class RabbitCluster:
    """Three nodes on this machine, each its own process group; peer discovery by classic config."""

    def __init__(self, stack: ExitStack, base: Path, run: str) -> None:
        self.base = base / "rabbit"
        self.base.mkdir()
        # A cookie of our own (HOME points here for the nodes and for rabbitmqctl): the machine's node and
        # its cookie stay out of it.
        cookie = self.base / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(20))
        cookie.chmod(0o400)
        self.names = [f"rabbit-drill{i}-{run}@localhost" for i in (1, 2, 3)]
        self.ports = {name: free_port() for name in self.names}
        conf = self.base / "rabbitmq.conf"
        lines = [
            "cluster_formation.peer_discovery_backend = classic_config",
            *(f"cluster_formation.classic_config.nodes.{i} = {n}" for i, n in enumerate(self.names, 1)),
            "cluster_partition_handling = pause_minority",
            "disk_free_limit.absolute = 100MB",
            "log.file.level = warning",
        ]
        conf.write_text("\n".join(lines) + "\n")
        (self.base / "enabled_plugins").write_text("[].\n")
        (self.base / "empty-env").write_text("")
        self.processes: dict[str, subprocess.Popen] = {}
        self.dead: set[str] = set()
        stack.callback(self.stop_all)

    def env(self, name: str | None = None) -> dict[str, str]:
        env = {
            **os.environ,
            "HOME": str(self.base),
            "RABBITMQ_CONF_ENV_FILE": str(self.base / "empty-env"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }
        if name is not None:
            short = name.split("@")[0]
            env |= {
                "RABBITMQ_NODENAME": name,
                "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
                "RABBITMQ_NODE_PORT": str(self.ports[name]),
                "RABBITMQ_DIST_PORT": str(free_port()),
                "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq.conf"),
                "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.base / "advanced.config"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
                "RABBITMQ_MNESIA_BASE": str(self.base / short / "mnesia"),
                "RABBITMQ_LOG_BASE": str(self.base / short / "log"),
                "RABBITMQ_PID_FILE": str(self.base / short / "pid"),
            }
        return env

    def ctl(self, node: str, *args: str, timeout: float = 60) -> str:
        done = subprocess.run(
            [str(RABBIT_BIN / "rabbitmqctl"), "-n", node, *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} on {node}: {done.stderr.strip()[-500:]}")
        return done.stdout

    def start_node(self, name: str) -> None:
        node_dir = self.base / name.split("@")[0]
        node_dir.mkdir()
        self.processes[name] = subprocess.Popen(
            [str(RABBIT_BIN / "rabbitmq-server")],
            env=self.env(name),
            stdout=open(node_dir / "stdout.log", "w"),  # noqa: SIM115 (closed with the process)
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def await_startup(self, name: str, timeout: float = 120) -> None:
        """Until the node runs (``await_startup`` gives up at once while the node is not registered)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.processes[name].poll() is not None:
                log_dir = self.base / name.split("@")[0]
                raise RuntimeError(f"{name} exited: {(log_dir / 'stdout.log').read_text()[-2000:]}")
            try:
                self.ctl(name, "await_startup", "--timeout", "60", timeout=90)
                return
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)

    def start(self) -> None:
        # The first node alone, then the others: they find it through the classic config and join it.
        self.start_node(self.names[0])
        self.await_startup(self.names[0])
        for name in self.names[1:]:
            self.start_node(name)
        for name in self.names[1:]:
            self.await_startup(name)
        deadline = time.monotonic() + 60
        while set(self.running_nodes()) != set(self.names):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster did not form: {self.running_nodes()}")
            time.sleep(0.5)

    def running_nodes(self) -> list[str]:
        status = json.loads(self.ctl(self.alive()[0], "cluster_status", "--formatter", "json"))
        return list(status.get("running_nodes", []))

    def alive(self) -> list[str]:
        return [n for n in self.names if n not in self.dead]

    def leader(self, queue: str) -> str:
        """The node that leads ``queue`` (a quorum queue), as a surviving node reports it."""
        rows = json.loads(self.ctl(self.alive()[0], "list_queues", "name", "leader", "--formatter", "json"))
        for row in rows:
            if row.get("name") == queue and row.get("leader"):
                return str(row["leader"])
        raise RuntimeError(f"no leader of {queue} found: {rows}")

    def kill(self, name: str) -> None:
        self.dead.add(name)
        _kill_group(self.processes[name])

    def queues(self) -> dict[str, int]:
        rows = json.loads(self.ctl(self.alive()[0], "list_queues", "name", "messages", "--formatter", "json"))
        return {str(r["name"]): int(r.get("messages") or 0) for r in rows}

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                _kill_group(process)


def start_haproxy(stack: ExitStack, base: Path, backends: list[int]) -> int:
    """HAProxy in TCP mode in front of the nodes (the stand-in for a Kubernetes Service): a node that
    fails two health checks a second apart is taken out, and its open sessions are cut."""
    port = free_port()
    servers = "\n".join(
        f"    server node{i} 127.0.0.1:{p} check inter 1s fall 2 rise 2 on-marked-down shutdown-sessions"
        for i, p in enumerate(backends, 1)
    )
    config = base / "haproxy.cfg"
    config.write_text(
        f"""global
    maxconn 4096
defaults
    mode tcp
    timeout connect 2s
    timeout client 3h
    timeout server 3h
frontend amqp
    bind 127.0.0.1:{port}
    default_backend rabbit
backend rabbit
    balance roundrobin
{servers}
"""
    )
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    process = subprocess.Popen(
        [haproxy, "-db", "-f", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=open(base / "haproxy.log", "w"),  # noqa: SIM115 (closed with the process)
        start_new_session=True,
    )
    stack.callback(_kill_group, process, signal.SIGTERM)
    return port


# --- Postgres ---------------------------------------------------------------------------------------------


class PostgresPair:
    """A primary and its streaming standby, run as the ``postgres`` OS user (the server refuses root)."""

    def __init__(self, stack: ExitStack, base: Path, synchronous: bool = False) -> None:
        self.synchronous = synchronous
        self.base = base / "pg"
        self.base.mkdir()
        shutil.chown(self.base, "postgres", "postgres")
        self.primary, self.standby = self.base / "primary", self.base / "standby"
        self.primary_port, self.standby_port = free_port(), free_port()
        self.started: list[Path] = []
        stack.callback(self.stop_all)

    def _as_postgres(self, *cmd: str, timeout: float = 120) -> None:
        done = subprocess.run(
            ["runuser", "-u", "postgres", "--", *cmd], capture_output=True, text=True, timeout=timeout
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)}: {done.stdout[-500:]} {done.stderr[-500:]}")

    def _configure(self, data: Path, port: int) -> None:
        with open(data / "postgresql.conf", "a") as conf:
            conf.write(
                f"\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{self.base}'\n"
                "wal_level = replica\nmax_wal_senders = 5\nhot_standby = on\nmax_connections = 300\n"
                "wal_keep_size = '512MB'\n"
            )

    def _pg_ctl(self, data: Path, *args: str) -> None:
        self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), *args)

    def start(self) -> None:
        self._as_postgres(
            str(PG_BIN / "initdb"), "-D", str(self.primary), "-U", "postgres", "--auth=trust", "-E", "UTF8"
        )
        self._configure(self.primary, self.primary_port)
        if self.synchronous:
            # A commit is answered once the standby has it (pg_basebackup -R names it "walreceiver").
            with open(self.primary / "postgresql.conf", "a") as conf:
                conf.write("synchronous_standby_names = '*'\nsynchronous_commit = on\n")
        self._pg_ctl(self.primary, "-l", str(self.base / "primary.log"), "-w", "start")
        self.started.append(self.primary)
        self._as_postgres(
            str(PG_BIN / "pg_basebackup"),
            *("-h", "127.0.0.1", "-p", str(self.primary_port), "-U", "postgres"),
            *("-D", str(self.standby), "-R", "-X", "stream", "-c", "fast"),
        )
        self._configure(self.standby, self.standby_port)
        with open(self.standby / "postgresql.conf", "a") as conf:
            # Promoted, it is alone: it must not wait for a standby of its own (the copied configuration
            # of a synchronous primary would make every commit wait forever).
            conf.write("synchronous_standby_names = ''\n")
        self._pg_ctl(self.standby, "-l", str(self.base / "standby.log"), "-w", "start")
        self.started.append(self.standby)

    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.primary_port}/postgres"

    def service_url(self, service: str) -> str:
        """The service's runtime role on both servers: whichever takes writes is used."""
        return (
            f"postgresql+asyncpg://mitwirkung_{service}:{quote(secrets.token_urlsafe(24))}@/mitwirkung"
            f"?host=127.0.0.1%3A{self.primary_port}&host=127.0.0.1%3A{self.standby_port}"
            "&target_session_attrs=read-write"
        )

    def _postmaster_pid(self, data: Path) -> int | None:
        try:
            return int((data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def stop_primary(self, crash: bool) -> None:
        if not crash:
            self._pg_ctl(self.primary, "-m", "fast", "-w", "stop")
            return
        pid = self._postmaster_pid(self.primary)
        if pid is None:
            raise RuntimeError("the primary is not running")
        # The machine dies: the postmaster and every backend at once, no shutdown checkpoint.
        postmaster = psutil.Process(pid)
        victims = [postmaster, *postmaster.children(recursive=True)]
        for victim in victims:
            try:
                victim.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(victims, timeout=10)

    def promote(self) -> None:
        self._pg_ctl(self.standby, "-w", "promote")

    def stop_all(self) -> None:
        for data in self.started:
            pid = self._postmaster_pid(data)
            if pid is None or not psutil.pid_exists(pid):
                continue
            try:
                self._pg_ctl(data, "-m", "immediate", "-w", "stop")
            except Exception:  # noqa: BLE001 - the last resort follows
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


# --- the load ---------------------------------------------------------------------------------------------


class Load:
    """POSTs ``n`` registrations over ``connections`` kept-alive connections (requests written as bytes,
    as in bench/system_burst.run_steady). A POST answered 503, or not at all, is sent again a second later
    with the same data, as a resident would send the form again; every other answer than 202 is kept."""

    def __init__(self, url: str, n: int, connections: int, retry_after: float, rate: float = 0) -> None:
        self.host, port = url.removeprefix("http://").split(":")
        self.port = int(port)
        self.n, self.connections, self.retry_after, self.rate = n, connections, retry_after, rate
        self.began = 0.0
        self.run = uuid.uuid4().hex[:8]
        self.accepted: dict[str, float] = {}  # email -> monotonic time of its 202
        self.sent_at: dict[str, float] = {}  # email -> when the accepted attempt was sent
        self.unavailable = 0  # answers 503
        self.no_answer = 0  # connection lost or timed out
        self.other: dict[int, int] = {}
        self.gave_up: list[str] = []
        self.done = threading.Event()
        self.error: BaseException | None = None

    def email(self, i: int) -> str:
        return f"drill-{self.run}-{i}@example.org"

    async def _post(self, reader, writer, email: str) -> int:
        body = json.dumps(
            {
                "working_group_id": "sprachfoerderung",
                "name": "Drill Person",
                "email": email,
                "language": "de",
                "participant_type": "resident",
                "privacy_consent": True,
            }
        ).encode()
        writer.write(
            b"POST /v1/registrations HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (self.host.encode(), len(body), body)
        )
        head = await reader.readuntil(b"\r\n\r\n")
        length = re.search(rb"(?i)content-length:\s*(\d+)", head)
        await reader.readexactly(int(length.group(1)) if length else 0)
        return int(head.split(b" ", 2)[1])

    async def _worker(self, due: asyncio.Queue[int], deadline: float) -> None:
        connection = None
        while not due.empty():
            i = due.get_nowait()
            email = self.email(i)
            if self.rate:
                await asyncio.sleep(max(0.0, self.began + i / self.rate - time.monotonic()))
            while True:
                if time.monotonic() > deadline:
                    self.gave_up.append(email)
                    break
                try:
                    if connection is None:
                        connection = await asyncio.open_connection(self.host, self.port)
                    sent = time.monotonic()
                    status = await asyncio.wait_for(self._post(*connection, email), 60)
                except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
                    self.no_answer += 1
                    if connection is not None:
                        connection[1].close()
                    connection = None
                    await asyncio.sleep(self.retry_after)
                    continue
                if status == 202:
                    self.accepted[email] = time.monotonic()
                    self.sent_at[email] = sent
                    break
                if status == 503:
                    self.unavailable += 1
                    await asyncio.sleep(self.retry_after)
                    continue
                self.other[status] = self.other.get(status, 0) + 1
                break
        if connection is not None:
            connection[1].close()

    async def _run(self, timeout: float) -> None:
        due: asyncio.Queue[int] = asyncio.Queue()
        for i in range(self.n):
            due.put_nowait(i)
        self.began = time.monotonic()
        deadline = self.began + timeout
        await asyncio.gather(*(self._worker(due, deadline) for _ in range(self.connections)))

    def start(self, timeout: float) -> threading.Thread:
        def target() -> None:
            try:
                asyncio.run(self._run(timeout))
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                self.error = exc
            finally:
                self.done.set()

        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        return thread


# --- the drill --------------------------------------------------------------------------------------------


def spawn_service(stack: ExitStack, base: Path, name: str, service: str, env: dict[str, str]) -> Path:
    log_path = base / f"{name}.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "shared.cli", "serve", service],
        env=env,
        cwd=ROOT,
        stdout=open(log_path, "w"),  # noqa: SIM115 (closed with the process)
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    stack.callback(_kill_group, process, signal.SIGTERM)
    return log_path


async def _stored_emails(url: str) -> set[str]:
    """The addresses of the registrations the database has now (the promoted standby's view)."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return {row[0] for row in await conn.fetch("SELECT email FROM registration.registrations")}
    finally:
        await conn.close()


def longest_gap(
    times: list[float], start: float = float("-inf"), end: float = float("inf")
) -> tuple[float, float]:
    """The longest pause between consecutive arrivals that began in [start, end), and when it began."""
    ordered = sorted(times)
    best, at = 0.0, ordered[0] if ordered else 0.0
    for before, after in zip(ordered, ordered[1:], strict=False):
        if start <= before < end and after - before > best:
            best, at = after - before, before
    return best, at


def _keep_logs(base: Path, target: str) -> None:
    """Copies every log of the run (services, HAProxy, Postgres, RabbitMQ nodes) to ``target``."""
    destination = Path(target)
    destination.mkdir(parents=True, exist_ok=True)
    for path in base.rglob("*.log"):
        if path.is_file():
            shutil.copy(path, destination / "-".join(path.relative_to(base).parts))


def drill(args: argparse.Namespace, stack: ExitStack) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="mitwirkung-drill-"))
    stack.callback(shutil.rmtree, base, True)
    if args.logs:
        stack.callback(_keep_logs, base, args.logs)  # after every process stopped, before removal
    base.chmod(0o755)  # the postgres user reaches its data directories below
    run = uuid.uuid4().hex[:6]
    t0 = time.monotonic()

    pg = PostgresPair(stack, base, args.synchronous)
    pg.start()
    log(f"postgres primary :{pg.primary_port}, standby :{pg.standby_port}")
    rabbit = RabbitCluster(stack, base, run)
    rabbit.start()
    amqp_port = start_haproxy(stack, base, [rabbit.ports[n] for n in rabbit.names])
    log(f"rabbitmq cluster {list(rabbit.ports.values())} behind haproxy :{amqp_port}")

    smtp_port = free_port()
    arrivals_path = str(base / "arrivals.tsv")
    spawn_sink(stack, smtp_port, arrivals_path)
    sink = Arrivals(arrivals_path)

    urls = {service: pg.service_url(service) for service in SERVICES}
    env = {
        **os.environ,
        "ENVIRONMENT": "development",
        "STAFF_JWT_SECRET": secrets.token_urlsafe(48),
        "REGISTRATION_TOKEN_SECRET": secrets.token_urlsafe(48),
        "PROPOSALS_TOKEN_SECRET": secrets.token_urlsafe(48),
        "NOTIFICATION_ADDRESS_HASH_SECRET": secrets.token_urlsafe(48),
        "AMQP_URL": f"amqp://guest:guest@127.0.0.1:{amqp_port}/",
        "LOG_LEVEL": "WARNING",
        "NOTIFICATION_SMTP_PORT": str(smtp_port),
        "REGISTRATION_RATE_LIMIT_PER_MINUTE": "0",
        "REGISTRATION_OPT_IN_MAILS_PER_HOUR": "0",
        "PROPOSALS_RATE_LIMIT_PER_MINUTE": "0",
        # One client sends everything: no per-client hourly budgets.
        "REGISTRATION_OPT_IN_REQUESTS_PER_CLIENT_PER_HOUR": "0",
        "PROPOSALS_SUBMISSIONS_PER_CLIENT_PER_HOUR": "0",
        "MITWIRKUNG_ADMIN_DATABASE_URL": pg.admin_url(),
        **{f"{service.upper()}_DATABASE_URL": url for service, url in urls.items()},
    }
    setup = subprocess.run(
        [sys.executable, "-m", "shared.cli", "setup"], env=env, cwd=ROOT, capture_output=True, text=True
    )
    if setup.returncode != 0:
        raise RuntimeError(f"mitwirkung setup failed: {setup.stderr[-3000:]}")

    ports = {name: free_port() for name, _, _ in PROCESSES}
    logs = {}
    for name, service, extra in PROCESSES:
        logs[name] = spawn_service(
            stack, base, name, service, {**env, **extra, f"{service.upper()}_PORT": str(ports[name])}
        )
    try:
        for name in ports:
            wait_until_up(f"http://127.0.0.1:{ports[name]}/readyz", timeout=60)
    except RuntimeError:
        for name, path in logs.items():
            log(f"{name}: {path.read_text()[-1500:]}")
        raise
    ready_s = time.monotonic() - t0
    log(f"system up after {ready_s:.1f} s; burst of {args.registrations}")

    # The queue's leader now, so that the kill comes without delay when its moment is there.
    leader = rabbit.leader(QUEUE)
    load = Load(
        f"http://127.0.0.1:{ports['registration']}", args.registrations, args.connections, 1.0, args.rate
    )
    started = time.monotonic()
    load.start(args.timeout)
    events: dict[str, Any] = {}

    def wait_accepted(fraction: float) -> None:
        while len(load.accepted) < fraction * args.registrations and not load.done.is_set():
            time.sleep(0.02)

    wait_accepted(args.kill_rabbit_at)
    rabbit.kill(leader)
    t_rabbit = time.monotonic()
    events["rabbit_leader_killed"] = {
        "node": leader,
        "at_s": round(t_rabbit - started, 2),
        "accepted_before": len(load.accepted),
    }
    log(f"killed {leader} (leader of {QUEUE}) after {len(load.accepted)} accepted")
    time.sleep(1)
    try:
        events["rabbit_leader_killed"]["new_leader"] = rabbit.leader(QUEUE)
    except Exception as exc:  # noqa: BLE001 - a figure, not a condition of the drill
        events["rabbit_leader_killed"]["new_leader"] = f"not yet known: {exc}"[:200]

    wait_accepted(args.stop_postgres_at)
    accepted_before = len(load.accepted)
    t_pg = time.monotonic()
    pg.stop_primary(args.crash)
    t_stopped = time.monotonic()
    log(f"postgres primary {'killed' if args.crash else 'stopped (fast)'} after {accepted_before} accepted")
    time.sleep(args.promote_after)
    pg.promote()
    t_promoted = time.monotonic()
    log("standby promoted")

    load.done.wait(args.timeout + 10)
    if load.error is not None:
        raise load.error
    intake_done = time.monotonic()
    accepted = dict(load.accepted)
    log(f"intake over: {len(accepted)} accepted in {intake_done - started:.1f} s; waiting for the mails")

    # An accepted registration the promoted standby never received (a commit answered by the primary,
    # not yet replicated when it died) can never be mailed: it is counted as lost by the failover, and
    # the wait is for the mails of the registrations the database still has.
    stored_emails = asyncio.run(_stored_emails(urls["registration"]))
    lost = sorted(email for email in accepted if email not in stored_emails)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        sink.refresh()
        if all(email in sink.first_mail_at for email in accepted if email in stored_emails):
            break
        time.sleep(0.2)
    time.sleep(args.settle)  # a mail sent twice arrives late: give it the time to
    sink.refresh()
    all_mailed = time.monotonic()

    writes_after = sorted(at for email, at in accepted.items() if load.sent_at[email] > t_stopped)
    queues = rabbit.queues()
    dlq = {name: count for name, count in queues.items() if name.endswith(".dlq")}
    per_recipient: dict[str, int] = {}
    with open(arrivals_path) as handle:
        for line in handle:
            recipient = line.split("\t")[1]
            per_recipient[recipient] = per_recipient.get(recipient, 0) + 1
    missing = sorted(email for email in accepted if email not in sink.first_mail_at)
    gap, gap_at = longest_gap(sink.arrivals)
    return {
        "registrations": args.registrations,
        "crash": args.crash,
        "system_ready_s": round(ready_s, 1),
        "accepted": len(accepted),
        "stored_registrations": len(stored_emails),
        "synchronous_replication": args.synchronous,
        # Answered 202 by the old primary, absent from the new one: acknowledged commits the failover lost.
        "accepted_lost_in_failover": len(lost),
        "accepted_lost_examples": lost[:5],
        "answered_503": load.unavailable,
        "no_answer": load.no_answer,
        "other_statuses": load.other,
        "gave_up": len(load.gave_up),
        "mails_at_sink": len(sink.arrivals),
        # Accepted and never mailed: those lost in the failover, and any the mail pipeline lost.
        "missing": len(missing),
        "missing_of_stored": sum(1 for email in missing if email in stored_emails),
        "missing_examples": missing[:5],
        "twice": sum(c - 1 for c in sink.message_ids.values() if c > 1),
        # A form sent again after a 503 whose first attempt had been stored would be a second mail with
        # another Message-ID: counted here, not as "twice".
        "recipients_mailed_more_than_once": sum(1 for c in per_recipient.values() if c > 1),
        "mails_to_unaccepted": sum(c for r, c in per_recipient.items() if r not in accepted),
        "dlq_messages": sum(dlq.values()),
        "dlq": dlq,
        "queues_left": {name: count for name, count in queues.items() if count},
        "events": {
            **events,
            "postgres_primary_stopped": {
                "mode": "SIGKILL" if args.crash else "fast",
                "at_s": round(t_pg - started, 2),
                "stop_took_s": round(t_stopped - t_pg, 2),
                "promoted_after_s": round(t_promoted - t_stopped, 2),
                "accepted_before": accepted_before,
            },
        },
        "first_write_after_primary_stop_s": round(writes_after[0] - t_stopped, 2) if writes_after else None,
        "longest_mail_pause_s": round(gap, 2),
        # The pause each failure caused: the longest one that began from a second before it until the next.
        "mail_pause_after_rabbit_kill_s": round(longest_gap(sink.arrivals, t_rabbit - 1, t_pg - 1)[0], 2),
        "mail_pause_after_primary_stop_s": round(longest_gap(sink.arrivals, t_pg - 1)[0], 2),
        "longest_mail_pause_began_at_s": round(gap_at - started, 2),
        "intake_s": round(intake_done - started, 1),
        "all_mailed_after_s": round(all_mailed - started - args.settle, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--registrations", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--rate", type=float, default=0, help="POSTs per second at most (0: as fast as taken)"
    )
    parser.add_argument(
        "--crash", action="store_true", help="SIGKILL the Postgres primary (no fast shutdown)"
    )
    parser.add_argument("--kill-rabbit-at", type=float, default=0.3, help="fraction of the burst accepted")
    parser.add_argument("--stop-postgres-at", type=float, default=0.6, help="fraction of the burst accepted")
    parser.add_argument(
        "--synchronous",
        action="store_true",
        help="synchronous replication: commits answered once on the standby",
    )
    parser.add_argument("--promote-after", type=float, default=2.0, help="seconds from stop to promotion")
    parser.add_argument("--timeout", type=float, default=900.0, help="for the intake, then for the mails")
    parser.add_argument("--logs", default="", help="copy every log of the run to this directory")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds to wait for late duplicates")
    args = parser.parse_args()

    def terminated(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminated)
    with ExitStack() as stack:
        results = drill(args, stack)
        log("cleaning up")
    print(json.dumps(results))


if __name__ == "__main__":
    main()

"""``mitwirkung``: the operator's command line.

mitwirkung setup                 create database, roles (migrator + runtime per service) and schemas; migrate
mitwirkung setup --roles-exist   the same with roles made by the platform (CloudNativePG): never touch them
mitwirkung migrate [SERVICE]     run Alembic migrations (as the service's migrator), then grant the runtime role
mitwirkung serve SERVICE         run one service (HTTP, consumers, relay, jobs)
mitwirkung dev                   setup, then run all services, the console and the development mail sink
mitwirkung mailsink              run the development SMTP sink (mails saved as .eml files)
mitwirkung dlq list QUEUE        show the messages parked in QUEUE.dlq
mitwirkung dlq replay QUEUE      move the messages of QUEUE.dlq back to QUEUE
mitwirkung token --role ROLE     mint a local staff token (HS256, STAFF_JWT_SECRET)
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import os
import secrets
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

from shared.settings import ServiceSettings, read_secrets_file

if TYPE_CHECKING:
    from shared.migrations import ServiceDatabase

SERVICES = ("registration", "notification", "proposals", "console")
_SETTINGS = {
    "registration": "services.registration.config:RegistrationSettings",
    "notification": "services.notification.config:NotificationSettings",
    "proposals": "services.proposals.config:ProposalsSettings",
    "console": "services.console.config:ConsoleSettings",
}
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
# The processes of the whole system, each a service with the environment it adds: the notification
# service as its ingest side and its sender (see NotificationSettings.role), each scalable on its own.
PROCESSES: tuple[tuple[str, str, dict[str, str]], ...] = (
    ("registration", "registration", {}),
    ("notification", "notification", {"NOTIFICATION_ROLE": "ingest"}),
    ("notification-sender", "notification", {"NOTIFICATION_ROLE": "sender", "NOTIFICATION_PORT": "8004"}),
    ("proposals", "proposals", {}),
    ("console", "console", {}),
)


def load_settings(service: str) -> ServiceSettings:
    module, _, name = _SETTINGS[service].partition(":")
    return getattr(importlib.import_module(module), name)()


def service_database(service: str) -> ServiceDatabase:
    from shared.migrations import ServiceDatabase

    settings = load_settings(service)
    return ServiceDatabase(service, settings.database_url, settings.migrator_database_url)


def make_development_secrets() -> str | None:
    """Give a development installation its own random secrets (once; kept in var/, outside the repo).
    Only where ENVIRONMENT is explicitly development and the environment does not set them itself."""
    settings = [load_settings(service) for service in SERVICES]
    if any(s.environment != "development" for s in settings):
        return None
    variables = sorted({v for s in settings for v in s.secret_variables.values()})
    path = settings[0].secrets_file
    present = read_secrets_file(path)
    wanted = [v for v in variables if not os.environ.get(v) and not present.get(v)]
    if not wanted:
        return None
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as handle:
        if not present:
            handle.write("# Made by `mitwirkung setup` for this development installation. Never commit it.\n")
        for variable in wanted:
            handle.write(f"{variable}={secrets.token_urlsafe(48)}\n")
    return path


def cmd_setup(args: argparse.Namespace) -> int:
    from shared.migrations import bootstrap, migrate_service

    made = make_development_secrets()
    if made:
        print(f"development secrets made for this installation: {made}")
    admin_url = os.environ.get("MITWIRKUNG_ADMIN_DATABASE_URL", DEFAULT_ADMIN_URL)
    services = [service_database(s) for s in SERVICES]
    asyncio.run(bootstrap(admin_url, services, create_roles=not getattr(args, "roles_exist", False)))
    for svc in services:
        migrate_service(svc)
        print(
            f"{svc.service}: schema ready and migrated (owner {svc.service} migrator, runtime role granted)"
        )
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from shared.migrations import migrate_service

    for service in [args.service] if args.service else SERVICES:
        migrate_service(service_database(service), args.revision)
        print(f"{service}: migrated to {args.revision}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    settings = load_settings(args.service)
    app = importlib.import_module(f"services.{args.service}.app").create_app(settings)
    # What is loaded at start lives as long as the process: keep it out of the collector's way, and
    # collect the young generation less often (a request allocates many short-lived objects).
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    # proxy_headers=False: uvicorn would otherwise believe X-Forwarded-For from 127.0.0.1 and rewrite the
    # client; the services read it themselves, only from FORWARDED_ALLOW_IPS (shared.ratelimit).
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        proxy_headers=False,
    )
    return 0


def cmd_mailsink(args: argparse.Namespace) -> int:
    from shared.mailsink import run_forever

    run_forever(args.host, args.port, args.directory)
    return 0


def cmd_mails(args: argparse.Namespace) -> int:
    from shared.mailsink import show_latest

    for mail in show_latest(args.directory, args.count):
        print(mail)
    return 0


def cmd_dev(args: argparse.Namespace) -> int:
    """Run the whole system in the foreground; Ctrl-C stops all of it."""
    # `dev` is development by definition: the services take the secrets `setup` made for this machine.
    os.environ.setdefault("ENVIRONMENT", "development")
    if not args.skip_setup:
        cmd_setup(args)
    env = {**os.environ}
    env.setdefault("LOG_JSON", "false")
    exe = [sys.executable, "-m", "shared.cli"]
    procs = [subprocess.Popen([*exe, "mailsink", "--directory", args.mail_dir], env=env)]
    procs += [
        subprocess.Popen([*exe, "serve", service], env={**env, **extra}) for _, service, extra in PROCESSES
    ]
    print(
        "Mitwirkung is starting: registration http://127.0.0.1:8001/docs, notification :8002 (its mail "
        f"sender :8004), proposals :8003, the staff console http://127.0.0.1:8005 (development sign-in); mails land in {args.mail_dir}/ (SMTP sink on 127.0.0.1:1025). "
        "Ctrl-C stops.",
        flush=True,
    )

    def stop(*_: object) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    try:
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    stop()
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
    return 0 if all(p.returncode in (0, -signal.SIGTERM) for p in procs) else 1


def cmd_dlq(args: argparse.Namespace) -> int:
    from shared.dlq import list_dead_letters, replay_dead_letters

    amqp_url = args.amqp_url or os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    if args.action == "list":
        for line in asyncio.run(list_dead_letters(amqp_url, args.queue, args.limit)):
            print(line)
        return 0
    moved = asyncio.run(replay_dead_letters(amqp_url, args.queue, args.limit))
    print(f"replayed {moved} message(s) from {args.queue}.dlq to {args.queue}")
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from shared.auth import mint_token

    # Minting a local token is a development act: it takes the secret `setup` made unless one is set.
    os.environ.setdefault("ENVIRONMENT", "development")
    settings = load_settings(args.service)
    if not settings.staff_jwt_secret:
        print(
            "mitwirkung token: no STAFF_JWT_SECRET (in development, run `mitwirkung setup` and set "
            "ENVIRONMENT=development)",
            file=sys.stderr,
        )
        return 2
    print(mint_token(settings, args.subject, args.role, ttl=timedelta(hours=args.hours)))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="mitwirkung", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("setup", help="create database, roles, schemas; migrate")
    p.add_argument(
        "--roles-exist",
        action="store_true",
        help="the login roles are made elsewhere (CloudNativePG managed roles): check them, change nothing",
    )
    p.set_defaults(func=cmd_setup)

    p = sub.add_parser("migrate", help="run migrations")
    p.add_argument("service", nargs="?", choices=SERVICES)
    p.add_argument("--revision", default="head")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("serve", help="run one service")
    p.add_argument("service", choices=SERVICES)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("mailsink", help="development SMTP sink")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=1025)
    p.add_argument("--directory", default="var/mail")
    p.set_defaults(func=cmd_mailsink)

    p = sub.add_parser("mails", help="show the newest mails in the development sink, decoded")
    p.add_argument("--directory", default="var/mail")
    p.add_argument("--count", type=int, default=1)
    p.set_defaults(func=cmd_mails)

    p = sub.add_parser("dev", help="setup, then run everything")
    p.add_argument("--skip-setup", action="store_true")
    p.add_argument("--mail-dir", default="var/mail")
    p.set_defaults(func=cmd_dev)

    p = sub.add_parser("dlq", help="inspect or replay a dead-letter queue")
    p.add_argument("action", choices=("list", "replay"))
    p.add_argument("queue", help="the consumer queue, e.g. notification.mail")
    p.add_argument("--limit", type=int, default=1000)
    p.add_argument("--amqp-url", default=None)
    p.set_defaults(func=cmd_dlq)

    p = sub.add_parser("token", help="mint a local staff token")
    p.add_argument("--role", action="append", default=[], choices=("staff", "moderator", "admin"))
    p.add_argument("--subject", default="local-staff")
    p.add_argument("--hours", type=float, default=8)
    p.add_argument("--service", default="registration", choices=SERVICES)
    p.set_defaults(func=cmd_token)

    args = parser.parse_args(argv)
    if getattr(args, "role", None) == []:
        args.role = ["staff"]
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

"""One settings base for every service.

Each service subclasses :class:`ServiceSettings` with its own env prefix (``REGISTRATION_`` …). The
variables that API.md calls *shared* (``DATABASE_URL``, ``AMQP_URL``, ``STAFF_JWT_*``) are also read
without a prefix, at lower priority, so one value can serve all services and a prefixed one overrides it.
"""

from __future__ import annotations

import os
import re
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import Field, PrivateAttr, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

SHARED_VARIABLES = (
    "database_url",
    "amqp_url",
    "staff_jwt_secret",
    "staff_jwt_public_key",
    "staff_jwt_jwks_url",
    "staff_jwt_issuer",
    "staff_jwt_audience",
    "log_level",
    "log_json",
    "registration_public_url",
    "proposals_public_url",
    "environment",
    "office_name",
    "office_address",
    "office_phone",
    "office_email",
    "privacy_url",
    "secrets_file",
    "forwarded_allow_ips",
)

# Values that appear in this repository (compose file, `mitwirkung dev`, defaults): public, so never keys.
KNOWN_DEVELOPMENT_SECRETS = frozenset(
    {
        "dev-secret-change-me-not-for-production",
        "dev-token-secret-not-for-production",
        "dev-token-secret-change-me",
        "test-secret-at-least-32-bytes-long!!",
        "secret",
        "changeme",
        "change-me",
    }
)
MIN_SECRET_BYTES = 32
# One source of a CSP frame-ancestors list: a keyword, or an http(s) origin (a host may start with *.).
_FRAME_SOURCE = re.compile(r"'none'|'self'|https?://(\*\.)?[A-Za-z0-9.-]+(:[0-9]{1,5})?")


class InsecureConfiguration(RuntimeError):
    """Production settings that must not be served with. Not a ValueError on purpose: pydantic would wrap
    it and print the input values, secrets included."""


def secret_problem(name: str, value: str) -> str | None:
    """Why ``value`` cannot serve as the secret ``name`` in production, or None when it can."""
    if not value:
        return f"{name} is not set"
    if value in KNOWN_DEVELOPMENT_SECRETS or "change-me" in value or "not-for-production" in value:
        return f"{name} is a published development value"
    if len(value.encode()) < MIN_SECRET_BYTES:
        return f"{name} is shorter than {MIN_SECRET_BYTES} bytes"
    return None


DEFAULT_PORTS = {"registration": 8001, "notification": 8002, "proposals": 8003, "console": 8005}
# Where `mitwirkung setup` keeps the secrets it made for a development installation (outside the repo's
# tracked files: var/ is ignored). Only a process whose ENVIRONMENT is explicitly "development" reads it.
DEVELOPMENT_SECRETS_FILE = "var/secrets.env"
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "0:0:0:0:0:0:0:1"})


def is_loopback(host: str) -> bool:
    host = host.strip().strip("[]").lower()
    return host in _LOOPBACK_HOSTS or host.endswith(".localhost") or host.startswith("127.")


def read_secrets_file(path: str) -> dict[str, str]:
    """``NAME=value`` lines of a secrets file made by `mitwirkung setup`; {} when there is none."""
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        return {}
    values = {}
    for line in lines:
        name, sep, value = line.partition("=")
        if sep and not name.lstrip().startswith("#"):
            values[name.strip()] = value.strip()
    return values


class _UnprefixedSharedSource(PydanticBaseSettingsSource):
    """Reads the shared variables from the environment without the service prefix."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        value = os.environ.get(field_name.upper())
        return value, field_name, False

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name in SHARED_VARIABLES:
            if name not in self.settings_cls.model_fields:
                continue
            raw = os.environ.get(name.upper())
            if raw is not None:
                values[name] = raw
        return values


class ServiceSettings(BaseSettings):
    """Defaults shared by all services; override per service with its env prefix."""

    service_name: ClassVar[str] = ""
    # The secrets this service needs: field name -> the variable that sets it. None has a default in code;
    # a development installation gets its own random ones from `mitwirkung setup` (DEVELOPMENT_SECRETS_FILE).
    secret_variables: ClassVar[dict[str, str]] = {"staff_jwt_secret": "STAFF_JWT_SECRET"}
    _database_url_defaulted: bool = PrivateAttr(default=False)

    model_config = SettingsConfigDict(extra="ignore", env_nested_delimiter="__")

    host: str = "127.0.0.1"
    port: int = 0
    # The service's own login role. Empty means: the local development default for this service.
    database_url: str = ""
    # The role that owns the service's schema and runs its migrations (`mitwirkung setup`/`migrate` only).
    # Empty means: the runtime role's name and password with `_migrator` appended (development).
    migrator_database_url: str = ""
    # A fixed pool: overflow connections would be opened and closed again under load (slow, spiky).
    database_pool_size: int = 20
    # No database statement runs longer than this (server side, and the client gives up 5 s later).
    database_statement_timeout_ms: int = 30_000
    # How often the process checks its database and its broker (topology present, consumers subscribed).
    database_watch_interval: float = 2.0
    broker_watch_interval: float = 5.0
    # A stopping process finishes (or hands back) the work it claimed within this many seconds.
    shutdown_grace_seconds: float = 20.0
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"

    staff_jwt_secret: str = ""
    staff_jwt_public_key: str = ""
    staff_jwt_jwks_url: str = ""
    staff_jwt_issuer: str = "mitwirkung-local"
    staff_jwt_audience: str = "mitwirkung"
    # Staff tokens living longer than this are refused (exp - iat, and exp - now).
    staff_jwt_max_lifetime_hours: float = 12.0

    registration_public_url: str = "http://localhost:8001"
    proposals_public_url: str = "http://localhost:8003"

    # The city's identity: the footer of every mail and of every resident page (OFFICE_NAME … or with the
    # service prefix; one unprefixed value serves all services, so mails and pages say the same).
    office_name: str = "Integrationsbeauftragter der Stadt Kaiserslautern"
    office_address: str = "Willy-Brandt-Platz 1, 67657 Kaiserslautern"
    office_phone: str = "0631 365-1121"
    office_email: str = "europa@kaiserslautern.de"
    privacy_url: str = "https://www.kaiserslautern.de/datenschutz"

    # FORWARDED_ALLOW_IPS: the reverse proxies (addresses or CIDR networks, comma-separated) whose
    # X-Forwarded-For is believed for the per-client limits. Empty (the default): none — not even
    # 127.0.0.1 —, so the client is always the connection's peer. Behind the city's proxy, name exactly it.
    forwarded_allow_ips: str = ""

    cors_origins: list[str] = Field(default_factory=list)
    # <SVC>_FRAME_ANCESTORS: the pages that may embed this service's resident pages and forms (the city's
    # CMS), as CSP frame-ancestors sources: 'none' (the default), 'self', or origins such as
    # https://www.kaiserslautern.de, separated by spaces.
    frame_ancestors: str = "'none'"
    max_body_bytes: int = 64 * 1024

    # Outbox relay
    outbox_poll_interval: float = 2.0
    # Rows per relay pass; their publishes go out back to back and their confirms are awaited together.
    # A pass costs a handful of round trips, each a turn of a busy event loop, whatever its size: passes
    # large enough that the relay keeps up with full intake instead of falling behind it.
    # The AMQP write queue is sized for a whole pass (shared.runtime), so that a pass goes out in one turn.
    outbox_batch_size: int = 500
    outbox_publish_timeout: float = 10.0
    # Published outbox rows (they carry personal data) and inbox rows are deleted after these ages.
    outbox_retention_hours: float = 72.0
    inbox_retention_days: float = 30.0
    housekeeping_interval: float = 3600.0
    # Consumers
    # Unacknowledged messages in flight per consumer; up to ``consumer_batch_size`` of those that are
    # waiting are applied in one transaction (1: each on its own).
    consumer_prefetch: int = 64
    consumer_batch_size: int = 64
    # A batch begins this long after its first message arrived (when it is not full already), so that
    # events trickling in at a few hundred per second share a transaction instead of taking one each.
    consumer_batch_linger_seconds: float = 0.01
    consumer_max_attempts: int = 5
    consumer_retry_delay_ms: int = 5000
    queue_delivery_limit: int = 20

    log_level: str = "INFO"
    log_json: bool = True
    # ENVIRONMENT (or <SVC>_ENVIRONMENT). Unset means production: a forgotten variable must not run a city's
    # installation with development rules. In production the service refuses to start with a missing,
    # published or short secret, an empty issuer, a database role shared with other services, RabbitMQ's
    # guest account, public URLs on localhost, or a loopback bind behind a public URL. Elsewhere it refuses
    # to start without its secrets; only "development" takes them from ``secrets_file`` (made by setup).
    environment: Literal["development", "test", "production"] = "production"
    secrets_file: str = DEVELOPMENT_SECRETS_FILE

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            _UnprefixedSharedSource(settings_cls),
            dotenv_settings,
            file_secret_settings,
        )

    @field_validator("frame_ancestors")
    @classmethod
    def _frame_ancestors(cls, value: str) -> str:
        sources = value.split()
        if not sources or not all(_FRAME_SOURCE.fullmatch(s) for s in sources):
            raise ValueError("FRAME_ANCESTORS: 'none', 'self' or https:// origins, separated by spaces")
        if "'none'" in sources and len(sources) > 1:
            raise ValueError("FRAME_ANCESTORS: 'none' stands alone")
        return " ".join(sources)

    def model_post_init(self, __context: Any) -> None:
        if not self.port:
            self.port = DEFAULT_PORTS.get(self.service_name, 8000)
        self._database_url_defaulted = not self.database_url
        if not self.database_url:
            name = self.service_name
            self.database_url = (
                f"postgresql+asyncpg://mitwirkung_{name}:mitwirkung_{name}@127.0.0.1:5432/mitwirkung"
            )

        if self.environment == "development":
            made_by_setup = read_secrets_file(self.secrets_file)
            for field, variable in self.secret_variables.items():
                if not getattr(self, field) and made_by_setup.get(variable):
                    setattr(self, field, made_by_setup[variable])

    def missing_secrets(self) -> list[str]:
        """The variables of the secrets this service needs and has not got."""
        missing = []
        for field, variable in self.secret_variables.items():
            if field == "staff_jwt_secret" and (self.staff_jwt_public_key or self.staff_jwt_jwks_url):
                continue
            if not getattr(self, field):
                missing.append(variable)
        return missing

    def startup_problems(self) -> list[str]:
        """Why this process must not serve, in its environment (empty: it may)."""
        if self.environment == "production":
            return self.production_problems()
        missing = self.missing_secrets()
        if not missing:
            return []
        hint = (
            f"run `mitwirkung setup` to make this installation's development secrets ({self.secrets_file})"
            if self.environment == "development"
            else "set them"
        )
        return [f"{', '.join(missing)} not set: {hint}"]

    def refuse_unsafe(self) -> None:
        """Raise :class:`InsecureConfiguration` unless this configuration may serve. Called when a process
        starts serving; `setup` and `migrate` need only the database and do not call it."""
        problems = self.startup_problems()
        if not problems:
            return
        prefix = str(self.model_config.get("env_prefix") or "")
        if self.environment == "production" and not (
            os.environ.get("ENVIRONMENT") or os.environ.get(f"{prefix}ENVIRONMENT")
        ):
            problems.append(
                "ENVIRONMENT is not set, so production rules apply (development: ENVIRONMENT=development)"
            )
        raise InsecureConfiguration(f"refusing to start ({self.environment}): " + "; ".join(problems))

    def production_problems(self) -> list[str]:
        """What makes this configuration unsafe for production (subclasses add their own)."""
        problems = []
        prefix = str(self.model_config.get("env_prefix") or "")
        if not (self.staff_jwt_public_key or self.staff_jwt_jwks_url):
            problem = secret_problem("STAFF_JWT_SECRET", self.staff_jwt_secret)
            if problem:
                problems.append(problem + " (or set STAFF_JWT_PUBLIC_KEY / STAFF_JWT_JWKS_URL)")
        elif self.staff_jwt_secret:
            problem = secret_problem("STAFF_JWT_SECRET", self.staff_jwt_secret)
            if problem:
                problems.append(problem)
        if not self.staff_jwt_issuer.strip():
            problems.append("STAFF_JWT_ISSUER is empty")
        if not self.staff_jwt_audience.strip():
            problems.append("STAFF_JWT_AUDIENCE is empty")
        for field, variable in self.secret_variables.items():
            if field != "staff_jwt_secret":
                problem = secret_problem(variable, getattr(self, field))
                if problem:
                    problems.append(problem)
        amqp = urlsplit(self.amqp_url)
        if self.uses_broker() and (amqp.username or "guest") == "guest":
            problems.append("AMQP_URL uses RabbitMQ's default guest account: give each service its own user")
        for variable, url in self.public_urls().items():
            if is_loopback(urlsplit(url).hostname or "localhost"):
                problems.append(f"{variable} points at this machine ({url}): mailed links would not work")
        if self.public_urls() and is_loopback(self.host):
            problems.append(
                f"{prefix}HOST is {self.host}: behind its public URL nothing can reach it (set 0.0.0.0 or "
                "the address the city's proxy reaches)"
            )
        shared = os.environ.get("DATABASE_URL")
        if self._database_url_defaulted:
            problems.append(
                f"{prefix}DATABASE_URL is not set (the development default has a published password)"
            )
        elif shared and not os.environ.get(f"{prefix}DATABASE_URL") and self.database_url == shared:
            # One unprefixed DATABASE_URL gives every service the same role: each could read the others'.
            problems.append(
                f"DATABASE_URL is shared by all services: set {prefix}DATABASE_URL, one role each"
            )
        return problems

    def uses_broker(self) -> bool:
        """Whether this process connects to RabbitMQ at all."""
        return True

    def public_urls(self) -> dict[str, str]:
        """The public URLs this service builds its pages and mailed links from, by variable: residents
        reach the service there (none: it builds no links; the links in mails come with the events)."""
        return {}

    @property
    def db_schema(self) -> str:
        return self.service_name


def settings_config(prefix: str) -> SettingsConfigDict:
    """The model_config of a service's settings: the shared base plus its env prefix."""
    return SettingsConfigDict(env_prefix=prefix, extra="ignore", env_nested_delimiter="__")

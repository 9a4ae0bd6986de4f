"""infra/docker-compose.yml, checked offline: the Compose specification's schema (check-jsonschema),
`docker-compose config` (v1, Debian's package: no engine needed), and the rules of issue 22 against
the code (each service its own role, secrets only from infra/.env, names the settings really read)."""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
import yaml

from services.console.config import ConsoleSettings
from services.notification.config import NotificationSettings
from services.proposals.config import ProposalsSettings
from services.registration.config import RegistrationSettings
from shared.settings import DEFAULT_PORTS, SHARED_VARIABLES, ServiceSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "infra" / "docker-compose.yml"
ENV_EXAMPLE = ROOT / "infra" / ".env.example"
SETTINGS: dict[str, type[ServiceSettings]] = {
    "registration": RegistrationSettings,
    "notification": NotificationSettings,
    "proposals": ProposalsSettings,
    "console": ConsoleSettings,
}
INFRASTRUCTURE = {"postgres", "rabbitmq", "mailpit"}
# Read outside the settings classes: `mitwirkung setup` (shared/cli.py).
SETUP_ONLY = {"MITWIRKUNG_ADMIN_DATABASE_URL"}
INTERPOLATION = re.compile(r"^\$\{(\w+)(:\?[^}]+|:-[^}]*)?\}$")
REQUIRED = re.compile(r"\$\{(\w+):\?[^}]+\}")
CREDENTIALS = re.compile(r"://(?P<user>\$\{[^}]*\}|[^:@/]*):(?P<password>\$\{[^}]*\}|[^@]*)@")
# An exact release: PostgreSQL's versions are major.minor, the others' major.minor.patch.
EXACT_IMAGE = {
    "postgres": re.compile(r"postgres:\d+\.\d+-[a-z]+(@sha256:[0-9a-f]{64})?"),
    "rabbitmq": re.compile(r"rabbitmq:\d+\.\d+\.\d+-management(@sha256:[0-9a-f]{64})?"),
    "mailpit": re.compile(r"axllent/mailpit:v\d+\.\d+\.\d+(@sha256:[0-9a-f]{64})?"),
}


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if not found:
        pytest.fail(
            f"{name} is missing: scripts/bootstrap-venv installs it "
            "(docker-compose: apt-get install docker-compose; check-jsonschema: the dev extra)"
        )
    return found


def _clean_env() -> dict[str, str]:
    # Compose interpolates from the process environment too: a developer's ENVIRONMENT must not count.
    return {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}


def _compose(env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_tool("docker-compose"), "-f", str(COMPOSE), "--env-file", str(env_file), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=_clean_env(),
        cwd=ROOT,
    )


def _example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def _write_env(path: Path, values: dict[str, str]) -> Path:
    path.write_text("".join(f"{name}={value}\n" for name, value in values.items()))
    return path


@cache
def _raw() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@cache
def _resolved_from_example() -> dict:
    result = _compose(ENV_EXAMPLE, "config")
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def _app_services(config: dict) -> dict[str, dict]:
    return {name: s for name, s in config["services"].items() if name not in INFRASTRUCTURE | {"setup"}}


def _served(service: dict) -> str:
    command = service["command"]
    assert command[:2] == ["mitwirkung", "serve"], command
    return command[2]


def _known_names(settings: type[ServiceSettings]) -> set[str]:
    prefix = str(settings.model_config.get("env_prefix") or "")
    names = {prefix + field.upper() for field in settings.model_fields}
    return names | {name.upper() for name in SHARED_VARIABLES if name in settings.model_fields}


# --- the validators ---------------------------------------------------------------------------------


def test_the_compose_file_is_valid_against_the_compose_specification(tmp_path):
    checker = _tool("check-jsonschema")
    ok = subprocess.run(
        [checker, "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    broken = tmp_path / "docker-compose.yml"
    text = COMPOSE.read_text()
    assert "\n  setup:\n" in text
    broken.write_text(text.replace("\n  setup:\n", "\n  setup:\n    stop_grace_periode: 30s\n"))
    refused = subprocess.run(
        [checker, "--builtin-schema", "vendor.compose-spec", str(broken)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode != 0, "the schema check accepts an unknown key"


def test_docker_compose_accepts_the_file_with_the_example_env():
    result = _compose(ENV_EXAMPLE, "config", "-q")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("missing", ["STAFF_JWT_SECRET", "POSTGRES_PASSWORD", "NOTIFICATION_DB_PASSWORD"])
def test_a_missing_secret_stops_compose_with_its_name(tmp_path, missing):
    values = {k: v for k, v in _example().items() if k != missing}
    result = _compose(_write_env(tmp_path / ".env", values), "config", "-q")
    assert result.returncode != 0
    assert f"set {missing} in infra/.env" in result.stderr


# --- secrets and roles ------------------------------------------------------------------------------


def test_no_secret_is_written_in_the_file():
    for name, service in _raw()["services"].items():
        for key, value in (service.get("environment") or {}).items():
            value = str(value)
            if re.search(r"SECRET|PASSWORD|_PASS$|_KEY$", key):
                assert INTERPOLATION.match(value), f"{name}: {key} is not taken from infra/.env"
            if "://" in value and "@" in value:
                credentials = CREDENTIALS.search(value)
                assert credentials, f"{name}: {key}: no user:password@ in the URL"
                assert REQUIRED.fullmatch(credentials.group("password")), (
                    f"{name}: {key} has a password written in the file"
                )
    text = COMPOSE.read_text()
    for name, value in _example().items():
        if re.search(r"SECRET|PASSWORD", name) and value:
            assert value not in text, f"the example value of {name} is in the compose file"
    assert "guest:guest" not in text


def test_the_env_file_is_not_committed_and_the_example_holds_placeholders_only():
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "infra/.env"], cwd=ROOT, capture_output=True, timeout=30
    )
    assert ignored.returncode == 0, "infra/.env is not git-ignored"
    required = set(REQUIRED.findall(COMPOSE.read_text()))
    example = _example()
    assert required <= set(example), f"not in infra/.env.example: {sorted(required - set(example))}"
    for name, value in example.items():
        if re.search(r"SECRET|PASSWORD", name) and value:
            assert value.startswith("change-me-"), f"{name} in the example is not a placeholder"


def test_each_service_receives_its_own_database_role_only():
    config = _resolved_from_example()
    example = _example()
    passwords = {name: value for name, value in example.items() if name.endswith("_PASSWORD") and value}
    for name, service in _app_services(config).items():
        served = _served(service)
        env = service["environment"]
        urls = {key for key in env if key.endswith("DATABASE_URL")}
        assert urls == {f"{served.upper()}_DATABASE_URL"}, (name, urls)
        assert f"//mitwirkung_{served}:" in env[f"{served.upper()}_DATABASE_URL"]
        own = {f"{served.upper()}_DB_PASSWORD", "RABBITMQ_PASSWORD"}
        if served == "notification" and env.get("NOTIFICATION_ROLE") == "sender":
            # It sends what the ingest side recorded: the relay's password, no broker's.
            own = {"NOTIFICATION_DB_PASSWORD", "NOTIFICATION_SMTP_PASSWORD"}
            assert "AMQP_URL" not in env
        values = " ".join(map(str, env.values()))
        for other, password in passwords.items():
            if other not in own:
                assert password not in values, f"{name} receives {other}"
    setup = config["services"]["setup"]["environment"]
    assert {k for k in setup if k.endswith("DATABASE_URL")} == {
        "MITWIRKUNG_ADMIN_DATABASE_URL",
        *(f"{s.upper()}_DATABASE_URL" for s in SETTINGS),
        *(f"{s.upper()}_MIGRATOR_DATABASE_URL" for s in SETTINGS),
    }
    for service in SETTINGS:
        assert f"//mitwirkung_{service}_migrator:" in setup[f"{service.upper()}_MIGRATOR_DATABASE_URL"]
    assert "RABBITMQ_PASSWORD" not in setup and not any("amqp" in str(v) for v in setup.values())


def test_every_variable_set_is_one_the_code_reads():
    config = _resolved_from_example()
    for name, service in config["services"].items():
        if name in INFRASTRUCTURE:
            continue
        if name == "setup":
            known = set().union(*(_known_names(s) for s in SETTINGS.values())) | SETUP_ONLY
        else:
            known = _known_names(SETTINGS[_served(service)])
        unknown = set(service["environment"]) - known
        assert not unknown, f"{name} sets variables no settings read (a typo is silent): {sorted(unknown)}"


def _production_env(tmp_path: Path, service_env: dict) -> dict[str, str]:
    return {**_clean_env(), **{k: str(v) for k, v in service_env.items()}}


def _load(service: str, env: dict[str, str], *, serve: bool = True) -> subprocess.CompletedProcess[str]:
    """Load a service's settings in a process with ``env`` as a serving process does (its start-up check
    included), or as `setup` does (``serve`` False: the database is all it needs)."""
    check = ".refuse_unsafe()" if serve else ""
    code = f"from shared.cli import load_settings; load_settings({service!r}){check}; print('loaded')"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, env=env
    )


def test_every_service_loads_in_production_from_its_compose_environment(tmp_path):
    values = {
        name: (secrets.token_hex(32) if value.startswith("change-me-") else value)
        for name, value in _example().items()
    }
    values["ENVIRONMENT"] = "production"
    values["REGISTRATION_PUBLIC_URL"] = "https://mitwirkung.kaiserslautern.de/anmeldung"
    values["PROPOSALS_PUBLIC_URL"] = "https://mitwirkung.kaiserslautern.de/vorschlaege"
    values["CONSOLE_PUBLIC_URL"] = "https://mitwirkung.kaiserslautern.de/konsole"
    values["CONSOLE_OIDC_ISSUER"] = "https://login.kaiserslautern.de/realms/stadt"
    values["CONSOLE_OIDC_CLIENT_ID"] = "mitwirkung-console"
    values["CONSOLE_OIDC_CLIENT_SECRET"] = secrets.token_hex(32)
    values["CONSOLE_SIGNING_KEY_FILE"] = "/run/secrets/console-signing-key.pem"
    result = _compose(_write_env(tmp_path / ".env", values), "config")
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    for name, service in _app_services(config).items():
        loaded = _load(_served(service), _production_env(tmp_path, service["environment"]))
        assert loaded.returncode == 0 and "loaded" in loaded.stdout, (name, loaded.stderr[-2000:])
    setup = config["services"]["setup"]["environment"]
    for service in SETTINGS:
        loaded = _load(service, _production_env(tmp_path, setup), serve=False)
        assert loaded.returncode == 0, ("setup", service, loaded.stderr[-2000:])


def test_the_example_placeholders_are_refused_in_production(tmp_path):
    values = {**_example(), "ENVIRONMENT": "production"}
    result = _compose(_write_env(tmp_path / ".env", values), "config")
    config = yaml.safe_load(result.stdout)
    service = config["services"]["registration"]
    refused = _load("registration", _production_env(tmp_path, service["environment"]))
    assert refused.returncode != 0 and "published development value" in refused.stderr


# --- how the services run -----------------------------------------------------------------------------


def _seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", str(value))
    assert match, value
    return float(match.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[match.group(2)]


def test_every_long_running_service_has_health_restart_and_grace():
    config = _resolved_from_example()
    for name, service in config["services"].items():
        if name == "setup":
            continue
        assert service.get("restart") == "unless-stopped", name
        assert service.get("healthcheck", {}).get("test"), name
        assert _seconds(service["stop_grace_period"]) > 0, name
    for name, service in _app_services(config).items():
        settings = SETTINGS[_served(service)]
        grace = settings.model_fields["shutdown_grace_seconds"].default
        assert _seconds(service["stop_grace_period"]) > grace, name
        assert service["healthcheck"]["test"][-1] == "/readyz", name
        assert service["depends_on"]["setup"]["condition"] == "service_completed_successfully", name
        if "AMQP_URL" in service["environment"]:
            assert service["depends_on"]["rabbitmq"]["condition"] == "service_healthy", name


def test_setup_runs_once_before_the_services():
    setup = _resolved_from_example()["services"]["setup"]
    assert setup["command"] == ["mitwirkung", "setup"]
    assert setup["restart"] == "no"
    assert setup["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "ports" not in setup


def test_one_image_built_once():
    config = _resolved_from_example()
    ours = {name: s for name, s in config["services"].items() if name not in INFRASTRUCTURE}
    assert {s["image"] for s in ours.values()} == {"mitwirkung:0.1.0"}
    assert [name for name, s in config["services"].items() if "build" in s] == ["setup"]
    for name in INFRASTRUCTURE:
        image = config["services"][name]["image"]
        assert EXACT_IMAGE[name].fullmatch(image), image


def test_ports_are_published_on_localhost_and_match_where_the_service_listens():
    raw = _raw()["services"]
    for name, service in raw.items():
        for port in service.get("ports", []):
            assert re.fullmatch(r"127\.0\.0\.1:\d+:\d+", str(port)), (name, port)
    for name, service in _app_services(_resolved_from_example()).items():
        served = _served(service)
        env = service["environment"]
        assert env[f"{served.upper()}_HOST"] == "0.0.0.0", name  # reachable from the published port
        listens = int(env.get(f"{served.upper()}_PORT") or DEFAULT_PORTS[served])
        published = [str(p) for p in raw[name]["ports"]]
        assert published == [f"127.0.0.1:{listens}:{listens}"], (name, published)


def _local_version(command: list[str], pattern: str) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    match = re.search(pattern, result.stdout)
    assert match, f"{command}: {result.stdout}{result.stderr}"
    return match.group(1)


def test_postgres_and_rabbitmq_are_the_versions_the_suite_runs_against():
    services = _raw()["services"]
    postgres = _local_version([_tool("psql"), "--version"], r"PostgreSQL\) (\d+\.\d+)")
    assert services["postgres"]["image"].startswith(f"postgres:{postgres}-"), (postgres, services["postgres"])
    rabbitmq = _local_version(
        [_tool("dpkg-query"), "-W", "-f", "${Version}\n", "rabbitmq-server"], r"^(\d+\.\d+\.\d+)"
    )
    assert services["rabbitmq"]["image"] == f"rabbitmq:{rabbitmq}-management", rabbitmq

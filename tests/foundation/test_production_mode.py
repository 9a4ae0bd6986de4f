"""Production fails closed: missing, published or short secrets, an empty issuer, one database role
shared by all services, RabbitMQ's guest account, links to localhost or a loopback bind behind a public URL
stop the service from starting. An unset ENVIRONMENT is production; development takes its secrets only from
the file `mitwirkung setup` made, and no secret has a default in code."""

from __future__ import annotations

import pytest

from services.notification.config import NotificationSettings
from services.proposals.config import ProposalsSettings
from services.registration.config import RegistrationSettings
from shared.cli import make_development_secrets
from shared.settings import InsecureConfiguration, ServiceSettings, read_secrets_file

GOOD_SECRET = "k3y-" + "x" * 40
OTHER_SECRET = "t0k-" + "y" * 40
SETTINGS = {
    "registration": RegistrationSettings,
    "notification": NotificationSettings,
    "proposals": ProposalsSettings,
}
ENVIRONMENT_VARIABLES = (
    "ENVIRONMENT",
    "DATABASE_URL",
    "AMQP_URL",
    "STAFF_JWT_SECRET",
    "STAFF_JWT_ISSUER",
    "STAFF_JWT_JWKS_URL",
    "STAFF_JWT_PUBLIC_KEY",
    "REGISTRATION_PUBLIC_URL",
    "PROPOSALS_PUBLIC_URL",
    "SECRETS_FILE",
    *(
        f"{service.upper()}_{name}"
        for service in SETTINGS
        for name in ("ENVIRONMENT", "HOST", "DATABASE_URL")
    ),
    *(variable for settings in SETTINGS.values() for variable in settings.secret_variables.values()),
)


def start(service: str) -> ServiceSettings:
    """The settings of ``service`` as a process that is about to serve checks them."""
    settings = SETTINGS[service]()
    settings.refuse_unsafe()
    return settings


@pytest.fixture
def production(monkeypatch):
    """A production environment that is fine as it stands; tests break one thing each."""
    for name in ENVIRONMENT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ENVIRONMENT", "production")  # unprefixed: read by every service
    monkeypatch.setenv("STAFF_JWT_SECRET", GOOD_SECRET)
    monkeypatch.setenv("STAFF_JWT_ISSUER", "https://login.kaiserslautern.de")
    monkeypatch.setenv("REGISTRATION_TOKEN_SECRET", OTHER_SECRET)
    # The proposals service's own link secret (its production check is the lead's, in services/proposals).
    monkeypatch.setenv("PROPOSALS_TOKEN_SECRET", "p0s-" + "z" * 40)
    monkeypatch.setenv("NOTIFICATION_ADDRESS_HASH_SECRET", "h4s-" + "w" * 40)
    monkeypatch.setenv("AMQP_URL", "amqps://mw-services:s3cret@rabbitmq.intern:5671/")
    monkeypatch.setenv("REGISTRATION_PUBLIC_URL", "https://mitwirkung.kaiserslautern.de/anmeldung")
    monkeypatch.setenv("PROPOSALS_PUBLIC_URL", "https://mitwirkung.kaiserslautern.de/vorschlaege")
    monkeypatch.setenv("REGISTRATION_HOST", "0.0.0.0")
    monkeypatch.setenv("PROPOSALS_HOST", "0.0.0.0")
    for service in SETTINGS:
        monkeypatch.setenv(
            f"{service.upper()}_DATABASE_URL",
            f"postgresql+asyncpg://mw_{service}:s3cret-{service}@db.intern:5432/mitwirkung",
        )
    return monkeypatch


@pytest.mark.parametrize("service", SETTINGS)
def test_a_sound_production_configuration_starts(production, service):
    settings = start(service)
    assert settings.environment == "production"


@pytest.mark.parametrize("service", SETTINGS)
@pytest.mark.parametrize(
    "variable,value,reason",
    [
        ("STAFF_JWT_SECRET", "", "STAFF_JWT_SECRET is not set"),
        ("STAFF_JWT_SECRET", "dev-secret-change-me-not-for-production", "published development value"),
        ("STAFF_JWT_SECRET", "x", "shorter than 32 bytes"),
        ("STAFF_JWT_SECRET", "ä" * 15, "shorter than 32 bytes"),  # 30 bytes
        ("STAFF_JWT_ISSUER", "", "STAFF_JWT_ISSUER is empty"),
    ],
)
def test_production_refuses_weak_staff_login_settings(production, service, variable, value, reason):
    production.setenv(variable, value)
    with pytest.raises(InsecureConfiguration, match=reason) as refused:
        start(service)
    assert GOOD_SECRET not in str(refused.value) and OTHER_SECRET not in str(refused.value)


@pytest.mark.parametrize(
    "value,reason",
    [
        (None, "REGISTRATION_TOKEN_SECRET is not set"),
        ("dev-token-secret-change-me", "published development value"),
        ("dev-token-secret-not-for-production", "published development value"),
        ("0123456789abcdef0123456789abcde", "shorter than 32 bytes"),
    ],
)
def test_production_refuses_a_weak_self_service_token_secret(production, value, reason):
    if value is None:
        production.delenv("REGISTRATION_TOKEN_SECRET")
    else:
        production.setenv("REGISTRATION_TOKEN_SECRET", value)
    with pytest.raises(InsecureConfiguration, match=reason):
        start("registration")


@pytest.mark.parametrize(
    "value,reason",
    [
        (None, "NOTIFICATION_ADDRESS_HASH_SECRET is not set"),
        ("change-me", "published development value"),
        ("short", "shorter than 32 bytes"),
    ],
)
def test_production_refuses_a_weak_address_hash_secret(production, value, reason):
    if value is None:
        production.delenv("NOTIFICATION_ADDRESS_HASH_SECRET")
    else:
        production.setenv("NOTIFICATION_ADDRESS_HASH_SECRET", value)
    with pytest.raises(InsecureConfiguration, match=reason):
        start("notification")


def test_production_mode_is_read_without_a_prefix_and_with_one(production):
    production.setenv("STAFF_JWT_SECRET", "short")
    with pytest.raises(InsecureConfiguration):
        start("notification")
    production.setenv("ENVIRONMENT", "development")
    assert start("notification").environment == "development"
    production.setenv("NOTIFICATION_ENVIRONMENT", "production")
    with pytest.raises(InsecureConfiguration):
        start("notification")


@pytest.mark.parametrize("service", SETTINGS)
def test_production_refuses_one_database_role_for_all_services(production, service):
    production.delenv(f"{service.upper()}_DATABASE_URL")
    with pytest.raises(InsecureConfiguration, match="not set"):
        start(service)  # the development default, password published
    production.setenv("DATABASE_URL", "postgresql+asyncpg://mitwirkung:pw@db.intern/mitwirkung")
    with pytest.raises(InsecureConfiguration, match="shared by all services"):
        start(service)


def test_an_identity_provider_key_replaces_the_shared_secret(production):
    production.delenv("STAFF_JWT_SECRET")
    production.setenv("STAFF_JWT_JWKS_URL", "https://login.kaiserslautern.de/jwks")
    assert start("proposals").staff_jwt_secret == ""
    production.setenv("STAFF_JWT_SECRET", "short")  # set anyway: still checked
    with pytest.raises(InsecureConfiguration, match="shorter"):
        start("proposals")


@pytest.mark.parametrize("service", SETTINGS)
@pytest.mark.parametrize(
    "variable,value,reason",
    [
        ("AMQP_URL", "amqp://guest:guest@rabbitmq.intern:5672/", "guest account"),
        ("AMQP_URL", "amqp://rabbitmq.intern:5672/", "guest account"),
        (
            "REGISTRATION_PUBLIC_URL",
            "http://localhost:8001",
            "REGISTRATION_PUBLIC_URL points at this machine",
        ),
        ("PROPOSALS_PUBLIC_URL", "http://127.0.0.1:8003", "PROPOSALS_PUBLIC_URL points at this machine"),
        ("NOTIFICATION_ADDRESS_HASH_SECRET", "", "NOTIFICATION_ADDRESS_HASH_SECRET is not set"),
        ("PROPOSALS_TOKEN_SECRET", "dev-proposals-token-secret-not-for-production", "published"),
    ],
)
def test_production_refuses_default_accounts_local_links_and_missing_secrets(
    production, service, variable, value, reason
):
    production.setenv(variable, value)
    owner = variable.split("_")[0].lower()
    if owner in SETTINGS and owner != service:
        # Another service's secret or public URL is not this one's business (the notification service
        # builds no links: they come with the events).
        assert start(service)
        return
    with pytest.raises(InsecureConfiguration, match=reason):
        start(service)


@pytest.mark.parametrize("service", ["registration", "proposals"])
def test_production_refuses_a_loopback_bind_behind_a_public_url(production, service):
    production.delenv(f"{service.upper()}_HOST")  # the default: 127.0.0.1
    with pytest.raises(InsecureConfiguration, match=f"{service.upper()}_HOST is 127.0.0.1"):
        start(service)


def test_an_unset_environment_is_production(production):
    production.delenv("ENVIRONMENT")
    production.delenv("REGISTRATION_TOKEN_SECRET")
    with pytest.raises(InsecureConfiguration, match="ENVIRONMENT is not set, so production rules apply"):
        start("registration")


def test_no_secret_has_a_default_in_code(monkeypatch, tmp_path):
    for name in ENVIRONMENT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SECRETS_FILE", str(tmp_path / "absent.env"))
    for environment in ("development", "test", "production"):
        monkeypatch.setenv("ENVIRONMENT", environment)
        for service, settings_class in SETTINGS.items():
            settings = settings_class()
            assert all(not getattr(settings, field) for field in settings.secret_variables), service
            with pytest.raises(InsecureConfiguration, match="STAFF_JWT_SECRET"):
                settings.refuse_unsafe()


def test_development_takes_the_secrets_setup_made_and_only_those(monkeypatch, tmp_path):
    for name in ENVIRONMENT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    secrets_file = tmp_path / "var" / "secrets.env"
    monkeypatch.setenv("SECRETS_FILE", str(secrets_file))
    monkeypatch.setenv("ENVIRONMENT", "development")
    with pytest.raises(InsecureConfiguration, match="run `mitwirkung setup`"):
        start("registration")

    assert make_development_secrets() == str(secrets_file)
    made = read_secrets_file(str(secrets_file))
    assert set(made) == {v for s in SETTINGS.values() for v in s.secret_variables.values()}
    assert len(set(made.values())) == len(made) and all(len(v) >= 48 for v in made.values())
    assert secrets_file.stat().st_mode & 0o077 == 0  # readable by its owner only
    for service in SETTINGS:
        settings = start(service)
        for field, variable in settings.secret_variables.items():
            assert getattr(settings, field) == made[variable]
    assert make_development_secrets() is None  # made once: a second setup keeps them
    assert read_secrets_file(str(secrets_file)) == made

    monkeypatch.setenv("ENVIRONMENT", "test")  # only development reads the file
    with pytest.raises(InsecureConfiguration, match="not set: set them"):
        start("registration")
    monkeypatch.delenv("ENVIRONMENT")
    assert make_development_secrets() is None  # nor does setup make secrets outside development

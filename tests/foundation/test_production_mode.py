"""Production fails closed: missing, published or short secrets, an empty issuer or one database role
shared by all services stop the service from starting."""

from __future__ import annotations

import pytest

from services.notification.config import NotificationSettings
from services.proposals.config import ProposalsSettings
from services.registration.config import RegistrationSettings
from shared.settings import InsecureConfiguration

GOOD_SECRET = "k3y-" + "x" * 40
OTHER_SECRET = "t0k-" + "y" * 40
SETTINGS = {
    "registration": RegistrationSettings,
    "notification": NotificationSettings,
    "proposals": ProposalsSettings,
}


@pytest.fixture
def production(monkeypatch):
    """A production environment that is fine as it stands; tests break one thing each."""
    for name in (
        "DATABASE_URL",
        "STAFF_JWT_SECRET",
        "STAFF_JWT_ISSUER",
        "REGISTRATION_TOKEN_SECRET",
        "PROPOSALS_TOKEN_SECRET",
        "NOTIFICATION_ADDRESS_HASH_SECRET",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ENVIRONMENT", "production")  # unprefixed: read by every service
    monkeypatch.setenv("STAFF_JWT_SECRET", GOOD_SECRET)
    monkeypatch.setenv("STAFF_JWT_ISSUER", "https://login.kaiserslautern.de")
    monkeypatch.setenv("REGISTRATION_TOKEN_SECRET", OTHER_SECRET)
    # The proposals service's own link secret (its production check is the lead's, in services/proposals).
    monkeypatch.setenv("PROPOSALS_TOKEN_SECRET", "p0s-" + "z" * 40)
    monkeypatch.setenv("NOTIFICATION_ADDRESS_HASH_SECRET", "h4s-" + "w" * 40)
    for service in SETTINGS:
        monkeypatch.setenv(
            f"{service.upper()}_DATABASE_URL",
            f"postgresql+asyncpg://mw_{service}:s3cret-{service}@db.intern:5432/mitwirkung",
        )
    return monkeypatch


@pytest.mark.parametrize("service", SETTINGS)
def test_a_sound_production_configuration_starts(production, service):
    settings = SETTINGS[service]()
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
        SETTINGS[service]()
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
        RegistrationSettings()


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
        NotificationSettings()


def test_production_mode_is_read_without_a_prefix_and_with_one(production):
    production.delenv("STAFF_JWT_SECRET")
    with pytest.raises(InsecureConfiguration):
        NotificationSettings()
    production.setenv("ENVIRONMENT", "development")
    assert NotificationSettings().environment == "development"
    production.setenv("NOTIFICATION_ENVIRONMENT", "production")
    with pytest.raises(InsecureConfiguration):
        NotificationSettings()


@pytest.mark.parametrize("service", SETTINGS)
def test_production_refuses_one_database_role_for_all_services(production, service):
    production.delenv(f"{service.upper()}_DATABASE_URL")
    with pytest.raises(InsecureConfiguration, match="not set"):
        SETTINGS[service]()  # the development default, password published
    production.setenv("DATABASE_URL", "postgresql+asyncpg://mitwirkung:pw@db.intern/mitwirkung")
    with pytest.raises(InsecureConfiguration, match="shared by all services"):
        SETTINGS[service]()


def test_an_identity_provider_key_replaces_the_shared_secret(production):
    production.delenv("STAFF_JWT_SECRET")
    production.setenv("STAFF_JWT_JWKS_URL", "https://login.kaiserslautern.de/jwks")
    assert ProposalsSettings().staff_jwt_secret == ""
    production.setenv("STAFF_JWT_SECRET", "short")  # set anyway: still checked
    with pytest.raises(InsecureConfiguration, match="shorter"):
        ProposalsSettings()


def test_development_keeps_its_defaults(monkeypatch):
    for name in ("ENVIRONMENT", "REGISTRATION_ENVIRONMENT", "REGISTRATION_TOKEN_SECRET", "STAFF_JWT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    settings = RegistrationSettings()
    assert settings.environment == "development" and settings.token_secret

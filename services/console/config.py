"""The console's settings (``CONSOLE_`` prefix) over the one settings base."""

from typing import ClassVar

from shared.settings import ServiceSettings, is_loopback, settings_config


class ConsoleSettings(ServiceSettings):
    service_name: ClassVar[str] = "console"
    model_config = settings_config("CONSOLE_")
    # STAFF_JWT_SECRET signs the development sign-in's tokens (HS256, as `mitwirkung token` does); with
    # OpenID the console signs its own (signing_key) or passes the provider's, and needs no secret.
    secret_variables: ClassVar[dict[str, str]] = {"staff_jwt_secret": "STAFF_JWT_SECRET"}

    def missing_secrets(self) -> list[str]:
        return [] if self.oidc_issuer else super().missing_secrets()

    # Where staff reach the console; the OpenID redirect URI is {public_url}/auth/callback, and the
    # issuer of the tokens the console signs is this URL.
    public_url: str = "http://localhost:8005"
    oidc_issuer: str = ""
    oidc_client_id: str = ""
    oidc_client_secret: str = ""
    oidc_roles_claim: str = "roles"
    oidc_scopes: str = "openid profile email"
    # "console": sign a short-lived RS256 token per call with signing_key (published as JWKS at
    # /.well-known/jwks.json); "provider": pass on the provider's own access token (a JWT the services
    # verify with the provider's JWKS, as Keycloak and Entra ID issue).
    token_mode: str = "console"
    # PEM of the console's RSA private key (all replicas share it). Empty outside production: a key made
    # at start (one replica; every restart signs the console's sessions with a new key).
    signing_key: str = ""
    # Or a file holding it (a mounted secret: compose's env files and Kubernetes' env take no PEM lines).
    signing_key_file: str = ""
    signed_token_seconds: int = 300
    session_idle_minutes: float = 30.0
    # The services' public APIs (in-cluster addresses).
    registration_api_url: str = "http://127.0.0.1:8001"
    notification_api_url: str = "http://127.0.0.1:8002"
    proposals_api_url: str = "http://127.0.0.1:8003"
    api_timeout_seconds: float = 10.0
    # How long the same-for-everybody answers are kept per process: the catalog and the districts this
    # long, the moderation counts a third of it (0: ask every time).
    cache_seconds: float = 30.0

    def model_post_init(self, __context: object) -> None:
        super().model_post_init(__context)
        self.public_url = self.public_url.rstrip("/")
        self.oidc_issuer = self.oidc_issuer.rstrip("/")

    def signing_key_pem(self) -> str:
        if self.signing_key or not self.signing_key_file:
            return self.signing_key
        with open(self.signing_key_file, encoding="utf-8") as handle:
            return handle.read()

    def uses_broker(self) -> bool:
        return False

    def public_urls(self) -> dict[str, str]:
        return {"CONSOLE_PUBLIC_URL": self.public_url}

    @property
    def development_sign_in(self) -> bool:
        """The sign-in that asks for a name and roles: development only, never in production."""
        return self.environment == "development"

    @property
    def secure_cookies(self) -> bool:
        return self.environment != "development"

    @property
    def signed_token_issuer(self) -> str:
        return self.public_url

    def production_problems(self) -> list[str]:
        problems = [
            p
            for p in super().production_problems()
            # The console verifies no staff token: the STAFF_JWT_* problems are the services' to raise.
            if not p.startswith(("STAFF_JWT_SECRET", "AMQP_URL"))
        ]
        for variable, value in (
            ("CONSOLE_OIDC_ISSUER", self.oidc_issuer),
            ("CONSOLE_OIDC_CLIENT_ID", self.oidc_client_id),
            ("CONSOLE_OIDC_CLIENT_SECRET", self.oidc_client_secret),
        ):
            if not value:
                problems.append(f"{variable} is not set")
        if self.token_mode not in ("console", "provider"):
            problems.append("CONSOLE_TOKEN_MODE must be 'console' or 'provider'")
        if self.token_mode == "console" and not (self.signing_key or self.signing_key_file):
            problems.append("CONSOLE_SIGNING_KEY(_FILE) is not set (replicas must sign with one key)")
        if not self.public_url.startswith("https://") or is_loopback(self.public_url.split("/")[2]):
            problems.append("CONSOLE_PUBLIC_URL must be the https address staff reach")
        return problems

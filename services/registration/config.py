from typing import ClassVar

from shared.settings import ServiceSettings, settings_config


class RegistrationSettings(ServiceSettings):
    service_name: ClassVar[str] = "registration"
    model_config = settings_config("REGISTRATION_")
    secret_variables: ClassVar[dict[str, str]] = {
        **ServiceSettings.secret_variables,
        "token_secret": "REGISTRATION_TOKEN_SECRET",
    }

    public_url: str = ""
    # Self-service tokens are HMACs of the registration id under this secret (keep it secret, keep it
    # stable: changing it invalidates every link already mailed). Required in production.
    token_secret: str = ""
    default_capacity: int = 30
    default_expert_reserved: int = 0
    confirmation_window_hours: float = 48.0
    reminder_lead_hours: float = 48.0
    idempotency_ttl_hours: float = 24.0
    rate_limit_per_minute: int = 20
    # Mail as a weapon: a public POST mails an address at most once per working group in this many
    # hours (later POSTs answer 202 alike and send nothing), and all opt-in mails together stay under
    # this hourly cap (0 = no cap; beyond it, registering answers 429 until the hour has passed).
    public_mail_interval_hours: float = 24.0
    opt_in_mails_per_hour: int = 1000
    # Fair limits come before that global cap (issue 21): each client (IPv4 address or IPv6 /64, see
    # FORWARDED_ALLOW_IPS) may POST a registration at most this often per hour (0 = no budget), and one
    # mailbox (lower case, +tag removed, gmail dots removed: shared.addresses.mailbox) gets at most this
    # many opt-in mails per 24 h from public POSTs (beyond it the POST answers 202 alike, nothing is
    # stored or sent). Sizing rule: replicas x opt_in_requests_per_client_per_hour stays at most a tenth
    # of opt_in_mails_per_hour, so that no single client can reach the global cap.
    opt_in_requests_per_client_per_hour: int = 30
    opt_in_mails_per_mailbox_per_day: int = 10
    expiry_job_interval: float = 60.0
    # Privacy. An erasure link lives this long; unconfirmed requests (with their address) go then. All
    # erasure verification mails together stay under this hourly cap (0 = no cap); one address gets at
    # most one per public_mail_interval_hours.
    erasure_link_hours: float = 24.0
    erasure_mails_per_hour: int = 200
    # Before that global cap: each client may ask for an erasure at most this often per hour (0 = no
    # budget), and one mailbox (as above) gets at most this many erasure mails per 24 h. Sizing rule:
    # replicas x erasure_requests_per_client_per_hour stays at most a tenth of erasure_mails_per_hour.
    erasure_requests_per_client_per_hour: int = 5
    erasure_mails_per_mailbox_per_day: int = 3
    # Retention: registrations are anonymised this long after their working group's last meeting;
    # cancelled registrations lose their personal data this long after cancelling.
    retention_after_last_meeting_days: float = 180.0
    cancelled_retention_days: float = 30.0
    retention_job_interval: float = 3600.0
    reminder_job_interval: float = 60.0

    def model_post_init(self, __context: object) -> None:
        super().model_post_init(__context)
        if not self.public_url:
            self.public_url = self.registration_public_url
        self.public_url = self.public_url.rstrip("/")

    def public_urls(self) -> dict[str, str]:
        return {"REGISTRATION_PUBLIC_URL": self.public_url}

from typing import ClassVar

from shared.settings import ServiceSettings, settings_config


class ProposalsSettings(ServiceSettings):
    service_name: ClassVar[str] = "proposals"
    model_config = settings_config("PROPOSALS_")
    secret_variables: ClassVar[dict[str, str]] = {
        **ServiceSettings.secret_variables,
        "token_secret": "PROPOSALS_TOKEN_SECRET",
    }

    public_url: str = ""
    districts_file: str = ""
    # The author's private link is an HMAC of the proposal id under this secret (keep it stable:
    # changing it invalidates every link already mailed). Required in production.
    token_secret: str = ""
    idempotency_ttl_hours: float = 24.0
    rate_limit_per_minute: int = 20
    # At most this many receipt mails per address and 24 h from the public form: the form cannot be
    # used to flood a mailbox. Further proposals are stored; their author gets no receipt.
    # The address is counted as its mailbox (lower case, +tag removed, gmail dots removed:
    # shared.addresses.mailbox), so victim+1@… and victim+2@… share one budget.
    receipt_mails_per_address_per_day: int = 10
    # Each client (IPv4 address or IPv6 /64, see FORWARDED_ALLOW_IPS) may POST a proposal at most this
    # often per hour (0 = no budget): the per-client budget of the mail-triggering intake. Sizing rule:
    # replicas x this stays at most a tenth of any global hourly cap on receipts.
    submissions_per_client_per_hour: int = 30
    # The last guard: at most this many receipts city-wide per hour (0 = no cap); beyond it proposals are
    # still stored and answered alike, their authors get no receipt. Sized far above what one client may
    # send (submissions_per_client_per_hour, per replica), so one client alone cannot reach it.
    receipt_mails_per_hour: int = 2000
    # Authors' contact data is removed this many days after their proposal's outcome (or its rejection,
    # merging or withdrawal); the proposal stays, anonymous.
    author_retention_days: float = 180.0
    # A proposal whose story never ends (never moderated, left in changes_requested, published without an
    # outcome) loses its author's contact data this many days after its last change; the proposal stays.
    unfinished_author_retention_days: float = 365.0
    retention_job_interval: float = 3600.0
    # Open data (GET /v1/open-data/…): the licence's URI (default: Datenlizenz Deutschland – Namensnennung –
    # Version 2.0) and the publisher named in the DCAT-AP.de catalog.
    open_data_license: str = "https://www.govdata.de/dl-de/by-2-0"
    open_data_publisher: str = "Stadt Kaiserslautern"
    open_data_publisher_uri: str = ""
    # DCAT-AP.de's dcatde:contributorID: the portal's id of the contributing body.
    open_data_contributor_id: str = "http://dcat-ap.de/def/contributors/stadtKaiserslautern"
    # Each client may ask to follow measures at most this often per hour (the opt-in mails).
    follows_per_client_per_hour: int = 30

    def model_post_init(self, __context: object) -> None:
        super().model_post_init(__context)
        if not self.public_url:
            self.public_url = self.proposals_public_url
        self.public_url = self.public_url.rstrip("/")

    def public_urls(self) -> dict[str, str]:
        return {"PROPOSALS_PUBLIC_URL": self.public_url}

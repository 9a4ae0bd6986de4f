from typing import ClassVar

from shared.settings import ServiceSettings, secret_problem, settings_config


class ProposalsSettings(ServiceSettings):
    service_name: ClassVar[str] = "proposals"
    model_config = settings_config("PROPOSALS_")

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
    # Authors' contact data is removed this many days after their proposal's outcome (or its rejection,
    # merging or withdrawal); the proposal stays, anonymous.
    author_retention_days: float = 180.0
    retention_job_interval: float = 3600.0

    def model_post_init(self, __context: object) -> None:
        super().model_post_init(__context)
        if not self.token_secret and self.environment != "production":
            self.token_secret = "dev-proposals-token-secret-not-for-production"
        if not self.public_url:
            self.public_url = self.proposals_public_url
        self.public_url = self.public_url.rstrip("/")

    def production_problems(self) -> list[str]:
        problems = super().production_problems()
        problem = secret_problem("PROPOSALS_TOKEN_SECRET", self.token_secret)
        if problem:
            problems.append(problem)
        return problems

from typing import ClassVar, Literal

from shared.settings import ServiceSettings, settings_config


class NotificationSettings(ServiceSettings):
    service_name: ClassVar[str] = "notification"
    model_config = settings_config("NOTIFICATION_")
    secret_variables: ClassVar[dict[str, str]] = {
        **ServiceSettings.secret_variables,
        "address_hash_secret": "NOTIFICATION_ADDRESS_HASH_SECRET",
    }

    # Erasure wins over events still in flight: erased addresses are remembered as keyed hashes
    # (HMAC-SHA256) under this secret, never in the clear, so that an event for one that arrives later
    # records no mail. Required; a development installation gets one from `mitwirkung setup`.
    address_hash_secret: str = ""

    # Which parts of the service this process runs. "all": everything (one process is enough for a small
    # city and for development). Under load, run them as separate processes, each scalable on its own:
    # "ingest" consumes the events, records the mails they owe, serves the API and runs the jobs;
    # "sender" sends what is recorded (replicas share the work). An ingest process wakes the senders with
    # a Postgres NOTIFY after each commit; a sender also polls every ``sender_poll_interval`` seconds.
    role: Literal["all", "ingest", "sender"] = "all"

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_tls: Literal["none", "starttls", "tls"] = "none"
    # With starttls or tls the relay's certificate is always verified (chain and host name): against these
    # CAs (a PEM bundle, e.g. the city's own CA) or, when empty, the system's. A client certificate (PEM;
    # the key in its own file or in the certificate's) is presented where the relay asks for one.
    smtp_ca_file: str = ""
    smtp_client_cert: str = ""
    smtp_client_key: str = ""
    smtp_timeout: float = 30.0
    # Sending is latency-bound (four SMTP round trips per mail), so mails go out over several connections
    # at once; 10 leave room above the steady load the README's performance section names, and stay well
    # below the 20 connections per source that Exchange allows by default.
    smtp_pool_size: int = 10
    mail_from: str = "Stadt Kaiserslautern – Mitwirkung <mitwirkung@kaiserslautern.de>"
    mail_reply_to: str = "Integrationsbeauftragter der Stadt Kaiserslautern <europa@kaiserslautern.de>"
    # The return path (VERP): every mail's envelope sender is this address with the delivery's id and a
    # signature (``bounces+<id>-<signature>@…``), so a bounce names the mail it is about. Empty: the
    # envelope sender is MAIL_FROM's address. Its local part leaves room for the tag (64 characters in all).
    bounce_address: str = ""
    # Bounces in by SMTP: the city's mail system forwards mail for the bounce address here ("host:port";
    # empty = off). Only the signed return-path addresses are accepted as recipients (others: 550).
    bounce_listen: str = ""
    # The largest bounce mail accepted (a bounce carries the original mail; ours are small): larger ones 552.
    bounce_max_bytes: int = 1_048_576
    # How long the listener waits for a client between commands.
    bounce_listen_timeout: float = 60.0
    # Bounces in by IMAP: the mailbox the bounce address delivers to, polled every
    # ``bounce_imap_poll_interval`` seconds (e.g. imaps://user:password@mail.example:993/INBOX; empty = off).
    # imaps verifies the server against NOTIFICATION_SMTP_CA_FILE (the city's CA), or the system's CAs.
    # Each mail handled gets the keyword "MitwirkungProcessed" (and \Seen): it is not handled twice.
    bounce_imap_url: str = ""
    bounce_imap_poll_interval: float = 60.0
    bounce_imap_timeout: float = 30.0
    message_id_domain: str = ""
    # DKIM for relays that do not sign (off while empty): every mail is signed with this domain (d=; it should
    # be MAIL_FROM's domain or its parent, for DMARC alignment), selector (s=) and RSA private key (PEM file).
    # The public key goes into DNS as <selector>._domainkey.<domain> TXT "v=DKIM1; k=rsa; p=…".
    dkim_domain: str = ""
    dkim_selector: str = ""
    dkim_private_key_file: str = ""
    # 0 = no limit. An Exchange relay may allow only 30 per minute.
    rate_limit_per_minute: int = 0
    # The window the relay counts in (tests shorten it); the budget is shared by all replicas.
    rate_limit_window_seconds: float = 60.0
    # Retry on 4xx / connection errors with exponential backoff (equal jitter), up to this age.
    retry_base_seconds: float = 30.0
    retry_max_seconds: float = 3600.0
    max_age_hours: float = 48.0
    # A row left in 'sending' longer than this (the process died mid-send) becomes 'unknown' and is retried.
    sending_lease_seconds: float = 300.0
    sender_batch_size: int = 50
    sender_poll_interval: float = 1.0
    # Marks (what became of a send) that cannot be written are retried, waiting at most this long between tries.
    mark_retry_max_seconds: float = 5.0
    purge_after_days: int = 180
    # Retention: a sent (or failed) mail's row loses its recipient, links and personal context after this.
    recipient_retention_days: float = 60.0
    retention_job_interval: float = 3600.0
    # How long an erased address's hash is kept: the longest an event can wait before it is handled —
    # the backlog and the retry queue (``max_age_hours``-bounded redeliveries) and an operator's replay of
    # the dead-letter queue within two days (the runbook's replay window).
    erased_address_hours: float = 48.0
    purge_job_interval: float = 3600.0

    def uses_broker(self) -> bool:
        # The sender reads the delivery log, not a queue: it never connects to the broker.
        return self.role != "sender"

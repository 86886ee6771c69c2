"""Settings of every service, read from ``SP4N_*`` environment variables.

Top-level fields are shared by all services. Each service's own knobs live in a section
(a nested model): ``SP4N_ROUTING__RULES_TTL_S=5`` sets ``settings.routing.rules_ttl_s``;
a whole section may also be given as JSON (``SP4N_ROUTING='{"rules_ttl_s": 5}'``).
"""

from functools import cached_property
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Public, so never a secret: production refuses it (shared/production.py).
DEV_REPORTER_REF_KEY = "dev-only-reporter-ref-key"


class IntakeSettings(BaseModel):
    # A revoked API key stops working within this many seconds on every replica.
    key_cache_ttl_s: float = 10.0
    # api_keys.last_used_at is written in batches: the keys used since the last flush, in one
    # UPDATE every this many seconds (and at shutdown), never a write per request.
    key_usage_flush_s: float = 30.0
    # A native-API JSON body nested deeper than this is refused (400) before it is parsed.
    max_json_depth: int = 32
    # The kinerja report (issue 11): the regency's target on-time rate (percent) — the chart's
    # line and the alert's threshold; how often the per-OPD gauges are recomputed from the
    # read model, and the rolling window (days, by disposition) they cover.
    kinerja_target_on_time_rate: float = 90.0
    kinerja_metrics_refresh_s: float = 60.0
    kinerja_window_days: int = 30
    # The /kinerja page's session cookie: the secret that signs it (empty: a random one per
    # process — sessions end at restart and do not cross replicas) and how long it lasts.
    web_session_secret: str = Field(default="", repr=False)
    web_session_ttl_s: float = 8 * 3600.0
    # Public reads (Open311): an anonim complaint's location is shown only as lat/long rounded
    # to this many decimals (3 ≈ 110 m; 2 ≈ 1.1 km) and without its street address, unless the
    # admin koordinator made the location public (reclassify with location_public).
    public_location_decimals: int = Field(default=3, ge=0, le=6)
    # Reporter data at rest (UU PDP, services/intake/crypto.py): the master key that wraps
    # each reporter's data key (base64 of 32 random bytes; the default is for development
    # only), the id it is stored under, and earlier master keys kept only for unwrapping
    # until `sp4n rotate-master-key` has re-wrapped every data key (JSON {"id": "base64"}).
    master_key: str = Field(default="c3A0bi1kZXYtb25seS1tYXN0ZXIta2V5LTMyYnl0ZXM=", repr=False)
    master_key_id: str = Field(default="dev", pattern=r"^[A-Za-z0-9_.-]{1,40}$")
    old_master_keys: dict[str, str] = Field(default_factory=dict, repr=False)
    # A failed inbound (AMQP) submission is kept, encrypted, this many days for repair.
    failed_submission_retention_days: int = Field(default=30, ge=1)
    # An OPD key sees the reporter's contact until this many days after SELESAI.
    opd_contact_days_after_close: int = Field(default=30, ge=0)
    # How often intake purges expired failed submissions (and encrypts legacy plaintext rows).
    privacy_upkeep_interval_s: float = 3600.0
    # Keyed hash for pseudonymous reporter references (only intake computes them; the other
    # services neither need nor get it). Must be set in production and never changed.
    # ``SP4N_INTAKE__REPORTER_REF_KEY``; the older ``SP4N_REPORTER_REF_KEY`` still works.
    reporter_ref_key: str = Field(default=DEV_REPORTER_REF_KEY, repr=False)
    # AMQP submissions: the source is the portal's validated broker user (the ``user_id``
    # property RabbitMQ checks against the connection's user) minus this prefix, so broker
    # user ``sp4n-portal-wa-bot`` submits as source ``wa-bot`` (``sp4n bootstrap --portal``).
    portal_user_prefix: str = "sp4n-portal-"
    # A submission without ``user_id`` takes the ``source`` of its body only when this is
    # true (default: true in development, false in production, where true is refused).
    inbound_body_source: bool | None = None
    # Abuse limits (issue 8), enforced by ``services.intake.guard`` before anything parses the
    # body. A body larger than this many bytes is refused with 413: the native API's JSON
    # and any other route, and Open311's forms (which never take file parts).
    max_body_bytes: int = 64 * 1024
    open311_max_body_bytes: int = 64 * 1024
    # Rate limits in the ``limits`` library's notation ("30/minute", "5/second;100/hour");
    # an empty string turns that limit off. Failed authentication (401 on the native API
    # and the /kinerja sign-in, an invalid Open311 api_key) per client address: past it,
    # requests carrying a key get 429 without a database query.
    rate_limit_failed_auth: str = "30/minute"
    # Public reads (Open311 GETs) per client address, and per api_key when one is sent.
    rate_limit_public_reads: str = "300/minute"
    rate_limit_public_reads_per_key: str = "1200/minute"
    # The native API per valid key (submissions, actions, reads): off by default, so one
    # portal's burst (bench/pipeline.py submits hundreds a second) is never refused.
    rate_limit_per_key: str = ""
    # Where the counters live: empty keeps them in each replica's memory; a Redis URL
    # (redis://host:6379/0) shares them across replicas. Keys are prefixed with this prefix
    # (empty: "<namespace>:ratelimit").
    rate_limit_redis_url: str = ""
    rate_limit_key_prefix: str = ""


class RoutingSettings(BaseModel):
    # An operator's rule edit takes effect within this many seconds on every replica.
    rules_ttl_s: float = 2.0
    # A duplicate flag names at most this many candidates (the nearest in time).
    max_duplicate_candidates: int = 20


class SlaSettings(BaseModel):
    # How often the open-clocks gauge is recomputed (a count over all open clocks).
    open_clocks_refresh_s: float = 5.0
    # What meets the completion clock: the OPD's final tindak lanjut ("final_response", the
    # reporter's reply window then does not count against the regency and a reply resumes
    # it) or the close ("close", for a regency whose Perbup reads so).
    completion_met_by: Literal["final_response", "close"] = "final_response"
    # Quiet hours: staff-facing warnings and escalations that come due outside office hours
    # (working days of the regency's calendar, office_opens–office_closes local time) are
    # emitted at the next opening with their original due time in ``due_at``; breaches are
    # recorded at the exact instant regardless.
    quiet_hours: bool = True
    office_opens: str = Field(default="07:30", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    office_closes: str = Field(default="16:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")


class NotifySettings(BaseModel):
    # A claimed delivery's lease = the request timeout plus this margin.
    lease_margin_s: float = 30.0
    # Deliveries claimed per dispatcher round.
    batch_size: int = 16
    # How often the pending-deliveries gauge is recomputed.
    pending_gauge_refresh_s: float = 1.0
    # How much of a receiver's answer, and of an error text, is kept with an attempt.
    max_answer_bytes: int = 256
    max_error_chars: int = 1000
    # Retries of the subscriptions-file sync at start-up back off (doubling from
    # notify_poll_interval_s) up to this many seconds.
    sync_backoff_max_s: float = 30.0
    # A subscription added or resumed gets the on-demand events (complaint.submitted, the
    # clock starts and stops) within this many seconds: how often notify re-checks its bindings.
    bindings_refresh_s: float = 2.0
    # Webhook targets (SSRF protection, services/notify/targets.py): loopback, link-local,
    # private and reserved addresses are refused unless one of these CIDRs names them
    # (e.g. '["10.20.0.0/16"]' for a receiver inside the regency's network; tests allow
    # 127.0.0.1/32); with https_only, subscriptions must use https:// (set it in production).
    allowed_targets: list[str] = []
    https_only: bool = False
    # How much of a failed answer is kept (status code plus this many printable characters).
    answer_excerpt_chars: int = 120
    # Key that encrypts the webhook signing secrets at rest: base64 of 32 bytes. The default is
    # for development only; generate one with `python -c "import os,base64;
    # print(base64.b64encode(os.urandom(32)).decode())"`.
    secrets_key: str = Field(default="ZGV2LW9ubHktbm90aWZ5LXNlY3JldHMta2V5LTMyYnk=", repr=False)


class RetrySettings(BaseModel):
    """A consumer's transient failures (database or broker unavailable, timeouts,
    serialization failures; ``shared.failures``) are retried through delayed-retry queues."""

    # The delay of each retry step, seconds: the n-th transient failure of a message waits
    # delays_s[n-1], and every later one the last step. One retry queue per step and consumed
    # queue (``{queue}.retry.{delay}``); changing a delay declares new queues.
    delays_s: tuple[float, ...] = (1.0, 5.0, 30.0, 120.0, 600.0)
    # A message failing transiently this many times goes to its DLQ with the reason;
    # 0: never (an outage of any length is waited out).
    max_attempts: int = 0
    # While the database is unreachable the consumers are paused and it is probed, from
    # probe_initial_s doubling up to probe_max_s between probes.
    probe_initial_s: float = 0.5
    probe_max_s: float = 10.0
    # A message returned unacknowledged (link lost, consumer paused or killed while holding
    # it) this many times is handed back as a fresh copy before the queue's delivery limit
    # (``delivery_limit``, which must be larger) dead-letters it; once its returns add up to
    # max_returns it goes to the DLQ (a message that kills every consumer that takes it).
    refresh_after_returns: int = 2
    max_returns: int = 50


class DatabaseSettings(BaseModel):
    """How long a service waits on PostgreSQL before it gives up (and answers 503)."""

    # Server-side limits per session: a statement running longer is cancelled; a session idle
    # inside a transaction longer is ended (its locks released). 0 disables either.
    statement_timeout_s: float = 30.0
    idle_in_transaction_timeout_s: float = 60.0
    # Client-side: waiting for a free pool connection, opening a connection, and a statement's
    # answer (statement_timeout_s plus this margin, so a dead link cannot hang a query).
    acquire_timeout_s: float = 10.0
    connect_timeout_s: float = 5.0
    command_timeout_margin_s: float = 5.0
    # TCP keepalives on the server's side of each connection (idle seconds before the first
    # probe, seconds between probes, probes lost before the connection is dropped), so a
    # partitioned client's locks are released within about a minute instead of two hours.
    keepalives_idle_s: int = 30
    keepalives_interval_s: int = 10
    keepalives_count: int = 3
    # The Retry-After (seconds) of a 503 answered while the database is unavailable.
    retry_after_s: int = 5


class RetentionSettings(BaseModel):
    # Every service prunes its own schema (shared/retention.py): every interval_s, in
    # statements of at most batch_size rows, at most max_batches per table per round.
    interval_s: float = 300.0
    batch_size: int = 1000
    max_batches: int = 100
    # Sent outbox rows are kept this long (set-aside and unsent rows are never pruned).
    outbox_sent_days: float = 7.0
    # Ids of consumed events (the inbox) are kept this long: the redelivery horizon. An event
    # delivered again later than this would take effect twice.
    inbox_days: float = 30.0
    # routing: a remembered submission is kept until both its received_at and the time routing
    # recorded it are older than duplicate_window_days plus this margin (a complaint reaching
    # routing later than that after it was received is compared only with what is still kept).
    recent_submissions_margin_days: float = 30.0
    # notify: delivered webhooks (with their attempts) are kept this long; the attempts of a
    # dead-lettered delivery this long after it was given up (the delivery itself is kept for
    # ``sp4n webhook replay``). Pending deliveries are never pruned.
    notify_delivered_days: float = 30.0
    notify_dead_lettered_attempts_days: float = 90.0


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SP4N_", extra="ignore", env_nested_delimiter="__")

    # Least privilege (issue 8): ``production`` refuses default secrets and passwords at
    # start-up, naming the setting (shared/production.py), and turns off auto-migration.
    env: Literal["development", "production"] = "development"
    # Services apply their migrations and declare the whole broker topology at start-up
    # (default: true in development, false in production, where ``sp4n migrate`` does it
    # with the owner role and each service gets DML rights only; see ``sp4n bootstrap``).
    auto_migrate: bool | None = None

    database_url: str = "postgresql://postgres@127.0.0.1:5432/sp4n"
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    # Prefix of every exchange and queue name; tests set a unique one per run.
    namespace: str = "sp4n"

    # The regency this deployment serves.
    region_code: str = "SKD"
    region_name: str = "Kabupaten Sekadau"
    timezone: str = "Asia/Pontianak"

    host: str = "0.0.0.0"
    intake_port: int = 8000
    routing_port: int = 8001
    sla_port: int = 8002
    notify_port: int = 8003

    db_pool_min: int = 2
    db_pool_max: int = 10
    prefetch_count: int = 32
    # The quorum queues' own delivery limit (``x-delivery-limit``): a backstop only. Every
    # return of an unacknowledged message counts towards it — a link fault or a pause returns
    # a consumer's whole prefetch — so a small limit dead-letters messages that never failed
    # (5 did, in a chaos run with ~40 faults in ten minutes). Consumers refresh a returned
    # message they receive (``retry.refresh_after_returns``) and dead-letter one that keeps
    # coming back (``retry.max_returns``). Fixed when a queue is declared: a queue declared
    # by an older release keeps its limit (a warning at startup names it).
    delivery_limit: int = 100
    graceful_timeout_s: float = 15.0
    outbox_poll_interval_s: float = 1.0
    outbox_batch_size: int = 200
    # The relay (shared/outbox.py) leases the rows it claims for this long: a relay that dies
    # mid-batch leaves them to be republished once the lease is over. Keep it well above
    # outbox_publish_timeout_s.
    outbox_lease_s: float = 30.0
    # A publish not confirmed by the broker within this many seconds counts as failed.
    outbox_publish_timeout_s: float = 10.0
    # A row whose publishing failed is retried after backoff_s * 2**(attempts-1), at most
    # backoff_max_s; after max_attempts failed attempts of its own it is set aside (kept,
    # alerted on, released with ``sp4n outbox retry``). The relay backs off the same way
    # while the broker refuses everything (those attempts do not count against the rows).
    outbox_retry_backoff_s: float = 1.0
    outbox_retry_backoff_max_s: float = 30.0
    outbox_max_attempts: int = 10
    # At shutdown, after the consumers stopped, the relay keeps publishing what is left for
    # at most this many seconds.
    outbox_drain_timeout_s: float = 10.0

    # Deprecated spelling of ``intake.reporter_ref_key`` (``SP4N_REPORTER_REF_KEY``): moved
    # into the intake section when that is not set; never dumped (not passed on).
    reporter_ref_key: str | None = Field(default=None, repr=False, exclude=True)

    # Lifecycle: after this many dispositions a returned complaint stays with the admin koordinator.
    hop_cap: int = 3
    # routing: same category in the same desa within this many days → duplicate suspected.
    duplicate_window_days: int = 7

    # sla
    sla_scan_interval_s: float = 0.2
    sla_scan_batch_size: int = 500

    # notify: retry backoff = base * 2**(attempt-1), capped by max attempts.
    notify_max_attempts: int = 6
    notify_backoff_base_s: float = 60.0
    notify_timeout_s: float = 10.0
    notify_poll_interval_s: float = 0.5
    notify_subscriptions_file: str | None = None

    log_level: str = "INFO"

    intake: IntakeSettings = IntakeSettings()
    routing: RoutingSettings = RoutingSettings()
    sla: SlaSettings = SlaSettings()
    notify: NotifySettings = NotifySettings()
    # Consumer retries and pauses (issue 9), and PostgreSQL timeouts and keepalives.
    retry: RetrySettings = RetrySettings()
    db: DatabaseSettings = DatabaseSettings()
    retention: RetentionSettings = RetentionSettings()

    @model_validator(mode="after")
    def _legacy_reporter_ref_key(self) -> "Settings":
        if self.reporter_ref_key and "reporter_ref_key" not in self.intake.model_fields_set:
            self.intake = self.intake.model_copy(update={"reporter_ref_key": self.reporter_ref_key})
        return self

    @model_validator(mode="after")
    def _refresh_before_the_delivery_limit(self) -> "Settings":
        # Otherwise the queue dead-letters a returned message before a consumer refreshes it.
        if not 1 <= self.retry.refresh_after_returns < self.delivery_limit:
            raise ValueError(f"retry.refresh_after_returns ({self.retry.refresh_after_returns})"
                             f" must be at least 1 and below delivery_limit "
                             f"({self.delivery_limit})")
        return self

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def migrates_at_startup(self) -> bool:
        """Whether a service migrates its schema and declares the topology when it starts."""
        return (not self.production) if self.auto_migrate is None else self.auto_migrate

    @property
    def trusts_body_source(self) -> bool:
        """Whether an AMQP submission without ``user_id`` may take its body's ``source``."""
        flag = self.intake.inbound_body_source
        return (not self.production) if flag is None else flag

    @cached_property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def port_of(self, service: str) -> int:
        port: int = getattr(self, f"{service}_port")
        return port

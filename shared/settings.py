"""Settings of every service, read from ``SP4N_*`` environment variables.

Top-level fields are shared by all services. Each service's own knobs live in a section
(a nested model): ``SP4N_ROUTING__RULES_TTL_S=5`` sets ``settings.routing.rules_ttl_s``;
a whole section may also be given as JSON (``SP4N_ROUTING='{"rules_ttl_s": 5}'``).
"""

from functools import cached_property
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class IntakeSettings(BaseModel):
    # A revoked API key stops working within this many seconds on every replica.
    key_cache_ttl_s: float = 10.0
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
    web_session_secret: str = ""
    web_session_ttl_s: float = 8 * 3600.0


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
    max_answer_bytes: int = 1000
    max_error_chars: int = 1000
    # Retries of the subscriptions-file sync at start-up back off (doubling from
    # notify_poll_interval_s) up to this many seconds.
    sync_backoff_max_s: float = 30.0
    # A subscription added or resumed gets the on-demand events (complaint.submitted, the
    # clock starts and stops) within this many seconds: how often notify re-checks its bindings.
    bindings_refresh_s: float = 2.0


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
    delivery_limit: int = 5
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

    # Keyed hash for pseudonymous reporter references. Must be set in production.
    reporter_ref_key: str = Field(default="dev-only-reporter-ref-key", repr=False)

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
    retention: RetentionSettings = RetentionSettings()

    @cached_property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def port_of(self, service: str) -> int:
        port: int = getattr(self, f"{service}_port")
        return port

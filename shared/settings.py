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
    max_answer_bytes: int = 1000
    max_error_chars: int = 1000
    # Retries of the subscriptions-file sync at start-up back off (doubling from
    # notify_poll_interval_s) up to this many seconds.
    sync_backoff_max_s: float = 30.0
    # A subscription added or resumed gets the on-demand events (complaint.submitted, the
    # clock starts and stops) within this many seconds: how often notify re-checks its bindings.
    bindings_refresh_s: float = 2.0


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

    @cached_property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def port_of(self, service: str) -> int:
        port: int = getattr(self, f"{service}_port")
        return port

"""Settings shared by every service, read from ``SP4N_*`` environment variables."""

from functools import cached_property
from zoneinfo import ZoneInfo

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SP4N_", extra="ignore")

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

    @cached_property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def port_of(self, service: str) -> int:
        return getattr(self, f"{service}_port")
